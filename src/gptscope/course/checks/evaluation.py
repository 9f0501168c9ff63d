"""Checks for lesson 3c, first half: reliability bins, temperature scaling on validation rows,
the AUROC of an out-of-distribution detector.

The truths are ``gptscope.evals`` (float64); the wrong variants below reproduce the named
mistakes so that a wrong answer is told which one it made.
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

from gptscope.course.checks._common import Mismatch, as_tensor, call, compare, run_cases, run_check
from gptscope.course.checks.calibration import (
    auroc_cases,
    auroc_variants,
    expect_value_error,
    float_answer,
)
from gptscope.course.result import CheckResult
from gptscope.evals import calibration as lib_calibration
from gptscope.evals import ood as lib_ood

# -- reliability_bins -------------------------------------------------------------------------

FIELDS = ("lo", "hi", "count", "confidence", "accuracy")
CLOSED_LEFT = ("a confidence on a bin edge went to the bin above: bins are (lo, hi], open on "
               "the left, so an edge belongs to the bin below it")
MASS_OFF_BY_ONE = ("equal-mass edges one place too high: edge k is ordered[ceil(k * n / "
                   "n_bins) - 1], counting from 0")
EMPTY_ZERO = "an empty bin's confidence and accuracy are NaN, not 0"
EMPTY_DROPPED = ("empty bins dropped: return all n_bins rows, an empty one with count 0 and "
                 "NaN for its confidence and accuracy")
ZERO_LAST = ("a confidence of 0 went to the last bin (ceil(0) - 1 = -1 indexes from the "
             "end): it belongs to the first bin")
SWAPPED_COLUMNS = "mean confidence and accuracy swapped: each row is (lo, hi, count, " \
                  "confidence, accuracy)"
MIDPOINT = ("reported each bin's midpoint (lo + hi) / 2 as its confidence: use the mean "
            "confidence of the examples in it")
FRACTIONS = "count is the number of examples in the bin, not their share of n"
SCHEME_IGNORED = "scheme ignored: 'mass' puts the edges at quantiles of the confidences"
NBINS_IGNORED = "n_bins ignored: 10 bins used whatever n_bins is"


def bins_variant(conf: Tensor, correct: Tensor, n_bins: int, scheme: str,
                 closed_left: bool = False, mass_offset: int = -1, empty: float = math.nan,
                 zero_last: bool = False) -> Tensor:
    """Reliability rows [n_bins, 5] in float64, right with the defaults (the flags are the
    named mistakes)."""
    conf, right = conf.double(), correct.double()
    n = len(conf)
    if scheme == "mass":
        ordered = conf.sort().values
        cuts = [float(ordered[min(n - 1, math.ceil(k * n / n_bins) + mass_offset)])
                for k in range(1, n_bins)]
        edges = torch.tensor([0.0, *cuts, 1.0], dtype=torch.float64)
    else:
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = torch.bucketize(conf, edges[1:-1], right=closed_left).clamp(0, n_bins - 1)
    if zero_last:
        index = torch.where(conf == 0, n_bins - 1, index)
    rows = []
    for b in range(n_bins):
        m = index == b
        count = int(m.sum())
        rows.append([float(edges[b]), float(edges[b + 1]), count,
                     float(conf[m].mean()) if count else empty,
                     float(right[m].mean()) if count else empty])
    return torch.tensor(rows, dtype=torch.float64)


def bins_truth(conf: Tensor, correct: Tensor, n_bins: int, scheme: str) -> Tensor:
    """The library's reliability rows [n_bins, 5] as a float64 tensor."""
    rows = lib_calibration.reliability_bins(conf, correct, n_bins, scheme)
    return torch.tensor([[getattr(b, f) for f in FIELDS] for b in rows], dtype=torch.float64)


def _number(value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.detach().reshape(()))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Mismatch(f"each row holds numbers; got a {type(value).__name__}")


def rows_answer(got: Any, n_bins: int, n_filled: int) -> Tensor:
    """The learner's rows as a float64 tensor [n_bins, 5]; a wrong kind is a Mismatch."""
    if isinstance(got, Tensor) and got.dim() == 2 and got.shape[1] == 5:
        rows: list[Any] = list(got)
    elif isinstance(got, (list, tuple)):
        rows = list(got)
    else:
        raise Mismatch(f"return a list of n_bins rows (lo, hi, count, confidence, accuracy), "
                       f"got a {type(got).__name__}")
    table = []
    for row in rows:
        if all(hasattr(row, f) for f in FIELDS):
            row = [getattr(row, f) for f in FIELDS]
        if isinstance(row, str) or not isinstance(row, (list, tuple, Tensor)) or len(row) != 5:
            raise Mismatch("each row is a tuple of 5 numbers: (lo, hi, count, confidence, "
                           "accuracy)")
        table.append([_number(v) for v in row])
    if len(table) != n_bins:
        if len(table) == 10:
            raise Mismatch(NBINS_IGNORED)
        if len(table) == n_filled:
            raise Mismatch(EMPTY_DROPPED)
        raise Mismatch(f"return one row per bin: {n_bins} rows, got {len(table)}")
    return torch.tensor(table, dtype=torch.float64)


