"""Checks for lesson 14's exercises on reporting results: a bootstrap interval, a paired
permutation test and the spread over seeds.

The library has no example-level bootstrap or permutation test (``gptscope.scaling``
bootstraps fit points, a different contract), so the references are float64 code here.
The learner is given a seeded ``torch.Generator`` and told the exact draw to make; the
check replays that draw from a fresh generator with the same seed, so a right answer gets
the very same resamples and can never fail by chance.
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._answers import dict_answer
from gptscope.course.checks._common import (
    Mismatch,
    Unexplained,
    call,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult

GENERATOR_UNUSED = ("the generator you were given was not used: draw with "
                    "generator=generator, so that the same seed gives the same result")


def _compare_draws(got: Tensor, want: Tensor, case: str, mistakes: dict, what: str,
                   draw: str, **kw: Any) -> None:
    """``compare``, and where no mistake explains the difference, a reminder of the exact
    draw: answers that draw differently get other resamples, so they differ everywhere."""
    try:
        compare(got, want, case, mistakes, what=what, **kw)
    except Unexplained as m:
        raise Unexplained(f"{m.message}; if you drew differently, draw exactly as the "
                          f"docstring says, {draw}, so that your resamples are the check's",
                          m.details, ruled_out=m.ruled_out, size=m.size) from None


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _call_seeded(fn: Callable[..., Any], args: tuple, seed: int, case: str) -> Any:
    """Call ``fn(*args, generator)`` with a generator seeded by ``seed``; a Mismatch if the
    answer never drew from it."""
    g = _seeded(seed)
    before = g.get_state()
    got = call(fn, *args, g)
    if torch.equal(before, g.get_state()):
        raise Mismatch(GENERATOR_UNUSED, [f"case: {case}"])
    return got


def _z(level: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor((1 + level) / 2)))


# -- bootstrap_interval -----------------------------------------------------------------------

NO_REPLACEMENT = ("resampled without replacement: a permutation of all n examples has the "
                  "same statistic every time; draw indices with replacement (torch.randint)")
LEVEL_AS_TAIL = ("the quantiles are 1 - level and level; a central interval puts (1 - level) "
                 "/ 2 in each tail: quantiles (1 - level) / 2 and (1 + level) / 2")
ONE_RESAMPLE = ("resampled only once: draw n_resamples resamples, idx of shape "
                "(n_resamples, n), and take quantiles of all their statistics")
DATA_STD = ("used the std of the data (mean +- z std): that is the spread of single "
            "examples, not of the statistic; read the bootstrap statistics' quantiles")
NORMAL_SE = ("a normal approximation (mean +- z std / sqrt(n)), not the percentile "
             "bootstrap: take quantiles of the resampled statistics")
STATS_STD = ("mean +- z std of the resampled statistics (the 'normal' bootstrap); the "
             "percentile bootstrap reads the statistics' quantiles")
SWAPPED = "low and high are swapped: return [low, high]"
IDX_SHAPE = ("idx was drawn with shape (n, n_resamples): draw (n_resamples, n), one "
             "resample per row, so the draws are the ones the docstring names")
R_IGNORED = "n_resamples is ignored: draw exactly n_resamples resamples"
LEVEL_IGNORED = "level is ignored: the interval's quantiles follow the level you are given"


def _stats(values: Tensor, statistic: Callable[[Tensor], Tensor], seed: int, n_resamples: int,
           shape: str = "rows") -> Tensor:
    n, g = values.shape[0], _seeded(seed)
    if shape == "columns":
        idx = torch.randint(0, n, (n, n_resamples), generator=g).T
    else:
        idx = torch.randint(0, n, (n_resamples, n), generator=g)
    x = values.double()
    return torch.stack([statistic(x[row]) for row in idx]).double()


def _quantiles(stats: Tensor, low: float, high: float) -> Tensor:
    return torch.quantile(stats, torch.tensor([low, high], dtype=torch.float64))


def _bootstrap_mistakes(values: Tensor, statistic: Callable[[Tensor], Tensor], R: int,
                        level: float, seed: int) -> tuple[Tensor, dict[str, Callable[[], Tensor]]]:
    stats = _stats(values, statistic, seed, R)
    tails = ((1 - level) / 2, (1 + level) / 2)
    right = _quantiles(stats, *tails)
    x, z = values.double(), _z(level)
    whole = statistic(x).double()
    mistakes = {
        NO_REPLACEMENT: lambda: torch.stack([whole, whole]),
        LEVEL_AS_TAIL: lambda: _quantiles(stats, 1 - level, level),
        ONE_RESAMPLE: lambda: stats[:1].repeat(2),
        DATA_STD: lambda: x.mean() + z * x.std() * torch.tensor([-1.0, 1.0]).double(),
        NORMAL_SE: lambda: x.mean() + z * x.std() / math.sqrt(len(x)) * torch.tensor(
            [-1.0, 1.0]).double(),
        STATS_STD: lambda: stats.mean() + z * stats.std() * torch.tensor([-1.0, 1.0]).double(),
        SWAPPED: lambda: right.flip(0),
        IDX_SHAPE: lambda: _quantiles(_stats(values, statistic, seed, R, "columns"), *tails),
        R_IGNORED: lambda: _quantiles(_stats(values, statistic, seed, 1000), *tails),
        LEVEL_IGNORED: lambda: _quantiles(stats, 0.025, 0.975),
    }
    return right, mistakes


def _skewed_median(x: Tensor) -> Tensor:
    return x.median()


def check_bootstrap_interval(fn: Callable[..., Any]) -> CheckResult:
    accuracy = (torch.rand(30, generator=_seeded(1)) < 0.7).float()
    specs = [  # (values [n], statistic, its name, n_resamples, level, seed)
        (randn(40, seed=0) * 2 + 1, torch.mean, "mean", 400, 0.95, 0),
        (accuracy, torch.mean, "accuracy", 300, 0.9, 1),
        (randn(25, seed=2) ** 2, _skewed_median, "median", 200, 0.8, 2),
    ]

    def one_case(spec: tuple) -> str:
        values, statistic, label, R, level, seed = spec
        case = f"{label} of {len(values)} examples, n_resamples={R}, level={level}"
        got = _call_seeded(fn, (values.clone(), statistic, R, level), seed, case)
        right, mistakes = _bootstrap_mistakes(values, statistic, R, level, seed)
        _compare_draws(got, right, case, mistakes, "your interval", "idx = torch.randint(0, "
                       "n, (n_resamples, n), generator=generator)", atol=1e-5,
                       axes=("low, high",))
        return case

    return run_check("bootstrap_interval", lambda: run_cases(specs, one_case))


# -- paired_permutation_test ------------------------------------------------------------------

NO_PLUS_ONE = ("no +1 correction: p = (1 + count) / (1 + n_permutations); the observed "
               "labelling is one of the permutations, so p is never 0")
PLUS_ONE_TOP = ("+1 on the count only: the denominator is 1 + n_permutations too, "
                "(1 + count) / (1 + n_permutations)")
ONE_SIDED = ("one-sided: the test is two-sided, so compare |mean(signs * d)| with "
             "|mean(d)| (a large difference either way counts)")
ABS_OBSERVED_ONLY = ("|.| is taken of the observed mean only: take it of every null "
                     "statistic |mean(signs[r] * d)| too")
STRICT = ("counted null statistics > the observed one; count those >= it (ties, common "
          "with 0/1 scores, count as at least as extreme)")
REVERSED_TAIL = ("counted null statistics <= the observed one: the p-value is the share at "
                 "least as extreme, >= the observed |mean(d)|")
SIGNS_SHAPE = ("signs were drawn with shape (n, n_permutations): draw (n_permutations, n), "
               "one sign flip per row, as the docstring says")
UNPAIRED = ("the test looks unpaired: on examples whose scores vary a lot but A beats B "
            "on each by a similar margin, p should be tiny. Flip the sign of each paired "
            "difference a[i] - b[i]; do not shuffle scores between examples")


def _p_value(value: Any) -> float:
    """The learner's p-value as a float, or a Mismatch saying what came back."""
    if isinstance(value, bool) or not isinstance(value, (float, int)):
        kind = "None" if value is None else f"a {type(value).__name__}"
        hint = " (use .item())" if isinstance(value, Tensor) else ""
        raise Mismatch(f"paired_permutation_test should return the p-value as a Python "
                       f"float; it returned {kind}{hint}")
    return float(value)


