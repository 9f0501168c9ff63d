"""Checks for lesson 6: the whole GPT forward, sampling and BPE merges."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gptscope.config import ModelConfig, gelu_new
from gptscope.course.checks._common import (
    Ambiguous,
    LearnerError,
    Mismatch,
    Unexplained,
    as_tensor,
    call,
    compare,
    module_as_function,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf
from gptscope.model.transformer import Transformer
from gptscope.tokenizers.bpe import merge_pair

# -- gpt_forward ------------------------------------------------------------------------------


def gpt_config(seed: int = 0, n_layers: int = 2, **options: Any) -> ModelConfig:
    return ModelConfig(**{"n_layers": n_layers, "d_model": 16, "n_heads": 2, "d_vocab": 13,
                          "n_ctx": 10, "seed": seed, **options})


def reference_gpt(cfg: ModelConfig) -> Transformer:
    """A small GPT whose LayerNorm and bias weights are random too (not 1s and 0s)."""
    model = Transformer(cfg)
    g = torch.Generator().manual_seed(100 + (cfg.seed or 0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf.startswith("b"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.normal_(0, 0.3, generator=g)
    return model.eval()


# (label, config options, batch, pos): the shapes and both switches the docstring names.
GPT_CASES = [
    ("1 layer", {"n_layers": 1}, 2, 5),
    ("2 layers", {}, 3, 10),
    ("one token", {}, 1, 1),
    ("3 heads of d_head 4, d_mlp 24, eps 0.05",
     {"n_heads": 3, "d_head": 4, "d_mlp": 24, "eps": 0.05}, 2, 7),
    ("no blocks (n_layers 0)", {"n_layers": 0}, 2, 4),
    ("attention-only", {"attn_only": True}, 2, 6),
    ("tied embeddings", {"n_layers": 1, "tie_embeddings": True}, 2, 6),
]


def _gpt_variant(tokens, p, cfg, pos=True, causal=True, final_ln=True, pre_ln=True,
                 eps=None, q_scale=1.0):
    """The GPT forward with one mistake switched on; ``q_scale`` rescales the queries (a
    wrong score scale), ``eps`` replaces cfg.eps."""
    eps = cfg.eps if eps is None else eps
    x = p["embed.W_E"][tokens]
    if pos:
        x = x + p["pos_embed.W_pos"][:tokens.shape[1]]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."

        def ln(h, name, b=b):
            return gf.layer_norm(h, p[b + name + ".w"], p[b + name + ".b"], eps)

        def attn(h, b=b):
            w = [p[b + "attn." + k] for k in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V",
                                              "b_O")]
            w[0], w[4] = w[0] * q_scale, w[4] * q_scale
            return gf.multihead_attention(h, *w, causal=causal)

        def mlp(h, b=b):
            return gelu_new(h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]) @ \
                p[b + "mlp.W_out"] + p[b + "mlp.b_out"]

        x = x + attn(ln(x, "ln1")) if pre_ln else ln(x + attn(x), "ln1")
        if not cfg.attn_only:
            x = x + mlp(ln(x, "ln2")) if pre_ln else ln(x + mlp(x), "ln2")
    if final_ln:
        x = gf.layer_norm(x, p["ln_final.w"], p["ln_final.b"], eps)
    return x @ (p["embed.W_E"].T if cfg.tie_embeddings else p["unembed.W_U"])


def _gpt_mistakes(tokens, params, cfg, want) -> dict[str, Callable[[], Any]]:
    """The known mistakes of gpt_forward, each as the wrong logits it gives on this case."""
    default_scale = math.sqrt(cfg.d_head / (cfg.d_model // cfg.n_heads))
    return {
        "positional embeddings missing: add W_pos[:pos] to the token embeddings":
            lambda: _gpt_variant(tokens, params, cfg, pos=False),
        "no causal mask: a GPT must not look at later tokens":
            lambda: _gpt_variant(tokens, params, cfg, causal=False),
        "ln_final missing before the unembedding":
            lambda: _gpt_variant(tokens, params, cfg, final_ln=False),
        "post-LN blocks; GPT-2 normalises each sublayer's input (pre-LN)":
            lambda: _gpt_variant(tokens, params, cfg, pre_ln=False),
        "returned probabilities; return the logits (no softmax)":
            lambda: want.softmax(-1),
        "the scores are scaled by sqrt(d_model / n_heads); scale by sqrt(cfg.d_head), which "
        "need not equal it": lambda: _gpt_variant(tokens, params, cfg, q_scale=default_scale),
        "the LayerNorms use eps 1e-5 whatever the config says; use cfg.eps":
            lambda: _gpt_variant(tokens, params, cfg, eps=1e-5),
    }


def _missing_key_hint(error: LearnerError, cfg: ModelConfig, case: str) -> Mismatch | None:
    """A KeyError on a parameter this config does not have, explained by the switch."""
    text = str(error)
    if not text.startswith("KeyError"):
        return None
    if "unembed.W_U" in text and cfg.tie_embeddings:
        why = "cfg.tie_embeddings is True: params has no unembed.W_U; unembed with W_E.T"
    elif ("ln2" in text or "mlp." in text) and cfg.attn_only:
        why = ("cfg.attn_only is True: blocks have no ln2 and no MLP; each block is "
               "x + attn(ln1(x))")
    elif "blocks." in text:
        why = (f"params has no {text.removeprefix('KeyError: ')}: loop over "
               f"range(cfg.n_layers) blocks (here {cfg.n_layers})")
    else:
        return None
    return Mismatch(why, [f"case: {case}", f"your code raised {text}"], matched=[why])


def _gpt_case(fn: Callable[..., Any], index: int) -> str:
    label, options, batch, pos = GPT_CASES[index]
    cfg = gpt_config(seed=index, **{"n_layers": 2, **options})
    model = reference_gpt(cfg)
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tokens = torch.randint(0, cfg.d_vocab, (batch, pos),
                           generator=torch.Generator().manual_seed(index))
    case = f"{label}: batch={batch}, pos={pos} (reference model's weights)"
    with torch.no_grad():
        want = model(tokens)
        try:
            got = call(fn, tokens.clone(), params, cfg)
        except LearnerError as e:
            raise _missing_key_hint(e, cfg, case) or e from e.__cause__
        compare(got, want, case, _gpt_mistakes(tokens, params, cfg, want), atol=1e-4,
                axes=("batch", "pos", "d_vocab"))
    return case


def check_gpt_forward(fn: Callable[..., Any]) -> CheckResult:
    fn = module_as_function(fn)
    return run_check("gpt_forward",
                     lambda: run_cases(range(len(GPT_CASES)), lambda i: _gpt_case(fn, i)))


# -- sample_next ------------------------------------------------------------------------------

def filtered_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, k_extra: int = 0, top_p_inclusive: bool = False,
                   multiply: bool = False, p_before_k: bool = False) -> torch.Tensor:
    """The distribution ``sample_next`` draws from (and wrong variants, for diagnosis)."""
    logits = logits.double() * temperature if multiply else logits.double() / temperature
    if p_before_k:
        return _keep_top_k(_keep_top_p(logits, top_p, top_p_inclusive), top_k + k_extra
                           if top_k else None).softmax(-1)
    return _keep_top_p(_keep_top_k(logits, top_k + k_extra if top_k else None), top_p,
                       top_p_inclusive).softmax(-1)


def _keep_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _keep_top_p(logits: torch.Tensor, top_p: float | None, inclusive: bool) -> torch.Tensor:
    if top_p is None or top_p >= 1.0:
        return logits
    sl, order = logits.sort(dim=-1, descending=True)
    probs = sl.softmax(-1)
    before = probs.cumsum(-1) - probs
    drop_sorted = probs.cumsum(-1) >= top_p if inclusive else before >= top_p
    if inclusive:
        drop_sorted[..., 0] = False
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))


TOP_P_FIRST = ("top-p was applied before top-k; apply top-k first, then top-p to the "
               "renormalised probabilities of what is left")
N_DRAWS = 20_000
TV_TOLERANCE = 0.03


SAMPLING_CASES = [
    ("temperature 1", dict(temperature=1.0)),
    ("temperature 2", dict(temperature=2.0)),
    ("temperature 0.5", dict(temperature=0.5)),
    ("top_k=3", dict(temperature=1.0, top_k=3)),
    ("top_k=1", dict(temperature=1.0, top_k=1)),
    ("top_p=0.6", dict(temperature=1.0, top_p=0.6)),
    ("top_p=0.9, temperature 0.7", dict(temperature=0.7, top_p=0.9)),
    # Top-p before top-k always equals another mistake on one case ("top-k ignored" where
    # the top-p set is smaller than k, "top-p ignored" where it is larger, often "k+1" too):
    # these three cases together rule each of those out and leave it alone.
    ("top_k=4 then top_p=0.6, temperature 2", dict(temperature=2.0, top_k=4, top_p=0.6)),
    ("top_k=4 then top_p=0.75, temperature 2", dict(temperature=2.0, top_k=4, top_p=0.75)),
    ("top_k=3 then top_p=0.6, temperature 2", dict(temperature=2.0, top_k=3, top_p=0.6)),
]


def check_sample_next(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        greedy = _check_greedy(fn)
        return [greedy, *run_cases(SAMPLING_CASES, lambda c: _sampling_case(fn, *c))]
    return run_check("sample_next", body)


def _sampling_case(fn: Callable[..., Any], case: str, kw: dict) -> str:
    base = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    gen = torch.Generator().manual_seed(0)
    ids = as_tensor(call(fn, base.repeat(N_DRAWS, 1), generator=gen, **kw), "sample_next")
    if ids.shape != (N_DRAWS,):
        raise Mismatch(f"{case}: returned shape {tuple(ids.shape)}, expected ({N_DRAWS},): "
                       "one token id per row", [f"case: {case}"])
    emp = torch.bincount(ids.long().flatten(), minlength=base.numel()).double() / N_DRAWS
    want = filtered_probs(base, **kw)
    tv = 0.5 * (emp - want).abs().sum().item()
    if tv > TV_TOLERANCE:
        raise _sampling_mismatch(case, kw, base, emp, want, tv)
    return f"{case} (total variation {tv:.3f})"


def _check_greedy(fn: Callable[..., Any]) -> str:
    logits = randn(4, 10, seed=7, scale=2.0)
    got = as_tensor(call(fn, logits.clone(), 0.0), "sample_next")
    if got.shape != (4,) or not torch.equal(got.long(), logits.argmax(-1)):
        raise Mismatch("temperature 0 must be greedy: return logits.argmax(-1), one id per "
                       "row, without sampling", ["case: temperature 0"])
    if got.dtype != torch.long:
        raise Mismatch(f"return int64 token ids, got {got.dtype}")
    return "temperature 0 is greedy"


def _sampling_mismatch(case: str, kw: dict, base: torch.Tensor, emp: torch.Tensor,
                       want: torch.Tensor, tv: float) -> Mismatch:
    """The mistakes whose distribution the sampled frequencies ``emp`` match on this case
    (and those the case rules out), for ``verdict`` to weigh across the cases."""
    def near(a: torch.Tensor, b: torch.Tensor) -> bool:
        return 0.5 * (a - b).abs().sum().item() <= TV_TOLERANCE

    found, ruled_out = [], set()
    for message, dist in _sampling_mistakes(kw, base).items():
        if dist is None or near(dist, want):
            continue  # this case cannot tell the mistake from the right answer
        (found.append if near(emp, dist) else ruled_out.add)(message)
    details = [f"case: {case}"]
    if len(found) > 1:
        return Ambiguous(found, details, ruled_out=ruled_out)
    if found:
        return Mismatch(found[0], details, found, ruled_out)
    outside = (want == 0) & (emp > 0)
    if outside.any():
        return Mismatch(f"{case}: sampled tokens that should have been removed "
                        f"(ids {outside.nonzero().flatten().tolist()})", details,
                        ruled_out=ruled_out)
    return Unexplained(f"{case}: the sampled frequencies differ from the reference "
                       f"distribution (total variation {tv:.3f})", details, ruled_out=ruled_out)


def _sampling_mistakes(kw: dict, base: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Common sampling mistakes and the distribution each would give (None: not testable
    in this case)."""
    top_k, top_p, temperature = kw.get("top_k"), kw.get("top_p"), kw["temperature"]
    return {
        "top-k keeps k+1 tokens; keep exactly the k largest":
            filtered_probs(base, **kw, k_extra=1) if top_k else None,
        "temperature multiplies the logits instead of dividing them":
            filtered_probs(base, **kw, multiply=True) if temperature != 1 else None,
        "temperature ignored: divide the logits by it":
            filtered_probs(base, 1.0, top_k, top_p) if temperature != 1 else None,
        "top-p drops the token that crosses p; keep it (drop a token only when the "
        "mass *before* it reaches p)": filtered_probs(base, **kw, top_p_inclusive=True)
        if top_p else None,
        "top-k ignored": filtered_probs(base, temperature, None, top_p) if top_k else None,
        TOP_P_FIRST: filtered_probs(base, **kw, p_before_k=True) if top_k and top_p else None,
        "top-p ignored": filtered_probs(base, temperature, top_k, None) if top_p else None,
        "always returns the most likely token; sample with torch.multinomial":
            torch.nn.functional.one_hot(torch.tensor(0), base.numel()).double(),
        "samples uniformly; draw from softmax(logits / temperature)":
            torch.full((base.numel(),), 1 / base.numel(), dtype=torch.float64),
    }


