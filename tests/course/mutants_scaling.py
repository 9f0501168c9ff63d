"""Lesson 13's known wrong answers (each with the phrase its check must say) and right answers
written differently from the reference (each must pass).

MUTANTS[exercise] and RIGHT_ANSWERS[exercise] are lists; ``mutants.py`` merges MUTANTS into
the course-wide table. Every message the lesson's checks can print has a mutant here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gptscope import scaling as lib
from gptscope.course.solutions import lesson13_scaling as s
from gptscope.scaling.trends import doubling_time as library_doubling_time
from gptscope.train import mfu


def _n(cfg):
    return cfg.n_params + cfg.d_model * cfg.d_vocab


def _attn(cfg, seq_len=None, heads_times_dhead=None):
    t = cfg.n_ctx if seq_len is None else seq_len
    hq = cfg.n_heads * cfg.d_head if heads_times_dhead is None else heads_times_dhead
    return 12.0 * cfg.n_layers * hq * t


# -- flops_per_token


def flops_forward_only(cfg, seq_len=None):
    return 2.0 * _n(cfg) + _attn(cfg, seq_len) / 3


def flops_forward_n_full_attention(cfg, seq_len=None):
    return 2.0 * _n(cfg) + _attn(cfg, seq_len)


def flops_no_attention(cfg, seq_len=None):
    return 6.0 * _n(cfg)


def flops_no_unembed(cfg, seq_len=None):
    return 6.0 * cfg.n_params + _attn(cfg, seq_len)


def flops_embedding_too(cfg, seq_len=None):
    return 6.0 * (_n(cfg) + cfg.d_model * cfg.d_vocab) + _attn(cfg, seq_len)


def flops_ignores_seq_len(cfg, seq_len=None):
    return 6.0 * _n(cfg) + _attn(cfg)


def flops_d_model_for_heads(cfg, seq_len=None):
    return 6.0 * _n(cfg) + _attn(cfg, seq_len, heads_times_dhead=cfg.d_model)


def flops_half_attention(cfg, seq_len=None):
    return 6.0 * _n(cfg) + _attn(cfg, seq_len) / 2


def flops_library(cfg, seq_len=None):
    return mfu.flops_per_token(cfg, seq_len)


def flops_forward_plus_backward(cfg, seq_len=None):
    t = cfg.n_ctx if seq_len is None else seq_len
    forward = 2 * _n(cfg) + 4 * cfg.n_layers * cfg.n_heads * cfg.d_head * t
    return float(forward + 2 * forward)


# -- training_flops


def training_epochs_ignored(cfg, dataset_tokens, epochs, seq_len=None):
    return s.flops_per_token(cfg, seq_len) * dataset_tokens


def training_d_in_epochs(cfg, dataset_tokens, epochs, seq_len=None):
    return s.flops_per_token(cfg, seq_len) * epochs


def training_divides_epochs(cfg, dataset_tokens, epochs, seq_len=None):
    return s.flops_per_token(cfg, seq_len) * dataset_tokens / epochs


def training_times_seq_len(cfg, dataset_tokens, epochs, seq_len=None):
    t = cfg.n_ctx if seq_len is None else seq_len
    return s.flops_per_token(cfg, seq_len) * dataset_tokens * epochs * t


def training_forward_only(cfg, dataset_tokens, epochs, seq_len=None):
    return flops_forward_only(cfg, seq_len) * dataset_tokens * epochs


def training_kaplan_6nd(cfg, dataset_tokens, epochs, seq_len=None):
    return 6.0 * _n(cfg) * dataset_tokens * epochs


def training_epochs_twice(cfg, dataset_tokens, epochs, seq_len=None):
    tokens_seen = dataset_tokens * epochs
    return s.flops_per_token(cfg, seq_len) * tokens_seen * epochs


def training_sequences(cfg, dataset_tokens, epochs, seq_len=None):
    t = cfg.n_ctx if seq_len is None else seq_len
    steps = dataset_tokens * epochs / t  # sequences seen, each of t tokens
    return mfu.flops_per_token(cfg, t) * steps * t


# -- compute_frontier


def _envelope(compute, mean):
    keep = s.compute_frontier(compute, mean[:, None])
    return keep


def frontier_min_over_seeds(compute, loss):
    return _envelope(compute, loss.min(1).values)


def frontier_every_run(compute, loss):
    return s.compute_frontier(compute.repeat_interleave(loss.shape[1]), loss.reshape(-1, 1))


def frontier_first_seed(compute, loss):
    return _envelope(compute, loss[:, 0])


def frontier_upper(compute, loss):
    c, l_ = s.compute_frontier(compute, -loss)
    return c, -l_


def frontier_running_min(compute, loss):
    mean = loss.double().mean(1)
    order = sorted(range(len(compute)), key=lambda i: (float(compute[i]), float(mean[i])))
    return compute[order], mean[order].cummin(0).values


def frontier_unsorted(compute, loss):
    c, l_ = s.compute_frontier(compute, loss)
    idx = [int((compute == v).nonzero()[0]) for v in c]
    order = torch.tensor(idx).argsort()
    return c[order], l_[order]


def frontier_keeps_ties(compute, loss):
    mean = loss.double().mean(1)
    keep = [i for i in range(len(compute))
            if all(mean[i] < mean[j] for j in range(len(compute)) if compute[j] < compute[i])]
    keep.sort(key=lambda i: float(compute[i]))
    return compute[keep], mean[keep]


def frontier_median(compute, loss):
    return _envelope(compute, loss.double().median(1).values)


def frontier_indices(compute, loss):
    return torch.arange(3)


def frontier_cummin_vectorised(compute, loss):
    mean = loss.double().mean(1)
    order = torch.from_numpy(np.lexsort((mean.numpy(), compute.double().numpy())))
    c, m = compute[order], mean[order]
    previous_best = torch.cat([torch.tensor([math.inf], dtype=m.dtype), m.cummin(0).values[:-1]])
    keep = m < previous_best
    return c[keep], m[keep]


def frontier_library(compute, loss):
    mean = loss.double().mean(1).numpy()
    idx = torch.from_numpy(lib.compute_frontier(compute.double().numpy(), mean))
    return compute[idx], torch.from_numpy(mean)[idx].float()


# -- fit_power_law


def power_law_sign(n, loss):
    a, alpha = s.fit_power_law(n, loss)
    return a, -alpha


def power_law_log_a(n, loss):
    a, alpha = s.fit_power_law(n, loss)
    return math.log(a), alpha


def power_law_log10_a(n, loss):
    a, alpha = s.fit_power_law(n, loss)
    return 10 ** math.log(a), alpha


def power_law_linear_space(n, loss):
    # the curve_fit habit: least squares on the losses, started from the log-log fit
    a, alpha = s.fit_power_law(n, loss)
    theta = torch.tensor([a, alpha], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=2000, tolerance_grad=1e-15,
                            tolerance_change=1e-18, line_search_fn="strong_wolfe")
    x, y = n.double(), loss.double()

    def closure():
        opt.zero_grad()
        value = (theta[0] * x ** -theta[1] - y).pow(2).sum()
        value.backward()
        return value

    opt.step(closure)
    return theta[0].item(), theta[1].item()


def power_law_log_n_only(n, loss):
    slope, intercept = np.polyfit(np.log(n.double().numpy()), loss.double().numpy(), 1)
    return float(intercept), float(-slope)


def power_law_log_loss_only(n, loss):
    slope, intercept = np.polyfit(n.double().numpy(), np.log(loss.double().numpy()), 1)
    return math.exp(intercept), float(-slope)


def power_law_swapped(n, loss):
    a, alpha = s.fit_power_law(n, loss)
    return alpha, a


def power_law_two_points(n, loss):
    x, y = n.double().log(), loss.double().log()
    slope = (y[-1] - y[0]) / (x[-1] - x[0])
    return math.exp(float(y[0] - slope * x[0])), -float(slope)


def power_law_polyfit(n, loss):
    slope, intercept = np.polyfit(np.log(n.numpy()), np.log(loss.numpy()), 1)
    return float(np.exp(intercept)), float(-slope)


def power_law_library(n, loss):
    law = lib.fit_power_law(n.numpy(), loss.numpy())
    return law.scale, -law.exponent


# -- fit_chinchilla


def _fit(n, d, loss, objective, space="log", starts=None):
    """The solution's recipe (grid, best 4 starts, L-BFGS) with another objective."""
    logs = [t.double().log() for t in (n, d, loss)]
    target = logs[2] if space == "log" else loss.double()

    def value(theta):
        a, b, e, alpha, beta = theta.unbind(-1)
        pred = torch.stack([a[:, None] - alpha[:, None] * logs[0],
                            b[:, None] - beta[:, None] * logs[1],
                            e[:, None].expand(-1, logs[0].numel())]).logsumexp(0)
        pred = pred if space == "log" else pred.exp()
        return objective(pred, target.expand_as(pred)).sum(-1)

    if starts is None:
        steps = [torch.arange(0, 25.1, 5.0)] * 2 + [torch.arange(-1, 1.01, 0.5)] + [
            torch.arange(0, 2.01, 0.5)] * 2
        grid = torch.cartesian_prod(*steps).double()  # (a, b, e, alpha, beta)
        starts = grid[value(grid).argsort()[:4]]
    ends = []
    for start in starts:
        theta = start.clone()[None].requires_grad_(True)
        opt = torch.optim.LBFGS([theta], max_iter=300, tolerance_grad=1e-10,
                                tolerance_change=1e-13, line_search_fn="strong_wolfe")

        def closure(theta=theta, opt=opt):
            opt.zero_grad()
            out = value(theta).sum()
            out.backward()
            return out

        opt.step(closure)
        ends.append(theta.detach())
    a, b, e, alpha, beta = min(ends, key=lambda t: float(value(t)))[0].tolist()
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}


