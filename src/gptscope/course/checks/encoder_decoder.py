"""Checks for lesson 5b: cross-attention, a decoder block with cross-attention, greedy
decoding with an encoder-decoder.

cross_attention and decoder_block_with_cross are compared with float64 truths written out
here (tests/course check them against gptscope's own Attention and Block), each with one
switch per known mistake. The cases have padded sources, targets shorter and longer than
the sources, a d_head that is not d_model / n_heads, and LayerNorm weights that differ
between the three norms, so each mistake changes the answer. greedy_translate is replayed
against a reference decoding loop, equal to ``EncoderDecoder.generate``, on small seeded
models whose rows stop at different steps.
"""

# The wrong-variant lambdas are called by compare() in the same case that makes them, so
# the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._common import (
    Mismatch,
    call,
    compare,
    float32_atol,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model.encoder_decoder import EncoderDecoder, pair_configs

# -- cross_attention --------------------------------------------------------------------------

CROSS_CAUSAL = ("a causal mask was applied: cross-attention is never causal, every target "
                "position may look at every source token")
KEYS_FROM_DECODER = ("the keys come from decoder_resid: in cross-attention keys and values "
                     "both come from encoder_out")
VALUES_FROM_DECODER = ("the values come from decoder_resid: in cross-attention keys and "
                       "values both come from encoder_out")
SELF_ATTENTION = ("queries, keys and values all come from decoder_resid, which is "
                  "self-attention: keys and values must come from encoder_out")
ROLES_SWAPPED = ("queries come from encoder_out and keys and values from decoder_resid: the "
                 "queries are the decoder's, keys and values the encoder's")
MASK_IGNORED = ("the source padding mask is ignored: padding positions must get attention "
                "weight 0")
MASK_INVERTED = ("the mask is inverted: src_mask is True at real source tokens (attend) and "
                 "False at padding")
MASK_ZERO = ("padding scores were set to 0 instead of -inf: a score of 0 still gets weight "
             "after the softmax; use scores.masked_fill(~mask, float('-inf'))")
MASK_AFTER = ("padding weights were zeroed after the softmax, so the rest no longer sums to "
              "1: mask the scores with -inf before the softmax")
SCALE_D_MODEL = "scores divided by sqrt(d_model): divide them by sqrt(d_head)"
NO_SCALE = "scores not divided by sqrt(d_head)"
SOFTMAX_QUERIES = ("the softmax runs over the target (query) positions: normalise each query's "
                   "scores over the source positions, dim=-1")
NO_W_O = ("W_O is not applied: project each head's output with W_O and sum over the heads, "
          "einsum('bhqd,hdm->bqm', z, W_O)")

# (label, batch, tgt_pos, src_pos, heads, d_model, d_head, real source lengths or None,
#  dtype, seed). Equal lengths first: mistakes that swap the two inputs only run there.
CROSS_CASES = [
    ("target 4, source 4, padded sources", 2, 4, 4, 2, 8, 4, [3, 2], torch.float64, 0),
    ("target 3, source 6, padded sources", 2, 3, 6, 3, 12, 4, [5, 4], torch.float64, 1),
    ("target 5, source 2, no padding (src_mask None)", 1, 5, 2, 2, 6, 3, None,
     torch.float64, 2),
    ("float32, target 6, source 7, padded, d_head 5 with 4 heads of d_model 16", 3, 6, 7, 4,
     16, 5, [7, 3, 5], torch.float32, 3),
]


def source_mask(lengths: list[int] | None, src_pos: int) -> Tensor | None:
    """[batch, src_pos] bool, True at the first ``lengths[b]`` positions; None for None."""
    if lengths is None:
        return None
    return torch.arange(src_pos)[None, :] < torch.tensor(lengths)[:, None]


