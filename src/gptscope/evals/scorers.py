"""Scorers: a number per sample from the sample and the solver's output.

A scorer is any callable ``(sample, output) -> number``; `check_score` refuses anything
else, naming the sample. The built-in ones: `exact_match`, `choice_match` (multiple choice,
with or without length normalisation) and `judged` (a classifier or rule scores the text).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gptscope.evals.samples import Sample
from gptscope.model.sampling import is_real

Scorer = Callable[[Sample, dict[str, Any]], float]


def check_score(value: Any, name: str) -> float:
    """The score as a float, or a ValueError naming the sample."""
    if not (is_real(value) and math.isfinite(value)):
        raise ValueError(f"sample {name}: the scorer returned {value!r:.60}, not a finite "
                         "number; make it return e.g. 1.0 for right and 0.0 for wrong")
    return float(value)


def _target(sample: Sample) -> str | tuple[int, ...]:
    if sample.target is None:
        raise ValueError(f"sample {sample.id or sample.input[:30]!r}: this scorer needs a "
                         "'target'")
    return sample.target


def exact_match(strip: str = " .\n") -> Scorer:
    """1.0 when the output equals the target, ignoring ``strip`` characters at the ends of
    text (token ids must match exactly)."""

    def score(sample: Sample, output: dict[str, Any]) -> float:
        target = _target(sample)
        if isinstance(target, tuple):
            return float(list(output["output"]) == list(target))
        return float(output["output"].strip(strip) == target.strip(strip))

    return score


def choice_match(normalized: bool = False) -> Scorer:
    """1.0 when the solver's pick (``acc``; ``acc_norm`` when ``normalized``) is the target."""
    key = "output_norm" if normalized else "output"

    def score(sample: Sample, output: dict[str, Any]) -> float:
        return float(output[key] == _target(sample))

    return score


def judged(judge: Callable[[str], float]) -> Scorer:
    """The judge's number for the output text, e.g. a classifier's probability that a reply
    is hostile, or `gptscope.data.stories.classify_sentiment`."""

    def score(sample: Sample, output: dict[str, Any]) -> float:
        return judge(output["output"])

    return score
