"""Checks for lesson 13: FLOP counts, the compute frontier, power-law and Chinchilla fits,
the compute-optimal split of a budget, and doubling times.

The right answers are computed in float64 here (they agree with ``gptscope.scaling`` and
``gptscope.train.mfu``, tested); answers come back as floats or 0-dim tensors. A fit is
judged by what it minimises: the Chinchilla check accepts any parameters whose Huber
objective is as low as the best fit's, and names the objective a wrong fit minimised.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.course import datasets
from gptscope.course.checks._answers import (
    dict_answer,
    tensor_answer,
    tuple_answer,
)
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.scaling import fits
from gptscope.train import mfu


def float_answer(value: Any, what: str) -> float:
    """``value`` as a finite float (a number or a one-element tensor), else a Mismatch."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "None (did you forget the `return`?)" if value is None else \
            f"a {type(value).__name__}"
        raise Mismatch(f"{what} should be a number; it is {kind}")
    if not math.isfinite(value):
        raise Mismatch(f"{what} is {value}; it should be a finite number")
    return float(value)


def named(got: float, want: float, variants: dict[str, float], case: str,
          rel: float = 1e-6) -> None:
    """Raise Mismatch unless ``got`` equals ``want``; name the variant it equals."""
    if math.isclose(got, want, rel_tol=rel):
        return
    for message, value in variants.items():
        if not math.isclose(value, want, rel_tol=rel) and math.isclose(got, value, rel_tol=rel):
            raise Mismatch(message, [f"case: {case}"])
    raise Mismatch(f"{case}: got {got:.6g}, expected {want:.6g}", [f"case: {case}"])


# -- flops_per_token and training_flops -----------------------------------------------------

def flops_truth(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """The trainer's own count (``gptscope.train.mfu``): 6 N + 12 L H Q T."""
    return mfu.flops_per_token(cfg, seq_len)


FLOP_CASES = [
    (ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257, n_ctx=1024), None),
    (ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=100, n_ctx=64), 32),
    (ModelConfig(n_layers=3, d_model=48, n_heads=6, d_vocab=10, n_ctx=16, attn_only=True),
     None),
    (ModelConfig(n_layers=2, d_model=45, n_heads=3, d_head=16, d_vocab=128, n_ctx=64), None),
    (ModelConfig(n_layers=0, d_model=32, n_heads=2, d_vocab=77, n_ctx=8), None),
]


def _label(cfg: ModelConfig, t: int | None) -> str:
    return (f"n_layers={cfg.n_layers}, d_model={cfg.d_model}, n_heads={cfg.n_heads}, "
            f"d_head={cfg.d_head}, seq_len={t or cfg.n_ctx}, attn_only={cfg.attn_only}")


def flop_variants(cfg: ModelConfig, t: int | None) -> dict[str, float]:
    seq = cfg.n_ctx if t is None else t
    n = float(mfu.matmul_params(cfg))
    attn = 12.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * seq
    return {
        "only the forward pass counted (2N); training is 6N (forward + backward)":
            2.0 * n + attn / 3,
        "forward-only for N (2N) with the full attention term": 2.0 * n + attn,
        "the attention term 12 L H Q T is missing": 6.0 * n,
        "the unembedding (d_model * d_vocab) is missing from N": 6.0 * cfg.n_params + attn,
        "the embedding was counted as a matmul too; N is the blocks plus the unembedding "
        "only": 6.0 * (n + cfg.d_model * cfg.d_vocab) + attn,
        "seq_len ignored: T is the seq_len argument (n_ctx only by default)":
            6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * cfg.n_ctx,
        "the attention term used d_model for H Q; with d_head != d_model / n_heads it is "
        "n_heads * d_head": 6.0 * n + 12.0 * cfg.n_layers * cfg.d_model * seq,
    }


def check_flops_per_token(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[ModelConfig, int | None]) -> str:
        cfg, t = case
        got = float_answer(call(fn, cfg) if t is None else call(fn, cfg, t),
                           "flops_per_token(...)")
        want = flops_truth(cfg, t)
        named(got, want, flop_variants(cfg, t), _label(cfg, t))
        return f"{_label(cfg, t)}: {want:.4g}"

    return run_check("flops_per_token", lambda: run_cases(FLOP_CASES, one_case))