def cross_truth(x: Tensor, mem: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor,
                mask: Tensor | None, q_from: str = "dec", k_from: str = "enc",
                v_from: str = "enc", causal: str | None = None, masking: str = "ninf",
                scale: str = "d_head", softmax_dim: int = -1, w_o: bool = True) -> Tensor:
    """Cross-attention in float64, or one mistake's (each switch one mistake)."""
    x, mem = x.double(), mem.double()
    W_Q, W_K, W_V, W_O = (w.double() for w in (W_Q, W_K, W_V, W_O))
    src = {"dec": x, "enc": mem}
    q = torch.einsum("bqm,hmd->bhqd", src[q_from], W_Q)
    k = torch.einsum("bkm,hmd->bhkd", src[k_from], W_K)
    v = torch.einsum("bkm,hmd->bhkd", src[v_from], W_V)
    d = {"d_head": q.shape[-1], "d_model": x.shape[-1], "none": 1}[scale]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    n_q, n_k = scores.shape[-2:]
    if causal is not None:
        offset = n_k - n_q if causal == "offset" else 0
        allowed = torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None] + offset
        scores = scores.masked_fill(~allowed, -math.inf)
    keep = None if mask is None else mask.bool()[:, None, None, :]
    if keep is not None and masking == "inverted":
        keep = ~keep
    if keep is not None and masking in ("ninf", "inverted"):
        scores = scores.masked_fill(~keep, -math.inf)
    elif keep is not None and masking == "zero":
        scores = scores * keep
    pattern = scores.softmax(dim=softmax_dim)
    if keep is not None and masking == "after":
        pattern = pattern * keep
    z = pattern @ v  # [batch, head, q, d_head]
    if not w_o:
        return z.transpose(1, 2).reshape(z.shape[0], z.shape[2], -1)
    return torch.einsum("bhqd,hdm->bqm", z, W_O)


def _cross_inputs(spec: tuple) -> tuple[Tensor, ...]:
    _, batch, n_q, n_k, H, d, dh, _, dtype, seed = spec
    x = randn(batch, n_q, d, seed=seed, dtype=dtype)
    mem = randn(batch, n_k, d, seed=seed + 10, dtype=dtype)
    ws = [randn(H, d, dh, seed=seed + 20 + i, dtype=dtype, scale=0.6) for i in range(3)]
    W_O = randn(H, dh, d, seed=seed + 30, dtype=dtype, scale=0.6)
    return x, mem, *ws, W_O


def _cross_mistakes(args: tuple, mask: Tensor | None) -> list[tuple[str, Callable[[], Tensor]]]:
    changes = [
        (CROSS_CAUSAL, {"causal": "tril"}), (CROSS_CAUSAL, {"causal": "offset"}),
        (KEYS_FROM_DECODER, {"k_from": "dec"}), (VALUES_FROM_DECODER, {"v_from": "dec"}),
        (SELF_ATTENTION, {"k_from": "dec", "v_from": "dec"}),
        (ROLES_SWAPPED, {"q_from": "enc", "k_from": "dec", "v_from": "dec"}),
        (MASK_IGNORED, {"masking": "none"}), (MASK_INVERTED, {"masking": "inverted"}),
        (MASK_ZERO, {"masking": "zero"}), (MASK_AFTER, {"masking": "after"}),
        (SCALE_D_MODEL, {"scale": "d_model"}), (NO_SCALE, {"scale": "none"}),
        (SOFTMAX_QUERIES, {"softmax_dim": -2}), (NO_W_O, {"w_o": False}),
    ]
    return [(m, lambda kw=kw: cross_truth(*args, mask, **kw)) for m, kw in changes]


