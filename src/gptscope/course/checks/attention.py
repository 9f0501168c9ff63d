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
    float32_atol,
    module_as_function,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf
from gptscope.model.layers import Block

# -- lesson 4 ---------------------------------------------------------------------------------


MASK_CASES = [(4, None), (7, None), (3, 5), (1, 6), (1, None), (2, 2)]


def check_causal_mask(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[int, int | None]) -> str:
        n_q, n_k = spec
        want = gf.causal_mask(n_q, n_k)
        case = f"n_query={n_q}" + (f", n_key={n_k}" if n_k else "")
        got = as_tensor(call(fn, n_q) if n_k is None else call(fn, n_q, n_k), "causal_mask")
        if got.dtype != torch.bool and got.shape == want.shape and not got.is_complex() \
                and set(got.unique().tolist()) <= {0, 1}:
            raise Mismatch("return a bool tensor (True = may attend); yours holds "
                           f"{got.dtype} 0/1 values: use `.bool()` or a comparison",
                           [f"case: {case}"])
        if got.is_floating_point() and got.shape == want.shape:
            raise Mismatch(f"return a bool tensor (True = may attend), got {got.dtype} "
                           "(an additive -inf mask is a different convention)",
                           [f"case: {case}"])
        k = n_q if n_k is None else n_k
        compare(got, want, case, {
            "diagonal excluded: a token may attend to itself": lambda: _strict(n_q, k),
            "upper instead of lower triangle: True must mark the past (key <= query), "
            "not the future": lambda: _upper(n_q, k),
            "True marks what is hidden; the mask must be True where a query *may* attend":
                lambda: ~gf.causal_mask(n_q, n_k),
            "with more keys than queries, the queries are the *last* positions (query i "
            "sits at n_key - n_query + i)": lambda: torch.ones(n_q, k, dtype=torch.bool)
                .tril() if k != n_q else None,
            "your mask is square [n_query, n_query]: n_key was ignored; with n_key keys it "
            "must be [n_query, n_key] (n_key = n_query only when n_key is None)":
                lambda: gf.causal_mask(n_q) if k != n_q else None,
        }, "causal_mask", axes=("query", "key"))
        return case
    return run_check("causal_mask", lambda: run_cases(MASK_CASES, one_case))


def _strict(n_q: int, n_k: int) -> torch.Tensor:
    q = torch.arange(n_q)[:, None] + (n_k - n_q)
    return torch.arange(n_k)[None, :] < q


def _upper(n_q: int, n_k: int) -> torch.Tensor:
    q = torch.arange(n_q)[:, None] + (n_k - n_q)
    return torch.arange(n_k)[None, :] >= q


def _attn_variant(q, k, v, mask, scale: float | None = None, axis: int = -1,
                  flip_mask: bool = False, fill: float = float("-inf")):
    d = q.shape[-1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if flip_mask else ~mask, fill)
    return scores.softmax(axis) @ v


ATTENTION_CASES = [
    ("q, k, v [5, 8], no mask", (5,), 5, 8, False, 2.0),
    ("batch and heads [2, 3, 6, 16], causal mask", (2, 3), 6, 16, True, 2.0),
    ("d_head 64, causal", (1,), 7, 64, True, 2.0),
    ("more keys than queries [2, 3 queries, 5 keys]", (2,), (3, 5), 4, True, 2.0),
    ("large scores (q and k of size 30), causal", (2,), 4, 8, True, 30.0),
]