TRAINING_CASES = [(FLOP_CASES[1][0], 1_000_000, 2.0, None), (FLOP_CASES[3][0], 250_000, 0.5, 32),
                  (FLOP_CASES[4][0], 40_000, 3.0, None)]

EPOCHS_IGNORED = ("epochs ignored: D is every token seen, dataset_tokens * epochs (two "
                  "epochs cost twice the compute)")
D_IN_EPOCHS = ("D counted in epochs: D is the number of tokens seen (dataset_tokens * epochs),"
               " not the number of passes")


def check_training_flops(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[ModelConfig, int, float, int | None]) -> str:
        cfg, tokens, epochs, t = case
        args = (cfg, tokens, epochs) if t is None else (cfg, tokens, epochs, t)
        got = float_answer(call(fn, *args), "training_flops(...)")
        per_token = flops_truth(cfg, t)
        seq = cfg.n_ctx if t is None else t
        label = f"{_label(cfg, t)}, dataset_tokens={tokens}, epochs={epochs}"
        variants = {EPOCHS_IGNORED: per_token * tokens, D_IN_EPOCHS: per_token * epochs,
                    "divided by epochs: D is dataset_tokens * epochs": per_token * tokens
                    / epochs,
                    "multiplied by seq_len again: dataset_tokens already counts tokens, not "
                    "sequences": per_token * tokens * epochs * seq}
        variants |= {m: v * tokens * epochs for m, v in flop_variants(cfg, t).items()}
        named(got, per_token * tokens * epochs, variants, label)
        return label

    return run_check("training_flops", lambda: run_cases(TRAINING_CASES, one_case))


# -- compute_frontier ------------------------------------------------------------------------

def frontier_truth(compute: Tensor, mean: Tensor, strict_ties: bool = True
                   ) -> list[int]:
    """Indices of the lower envelope of (compute, mean loss), in increasing compute."""
    order = sorted(range(len(compute)), key=lambda i: (float(compute[i]), float(mean[i])))
    keep: list[int] = []
    for i in order:
        cheaper = [j for j in keep if strict_ties or compute[j] < compute[i]]
        if all(mean[i] < mean[j] for j in cheaper):
            keep.append(i)
    return keep


def _shipped_table() -> tuple[Tensor, Tensor]:
    from gptscope.course.solutions.lesson13_scaling import sweep_table
    from gptscope.scaling.saved import load_saved_sweep

    table = sweep_table(load_saved_sweep("cpu-20m").rows)
    return table["compute"], table["loss"]


def frontier_cases() -> list[tuple[str, Tensor, Tensor]]:
    compute, loss = _shipped_table()
    perm = torch.randperm(len(compute), generator=torch.Generator().manual_seed(13))
    # Hand-made: shapes 1 and 2 cost the same (an IsoFLOP pair); shape 3's best seed beats
    # shape 2's mean but its mean does not; shape 5's first seed is its luckiest.
    small_c = torch.tensor([1e9, 2e9, 2e9, 4e9, 8e9, 1.6e10], dtype=torch.float64)
    small_l = torch.tensor([[3.0, 3.2], [2.9, 2.7], [2.6, 2.8], [2.9, 2.1], [2.4, 2.6],
                            [2.45, 2.1]], dtype=torch.float64)
    return [("the shipped cpu-20m sweep (24 shapes x 4 seeds)", compute, loss),
            ("cpu-20m with its shapes shuffled", compute[perm], loss[perm]),
            ("6 shapes x 2 seeds, two of equal compute", small_c, small_l),
            ("one seed per shape", compute[:12], loss[:12, :1]),
            ("float32 inputs", compute.float(), loss.float())]


ENVELOPE_OVER_SEEDS = ("an envelope over seeds: the frontier of single runs picks the "
                       "luckiest seed of each shape; average each shape's seeds first, then "
                       "take the envelope")
FIRST_SEED = "used only the first seed of each shape; average every seed (loss.mean(dim=1))"
UPPER = ("kept the shapes worse than every cheaper one (an upper envelope); the frontier keeps "
         "the shapes that beat every cheaper one")