def check_cross_attention(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, n_k, lengths, dtype = spec[0], spec[3], spec[7], spec[8]
        args = _cross_inputs(spec)
        mask = source_mask(lengths, n_k)
        want = cross_truth(*args, mask)
        got = call(fn, *(a.clone() for a in args),
                   src_mask=None if mask is None else mask.clone())
        atol = 1e-9 if dtype == torch.float64 else float32_atol(
            want, cross_truth(*args, mask).float())
        compare(got, want, case, _cross_mistakes(args, mask), "cross_attention", atol=atol,
                rtol=1e-6, axes=("batch", "target position", "d_model"))
        return case
    return run_check("cross_attention", lambda: run_cases(CROSS_CASES, one_case))


# -- decoder_block_with_cross -----------------------------------------------------------------

SELF_NOT_CAUSAL = ("the self-attention is not causal: a target position must not see later "
                   "target positions (mask keys after the query)")
BLOCK_CROSS_CAUSAL = ("the cross-attention got a causal mask: it is never causal, every "
                      "target position may look at the whole source")
CROSS_FIRST = ("cross-attention runs before self-attention: the order is self-attention, "
               "then cross-attention, then the MLP")
NO_LN_CROSS = ("the cross-attention reads the residual stream without ln_cross: normalise "
               "it first, ln_cross(mid)")
LN1_FOR_CROSS = ("the cross-attention's input was normalised with ln1's weights: use "
                 "ln_cross.w and ln_cross.b")
POST_LN = ("the norms come after the additions (post-LN): this block is pre-LN, each "
           "sublayer reads a normalised copy and adds to the un-normalised stream")
CROSS_REPLACES = ("the cross-attention's output replaces the residual stream: add it, "
                  "mid_cross = mid + cross_attn(ln_cross(mid))")
MLP_SKIPS_CROSS = ("the MLP reads the stream from before the cross-attention: its input is "
                   "ln2(mid_cross), after the cross-attention was added")
BLOCK_MASK_IGNORED = ("the source padding mask is ignored in the cross-attention: padding "
                      "must get weight 0")
CROSS_READS_DECODER = ("the cross-attention's keys and values come from the decoder: they "
                       "come from encoder_out")
GELU = "the MLP uses GELU: this block's MLP uses ReLU, relu(h @ W_in + b_in) @ W_out + b_out"

# (label, batch, tgt_pos, src_pos, heads, d_model, d_head, d_mlp, source lengths, dtype, seed)
# Unpadded first: an answer whose cross-attention reads the decoder cannot apply a source
# mask to its square scores, and crashes on the padded cases after this one has named it.
BLOCK_CASES = [
    ("target 5, source 3, no padding", 1, 5, 3, 2, 12, 6, 24, None, torch.float64, 1),
    ("target 4, source 5, padded sources", 2, 4, 5, 2, 8, 4, 16, [5, 3], torch.float64, 0),
    ("float32, target 3, source 6, padded, 4 heads", 3, 3, 6, 4, 16, 4, 32, [6, 2, 4],
     torch.float32, 2),
]

BLOCK_NAMES = ("attn", "cross_attn")


def block_params(d: int, H: int, dh: int, d_mlp: int, seed: int, dtype: torch.dtype
                 ) -> dict[str, Tensor]:
    """Random weights under gptscope's Block names (no attention biases), each LayerNorm
    with its own w and b, so that using one norm's for another's shows."""
    p: dict[str, Tensor] = {}
    for i, ln in enumerate(("ln1", "ln_cross", "ln2")):
        p[f"{ln}.w"] = 1 + randn(d, seed=seed + i, dtype=dtype, scale=0.4)
        p[f"{ln}.b"] = randn(d, seed=seed + 10 + i, dtype=dtype, scale=0.4)
    for j, name in enumerate(BLOCK_NAMES):
        for k, w in enumerate(("W_Q", "W_K", "W_V")):
            p[f"{name}.{w}"] = randn(H, d, dh, seed=seed + 20 + 4 * j + k, dtype=dtype,
                                     scale=0.5)
        p[f"{name}.W_O"] = randn(H, dh, d, seed=seed + 23 + 4 * j, dtype=dtype, scale=0.5)
    p["mlp.W_in"] = randn(d, d_mlp, seed=seed + 40, dtype=dtype, scale=0.5)
    p["mlp.b_in"] = randn(d_mlp, seed=seed + 41, dtype=dtype, scale=0.3)
    p["mlp.W_out"] = randn(d_mlp, d, seed=seed + 42, dtype=dtype, scale=0.3)
    p["mlp.b_out"] = randn(d, seed=seed + 43, dtype=dtype, scale=0.3)
    return p


def _attend(p: dict[str, Tensor], name: str, h: Tensor, kv: Tensor, keep: Tensor | None
            ) -> Tensor:
    """Multi-head attention without biases, float64; keep broadcasts to the scores."""
    q = torch.einsum("bqm,hmd->bhqd", h, p[f"{name}.W_Q"])
    k = torch.einsum("bkm,hmd->bhkd", kv, p[f"{name}.W_K"])
    v = torch.einsum("bkm,hmd->bhkd", kv, p[f"{name}.W_V"])
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if keep is not None:
        scores = scores.masked_fill(~keep, -math.inf)
    return torch.einsum("bhqd,hdm->bqm", scores.softmax(-1) @ v, p[f"{name}.W_O"])


def block_truth(x: Tensor, mem: Tensor, params: dict[str, Tensor], mask: Tensor | None,
                eps: float = 1e-5, self_causal: bool = True, cross_causal: bool = False,
                cross_first: bool = False, cross_norm: str = "ln_cross", post_ln: bool = False,
                cross_adds: bool = True, mlp_reads: str = "mid_cross", use_mask: bool = True,
                cross_kv: str = "enc", act: str = "relu") -> Tensor:
    """The decoder block in float64, or one mistake's (each switch one mistake)."""
    p = {k: v.double() for k, v in params.items()}
    x, mem = x.double(), mem.double()

    def ln(h: Tensor, name: str) -> Tensor:
        return F.layer_norm(h, h.shape[-1:], p[f"{name}.w"], p[f"{name}.b"], eps)

    n_q, n_k = x.shape[1], mem.shape[1]
    tril = torch.ones(n_q, n_q, dtype=torch.bool).tril()
    src = None if (mask is None or not use_mask) else mask.bool()[:, None, None, :]
    if cross_causal:
        lower = torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None]
        src = lower if src is None else src & lower

    def self_part(h: Tensor) -> Tensor:
        normed = h if post_ln else ln(h, "ln1")
        out = h + _attend(p, "attn", normed, normed, tril if self_causal else None)
        return ln(out, "ln1") if post_ln else out

    def cross_part(h: Tensor) -> Tensor:
        normed = h if (post_ln or cross_norm == "none") else ln(h, cross_norm)
        kv = mem if cross_kv == "enc" else normed
        out = _attend(p, "cross_attn", normed, kv, src)
        out = h + out if cross_adds else out
        return ln(out, "ln_cross") if post_ln else out

    first, second = (cross_part, self_part) if cross_first else (self_part, cross_part)
    mid = first(x)
    mid_cross = second(mid)
    mlp_in = mid_cross if mlp_reads == "mid_cross" else mid
    h = mlp_in if post_ln else ln(mlp_in, "ln2")
    hidden = h @ p["mlp.W_in"] + p["mlp.b_in"]
    hidden = F.relu(hidden) if act == "relu" else F.gelu(hidden)
    out = mid_cross + hidden @ p["mlp.W_out"] + p["mlp.b_out"]
    return ln(out, "ln2") if post_ln else out