def _null(d: Tensor, R: int, seed: int, shape: str = "rows") -> Tensor:
    g = _seeded(seed)
    if shape == "columns":
        signs = (torch.randint(0, 2, (d.shape[0], R), generator=g) * 2 - 1).T
    else:
        signs = torch.randint(0, 2, (R, d.shape[0]), generator=g) * 2 - 1
    return (signs * d).mean(dim=1)  # [R], signed


def _permutation_mistakes(a: Tensor, b: Tensor, R: int, seed: int
                          ) -> tuple[Tensor, dict[str, Callable[[], Tensor]]]:
    d = (a - b).double()
    null, obs = _null(d, R, seed), d.mean()

    def p(count: Tensor, top: int = 1, bottom: int = 1) -> Tensor:
        return (top + count.sum().double()) / (bottom + R)

    right = p(null.abs() >= obs.abs())
    mistakes = {
        NO_PLUS_ONE: lambda: p(null.abs() >= obs.abs(), 0, 0),
        PLUS_ONE_TOP: lambda: p(null.abs() >= obs.abs(), 1, 0),
        ONE_SIDED: lambda: p(null >= obs),
        ABS_OBSERVED_ONLY: lambda: p(null >= obs.abs()),
        STRICT: lambda: p(null.abs() > obs.abs()),
        REVERSED_TAIL: lambda: p(null.abs() <= obs.abs()),
        SIGNS_SHAPE: lambda: p(_null(d, R, seed, "columns").abs() >= obs.abs()),
    }
    return right, mistakes


