"""Starting a run from another run's weights (fine-tuning), the vocabulary grown if needed.

A fine-tuning run may add tokens (chat role markers) after the base vocabulary. Every base
weight is copied; the rows (or columns) of the new ids start as the mean of the base
ones, so a new token begins as an "average" token rather than as a random vector whose
logit could swamp the others (Hewitt, "Initializing new word embeddings", 2021).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptscope.config import ModelConfig


def open_base(run: str | Path, device: str = "cpu") -> Any:
    """The newest good weights of ``run`` (`open_run`), with its tokenizer, for fine-tuning."""
    from gptscope.train.runs import open_run

    model, weights = open_run(run, device=device)
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"{run} has no tokenizer.json, so its token ids mean nothing to "
                         "new data; fine-tune from a run that trained on text (it saves one)")
    return model.eval()


def base_config(model_cfg: ModelConfig | None, base_cfg: ModelConfig) -> ModelConfig:
    """The base's config; a given ``model_cfg`` must agree with it (the vocabulary may grow)."""
    if model_cfg is None:
        return base_cfg
    from gptscope.train.run_folder import config_changes

    changes = [c for c in config_changes(base_cfg.to_dict(), model_cfg.to_dict(), "")
               if not c.startswith("d_vocab")]
    if changes:
        raise ValueError("a fine-tuning run keeps its base model's shape, but the model "
                         f"settings differ ({'; '.join(changes)}, base -> given); drop the "
                         "model flags")
    return base_cfg


def _grown(base: Tensor, target: Tensor, old_vocab: int, name: str) -> Tensor:
    """``base`` widened to ``target``'s shape along its vocabulary dimension."""
    dims = [d for d in range(base.dim()) if base.shape[d] != target.shape[d]]
    if len(dims) != 1 or base.shape[dims[0]] != old_vocab or target.shape[dims[0]] < old_vocab:
        raise ValueError(f"{name}: base shape {list(base.shape)} cannot grow into "
                         f"{list(target.shape)}; only the vocabulary may grow")
    dim = dims[0]
    extra = target.shape[dim] - old_vocab
    mean = base.mean(dim, keepdim=True)
    return torch.cat([base, mean.expand(*[extra if d == dim else -1
                                          for d in range(base.dim())])], dim)


@torch.no_grad()
def load_base_weights(model: Any, base: Any) -> None:
    """Copy every weight of ``base`` into ``model`` (same shape but perhaps a larger
    vocabulary; the new ids' rows start at the mean of the old ones)."""
    target = model.state_dict()
    old_vocab = base.cfg.d_vocab
    state = {}
    for name, value in base.state_dict().items():
        if name not in target:
            raise ValueError(f"the base model has {name}, which this model lacks")
        wanted = target[name]
        state[name] = value if value.shape == wanted.shape else \
            _grown(value, wanted, old_vocab, name)
    model.load_state_dict(state)
