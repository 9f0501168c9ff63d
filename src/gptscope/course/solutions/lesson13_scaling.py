"""Lesson 13: compute and scaling laws, measured on sweeps of models you train.

A scaling study trains the same kind of model at many sizes N (parameters) on many amounts
of data D (tokens seen), and asks how the loss depends on the compute C spent. The
exercises below are the steps of such a study, in order: count the FLOPs of a model, total
them for a run, draw the compute-efficient frontier over a sweep, fit the power law along
it, fit Hoffmann et al.'s (Chinchilla's) parametric loss L(N, D), split a compute budget
between N and D with that fit, and read the doubling time off the history of training
compute.

The data: ``explore_scaling`` trains a small sweep here in seconds (``gptscope scaling
sweep --preset tiny``) and loads a larger one shipped with gptscope (``cpu-20m``: 96 runs, 24
shapes x 4 seeds, two sweeps of about 20 minutes), so every fit runs on real measurements.

Conventions shared by the exercises:

- compute is in FLOPs, sizes in parameters, data in tokens *seen* (an epoch count is not a
  data size: two epochs of 1M tokens is D = 2M), losses in nats;
- a power law is fitted as a straight line in log-log space, with natural logs;
- the sweep's seeds are averaged before anything is fitted;
- return Python floats (or tensors where the docstring says so).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ModelConfig


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token: 6 N + 12 L H Q T (the PaLM paper's appendix B).

    N = the matmul parameters: the blocks' weights (``cfg.n_params``: 4 H Q d_model per
    layer for attention plus 2 d_model d_mlp for the MLP) plus the unembedding d_model *
    d_vocab (the embedding is a lookup, not a matmul). 6 N = 2 N forward + 4 N backward.
    L layers, H heads, Q = d_head, T = seq_len (default ``cfg.n_ctx``): 12 L H Q T counts
    the attention scores and the weighted sum of values, forward and backward.
    """
    t = cfg.n_ctx if seq_len is None else seq_len
    n = cfg.n_params + cfg.d_model * cfg.d_vocab
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * t


def training_flops(cfg: ModelConfig, dataset_tokens: int, epochs: float,
                   seq_len: int | None = None) -> float:
    """The compute C of a whole run: FLOPs per token times the tokens seen, D.

    The run reads a data set of ``dataset_tokens`` tokens ``epochs`` times (a float: 0.5 is
    half of it once), in sequences of ``seq_len`` tokens (default ``cfg.n_ctx``). D counts
    every token the model trained on, so a repeated token counts each time it is seen.
    Use your ``flops_per_token``.
    """
    tokens_seen = dataset_tokens * epochs
    return flops_per_token(cfg, seq_len) * tokens_seen