def _squared(pred, target):
    return (pred - target).pow(2)


def _huber(delta):
    return lambda pred, target: F.huber_loss(pred, target, delta=delta, reduction="none")


def chinchilla_squared_log(n, d, loss):
    return _fit(n, d, loss, _squared)


def chinchilla_torch_default_huber(n, d, loss):
    return _fit(n, d, loss, _huber(1.0))


def chinchilla_linear_huber(n, d, loss):
    return _fit(n, d, loss, _huber(1e-3), space="linear")


def chinchilla_linear_squared(n, d, loss):
    return _fit(n, d, loss, _squared, space="linear")


def chinchilla_log_parameters(n, d, loss):
    fit = s.fit_chinchilla(n, d, loss)
    return {k: math.log(v) if k in ("E", "A", "B") else v for k, v in fit.items()}


def chinchilla_swapped(n, d, loss):
    fit = s.fit_chinchilla(n, d, loss)
    return {"E": fit["E"], "A": fit["B"], "B": fit["A"], "alpha": fit["beta"],
            "beta": fit["alpha"]}


def chinchilla_one_start(n, d, loss):
    # one start at Hoffmann et al.'s published values, without the grid
    start = torch.tensor([[math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28]],
                         dtype=torch.float64)
    return _fit(n, d, loss, _huber(1e-3), starts=start * torch.tensor([1, 1, 1, 4, 4]))


