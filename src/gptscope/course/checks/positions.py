"""Checks for lesson 3: the sinusoidal table, rotary embeddings, ALiBi's biases."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gptscope.course.checks._common import Mismatch, call, compare, randn, run_cases, run_check
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf


def _sinusoid_variant(n_pos: int, d: int, base: float, start: int = 0, swap: bool = False,
                      exp_i: bool = False, concat: bool = False) -> torch.Tensor:
    pos = torch.arange(start, start + n_pos, dtype=torch.float64)[:, None]
    i = torch.arange(0, (d + 1) // 2, dtype=torch.float64)
    expo = i / d if exp_i else 2 * i / d
    ang = pos / base ** expo
    s, c = ang.sin(), ang[:, : d // 2].cos()
    if swap:
        s, c = ang.cos(), ang[:, : d // 2].sin()
    if concat:
        return torch.cat([s, c], dim=1).float()
    pe = torch.zeros(n_pos, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = s, c
    return pe.float()


def check_sinusoidal_positions(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for n_pos, d, base in [(2, 4, 10000.0), (16, 32, 10000.0), (50, 64, 10000.0),
                               (7, 6, 100.0), (5, 7, 10000.0)]:
            case = f"n_pos={n_pos}, d_model={d}, base={base:g}"
            want = gf.sinusoidal_positions(n_pos, d, base)
            got = call(fn, n_pos, d, base)
            compare(got, want, case, {
                "positions start at 1; the first row is position 0 (all sines 0, cosines 1)":
                    lambda: _sinusoid_variant(n_pos, d, base, start=1),
                "sin and cos swapped: even columns are sines, odd columns cosines":
                    lambda: _sinusoid_variant(n_pos, d, base, swap=True),
                "frequency exponent uses i instead of 2i: the pair (2i, 2i+1) has angle "
                "p / base^(2i/d_model)": lambda: _sinusoid_variant(n_pos, d, base, exp_i=True),
                "base ignored: the angle is p / base^(2i/d_model) with the base you were "
                "given, not always 10000": lambda: gf.sinusoidal_positions(n_pos, d, 10000.0)
                if base != 10000.0 else None,
                "sines and cosines concatenated in two halves; interleave them (even "
                "columns sin, odd columns cos)": lambda: _sinusoid_variant(n_pos, d, base,
                                                                          concat=True),
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("sinusoidal_positions", body)


# -- rotary embeddings ------------------------------------------------------------------------


def rotary_truth(x: torch.Tensor, positions: torch.Tensor, base: float, interleaved: bool = False,
                 sign: float = 1.0, exp_i: bool = False) -> torch.Tensor:
    """RoPE in float64 (and, with the flags, the layouts and mistakes used for diagnosis)."""
    x = x.double()
    d = x.shape[-1]
    i = torch.arange(d // 2, dtype=torch.float64)
    inv_freq = base ** (-(i if exp_i else 2 * i) / d)
    angles = torch.outer(positions.double(), inv_freq)
    cos, sin = angles.cos(), sign * angles.sin()
    if interleaved:
        first, second = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2], out[..., 1::2] = first * cos - second * sin, second * cos + first * sin
        return out
    first, second = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


ROTARY_CASES = [("x [5, 8], positions 0-4", (5, 8), 0, 10000.0),
                ("x [2, 3, 6, 16] (batch, head), positions 0-5", (2, 3, 6, 16), 0, 10000.0),
                ("x [4, 8], positions 7-10 (after a cached prefix)", (4, 8), 7, 10000.0),
                ("x [3, 4], base 100, positions 2-4", (3, 4), 2, 100.0)]


def check_rotary_embed(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, tuple[int, ...], int, float]) -> str:
        case, shape, start, base = spec
        x = randn(*shape, seed=500 + len(shape) + start, scale=1.5)
        positions = torch.arange(start, start + shape[-2])
        want = rotary_truth(x, positions, base)
        got = call(fn, x.clone(), positions.clone(), base)
        fromzero = torch.arange(shape[-2])
        compare(got, want, case, {
            "interleaved pairs (2i, 2i + 1) rotated (the GPT-J layout); this contract pairs "
            "feature i with i + d/2 (rotate half)": lambda: rotary_truth(x, positions, base,
                                                                         interleaved=True),
            "rotated the wrong way: the first half gets x1 cos - x2 sin, the second x2 cos + "
            "x1 sin": lambda: rotary_truth(x, positions, base, sign=-1.0),
            "frequency exponent uses i instead of 2i: the angle is position * base^(-2i/d)":
                lambda: rotary_truth(x, positions, base, exp_i=True),
            "positions ignored: rotate by the positions you were given, not 0, 1, 2, ...":
                lambda: rotary_truth(x, fromzero, base) if start else None,
            "base ignored: use the base argument, not always 10000":
                lambda: rotary_truth(x, positions, 10000.0) if base != 10000.0 else None,
        }, "rotary_embed", atol=1e-5, axes=("batch", "head", "pos", "feature")[-len(shape):])
        if got.dtype != x.dtype:
            raise Mismatch(f"{case}: returned dtype {got.dtype} for a {x.dtype} input; keep "
                           "the input's dtype")
        return case
    return run_check("rotary_embed", lambda: run_cases(ROTARY_CASES, one_case))


# -- ALiBi ------------------------------------------------------------------------------------


def alibi_truth(n_heads: int, n_query: int, n_key: int | None, first_head: int = 1,
                sign: float = 1.0, offset: bool = True, future: float | None = -math.inf
                ) -> torch.Tensor:
    """ALiBi's bias in float64 (the flags build the mistakes used for diagnosis)."""
    n_key = n_query if n_key is None else n_key
    h = torch.arange(first_head, first_head + n_heads, dtype=torch.float64)
    slopes = 2.0 ** (-8.0 * h / n_heads)
    q_pos = torch.arange(n_query, dtype=torch.float64)[:, None] + (n_key - n_query
                                                                   if offset else 0)
    distance = torch.arange(n_key, dtype=torch.float64)[None, :] - q_pos
    bias = sign * slopes[:, None, None] * distance
    return bias if future is None else bias.masked_fill(distance > 0, future)


