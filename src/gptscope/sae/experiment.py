"""Train an SAE on a trained run's activations and score it (what `gptscope sae train` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptscope.sae.base import SAE
from gptscope.sae.metrics import ce_loss_recovered, evaluate_sae
from gptscope.sae.train_config import split_training_options
from gptscope.sae.training import train_sae_on_model
from gptscope.train.runs import run_token_batches


def train_sae_on_run(
    run: str | Path,
    hook_name: str,
    kind: str = "relu",
    expansion: int = 8,
    token_batches: int = 64,
    seed: int = 0,
    model: Any = None,
    **options: Any,
) -> tuple[SAE, dict[str, float]]:
    """Train an SAE of width ``expansion * d_in`` at ``hook_name`` of the model in ``run``
    on text from the run's own data; return it and its held-out metrics (L0, explained
    variance, dead and dense fractions, CE loss recovered).

    ``options`` are the SAE kind's options (``k=16``) and training choices (the fields of
    :class:`SAETrainConfig` and the kind's coefficients); ``steps`` defaults to 2000.
    """
    from gptscope.train.runs import open_run

    model = model if model is not None else open_run(run)[0]
    model.hook_point(hook_name)
    batches = run_token_batches(run, model, token_batches + 8, seed=seed)
    train_batches, held_out = batches[:token_batches], torch.cat(batches[token_batches:])
    d_in = model.activations(held_out[:1], hook_name)[hook_name].shape[-1]
    train_kw, options = split_training_options(options)
    train_kw.setdefault("steps", 2000)
    # Seeded here, not from whatever the global RNG holds, so the result is the same
    # whichever code ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = SAE(d_in, expansion * d_in, kind=kind, hook_name=hook_name, **options)
    train_sae_on_model(sae, model, hook_name, train_batches, seed=seed, **train_kw)
    metrics = evaluate_sae(sae, model.activations(held_out, hook_name)[hook_name]
                           .reshape(-1, d_in))
    metrics.update(ce_loss_recovered(model, sae, held_out, hook_name))
    return sae, metrics