def _block_mistakes(x: Tensor, mem: Tensor, p: dict[str, Tensor], mask: Tensor | None
                    ) -> list[tuple[str, Callable[[], Tensor]]]:
    changes = [
        (SELF_NOT_CAUSAL, {"self_causal": False}), (BLOCK_CROSS_CAUSAL, {"cross_causal": True}),
        (CROSS_FIRST, {"cross_first": True}), (NO_LN_CROSS, {"cross_norm": "none"}),
        (LN1_FOR_CROSS, {"cross_norm": "ln1"}), (POST_LN, {"post_ln": True}),
        (CROSS_REPLACES, {"cross_adds": False}), (MLP_SKIPS_CROSS, {"mlp_reads": "mid"}),
        (BLOCK_MASK_IGNORED, {"use_mask": False}), (CROSS_READS_DECODER, {"cross_kv": "dec"}),
        (GELU, {"act": "gelu"}),
    ]
    return [(m, lambda kw=kw: block_truth(x, mem, p, mask, **kw)) for m, kw in changes]


def check_decoder_block_with_cross(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, batch, n_q, n_k, H, d, dh, d_mlp, lengths, dtype, seed = spec
        x = randn(batch, n_q, d, seed=seed, dtype=dtype)
        mem = randn(batch, n_k, d, seed=seed + 5, dtype=dtype)
        p = block_params(d, H, dh, d_mlp, seed + 100, dtype)
        mask = source_mask(lengths, n_k)
        want = block_truth(x, mem, p, mask)
        got = call(fn, x.clone(), mem.clone(), {k: v.clone() for k, v in p.items()},
                   src_mask=None if mask is None else mask.clone())
        atol = 1e-9 if dtype == torch.float64 else float32_atol(
            want, block_truth(x, mem, p, mask).float(), floor=1e-4)
        compare(got, want, case, _block_mistakes(x, mem, p, mask), "decoder_block_with_cross",
                atol=atol, rtol=1e-6, axes=("batch", "target position", "d_model"))
        return case
    return run_check("decoder_block_with_cross", lambda: run_cases(BLOCK_CASES, one_case))


# -- greedy_translate -------------------------------------------------------------------------

NO_BOS = "the output does not start with BOS: return [BOS, first token, ...]"
IGNORES_EOS = ("rows go on producing tokens after their eos: once a row has produced eos it "
               "keeps appending eos")
NO_EARLY_STOP = ("decoding ran all max_new_tokens steps although every row had produced eos: "
                 "stop as soon as all rows are done")
STOPS_AT_FIRST = ("decoding stopped when the first row produced eos: stop only when every row "
                  "has")
PADS_NOT_EOS = "finished rows were padded with 0: a row that is done keeps appending eos"
FIRST_POSITION = ("the next token came from the logits at position 0: take the last "
                  "position's, logits[:, -1]")
ENCODER_UNMASKED = ("the encoder ran without src_mask: pass it, model.encode(src, src_mask), "
                    "so padding does not mix into the memory")
CONTEXT_UNMASKED = ("the decoder's cross-attention ran without the source mask: pass "
                    "context_mask=src_mask")
NO_FINAL_NORM = ("the memory skipped the encoder's ln_final: use model.encode(src, src_mask), "
                 "the last residual stream after ln_final")
STEPS_OFF = ("the wrong number of steps: decode at most max_new_tokens new tokens (the "
             "output holds 1 + max_new_tokens at most)")

# (label, batch, source lengths, max_new_tokens, the step whose token of row 0 becomes eos,
#  model seed)
GREEDY_CASES = [
    ("4 padded sources, rows stop at different steps", 4, [6, 3, 5, 2], 8, 2, 0),
    ("one source, stops early", 1, [5], 9, 3, 1),
    ("3 sources, padded", 3, [6, 6, 4], 7, 1, 2),
]


def greedy_model(seed: int) -> EncoderDecoder:
    """A small seeded encoder-decoder with peaked logits (init_range 0.5), so that every
    input it is given changes its decisions."""
    enc, dec = pair_configs(12, 12, 6, 12, n_layers=1, d_model=16, n_heads=2, d_mlp=32,
                            init_range=0.5, seed=1000 + seed)
    return EncoderDecoder.from_configs(enc, dec).eval()


@torch.no_grad()
def greedy_truth(model: EncoderDecoder, src: Tensor, src_mask: Tensor, bos: int,
                 eos: int | None, max_new: int, with_bos: bool = True, stop: str = "all",
                 fill: str = "eos", position: int = -1, encoder_mask: bool = True,
                 context_mask: bool = True, final_norm: bool = True, extra_steps: int = 0
                 ) -> Tensor:
    """The reference decoding loop (equal to model.generate), or one mistake's."""
    x = model.encoder(src, attention_mask=src_mask if encoder_mask else None,
                      stop_at_layer=model.encoder.cfg.n_layers)
    memory = model.encoder.final_norm(x) if final_norm else x
    tgt = torch.full((src.shape[0], 1), bos, dtype=torch.long)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_new + extra_steps):
        logits = model.decoder(tgt, context=memory,
                               context_mask=src_mask if context_mask else None)
        nxt = logits[:, position].argmax(-1)
        if stop != "ignore":
            nxt = torch.where(done, torch.full_like(nxt, eos if fill == "eos" else 0), nxt)
        tgt = torch.cat([tgt, nxt[:, None]], dim=1)
        if eos is not None:
            done = done | (nxt == eos)
        if (stop == "all" and done.all()) or (stop == "first" and done[0]):
            break
    return tgt if with_bos else tgt[:, 1:]


