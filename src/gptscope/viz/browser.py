"""Render a page in headless Chromium: the DOM after scripts ran, JS errors, and a screenshot.

Used by the tests (does every visual draw without errors?) and by ``save_png`` for visuals
matplotlib cannot draw. The page's own runtime records errors in ``<pre id="gs-errors">`` and
counts drawn visuals in ``data-gs-rendered``; console errors are read from Chromium's log too.
"""

from __future__ import annotations

import html as _html
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install -y chromium) or set GPTSCOPE_CHROMIUM"


class ChromiumNotFound(RuntimeError):
    """No Chromium/Chrome executable could be found."""


@dataclass
class BrowserResult:
    dom: str  # serialized DOM after scripts ran
    errors: list[str]  # JS errors: recorded by the page, plus uncaught ones in the console log
    console: list[str] = field(default_factory=list)  # console/log lines from Chromium's stderr
    rendered: int | None = None  # visuals the runtime drew (data-gs-rendered), None if absent
    screenshot: Path | None = None


def find_chromium() -> str | None:
    """Path of a Chromium-like browser: $GPTSCOPE_CHROMIUM first, then the usual names on PATH."""
    env = os.environ.get("GPTSCOPE_CHROMIUM")
    if env:
        return env if os.path.exists(env) else shutil.which(env)
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(exe: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # A fresh profile per run: no state leaks between runs and no first-run dialogs.
    with tempfile.TemporaryDirectory(prefix="gs-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",  # needed as root in containers; pages rendered are our own files
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


_CONSOLE = re.compile(r"CONSOLE|Uncaught|console", re.IGNORECASE)


def render_in_browser(
    html_path: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    window_size: tuple[int, int] = (1200, 1600),
    budget_ms: int = 3000,
    timeout: float = 120.0,
) -> BrowserResult:
    """Load ``html_path`` in headless Chromium and report what happened.

    Raises ``ChromiumNotFound`` when no browser is installed and ``ValueError`` when the file
    does not exist. With ``screenshot`` a PNG of ``window_size`` is written there as well.
    """
    path = Path(html_path).resolve()
    if not path.is_file():
        raise ValueError(f"no such HTML file: {path}; save the page first")
    exe = find_chromium()
    if exe is None:
        raise ChromiumNotFound(f"no Chromium/Chrome found on PATH; {INSTALL_HINT}")
    url = path.as_uri()
    budget = f"--virtual-time-budget={int(budget_ms)}"
    proc = _run(exe, [budget, "--dump-dom", url], timeout)
    dom = proc.stdout
    if proc.returncode != 0 and not dom:
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    console = [ln for ln in proc.stderr.splitlines() if _CONSOLE.search(ln)]
    errors = []
    m = re.search(r'<pre id="gs-errors"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    if m:
        errors += [ln for ln in _html.unescape(m.group(1)).splitlines() if ln.strip()]
    errors += [ln for ln in console if "Uncaught" in ln]
    r = re.search(r'data-gs-rendered="(\d+)"', dom)
    result = BrowserResult(
        dom=dom, errors=errors, console=console, rendered=int(r.group(1)) if r else None
    )
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        w, h = window_size
        proc = _run(exe, [budget, f"--window-size={w},{h}", f"--screenshot={shot}", url], timeout)
        if not shot.is_file():
            raise RuntimeError(
                f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
            )
        result.screenshot = shot
    return result