def bins_cases() -> list[tuple[str, Tensor, Tensor, int, str]]:
    """Confidences on the edges (dyadic, so float32 and float64 agree), exactly 0, empty
    bins, equal-mass bins with n not a multiple of n_bins, and tied quantiles."""
    g = torch.Generator().manual_seed(17)
    smooth = 0.3 + 0.7 * torch.rand(97, generator=g, dtype=torch.float64)
    right = torch.rand(97, generator=g) < smooth.float()
    edges = torch.tensor([0.0, 0.25, 0.5, 0.5, 0.625, 0.75, 1.0, 0.875, 0.0, 0.3125],
                         dtype=torch.float64)
    edge_right = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    ticks = torch.randint(0, 17, (40,), generator=g).double() / 16
    tick_right = torch.rand(40, generator=g) < 0.6
    return [("97 confidences in (0.3, 1], 10 equal-width bins (some empty)", smooth, right,
             10, "width"),
            ("confidences on the edges of 4 bins and exactly 0", edges, edge_right, 4,
             "width"),
            ("sixteenths, 8 equal-width bins", ticks, tick_right, 8, "width"),
            ("97 confidences, 5 equal-mass bins", smooth, right, 5, "mass"),
            ("sixteenths (tied), 6 equal-mass bins", ticks, tick_right, 6, "mass"),
            ("97 confidences, 3 equal-width bins", smooth, right, 3, "width")]


def _bins_mistakes(conf: Tensor, correct: Tensor, n_bins: int, scheme: str
                   ) -> dict[str, Callable[[], Tensor]]:
    def v(**kw: Any) -> Callable[[], Tensor]:
        return lambda: bins_variant(conf, correct, **({"n_bins": n_bins, "scheme": scheme}
                                                      | kw))
    truth = bins_variant(conf, correct, n_bins, scheme)
    swapped, midpoint, fractions = truth.clone(), truth.clone(), truth.clone()
    swapped[:, [3, 4]] = truth[:, [4, 3]]
    midpoint[:, 3] = torch.where(truth[:, 2] > 0, (truth[:, 0] + truth[:, 1]) / 2, math.nan)
    fractions[:, 2] = truth[:, 2] / len(conf)
    return {CLOSED_LEFT: v(closed_left=True), MASS_OFF_BY_ONE: v(mass_offset=0)
            if scheme == "mass" else lambda: None,
            EMPTY_ZERO: v(empty=0.0), ZERO_LAST: v(zero_last=True),
            SWAPPED_COLUMNS: lambda: swapped, MIDPOINT: lambda: midpoint,
            FRACTIONS: lambda: fractions,
            SCHEME_IGNORED: v(scheme="width") if scheme == "mass" else lambda: None,
            NBINS_IGNORED: v(n_bins=10) if n_bins != 10 else lambda: None}


def check_reliability_bins(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, Tensor, Tensor, int, str]) -> str:
        case, conf, correct, n_bins, scheme = spec
        want = bins_truth(conf, correct, n_bins, scheme)
        filled = int((want[:, 2] > 0).sum())
        got = rows_answer(call(fn, conf.clone(), correct.clone(), n_bins, scheme), n_bins,
                          filled)
        compare(got, want, case, _bins_mistakes(conf, correct, n_bins, scheme),
                "your rows", atol=1e-9, rtol=1e-9, axes=("bin", "field"))
        return case

    def body() -> list[str]:
        passed = run_cases(bins_cases(), one_case)
        conf, correct = torch.tensor([0.2, 0.9]), torch.tensor([True, False])
        return expect_value_error(fn, (conf, correct, 2, "quantile"), passed,
                                  "an unknown scheme: ValueError",
                                  "scheme 'quantile' is neither 'width' nor 'mass': raise "
                                  "ValueError (the docstring asks for it)")
    return run_check("reliability_bins", body)


# -- temperature_scale ------------------------------------------------------------------------

FIT_ON_TEST = ("T fitted on the test rows: fit it on the validation rows (val True) only, "
               "never on the data you report")
FIT_ON_ALL = ("T fitted on every row, test rows included: fit it on the validation rows "
              "(val True) only")
