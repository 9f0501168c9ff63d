"""Checks for lessons 8-12: logit lens, induction, patching, probes, steering, SAEs."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gptscope.config import ModelConfig
from gptscope.course.checks._common import Mismatch, call, compare, randn, run_check
from gptscope.course.result import CheckResult
from gptscope.interp import accumulated_resid, activation_patching, pattern_scores
from gptscope.interp.heads import detection_pattern
from gptscope.model.transformer import Transformer
from gptscope.sae import sae_loss
from gptscope.steering import SteeringVector


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


# -- lesson 10 --------------------------------------------------------------------------------

def _planted(n: int, d: int, seed: int, signal: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    direction = torch.randn(d, generator=torch.Generator().manual_seed(99))
    if signal:
        y = ((x @ direction + 0.3 * torch.randn(n, generator=g)) > 0).long()
    else:
        y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def check_linear_probe(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        x, y = _planted(600, 16, seed=0)
        acc = call(fn, x[:400], y[:400], x[400:], y[400:])
        try:
            acc = float(acc)
        except (TypeError, ValueError) as e:
            raise Mismatch(f"return the test accuracy as a float, got {type(acc).__name__}") \
                from e
        majority = max(y[400:].float().mean().item(), 1 - y[400:].float().mean().item())
        if acc <= majority + 0.02:
            raise Mismatch(f"accuracy {acc:.2f} is no better than always predicting the "
                           f"majority class ({majority:.2f}); is the probe trained?")
        if acc < 0.85:
            raise Mismatch(f"held-out accuracy {acc:.2f} on a linearly separable concept; "
                           "expected >= 0.85 (train longer or standardise the inputs)")
        # Control: random labels, more dimensions than training examples.
        xc, yc = _planted(140, 64, seed=1, signal=False)
        ctrl = float(call(fn, xc[:40], yc[:40], xc[40:], yc[40:]))
        if ctrl > 0.75:
            raise Mismatch(f"the probe scores {ctrl:.2f} on random labels: you measured "
                           "accuracy on the training data; report accuracy on the held-out "
                           "test set")
        return [f"planted concept: test accuracy {acc:.2f}",
                f"random labels (control): {ctrl:.2f}"]
    return run_check("linear_probe", body)


# -- lesson 11 --------------------------------------------------------------------------------

def check_steering_vector(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        model = interp_model(seed=3, n_layers=3)
        for pos_ids, neg_ids, layer in [([1, 2, 3, 4], [1, 7, 3, 5], 1),
                                        ([2, 9, 9], [4, 4, 1, 8, 8], 2),
                                        ([6, 1, 2, 3, 4], [6, 5], 0)]:
            pos = torch.tensor([pos_ids])
            neg = torch.tensor([neg_ids])
            name = f"blocks.{layer}.hook_resid_pre"
            want = SteeringVector.from_contrast(model, pos, neg, name).vector
            got = call(fn, model, pos, neg, layer)
            case = f"layer {layer}, prompts of {len(pos_ids)} and {len(neg_ids)} tokens"
            post = f"blocks.{layer}.hook_resid_post"
            compare(got, want, case, {
                "sign flipped: positive minus negative": lambda: -want,
                "read the wrong hook: use blocks.{layer}.hook_resid_pre (resid_post is the "
                "next layer's input)": lambda: SteeringVector.from_contrast(
                    model, pos, neg, post).vector,
                "used the last position only; keep one row per position (ActAdd)":
                    lambda: SteeringVector.from_contrast(model, pos, neg, name,
                                                         aligned=False).vector,
                "the shorter prompt must be padded with zero rows at the *end*":
                    lambda: _pad_front(model, pos, neg, name),
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("steering_vector", body)


def _pad_front(model, pos, neg, name):
    with torch.no_grad():
        a = model.run_with_cache(pos)[1][name][0]
        b = model.run_with_cache(neg)[1][name][0]
    n = max(a.shape[0], b.shape[0])
    a = torch.cat([a.new_zeros(n - a.shape[0], a.shape[1]), a])
    b = torch.cat([b.new_zeros(n - b.shape[0], b.shape[1]), b])
    return a - b


# -- lesson 12 --------------------------------------------------------------------------------

def check_sae_loss(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for i, (batch, d_in, d_sae, coeff) in enumerate([(8, 6, 24, 1e-2), (32, 16, 64, 0.5)]):
            x = randn(batch, d_in, seed=500 + i)
            x_hat = x + randn(batch, d_in, seed=510 + i, scale=0.3)
            acts = torch.relu(randn(batch, d_sae, seed=520 + i)) - 0.05 * (i == 1)
            loss, mse, l1 = sae_loss(x, x_hat, acts, coeff)
            got = call(fn, x.clone(), x_hat.clone(), acts.clone(), coeff)
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                raise Mismatch("return a tuple (loss, mse, l1)")
            case = f"batch={batch}, d_in={d_in}, d_sae={d_sae}, l1_coefficient={coeff}"
            err = (x_hat - x).pow(2)
            compare(got[1], mse, case + ", mse", {
                "mse averaged over d_in too; sum the squared error over d_in, then average "
                "over the batch": lambda: err.mean(),
                "mse summed over the batch; average over the batch": lambda: err.sum(),
                "mse is not squared": lambda: (x_hat - x).abs().sum(-1).mean(),
            }, what="sae_loss")
            compare(got[2], l1, case + ", l1", {
                "l1 uses squares; the L1 norm is the sum of absolute values":
                    lambda: acts.pow(2).sum(-1).mean(),
                "l1 without abs(): negative activations must count as positive":
                    lambda: acts.sum(-1).mean(),
                "l1 summed over the batch; average over the batch":
                    lambda: acts.abs().sum(),
                "l1 averaged over features too; sum over features, average over the batch":
                    lambda: acts.abs().mean(),
            }, what="sae_loss")
            compare(got[0], loss, case + ", loss", {
                "loss forgot the coefficient: loss = mse + l1_coefficient * l1":
                    lambda: mse + l1,
            }, what="sae_loss")
            cases.append(case)
        return cases
    return run_check("sae_loss", body)
