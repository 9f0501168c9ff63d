"""Evaluation: validation loss and the task's metric, for the trainer and for a run folder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.data.tasks import score_sums, scores_from_sums
from gptscope.train.config import TrainConfig


def scored_loss_sum(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Sum of cross-entropies at the scored positions. logits [b, t, v]; targets, mask [b, t]."""
    per = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return (per * mask.flatten()).sum()


def evaluate(model: Any, data: Any, cfg: TrainConfig,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
             ) -> dict[str, float]:
    """Validation loss (+ the task's token accuracy and exact match) on test and train
    examples: ``{split}_loss``, ``{split}_token_accuracy``, ``{split}_exact_match``.

    data: the training data (``gptscope.train.data.build_data``), whose ``eval_sets`` give
    (inputs, targets, mask) per split. Draws from a generator seeded the same way every time,
    so successive evaluations score the same examples and the curve shows learning, not
    sampling noise. Leaves the model in eval mode.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = cfg.eval_steps * cfg.batch_size
    model.eval()
    out: dict[str, float] = {}
    metric = getattr(getattr(data, "task", None), "metric", None)
    for split, (x, y, m) in data.eval_sets(n, gen).items():
        total: dict[str, float] = {}
        for xs, ys, ms in zip(x.split(4 * cfg.batch_size), y.split(4 * cfg.batch_size),
                              m.split(4 * cfg.batch_size), strict=True):
            xs, ys, ms = xs.to(model.device), ys.to(model.device), ms.to(model.device)
            with autocast():
                logits = model(xs)
            for k, v in score_sums(logits, ys, ms).items():
                total[k] = total.get(k, 0) + v
        scores = scores_from_sums(total)
        out[f"{split}_loss"] = scores["loss"]
        if metric is not None:
            out[f"{split}_token_accuracy"] = scores["token_accuracy"]
            out[f"{split}_exact_match"] = scores["exact_match"]
    return out


def evaluate_run(run: str | Path, eval_steps: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Load ``run``'s newest good weights (`open_run`) and score them on the data the run
    trained on (its train_config.json).

    Same examples as the trainer's evaluations (same seed), so the numbers are comparable
    with the ``metrics.jsonl`` record of the same step. The result names the weights:
    ``step``, ``finished`` and ``weights`` (`RunWeights.describe`: the folder read and why).
    """
    from gptscope.train.data import build_data
    from gptscope.train.runs import open_run

    run = Path(run)
    cfg_file = run / "train_config.json"
    if not cfg_file.exists():
        raise ValueError(f"{cfg_file} is missing; eval needs a folder written by gptscope train")
    train_cfg = TrainConfig.from_json(cfg_file)
    if eval_steps is not None:
        train_cfg = train_cfg.replace(eval_steps=eval_steps)
    model, weights = open_run(run, device=device)
    scores = evaluate(model, build_data(train_cfg.data, model.cfg, model.tokenizer), train_cfg)
    return {"step": weights.step, "finished": weights.finished, "weights": weights.describe(),
            **scores}
