"""Scaling laws measured on your own sweeps: FLOP accounting, resumable sweeps of tiny
models, compute frontiers, IsoFLOP curves, Chinchilla-style fits and compute trends; and the
curriculum's own study, small CNNs on the bundled digits (`gptscope.scaling.digits`)."""

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
from gptscope.scaling.saved import SavedSweep, load_saved_sweep, save_sweep, saved_sweeps
from gptscope.scaling.sweep import Sweep, estimate_seconds, results, run_sweep, train_point
from gptscope.train.mfu import flops_per_token, forward_flops_per_token, matmul_params

__all__ = [
    "ChinchillaFit",
    "IsoFLOP",
    "Point",
    "PowerLaw",
    "SavedSweep",
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
    "load_saved_sweep",
    "matmul_params",
    "mean_over_seeds",
    "optimal_size_law",
    "parse_grid",
    "results",
    "run_sweep",
    "save_sweep",
    "saved_sweeps",
    "train_point",
]