def chinchilla_tuple(n, d, loss):
    fit = s.fit_chinchilla(n, d, loss)
    return tuple(fit.values())


def chinchilla_library(n, d, loss):
    return lib.fit_chinchilla(n.numpy(), d.numpy(), loss.numpy()).as_dict()


def chinchilla_tensors_float32(n, d, loss):
    fit = _fit(n.float(), d.float(), loss.float(), _huber(1e-3))
    return {k: torch.tensor(v) for k, v in fit.items()}


# -- compute_optimal_allocation


def _split(fit, compute, per=6.0, exponent="beta", g="right"):
    alpha, beta = fit["alpha"], fit["beta"]
    ratio = alpha * fit["A"] / (beta * fit["B"])
    constant = {"right": ratio ** (1 / (alpha + beta)), "missing": 1.0, "unpowered": ratio,
                "inverted": (1 / ratio) ** (1 / (alpha + beta))}[g]
    n = constant * (compute / per) ** (fit[exponent] / (alpha + beta))
    return n, compute / (per * n)


def allocation_2nd(fit, compute):
    return _split(fit, compute, per=2.0)


def allocation_alpha_exponent(fit, compute):
    return _split(fit, compute, exponent="alpha")


def allocation_no_g(fit, compute):
    return _split(fit, compute, g="missing")


def allocation_g_unpowered(fit, compute):
    return _split(fit, compute, g="unpowered")


def allocation_g_inverted(fit, compute):
    return _split(fit, compute, g="inverted")


def allocation_d_without_6(fit, compute):
    n, _ = _split(fit, compute)
    return n, compute / n


def allocation_swapped(fit, compute):
    n, d = _split(fit, compute)
    return d, n


def allocation_twenty_tokens(fit, compute):
    n = math.sqrt(compute / 120)
    return n, 20 * n


def allocation_one_value(fit, compute):
    return _split(fit, compute)[0]


def allocation_d_from_e(fit, compute):
    n, d = _split(fit, compute)
    return n, d * (1 + fit["E"])


def allocation_numeric(fit, compute):
    # golden-section search over log N along the curve 6 N D = C
    def loss(log_n):
        n = math.exp(log_n)
        return fit["A"] / n ** fit["alpha"] + fit["B"] / (compute / (6 * n)) ** fit["beta"]

    lo, hi = 0.0, math.log(compute / 6)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, x2) if loss(x1) < loss(x2) else (x1, hi)
    n = math.exp((lo + hi) / 2)
    return n, compute / (6 * n)


def allocation_library(fit, compute):
    chin = lib.ChinchillaFit(**{k: fit[k] for k in ("E", "A", "B", "alpha", "beta")})
    return lib.compute_optimal_allocation(chin, compute)


# -- doubling_time


def _slope(x, y):
    return float(np.polyfit(x.double().numpy(), y.double().numpy(), 1)[0])


def doubling_natural_log(years, compute):
    return 1 / _slope(years, compute.double().log())


def doubling_log10(years, compute):
    return 1 / _slope(years, compute.double().log10())


def doubling_months(years, compute):
    return 12 / _slope(years, compute.double().log2())


