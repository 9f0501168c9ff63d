"""Fits of a scaling study: power laws, the compute frontier, IsoFLOP minima, Chinchilla's
parametric loss, and bootstrap intervals for every fitted number.

Everything here takes plain arrays (compute in FLOPs, sizes in parameters, data in tokens,
losses in nats), so it serves a sweep measured here, a table copied from a paper, and the
course's exercises alike. Power laws are fitted as straight lines in log-log space: a fit
in linear space lets the largest values decide everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _positive(name: str, values: ArrayLike, at_least: int = 2) -> np.ndarray:
    """``values`` as a float64 array, refusing NaN, non-positive values and too few points."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size < at_least:
        raise ValueError(f"{name} has {array.size} point(s); a fit needs at least {at_least}."
                         " Sweep more sizes or budgets")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name}[{bad}] is {array[bad]}; drop the diverged run (its loss is "
                         "not a measurement) and fit the rest")
    if np.any(array <= 0):
        bad = int(np.flatnonzero(array <= 0)[0])
        raise ValueError(f"{name}[{bad}] is {array[bad]}; a power law needs positive values")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: a.size for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the arrays differ in length: {lengths}; pass one value per run")


@dataclass
class PowerLaw:
    """``y = scale * x ** exponent``, fitted by least squares on ``log y`` against ``log x``.

    ``r2`` is the fit's R^2 in log space; ``intervals`` maps "exponent" / "scale" to a
    (low, high) bootstrap interval when one was asked for.
    """

    scale: float
    exponent: float
    r2: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, x: ArrayLike) -> np.ndarray:
        return self.scale * np.asarray(x, dtype=np.float64) ** self.exponent


