"""Checks for lesson 3b: calibration error, AUROC, temperature scaling."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gptscope.course.checks._common import Mismatch, call, compare, run_cases, run_check
from gptscope.course.result import CheckResult


def reference_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10,
                  weighted: bool = True, true_class: bool = False, floor: bool = False
                  ) -> float:
    """Reference expected calibration error (and wrong variants used for diagnosis)."""
    conf, pred = probs.double().max(-1)
    if true_class:
        conf = probs.double().gather(-1, labels[:, None])[:, 0]
    correct = (pred == labels).double()
    edges = torch.floor(conf * n_bins) if floor else torch.ceil(conf * n_bins) - 1
    bins = edges.clamp(0, n_bins - 1).long()
    gaps, sizes = [], []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            gaps.append((correct[m].mean() - conf[m].mean()).abs().item())
            sizes.append(m.sum().item())
    if weighted:
        return sum(g * s for g, s in zip(gaps, sizes)) / probs.shape[0]
    return sum(gaps) / len(gaps)


def _edge_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Confidences exactly on the edges of 4 bins (0.5, 0.75, 1.0: each belongs to the bin
    below it, as bins are (lo, hi]), beside others, with gaps of both signs so that moving
    one example to another bin changes the ECE."""
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.375, 0.3125, 0.3125], [0.625, 0.25, 0.125],
                          [0.75, 0.125, 0.125], [1.0, 0.0, 0.0], [0.875, 0.0625, 0.0625]])
    return probs, torch.tensor([0, 1, 0, 2, 0, 1])


