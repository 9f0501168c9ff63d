"""Checks for lessons 4 and 5: mask, attention, multi-head attention, LayerNorm, a block."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gptscope.config import ACTIVATIONS, ModelConfig
from gptscope.course.checks._common import (
    Mismatch,
    as_tensor,
    call,
    compare,
    module_as_function,
    randn,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf
from gptscope.model.layers import Block

# -- lesson 4 ---------------------------------------------------------------------------------


def check_causal_mask(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for n_q, n_k in [(1, None), (4, None), (7, None), (3, 5), (1, 6)]:
            want = gf.causal_mask(n_q, n_k)
            case = f"n_query={n_q}" + (f", n_key={n_k}" if n_k else "")
            got = call(fn, n_q) if n_k is None else call(fn, n_q, n_k)
            got = as_tensor(got, "causal_mask")
            if got.dtype != torch.bool and got.shape == want.shape:
                if set(got.unique().tolist()) <= {0, 1}:
                    raise Mismatch("return a bool tensor (True = may attend); yours holds "
                                   f"{got.dtype} 0/1 values: use `.bool()` or a comparison",
                                   [f"case: {case}"])
                raise Mismatch(f"return a bool tensor (True = may attend), got {got.dtype} "
                               "(an additive -inf mask is a different convention)",
                               [f"case: {case}"])
            k = n_q if n_k is None else n_k
            off = k - n_q
            compare(got, want, case, {
                "diagonal excluded: a token may attend to itself":
                    lambda: _strict(n_q, k),
                "upper instead of lower triangle: True must mark the past (key <= query), "
                "not the future": lambda: _upper(n_q, k),
                "True marks what is hidden; the mask must be True where a query *may* attend":
                    lambda: ~gf.causal_mask(n_q, n_k),
                "with more keys than queries, the queries are the *last* positions (query i "
                "sits at n_key - n_query + i)": lambda: torch.ones(n_q, k, dtype=torch.bool)
                    .tril() if off else None,
            })
            cases.append(case)
        return cases
    return run_check("causal_mask", body)


def _strict(n_q: int, n_k: int) -> torch.Tensor:
    q = torch.arange(n_q)[:, None] + (n_k - n_q)
    return torch.arange(n_k)[None, :] < q


def _upper(n_q: int, n_k: int) -> torch.Tensor:
    q = torch.arange(n_q)[:, None] + (n_k - n_q)
    return torch.arange(n_k)[None, :] >= q


def _attn_variant(q, k, v, mask, scale: float | None = None, axis: int = -1,
                  flip_mask: bool = False):
    d = q.shape[-1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if flip_mask else ~mask, float("-inf"))
    return scores.softmax(axis) @ v


def check_attention(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        specs = [
            ("q, k, v [5, 8], no mask", (5,), 5, 8, False),
            ("batch and heads [2, 3, 6, 16], causal mask", (2, 3), 6, 16, True),
            ("d_head 64, causal", (1,), 7, 64, True),
            ("more keys than queries [2, 3 queries, 5 keys]", (2,), (3, 5), 4, True),
        ]
        for i, (case, lead, n, d, masked) in enumerate(specs):
            n_q, n_k = n if isinstance(n, tuple) else (n, n)
            q = randn(*lead, n_q, d, seed=10 * i, scale=2.0)
            k = randn(*lead, n_k, d, seed=10 * i + 1, scale=2.0)
            v = randn(*lead, n_k, d, seed=10 * i + 2)
            mask = gf.causal_mask(n_q, n_k) if masked else None
            want = gf.attention(q, k, v, mask)
            got = call(fn, q.clone(), k.clone(), v.clone(), mask)
            variants = {
                "scores not divided by sqrt(d_head)":
                    lambda: _attn_variant(q, k, v, mask, scale=1.0),
                "scores divided by d_head instead of sqrt(d_head)":
                    lambda: _attn_variant(q, k, v, mask, scale=1 / d),
                "softmax taken over the wrong axis: normalise over keys (the last axis), so "
                "each query's weights sum to 1": lambda: _attn_variant(q, k, v, None, axis=-2)
                if mask is None else _attn_variant(q, k, v, mask, axis=-2),
                "the mask hides the past instead of the future: fill -inf where the mask is "
                "False": lambda: _attn_variant(q, k, v, mask, flip_mask=True)
                if mask is not None else None,
                "the mask was ignored: masked scores must become -inf before the softmax":
                    lambda: _attn_variant(q, k, v, None) if mask is not None else None,
                "returned the attention pattern instead of pattern @ v":
                    lambda: _attn_pattern(q, k, mask),
            }
            compare(got, want, case, variants, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("attention", body)


def _attn_pattern(q, k, mask):
    return gf.attention(q, k, k, mask, return_pattern=True)[1]


def _mha_params(H: int, d: int, dh: int, seed: int) -> dict[str, torch.Tensor]:
    s = 1 / math.sqrt(d)
    return {"W_Q": randn(H, d, dh, seed=seed, scale=s), "W_K": randn(H, d, dh, seed=seed + 1,
                                                                   scale=s),
            "W_V": randn(H, d, dh, seed=seed + 2, scale=s),
            "W_O": randn(H, dh, d, seed=seed + 3, scale=1 / math.sqrt(dh)),
            "b_Q": randn(H, dh, seed=seed + 4, scale=0.1), "b_K": randn(H, dh, seed=seed + 5,
                                                                       scale=0.1),
            "b_V": randn(H, dh, seed=seed + 6, scale=0.1), "b_O": randn(d, seed=seed + 7,
                                                                       scale=0.1)}


def _mha_variant(x, p, causal, scale=None, bias_o=True, per_head_scale=False):
    q = torch.einsum("bpm,hmd->bhpd", x, p["W_Q"]) + p["b_Q"][None, :, None]
    k = torch.einsum("bpm,hmd->bhpd", x, p["W_K"]) + p["b_K"][None, :, None]
    v = torch.einsum("bpm,hmd->bhpd", x, p["W_V"]) + p["b_V"][None, :, None]
    mask = gf.causal_mask(x.shape[1]) if causal else None
    z = gf.attention(q, k, v, mask, scale=scale)
    out = torch.einsum("bhpd,hdm->bpm", z, p["W_O"])
    return out + p["b_O"] if bias_o else out


def check_multihead_attention(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for i, (batch, pos, H, d, dh, causal) in enumerate(
                [(2, 5, 4, 16, 4, True), (1, 7, 2, 12, 8, True), (3, 4, 3, 9, 5, False)]):
            x = randn(batch, pos, d, seed=100 + i)
            p = _mha_params(H, d, dh, seed=200 + 10 * i)
            want = gf.multihead_attention(x, p["W_Q"], p["W_K"], p["W_V"], p["W_O"], p["b_Q"],
                                          p["b_K"], p["b_V"], p["b_O"], causal=causal)
            case = f"batch={batch}, pos={pos}, heads={H}, d_model={d}, d_head={dh}, " \
                   f"causal={causal}"
            got = call(fn, x.clone(), p["W_Q"], p["W_K"], p["W_V"], p["W_O"], p["b_Q"],
                       p["b_K"], p["b_V"], p["b_O"], causal=causal)
            compare(got, want, case, {
                "no causal mask: with causal=True each position may only attend to itself "
                "and earlier positions": lambda: _mha_variant(x, p, False) if causal else None,
                "a causal mask was applied although causal=False":
                    lambda: _mha_variant(x, p, True) if not causal else None,
                "scores divided by sqrt(d_model) instead of sqrt(d_head)":
                    lambda: _mha_variant(x, p, causal, scale=1 / math.sqrt(d)),
                "scores not divided by sqrt(d_head)": lambda: _mha_variant(x, p, causal,
                                                                          scale=1.0),
                "the output bias b_O is missing": lambda: _mha_variant(x, p, causal,
                                                                      bias_o=False),
                "b_O added once per head; add it once after summing the heads":
                    lambda: _mha_variant(x, p, causal) + (H - 1) * p["b_O"],
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("multihead_attention", body)


# -- lesson 5 ---------------------------------------------------------------------------------

def check_layer_norm(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for i, (shape, eps) in enumerate([((4, 8), 1e-5), ((2, 3, 16), 1e-5),
                                          ((3, 5), 0.5), ((2, 6), 1e-5)]):
            scale = 1e-2 if i == 3 else 2.0
            x = randn(*shape, seed=300 + i, scale=scale) + 3.0
            d = shape[-1]
            w = 1 + randn(d, seed=310 + i, scale=0.2)
            b = randn(d, seed=320 + i, scale=0.2)
            want = gf.layer_norm(x, w, b, eps)
            case = f"x {list(shape)}, eps={eps:g}" + (", small variance" if i == 3 else "")
            got = call(fn, x.clone(), w, b, eps)
            c = x - x.mean(-1, keepdim=True)
            compare(got, want, case, {
                "used the unbiased variance (divide by d - 1); LayerNorm divides by d":
                    lambda: c / (x.var(-1, keepdim=True) + eps).sqrt() * w + b,
                "eps added outside the square root: divide by sqrt(var + eps)":
                    lambda: c / (c.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w + b,
                "forgot to subtract the mean": lambda: x / (x.pow(2).mean(-1, keepdim=True)
                                                            + eps).sqrt() * w + b,
                "w and b not applied (scale by w, then add b)": lambda: gf.layer_norm(
                    x, None, None, eps),
                "normalised over the wrong dimension; use the last one (-1)":
                    lambda: _ln_dim0(x, w, b, eps),
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("layer_norm", body)


def _ln_dim0(x, w, b, eps):
    c = x - x.mean(0, keepdim=True)
    return c / (c.pow(2).mean(0, keepdim=True) + eps).sqrt() * w + b


def block_config(causal: bool = True, seed: int = 0) -> ModelConfig:
    return ModelConfig(n_layers=1, d_model=16, n_heads=4, d_vocab=11, n_ctx=8, causal=causal,
                       seed=seed)


def reference_block(cfg: ModelConfig) -> Block:
    """A Block with random (non-trivial) weights, LayerNorm weights and biases included."""
    block = Block(cfg)
    g = torch.Generator().manual_seed(cfg.seed or 0)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith(".w"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-2]))
    return block.eval()


def _block_variant(x, p, cfg, pre_ln=True, residual=True, act="gelu_new", causal=None):
    causal = cfg.causal if causal is None else causal

    def ln(h, n):
        return gf.layer_norm(h, p[f"{n}.w"], p[f"{n}.b"], cfg.eps)

    def attn(h):
        return gf.multihead_attention(h, p["attn.W_Q"], p["attn.W_K"], p["attn.W_V"],
                                      p["attn.W_O"], p["attn.b_Q"], p["attn.b_K"],
                                      p["attn.b_V"], p["attn.b_O"], causal=causal)

    def mlp(h):
        return ACTIVATIONS[act](h @ p["mlp.W_in"] + p["mlp.b_in"]) @ p["mlp.W_out"] + p["mlp.b_out"]

    if not pre_ln:
        mid = ln(x + attn(x), "ln1")
        return ln(mid + mlp(mid), "ln2")
    if not residual:
        return mlp(ln(attn(ln(x, "ln1")), "ln2"))
    mid = x + attn(ln(x, "ln1"))
    return mid + mlp(ln(mid, "ln2"))


def check_transformer_block(fn: Callable[..., Any]) -> CheckResult:
    fn = module_as_function(fn)

    def body() -> list[str]:
        cases = []
        for i, (causal, batch, pos) in enumerate([(True, 2, 6), (True, 1, 8), (False, 3, 5)]):
            cfg = block_config(causal=causal, seed=i)
            block = reference_block(cfg)
            params = {k: v.detach().clone() for k, v in block.state_dict().items()}
            x = randn(batch, pos, cfg.d_model, seed=400 + i)
            with torch.no_grad():
                want = block(x, None)
                got = call(fn, x.clone(), params, cfg)
            case = f"batch={batch}, pos={pos}, causal={causal} (reference Block's weights)"
            compare(got, want, case, {
                "no causal mask in the attention (cfg.causal is True)":
                    lambda: _block_variant(x, params, cfg, causal=False) if causal else None,
                "causal mask applied although cfg.causal is False (an encoder block)":
                    lambda: _block_variant(x, params, cfg, causal=True) if not causal else None,
                "post-LN order (normalise after each add); GPT-2 normalises the input of "
                "each sublayer: x + attn(ln1(x))": lambda: _block_variant(x, params, cfg,
                                                                         pre_ln=False),
                "residual connections missing: add each sublayer's output to its input":
                    lambda: _block_variant(x, params, cfg, residual=False),
                "exact (erf) GELU used; GPT-2 uses the tanh approximation":
                    lambda: _block_variant(x, params, cfg, act="gelu"),
                "ReLU used in the MLP; GPT-2 uses GELU (tanh approximation)":
                    lambda: _block_variant(x, params, cfg, act="relu"),
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("transformer_block", body)

