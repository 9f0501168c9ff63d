"""A small stories model and a reward model on it, shared by the alignment tests.

The base is the stories preset cut to 2 layers of width 64 and 600 steps (about 30 s on one
core); the reward model reads single sentences (what a PPO completion that stops at its
first full stop is) and trains for 300 steps (about 30 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bounds import THREADS, seed

from gptscope.train import Trainer, get_preset

BASE_STEPS = 600


def train_small_stories(out: Path, steps: int = BASE_STEPS, base_seed: int = 1337) -> Path:
    preset = get_preset("stories")
    model = preset.model.replace(n_layers=2, d_model=64)
    cfg = preset.train.replace(max_steps=steps, eval_every=steps, eval_steps=2, log_every=100,
                               seed=seed(base_seed), threads=THREADS, progress=False)
    Trainer(model, cfg, out).fit()
    return out


@pytest.fixture(scope="session")
def stories_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_stories(tmp_path_factory.mktemp("align") / "base")


@pytest.fixture(scope="session")
def sentence_rm(stories_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(run folder, held-out scores) of a labels reward model on single sentences."""
    from gptscope.align.reward import train_reward_model

    out = tmp_path_factory.mktemp("align") / "rm"
    result = train_reward_model(stories_base, out, "labels", n_stories=2000, max_sentences=1,
                                max_steps=300, lr=1e-3, eval_every=300, seed=seed(0),
                                threads=THREADS, progress=False)
    return out, result.last_eval