def compute_frontier(compute: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
    """The compute-efficient frontier of a sweep: the shapes no cheaper shape beats.

    compute [k]: each shape's training FLOPs; loss [k, n_seeds]: its validation loss for
    each seed. Average each shape's seeds first (the frontier of single seeds picks the
    luckiest seed of each shape). Then sorted by compute, a shape is on the frontier when
    its mean loss is below the mean loss of every cheaper shape (of two shapes with the
    same compute, only the lower loss can be).

    Return (frontier_compute [m], frontier_loss [m]), in increasing compute (so the loss
    falls along it).
    """
    mean = loss.double().mean(dim=1)
    order = sorted(range(len(compute)), key=lambda i: (float(compute[i]), float(mean[i])))
    keep, best = [], math.inf
    for i in order:
        if mean[i] < best:
            keep.append(i)
            best = float(mean[i])
    idx = torch.tensor(keep, dtype=torch.long)
    return compute[idx], mean[idx]


def fit_power_law(n: Tensor, loss: Tensor) -> tuple[float, float]:
    """Fit loss = a * n^(-alpha) to a sweep; return (a, alpha) as floats.

    n [k] model sizes (or compute), loss [k] the losses reached. Take logs: log loss =
    log a - alpha log n is a straight line; fit it by least squares (natural logs) and
    turn the intercept back into a with exp. alpha > 0 when loss falls with size.
    """
    x = n.double().log()
    y = loss.double().log()
    xm, ym = x.mean(), y.mean()
    slope = ((x - xm) * (y - ym)).sum() / (x - xm).pow(2).sum()
    intercept = ym - slope * xm
    return math.exp(intercept.item()), -slope.item()


def _chinchilla_objective(theta: Tensor, log_n: Tensor, log_d: Tensor, log_loss: Tensor,
                          delta: float) -> Tensor:
    """Summed Huber loss of each parameter row theta [k, 5] = (a, b, e, alpha, beta): [k]."""
    a, b, e, alpha, beta = theta.unbind(-1)
    terms = torch.stack([a[:, None] - alpha[:, None] * log_n,
                         b[:, None] - beta[:, None] * log_d,
                         e[:, None].expand(-1, log_n.numel())])  # [3, k, runs]
    predicted = terms.logsumexp(dim=0)  # log(A/N^alpha + B/D^beta + E), without overflow
    target = log_loss.expand_as(predicted)
    return F.huber_loss(predicted, target, delta=delta, reduction="none").sum(-1)


def _lbfgs(start: Tensor, log_n: Tensor, log_d: Tensor, log_loss: Tensor, delta: float
           ) -> Tensor:
    """L-BFGS on the Huber objective from one start [5]; the end point [5]."""
    theta = start.clone()[None].requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=200, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = _chinchilla_objective(theta, log_n, log_d, log_loss, delta).sum()
        value.backward()
        return value

    opt.step(closure)
    return theta.detach()[0]


def fit_chinchilla(n: Tensor, d: Tensor, loss: Tensor, delta: float = 1e-3
                   ) -> dict[str, float]:
    """Fit L(N, D) = E + A / N^alpha + B / D^beta Hoffmann et al.'s way; return a dict
    with the floats "E", "A", "B", "alpha", "beta".

    n, d, loss [k]: each run's parameters, tokens seen and loss. Fit in log space: with
    A = exp(a), B = exp(b), E = exp(e), the predicted log loss is
    LSE(a - alpha log N, b - beta log D, e) (``torch.logsumexp``), and the objective is the
    Huber loss (delta 1e-3, summed over runs) between it and log L: robust to a few bad
    runs. The objective has local minima, so minimise it with L-BFGS from a grid of
    starting points and keep the best end (Hoffmann et al. start from every point of
    alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25};
    evaluating the grid first and starting from its best few finds the same minimum).
    Work in float64.
    """
    logs = [t.double().log() for t in (n, d, loss)]
    # Hoffmann et al.'s grid of starts, as rows of (a, b, e, alpha, beta): [4500, 5].
    grid = torch.cartesian_prod(torch.arange(0, 25.1, 5.0), torch.arange(0, 25.1, 5.0),
                                torch.arange(-1, 1.01, 0.5), torch.arange(0, 2.01, 0.5),
                                torch.arange(0, 2.01, 0.5)).double()
    screened = grid[_chinchilla_objective(grid, *logs, delta).argsort()[:4]]
    ends = [_lbfgs(start, *logs, delta) for start in screened]
    best = min(ends, key=lambda theta: float(_chinchilla_objective(theta[None], *logs, delta)))
    a, b, e, alpha, beta = best.tolist()
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha,
            "beta": beta}


def compute_optimal_allocation(fit: dict[str, float], compute: float) -> tuple[float, float]:
    """(N_opt, D_opt): the size and data that reach the lowest loss of ``fit`` for a
    budget of ``compute`` FLOPs, when training costs C = 6 N D.

    ``fit`` holds "E", "A", "B", "alpha", "beta" as ``fit_chinchilla`` returns them. On the
    curve 6 N D = C the loss is lowest where alpha A / N^alpha = beta B / D^beta, which
    gives N_opt = G (C / 6)^(beta / (alpha + beta)) with G = (alpha A / (beta B))^(1 /
    (alpha + beta)), and D_opt = C / (6 N_opt) (Hoffmann et al., appendix A). Derive it
    from this fit; the "20 tokens per parameter" rule of thumb is one fit's answer.
    """
    alpha, beta, big_a, big_b = fit["alpha"], fit["beta"], fit["A"], fit["B"]
    g = (alpha * big_a / (beta * big_b)) ** (1.0 / (alpha + beta))
    n_opt = g * (compute / 6.0) ** (beta / (alpha + beta))
    return n_opt, compute / (6.0 * n_opt)


