"""Lesson 11: steering a model by adding an activation vector (ActAdd).

Three steps: build a vector from a contrast (what the model does on "Love" minus on
"Hate"), add it to the residual stream while the model runs, and measure both what it was
meant to change and what else it changed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def steering_vector(model, positive: Tensor, negative: Tensor, layer: int) -> Tensor:
    """ActAdd: the residual stream of ``positive`` minus that of ``negative``.

    positive, negative: token ids [1, pos_p] and [1, pos_n] (one prompt each). Read
    ``blocks.{layer}.hook_resid_pre`` for each: [pos, d_model]. Pad the shorter one with
    zero rows at the end so both have max(pos_p, pos_n) rows, and return positive minus
    negative: [max(pos_p, pos_n), d_model] (no batch dimension, not normalised). Adding row
    i at position i of a new prompt steers the model toward "positive".
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


def apply_steering(model, tokens: Tensor, vector: Tensor, layer: int,
                   coefficient: float = 1.0, start: int = 0) -> Tensor:
    """Run the model on ``tokens`` with ``coefficient * vector`` added to its residual stream.

    tokens [batch, pos]. The vector goes into ``blocks.{layer}.hook_resid_pre``, in every
    row of the batch alike:

    - vector [d_model]: added at every position from ``start`` on;
    - vector [n, d_model] (ActAdd, from ``steering_vector``): row i added at position
      start + i; rows that would land past the last position are dropped.

    Positions before ``start`` are left alone. Return the logits [batch, pos, d_vocab].
    Attach the hook for this forward pass only (``with model.hooks(fwd_hooks=[(name,
    fn)]):``), so the model runs unsteered again afterwards.
    """
    name = f"blocks.{layer}.hook_resid_pre"
    steer = coefficient * vector

    def add(resid: Tensor, hook) -> Tensor:
        out = resid.clone()
        if steer.dim() == 1:
            out[:, start:] += steer
            return out
        rows = steer[:max(resid.shape[1] - start, 0)]
        out[:, start:start + rows.shape[0]] += rows
        return out

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, add)]):
        return model(tokens)


def steering_effect(model, vector: Tensor, layer: int, coefficient: float, prompts: Tensor,
                    targets: Tensor, neutral: Tensor, neutral_mask: Tensor) -> dict[str, float]:
    """What a steering vector does, and what else it changes.

    Steer with ``apply_steering(model, tokens, vector, layer, coefficient)`` (every position
    from 0) and compare with the unsteered model on the same tokens.

    - effect: prompts [batch, pos] (no padding) should, when steered, continue with one of
      ``targets`` [k] (token ids, e.g. words about weddings). At each prompt's last position
      take log P(next token is one of the targets) = log of the summed softmax
      probabilities of the k targets; effect = steered minus unsteered, averaged over the
      prompts. Positive: the steering works.
    - kl: neutral [batch2, pos2] are unrelated texts, padded at the end; neutral_mask
      [batch2, pos2] (bool) is True at their real tokens. At every real token, the KL
      divergence KL(unsteered || steered) = sum_v p(v) (log p(v) - log q(v)) of the
      next-token distributions (p unsteered, q steered); kl = its mean over all real
      tokens of the batch together (padding excluded). Near 0: little else changed.

    Return {"effect": ..., "kl": ...}, Python floats.
    """
    with torch.no_grad():
        clean = model(prompts)[:, -1].log_softmax(-1)
        steered = apply_steering(model, prompts, vector, layer, coefficient)[:, -1]
        steered = steered.log_softmax(-1)
        effect = (steered[:, targets].logsumexp(-1) - clean[:, targets].logsumexp(-1)).mean()
        p_log = model(neutral).log_softmax(-1)
        q_log = apply_steering(model, neutral, vector, layer, coefficient).log_softmax(-1)
        kl = (p_log.exp() * (p_log - q_log)).sum(-1)
    return {"effect": effect.item(), "kl": kl[neutral_mask].mean().item()}
