"""Where a sweep's points run when not in this process: N local processes, or a cluster.

Each point is the command ``gptscope scaling point SWEEP NAME``, so any engine that runs
commands can run a sweep. "local" runs ``jobs`` processes here; "slurm" submits one job per
point through submitit (imported only then: ``pip install submitit``); "submitit-local"
runs the same submitit path as local processes, to try it without a cluster. submitit
keeps its own job files (pickled function calls) in ``SWEEP/submitit``; gptscope never
reads them, and a point's result still arrives as its ``done/NAME.json``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXECUTORS = ("local", "slurm", "submitit-local")
Todo = list[tuple[Any, float | None]]  # (Point, learning-rate search factor or None)


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}; "
                         "use local (with --jobs N) on one machine")


def point_command(folder: Path, point: Any, factor: float | None) -> list[str]:
    """The command that trains one point (a learning-rate search run with ``factor``)."""
    command = [sys.executable, "-m", "gptscope", "scaling", "point", str(folder), point.name]
    return command + ([] if factor is None else ["--search-factor", f"{factor:g}"])


def run_elsewhere(folder: Path, todo: Todo, jobs: int, executor: str,
                  on_done: Callable[[Any, float | None], None]) -> None:
    """Run ``todo`` with ``executor``, calling ``on_done(point, factor)`` as each finishes."""
    if executor == "local":
        _local_processes(folder, todo, jobs, on_done)
    else:
        _submitit(folder, todo, executor, on_done)


def _local_processes(folder: Path, todo: Todo, jobs: int,
                     on_done: Callable[[Any, float | None], None]) -> None:
    """``jobs`` processes at a time; the first failure stops the others and is raised."""
    queue, running = list(todo), []
    while queue or running:
        while queue and len(running) < jobs:
            point, factor = queue.pop(0)
            proc = subprocess.Popen(point_command(folder, point, factor),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            running.append((proc, point, factor))
        time.sleep(0.05)
        for entry in list(running):
            proc, point, factor = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            if proc.returncode != 0:
                for other, *_ in running:
                    other.terminate()
                raise ValueError(f"sweep point {point.name} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.read().strip()[-2000:]}")
            on_done(point, factor)


def _submitit(folder: Path, todo: Todo, executor: str,
              on_done: Callable[[Any, float | None], None]) -> None:
    try:
        import submitit  # noqa: PLC0415 (optional)
    except ImportError as err:
        raise ImportError(f"--executor {executor} needs submitit: pip install submitit") \
            from err
    cluster = "local" if executor == "submitit-local" else "slurm"
    engine = submitit.AutoExecutor(folder=folder / "submitit", cluster=cluster)
    engine.update_parameters(timeout_min=24 * 60, cpus_per_task=1)
    jobs = [(engine.submit(submitit.helpers.CommandFunction(point_command(folder, p, f))), p, f)
            for p, f in todo]
    for job, point, factor in jobs:
        try:
            job.result()
        except Exception as err:  # submitit wraps the command's failure
            raise ValueError(f"sweep point {point.name} failed under {executor}: "
                             f"{str(err).strip()[-2000:]}") from err
        on_done(point, factor)
