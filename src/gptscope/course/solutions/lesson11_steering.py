"""Lesson 11: steering a model by adding an activation vector (ActAdd)."""

from __future__ import annotations

import torch
from torch import Tensor


def steering_vector(model, positive: Tensor, negative: Tensor, layer: int) -> Tensor:
    """ActAdd: the residual stream of ``positive`` minus that of ``negative``.

    positive, negative: token ids [1, pos_p] and [1, pos_n] (one prompt each). Read
    ``blocks.{layer}.hook_resid_pre`` for each: [pos, d_model]. Pad the shorter one with
    zero rows at the end so both have max(pos_p, pos_n) rows, and return positive minus
    negative: [max(pos_p, pos_n), d_model]. Adding row i at position i of a new prompt
    steers the model toward "positive".
    """
    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cp = model.run_with_cache(positive)
        _, cn = model.run_with_cache(negative)
    a, b = cp[name][0], cn[name][0]
    n = max(a.shape[0], b.shape[0])
    a = torch.cat([a, a.new_zeros(n - a.shape[0], a.shape[1])])
    b = torch.cat([b, b.new_zeros(n - b.shape[0], b.shape[1])])
    return a - b
