import numpy as np
import pytest

from gptscope.scaling import (
    bootstrap,
    compute_frontier,
    fit_power_law,
    isoflop_curves,
    mean_over_seeds,
    optimal_size_law,
)


def test_power_law_recovers_an_exact_law_and_its_r2():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    law = fit_power_law(x, 40.0 * x**-0.3)
    assert law.scale == pytest.approx(40.0, rel=1e-9)
    assert law.exponent == pytest.approx(-0.3, rel=1e-9)
    assert law.r2 == pytest.approx(1.0)
    assert law(1e7) == pytest.approx(40.0 * 1e7**-0.3)


def test_power_law_is_fitted_in_log_space_not_linear_space():
    # One point off by 20%: in log space it moves the fit a little; a linear-space fit
    # would be pulled to the largest values. The log-space residuals decide R^2.
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    y = 10.0 * x**-0.5 * np.array([1.0, 1.0, 1.0, 1.2])
    law = fit_power_law(x, y)
    log_fit = np.polyfit(np.log(x), np.log(y), 1)
    assert law.exponent == pytest.approx(log_fit[0])
    assert law.r2 < 1


def test_power_law_bootstrap_interval_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(0)
    x = np.logspace(3, 7, 12)
    covered = 0
    for repeat in range(100):
        y = 5.0 * x**-0.2 * np.exp(rng.normal(0, 0.02, x.size))
        low, high = fit_power_law(x, y, n_boot=200, seed=repeat).intervals["exponent"]
        covered += low <= -0.2 <= high
    # Percentile intervals of 12 points run a little narrow; 95% of 100 repeats has a
    # binomial spread of about 2 points.
    assert 85 <= covered <= 100


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="needs at least 2"):
        fit_power_law([1.0], [2.0])
    with pytest.raises(ValueError, match=r"y\[1\] is nan; drop the diverged run"):
        fit_power_law([1.0, 2.0, 3.0], [1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="two different x"):
        fit_power_law([2.0, 2.0], [1.0, 3.0])
    with pytest.raises(ValueError, match="differ in length"):
        fit_power_law([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(lambda i: i, 5, n_boot=3)


def test_frontier_is_the_lower_envelope():
    compute = np.array([1.0, 2.0, 2.0, 4.0, 8.0, 16.0])
    loss = np.array([5.0, 4.0, 4.5, 4.2, 3.0, 3.1])
    # 4.0 at C=4 loses to 4.0 at C=2; 3.1 at C=16 loses to 3.0 at C=8.
    assert compute_frontier(compute, loss).tolist() == [0, 1, 4]


def test_seeds_are_averaged_before_the_frontier():
    keys, means = mean_over_seeds([(32, 0.5), (32, 0.5), (64, 0.5)], [3.0, 4.0, 2.0])
    assert keys == [(32, 0.5), (64, 0.5)]
    assert means.tolist() == [3.5, 2.0]


def test_isoflop_minimum_is_the_parabolas_vertex():
    # Three budgets, each with a parabola in log N whose vertex is known.
    compute, n, loss, true = [], [], [], {}
    for c, n_star in [(1e12, 1e5), (4e12, 2e5), (1.6e13, 4e5)]:
        for k in (-2, -1, 0, 1, 2):
            size = n_star * 2.0**k
            compute.append(c * (1 + 0.02 * k))  # within the grouping tolerance
            n.append(size)
            loss.append(3.0 + 0.1 * np.log(size / n_star) ** 2)
        true[c] = n_star
    curves = isoflop_curves(compute, n, loss)
    assert len(curves) == 3
    for curve, n_star in zip(curves, true.values(), strict=True):
        assert curve.n_opt == pytest.approx(n_star, rel=1e-6)
    law = optimal_size_law(curves)
    assert law.exponent == pytest.approx(0.5, rel=1e-6)  # N_opt doubles when C quadruples


def test_isoflop_without_a_bracketed_minimum_says_so():
    n = np.array([1e5, 2e5, 4e5])
    curves = isoflop_curves([1e12] * 3, n, 3.0 - 0.1 * np.log(n))  # still falling
    assert curves[0].n_opt is None
    with pytest.raises(ValueError, match="bracket their optimum"):
        optimal_size_law(curves)