def greedy_case(spec: tuple) -> tuple[EncoderDecoder, Tensor, Tensor, int, int, int]:
    """(model, src, src_mask, bos, eos, max_new_tokens) of a case; eos is the token row 0
    decodes at the case's step, so that row stops there and the others at their own time."""
    _, batch, lengths, max_new, eos_step, seed = spec
    model = greedy_model(seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 12, (batch, 6), generator=g)
    src_mask = source_mask(lengths, 6).long()
    src = src * src_mask  # padding id 0
    free = greedy_truth(model, src, src_mask, 1, None, max_new, stop="ignore")
    return model, src, src_mask, 1, int(free[0, eos_step]), max_new


def _greedy_mistakes(args: tuple) -> list[tuple[str, Callable[[], Tensor]]]:
    changes = [
        (NO_BOS, {"with_bos": False}), (IGNORES_EOS, {"stop": "ignore"}),
        (NO_EARLY_STOP, {"stop": "never"}), (STOPS_AT_FIRST, {"stop": "first"}),
        (PADS_NOT_EOS, {"fill": "pad"}), (FIRST_POSITION, {"position": 0}),
        (ENCODER_UNMASKED, {"encoder_mask": False}), (CONTEXT_UNMASKED, {"context_mask": False}),
        (NO_FINAL_NORM, {"final_norm": False}), (STEPS_OFF, {"extra_steps": 1}),
        (STEPS_OFF, {"extra_steps": -1}),
    ]
    return [(m, lambda kw=kw: greedy_truth(*args, **kw)) for m, kw in changes]


def check_greedy_translate(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        args = greedy_case(spec)
        want = greedy_truth(*args)
        model, src, src_mask, bos, eos, max_new = args
        got = call(fn, model, src.clone(), src_mask.clone(), bos, eos, max_new)
        if isinstance(got, Tensor) and got.dim() == 1 and src.shape[0] == 1:
            raise Mismatch(f"greedy_translate returned shape {list(got.shape)}: keep the "
                           f"batch dimension, [batch, 1 + n] = {list(want.shape)}")
        compare(got, want, spec[0], _greedy_mistakes(args), "greedy_translate", atol=0,
                rtol=0, axes=("batch", "position"))
        return spec[0]
    return run_check("greedy_translate", lambda: run_cases(GREEDY_CASES, one_case))