def _attention_variants(q, k, v, mask) -> dict[str, Callable[[], Any]]:
    d = q.shape[-1]
    masked = mask is not None
    return {
        "scores not divided by sqrt(d_head)": lambda: _attn_variant(q, k, v, mask, scale=1.0),
        "scores divided by d_head instead of sqrt(d_head)":
            lambda: _attn_variant(q, k, v, mask, scale=1 / d),
        "softmax taken over the wrong axis: normalise over keys (the last axis), so "
        "each query's weights sum to 1": lambda: _attn_variant(q, k, v, mask, axis=-2),
        "the mask hides the past instead of the future: fill -inf where the mask is "
        "False": lambda: _attn_variant(q, k, v, mask, flip_mask=True) if masked else None,
        "the mask was ignored: masked scores must become -inf before the softmax":
            lambda: _attn_variant(q, k, v, None) if masked else None,
        "masked scores were set to 0; they must become -inf (exp(0) = 1 still lets the "
        "query see the future)": lambda: _attn_variant(q, k, v, mask, fill=0.0)
        if masked else None,
        "the mask was applied after the softmax without renormalising: mask the scores "
        "(-inf) before the softmax, so each row still sums to 1":
            lambda: _attn_pattern(q, k, None).masked_fill(~mask, 0) @ v if masked else None,
        "softmax overflows for large scores (nan/inf): subtract each row's max before exp, "
        "or use torch.softmax": lambda: _attn_naive_exp(q, k, v, mask),
        "returned the attention pattern instead of pattern @ v":
            lambda: _attn_pattern(q, k, mask),
        "q and k swapped in the scores: scores = q @ k^T, one row per query and one "
        "column per key": lambda: _attn_variant(k, q, v, mask)
        if q.shape[-2] == k.shape[-2] else None,
    }


def check_attention(fn: Callable[..., Any]) -> CheckResult:
    def one_case(i: int) -> str:
        case, lead, n, d, masked, size = ATTENTION_CASES[i]
        n_q, n_k = n if isinstance(n, tuple) else (n, n)
        q = randn(*lead, n_q, d, seed=10 * i, scale=size)
        k = randn(*lead, n_k, d, seed=10 * i + 1, scale=size)
        v = randn(*lead, n_k, d, seed=10 * i + 2)
        mask = gf.causal_mask(n_q, n_k) if masked else None
        want = gf.attention(q.double(), k.double(), v.double(), mask)
        got = call(fn, q.clone(), k.clone(), v.clone(), mask)
        q, k, v = q.double(), k.double(), v.double()
        compare(got, want, case, _attention_variants(q, k, v, mask), "attention",
                atol=float32_atol(want, gf.attention(q.float(), k.float(), v.float(), mask)),
                axes=("batch", "head", "query", "d_head")[-want.dim():])
        return case
    return run_check("attention", lambda: run_cases(range(len(ATTENTION_CASES)), one_case))


def _attn_naive_exp(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).float()
    weights = scores.exp() if mask is None else scores.exp().masked_fill(~mask, 0)
    return (weights / weights.sum(-1, keepdim=True)).double() @ v


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


MHA_CASES = [(2, 5, 4, 16, 4, True), (1, 7, 2, 12, 8, True), (3, 4, 3, 9, 5, False),
             (2, 3, 2, 8, 3, True)]


def _mha_variants(x, p, causal: bool) -> dict[str, Callable[[], Any]]:
    H, d, dh = p["W_Q"].shape
    no_qkv_bias = p | {name: torch.zeros_like(p[name]) for name in ("b_Q", "b_K", "b_V")}
    return {
        "no causal mask: with causal=True each position may only attend to itself "
        "and earlier positions": lambda: _mha_variant(x, p, False) if causal else None,
        "a causal mask was applied although causal=False":
            lambda: _mha_variant(x, p, True) if not causal else None,
        "scores divided by sqrt(d_model) instead of sqrt(d_head)":
            lambda: _mha_variant(x, p, causal, scale=1 / math.sqrt(d)),
        "scores divided by d_head instead of sqrt(d_head)":
            lambda: _mha_variant(x, p, causal, scale=1 / dh),
        "scores not divided by sqrt(d_head)": lambda: _mha_variant(x, p, causal, scale=1.0),
        "the output bias b_O is missing": lambda: _mha_variant(x, p, causal, bias_o=False),
        "b_O added once per head; add it once after summing the heads":
            lambda: _mha_variant(x, p, causal) + (H - 1) * p["b_O"],
        "the biases b_Q, b_K, b_V are missing: add each head's bias to its q, k and v":
            lambda: _mha_variant(x, no_qkv_bias, causal),
        "heads averaged; the output sums the heads' contributions (z @ W_O per head, then "
        "sum over heads)": lambda: (_mha_variant(x, p, causal, bias_o=False) / H + p["b_O"]),
    }


