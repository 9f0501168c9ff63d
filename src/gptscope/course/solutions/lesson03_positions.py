"""Lesson 3: the sinusoidal positional encoding of "Attention Is All You Need"."""

from __future__ import annotations

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