def doubling_slope(years, compute):
    return _slope(years, compute.double().log2())


def doubling_regressed_years(years, compute):
    return _slope(compute.double().log2(), years)


def doubling_first_last(years, compute):
    y = compute.double().log2()
    return float((years[-1] - years[0]) / (y[-1] - y[0]))


def doubling_ln2(years, compute):
    return math.log(2) / _slope(years, compute.double().log())


def doubling_library(years, compute):
    return library_doubling_time(years.numpy(), compute.numpy())[0]


def doubling_tensor(years, compute):
    x, y = years.double(), compute.double().log2()
    design = torch.stack([x - x.mean(), torch.ones_like(x)], 1)
    return 1 / torch.linalg.lstsq(design, y[:, None]).solution[0, 0]


MUTANTS: dict[str, list[tuple[object, str]]] = {
    "flops_per_token": [(flops_forward_only, "only the forward pass counted (2N)"),
                        (flops_forward_n_full_attention, "forward-only for N (2N) with"),
                        (flops_no_attention, "attention term 12 L H Q T is missing"),
                        (flops_no_unembed, "unembedding (d_model * d_vocab) is missing"),
                        (flops_embedding_too, "embedding was counted as a matmul"),
                        (flops_ignores_seq_len, "seq_len ignored"),
                        (flops_d_model_for_heads, "used d_model for H Q"),
                        (flops_half_attention, "expected")],
    "training_flops": [(training_epochs_ignored, "epochs ignored"),
                       (training_d_in_epochs, "D counted in epochs"),
                       (training_divides_epochs, "divided by epochs"),
                       (training_times_seq_len, "multiplied by seq_len again"),
                       (training_forward_only, "only the forward pass counted"),
                       (training_kaplan_6nd, "attention term 12 L H Q T is missing"),
                       (training_epochs_twice, "expected")],
    "compute_frontier": [(frontier_min_over_seeds, "an envelope over seeds"),
                         (frontier_every_run, "an envelope over seeds"),
                         (frontier_first_seed, "used only the first seed"),
                         (frontier_upper, "upper envelope"),
                         (frontier_running_min, "running minimum"),
                         (frontier_unsorted, "out of order"),
                         (frontier_keeps_ties, "you kept both"),
                         (frontier_median, "has shape [2, 3], expected [2, 4]"),
                         (frontier_indices, "should return a tuple")],
    "fit_power_law": [(power_law_sign, "wrong sign"), (power_law_log_a, "exp(intercept)"),
                      (power_law_log10_a, "mixed logarithm bases"),
                      (power_law_linear_space, "fitted in linear space"),
                      (power_law_log_n_only, "only one axis was logged"),
                      (power_law_log_loss_only, "only one axis was logged"),
                      (power_law_swapped, "returned (alpha, a)"),
                      (power_law_two_points, "fit a line in log-log space")],
    "fit_chinchilla": [(chinchilla_squared_log, "fitted squared error on log L"),
                       (chinchilla_torch_default_huber, "fitted squared error on log L"),
                       (chinchilla_linear_huber, "fitted the losses themselves"),
                       (chinchilla_linear_squared, "fitted the losses themselves"),
                       (chinchilla_log_parameters, "returned the log-parameters"),
                       (chinchilla_swapped, "swapped the terms"),
                       (chinchilla_one_start, "stopped in a worse minimum"),
                       (chinchilla_tuple, "should return a dict")],
    "compute_optimal_allocation": [
        (allocation_2nd, "used C = 2 N D"), (allocation_alpha_exponent, "you used alpha"),
        (allocation_no_g, "the constant G is missing"),
        (allocation_g_unpowered, "G is raised to 1 / (alpha + beta)"),
        (allocation_g_inverted, "G is upside down"), (allocation_d_without_6, "left out the 6"),
        (allocation_swapped, "returned (D_opt, N_opt)"),
        (allocation_twenty_tokens, "20-tokens-per-parameter"),
        (allocation_one_value, "should return a tuple"), (allocation_d_from_e, "expected")],
    "doubling_time": [(doubling_natural_log, "natural log used"), (doubling_log10, "log10 used"),
                      (doubling_months, "returned months"),
                      (doubling_slope, "returned the slope"),
                      (doubling_regressed_years, "regressed the years on log2(compute)"),
                      (doubling_first_last, "expected")],
}

RIGHT_ANSWERS = {
    "flops_per_token": [flops_library, flops_forward_plus_backward],
    "training_flops": [training_sequences],
    "compute_frontier": [frontier_cummin_vectorised, frontier_library],
    "fit_power_law": [power_law_polyfit, power_law_library],
    "fit_chinchilla": [chinchilla_tensors_float32],
    "compute_optimal_allocation": [allocation_numeric, allocation_library],
    "doubling_time": [doubling_ln2, doubling_library, doubling_tensor],
}