def _ece_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    """Random classifiers right 55% of the time whatever their confidence, so bins below
    0.55 are under-confident and bins above over-confident: with gaps of both signs the
    binning matters (were every bin over-confident, ECE would be mean confidence minus
    accuracy, whatever the bins)."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for n, c, temp, n_bins in [(200, 5, 1.0, 10), (500, 10, 0.3, 15), (50, 3, 1.0, 5),
                               (300, 4, 0.5, 3)]:
        probs = (torch.randn(n, c, generator=g) / temp).softmax(-1)
        pred = probs.argmax(-1)
        wrong = (pred + torch.randint(1, c, (n,), generator=g)) % c
        labels = torch.where(torch.rand(n, generator=g) < 0.55, pred, wrong)
        cases.append((f"n={n}, classes={c}, n_bins={n_bins}", probs, labels, n_bins))
    return cases + [("confidences on the edges of 4 bins", *_edge_case(), 4)]


def float_answer(got: Any, what: str) -> torch.Tensor:
    """A number the contract asks for as a Python float (a 0-d float tensor is one too), as
    a float64 0-d tensor for comparison; anything else is a Mismatch."""
    if isinstance(got, torch.Tensor) and got.dim() == 0 and got.is_floating_point():
        return got.detach().double().reshape(())
    if isinstance(got, (float, int)) and not isinstance(got, bool):
        return torch.tensor(float(got), dtype=torch.float64)
    shape = f" of shape {list(got.shape)}" if isinstance(got, torch.Tensor) else ""
    raise Mismatch(f"return a float ({what}), got a {type(got).__name__}{shape}")


def check_expected_calibration_error(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, torch.Tensor, torch.Tensor, int]) -> str:
        case, probs, labels, n_bins = spec
        want = torch.tensor(reference_ece(probs, labels, n_bins), dtype=torch.float64)
        got = float_answer(call(fn, probs.clone(), labels.clone(), n_bins), "the ECE")
        conf, pred = probs.max(-1)
        per_sample = ((pred == labels).double() - conf.double()).abs().mean()

        def ece(**kw: Any) -> Callable[[], torch.Tensor]:
            return lambda: torch.tensor(reference_ece(probs, labels, **({"n_bins": n_bins}
                                                                         | kw)))
        compare(got, want, case, {
            "bins averaged equally; weight each bin's gap by its share of examples |B|/n":
                ece(weighted=False),
            "used the probability of the true label as confidence; use the highest "
            "probability (the predicted class)": ece(true_class=True),
            "compared each example's 0/1 correctness with its confidence; ECE compares "
            "averages within each bin": lambda: per_sample,
            "a confidence on a bin edge went to the bin above: bins are (lo, hi], so 0.5 "
            "with 4 bins is in (0.25, 0.5]; use ceil(confidence * n_bins) - 1": ece(floor=True),
            "n_bins ignored: 10 bins used whatever n_bins is": ece(n_bins=10)
            if n_bins != 10 else lambda: None,
        }, "the ECE", atol=1e-6)
        return case
    return run_check("expected_calibration_error", lambda: run_cases(_ece_cases(), one_case))


# -- AUROC ------------------------------------------------------------------------------------


def auroc_truth(scores: torch.Tensor, labels: torch.Tensor, tie: float = 0.5) -> torch.Tensor:
    """The Mann-Whitney AUROC in float64 (``tie`` is what a tie counts; 0.5 is right)."""
    pos, neg = scores[labels.bool()].double(), scores[~labels.bool()].double()
    higher = (pos[:, None] > neg[None, :]).double()
    return (higher + tie * (pos[:, None] == neg[None, :]).double()).mean()


def auroc_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    labels = (torch.rand(60, generator=g) < 0.3).long()
    scores = torch.randn(60, generator=g) + 1.2 * labels
    rounded = (scores * 2).round() / 2  # many ties across the classes
    return [("60 scores, 30% positives", scores, labels),
            ("scores rounded to halves (ties)", rounded, labels),
            ("perfectly separated", torch.tensor([0.1, 0.2, 0.8, 0.9]),
             torch.tensor([0, 0, 1, 1])),
            ("all scores equal", torch.zeros(5), torch.tensor([1, 0, 0, 1, 0])),
            ("one positive, labels as bools", torch.tensor([0.3, 0.7, 0.5, 0.1]),
             torch.tensor([False, False, True, False]))]


def _pairwise_rank_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Ranks without averaging ties: the mistake of sorting once and counting ranks."""
    order = torch.argsort(scores.double(), stable=True)
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    n_pos = int(labels.bool().sum())
    n_neg = len(scores) - n_pos
    return (ranks[labels.bool()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


SWAPPED = ("the labels are the wrong way round: 1 marks the positives, which should score "
           "higher (you returned 1 - AUROC)")


def auroc_variants(scores: torch.Tensor, labels: torch.Tensor, swapped: str = SWAPPED
                   ) -> dict[str, Callable[[], torch.Tensor]]:
    """The known wrong AUROCs of ``scores`` and ``labels`` (shared with lesson 3c's
    ``ood_auroc``, whose ``swapped`` message speaks of in- and out-of-distribution)."""
    return {
        "ties counted as wins: a tie between a positive and a negative counts one half":
            lambda: auroc_truth(scores, labels, tie=1.0),
        "ties counted as losses: a tie between a positive and a negative counts one "
        "half": lambda: auroc_truth(scores, labels, tie=0.0),
        swapped: lambda: 1 - auroc_truth(scores, labels),
        "ranks of tied scores not averaged: tied scores share the mean of their ranks":
            lambda: _pairwise_rank_auc(scores, labels),
        "returned the accuracy at threshold 0.5, not the area under the ROC curve":
            lambda: ((scores > 0.5).long() == labels.long()).double().mean(),
    }


def expect_value_error(fn: Callable[..., Any], args: tuple[Any, ...], passed: list[str],
                       label: str, complaint: str) -> list[str]:
    """``passed`` plus ``label`` if ``fn(*args)`` raises ValueError; else Mismatch
    ``complaint`` (another exception from the learner's code is reported as raised)."""
    try:
        call(fn, *args)
    except Exception as raised:
        cause = raised.__cause__ or raised
        if not isinstance(cause, ValueError):
            raise
        return passed + [label]
    raise Mismatch(complaint)


def check_auroc(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, torch.Tensor, torch.Tensor]) -> str:
        case, scores, labels = spec
        want = auroc_truth(scores, labels)
        got = float_answer(call(fn, scores.clone(), labels.clone()), "the AUROC")
        compare(got, want, case, auroc_variants(scores, labels), "the AUROC", atol=1e-9)
        return case

    def body() -> list[str]:
        passed = run_cases(auroc_cases(), one_case)
        return expect_value_error(
            fn, (torch.tensor([0.2, 0.4]), torch.tensor([1, 1])), passed,
            "one class only: ValueError",
            "with only positive labels the AUROC is undefined: raise ValueError (the "
            "docstring asks for it), rather than return a number")
    return run_check("auroc", body)


# -- temperature scaling ----------------------------------------------------------------------


def nll_at(logits: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    return F.cross_entropy(logits.double() / t, labels).item()


def _temperature_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    cases = []
    for label, scale, right in [("over-confident logits (x4)", 4.0, 0.7),
                                ("under-confident logits (x0.3)", 0.3, 0.9),
                                ("nearly calibrated", 1.0, 0.6)]:
        logits = torch.randn(400, 6, generator=g) * scale
        pred = logits.argmax(-1)
        labels = torch.where(torch.rand(400, generator=g) < right, pred,
                             torch.randint(0, 6, (400,), generator=g))
        cases.append((label, logits, labels))
    return cases


def check_fit_temperature(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, torch.Tensor, torch.Tensor]) -> str:
        case, logits, labels = spec
        from gptscope.course.solutions.lesson03b_evaluation import fit_temperature
        best = fit_temperature(logits, labels)
        got = float_answer(call(fn, logits.clone(), labels.clone()), "the temperature")
        t = float(got)
        if not math.isfinite(t) or t <= 0:
            raise Mismatch(f"{case}: the temperature must be a positive number, got {t:.4g}")
        accuracy = (logits.argmax(-1) == labels).double().mean()
        compare(got, torch.tensor(best, dtype=torch.float64), case, {
            "returned 1/T: the logits are *divided* by the temperature, softmax(logits / T)":
                lambda: torch.tensor(1 / best, dtype=torch.float64),
            "returned 1.0: the temperature was not fitted (minimise the cross-entropy of "
            "softmax(logits / T) over T)": lambda: torch.tensor(1.0, dtype=torch.float64),
            "returned the accuracy; return the fitted temperature": lambda: accuracy,
        }, "the temperature", atol=0.0, rtol=1e-3)
        gap = nll_at(logits, labels, t) - nll_at(logits, labels, best)
        if gap > 1e-6:
            raise Mismatch(f"{case}: cross-entropy at your T = {t:.4g} is {gap:.2g} above "
                           f"the best (T = {best:.4g}): search further")
        return case
    return run_check("fit_temperature", lambda: run_cases(_temperature_cases(), one_case))
