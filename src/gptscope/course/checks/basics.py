"""Checks for lessons 1-3b: the MLP, softmax and friends, positions, calibration."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gptscope.course import datasets
from gptscope.course.checks._common import Mismatch, as_tensor, call, compare, randn, run_check
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf

# -- lesson 1 ---------------------------------------------------------------------------------


def _mlp_params(d_in: int, d_hidden: int, n_out: int, seed: int, dtype=torch.float64):
    return (randn(d_in, d_hidden, seed=seed, dtype=dtype) / math.sqrt(d_in),
            randn(d_hidden, seed=seed + 1, dtype=dtype) * 0.5,
            randn(d_hidden, n_out, seed=seed + 2, dtype=dtype) / math.sqrt(d_hidden),
            randn(n_out, seed=seed + 3, dtype=dtype) * 0.5)


def check_mlp_forward(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for batch, d_in, d_h, n_out, seed in [(5, 4, 8, 3, 0), (1, 64, 32, 10, 1),
                                               (17, 3, 5, 2, 2)]:
            x = randn(batch, d_in, seed=seed + 10, dtype=torch.float64)
            W1, b1, W2, b2 = _mlp_params(d_in, d_h, n_out, seed)
            want = torch.relu(x @ W1 + b1) @ W2 + b2
            case = f"batch={batch}, d_in={d_in}, d_hidden={d_h}, n_classes={n_out}"
            compare(call(fn, x, W1, b1, W2, b2), want, case, {
                "no ReLU: the hidden layer must be relu(x @ W1 + b1)":
                    lambda: (x @ W1 + b1) @ W2 + b2,
                "ReLU applied to the output logits too; only the hidden layer has one":
                    lambda: torch.relu(torch.relu(x @ W1 + b1) @ W2 + b2),
                "a bias is missing (b1 or b2)": lambda: torch.relu(x @ W1) @ W2 + b2,
                "the output bias b2 is missing": lambda: torch.relu(x @ W1 + b1) @ W2,
                "softmax applied at the end; return the logits": lambda: (torch.relu(
                    x @ W1 + b1) @ W2 + b2).softmax(-1),
            })
            cases.append(case)
        return cases
    return run_check("mlp_forward", body)


def _autograd_grads(x, y, W1, b1, W2, b2) -> dict[str, torch.Tensor]:
    params = {k: v.clone().requires_grad_(True) for k, v in
              {"W1": W1, "b1": b1, "W2": W2, "b2": b2}.items()}
    logits = torch.relu(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    F.cross_entropy(logits, y).backward()
    return {k: v.grad for k, v in params.items()}


def check_mlp_backward(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for batch, d_in, d_h, n_out, seed in [(6, 4, 7, 3, 0), (32, 10, 16, 5, 3)]:
            x = randn(batch, d_in, seed=seed + 20, dtype=torch.float64)
            y = torch.randint(0, n_out, (batch,), generator=torch.Generator().manual_seed(seed))
            W1, b1, W2, b2 = _mlp_params(d_in, d_h, n_out, seed)
            want = _autograd_grads(x, y, W1, b1, W2, b2)
            got = call(fn, x, y, W1, b1, W2, b2)
            if not isinstance(got, dict):
                raise Mismatch(f"return a dict with keys W1, b1, W2, b2; got "
                               f"{type(got).__name__}")
            missing = sorted(set(want) - set(got))
            if missing:
                raise Mismatch(f"the returned dict is missing {missing}")
            case = f"batch={batch}, d_in={d_in}, d_hidden={d_h}"
            for name in ("W2", "b2", "W1", "b1"):
                g = as_tensor(got[name], f"grads[{name!r}]")
                w = want[name]
                variants = {
                    f"d{name} is {batch}x too large: the loss is the *mean* over the batch, "
                    f"so divide d(loss)/d(logits) by the batch size": lambda w=w: w * batch,
                    f"d{name} has the wrong sign (gradient of -loss?)": lambda w=w: -w,
                }
                if name in ("W1", "b1"):
                    variants["ReLU's derivative is missing: pass gradient only where "
                             "x @ W1 + b1 > 0"] = lambda name=name: _no_relu_grad(
                                 x, y, W1, b1, W2, b2)[name]
                if w.dim() == 2:
                    variants[f"d{name} is transposed"] = lambda w=w: w.T
                compare(g, w, f"{case}, gradient {name}", variants, atol=1e-6)
            cases.append(case)
        return cases
    return run_check("mlp_backward", body)


def _no_relu_grad(x, y, W1, b1, W2, b2) -> dict[str, torch.Tensor]:
    n = x.shape[0]
    h = torch.relu(x @ W1 + b1)
    d = (h @ W2 + b2).softmax(-1)
    d[torch.arange(n), y] -= 1
    d /= n
    dpre = d @ W2.T
    return {"W1": x.T @ dpre, "b1": dpre.sum(0)}


ACCURACY_FLOOR = 0.85
TRAIN_BUDGET_S = 60.0


def check_train_classifier(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        x_tr, y_tr, x_te, y_te = datasets.glyph_split(seed=0)
        start = time.perf_counter()
        predict = call(fn, x_tr, y_tr, 10, 0)
        took = time.perf_counter() - start
        if not callable(predict):
            raise Mismatch("train_classifier must return a function predict(x) -> class ids")
        pred = as_tensor(call(predict, x_te), "predict")
        if pred.shape != y_te.shape:
            raise Mismatch(f"predict returned shape {tuple(pred.shape)}, expected "
                           f"{tuple(y_te.shape)} (one class id per row; use argmax(-1))")
        acc = (pred.long() == y_te).float().mean().item()
        if took > TRAIN_BUDGET_S:
            raise Mismatch(f"training took {took:.0f}s, over the {TRAIN_BUDGET_S:.0f}s budget; "
                           "use fewer steps or a smaller network")
        if acc < ACCURACY_FLOOR:
            chance = 1 / 10
            why = ("about chance: is the model trained at all (optimizer.step, zero_grad)?"
                   if acc < chance + 0.1 else "train longer or raise the learning rate")
            raise Mismatch(f"held-out accuracy {acc:.1%} is below the {ACCURACY_FLOOR:.0%} "
                           f"floor; {why}")
        return [f"held-out accuracy {acc:.1%} in {took:.1f}s"]
    return run_check("train_classifier", body)


# -- lesson 2 ---------------------------------------------------------------------------------

def _float_cases() -> list[tuple[str, torch.Tensor, int]]:
    return [
        ("random [4, 10]", randn(4, 10, seed=0), -1),
        ("batch [2, 3, 7], dim=-1", randn(2, 3, 7, seed=1, scale=3.0), -1),
        ("batch [2, 3, 7], dim=1", randn(2, 3, 7, seed=2), 1),
        ("[5, 6], dim=0", randn(5, 6, seed=3), 0),
        ("large logits [1000, 999, 998]", torch.tensor([[1000.0, 999.0, 998.0]]), -1),
        ("very negative [-1000, -1001, -1e3]", torch.tensor([[-1000.0, -1001.0, -1e3]]), -1),
        ("huge 1e4 and 0", torch.tensor([[1e4, 0.0, -1e4]]), -1),
        ("a row of equal values", torch.full((2, 5), 3.0), -1),
        ("float64 [3, 4]", randn(3, 4, seed=4, dtype=torch.float64), -1),
        ("one element", torch.tensor([[2.5]]), -1),
    ]


def check_softmax(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for case, x, dim in _float_cases():
            want = gf.softmax(x, dim=dim)
            got = as_tensor(call(fn, x.clone(), dim=dim), "softmax")
            if got.shape == want.shape and not torch.isfinite(got).all():
                raise Mismatch("softmax overflows for inputs of 1000 (nan/inf): subtract "
                               "the max along dim before exp", [f"case: {case}"])
            if got.shape == want.shape and not torch.allclose(
                    got.double().sum(dim), torch.ones(()).double(), atol=1e-4):
                raise Mismatch(f"not normalised along dim={dim}: the probabilities along the "
                               "dimension you were given must sum to 1", [f"case: {case}"])
            compare(got, want, case, {
                "softmax normalised over the whole tensor instead of along dim":
                    lambda x=x: (x - x.max()).exp() / (x - x.max()).exp().sum(),
            })
            if got.dtype != x.dtype:
                raise Mismatch(f"{case}: returned dtype {got.dtype} for a {x.dtype} input; "
                               "keep the input's dtype")
            cases.append(case)
        return cases
    return run_check("softmax", body)


def check_log_softmax(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        for case, x, dim in _float_cases() + [("underflow [0, -1e4]",
                                               torch.tensor([[0.0, -1e4]]), -1)]:
            want = gf.log_softmax(x, dim=dim)
            got = as_tensor(call(fn, x.clone(), dim=dim), "log_softmax")
            if got.shape == want.shape and torch.isinf(got).any() and \
                    torch.isfinite(want).all():
                raise Mismatch("log(softmax(x)) underflows to -inf where softmax rounds to 0: "
                               "compute x - logsumexp(x) instead", [f"case: {case}"])
            if got.shape == want.shape and torch.isnan(got).any():
                raise Mismatch("log_softmax overflows for large inputs (nan): subtract the "
                               "max before exp", [f"case: {case}"])
            compare(got, want, case, {
                "returned softmax, not its log": lambda x=x, dim=dim: gf.softmax(x, dim),
                "forgot to subtract log-sum-exp: only the max was subtracted":
                    lambda x=x, dim=dim: x - x.amax(dim, keepdim=True),
                "normalised along the wrong dim": lambda x=x, dim=dim: gf.log_softmax(
                    x, 0 if dim != 0 else 1) if x.dim() > 1 else None,
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("log_softmax", body)


def check_cross_entropy(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        g = torch.Generator().manual_seed(0)
        specs = [("logits [8, 5]", randn(8, 5, seed=5), None),
                 ("batch [2, 6, 11]", randn(2, 6, 11, seed=6, scale=2.0), None),
                 ("large logits 1e3", randn(4, 3, seed=7, scale=1e3), None),
                 ("one example [1, 4]", randn(1, 4, seed=8), None)]
        for case, logits, _ in specs:
            targets = torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=g)
            want = gf.cross_entropy(logits, targets)
            got = as_tensor(call(fn, logits.clone(), targets.clone()), "cross_entropy")
            picked = gf.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            probs = gf.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            compare(got, want, case, {
                "returned the sum instead of the mean over examples": lambda p=picked: -p.sum(),
                "forgot the log: averaged -softmax(logits)[target] instead of "
                "-log softmax(logits)[target]": lambda p=probs: -p.mean(),
                "the sign is flipped: the loss is the *negative* log-likelihood":
                    lambda p=picked: p.mean(),
                "returned one loss per example; take the mean": lambda p=picked: -p,
                "used the raw logit of the target, without log-softmax":
                    lambda lg=logits, t=targets: -lg.gather(-1, t.unsqueeze(-1)).mean(),
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("cross_entropy", body)


# -- lesson 3 ---------------------------------------------------------------------------------

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
                "sines and cosines concatenated in two halves; interleave them (even "
                "columns sin, odd columns cos)": lambda: _sinusoid_variant(n_pos, d, base,
                                                                          concat=True),
            }, atol=1e-5)
            cases.append(case)
        return cases
    return run_check("sinusoidal_positions", body)


# -- lesson 3b --------------------------------------------------------------------------------

def reference_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10,
                  weighted: bool = True, true_class: bool = False) -> float:
    """Reference expected calibration error (and two wrong variants used for diagnosis)."""
    conf, pred = probs.double().max(-1)
    if true_class:
        conf = probs.double().gather(-1, labels[:, None])[:, 0]
    correct = (pred == labels).double()
    bins = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    gaps, sizes = [], []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            gaps.append((correct[m].mean() - conf[m].mean()).abs().item())
            sizes.append(m.sum().item())
    if weighted:
        return sum(g * s for g, s in zip(gaps, sizes)) / probs.shape[0]
    return sum(gaps) / len(gaps)


def check_expected_calibration_error(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        g = torch.Generator().manual_seed(3)
        for n, c, temp, n_bins in [(200, 5, 1.0, 10), (500, 10, 0.3, 15), (50, 3, 3.0, 5)]:
            logits = torch.randn(n, c, generator=g) / temp
            labels = torch.where(torch.rand(n, generator=g) < 0.6, logits.argmax(-1),
                                 torch.randint(0, c, (n,), generator=g))
            probs = logits.softmax(-1)
            case = f"n={n}, classes={c}, n_bins={n_bins}"
            want = torch.tensor(reference_ece(probs, labels, n_bins), dtype=torch.float64)
            got = call(fn, probs, labels, n_bins)
            try:
                got = torch.tensor(float(got), dtype=torch.float64)
            except (TypeError, ValueError) as e:
                raise Mismatch(f"return a float, got {type(got).__name__}") from e
            conf, pred = probs.max(-1)
            per_sample = ((pred == labels).double() - conf.double()).abs().mean()
            compare(got, want, case, {
                "bins averaged equally; weight each bin's gap by its share of examples |B|/n":
                    lambda: torch.tensor(reference_ece(probs, labels, n_bins, weighted=False),
                                         dtype=torch.float64),
                "used the probability of the true label as confidence; use the highest "
                "probability (the predicted class)": lambda: torch.tensor(
                    reference_ece(probs, labels, n_bins, true_class=True), dtype=torch.float64),
                "compared each example's 0/1 correctness with its confidence; ECE compares "
                "averages within each bin": lambda: per_sample,
            }, atol=1e-6)
            cases.append(case)
        return cases
    return run_check("expected_calibration_error", body)