def _permutation_cases() -> list[tuple[str, Tensor, Tensor, int, int]]:
    """(label, a, b, n_permutations, seed): A ahead, A behind (a one-sided test gives p
    near 1), 0/1 scores (ties), and a paired design an unpaired test cannot see."""
    base = randn(30, seed=10)
    wide = randn(50, seed=13) * 3
    right_a = (torch.rand(40, generator=_seeded(12)) < 0.75).float()
    right_b = torch.where(torch.rand(40, generator=_seeded(14)) < 0.2, 1 - right_a, right_a)
    return [
        ("A behind B by a little, 30 examples", base, base + 0.15 + 0.8 * randn(30, seed=11),
         500, 1),
        ("A ahead of B, 30 examples", base + 0.2 + 0.8 * randn(30, seed=15), base, 999, 0),
        ("0/1 scores with ties, 40 examples", right_a, right_b, 400, 2),
        ("paired: varied examples, A ahead on each by about 0.3", wide + 0.3 + 0.05 * randn(
            50, seed=16), wide, 200, 3),
    ]


def check_paired_permutation_test(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, Tensor, Tensor, int, int]) -> str:
        label, a, b, R, seed = spec
        case = f"{label}, n_permutations={R}"
        got = _p_value(_call_seeded(fn, (a.clone(), b.clone(), R), seed, case))
        right, mistakes = _permutation_mistakes(a, b, R, seed)
        try:
            _compare_draws(torch.tensor(got, dtype=torch.float64), right, case, mistakes,
                           "your p-value", "signs = torch.randint(0, 2, (n_permutations, n), "
                           "generator=generator) * 2 - 1", atol=1e-9)
        except Mismatch as m:
            # An unpaired test draws other permutations, so no replay reproduces it; but on
            # the paired design it cannot find the consistent margin.
            if not m.matched and label.startswith("paired") and got > 0.05:
                raise Mismatch(UNPAIRED, m.details) from None
            raise
        return case

    return run_check("paired_permutation_test", lambda: run_cases(
        _permutation_cases(), one_case))


# -- seed_spread ------------------------------------------------------------------------------

