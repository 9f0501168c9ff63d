"""Checks for lessons 1 and 2: the MLP and its gradients, softmax and friends."""

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
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    as_tensor,
    call,
    compare,
    float32_atol,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf

# -- lesson 1 ---------------------------------------------------------------------------------


def _mlp_params(d_in: int, d_hidden: int, n_out: int, seed: int, dtype=torch.float64):
    return (randn(d_in, d_hidden, seed=seed, dtype=dtype) / math.sqrt(d_in),
            randn(d_hidden, seed=seed + 1, dtype=dtype) * 0.5,
            randn(d_hidden, n_out, seed=seed + 2, dtype=dtype) / math.sqrt(d_hidden),
            randn(n_out, seed=seed + 3, dtype=dtype) * 0.5)


MLP_SHAPES = [(5, 4, 8, 3, 0), (1, 64, 32, 10, 1), (17, 3, 5, 2, 2), (4, 6, 6, 6, 3)]


def _mlp_variants(x, W1, b1, W2, b2) -> dict[str, Callable[[], Any]]:
    def out(h: torch.Tensor) -> torch.Tensor:
        return h @ W2 + b2
    return {
        "no ReLU: the hidden layer must be relu(x @ W1 + b1)": lambda: out(x @ W1 + b1),
        "sigmoid used in the hidden layer; this MLP uses ReLU": lambda: out(torch.sigmoid(
            x @ W1 + b1)),
        "ReLU applied to the output logits too; only the hidden layer has one":
            lambda: torch.relu(out(torch.relu(x @ W1 + b1))),
        "a bias is missing (b1 or b2)": lambda: out(torch.relu(x @ W1)),
        "b1 added after the ReLU: the hidden layer is relu(x @ W1 + b1)":
            lambda: out(torch.relu(x @ W1) + b1),
        "the output bias b2 is missing": lambda: torch.relu(x @ W1 + b1) @ W2,
        "W1 used transposed: x [batch, d_in] @ W1 [d_in, d_hidden], no .T":
            lambda: out(torch.relu(x @ W1.T + b1)),
        "returned the hidden layer; go on through W2 and b2 to the logits":
            lambda: torch.relu(x @ W1 + b1),
        "softmax applied at the end; return the logits": lambda: out(torch.relu(
            x @ W1 + b1)).softmax(-1),
    }


def check_mlp_forward(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[int, int, int, int, int]) -> str:
        batch, d_in, d_h, n_out, seed = spec
        x = randn(batch, d_in, seed=seed + 10, dtype=torch.float64)
        W1, b1, W2, b2 = _mlp_params(d_in, d_h, n_out, seed)
        want = torch.relu(x @ W1 + b1) @ W2 + b2
        case = f"batch={batch}, d_in={d_in}, d_hidden={d_h}, n_classes={n_out}"
        compare(call(fn, x, W1, b1, W2, b2), want, case, _mlp_variants(x, W1, b1, W2, b2),
                "mlp_forward", axes=("batch", "class"))
        return case
    return run_check("mlp_forward", lambda: run_cases(MLP_SHAPES, one_case))


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
                variants["d(loss)/d(logits) is softmax(logits) - one_hot(y), divided by "
                         "the batch size; the softmax is missing"] = \
                    lambda name=name: _no_softmax_grad(x, y, W1, b1, W2, b2)[name]
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


def _no_softmax_grad(x, y, W1, b1, W2, b2) -> dict[str, torch.Tensor]:
    n = x.shape[0]
    pre = x @ W1 + b1
    h = torch.relu(pre)
    d = h @ W2 + b2
    d[torch.arange(n), y] -= 1
    d /= n
    dpre = (d @ W2.T) * (pre > 0)
    return {"W1": x.T @ dpre, "b1": dpre.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


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
        ("rows of very different scale", torch.tensor([[0.1, 0.2, 0.3],
                                                       [1000.0, 990.0, 1001.0]]), -1),
        ("a row of equal values", torch.full((2, 5), 3.0), -1),
        ("float64 [3, 4]", randn(3, 4, seed=4, dtype=torch.float64), -1),
        ("one element", torch.tensor([[2.5]]), -1),
        ("a vector [6]", randn(6, seed=5), 0),
    ]


