"""Shared helpers for the training tests.

One torch thread (GPTSCOPE_TEST_THREADS overrides, as in tests/conftest.py): these models
are tiny, and on a busy 2-core machine two threads fighting for cores make a step many
times slower, not faster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from bounds import THREADS

from gptscope import ModelConfig
from gptscope.cli import main
from gptscope.train import DataSpec, TrainConfig

torch.set_num_threads(THREADS)

ROOT = Path(__file__).resolve().parents[2]

# A model small enough that a step takes milliseconds; the reverse task on 5 digits.
TINY = ["--task", "reverse", "--task-arg", "n_items=5", "--n-layers", "1", "--d-model", "32",
        "--n-heads", "2", "--n-ctx", "16", "--batch-size", "16", "--lr", "3e-3",
        "--warmup-steps", "5", "--device", "cpu", "--threads", str(THREADS), "--no-progress"]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def gptscope(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m gptscope ARGS`` and return the finished process (output captured)."""
    return subprocess.run([sys.executable, "-m", "gptscope", *args], env=env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_args() -> list[str]:
    return list(TINY)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/model.safetensors``."""
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# The same run through the library: the reverse task on 5 digits, 1 layer, 32 wide.
TINY_MODEL = ModelConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=16)


def tiny_config(**changes) -> TrainConfig:
    base = dict(data=DataSpec(task="reverse", task_kwargs={"n_items": 5}), batch_size=16,
                lr=3e-3, warmup_steps=5, max_steps=30, ckpt_every=10, eval_every=0,
                keep_last=3, device="cpu", progress=False)
    return TrainConfig(**{**base, **changes})


@pytest.fixture
def cli(capsys):
    """Run the CLI in this process (a fresh interpreter costs seconds of torch import);
    returns returncode/stdout/stderr like subprocess.run."""
    def run(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run
