"""Lesson 4: the causal mask, scaled dot-product attention and multi-head attention.

Weights use TransformerLens's shapes: W_Q, W_K, W_V [head, d_model, d_head] and
W_O [head, d_head, d_model].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def causal_mask(n_query: int, n_key: int | None = None) -> Tensor:
    """Bool [n_query, n_key] mask, True where query i may attend to key j.

    A token sees itself and everything before it, never the future. n_key defaults to
    n_query. With more keys than queries (a KV cache: the queries are the *last* n_query
    positions), query i sits at absolute position n_key - n_query + i.

    Hint: compare ``torch.arange(n_key)[None, :]`` with the query positions as a column.
    """
    n_key = n_query if n_key is None else n_key
    q_pos = torch.arange(n_query)[:, None] + (n_key - n_query)
    return torch.arange(n_key)[None, :] <= q_pos


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention.

    q [..., n_query, d_head]; k, v [..., n_key, d_head]; mask: bool, broadcastable to
    [..., n_query, n_key], True = may attend (or None). Returns z [..., n_query, d_head].

    Steps: scores = q @ k^T / sqrt(d_head); masked scores become -inf; softmax over the
    *key* axis (each query's weights sum to 1); z = pattern @ v. Leading (batch, head)
    dimensions just come along.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    pattern = scores.softmax(dim=-1)
    return pattern @ v


def multihead_attention(
    x: Tensor,
    W_Q: Tensor,
    W_K: Tensor,
    W_V: Tensor,
    W_O: Tensor,
    b_Q: Tensor,
    b_K: Tensor,
    b_V: Tensor,
    b_O: Tensor,
    causal: bool = True,
) -> Tensor:
    """Multi-head self-attention.

    x [batch, pos, d_model]; W_Q, W_K, W_V [head, d_model, d_head]; W_O [head, d_head,
    d_model]; b_Q, b_K, b_V [head, d_head]; b_O [d_model]. Returns [batch, pos, d_model].

    Each head h: q = x @ W_Q[h] + b_Q[h] (same for k, v), z = attention(q, k, v, causal
    mask if ``causal``), scaled by sqrt(d_head). Output = sum over heads of z @ W_O[h],
    plus b_O.

    Hint: ``torch.einsum("bpm,hmd->bhpd", x, W_Q)`` does every head at once.
    """
    q = torch.einsum("bpm,hmd->bhpd", x, W_Q) + b_Q[None, :, None, :]
    k = torch.einsum("bpm,hmd->bhpd", x, W_K) + b_K[None, :, None, :]
    v = torch.einsum("bpm,hmd->bhpd", x, W_V) + b_V[None, :, None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [batch, head, q, k]
    if causal:
        n = x.shape[1]
        allowed = torch.ones(n, n, dtype=torch.bool).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    z = scores.softmax(-1) @ v  # [batch, head, pos, d_head]
    return torch.einsum("bhpd,hdm->bpm", z, W_O) + b_O


def explore_patterns(seed: int = 0):
    """Given: look at causal attention patterns computed by *your* functions.

    Trick: with v = the identity matrix, pattern @ v is the pattern itself, so
    ``attention(q, k, eye, mask)`` returns the attention weights. Random queries and keys
    give random-looking but causal patterns: each row sums to 1 and nothing lies above the
    diagonal. Returns an interactive ``gptscope.viz.AttentionPatterns`` view.
    """
    from gptscope.viz import AttentionPatterns

    tokens = "the cat sat on the mat".split()
    n, heads, d_head = len(tokens), 3, 8
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(heads, n, d_head, generator=g) * 2
    k = torch.randn(heads, n, d_head, generator=g) * 2
    pattern = attention(q, k, torch.eye(n).expand(heads, n, n), causal_mask(n))
    print("rows sum to", pattern.sum(-1).mean().item(), "| above the diagonal:",
          pattern.triu(1).abs().max().item())
    return AttentionPatterns(pattern, tokens, title="your causal attention (random q, k)")