MULTIPLIED = "multiplied the logits by T (or divided by 1/T): return logits / T"
UNFITTED = "the logits came back unchanged: fit T and return logits / T"
PROBS = "returned softmax(logits / T): return the scaled logits themselves"
LOG_PROBS = "returned log_softmax(logits / T): return the scaled logits themselves"
ONLY_VAL_SCALED = "only the validation rows were scaled: divide every row by T"


def scale_truth(logits: Tensor, labels: Tensor, rows: Tensor) -> Tensor:
    """logits / T in float64, T fitted by the library on ``rows``."""
    t = lib_calibration.fit_temperature(logits[rows], labels[rows])
    return logits.double() / t


def temperature_cases() -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """Validation and test rows from different models: the best T differs between them, so
    fitting on the wrong rows shows."""
    g = torch.Generator().manual_seed(23)
    cases = []
    for label, n, c, scale, right_val, right_test in [
            ("over-confident, test rows shifted", 300, 5, 4.0, 0.7, 0.45),
            ("under-confident, test rows shifted", 200, 4, 0.4, 0.95, 0.6),
            ("10 classes, a few validation rows", 120, 10, 2.0, 0.5, 0.8)]:
        logits = torch.randn(n, c, generator=g) * scale
        val = torch.rand(n, generator=g) < 0.5
        keep = torch.rand(n, generator=g) < torch.where(val, right_val, right_test)
        labels = torch.where(keep, logits.argmax(-1), torch.randint(0, c, (n,), generator=g))
        cases.append((label, logits, labels, val))
    return cases


def check_temperature_scale(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, Tensor, Tensor, Tensor]) -> str:
        case, logits, labels, val = spec
        want = scale_truth(logits, labels, val)
        got = call(fn, logits.clone(), labels.clone(), val.clone())
        if isinstance(got, (float, int)) or (isinstance(got, Tensor) and got.dim() == 0):
            raise Mismatch("returned a number (T?): return the scaled logits logits / T, "
                           "[n, n_classes]")
        got = as_tensor(got, "temperature_scale")
        if got.shape[:1] in (torch.Size([int(val.sum())]), torch.Size([int((~val).sum())])) \
                and got.shape[0] != len(val):
            raise Mismatch("returned only some rows: return logits / T for every row, "
                           "validation and test, [n, n_classes]")
        t = logits.double()[0, 0] / want[0, 0]
        compare(got, want, case, {
            FIT_ON_TEST: lambda: scale_truth(logits, labels, ~val),
            FIT_ON_ALL: lambda: scale_truth(logits, labels, torch.ones_like(val)),
            MULTIPLIED: lambda: logits.double() * t,
            UNFITTED: lambda: logits.double(),
            PROBS: lambda: want.softmax(-1),
            LOG_PROBS: lambda: want.log_softmax(-1),
            ONLY_VAL_SCALED: lambda: torch.where(val[:, None], want, logits.double()),
        }, "the scaled logits", atol=1e-5, rtol=1e-3, axes=("row", "class"))
        return case
    return run_check("temperature_scale", lambda: run_cases(temperature_cases(), one_case))


# -- ood_auroc --------------------------------------------------------------------------------

UNAVERAGED = "ranks of tied scores not averaged: tied scores share the mean of their ranks"
OOD_SWAPPED = ("in- and out-of-distribution swapped: the out-of-distribution inputs are the "
               "positives, expected to score higher (you returned 1 - AUROC)")


def ood_cases() -> list[tuple[str, Tensor, Tensor]]:
    """Lesson 3b's AUROC cases split into (in-distribution, out-of-distribution) scores."""
    return [(case, scores[~labels.bool()], scores[labels.bool()])
            for case, scores, labels in auroc_cases()]


def check_ood_auroc(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, Tensor, Tensor]) -> str:
        case, inside, outside = spec
        scores = torch.cat([inside, outside])
        labels = torch.cat([torch.zeros(len(inside)), torch.ones(len(outside))]).long()
        want = torch.tensor(lib_ood.auroc(scores, labels), dtype=torch.float64)
        got = float_answer(call(fn, inside.clone(), outside.clone()), "the AUROC")
        # Unaveraged ranks of (in, out) concatenated are ties counted as wins: one mistake.
        variants = auroc_variants(scores, labels, OOD_SWAPPED)
        variants.pop(UNAVERAGED)
        compare(got, want, case, variants, "the AUROC", atol=1e-9)
        return case

    def body() -> list[str]:
        passed = run_cases(ood_cases(), one_case)
        return expect_value_error(
            fn, (torch.tensor([0.2, 0.4]), torch.tensor([])), passed,
            "no out-of-distribution scores: ValueError",
            "with no out-of-distribution scores the AUROC is undefined: raise ValueError "
            "(the docstring asks for it), rather than return a number")
    return run_check("ood_auroc", body)
