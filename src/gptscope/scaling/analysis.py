"""One sweep's numbers: the compute frontier and its power law, IsoFLOP minima and the
N_opt(C) exponent, and the Chinchilla fit, each with a bootstrap interval.

Seeds are averaged before anything is fitted (a frontier over single seeds picks the
luckiest seed of each shape). The intervals resample the seeds of every shape, so they
say how much the fitted numbers would move on another draw of seeds; the Chinchilla
fit's resample the shapes too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gptscope.scaling.chinchilla import ChinchillaFit, fit_chinchilla
from gptscope.scaling.fits import (
    IsoFLOP,
    PowerLaw,
    compute_frontier,
    fit_power_law,
    isoflop_curves,
    optimal_size_law,
)
from gptscope.utils.progress import progress


@dataclass
class Shapes:
    """The sweep with its seeds averaged: one row per (width, depth, fraction)."""

    keys: list[tuple[int, int, float]]
    n_params: np.ndarray
    tokens: np.ndarray  # D, the data seen: tokens, or images for the digits
    flops: np.ndarray
    loss: np.ndarray  # mean over seeds
    seed_losses: list[np.ndarray]  # each shape's losses, one per seed


def shapes(rows: Sequence[dict[str, Any]], data_key: str = "tokens") -> Shapes:
    """Group result rows (`gptscope.scaling.results`) by shape; diverged runs are left out
    with a warning that names them. ``data_key``: the field that counts the data seen, D
    ("images_seen" for `gptscope.scaling.digits`)."""
    bad = [r["name"] for r in rows if not math.isfinite(r["val_loss"])]
    if bad:
        warnings.warn(f"left out {len(bad)} diverged run(s): {', '.join(bad)}", stacklevel=2)
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if math.isfinite(r["val_loss"]):
            by.setdefault((r["width"], r["depth"], r["fraction"]), []).append(r)
    if len(by) < 2:
        raise ValueError(f"the sweep has {len(by)} finished shape(s) with a finite loss; its "
                         "fits need two or more (finish the sweep, or add points)")
    first = [v[0] for v in by.values()]
    return Shapes(list(by), np.array([r["n_params"] for r in first], dtype=np.float64),
                  np.array([r[data_key] for r in first], dtype=np.float64),
                  np.array([r["flops"] for r in first], dtype=np.float64),
                  np.array([np.mean([r["val_loss"] for r in v]) for v in by.values()]),
                  [np.array([r["val_loss"] for r in v]) for v in by.values()])


@dataclass
class Analysis:
    shapes: Shapes
    frontier: np.ndarray  # indices into shapes
    frontier_law: PowerLaw  # L = scale * C^exponent on the frontier
    isoflops: list[IsoFLOP]
    n_opt_law: PowerLaw | None  # N_opt = scale * C^exponent, when two minima are bracketed
    chinchilla: ChinchillaFit | None  # None with fewer than 5 shapes
    notes: list[str] = field(default_factory=list)


def _resampled_losses(s: Shapes, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.choice(v, v.size).mean() for v in s.seed_losses])


def _interval(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def analyse(rows: Sequence[dict[str, Any]], n_boot: int = 200, seed: int = 0,
            show_progress: bool = False, data_key: str = "tokens") -> Analysis:
    """Every fit of the scaling report, with 95% intervals from ``n_boot`` resamples
    (``data_key``: see `shapes`)."""
    s = shapes(rows, data_key)
    front = compute_frontier(s.flops, s.loss)
    notes = []
    if front.size < 2:
        raise ValueError("the frontier holds one point: no larger run beat the cheapest; "
                         "check the learning rate, or sweep larger models")
    law = fit_power_law(s.flops[front], s.loss[front])
    curves = isoflop_curves(s.flops, s.n_params, s.loss)
    try:
        n_opt = optimal_size_law(curves)
    except ValueError as e:
        n_opt, _ = None, notes.append(str(e))
    chin = fit_chinchilla(s.n_params, s.tokens, s.loss) if len(s.keys) >= 5 else None
    if chin is not None and chin.at_bound():
        notes.append(f"the parametric fit left {', '.join(chin.at_bound())} on the bound of "
                     "its search: this sweep does not pin them down (runs nearer the "
                     "irreducible loss, or more sizes per data fraction, would)")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"frontier": [], "n_opt": [], "alpha": [], "beta": [],
                                     "a_opt": []}
    bar = progress(total=n_boot, desc="bootstrap", disable=not show_progress or not n_boot)
    for _ in range(n_boot):
        bar.update(1)
        loss = _resampled_losses(s, rng)
        f = compute_frontier(s.flops, loss)
        if f.size >= 2:
            draws["frontier"].append(fit_power_law(s.flops[f], loss[f]).exponent)
        if n_opt is not None:
            try:
                draws["n_opt"].append(optimal_size_law(
                    isoflop_curves(s.flops, s.n_params, loss)).exponent)
            except ValueError:
                pass  # this draw brackets fewer minima: it says nothing about the exponent
        if chin is not None:
            idx = rng.integers(0, len(s.keys), len(s.keys))
            one = fit_chinchilla(s.n_params[idx], s.tokens[idx], loss[idx], start=chin)
            for k in ("alpha", "beta", "a_opt"):
                draws[k].append(getattr(one, k))
    bar.close()
    if n_boot:
        law.intervals["exponent"] = _interval(draws["frontier"])
        if n_opt is not None and len(draws["n_opt"]) >= 10:
            n_opt.intervals["exponent"] = _interval(draws["n_opt"])
        if chin is not None:
            chin.intervals = {k: _interval(draws[k]) for k in ("alpha", "beta", "a_opt")}
    return Analysis(s, front, law, curves, n_opt, chin, notes)
