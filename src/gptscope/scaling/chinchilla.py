"""The parametric loss of Hoffmann et al. 2022 (Chinchilla), ``L(N, D) = E + A / N^alpha +
B / D^beta``, fitted their way, and the compute-optimal split of a budget it implies.

The fit (their section 3.3 and appendix D.2): minimise the Huber loss (delta 1e-3) between
``log L`` and ``LSE(a - alpha log N, b - beta log D, e)`` with L-BFGS, where A = exp(a),
B = exp(b), E = exp(e), from a grid of starting points, keeping the best. We screen the
grid (their 4,500 points) by the objective and run L-BFGS from the best few, which finds
the same minimum in a fraction of the time. The parameters are kept within wide bounds
(L-BFGS-B), so a sweep too small to pin the law down ends at a bound, plain to see; the
tolerances are tight, since Besiroglu et al. 2024 trace part of the published fit's misfit
to an optimiser stopped early.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from gptscope.scaling.fits import ArrayLike, _positive, _same_length, bootstrap

NAMES = ("E", "A", "B", "alpha", "beta")
# Hoffmann et al.'s grid of starts over (alpha, beta, e, a, b).
_GRID = (np.arange(0.0, 2.01, 0.5), np.arange(0.0, 2.01, 0.5), np.arange(-1.0, 1.01, 0.5),
         np.arange(0.0, 25.1, 5.0), np.arange(0.0, 25.1, 5.0))
# Bounds on (a, b, e, alpha, beta): wide enough for any published fit, narrow enough that
# a poorly pinned fit stops there instead of running off to alpha = 50 and A = 1e244.
_BOUNDS = np.array([(-10.0, 40.0), (-10.0, 40.0), (-5.0, 3.0), (0.0, 3.0), (0.0, 3.0)])
# Published fits, for the tables beside ours.
PUBLISHED = {
    "Hoffmann et al. 2022": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "Besiroglu et al. 2024": dict(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37),
}


@dataclass
class ChinchillaFit:
    """A fitted ``L = E + A / N^alpha + B / D^beta``; ``intervals`` maps each name in NAMES
    (and "a_opt", the exponent of N_opt(C)) to a bootstrap (low, high) when asked for."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = 0.0
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        n, d = np.asarray(n, dtype=np.float64), np.asarray(d, dtype=np.float64)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a_opt(self) -> float:
        """The exponent of the compute-optimal size, N_opt ~ C^(beta / (alpha + beta))."""
        return self.beta / (self.alpha + self.beta)

    def at_bound(self) -> list[str]:
        """The parameters the fit left on a bound of the search: ones the data do not pin
        down (say, E when no run came near the irreducible loss)."""
        values = np.log([self.A, self.B, self.E]).tolist() + [self.alpha, self.beta]
        return [name for name, v, (lo, hi) in zip(("A", "B", "E", "alpha", "beta"), values,
                                                   _BOUNDS, strict=True)
                if min(abs(v - lo), abs(v - hi)) < 1e-6]

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in NAMES} | {"a_opt": self.a_opt}


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber loss and its gradient for parameter rows ``theta [k, 5]`` =
    (a, b, e, alpha, beta): returns ([k], [k, 5])."""
    a, b, e, alpha, beta = (theta[:, i:i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e))  # [3, k, p]
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_l  # [k, p]
    p = weights / total  # softmax over the three terms: d prediction / d term
    small = np.abs(residual) <= delta
    huber = np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta))
    slope = np.clip(residual, -delta, delta)  # d huber / d residual
    grad = np.stack([(slope * p[0]).sum(1), (slope * p[1]).sum(1), (slope * p[2]).sum(1),
                     -(slope * p[0] * log_n).sum(1), -(slope * p[1] * log_d).sum(1)], 1)
    return huber.sum(axis=1), grad


def _starts() -> np.ndarray:
    """The grid as rows of (a, b, e, alpha, beta)."""
    alpha, beta, e, a, b = _GRID
    return np.array([(ai, bi, ei, al, be)
                     for al, be, ei, ai, bi in itertools.product(alpha, beta, e, a, b)])


def _minimise(logs: tuple[np.ndarray, ...], delta: float, starts: np.ndarray) -> np.ndarray:
    """L-BFGS from each start; the best end point's (a, b, e, alpha, beta) and objective."""
    from scipy.optimize import minimize  # noqa: PLC0415 (optional: the scaling extra)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = _objective(theta[None], *logs, delta)
        return float(value[0]), grad[0]

    best = None
    for start in starts:
        result = minimize(fun, np.clip(start, *_BOUNDS.T), jac=True, method="L-BFGS-B",
                          bounds=_BOUNDS, options=dict(maxiter=2000, ftol=1e-13, gtol=1e-10))
        if best is None or result.fun < best[1]:
            best = (result.x, result.fun)
    return np.append(best[0], best[1])


