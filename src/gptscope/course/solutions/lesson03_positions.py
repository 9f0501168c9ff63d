"""Lesson 3: positions. The sinusoidal table of "Attention Is All You Need", rotary embeddings
(RoPE) and ALiBi's linear biases."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_positions(n_pos: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The table PE [n_pos, d_model] (float32) of fixed position vectors.

    PE[p, 2i] = sin(p / base^(2i / d_model)) and PE[p, 2i + 1] = cos(p / base^(2i / d_model)):
    even columns are sines, odd columns cosines, the pair (2i, 2i+1) sharing one frequency.
    Positions start at 0. For odd d_model the last column is a sine.

    Hint: ``torch.arange(n_pos)[:, None]`` times a row of frequencies gives every angle;
    compute in float64 and convert at the end for accuracy.
    """
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angles = pos / base ** (two_i / d_model)  # [n_pos, ceil(d_model / 2)]
    pe = torch.zeros(n_pos, d_model, dtype=torch.float64)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles[:, : d_model // 2].cos()
    return pe.float()


def rotary_embed(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021) of queries or keys.

    x [..., pos, d] with d even; positions [pos] integer positions (they need not start at
    0: with a cache they continue from the prefix). Feature pairs (i, i + d/2) for
    i < d/2 (the "rotate half" layout of GPT-NeoX, LLaMA and TransformerLens) rotate by the
    angle positions[p] * base^(-2i / d):
        out[..., i]         = x[..., i] * cos - x[..., i + d/2] * sin
        out[..., i + d/2]   = x[..., i + d/2] * cos + x[..., i] * sin
    Returns the same shape and dtype as x.

    Hint: build the angles [pos, d/2] in float64 with ``torch.outer``.
    """
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    angles = torch.outer(positions.double(), inv_freq)  # [pos, d/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def alibi_bias(n_heads: int, n_query: int, n_key: int | None = None) -> Tensor:
    """ALiBi's additive attention bias (Press et al. 2022), causal mask included.

    Returns float32 [n_heads, n_query, n_key]. Head h (0-based) has slope
    m_h = 2^(-8 (h + 1) / n_heads) (n_heads a power of two; raise ValueError otherwise).
    As in ``causal_mask``, query i sits at absolute position n_key - n_query + i (n_key
    defaults to n_query). A key j at or before the query gets bias m_h * (j - position of
    the query), zero for the query's own position and more negative with distance; a key
    after the query gets -inf.
    """
    if n_heads < 1 or n_heads & (n_heads - 1):
        raise ValueError(f"n_heads must be a power of two, got {n_heads}")
    n_key = n_query if n_key is None else n_key
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, dtype=torch.float64) / n_heads)
    q_pos = torch.arange(n_query, dtype=torch.float64)[:, None] + (n_key - n_query)
    distance = torch.arange(n_key, dtype=torch.float64)[None, :] - q_pos  # [query, key]
    bias = slopes[:, None, None] * distance
    return bias.masked_fill(distance > 0, -math.inf).float()


def explore_shift_is_rotation(offset: int = 5, d_model: int = 16) -> float:
    """Given: moving every position by ``offset`` rotates each (sin, cos) pair by a fixed angle.

    For the pair with frequency w, (sin w(p+k), cos w(p+k)) is (sin wp, cos wp) rotated by
    the angle w k, whatever p is: attention can read relative offsets with a linear map.
    Prints and returns the largest error of that rotation over all positions and pairs.
    """
    pe = sinusoidal_positions(64 + offset, d_model).double()
    w = 1.0 / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    s, c = pe[:64, 0::2], pe[:64, 1::2]
    ang = w * offset
    rot_s = s * ang.cos() + c * ang.sin()  # sin(a + b) = sin a cos b + cos a sin b
    rot_c = c * ang.cos() - s * ang.sin()  # cos(a + b) = cos a cos b - sin a sin b
    err = max((rot_s - pe[offset:, 0::2]).abs().max().item(),
              (rot_c - pe[offset:, 1::2]).abs().max().item())
    print(f"shifting by {offset} positions = a rotation per frequency; max error {err:.2e}")
    return err
