"""A tiny progress bar: tqdm when it is installed, else one self-updating stderr line.

    bar = progress(total=1000, desc="train")
    for step in range(1000):
        ...
        bar.update(1, loss=f"{loss:.3f}")
    bar.close()

``disable=True`` (or a non-rank-0 process) gives a bar that does nothing, so callers never
need an ``if``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Plain fallback: rewrites one stderr line, at most ``min_interval`` seconds apart.

    Throttled because a terminal write per step would cost more than a small model's step.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        initial: int = 0,
        disable: bool = False,
        file: TextIO | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.total, self.desc, self.n, self.disable = total, desc, initial, disable
        self.file = file or sys.stderr
        self.min_interval = min_interval
        self._start = time.perf_counter()
        self._last = 0.0
        self._postfix = ""
        self._width = 0

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` and show ``postfix`` as ``key=value`` pairs."""
        self.n += n
        if postfix:
            self._postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        now = time.perf_counter()
        if not self.disable and now - self._last >= self.min_interval:
            self._last = now
            self._draw(now)

    def write(self, line: str) -> None:
        """Print a whole line above the bar."""
        if self.disable:
            return
        self.file.write("\r" + " " * self._width + "\r" + line + "\n")
        self._width = 0
        self.file.flush()

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f"{100 * self.n / self.total:3.0f}% " if self.total else ""
        line = f"{self.desc}: {pct}{count} [{elapsed:.0f}s] {self._postfix}".rstrip()
        pad = max(self._width - len(line), 0)
        self.file.write("\r" + line + " " * pad)
        self.file.flush()
        self._width = len(line)

    def close(self) -> None:
        if not self.disable and self.n:
            self._draw(time.perf_counter())
            self.file.write("\n")
            self.file.flush()
        self.disable = True


class _Tqdm:
    """Adapter giving tqdm the same ``update(n, **postfix)`` / ``write`` / ``close`` calls."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1, **postfix: Any) -> None:
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def write(self, line: str) -> None:
        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def progress(
    total: int | None = None, desc: str = "", initial: int = 0, disable: bool = False
) -> Progress | _Tqdm:
    """A progress bar on stderr; tqdm's if installed (imported lazily), else `Progress`."""
    if not disable:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return _Tqdm(tqdm(total=total, desc=desc, initial=initial, file=sys.stderr,
                              dynamic_ncols=True, mininterval=0.2))
    return Progress(total=total, desc=desc, initial=initial, disable=disable)
