import numpy as np
import pytest

from gptscope.scaling.trends import (
    decimal_year,
    doubling_time,
    era_doubling_times,
    load_compute_trends,
)


def test_doubling_time_of_an_exact_exponential():
    years = np.linspace(2012, 2022, 21)
    assert doubling_time(years, 1e17 * 2.0 ** ((years - 2012) / 0.5))[0] == pytest.approx(0.5)


def test_doubling_time_refuses_a_falling_or_flat_trend():
    with pytest.raises(ValueError, match="no doubling time"):
        doubling_time([2000.0, 2001.0], [10.0, 5.0])
    with pytest.raises(ValueError, match="same date"):
        doubling_time([2000.0, 2000.0], [10.0, 5.0])


def test_the_table_is_dated_sourced_and_ordered():
    systems = load_compute_trends()
    assert len(systems) == 443
    assert all(s.flop > 0 and s.source.startswith("http") for s in systems)
    assert [s.year for s in systems] == sorted(s.year for s in systems)
    gpt3 = next(s for s in systems if s.model == "GPT-3 175B (davinci)")
    assert gpt3.flop == pytest.approx(3.14e23, rel=0.01)  # the paper's own count
    assert decimal_year("2020-07-02") == pytest.approx(2020.5, abs=0.01)


def test_era_doubling_times_reproduce_seed_003_within_their_intervals():
    # Seed 003 quotes Sevilla et al. 2022: about 18 months before deep learning, 6 in the
    # deep-learning era, 10 for large-scale systems.
    eras = era_doubling_times(n_boot=500)
    for era, months in (("pre-deep-learning", 18), ("deep-learning", 6), ("large-scale", 10)):
        assert eras[era]["low"] <= months <= eras[era]["high"], (era, eras[era])
