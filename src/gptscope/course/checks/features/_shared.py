"""What the checks of lessons 10-12 share: reading a number from an answer, and comparing
one number with its variants."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    compare,
)


def number_answer(value: Any, what: str) -> float:
    """``value`` as a finite float if it is one real number (a Python or numpy number, or a
    0-dim tensor); otherwise a Mismatch saying what it is instead."""
    if value is None:
        raise Mismatch(f"{what} is None: did you forget the `return`?")
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise Mismatch(f"{what} is a tensor of shape {list(value.shape)}; return one "
                           "number (.item() turns a 0-dim tensor into a float)")
        if value.dtype == torch.bool or value.is_complex():
            raise Mismatch(f"{what} is a {value.dtype} tensor; return a real number")
        value = value.detach().item()
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Mismatch(f"{what} is a {type(value).__name__} ({value!r:.40}), not a number")
    number = float(value)
    if not math.isfinite(number):
        raise Mismatch(f"{what} is {number}: it should be a finite number (a division by "
                       "zero, or a log of 0?)")
    return number


def compare_number(got: float, want: float | Tensor, case: str, variants: Variants, what: str,
                   atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """``compare`` for one number: a Mismatch naming the variant it equals, if any."""
    compare(torch.tensor(got, dtype=torch.float64),
            torch.as_tensor(want, dtype=torch.float64).detach(), case, variants, what,
            atol=atol, rtol=rtol)
