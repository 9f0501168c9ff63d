"""Shared helpers for the training tests.

One torch thread: these models are tiny, and on a busy 2-core machine two threads fighting
for cores make a step many times slower, not faster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]

# A model small enough that a step takes milliseconds; the reverse task on 5 digits.
TINY = ["--task", "reverse", "--task-arg", "n_items=5", "--n-layers", "1", "--d-model", "32",
        "--n-heads", "2", "--n-ctx", "16", "--batch-size", "16", "--lr", "3e-3",
        "--warmup-steps", "5", "--device", "cpu", "--threads", "1", "--no-progress"]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def gptscope(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m gptscope ARGS`` and return the finished process (output captured)."""
    return subprocess.run([sys.executable, "-m", "gptscope", *args], env=env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_args() -> list[str]:
    return list(TINY)
