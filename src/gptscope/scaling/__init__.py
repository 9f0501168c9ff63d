"""Scaling laws measured on your own sweeps: FLOP accounting, resumable sweeps of tiny
models, compute frontiers, IsoFLOP curves, Chinchilla-style fits and compute trends."""

from gptscope.scaling.chinchilla import (
    ChinchillaFit,
    compute_optimal_allocation,
    fit_chinchilla,
)
from gptscope.scaling.fits import (
    IsoFLOP,
    PowerLaw,
    bootstrap,
    compute_frontier,
    fit_power_law,
    isoflop_curves,
    mean_over_seeds,
    optimal_size_law,
)
from gptscope.scaling.grid import Point, SweepSpec, get_sweep_preset, parse_grid
from gptscope.scaling.sweep import Sweep, estimate_seconds, results, run_sweep, train_point
from gptscope.train.mfu import flops_per_token, forward_flops_per_token, matmul_params

__all__ = [
    "ChinchillaFit",
    "IsoFLOP",
    "Point",
    "PowerLaw",
    "Sweep",
    "SweepSpec",
    "bootstrap",
    "compute_frontier",
    "compute_optimal_allocation",
    "estimate_seconds",
    "fit_chinchilla",
    "fit_power_law",
    "flops_per_token",
    "forward_flops_per_token",
    "get_sweep_preset",
    "isoflop_curves",
    "matmul_params",
    "mean_over_seeds",
    "optimal_size_law",
    "parse_grid",
    "results",
    "run_sweep",
    "train_point",
]
