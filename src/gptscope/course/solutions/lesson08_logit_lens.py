"""Lesson 8: the logit lens. Read the residual stream after each layer as a prediction."""

from __future__ import annotations

import torch
from torch import Tensor


def logit_lens(model, tokens: Tensor) -> Tensor:
    """Logits read from the residual stream before every block and after the last one.

    model: a gptscope Transformer (pre-LN, with ``ln_final``); tokens [batch, pos].
    Returns [n_layers + 1, batch, pos, d_vocab]: row i is ``blocks.{i}.hook_resid_pre``
    (i < n_layers) and the last row ``blocks.{n_layers-1}.hook_resid_post``, each put
    through ``model.ln_final`` (its own statistics) and the unembedding ``@ model.W_U``.
    The last row equals the model's own logits.

    Hint: ``_, cache = model.run_with_cache(tokens)`` then ``cache["blocks.0.hook_resid_pre"]``.
    """
    n = model.cfg.n_layers
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        stack = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
        stack.append(cache[f"blocks.{n - 1}.hook_resid_post"])
        return torch.stack([model.ln_final(r) @ model.W_U for r in stack])
