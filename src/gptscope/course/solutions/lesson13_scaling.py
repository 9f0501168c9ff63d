"""Lesson 13: compute and scaling laws."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gptscope.config import ModelConfig


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token: 6 N + 12 L H Q T (the PaLM paper's appendix B).

    N = the matmul parameters: the blocks' weights (``cfg.n_params``: 4 H Q d_model per
    layer for attention plus 2 d_model d_mlp for the MLP) plus the unembedding d_model *
    d_vocab (the embedding is a lookup, not a matmul). 6 N = 2 N forward + 4 N backward.
    L layers, H heads, Q = d_head, T = seq_len (default ``cfg.n_ctx``): 12 L H Q T counts
    the attention scores and the weighted sum of values, forward and backward.
    """
    t = cfg.n_ctx if seq_len is None else seq_len
    n = cfg.n_params + cfg.d_model * cfg.d_vocab
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * t


def fit_power_law(n: Tensor, loss: Tensor) -> tuple[float, float]:
    """Fit loss = a * n^(-alpha) to a sweep; return (a, alpha) as floats.

    n [k] model sizes (or compute), loss [k] the losses reached. Take logs: log loss =
    log a - alpha log n is a straight line; fit it by least squares (natural logs) and
    turn the intercept back into a with exp. alpha > 0 when loss falls with size.
    """
    x = n.double().log()
    y = loss.double().log()
    xm, ym = x.mean(), y.mean()
    slope = ((x - xm) * (y - ym)).sum() / (x - xm).pow(2).sum()
    intercept = ym - slope * xm
    return math.exp(intercept.item()), -slope.item()


def doubling_time(years: Tensor, compute: Tensor) -> float:
    """Given: the doubling time (in the units of ``years``) of an exponential trend in
    ``compute``: fit log2(compute) = slope * years + c; the doubling time is 1 / slope."""
    slope = torch.linalg.lstsq(
        torch.stack([years.double(), torch.ones_like(years.double())], 1),
        compute.double().log2()[:, None]).solution[0, 0]
    return 1.0 / slope.item()


def explore_scaling() -> None:
    """Given: fit your power law to a generated sweep (true a=40, alpha=0.3, 1% noise), and
    read a doubling time off a generated compute trend that doubles every 6 months (the
    deep-learning-era rate quoted in seed 003's notes on "Compute Trends Across Three Eras")."""
    from gptscope.course.datasets import scaling_sweep

    n, loss = scaling_sweep(seed=0)
    a, alpha = fit_power_law(n, loss)
    print(f"power law: loss = {a:.1f} * N^-{alpha:.3f} (generated with 40 * N^-0.300)")
    years = torch.linspace(2012, 2022, 21, dtype=torch.float64)
    compute = 1e17 * 2.0 ** ((years - 2012) / 0.5)
    print(f"doubling time: {12 * doubling_time(years, compute):.1f} months")
