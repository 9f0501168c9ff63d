"""Checks for lessons 8-9: logit lens, induction, patching (10-12 are in features.py)."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gptscope.config import ModelConfig
from gptscope.course.checks._common import call, compare, run_check
from gptscope.course.result import CheckResult
from gptscope.interp import accumulated_resid, activation_patching, pattern_scores
from gptscope.interp.heads import detection_pattern
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

def check_logit_lens(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for seed, n_layers, batch, pos in [(0, 2, 2, 6), (1, 3, 1, 9)]:
            model = interp_model(seed, n_layers)
            tokens = torch.randint(0, 20, (batch, pos), generator=torch.Generator()
                                   .manual_seed(seed))
            with torch.no_grad():
                _, cache = model.run_with_cache(tokens)
                stack = accumulated_resid(cache, apply_ln=True)
                want = stack @ model.W_U
                raw = accumulated_resid(cache) @ model.W_U
                posts = torch.stack([cache[f"blocks.{i}.hook_resid_post"]
                                     for i in range(n_layers)])
                got = call(fn, model, tokens.clone())
            case = f"n_layers={n_layers}, batch={batch}, pos={pos}"
            compare(got, want, case, {
                "ln_final not applied: put each residual stream through model.ln_final "
                "before the unembedding": lambda: raw,
                "read resid_post of every layer only; start with resid_pre of layer 0 (the "
                "embeddings) and end with the final resid_post": lambda: model.ln_final(
                    posts) @ model.W_U,
                "returned probabilities; return logits": lambda: want.softmax(-1),
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("logit_lens", body)


# -- lesson 9 ---------------------------------------------------------------------------------

def repeated_distinct(batch: int, seq_len: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    half = torch.stack([torch.randperm(vocab, generator=g)[:seq_len] for _ in range(batch)])
    return torch.cat([half, half], 1)


def check_induction_score(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for seed, batch, heads, n in [(0, 3, 4, 6), (1, 2, 3, 10)]:
            tokens = repeated_distinct(batch, n, 50, seed)
            g = torch.Generator().manual_seed(seed)
            scores = torch.randn(batch, heads, 2 * n, 2 * n, generator=g) * 2
            # Make head 0 an induction head and head 1 a duplicate-token head.
            ind = detection_pattern(tokens, "induction").bool()
            dup = detection_pattern(tokens, "duplicate_token").bool()
            scores[:, 0] = scores[:, 0] + 6 * ind
            scores[:, 1] = scores[:, 1] + 6 * dup
            causal = torch.ones(2 * n, 2 * n, dtype=torch.bool).tril()
            pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            want = pattern_scores(pattern, detection_pattern(tokens, "induction"))
            got = call(fn, pattern.clone(), n)
            case = f"batch={batch}, heads={heads}, seq_len={n}"
            compare(got, want, case, {
                "scored the duplicate-token position (key q - seq_len); an induction head "
                "attends to the token *after* the earlier copy (key q - seq_len + 1)":
                    lambda: pattern_scores(pattern, detection_pattern(tokens,
                                                                      "duplicate_token")),
                "averaged over every query; only the second copy's queries (q >= seq_len) "
                "have an earlier occurrence to look at": lambda: _all_rows(pattern, n),
                "query and key axes swapped: pattern is [batch, head, query, key]":
                    lambda: pattern_scores(pattern.transpose(-2, -1).contiguous(),
                                           detection_pattern(tokens, "induction")),
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("induction_score", body)


def _all_rows(pattern: torch.Tensor, n: int) -> torch.Tensor:
    d = pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., 1:]
    return d.sum(-1).mean(0) / pattern.shape[-2]


def check_activation_patching(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        model = interp_model(seed=2, n_layers=2)
        clean = torch.tensor([[1, 5, 7, 3, 9, 2]])
        corrupted = torch.tensor([[1, 5, 8, 3, 9, 2]])

        def metric(logits: torch.Tensor) -> torch.Tensor:
            return logits[0, -1, 4] - logits[0, -1, 6]

        want = activation_patching(model, clean, corrupted, metric, kind="resid_pre")
        got = call(fn, model, clean, corrupted, metric)
        swapped = activation_patching(model, corrupted, clean, metric, kind="resid_pre")
        case = "2 layers, 6 positions, one changed token, logit-difference metric"
        compare(got, want, case, {
            "patched the wrong way: run the *corrupted* tokens with clean activations "
            "patched in": lambda: swapped,
            "patched every position of the layer at once; patch one position at a time":
                lambda: activation_patching(model, clean, corrupted, metric, kind="resid_pre",
                                            per_position=False)[:, None].expand_as(want),
            "transposed: return [n_layers, pos]": lambda: want.T,
        }, atol=1e-4)
        return [case]
    return run_check("activation_patching", body)
