"""Atomic file writes, the one way gptscope writes a file: a reader never sees a half-written
one, and a crash (even SIGKILL) leaves the old file or the new one, never a mix.

Every writer puts its bytes in ``.NAME.XXXXXX.tmp`` beside the target, fsyncs it and renames
it into place; `remove_leftovers` clears what a killed writer left.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, before_replace: Callable[[], None] | None = None
                ) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same folder, so ``os.replace`` is a rename on one file
    system and either the old file or the new one is there, never a mix.
    ``before_replace`` runs just before the rename (e.g. to drop a file that describes the
    old contents, so a crash leaves no description rather than a wrong one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8; returns ``path``."""
    return write_chunks(path, [text.encode("utf-8")])


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_chunks(path, [data])


def write_chunks(path: str | Path, chunks: Iterable[bytes],
                 before_replace: Callable[[], None] | None = None) -> Path:
    """Write ``chunks`` one after another (a stream larger than memory is fine)."""
    with atomic_path(path, before_replace) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    return Path(path)


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder``.

    Only call this while holding the folder's writer lock: another writer's temporary
    file is indistinguishable from a dead one's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in removed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return removed
