"""Lesson 5: layer normalisation and one transformer block (GPT-2 style, pre-LN)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ModelConfig


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * w + b.

    x [..., d]; w, b [d]. The variance is the *biased* one (divide by d, not d - 1), and eps
    goes inside the square root. Same shape as x.
    """
    centred = x - x.mean(-1, keepdim=True)
    var = centred.pow(2).mean(-1, keepdim=True)
    return centred / (var + eps).sqrt() * w + b


def rms_norm(x: Tensor, w: Tensor, eps: float = 1e-6) -> Tensor:
    """RMSNorm over the last dimension (Zhang and Sennrich 2019; LLaMA's norm):
    x / sqrt(mean(x^2) + eps) * w.

    x [..., d]; w [d]. No mean is subtracted and there is no bias: only the scale of each
    vector is normalised. eps is inside the square root.
    """
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w


def transformer_block(x: Tensor, params: dict[str, Tensor], cfg: ModelConfig) -> Tensor:
    """One GPT-2 block: x [batch, pos, d_model] -> [batch, pos, d_model].

    params holds the weights of ``gptscope``'s Block under its names: ``ln1.w``, ``ln1.b``,
    ``attn.W_Q`` ``attn.W_K`` ``attn.W_V`` [head, d_model, d_head], ``attn.W_O`` [head,
    d_head, d_model], ``attn.b_Q`` ``attn.b_K`` ``attn.b_V`` [head, d_head], ``attn.b_O``
    [d_model], ``ln2.w``, ``ln2.b``, ``mlp.W_in`` [d_model, d_mlp], ``mlp.b_in``,
    ``mlp.W_out`` [d_mlp, d_model], ``mlp.b_out``.

    Pre-LN, each sublayer reads a normalised copy and *adds* to the residual stream:
        mid = x + attn(ln1(x));  out = mid + mlp(ln2(mid))
    attn is causal multi-head attention when ``cfg.causal`` (as in lesson 4), with
    ``cfg.d_head`` (which need not be d_model / n_heads; read it from the weights' shapes);
    mlp is ``gelu(h @ W_in + b_in) @ W_out + b_out`` with GPT-2's tanh GELU
    (``F.gelu(h, approximate="tanh")``); LayerNorm uses ``cfg.eps``. An attention-only
    block (``cfg.attn_only``, as in the induction-head toy models) has no MLP and no ln2:
    out = x + attn(ln1(x)).

    Prefer modules? Define instead ``class transformer_block(nn.Module)`` built from
    ``cfg`` with parameters under these names and ``forward(x)``; the check loads the
    reference Block's weights into it.
    """
    p = params

    def ln(h: Tensor, name: str) -> Tensor:
        c = h - h.mean(-1, keepdim=True)
        return c / (c.pow(2).mean(-1, keepdim=True) + cfg.eps).sqrt() * p[f"{name}.w"] + \
            p[f"{name}.b"]

    h = ln(x, "ln1")
    q = torch.einsum("bpm,hmd->bhpd", h, p["attn.W_Q"]) + p["attn.b_Q"][None, :, None]
    k = torch.einsum("bpm,hmd->bhpd", h, p["attn.W_K"]) + p["attn.b_K"][None, :, None]
    v = torch.einsum("bpm,hmd->bhpd", h, p["attn.W_V"]) + p["attn.b_V"][None, :, None]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if cfg.causal:
        n = x.shape[1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    z = scores.softmax(-1) @ v
    mid = x + torch.einsum("bhpd,hdm->bpm", z, p["attn.W_O"]) + p["attn.b_O"]
    if cfg.attn_only:
        return mid
    h = ln(mid, "ln2")
    hidden = F.gelu(h @ p["mlp.W_in"] + p["mlp.b_in"], approximate="tanh")
    return mid + hidden @ p["mlp.W_out"] + p["mlp.b_out"]
