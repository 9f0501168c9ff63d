"""Training compute of notable systems over time, and its doubling time per era.

The table (``compute_trends.csv``, bundled) holds Epoch AI's estimates of training compute
for 443 notable systems, 1950-2024, each with a link to the system's own publication. The
eras follow Sevilla et al. 2022, "Compute Trends Across Three Eras of Machine Learning":
before 2010 (pre-deep learning), 2010 to the paper's cut-off in March 2022 (deep learning),
and from late 2015 (AlphaGo) to the cut-off for the large-scale systems only. They report
doubling times of about 20, 6 and 10 months (the 18 / 6 / 10 months seed 003 quotes). Which
systems are "large-scale" is our approximation of their rule: those more than 0.76 residual
standard deviations above the deep-learning-era trend at their date.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from importlib import resources

import numpy as np

from gptscope.scaling.fits import ArrayLike, _positive, _same_length, bootstrap

PAPER_CUTOFF = 2022 + 2 / 12  # Sevilla et al.'s data ends in February 2022
LARGE_SCALE_START = 2015 + 9 / 12
LARGE_SCALE_Z = 0.76


@dataclass(frozen=True)
class System:
    model: str
    organization: str
    year: float  # decimal year of publication
    flop: float
    source: str


def decimal_year(date: str) -> float:
    """'2020-05-28' -> 2020.41 (the year plus the fraction of it that had passed)."""
    day = dt.date.fromisoformat(date)
    start, end = dt.date(day.year, 1, 1), dt.date(day.year + 1, 1, 1)
    return day.year + (day - start).days / (end - start).days


def load_compute_trends() -> list[System]:
    """The bundled table, oldest first."""
    text = resources.files("gptscope.scaling").joinpath("compute_trends.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return [System(r["model"], r["organization"], decimal_year(r["date"]),
                   float(r["training_flop"]), r["source"]) for r in csv.DictReader(lines)]


def _slope(years: np.ndarray, log2_flop: np.ndarray) -> float:
    if np.ptp(years) == 0:
        raise ValueError("every system has the same date; a trend needs two or more dates")
    return float(np.polyfit(years, log2_flop, 1)[0])


def doubling_time(years: ArrayLike, flop: ArrayLike, n_boot: int = 0,
                  seed: int = 0) -> tuple[float, tuple[float, float] | None]:
    """Doubling time, in years, of ``flop`` growing exponentially with ``years``: fit
    ``log2 flop = slope * year + c``; the doubling time is ``1 / slope``. With ``n_boot``,
    also a 95% bootstrap interval (systems resampled), else None."""
    years = np.asarray(years, dtype=np.float64)
    flop = _positive("flop", flop)
    _same_length(years=years, flop=flop)
    log2_flop = np.log2(flop)
    slope = _slope(years, log2_flop)
    if slope <= 0:
        raise ValueError(f"compute falls over these dates (slope {slope:.3g} doublings per "
                         "year), so it has no doubling time")
    if not n_boot:
        return 1.0 / slope, None
    low, high = bootstrap(lambda i: np.array([1.0 / _slope(years[i], log2_flop[i])]),
                          years.size, n_boot, seed, distinct=years)
    return 1.0 / slope, (float(low[0]), float(high[0]))


def era_systems(systems: list[System]) -> dict[str, list[System]]:
    """The systems of each era (see the module doc)."""
    pre = [s for s in systems if s.year < 2010]
    deep = [s for s in systems if 2010 <= s.year < PAPER_CUTOFF]
    years = np.array([s.year for s in deep])
    log2_flop = np.log2([s.flop for s in deep])
    slope, intercept = np.polyfit(years, log2_flop, 1)
    residual = log2_flop - (slope * years + intercept)
    bar = LARGE_SCALE_Z * residual.std()
    large = [s for s, r in zip(deep, residual, strict=True)
             if s.year >= LARGE_SCALE_START and r > bar]
    return {"pre-deep-learning": pre, "deep-learning": deep, "large-scale": large}


def era_doubling_times(n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per era: months to double, its 95% interval, the number of systems and the years."""
    out = {}
    for era, group in era_systems(load_compute_trends()).items():
        years, flop = [s.year for s in group], [s.flop for s in group]
        years_to_double, interval = doubling_time(years, flop, n_boot=n_boot, seed=seed)
        out[era] = {"months": 12 * years_to_double, "low": 12 * interval[0],
                    "high": 12 * interval[1], "n": len(group),
                    "from": min(years), "to": max(years)}
    return out