KEYS = ("mean", "std", "sem", "min", "max")
POPULATION = ("population std (ddof = 0): the runs are a sample of seeds, so divide by "
              "n_runs - 1, x.std(correction=1) (torch's default)")
SEM_FROM_POPULATION = ("sem uses the population std: sem = std / sqrt(n_runs) with the "
                       "sample std (ddof = 1) you returned as std")
SEM_OVER_N = "sem divided by n_runs: the standard error is std / sqrt(n_runs)"
SEM_OVER_N1 = "sem divided by sqrt(n_runs - 1): the standard error is std / sqrt(n_runs)"
SEM_IS_STD = "sem equals std: the standard error of the mean is std / sqrt(n_runs)"
VARIANCE = "returned the variance as std: take its square root"
MIN_MAX = "min and max are swapped"
MEDIAN = "mean is the median: return the mean of the runs"
ONE_RUN = ("with one run there is no spread to estimate: raise ValueError (a std with "
           "ddof = 1 of one number is nan)")


def _summary(mean: Tensor, std: Tensor, sem: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return torch.stack([mean, std, sem, lo, hi]).double()


def _spread_mistakes(finals: Tensor) -> tuple[Tensor, dict[str, Callable[[], Tensor]]]:
    x = finals.double()
    n, mean, std, lo, hi = len(x), x.mean(), x.std(correction=1), x.min(), x.max()
    pop = x.std(correction=0)
    right = _summary(mean, std, std / math.sqrt(n), lo, hi)
    var = x.var(correction=1)
    mistakes = {
        POPULATION: lambda: _summary(mean, pop, pop / math.sqrt(n), lo, hi),
        SEM_FROM_POPULATION: lambda: _summary(mean, std, pop / math.sqrt(n), lo, hi),
        SEM_OVER_N: lambda: _summary(mean, std, std / n, lo, hi),
        SEM_OVER_N1: lambda: _summary(mean, std, std / math.sqrt(n - 1), lo, hi),
        SEM_IS_STD: lambda: _summary(mean, std, std, lo, hi),
        VARIANCE: lambda: _summary(mean, var, var / math.sqrt(n), lo, hi),
        MIN_MAX: lambda: _summary(mean, std, std / math.sqrt(n), hi, lo),
        MEDIAN: lambda: _summary(x.median(), std, std / math.sqrt(n), lo, hi),
    }
    return right, mistakes


def _as_summary(value: Any) -> Tensor:
    d = dict_answer(value, KEYS, "seed_spread")
    for key in KEYS:
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (float, int)):
            hint = " (use .item())" if isinstance(v, Tensor) else ""
            raise Mismatch(f"seed_spread's {key!r} should be a Python float; it is a "
                           f"{type(v).__name__}{hint}")
    return torch.tensor([float(d[k]) for k in KEYS], dtype=torch.float64)


def _one_run(fn: Callable[..., Any]) -> str:
    try:
        fn(torch.tensor([0.71]))
    except ValueError:
        return "one run: ValueError"
    except NotImplementedError:
        raise
    except Exception as e:  # the learner's own error, but not the one asked for
        raise Mismatch(f"{ONE_RUN}; it raised {type(e).__name__}") from None
    raise Mismatch(ONE_RUN)


def check_seed_spread(fn: Callable[..., Any]) -> CheckResult:
    specs = [  # final metrics over seeds: an odd count, a small one, the fewest allowed
        torch.tensor([0.712, 0.698, 0.731, 0.705, 0.689]),
        randn(3, seed=20) * 0.1 + 2.5,
        torch.tensor([3.25, 3.75]),
    ]

    def one_case(finals: Tensor | None) -> str:
        if finals is None:
            return _one_run(fn)
        case = f"{len(finals)} runs"
        got = _as_summary(call(fn, finals.clone()))
        right, mistakes = _spread_mistakes(finals)
        compare(got, right, case, mistakes, what="your (mean, std, sem, min, max)",
                atol=1e-6, axes=("statistic: mean, std, sem, min, max",))
        return case

    return run_check("seed_spread", lambda: run_cases([*specs, None], one_case))