def doubling_time(years: Tensor, compute: Tensor) -> float:
    """The doubling time, in years, of an exponential trend in ``compute``.

    years [k]: dates as decimal years (2016.5 is July 2016); compute [k]: training FLOPs.
    Fit log2(compute) = slope * year + c by least squares: the slope counts doublings per
    year, so the doubling time is 1 / slope (multiply by 12 to read it in months).
    """
    x, y = years.double(), compute.double().log2()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum()
    return 1.0 / slope.item()


def sweep_table(rows: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Given: a sweep's result rows as tensors, one row per shape (width, depth, data):
    "n" [k] parameters, "d" [k] tokens seen, "compute" [k] FLOPs, "loss" [k, n_seeds]."""
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if math.isfinite(r["val_loss"]):
            by.setdefault((r["width"], r["depth"], r["fraction"]), []).append(r)
    n_seeds = min(len(v) for v in by.values())
    first = [v[0] for v in by.values()]
    return {"n": torch.tensor([float(r["n_params"]) for r in first], dtype=torch.float64),
            "d": torch.tensor([float(r["tokens"]) for r in first], dtype=torch.float64),
            "compute": torch.tensor([r["flops"] for r in first], dtype=torch.float64),
            "loss": torch.tensor([[r["val_loss"] for r in v[:n_seeds]] for v in by.values()],
                                 dtype=torch.float64)}


def explore_scaling(out: str = "lesson13_sweep", preset: str = "tiny") -> dict[str, float]:
    """Given: train a small sweep (``preset``; resumed if ``out`` holds it), then run your
    functions on it and on the shipped ``cpu-20m`` sweep, beside gptscope's own fits."""
    from gptscope.scaling import fit_chinchilla as library_chinchilla
    from gptscope.scaling import fit_power_law as library_power_law
    from gptscope.scaling import get_sweep_preset, run_sweep
    from gptscope.scaling.saved import load_saved_sweep
    from gptscope.scaling.trends import era_systems, load_compute_trends

    found = {}
    for name, rows in [(preset, run_sweep(out, get_sweep_preset(preset))),
                       ("cpu-20m", load_saved_sweep("cpu-20m").rows)]:
        table = sweep_table(rows)
        front_c, front_l = compute_frontier(table["compute"], table["loss"])
        a, alpha = fit_power_law(front_c, front_l)
        theirs = library_power_law(front_c.numpy(), front_l.numpy())
        print(f"{name}: frontier of {len(front_c)} shapes, L = {a:.3g} C^-{alpha:.3f} "
              f"(gptscope: C^{theirs.exponent:.3f}, R^2 {theirs.r2:.3f})")
        found[f"{name}_alpha_c"] = alpha
    fit = fit_chinchilla(table["n"], table["d"], table["loss"].mean(1))
    ref = library_chinchilla(table["n"].numpy(), table["d"].numpy(),
                             table["loss"].mean(1).numpy())
    print("cpu-20m L(N, D): " + ", ".join(f"{k} {v:.3g}" for k, v in fit.items())
          + f" (gptscope's bounded fit: alpha {ref.alpha:.3g}, beta {ref.beta:.3g})")
    n_opt, d_opt = compute_optimal_allocation(fit, 1e13)
    print(f"for 1e13 FLOPs: N_opt {n_opt:.3g} parameters on D_opt {d_opt:.3g} tokens "
          f"({d_opt / n_opt:.1f} tokens per parameter)")
    eras = era_systems(load_compute_trends())
    for era, systems in eras.items():
        years = torch.tensor([s.year for s in systems], dtype=torch.float64)
        flop = torch.tensor([s.flop for s in systems], dtype=torch.float64)
        months = 12 * doubling_time(years, flop)
        print(f"{era}: training compute doubles every {months:.1f} months ({len(systems)} "
              "systems)")
        found[f"{era}_months"] = months
    return found | {"n_opt_1e13": n_opt, "d_opt_1e13": d_opt}
