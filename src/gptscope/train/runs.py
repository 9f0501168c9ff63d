"""Reading a run folder: which weights to use (and which step they are from), and token
batches from the run's own data for analyses that need text the model knows."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptscope.io.checkpoint import TOKENIZER, WEIGHTS, is_hf_folder, read_step
from gptscope.train.checkpoint import list_checkpoints

METRICS = "metrics.jsonl"


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The records of ``run/metrics.jsonl``, in order (an empty list when there are none).

    A line cut short by a killed writer is skipped; the rest is still good.
    """
    from gptscope.utils.files import read_text

    path = Path(run) / METRICS
    if not path.exists():
        return []
    records = []
    for line in read_text(path, "metrics.jsonl is JSON lines; remove the damaged lines"
                          ).splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass(frozen=True)
class RunWeights:
    """The weights a command reads from a folder, and where they come from.

    folder: the folder holding that ``model.safetensors`` (the run, or one checkpoint);
    step: the training step they are from (None: saved without one); max_steps: the run's
    target (None outside training runs).
    """

    run: Path
    folder: Path
    step: int | None
    max_steps: int | None

    @property
    def finished(self) -> bool:
        """True unless this is a training run whose weights stop short of max_steps."""
        return self.max_steps is None or self.step is None or self.step >= self.max_steps

    def describe(self) -> str:
        """One line, e.g. 'runs/x/checkpoints/step_000140 (step 140 of 200; the run is
        unfinished: killed, or still training)'."""
        if self.step is None:
            where = "step unknown: saved without one"
        elif self.max_steps is None:
            where = f"step {self.step}"
        else:
            where = f"step {self.step} of {self.max_steps}"
        if not self.finished:
            where += "; the run is unfinished (killed, or still training)"
        return f"{self.folder} ({where})"


def _max_steps(run: Path) -> int | None:
    file = run / "train_config.json"
    if not file.is_file():
        return None
    from gptscope.train.config import TrainConfig

    return TrainConfig.from_json(file).max_steps


def run_weights(run: str | Path) -> list[RunWeights]:
    """Every set of weights in ``run``, newest first: the final ``model.safetensors`` and
    the finished checkpoints, ordered by step (weights of unknown step after all known)."""
    from gptscope.zoo import resolve

    run = resolve(run)  # a shipped model's name works where no such folder exists
    if not run.is_dir():
        raise ValueError(f"{run} is not a folder; pass a run folder (gptscope train --out) "
                         "or a folder gs.save wrote")
    if is_hf_folder(run):
        return [RunWeights(run, run, None, None)]
    max_steps = _max_steps(run)
    found = [RunWeights(run, folder, step, max_steps) for step, folder in list_checkpoints(run)]
    if (run / WEIGHTS).is_file():
        found.append(RunWeights(run, run, read_step(run), max_steps))
    found.sort(key=lambda w: (w.step is not None, w.step or 0, w.folder == run), reverse=True)
    if not found:
        raise ValueError(
            f"{run} holds no weights yet: no {WEIGHTS} and no finished checkpoint in "
            f"{run / 'checkpoints'}. A run writes its first checkpoint after --ckpt-every "
            "steps; wait for it, or --resume the run")
    return found


def _load(weights: RunWeights, device: str) -> Any:
    from gptscope.io.checkpoint import load

    model = load(weights.folder, device=device)
    tokenizer = weights.run / TOKENIZER  # checkpoints keep theirs in the run folder
    if getattr(model, "tokenizer", None) is None and tokenizer.is_file():
        from gptscope.tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(tokenizer)
    return model


def open_run(run: str | Path, device: str = "cpu") -> tuple[Any, RunWeights]:
    """Load the newest good weights of ``run`` (a finished run's final weights, an
    unfinished run's newest readable checkpoint) with the run's tokenizer.

    Returns (model, RunWeights); commands print ``weights.describe()`` so users always
    know which step they are looking at.
    """
    *newer, oldest = run_weights(run)
    for weights in newer:
        try:
            return _load(weights, device), weights
        except ValueError as e:
            warnings.warn(f"cannot read {weights.describe()} ({e}); using the weights before "
                          "them", stacklevel=2)
    return _load(oldest, device), oldest


def run_token_batches(run: str | Path, model: Any, n_batches: int, batch_size: int = 32,
                      seed: int = 0) -> list[Tensor]:
    """``n_batches`` LongTensors ``[batch_size, pos]`` drawn from the data the run (a folder,
    or a shipped model's name) trained on (its ``train_config.json``), tokenized with the
    run's own tokenizer."""
    from gptscope.train.config import TrainConfig
    from gptscope.train.data import build_data
    from gptscope.zoo import resolve

    cfg_file = resolve(run) / "train_config.json"
    if not cfg_file.exists():
        raise ValueError(f"{cfg_file} is missing; pass a folder written by gptscope train")
    spec = TrainConfig.from_json(cfg_file).data
    data = build_data(spec, model.cfg, getattr(model, "tokenizer", None))
    g = torch.Generator().manual_seed(seed)
    return [data.train_batch(batch_size, g)[0] for _ in range(n_batches)]
