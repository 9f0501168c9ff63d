"""Learning-rate schedules as pure functions of the step (so resuming needs no state)."""

from __future__ import annotations

import math

from gptscope.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a model run.

    Linear warmup from lr / warmup_steps at step 0 to ``lr`` at step ``warmup_steps - 1``
    (never 0: a zero-lr first step would waste a batch), then by ``cfg.schedule``:
    "cosine" decays to ``final_lr`` at ``max_steps`` (half a cosine period, as in
    nanoGPT and the Chinchilla runs), "linear" decays linearly to ``final_lr``, "constant"
    stays at ``lr`` (the grokking setup).
    """
    return scheduled_lr(step, lr=cfg.lr, final_lr=cfg.final_lr, warmup_steps=cfg.warmup_steps,
                        total_steps=cfg.max_steps, schedule=cfg.schedule)


def scheduled_lr(step: int, *, lr: float, final_lr: float, warmup_steps: int,
                 total_steps: int, schedule: str, decay_steps: int | None = None) -> float:
    """The schedule every trainer here shares: linear warm-up over ``warmup_steps``, then
    ``schedule`` ("constant", "linear" or "cosine") from ``lr`` to ``final_lr`` at
    ``total_steps``. The decay spans every step after warm-up, or only the last
    ``decay_steps`` when given (flat until then: warm-up, stable, decay)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    start = warmup_steps if decay_steps is None else max(total_steps - decay_steps, warmup_steps)
    if step < start:
        return lr
    progress = min((step - start) / max(total_steps - start, 1), 1.0)
    if schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return final_lr + shape * (lr - final_lr)
