"""The transformer's building blocks as small pure functions.

These are the functions a learner writes in the course; the course checks their answers
against these. Each is short, numerically careful, and documents its shapes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "softmax",
    "log_softmax",
    "cross_entropy",
    "sinusoidal_positions",
    "rotary_angles",
    "apply_rotary",
    "causal_mask",
    "attention",
    "multihead_attention",
    "layer_norm",
    "rms_norm",
]


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, without overflow.

    Subtracting the max first changes nothing mathematically (it cancels in the ratio)
    but keeps every exponent <= 0, so inputs of 1e4 do not overflow to inf.
    Rows that are all -inf (fully masked) give NaN, as in PyTorch.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exps = shifted.exp()
    return exps / exps.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) computed as x - logsumexp(x), stable for large and small inputs."""
    m = x.amax(dim=dim, keepdim=True)
    return x - m - (x - m).exp().sum(dim=dim, keepdim=True).log()


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``logits``.

    logits: [..., n_classes]; targets: [...] (int64 class ids). Returns a scalar.
    """
    logp = log_softmax(logits, dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean()


def sinusoidal_positions(n_pos: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The fixed positional encoding of "Attention Is All You Need".

    PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)); positions start at 0.
    Returns [n_pos, d_model]. For odd d_model the last column is a sine.
    """
    pos = torch.arange(n_pos, dtype=torch.float64).unsqueeze(1)  # [n_pos, 1]
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # [ceil(d/2)]
    angles = pos * freqs  # [n_pos, ceil(d/2)]
    pe = torch.zeros(n_pos, d_model, dtype=torch.float64)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles[:, : d_model // 2].cos()
    return pe.float()


def rotary_angles(
    n_pos: int, rotary_dim: int, base: float = 10000.0, offset: int = 0
) -> tuple[Tensor, Tensor]:
    """cos and sin tables for rotary embeddings (RoPE), each [n_pos, rotary_dim].

    Dimension pairs (i, i + rotary_dim/2) rotate by angle p * base^(-2i/rotary_dim): the
    "rotate half" layout used by GPT-NeoX, LLaMA and TransformerLens.
    """
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even, got {rotary_dim}; use an even d_head")
    inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    pos = torch.arange(offset, offset + n_pos, dtype=torch.float64)
    angles = torch.outer(pos, inv_freq)  # [n_pos, rotary_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate query or key vectors by their position.

    x: [batch, pos, head, d_head]; cos, sin: [pos, rotary_dim] or, for per-row positions
    (padding), [batch, pos, rotary_dim] (rotary_dim <= d_head).
    Only the first rotary_dim features rotate; the rest pass through. The dot product of a
    rotated query at p and a rotated key at p' depends only on p - p'.
    """
    rd = cos.shape[-1]
    x_rot, x_pass = x[..., :rd], x[..., rd:]
    half = rd // 2
    rotated_half = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    cos = cos.unsqueeze(-2).to(x.dtype)  # [(batch,) pos, 1, rd] broadcasts over heads
    sin = sin.unsqueeze(-2).to(x.dtype)
    out = x_rot * cos + rotated_half * sin
    return torch.cat([out, x_pass], dim=-1) if x_pass.shape[-1] else out


def causal_mask(n_query: int, n_key: int | None = None, device=None) -> Tensor:
    """Boolean [n_query, n_key] mask, True where a query may attend to a key.

    Query i sits at absolute position (n_key - n_query + i), so with a KV cache (more keys
    than queries) the new queries still see every earlier key and nothing after themselves.
    """
    n_key = n_query if n_key is None else n_key
    offset = n_key - n_query
    q = torch.arange(n_query, device=device).unsqueeze(1)
    k = torch.arange(n_key, device=device).unsqueeze(0)
    return k <= q + offset


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    return_pattern: bool = False,
    scale: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Scaled dot-product attention, written out.

    q: [..., n_query, d_head]; k, v: [..., n_key, d_head]; mask: bool, broadcastable to
    [..., n_query, n_key], True = may attend. Returns z [..., n_query, d_head], and the
    pattern [..., n_query, n_key] when ``return_pattern``.
    Scores are divided by sqrt(d_head) so their variance stays ~1 whatever the head size.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    pattern = softmax(scores, dim=-1)
    z = pattern @ v
    return (z, pattern) if return_pattern else z


def multihead_attention(
    x: Tensor,
    W_Q: Tensor,
    W_K: Tensor,
    W_V: Tensor,
    W_O: Tensor,
    b_Q: Tensor | None = None,
    b_K: Tensor | None = None,
    b_V: Tensor | None = None,
    b_O: Tensor | None = None,
    causal: bool = True,
) -> Tensor:
    """Multi-head self-attention with TransformerLens-shaped weights.

    x: [batch, pos, d_model]; W_Q, W_K, W_V: [head, d_model, d_head]; W_O: [head, d_head,
    d_model]; b_Q/K/V: [head, d_head]; b_O: [d_model]. Returns [batch, pos, d_model].
    Each head attends independently; their outputs are projected back and summed.
    """
    q = torch.einsum("bpm,hmd->bhpd", x, W_Q)
    k = torch.einsum("bpm,hmd->bhpd", x, W_K)
    v = torch.einsum("bpm,hmd->bhpd", x, W_V)
    if b_Q is not None:
        q = q + b_Q[None, :, None, :]
    if b_K is not None:
        k = k + b_K[None, :, None, :]
    if b_V is not None:
        v = v + b_V[None, :, None, :]
    mask = causal_mask(x.shape[1], device=x.device) if causal else None
    z = attention(q, k, v, mask)  # [batch, head, pos, d_head]
    out = torch.einsum("bhpd,hdm->bpm", z, W_O)
    return out + b_O if b_O is not None else out


def layer_norm(x: Tensor, w: Tensor | None, b: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalise the last dimension to mean 0, variance 1, then scale by w and shift by b."""
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    if w is not None:
        x = x * w
    return x + b if b is not None else x


def rms_norm(x: Tensor, w: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Divide by the root mean square of the last dimension (no centering), then scale."""
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x * w if w is not None else x
