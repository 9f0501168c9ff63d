"""No exception ever escapes `check`: any return value gets a failed CheckResult."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.course import check
from gptscope.course.checks import CHECKS

# What a learner's function may come back with: nothing, numbers, strings, containers,
# tensors of every wrong kind, a function, an object the checker has never seen.
WRONG_RETURNS = {
    "None": None,
    "float": 1.0,
    "nan": math.nan,
    "int": 3,
    "bool": True,
    "str": "x",
    "list": [1, 2],
    "nested list": [[True, False], [False, True]],
    "tuple": (1, 2),
    "empty tuple": (),
    "dict": {"a": 1},
    "empty tensor": torch.zeros(0),
    "scalar tensor": torch.tensor(0.5),
    "nan tensor": torch.full((2, 3), math.nan),
    "int tensor": torch.tensor([1, 2, 3]),
    "bool tensor": torch.ones(2, 2, dtype=torch.bool),
    "4-d tensor": torch.zeros(2, 3, 4, 5),
    "complex tensor": torch.zeros(2, dtype=torch.complex64),
    "function": lambda *a, **k: None,
    "object": object(),
}


@pytest.mark.parametrize("exercise", sorted(CHECKS))
def test_check_never_raises_and_never_passes_a_wrong_kind_of_answer(exercise):
    for name, value in WRONG_RETURNS.items():
        def answer(*args, _value=value, **kwargs):
            return _value

        result = check(exercise, answer)
        assert not result.passed, f"{exercise} passed an answer returning {name}"
        assert result.message, f"{exercise}: empty message for {name}"
        assert "Traceback" not in result.message
