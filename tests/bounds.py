"""Bounds on learned behaviour that hold on any CPU, and the knobs that prove it.

A trained model's numbers move with the CPU (torch picks kernels by vector unit, so
rounding differs), the thread count and the seed. A test of learned behaviour therefore
states each bound with `check`, names the quantity, and takes its seeds from `seed`, so
``scripts/check_robustness.py`` can rerun it under every combination and print each
quantity's spread next to its bound (see tests/README.md).

Environment:

- ``GPTSCOPE_TEST_SEED`` (default 0): shifts every seed these tests train with; 0 is the
  suite's usual run.
- ``GPTSCOPE_TEST_THREADS`` (default 1): torch threads (tests/conftest.py sets them).
- ``GPTSCOPE_RECORD``: a file; each `check` appends ``{"quantity", "value", "op", "bound",
  "test"}`` as a JSON line and does not raise, so one run measures every quantity.

Tests that train and assert learned behaviour carry the ``learned`` marker (``pytest -m
learned``); `make test` runs that subset under ATEN_CPU_CAPABILITY=default.
"""

from __future__ import annotations

import json
import operator
import os

SEED = int(os.environ.get("GPTSCOPE_TEST_SEED", "0"))
THREADS = int(os.environ.get("GPTSCOPE_TEST_THREADS", "1"))
RECORD = os.environ.get("GPTSCOPE_RECORD")

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def seed(base: int = 0) -> int:
    """``base`` for the usual run; a different seed for each GPTSCOPE_TEST_SEED."""
    return base + 1000 * SEED


def check(quantity: str, value: float, op: str, bound: float) -> None:
    """Assert ``value op bound`` for a named learned quantity (e.g. "steering.log_odds_drop").

    With GPTSCOPE_RECORD set, record it instead of failing, so the measurement of the
    remaining quantities goes on.
    """
    value = float(value.detach()) if hasattr(value, "detach") else float(value)
    ok = OPS[op](value, bound)
    if RECORD:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        with open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps({"quantity": quantity, "value": value, "op": op,
                                "bound": bound, "test": test, "ok": ok}) + "\n")
        return
    assert ok, f"{quantity} = {value:.6g}, expected {op} {bound:g}"