def check_multihead_attention(fn: Callable[..., Any]) -> CheckResult:
    def one_case(i: int) -> str:
        batch, pos, H, d, dh, causal = MHA_CASES[i]
        x = randn(batch, pos, d, seed=100 + i)
        p = _mha_params(H, d, dh, seed=200 + 10 * i)
        args = [p[n] for n in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")]
        x64, p64 = x.double(), {k: v.double() for k, v in p.items()}
        want = gf.multihead_attention(x64, *[p64[n] for n in ("W_Q", "W_K", "W_V", "W_O",
                                                              "b_Q", "b_K", "b_V", "b_O")],
                                      causal=causal)
        case = f"batch={batch}, pos={pos}, heads={H}, d_model={d}, d_head={dh}, " \
               f"causal={causal}"
        got = call(fn, x.clone(), *args, causal=causal)
        compare(got, want, case, _mha_variants(x64, p64, causal), "multihead_attention",
                atol=float32_atol(want, gf.multihead_attention(x, *args, causal=causal)),
                axes=("batch", "pos", "d_model"))
        return case
    return run_check("multihead_attention", lambda: run_cases(range(len(MHA_CASES)),
                                                              one_case))


# -- lesson 5 ---------------------------------------------------------------------------------

LN_CASES = [((4, 8), 1e-5, 2.0, ""), ((2, 3, 16), 1e-5, 2.0, ""), ((3, 5), 0.5, 2.0, ""),
            ((2, 6), 1e-5, 1e-2, ", small variance"), ((8,), 1e-5, 1.0, ", one vector"),
            ((2, 2, 2, 5), 1e-3, 1e-2, ", 4-d, eps=1e-3 near the variance")]


def check_layer_norm(fn: Callable[..., Any]) -> CheckResult:
    def one_case(i: int) -> str:
        shape, eps, scale, note = LN_CASES[i]
        x = randn(*shape, seed=300 + i, scale=scale) + 3.0
        d = shape[-1]
        w = 1 + randn(d, seed=310 + i, scale=0.2)
        b = randn(d, seed=320 + i, scale=0.2)
        x64, w64, b64 = x.double(), w.double(), b.double()
        want = gf.layer_norm(x64, w64, b64, eps)  # float64 truth
        atol = float32_atol(want, gf.layer_norm(x, w, b, eps))
        case = f"x {list(shape)}, eps={eps:g}{note}"
        got = call(fn, x.clone(), w.clone(), b.clone(), eps)
        c = x64 - x64.mean(-1, keepdim=True)
        var = c.pow(2).mean(-1, keepdim=True)
        compare(got, want, case, {
            "used the unbiased variance (divide by d - 1); LayerNorm divides by d":
                lambda: c / (x64.var(-1, keepdim=True) + eps).sqrt() * w64 + b64,
            "eps added outside the square root: divide by sqrt(var + eps)":
                lambda: c / (var.sqrt() + eps) * w64 + b64,
            "eps ignored: divide by sqrt(var + eps), with the eps you were given":
                lambda: c / var.sqrt() * w64 + b64,
            "eps fixed at 1e-5: use the eps argument": lambda: c / (var + 1e-5).sqrt() * w64
                + b64 if eps != 1e-5 else None,
            "forgot to subtract the mean": lambda: x64 / (x64.pow(2).mean(-1, keepdim=True)
                                                        + eps).sqrt() * w64 + b64,
            "w and b not applied (scale by w, then add b)": lambda: gf.layer_norm(
                x64, None, None, eps),
            "w and b swapped: scale by w, then add b": lambda: c / (var + eps).sqrt() * b64
                + w64,
            "normalised over the wrong dimension; use the last one (-1)":
                lambda: _ln_dim0(x64, w64, b64, eps),
        }, "layer_norm", atol=atol, axes=("row",) * (len(shape) - 1) + ("feature",))
        return case
    return run_check("layer_norm", lambda: run_cases(range(len(LN_CASES)), one_case))


RMS_CASES = [((4, 8), 1e-6, 2.0, ""), ((2, 3, 16), 1e-6, 1.0, ""), ((3, 5), 0.5, 1.0, ""),
             ((2, 6), 1e-6, 1e-3, ", tiny values"), ((6,), 1e-2, 0.1, ", one vector")]


def check_rms_norm(fn: Callable[..., Any]) -> CheckResult:
    def one_case(i: int) -> str:
        shape, eps, scale, note = RMS_CASES[i]
        x = randn(*shape, seed=600 + i, scale=scale) + 0.5 * scale
        w = 1 + randn(shape[-1], seed=610 + i, scale=0.3)
        x64, w64 = x.double(), w.double()
        mean_sq = x64.pow(2).mean(-1, keepdim=True)
        want = x64 / (mean_sq + eps).sqrt() * w64
        case = f"x {list(shape)}, eps={eps:g}{note}"
        got = call(fn, x.clone(), w.clone(), eps)
        centred = x64 - x64.mean(-1, keepdim=True)
        compare(got, want, case, {
            "the mean was subtracted: that is LayerNorm; RMSNorm only divides by the root "
            "mean square": lambda: centred / (centred.pow(2).mean(-1, keepdim=True)
                                              + eps).sqrt() * w64,
            "eps added outside the square root: divide by sqrt(mean(x^2) + eps)":
                lambda: x64 / (mean_sq.sqrt() + eps) * w64,
            "eps ignored: divide by sqrt(mean(x^2) + eps)": lambda: x64 / mean_sq.sqrt() * w64,
            "divided by the sum of squares, not their mean (over the last dimension)":
                lambda: x64 / (x64.pow(2).sum(-1, keepdim=True) + eps).sqrt() * w64,
            "divided by the standard deviation: RMSNorm uses the root mean square, "
            "sqrt(mean(x^2)), with no centring": lambda: x64 / (x64.var(
                -1, keepdim=True, correction=0) + eps).sqrt() * w64,
            "w not applied: scale the normalised vector by w": lambda: x64 / (mean_sq
                                                                               + eps).sqrt(),
        }, "rms_norm", atol=float32_atol(want, x / (x.pow(2).mean(-1, keepdim=True)
                                                    + eps).sqrt() * w),
            axes=("row",) * (len(shape) - 1) + ("feature",))
        return case
    return run_check("rms_norm", lambda: run_cases(range(len(RMS_CASES)), one_case))


def _ln_dim0(x, w, b, eps):
    c = x - x.mean(0, keepdim=True)
    return c / (c.pow(2).mean(0, keepdim=True) + eps).sqrt() * w + b


def block_config(causal: bool = True, seed: int = 0, d_head: int | None = None,
                 attn_only: bool = False) -> ModelConfig:
    return ModelConfig(n_layers=1, d_model=16, n_heads=4, d_vocab=11, n_ctx=8, causal=causal,
                       seed=seed, d_head=d_head, attn_only=attn_only)


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
        if cfg.attn_only:
            return torch.zeros_like(h)
        return ACTIVATIONS[act](h @ p["mlp.W_in"] + p["mlp.b_in"]) @ p["mlp.W_out"] + p["mlp.b_out"]

    if not pre_ln:
        mid = ln(x + attn(x), "ln1")
        return mid if cfg.attn_only else ln(mid + mlp(mid), "ln2")
    if not residual:
        return mlp(ln(attn(ln(x, "ln1")), "ln2")) if not cfg.attn_only else attn(ln(x, "ln1"))
    mid = x + attn(ln(x, "ln1"))
    return mid + mlp(ln(mid, "ln2")) if not cfg.attn_only else mid


BLOCK_CASES = [(True, 2, 6, None, False), (True, 1, 8, None, False), (False, 3, 5, None, False),
               (True, 2, 5, 6, False), (True, 2, 6, None, True)]


def _unused(x: torch.Tensor, params: dict, cfg: ModelConfig) -> dict[str, Callable[[], Any]]:
    """The block's output with one parameter left out (a bias zeroed, a norm's weight and
    bias set to 1 and 0, ln2's taken from ln1), one mistake per parameter."""
    def without(**changes: torch.Tensor) -> Callable[[], torch.Tensor]:
        return lambda: _block_variant(x, params | changes, cfg)
    variants = {f"{name} is not used: your output is what the block gives without it":
                without(**{name: torch.zeros_like(params[name])})
                for name in params if name.rsplit(".", 1)[-1].startswith("b_")}
    for ln in ("ln1", "ln2") if not cfg.attn_only else ("ln1",):
        w, b = params[f"{ln}.w"], params[f"{ln}.b"]
        variants[f"{ln}'s weight and bias are not applied (scale by w, then add b)"] = without(
            **{f"{ln}.w": torch.ones_like(w), f"{ln}.b": torch.zeros_like(b)})
    if not cfg.attn_only:
        variants["ln1 used for both sublayers; the MLP reads ln2(mid)"] = without(
            **{"ln2.w": params["ln1.w"], "ln2.b": params["ln1.b"]})
    return variants


def check_transformer_block(fn: Callable[..., Any]) -> CheckResult:
    fn = module_as_function(fn)

    def one_case(i: int) -> str:
        causal, batch, pos, d_head, attn_only = BLOCK_CASES[i]
        cfg = block_config(causal=causal, seed=i, d_head=d_head, attn_only=attn_only)
        block = reference_block(cfg)
        params = {k: v.detach().clone() for k, v in block.state_dict().items()}
        x = randn(batch, pos, cfg.d_model, seed=400 + i)
        with torch.no_grad():
            want = block.double()(x.double(), None)
            got = call(fn, x.clone(), params, cfg)
        case = (f"batch={batch}, pos={pos}, causal={causal}"
                + (f", d_head={d_head} (not d_model / n_heads)" if d_head else "")
                + (", attention-only (no MLP, no ln2)" if attn_only else "")
                + " (reference Block's weights)")
        x, p64 = x.double(), {k: v.double() for k, v in params.items()}
        compare(got, want, case, {
            "no causal mask in the attention (cfg.causal is True)":
                lambda: _block_variant(x, p64, cfg, causal=False) if causal else None,
            "causal mask applied although cfg.causal is False (an encoder block)":
                lambda: _block_variant(x, p64, cfg, causal=True) if not causal else None,
            "post-LN order (normalise after each add); GPT-2 normalises the input of "
            "each sublayer: x + attn(ln1(x))": lambda: _block_variant(x, p64, cfg,
                                                                     pre_ln=False),
            "residual connections missing: add each sublayer's output to its input":
                lambda: _block_variant(x, p64, cfg, residual=False),
            "exact (erf) GELU used; GPT-2 uses the tanh approximation":
                lambda: _block_variant(x, p64, cfg, act="gelu"),
            "ReLU used in the MLP; GPT-2 uses GELU (tanh approximation)":
                lambda: _block_variant(x, p64, cfg, act="relu"),
        } | _unused(x, p64, cfg), "transformer_block", atol=1e-4,
            axes=("batch", "pos", "d_model"))
        return case
    return run_check("transformer_block", lambda: run_cases(range(len(BLOCK_CASES)),
                                                            one_case))
