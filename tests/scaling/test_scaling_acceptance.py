"""The issue's acceptance numbers, opt-in (they take minutes to an hour)::

    GPTSCOPE_SCALING_ACCEPTANCE=1 pytest tests/scaling/test_scaling_acceptance.py -k bootstrap
    gptscope scaling sweep --preset cpu-20m --out sweeps/a
    gptscope scaling sweep --preset cpu-20m --grid "seed=2,3" --out sweeps/b
    GPTSCOPE_SWEEPS=sweeps/a,sweeps/b pytest tests/scaling/test_scaling_acceptance.py

docs/scaling.md has the numbers they measured.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from gptscope.scaling import fit_chinchilla
from gptscope.scaling.chinchilla import NAMES, PUBLISHED

SWEEPS = [s for s in os.environ.get("GPTSCOPE_SWEEPS", "").split(",") if s]


@pytest.mark.skipif(not os.environ.get("GPTSCOPE_SCALING_ACCEPTANCE"),
                    reason="opt-in: set GPTSCOPE_SCALING_ACCEPTANCE=1 (about 5 minutes)")
def test_chinchilla_bootstrap_intervals_cover_the_truth_about_95_percent():
    true = PUBLISHED["Hoffmann et al. 2022"]
    n, d = np.repeat(np.logspace(4, 9, 10), 10), np.tile(np.logspace(6, 11, 10), 10)
    clean = true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]
    repeats, covered = 40, dict.fromkeys(NAMES, 0)
    for r in range(repeats):
        loss = clean * np.exp(np.random.default_rng(r).normal(0, 0.01, n.size))
        fit = fit_chinchilla(n, d, loss, n_boot=80, seed=r)
        for name in NAMES:
            low, high = fit.intervals[name]
            covered[name] += low <= true[name] <= high
    print({k: v / repeats for k, v in covered.items()})
    for name in NAMES:
        assert covered[name] / repeats >= 0.85, (name, covered)


@pytest.mark.skipif(len(SWEEPS) != 2, reason="opt-in: set GPTSCOPE_SWEEPS to two finished "
                    "cpu-20m sweeps with different seeds")
def test_cpu_20m_frontier_is_a_power_law_and_its_exponent_repeats_across_seeds():
    from gptscope.scaling import Sweep, results
    from gptscope.scaling.analysis import analyse

    fits = [analyse(results(Sweep.open(s)), n_boot=200) for s in SWEEPS]
    for fit in fits:
        print(fit.frontier_law)
        assert fit.frontier_law.r2 >= 0.95
    (a_low, a_high), (b_low, b_high) = (f.frontier_law.intervals["exponent"] for f in fits)
    assert a_low <= b_high and b_low <= a_high, "the two seeds' intervals do not overlap"
