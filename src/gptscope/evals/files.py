"""A task from the command line: a built-in name, or a JSONL file whose samples say which
solver fits (choices: log-likelihood multiple choice; otherwise greedy generation scored
by exact match against the target)."""

from __future__ import annotations

from pathlib import Path

from gptscope.data.tasks import TASKS
from gptscope.evals.builtin import BUILTIN, builtin_task
from gptscope.evals.samples import read_samples
from gptscope.evals.scorers import choice_match, exact_match
from gptscope.evals.solvers import generate, multiple_choice
from gptscope.evals.task import EvalTask


def task_from_name_or_file(name: str, n: int = 200, run: str | Path | None = None
                           ) -> EvalTask:
    """``name`` a built-in task, or the path of a JSONL file of samples. A synthetic task
    takes the parameters ``run`` trained it with (its train_config.json), if it did."""
    base = name.removesuffix("-longer")
    if base in TASKS:
        return builtin_task(name, n, _task_kwargs(run, base))
    if name in BUILTIN:
        return builtin_task(name, n)
    path = Path(name)
    if not path.suffix == ".jsonl":
        raise ValueError(f"--task {name!r} is neither a built-in task "
                         f"({', '.join([*BUILTIN, *TASKS])}) nor a .jsonl file of samples")
    samples = read_samples(path)
    with_choices = {bool(s.choices) for s in samples}
    if len(with_choices) > 1:
        raise ValueError(f"{path}: some samples have 'choices' and some do not; a task "
                         "file is either multiple choice or free generation")
    missing = [i for i, s in enumerate(samples) if s.target is None]
    if missing:
        raise ValueError(f"{path}: sample {samples[missing[0]].named(missing[0])} has no "
                         "'target' to score against")
    if with_choices == {True}:
        return EvalTask(path.stem, samples, multiple_choice(), choice_match())
    return EvalTask(path.stem, samples, generate(), exact_match())


def _task_kwargs(run: str | Path | None, name: str) -> dict:
    config = Path(run) / "train_config.json" if run is not None else None
    if config is None or not config.exists():
        return {}
    from gptscope.train.config import TrainConfig

    data = TrainConfig.from_json(config).data
    return dict(data.task_kwargs) if data.task == name else {}
