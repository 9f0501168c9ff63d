"""Where a sweep's points run when not in this process: N local processes, or a cluster.

Each point is the command ``gptscope scaling point SWEEP NAME``, so any engine that runs
commands can run a sweep. "local" runs ``jobs`` processes here; "slurm" submits one job per
point through submitit (imported only then: ``pip install submitit``); "submitit-local"
runs the same submitit path as local processes, to try it without a cluster. submitit
keeps its own job files (pickled function calls) in ``SWEEP/submitit``; gptscope never
reads them, and a point's result still arrives as its ``done/NAME.json``. "ray" (imported
only then: ``pip install ray``) joins an already-initialised ray or the cluster that
``RAY_ADDRESS`` names, else starts one here with ``jobs`` CPUs and no dashboard; each point
is a one-CPU Ray task that runs the same command as a subprocess, as the other paths do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXECUTORS = ("local", "slurm", "submitit-local", "ray")
Todo = list[tuple[Any, float | None]]  # (Point, learning-rate search factor or None)


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}; "
                         "use local (with --jobs N) on one machine")


def point_command(folder: Path, point: Any, factor: float | None) -> list[str]:
    """The command that trains one point (a learning-rate search run with ``factor``)."""
    command = [sys.executable, "-m", "gptscope", "scaling", "point", str(folder), point.name]
    return command + ([] if factor is None else ["--search-factor", f"{factor:g}"])


def _failed(point: Any, how: str, stderr: str) -> ValueError:
    """The error of a failed point: its name, how it failed and the end of its stderr."""
    return ValueError(f"sweep point {point.name} failed {how}: {stderr.strip()[-2000:]}")


def run_elsewhere(folder: Path, todo: Todo, jobs: int, executor: str,
                  on_done: Callable[[Any, float | None], None]) -> None:
    """Run ``todo`` with ``executor``, calling ``on_done(point, factor)`` as each finishes."""
    if executor == "local":
        _local_processes(folder, todo, jobs, on_done)
    elif executor == "ray":
        _ray(folder, todo, jobs, on_done)
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
                raise _failed(point, f"(exit {proc.returncode})", proc.stderr.read())
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
            raise _failed(point, f"under {executor}", str(err)) from err
        on_done(point, factor)


def _ray(folder: Path, todo: Todo, jobs: int,
         on_done: Callable[[Any, float | None], None]) -> None:
    """The points as Ray tasks on the ray in use, the cluster ``RAY_ADDRESS`` names, or
    a ray started here with ``jobs`` CPUs (and shut down again)."""
    try:
        import ray  # noqa: PLC0415 (optional)
    except ImportError as err:
        raise ImportError("--executor ray needs ray: pip install ray") from err
    started = not ray.is_initialized()
    if started and os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)  # a cluster's own resources: no num_cpus allowed
    elif started:  # "local": a new ray here, not one a stray `ray start` left running
        ray.init(address="local", num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    try:
        _ray_tasks(ray, folder, todo, on_done)
    finally:
        if started:  # stops the ray started here; from a cluster it only disconnects
            ray.shutdown()


def _ray_tasks(ray: Any, folder: Path, todo: Todo,
               on_done: Callable[[Any, float | None], None]) -> None:
    """One Ray task per point, taken as each finishes; the first failure cancels the rest."""

    def run(command: list[str]) -> tuple[int, str]:
        # Defined here so that Ray ships it by value: a worker then needs no `import
        # gptscope` (with torch, seconds) of its own, only the command does.
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        return proc.returncode, proc.stderr[-4000:]

    task = ray.remote(num_cpus=1)(run)
    folder = folder.resolve()  # a worker's working directory need not be this one
    # {the task's result (an ObjectRef): (point, factor)}, until it has finished
    pending = {task.remote(point_command(folder, p, f)): (p, f) for p, f in todo}
    try:
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            point, factor = pending.pop(ready)
            try:
                code, stderr = ray.get(ready)
            except ray.exceptions.RayError as err:  # the worker died, not the command
                raise _failed(point, "under ray", str(err)) from err
            if code != 0:
                raise _failed(point, f"under ray (exit {code})", stderr)
            on_done(point, factor)
    finally:
        for ref in pending:  # force: a plain cancel cannot interrupt the wait on a command;
            # killing the worker kills its command too (Ray ends a dead worker's children)
            ray.cancel(ref, force=True)

