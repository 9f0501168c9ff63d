"""The issue's documented result, opt-in (it needs the full stories model, ~7.5 CPU-minutes
to train, and ~20 more minutes here)::

    gptscope train --preset stories --threads 1 --out RUN
    GPTSCOPE_STORIES_RUN=RUN pytest tests/align/test_align_acceptance.py

It trains the default reward model on RUN, then PPO (``--kl-coef 0.1``) and online DPO
(``--rounds 4 --n-pairs 1024 --beta 0.3 --sft-weight 1``), and
measures each final policy on 512 fresh unconditional samples: the judge's positive
fraction and the KL to RUN per completion. docs/alignment.md has the numbers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

RUN = os.environ.get("GPTSCOPE_STORIES_RUN")
pytestmark = pytest.mark.skipif(RUN is None, reason="opt-in: set GPTSCOPE_STORIES_RUN to a "
                                "run of `gptscope train --preset stories`")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from gptscope.align import (
        PPOConfig,
        load_reward_model,
        run_dpo,
        run_ppo,
        train_reward_model,
    )
    from gptscope.align.measure import policy_stats
    from gptscope.align.ppo import stop_ids
    from gptscope.train.runs import open_run

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("acceptance")
    rm_scores = train_reward_model(RUN, out / "rm", threads=1, progress=False).last_eval
    base, _ = open_run(RUN)
    rm = load_reward_model(out / "rm")
    stops = stop_ids(base.tokenizer, (".",))

    def measure(model) -> dict:
        return policy_stats(model, base, rm, 512, stop_ids=stops, seed=99)

    t0 = time.perf_counter()
    ppo = run_ppo(RUN, out / "rm", out / "ppo", PPOConfig(kl_coef=0.1), threads=1,
                  progress=False)
    ppo_seconds = time.perf_counter() - t0
    dpo = run_dpo(RUN, out / "dpo", reward_run=out / "rm", rounds=4, n_pairs=1024, beta=0.3,
                  sft_weight=1.0, threads=1, progress=False)
    return {"rm": rm_scores, "base": measure(base), "ppo": measure(ppo.model),
            "ppo_seconds": ppo_seconds, "dpo": measure(dpo.model), "out": Path(out)}


def test_reward_model_orders_held_out_texts(trained) -> None:
    assert trained["rm"]["val_pairwise_accuracy"] >= 0.90


def test_ppo_makes_samples_positive_within_the_kl_budget(trained) -> None:
    base, ppo = trained["base"], trained["ppo"]
    assert base["judge_positive"] < 0.5  # the base rate is low to begin with
    assert ppo["judge_positive"] >= 0.90
    assert ppo["kl_k1"] <= 10.0
    assert trained["ppo_seconds"] <= 600


def test_dpo_reaches_80_percent_at_a_lower_kl(trained) -> None:
    dpo, ppo = trained["dpo"], trained["ppo"]
    assert dpo["judge_positive"] >= 0.80
    assert dpo["kl_k1"] < ppo["kl_k1"]