RUNNING_MIN = ("returned the running minimum at every shape; keep only the shapes that beat "
               "every cheaper one")
UNSORTED = "the frontier is right but out of order: return it in increasing compute"
TIES = ("of two shapes with the same compute only the lower loss is on the frontier; you "
        "kept both")


def frontier_variants(compute: Tensor, loss: Tensor) -> Variants:
    c, l64 = compute.double(), loss.double()
    mean = l64.mean(1)

    def pick(idx: list[int], values: Tensor, cs: Tensor = c) -> Tensor:
        return torch.stack([cs[idx], values[idx]])

    def upper() -> Tensor:
        return pick(frontier_truth(c, -mean), mean)

    def running_min() -> Tensor:
        order = sorted(range(len(c)), key=lambda i: (float(c[i]), float(mean[i])))
        return torch.stack([c[order], mean[order].cummin(0).values])

    flat_c = c.repeat_interleave(l64.shape[1])
    return [(ENVELOPE_OVER_SEEDS, lambda: pick(frontier_truth(c, l64.min(1).values),
                                               l64.min(1).values)),
            (ENVELOPE_OVER_SEEDS, lambda: pick(frontier_truth(flat_c, l64.flatten()),
                                               l64.flatten(), flat_c)),
            (FIRST_SEED, lambda: pick(frontier_truth(c, l64[:, 0]), l64[:, 0])),
            (UPPER, upper), (RUNNING_MIN, running_min),
            (UNSORTED, lambda: pick(sorted(frontier_truth(c, mean)), mean)),
            (TIES, lambda: pick(frontier_truth(c, mean, strict_ties=False), mean)),
            (TIES, lambda: pick(sorted(frontier_truth(c, mean, strict_ties=False),
                                       key=lambda i: (float(c[i]), -float(mean[i]))), mean))]


def check_compute_frontier(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, Tensor, Tensor]) -> str:
        label, compute, loss = case
        got = tuple_answer(call(fn, compute.clone(), loss.clone()),
                           ("frontier_compute", "frontier_loss"), "compute_frontier")
        fc = tensor_answer(got[0], "frontier_compute")
        fl = tensor_answer(got[1], "frontier_loss")
        if fc.shape != fl.shape or fc.dim() != 1:
            raise Mismatch(f"{label}: frontier_compute has shape {list(fc.shape)} and "
                           f"frontier_loss {list(fl.shape)}; return two 1-D tensors of equal "
                           "length", [f"case: {label}"])
        mean = loss.double().mean(1)
        idx = frontier_truth(compute.double(), mean)
        want = torch.stack([compute.double()[idx], mean[idx]])
        compare(torch.stack([fc.double(), fl.double()]), want, label,
                frontier_variants(compute, loss), "the frontier (compute, loss)",
                atol=1e-9, rtol=1e-6)
        return f"{label}: {len(idx)} shapes on the frontier"

    return run_check("compute_frontier", lambda: run_cases(frontier_cases(), one_case))


# -- fit_power_law ---------------------------------------------------------------------------

def reference_power_law(n: Tensor, loss: Tensor) -> tuple[float, float]:
    """(a, alpha) of ``gptscope.scaling.fit_power_law``: least squares in log-log space."""
    law = fits.fit_power_law(n.double().numpy(), loss.double().numpy())
    return law.scale, -law.exponent