ALIBI_CASES = [(4, 5, None), (8, 3, None), (2, 3, 6), (1, 4, None), (16, 2, 2)]


def check_alibi_bias(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[int, int, int | None]) -> str:
        H, n_q, n_k = spec
        case = f"n_heads={H}, n_query={n_q}" + (f", n_key={n_k}" if n_k else "")
        want = alibi_truth(H, n_q, n_k)
        got = call(fn, H, n_q) if n_k is None else call(fn, H, n_q, n_k)
        compare(got, want, case, {
            "slopes start at head 0 (slope 1): head h has slope 2^(-8 (h + 1) / n_heads)":
                lambda: alibi_truth(H, n_q, n_k, first_head=0),
            "the sign is flipped: distant keys must get a more *negative* bias, m * (j - i)":
                lambda: alibi_truth(H, n_q, n_k, sign=-1.0),
            "future keys are not masked: a key after the query must get -inf (the bias "
            "includes the causal mask)": lambda: alibi_truth(H, n_q, n_k, future=None),
            "future keys get 0; they must be -inf (the bias includes the causal mask)":
                lambda: alibi_truth(H, n_q, n_k, future=0.0),
            "with more keys than queries, the queries are the *last* positions (query i "
            "sits at n_key - n_query + i)": lambda: alibi_truth(H, n_q, n_k, offset=False)
            if n_k and n_k != n_q else None,
        }, "alibi_bias", axes=("head", "query", "key"))
        return case
    return run_check("alibi_bias", lambda: run_cases(ALIBI_CASES, one_case))