def _other_dims(x: torch.Tensor, dim: int) -> list[int]:
    return [d for d in range(x.dim()) if d != dim % x.dim()]


def _softmax_variants(x: torch.Tensor, dim: int) -> Variants:
    x64 = x.double()
    wrong_dim = [("not normalised along dim: you normalised along another dimension, not the "
                  "one you were given", lambda d=d: gf.softmax(x64, d))
                 for d in _other_dims(x, dim)]
    return wrong_dim + list({
        "softmax overflows for inputs of 1000 (nan/inf): subtract the max along dim before "
        "exp": lambda: x64.float().exp().double() / x64.float().exp().double().sum(
            dim, keepdim=True),
        "subtracted the max of the whole tensor; subtract each slice's own max along dim "
        "(x.amax(dim, keepdim=True)), or rows of small values underflow to 0/0":
            lambda: (x64 - x64.max()).float().exp().double() / (x64 - x64.max()).float(
            ).exp().double().sum(dim, keepdim=True),
        "not normalised along dim: the probabilities along the dimension you were given "
        "must sum to 1 (divide by the sum of the exponentials)":
            lambda: (x64 - x64.amax(dim, keepdim=True)).exp(),
        "softmax normalised over the whole tensor instead of along dim":
            lambda: (x64 - x64.max()).exp() / (x64 - x64.max()).exp().sum(),
        "returned log-softmax; softmax is its exp": lambda: gf.log_softmax(x64, dim),
    }.items())


def check_softmax(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, torch.Tensor, int]) -> str:
        case, x, dim = spec
        want = gf.softmax(x.double(), dim=dim)
        got = call(fn, x.clone(), dim=dim)
        compare(got, want, case, _softmax_variants(x, dim), "softmax",
                atol=float32_atol(want, gf.softmax(x, dim=dim)))
        if got.dtype != x.dtype:
            raise Mismatch(f"{case}: returned dtype {got.dtype} for a {x.dtype} input; "
                           "keep the input's dtype")
        return case
    return run_check("softmax", lambda: run_cases(_float_cases(), one_case))


def check_log_softmax(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, torch.Tensor, int]) -> str:
        case, x, dim = spec
        x64 = x.double()
        want = gf.log_softmax(x64, dim=dim)
        got = call(fn, x.clone(), dim=dim)
        compare(got, want, case, [("normalised along the wrong dim", lambda d=d: gf.log_softmax(
            x64, d)) for d in _other_dims(x, dim)] + list({
            "log(softmax(x)) underflows to -inf where softmax rounds to 0: compute "
            "x - logsumexp(x) instead": lambda: gf.softmax(x, dim).double().log(),
            "log_softmax overflows for large inputs (nan): subtract the max before exp":
                lambda: x64 - x.exp().sum(dim, keepdim=True).log().double(),
            "returned softmax, not its log": lambda: gf.softmax(x64, dim),
            "forgot to subtract log-sum-exp: only the max was subtracted":
                lambda: x64 - x64.amax(dim, keepdim=True),
            "the max was subtracted but not added back: log-sum-exp(x) = m + log(sum(exp(x "
            "- m)))": lambda: x64 - (x64 - x64.amax(dim, keepdim=True)).exp().sum(
                dim, keepdim=True).log(),
        }.items()), "log_softmax", atol=max(1e-4, float32_atol(want, gf.log_softmax(x, dim=dim))))
        return case
    cases = _float_cases() + [("underflow [0, -1e4]", torch.tensor([[0.0, -1e4]]), -1)]
    return run_check("log_softmax", lambda: run_cases(cases, one_case))


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
                "averaged over the classes too: pick the target's log-probability, then "
                "average over examples only": lambda p=picked, lg=logits: -p.mean()
                / lg.shape[-1],
                "used the raw logit of the target, without log-softmax":
                    lambda lg=logits, t=targets: -lg.gather(-1, t.unsqueeze(-1)).mean(),
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("cross_entropy", body)