def linear_space_power_law(n: Tensor, loss: Tensor) -> tuple[float, float]:
    """The fit a learner gets minimising squared error on the losses themselves."""
    a0, alpha0 = reference_power_law(n, loss)
    x, y = n.double(), loss.double()
    theta = torch.tensor([math.log(a0), alpha0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = (theta[0].exp() * x ** -theta[1] - y).pow(2).sum()
        value.backward()
        return value

    opt.step(closure)
    return math.exp(theta[0].item()), theta[1].item()


def _semilog(x: Tensor, y: Tensor) -> tuple[float, float]:
    slope, intercept = torch.linalg.lstsq(torch.stack([x, torch.ones_like(x)], 1),
                                          y[:, None]).solution[:, 0].tolist()
    return intercept, slope


def power_law_cases() -> list[tuple[str, Tensor, Tensor]]:
    cases = []
    for seed, a, alpha in [(0, 40.0, 0.3), (1, 12.0, 0.076)]:
        n, loss = datasets.scaling_sweep(seed=seed, a=a, alpha=alpha)
        cases.append((f"generated sweep seed {seed} (true a={a}, alpha={alpha})", n, loss))
    n, loss = datasets.scaling_sweep(seed=2, a=5.0, alpha=0.5, noise=0.1)
    cases.append(("generated sweep with 10% noise (true a=5, alpha=0.5)", n, loss))
    compute, seed_loss = _shipped_table()
    mean = seed_loss.mean(1)
    idx = frontier_truth(compute, mean)
    cases.append(("the cpu-20m frontier", compute[idx], mean[idx]))
    return cases


POWER_SIGN = "the exponent has the wrong sign: loss = a * n^(-alpha), so alpha is minus the slope"
POWER_LOG_A = "returned the intercept log(a); a = exp(intercept)"
POWER_BASES = ("mixed logarithm bases: the fit used natural logs but a was computed as "
               "10**intercept")
POWER_LINEAR = ("fitted in linear space (squared error on the losses): the largest losses "
                "decide that fit; fit a straight line to log loss against log n")
POWER_SEMILOG = ("only one axis was logged: a power law is a straight line when both n and "
                 "the loss are logged")
POWER_ORDER = "returned (alpha, a); return (a, alpha)"


def power_law_variants(n: Tensor, loss: Tensor) -> list[tuple[str, tuple[float, float]]]:
    a, alpha = reference_power_law(n, loss)
    x, y = n.double(), loss.double()
    semi_a, semi_slope = _semilog(x.log(), y)
    semi_b, semi_slope2 = _semilog(x, y.log())
    return [(POWER_SIGN, (a, -alpha)), (POWER_LOG_A, (math.log(a), alpha)),
            (POWER_BASES, (10 ** math.log(a), alpha)),
            (POWER_LINEAR, linear_space_power_law(n, loss)),
            (POWER_SEMILOG, (semi_a, -semi_slope)),  # loss against log n
            (POWER_SEMILOG, (math.exp(semi_b), -semi_slope2)),  # log loss against n
            (POWER_ORDER, (alpha, a))]


def check_fit_power_law(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, Tensor, Tensor]) -> str:
        label, n, loss = case
        got = tuple_answer(call(fn, n.clone(), loss.clone()), ("a", "alpha"), "fit_power_law")
        ga, galpha = (float_answer(v, w) for v, w in zip(got, ("a", "alpha")))
        want = reference_power_law(n, loss)
        if _pair_close((ga, galpha), want):
            return f"{label}: a={ga:.3g}, alpha={galpha:.3g}"
        for message, wrong in power_law_variants(n, loss):
            if not _pair_close(wrong, want) and _pair_close((ga, galpha), wrong):
                raise Mismatch(message, [f"case: {label}"])
        raise Mismatch(f"{label}: got a={ga:.4g}, alpha={galpha:.4g}; expected a={want[0]:.4g}, "
                       f"alpha={want[1]:.4g} (fit a line in log-log space)", [f"case: {label}"])

    return run_check("fit_power_law", lambda: run_cases(power_law_cases(), one_case))


def _pair_close(got: tuple[float, float], want: tuple[float, float], rel: float = 1e-3
                ) -> bool:
    return all(math.isclose(g, w, rel_tol=rel, abs_tol=1e-9) for g, w in zip(got, want))


# -- fit_chinchilla --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChinchillaCase:
    label: str
    n: Tensor
    d: Tensor
    loss: Tensor


def chinchilla_cases() -> list[ChinchillaCase]:
    def make(label: str, truth: tuple[float, ...], n_range: tuple[float, float],
             d_range: tuple[float, float], seed: int, outliers: int = 0) -> ChinchillaCase:
        e, big_a, big_b, alpha, beta = truth
        n, d = torch.meshgrid(torch.logspace(*map(math.log10, n_range), 6, dtype=torch.float64),
                              torch.logspace(*map(math.log10, d_range), 6, dtype=torch.float64),
                              indexing="ij")
        n, d = n.flatten(), d.flatten()
        loss = (e + big_a / n**alpha + big_b / d**beta) * (
            1 + 0.01 * randn(n.numel(), seed=seed, dtype=torch.float64))
        loss[:outliers] *= 1.3  # runs gone wrong: the Huber loss shrugs them off
        return ChinchillaCase(label, n, d, loss)

    return [make("Hoffmann et al.'s law, 1% noise", (1.69, 406.4, 410.7, 0.34, 0.28),
                 (1e7, 1e10), (1e9, 1e12), seed=130),
            make("Besiroglu et al.'s law, 1% noise and 3 runs gone wrong (loss x 1.3)",
                 (1.82, 482.0, 2085.0, 0.35, 0.37), (1e7, 1e10), (1e9, 1e12), seed=131,
                 outliers=3),
            make("a tiny-model law (E 0.3, A 60, B 500, alpha 0.45, beta 0.4)",
                 (0.3, 60.0, 500.0, 0.45, 0.4), (1e4, 1e6), (1e5, 1e7), seed=132)]


def huber_log_objective(params: dict[str, float], case: ChinchillaCase,
                        delta: float = 1e-3) -> float:
    """The right objective at ``params``: Huber(log prediction - log loss), summed."""
    log_n, log_d, log_l = case.n.log(), case.d.log(), case.loss.log()
    pred = (params["E"] + params["A"] * (-params["alpha"] * log_n).exp()
            + params["B"] * (-params["beta"] * log_d).exp()).log()
    return float(F.huber_loss(pred, log_l, delta=delta, reduction="sum"))


def _wrong_objectives() -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    def huber(delta: float) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda pred, target: F.huber_loss(pred, target, delta=delta, reduction="sum")

    return {"squared": lambda pred, target: (pred - target).pow(2).sum(),
            "huber": huber(1e-3)}


CHIN_SQUARED = ("fitted squared error on log L (or a Huber loss with delta=1, torch's default, "
                "which is squared error at these residuals): a few bad runs pull that fit; "
                "use the Huber loss with delta=1e-3")
CHIN_LINEAR = ("fitted the losses themselves, not their logs: compare log(prediction) with "
               "log(loss), so every run counts by its relative error")
CHIN_LOGS = "returned the log-parameters (a, b, e); return A = exp(a), B = exp(b), E = exp(e)"
CHIN_SWAP = "swapped the terms: A and alpha belong to N (A / N^alpha), B and beta to D"
CHIN_WORSE = ("your fit ends at a higher Huber loss than the best fit: L-BFGS stopped in a "
              "worse minimum; start it from a grid of starting points and keep the best end")

# The wrong objectives a fit may have minimised: (message, space of the residual, loss).
_WRONG_FITS = [(CHIN_SQUARED, "log", "squared"), (CHIN_LINEAR, "linear", "huber"),
               (CHIN_LINEAR, "linear", "squared")]


@functools.lru_cache(maxsize=8)
def _best_fit(index: int) -> tuple[dict[str, float], float]:
    from gptscope.course.solutions.lesson13_scaling import fit_chinchilla

    case = chinchilla_cases()[index]
    best = fit_chinchilla(case.n, case.d, case.loss)
    return best, huber_log_objective(best, case)


def _wrong_value(theta: Tensor, case: ChinchillaCase, space: str, loss_kind: str) -> Tensor:
    """A wrong objective at theta [5] = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    pred = torch.stack([a - alpha * case.n.log(), b - beta * case.d.log(),
                        e.expand(case.n.numel())]).logsumexp(0)
    if space == "log":
        return _wrong_objectives()[loss_kind](pred, case.loss.log())
    return _wrong_objectives()[loss_kind](pred.exp(), case.loss)


def _theta(params: dict[str, float]) -> Tensor:
    return torch.tensor([math.log(params["A"]), math.log(params["B"]), math.log(params["E"]),
                         params["alpha"], params["beta"]], dtype=torch.float64)


@functools.lru_cache(maxsize=32)
def _wrong_minimum(index: int, space: str, loss_kind: str) -> float:
    """The lowest value of a wrong objective, reached from the right fit (its own basin)."""
    case = chinchilla_cases()[index]
    theta = _theta(_best_fit(index)[0]).requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=1000, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = _wrong_value(theta, case, space, loss_kind)
        value.backward()
        return value

    opt.step(closure)
    return float(_wrong_value(theta.detach(), case, space, loss_kind))


def _chinchilla_diagnosis(got: dict[str, float], index: int, value: float, best: float
                          ) -> str:
    case = chinchilla_cases()[index]
    unlogged = {k: math.exp(v) if k in "EAB" else v for k, v in got.items()}
    swapped = {"E": got["E"], "A": got["B"], "B": got["A"], "alpha": got["beta"],
               "beta": got["alpha"]}
    for message, fixed in ((CHIN_LOGS, unlogged), (CHIN_SWAP, swapped)):
        if huber_log_objective(fixed, case) <= best * 1.002:
            return message
    if min(got["A"], got["B"], got["E"]) > 0:
        for message, space, kind in _WRONG_FITS:
            wrong = float(_wrong_value(_theta(got), case, space, kind))
            if wrong <= _wrong_minimum(index, space, kind) * 1.002:
                return message
    return f"{CHIN_WORSE} (yours {value:.4g}, the best {best:.4g})"


def _read_fit(value: Any) -> dict[str, float]:
    found = dict_answer(value, ("E", "A", "B", "alpha", "beta"), "fit_chinchilla")
    out = {k: float_answer(found[k], f"fit_chinchilla(...)[{k!r}]")
           for k in ("E", "A", "B", "alpha", "beta")}
    return out


def check_fit_chinchilla(fn: Callable[..., Any]) -> CheckResult:
    def one_case(index: int) -> str:
        case = chinchilla_cases()[index]
        got = _read_fit(call(fn, case.n.clone(), case.d.clone(), case.loss.clone()))
        _, best = _best_fit(index)
        try:
            value = huber_log_objective(got, case)
        except (ValueError, RuntimeError):
            value = math.nan
        if math.isfinite(value) and value <= best * 1.002:
            return f"{case.label}: Huber objective {value:.4g} (best {best:.4g})"
        raise Mismatch(_chinchilla_diagnosis(got, index, value, best), [f"case: {case.label}"])

    return run_check("fit_chinchilla", lambda: run_cases(range(3), one_case))


# -- compute_optimal_allocation --------------------------------------------------------------

ALLOCATION_CASES = [
    ("Hoffmann et al.'s fit, Chinchilla's budget 5.76e23 FLOPs",
     dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28), 5.76e23),
    ("Besiroglu et al.'s fit, 1e21 FLOPs", dict(E=1.82, A=482.0, B=2085.0, alpha=0.35,
                                                beta=0.37), 1e21),
    ("a tiny-model fit, 1e13 FLOPs", dict(E=0.3, A=60.0, B=500.0, alpha=0.45, beta=0.4), 1e13),
]


def allocation_truth(fit: dict[str, float], compute: float, per: float = 6.0,
                     exponent_of: str = "beta", g: str = "right") -> tuple[float, float]:
    """(N_opt, D_opt) with C = ``per`` N D; the other arguments build known mistakes: N's
    exponent from ``exponent_of``, and G "right", "missing", "unpowered" or "inverted"."""
    alpha, beta, big_a, big_b = fit["alpha"], fit["beta"], fit["A"], fit["B"]
    ratio = alpha * big_a / (beta * big_b)
    constant = {"right": ratio ** (1 / (alpha + beta)), "missing": 1.0, "unpowered": ratio,
                "inverted": ratio ** (-1 / (alpha + beta))}[g]
    n = constant * (compute / per) ** (fit[exponent_of] / (alpha + beta))
    return n, compute / (per * n)


def allocation_variants(fit: dict[str, float], compute: float
                        ) -> list[tuple[str, tuple[float, float]]]:
    n, d = allocation_truth(fit, compute)
    twenty = math.sqrt(compute / 120)  # 20 tokens per parameter: C = 6 N (20 N)
    return [
        ("used C = 2 N D (the forward pass only); training costs C = 6 N D",
         allocation_truth(fit, compute, per=2.0)),
        ("N_opt grows as C^(beta / (alpha + beta)); you used alpha / (alpha + beta)",
         allocation_truth(fit, compute, exponent_of="alpha")),
        ("the constant G is missing: N_opt = G (C/6)^(beta/(alpha+beta)) with G = (alpha A / "
         "(beta B))^(1/(alpha+beta))", allocation_truth(fit, compute, g="missing")),
        ("G is raised to 1 / (alpha + beta): G = (alpha A / (beta B))^(1/(alpha+beta))",
         allocation_truth(fit, compute, g="unpowered")),
        ("G is upside down: G = (alpha A / (beta B))^(1/(alpha+beta)), not (beta B / "
         "(alpha A))^(...)", allocation_truth(fit, compute, g="inverted")),
        ("D_opt = C / (6 N_opt); you left out the 6", (n, compute / n)),
        ("returned (D_opt, N_opt); return (N_opt, D_opt)", (d, n)),
        ("used the 20-tokens-per-parameter rule of thumb; derive the split from this fit",
         (twenty, 20 * twenty)),
    ]


def check_compute_optimal_allocation(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, dict[str, float], float]) -> str:
        label, fit, compute = case
        got = tuple_answer(call(fn, dict(fit), compute), ("n_opt", "d_opt"),
                           "compute_optimal_allocation")
        pair = tuple(float_answer(v, w) for v, w in zip(got, ("n_opt", "d_opt")))
        want = allocation_truth(fit, compute)
        if _pair_close(pair, want, rel=1e-4):
            return f"{label}: N_opt {want[0]:.3g}, D_opt {want[1]:.3g}"
        for message, wrong in allocation_variants(fit, compute):
            if not _pair_close(wrong, want, rel=1e-4) and _pair_close(pair, wrong, rel=1e-4):
                raise Mismatch(message, [f"case: {label}"])
        raise Mismatch(f"{label}: got N_opt {pair[0]:.4g}, D_opt {pair[1]:.4g}; expected "
                       f"{want[0]:.4g} and {want[1]:.4g}", [f"case: {label}"])

    return run_check("compute_optimal_allocation",
                     lambda: run_cases(ALLOCATION_CASES, one_case))


# -- doubling_time ---------------------------------------------------------------------------

def doubling_cases() -> list[tuple[str, Tensor, Tensor]]:
    from gptscope.scaling.trends import era_systems, load_compute_trends

    years = torch.linspace(2012, 2022, 21, dtype=torch.float64)
    noisy = 1e17 * 2.0 ** ((years - 2012) / 0.5 + randn(21, seed=133, dtype=torch.float64))
    cases = [("generated: doubling every 6 months, with noise", years, noisy)]
    for era, systems in era_systems(load_compute_trends()).items():
        if era == "large-scale":
            continue
        cases.append((f"the bundled {era} systems",
                      torch.tensor([s.year for s in systems], dtype=torch.float64),
                      torch.tensor([s.flop for s in systems], dtype=torch.float64)))
    return cases


def doubling_variants(years: Tensor, compute: Tensor) -> dict[str, float]:
    x, y = years.double(), compute.double().log2()
    cov = ((x - x.mean()) * (y - y.mean())).sum()
    t = float((x - x.mean()).pow(2).sum() / cov)
    return {"natural log used: that is the time to grow e-fold; fit log2(compute) so the "
            "slope counts doublings": t / math.log(2),
            "log10 used: that is the time to grow 10-fold; fit log2(compute)":
                t / math.log10(2),
            "returned months; the docstring asks for years (1 / slope)": 12 * t,
            "returned the slope (doublings per year); the doubling time is 1 / slope": 1 / t,
            "regressed the years on log2(compute); fit log2(compute) against the years":
                float(cov / (y - y.mean()).pow(2).sum())}


def check_doubling_time(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, Tensor, Tensor]) -> str:
        label, years, compute = case
        got = float_answer(call(fn, years.clone(), compute.clone()), "doubling_time(...)")
        x, y = years.double(), compute.double().log2()
        want = float((x - x.mean()).pow(2).sum() / ((x - x.mean()) * (y - y.mean())).sum())
        named(got, want, doubling_variants(years, compute), label, rel=1e-6)
        return f"{label}: {12 * want:.1f} months"

    return run_check("doubling_time", lambda: run_cases(doubling_cases(), one_case))