def _line(log_x: np.ndarray, log_y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``log_y = intercept + slope * log_x``: (slope, intercept, R^2)."""
    if np.ptp(log_x) == 0:
        raise ValueError("every x is the same; a power law needs at least two different x")
    slope, intercept = np.polyfit(log_x, log_y, 1)
    residual = log_y - (intercept + slope * log_x)
    spread = np.sum((log_y - log_y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / spread if spread > 0 else 1.0
    return float(slope), float(intercept), float(r2)


def fit_power_law(x: ArrayLike, y: ArrayLike, n_boot: int = 0, seed: int = 0,
                  level: float = 0.95) -> PowerLaw:
    """Fit ``y = scale * x ** exponent`` (a loss falling with compute has exponent < 0).

    ``n_boot`` > 0 adds percentile bootstrap intervals at ``level`` (points resampled with
    replacement; a resample with a single distinct x is drawn again).
    """
    x, y = _positive("x", x), _positive("y", y)
    _same_length(x=x, y=y)
    slope, intercept, r2 = _line(np.log(x), np.log(y))
    law = PowerLaw(float(np.exp(intercept)), slope, r2)
    if n_boot:
        def refit(idx: np.ndarray) -> np.ndarray:
            s, c, _ = _line(np.log(x[idx]), np.log(y[idx]))
            return np.array([s, np.exp(c)])

        low, high = bootstrap(refit, x.size, n_boot, seed, level, distinct=np.log(x))
        law.intervals = {"exponent": (low[0], high[0]), "scale": (low[1], high[1])}
    return law


def bootstrap(refit: Callable[[np.ndarray], np.ndarray], n_points: int, n_boot: int,
              seed: int = 0, level: float = 0.95,
              distinct: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``refit(indices)`` over ``n_boot`` resamples with replacement.

    ``refit`` maps the resampled indices ``[n_points]`` to a vector of estimates; returns
    (low, high) at ``level``. ``distinct``: a resample must hold two different values of it
    (a line through one x is not a fit), else it is drawn again.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}; 0.95 gives 95% intervals")
    if n_boot < 10:
        raise ValueError(f"n_boot={n_boot} is too few resamples for an interval; use >= 100")
    rng = np.random.default_rng(seed)
    estimates = []
    while len(estimates) < n_boot:
        idx = rng.integers(0, n_points, n_points)
        if distinct is not None and np.ptp(distinct[idx]) == 0:
            continue
        estimates.append(refit(idx))
    tail = 100 * (1 - level) / 2
    stacked = np.stack(estimates)
    return np.percentile(stacked, tail, axis=0), np.percentile(stacked, 100 - tail, axis=0)


def mean_over_seeds(keys: Sequence[tuple], values: ArrayLike) -> tuple[list[tuple], np.ndarray]:
    """Average ``values`` over repeats that share a key (say, (width, depth, data) without
    the seed): a frontier drawn over single seeds picks the luckiest seed at each point."""
    values = np.asarray(values, dtype=np.float64)
    order: dict[tuple, list[float]] = {}
    for key, value in zip(keys, values, strict=True):
        order.setdefault(tuple(key), []).append(float(value))
    return list(order), np.array([np.mean(v) for v in order.values()])


def compute_frontier(compute: ArrayLike, loss: ArrayLike) -> np.ndarray:
    """Indices of the compute-efficient frontier: the points no cheaper run beats.

    Sorted by compute, a point is on the frontier when its loss is below that of every
    point with less compute (the lower envelope of the loss-compute plane).
    """
    compute, loss = _positive("compute", compute, 1), np.asarray(loss, dtype=np.float64)
    _same_length(compute=compute, loss=loss)
    if not np.all(np.isfinite(loss)):
        _positive("loss", loss, 1)  # names the first NaN
    keep, best = [], np.inf
    for i in np.lexsort((loss, compute)):
        if loss[i] < best:
            keep.append(int(i))
            best = loss[i]
    return np.array(keep, dtype=np.int64)


@dataclass
class IsoFLOP:
    """Runs of about one compute budget: loss against size, with the parabola's minimum.

    ``n_opt`` is the vertex of ``loss = c0 + c1 log N + c2 (log N)^2`` (Hoffmann et al.'s
    approach 2), None when the parabola opens downwards or its vertex lies outside the sizes
    tried (the budget's optimum was not bracketed).
    """

    compute: float
    n: np.ndarray
    loss: np.ndarray
    coefficients: tuple[float, float, float]
    n_opt: float | None


def isoflop_curves(compute: ArrayLike, n: ArrayLike, loss: ArrayLike,
                   tolerance: float = 1.3) -> list[IsoFLOP]:
    """Group runs whose compute lies within a factor ``tolerance`` of each other, and fit
    each group with three or more sizes (see `IsoFLOP`).

    A grid with widths x sqrt(2) (so N x 2) and data x 2 puts its runs on such lines: twice
    the parameters on half the tokens costs the same.
    """
    compute, n = _positive("compute", compute, 1), _positive("n", n, 1)
    loss = _positive("loss", loss, 1)
    _same_length(compute=compute, n=n, loss=loss)
    if tolerance <= 1:
        raise ValueError(f"tolerance must be > 1 (a factor on compute), got {tolerance}")
    order = np.argsort(compute)
    groups: list[list[int]] = [[int(order[0])]]
    for i in order[1:]:
        if compute[i] <= compute[groups[-1][0]] * tolerance:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [_parabola(compute, n, loss, g) for g in groups if np.unique(n[g]).size >= 3]


def _parabola(compute: np.ndarray, n: np.ndarray, loss: np.ndarray,
              group: list[int]) -> IsoFLOP:
    idx = np.array(group)
    x = np.log(n[idx])
    c2, c1, c0 = np.polyfit(x, loss[idx], 2)
    vertex = -c1 / (2 * c2) if c2 > 0 else None
    inside = vertex is not None and x.min() <= vertex <= x.max()
    by_size = idx[np.argsort(n[idx])]
    return IsoFLOP(float(np.exp(np.log(compute[idx]).mean())), n[by_size], loss[by_size],
                   (float(c0), float(c1), float(c2)),
                   float(np.exp(vertex)) if inside else None)


def optimal_size_law(curves: list[IsoFLOP], n_boot: int = 0, seed: int = 0) -> PowerLaw:
    """``N_opt = scale * C ** exponent`` through the IsoFLOP minima (Kaplan: 0.73;
    Hoffmann et al.: 0.49). Needs two or more budgets whose optimum was bracketed."""
    found = [c for c in curves if c.n_opt is not None]
    if len(found) < 2:
        raise ValueError(f"{len(found)} of {len(curves)} IsoFLOP curves bracket their optimum;"
                         " N_opt(C) needs two. Sweep sizes on both sides of the best size")
    return fit_power_law([c.compute for c in found], [c.n_opt for c in found],
                         n_boot=n_boot, seed=seed)
