"""One writer per run folder: an exclusive lock on ``RUN/.gptscope.lock``.

The operating system holds the lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows)
and drops it when the process ends, however it ends, so a run killed with SIGKILL never
leaves a stale lock behind. The file itself only says who holds it (pid, host, command,
start time), so a second writer's error can name the first.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

LOCK_NAME = ".gptscope.lock"


class RunFolderBusy(ValueError):
    """Another process is writing this run folder."""


def _try_lock(f: IO[str]) -> bool:
    """Take an exclusive, non-blocking lock on the open file; False if someone holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"(`{holder.get('command', '?')}`, since {since})")


class WriterLock:
    """Hold ``folder/.gptscope.lock`` exclusively while writing ``folder``.

    >>> with WriterLock("runs/x", "train"):   # doctest: +SKIP
    ...     ...                               # only this process writes runs/x here

    ``acquire`` raises `RunFolderBusy` naming the holder when another process (or another
    lock object in this process) has it; it is a no-op when this object already holds it.
    """

    def __init__(self, folder: str | Path, purpose: str = "write") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> WriterLock:
        if self._file is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+", encoding="utf-8")  # held open until release
        except OSError as e:
            raise ValueError(f"cannot create the run folder lock {self.path} ({e.strerror}); "
                             "choose an --out folder you can write to") from e
        if not _try_lock(f):
            try:
                f.seek(0)
                holder = json.loads(f.read() or "{}")
            except (OSError, ValueError):  # the holder is still writing its note
                holder = {}
            f.close()
            raise RunFolderBusy(
                f"{self.folder} is being written by {_describe(holder)}; one run folder has "
                "one writer. Wait for it to finish or stop it, or choose another --out")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                            "purpose": self.purpose, "since": time.time()}))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it); the small file stays behind."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
