"""Learning-rate schedules as pure functions of the step (so resuming needs no state)."""

from __future__ import annotations

import math

from gptscope.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Linear warmup from lr / warmup_steps at step 0 to ``lr`` at step ``warmup_steps - 1``
    (never 0: a zero-lr first step would waste a batch), then by ``cfg.schedule``:
    "cosine" decays to ``final_lr`` at ``max_steps`` (half a cosine period, as in
    nanoGPT and the Chinchilla runs), "linear" decays linearly to ``final_lr``, "constant"
    stays at ``lr`` (the grokking setup).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    if cfg.schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.final_lr + shape * (cfg.lr - cfg.final_lr)