def _need_scipy() -> None:
    try:
        import scipy.optimize  # noqa: F401, PLC0415
    except ImportError as err:
        raise ImportError("the Chinchilla fit runs L-BFGS from scipy: pip install "
                          "'gptscope[scaling]' (or pip install scipy)") from err


def fit_chinchilla(n: ArrayLike, d: ArrayLike, loss: ArrayLike, delta: float = 1e-3,
                   n_starts: int = 8, n_boot: int = 0, seed: int = 0,
                   level: float = 0.95, start: ChinchillaFit | None = None) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A / N^alpha + B / D^beta`` to runs of ``n`` parameters trained on
    ``d`` tokens reaching ``loss`` (nats), Hoffmann et al.'s way (see the module doc).

    ``n_starts``: how many of the best grid points L-BFGS starts from (``start``: from that
    fit alone, as a resample of the same runs does). ``n_boot`` > 0 adds
    percentile bootstrap intervals (runs resampled with replacement; each resample starts
    from the full fit, since it lies in the same basin).
    """
    _need_scipy()
    n, d, loss = _positive("n", n, 5), _positive("d", d, 5), _positive("loss", loss, 5)
    _same_length(n=n, d=d, loss=loss)
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}; Hoffmann et al. use 1e-3")
    logs = (np.log(n)[None], np.log(d)[None], np.log(loss)[None])
    if start is not None:
        screened = np.log([[start.A, start.B, start.E]])
        screened = np.append(screened, [[start.alpha, start.beta]], axis=1)
    else:
        grid = _starts()
        screened = grid[np.argsort(_objective(grid, *logs, delta)[0])[:n_starts]]
    best = _minimise(logs, delta, screened)
    fit = _to_fit(best)
    if n_boot:
        def refit(idx: np.ndarray) -> np.ndarray:
            one = _to_fit(_minimise((logs[0][:, idx], logs[1][:, idx], logs[2][:, idx]),
                                    delta, best[None, :5]))
            return np.array([getattr(one, k) for k in (*NAMES, "a_opt")])

        low, high = bootstrap(refit, n.size, n_boot, seed, level)
        fit.intervals = {k: (float(lo), float(hi))
                         for k, lo, hi in zip((*NAMES, "a_opt"), low, high, strict=True)}
    return fit


def _to_fit(row: np.ndarray) -> ChinchillaFit:
    a, b, e, alpha, beta, objective = row
    return ChinchillaFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                         alpha=float(alpha), beta=float(beta), objective=float(objective))


def compute_optimal_allocation(fit: ChinchillaFit, compute: float,
                               flops_per_param_token: float = 6.0) -> tuple[float, float]:
    """(N_opt, D_opt) minimising ``fit(N, D)`` subject to ``compute = 6 N D``.

    Setting the derivative along the constraint to zero gives ``alpha A / N^alpha = beta B /
    D^beta``, so ``N_opt = G (C / 6)^(beta / (alpha + beta))`` with ``G = (alpha A / (beta
    B))^(1 / (alpha + beta))``, and ``D_opt = C / (6 N_opt)`` (Hoffmann et al., appendix A).
    """
    if not compute > 0:
        raise ValueError(f"compute must be a positive number of FLOPs, got {compute}")
    if fit.alpha <= 0 or fit.beta <= 0:
        raise ValueError(f"the fit has alpha={fit.alpha:.3g}, beta={fit.beta:.3g}; an optimum "
                         "needs both > 0 (loss falling with size and with data)")
    tokens_times_params = compute / flops_per_param_token
    g = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / (fit.alpha + fit.beta))
    n_opt = g * tokens_times_params ** fit.a_opt
    return float(n_opt), float(tokens_times_params / n_opt)
