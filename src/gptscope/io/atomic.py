"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same folder, so ``os.replace`` is a rename on one file
    system and either the old file or the new one is there, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


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
