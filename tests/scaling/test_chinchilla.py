import numpy as np
import pytest

from gptscope.scaling import compute_optimal_allocation, fit_chinchilla
from gptscope.scaling.chinchilla import PUBLISHED, ChinchillaFit

SETTINGS = [PUBLISHED["Hoffmann et al. 2022"], PUBLISHED["Besiroglu et al. 2024"],
            dict(E=1.2, A=120.0, B=900.0, alpha=0.3, beta=0.35)]


def _losses(true: dict, n: np.ndarray, d: np.ndarray, noise: float, rng) -> np.ndarray:
    clean = true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]
    return clean * np.exp(rng.normal(0.0, noise, n.size))


def _grid(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.logspace(4, 9, k), k), np.tile(np.logspace(6, 11, k), k)


@pytest.mark.parametrize("true", SETTINGS, ids=["hoffmann", "besiroglu", "steeper-D"])
def test_fit_recovers_known_laws_within_5_percent_at_1_percent_noise(true):
    n, d = _grid(20)
    loss = _losses(true, n, d, 0.01, np.random.default_rng(SETTINGS.index(true)))
    fit = fit_chinchilla(n, d, loss)
    for name, value in true.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.05), name


def test_fit_is_exact_without_noise():
    n, d = _grid(8)
    true = SETTINGS[0]
    fit = fit_chinchilla(n, d, _losses(true, n, d, 0.0, np.random.default_rng(0)))
    for name, value in true.items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-3)


def test_bootstrap_intervals_cover_the_truth():
    n, d = _grid(10)
    true = SETTINGS[0]
    fit = fit_chinchilla(n, d, _losses(true, n, d, 0.01, np.random.default_rng(3)),
                         n_boot=60, seed=3)
    for name, value in true.items():
        low, high = fit.intervals[name]
        assert low <= value <= high, name
        assert high - low < value  # an interval, not the whole line
    a_opt = true["beta"] / (true["alpha"] + true["beta"])
    assert fit.intervals["a_opt"][0] <= a_opt <= fit.intervals["a_opt"][1]


def test_compute_optimal_allocation_minimises_the_law_along_the_budget():
    fit = ChinchillaFit(**PUBLISHED["Hoffmann et al. 2022"])
    budget = 5.76e23  # Chinchilla's own training compute
    n_opt, d_opt = compute_optimal_allocation(fit, budget)
    assert 6 * n_opt * d_opt == pytest.approx(budget)
    sizes = np.logspace(9, 12, 30001)
    brute = sizes[np.argmin(fit(sizes, budget / (6 * sizes)))]
    assert n_opt == pytest.approx(brute, rel=1e-3)
    # Hoffmann et al.'s fitted law puts the optimum for Chinchilla's budget at ~40B params.
    assert 2e10 < n_opt < 8e10


def test_bad_input_is_refused_by_name():
    n, d = _grid(3)
    with pytest.raises(ValueError, match=r"loss\[2\] is nan"):
        fit_chinchilla(n, d, np.where(np.arange(9) == 2, np.nan, 3.0))
    with pytest.raises(ValueError, match="at least 5"):
        fit_chinchilla(n[:3], d[:3], [3.0, 2.9, 2.8])
    with pytest.raises(ValueError, match="compute must be a positive"):
        compute_optimal_allocation(ChinchillaFit(**SETTINGS[0]), 0.0)
    with pytest.raises(ValueError, match="both > 0"):
        compute_optimal_allocation(ChinchillaFit(1.0, 1.0, 1.0, 0.0, 0.3), 1e20)