# -- bpe_merge --------------------------------------------------------------------------------

def check_bpe_merge(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        specs = [([1, 2, 3, 1, 2], (1, 2), 9), ([5, 5, 5], (5, 5), 9), ([5, 5, 5, 5], (5, 5), 7),
                 ([], (1, 2), 3), ([1], (1, 2), 3), ([1, 2], (1, 2), 4),
                 ([2, 1, 2, 1, 1, 2], (1, 2), 8), ([3, 4, 3], (4, 3), 6),
                 # Ids of several digits: "1 2" is also inside "11 2" and "1 21".
                 ([11, 2, 1, 2], (1, 2), 300), ([1, 21, 2, 1, 2], (1, 2), 256),
                 ([10, 1, 0, 10, 1], (10, 1), 257), ([257, 3, 25, 73], (25, 73), 300)]
        for ids, pair, new in specs:
            want = merge_pair(ids, pair, new)
            before = list(ids)
            got = call(fn, ids, pair, new)
            case = f"bpe_merge({before}, {pair}, {new})"
            if ids != before:
                raise Mismatch("your function changed the input list; build a new one",
                               [f"case: {case}"])
            if got is None:
                raise Mismatch("returned None; did you forget the `return`?")
            got = list(got)
            if got == want:
                cases.append(f"{case} == {want}")
                continue
            if got == _merge_first_only(ids, pair, new):
                raise Mismatch("only the first occurrence was merged; replace every one",
                               [f"case: {case}: expected {want}, got {got}"])
            if got == _merge_overlapping(ids, pair, new):
                raise Mismatch("overlapping occurrences were merged: after a merge, continue "
                               "after *both* ids ([5, 5, 5] -> [9, 5])",
                               [f"case: {case}: expected {want}, got {got}"])
            if any(got == _merge_as_text(ids, pair, new, sep) for sep in (" ", ",")):
                raise Mismatch("you merged in the ids' text: with ids with more than one digit "
                               "the pair's text also matches across ids (\"1 2\" is inside "
                               "\"11 2\"); compare the ids themselves, pair by pair",
                               [f"case: {case}: expected {want}, got {got}"])
            raise Mismatch(f"{case}: expected {want}, got {got}")
        return cases
    return run_check("bpe_merge", body)


def _merge_as_text(ids, pair, new, sep):
    """The merge done by replacing text in the ids joined with ``sep`` (None if the text
    cannot be read back as ids)."""
    text = sep.join(map(str, ids)) + sep
    merged = text.replace(f"{pair[0]}{sep}{pair[1]}{sep}", f"{new}{sep}")
    try:
        return [int(t) for t in merged.split(sep) if t]
    except ValueError:
        return None


def _merge_first_only(ids, pair, new):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new] + list(ids[i + 2:])
    return list(ids)


def _merge_overlapping(ids, pair, new):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
    return out
