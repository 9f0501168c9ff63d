"""Checks for lessons 8-9: logit lens, induction score, activation patching (the lessons' newer
exercises are in attribution.py and circuits.py; 10-12 in features/)."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gptscope.config import ModelConfig
from gptscope.course.checks._common import call, compare, run_cases, run_check
from gptscope.course.result import CheckResult
from gptscope.interp import accumulated_resid, activation_patching, pattern_scores
from gptscope.interp.heads import detection_pattern
from gptscope.model import functional as gf
from gptscope.model.transformer import Transformer


def interp_model(seed: int = 0, n_layers: int = 2) -> Transformer:
    cfg = ModelConfig(n_layers=n_layers, d_model=32, n_heads=4, d_vocab=20, n_ctx=16, seed=seed)
    model = Transformer(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.normal_(0, 0.2, generator=g)
    return model.eval()


# -- lesson 8 ---------------------------------------------------------------------------------

LENS_CASES = [(0, 2, 2, 6), (1, 3, 1, 9), (2, 1, 3, 1)]  # (seed, n_layers, batch, pos)


def _lens_case(fn: Callable[..., Any], seed: int, n_layers: int, batch: int, pos: int) -> str:
    model = interp_model(seed, n_layers)
    tokens = torch.randint(0, 20, (batch, pos), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        raw = accumulated_resid(cache)  # [n_layers + 1, batch, pos, d_model]
        want = accumulated_resid(cache, apply_ln=True) @ model.W_U
        posts = torch.stack([cache[f"blocks.{i}.hook_resid_post"] for i in range(n_layers)])
        ln = model.ln_final
        # The final stream's LayerNorm scale applied to every layer (a frozen scale is right
        # for attribution, not for reading each layer's own prediction).
        final_scale = (raw[-1] - raw[-1].mean(-1, keepdim=True)).pow(2).mean(
            -1, keepdim=True).add(ln.eps).sqrt()
        got = call(fn, model, tokens.clone())
        case = f"n_layers={n_layers}, batch={batch}, pos={pos}"
        compare(got, want, case, {
            "ln_final not applied: put each residual stream through model.ln_final "
            "before the unembedding": lambda: raw @ model.W_U,
            "read resid_post of every layer only; start with resid_pre of layer 0 (the "
            "embeddings) and end with the final resid_post": lambda: ln(posts) @ model.W_U,
            "returned probabilities; return logits": lambda: want.softmax(-1),
            "every layer was divided by the final stream's LayerNorm scale; put each through "
            "model.ln_final, which normalises it by its own": lambda: (
                (raw - raw.mean(-1, keepdim=True)) / final_scale * ln.w + ln.b) @ model.W_U,
            "normalised without ln_final's weight and bias: call model.ln_final itself":
                lambda: gf.layer_norm(raw, None, None, ln.eps) @ model.W_U,
        }, atol=1e-4, axes=("layer", "batch", "pos", "d_vocab"))
    return case


def check_logit_lens(fn: Callable[..., Any]) -> CheckResult:
    return run_check("logit_lens",
                     lambda: run_cases(LENS_CASES, lambda c: _lens_case(fn, *c)))


# -- lesson 9 ---------------------------------------------------------------------------------

def repeated_distinct(batch: int, seq_len: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    half = torch.stack([torch.randperm(vocab, generator=g)[:seq_len] for _ in range(batch)])
    return torch.cat([half, half], 1)


INDUCTION_CASES = [(0, 3, 4, 6), (1, 2, 3, 10), (2, 1, 2, 3)]  # (seed, batch, heads, seq_len)


def _induction_case(fn: Callable[..., Any], seed: int, batch: int, heads: int, n: int) -> str:
    tokens = repeated_distinct(batch, n, 50, seed)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, 2 * n, 2 * n, generator=g) * 2
    # Make head 0 an induction head and head 1 a duplicate-token head.
    induction = detection_pattern(tokens, "induction")
    duplicate = detection_pattern(tokens, "duplicate_token")
    scores[:, 0] = scores[:, 0] + 6 * induction.bool()
    scores[:, 1] = scores[:, 1] + 6 * duplicate.bool()
    causal = torch.ones(2 * n, 2 * n, dtype=torch.bool).tril()
    pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    want = pattern_scores(pattern, induction)
    got = call(fn, pattern.clone(), n)
    diagonal = pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)  # from query n - 1
    case = f"batch={batch}, heads={heads}, seq_len={n}"
    compare(got, want, case, {
        "scored the duplicate-token position (key q - seq_len); an induction head attends to "
        "the token *after* the earlier copy (key q - seq_len + 1)":
            lambda: pattern_scores(pattern, duplicate),
        "averaged over every query; only the second copy's queries (q >= seq_len) have an "
        "earlier occurrence to look at": lambda: _all_rows(pattern, n),
        "query and key axes swapped: pattern is [batch, head, query, key]":
            lambda: pattern_scores(pattern.transpose(-2, -1).contiguous(), induction),
        "the diagonal was read from query seq_len - 1 (key 0); the second copy's queries "
        "start at seq_len": lambda: diagonal.mean(dim=(0, 2)),
        "one score per example and head; average over the batch too: return [head]":
            lambda: diagonal[..., 1:].mean(-1),
    }, atol=1e-5, axes=("head",))
    return case


def check_induction_score(fn: Callable[..., Any]) -> CheckResult:
    return run_check("induction_score",
                     lambda: run_cases(INDUCTION_CASES, lambda c: _induction_case(fn, *c)))


def _all_rows(pattern: torch.Tensor, n: int) -> torch.Tensor:
    d = pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., 1:]
    return d.sum(-1).mean(0) / pattern.shape[-2]


# (label, model seed, n_layers, clean, corrupted): the second changes two tokens of a batch.
PATCHING_CASES = [
    ("2 layers, 6 positions, one changed token", 2, 2, [[1, 5, 7, 3, 9, 2]],
     [[1, 5, 8, 3, 9, 2]]),
    ("3 layers, batch 2, 5 positions, two changed tokens", 3, 3,
     [[4, 5, 6, 7, 8], [9, 1, 2, 3, 4]], [[4, 11, 6, 7, 8], [9, 1, 2, 13, 4]]),
]


def _patching_case(fn: Callable[..., Any], label: str, seed: int, n_layers: int,
                   clean: list, corrupted: list) -> str:
    model = interp_model(seed=seed, n_layers=n_layers)
    clean_t, corrupted_t = torch.tensor(clean), torch.tensor(corrupted)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, 4] - logits[:, -1, 6]).mean()

    def patch(kind: str = "resid_pre", a=clean_t, b=corrupted_t, **kw) -> torch.Tensor:
        return activation_patching(model, a, b, metric, kind=kind, **kw)

    want = patch()
    got = call(fn, model, clean_t.clone(), corrupted_t.clone(), metric)
    with torch.no_grad():
        baseline = metric(model(corrupted_t))
    case = f"{label}, logit-difference metric"
    compare(got, want, case, {
        "patched the wrong way: run the *corrupted* tokens with clean activations patched "
        "in": lambda: patch(a=corrupted_t, b=clean_t),
        "patched every position of the layer at once; patch one position at a time":
            lambda: patch(per_position=False)[:, None].expand_as(want),
        "transposed: return [n_layers, pos]": lambda: want.T,
        "patched blocks.{L}.hook_resid_post; patch hook_resid_pre (the stream *into* block L)":
            lambda: patch("resid_post"),
        "returned the change from the corrupted run; return the metric of each patched run "
        "itself": lambda: want - baseline,
    }, atol=1e-4, axes=("layer", "pos"))
    return case


def check_activation_patching(fn: Callable[..., Any]) -> CheckResult:
    return run_check("activation_patching", lambda: run_cases(
        PATCHING_CASES, lambda c: _patching_case(fn, *c)))
