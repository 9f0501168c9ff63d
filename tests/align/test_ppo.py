"""PPO: rollouts, a zero-lr run that leaves the policy as it was, exact resume after
SIGKILL, the KL budget, and the errors the issue names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gptscope.align.ppo import KL_DIR, run_ppo
from gptscope.align.ppo_config import PPOConfig
from gptscope.align.rollout import completion_mask, sample_rollout
from gptscope.cli import main
from gptscope.io.checkpoint import load
from gptscope.train.checkpoint import list_checkpoints
from gptscope.train.runs import open_run, read_metrics

SMALL = {"rollout_size": 16, "norm_samples": 32, "max_new_tokens": 40}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load(folder).state_dict()


def test_completion_mask_keeps_tokens_up_to_the_first_stop() -> None:
    new = torch.tensor([[5, 1, 9, 1], [5, 5, 5, 5], [9, 9, 1, 1]])
    assert completion_mask(new, [9]).tolist() == [
        [True, True, True, False], [True] * 4, [True, False, False, False]]
    assert completion_mask(new, []).all()


def test_a_rollout_repeats_from_the_same_generator_state(stories_base) -> None:
    model, _ = open_run(stories_base)
    stop = model.tokenizer.encode(".")
    a = sample_rollout(model, "\n", 8, 30, torch.Generator().manual_seed(3), stop)
    b = sample_rollout(model, "\n", 8, 30, torch.Generator().manual_seed(3), stop)
    assert torch.equal(a.tokens, b.tokens) and a.texts == b.texts
    assert a.mask.shape == (8, a.tokens.shape[1] - 1)
    assert not a.mask[:, 0].logical_and(torch.tensor(a.prompt_len > 1)).any()
    for text in a.texts:  # each completion ends at its first full stop, if it has one
        assert "." not in text[:-1]


def test_zero_learning_rate_leaves_the_policy_and_reports_zero_kl(stories_base, sentence_rm,
                                                                  tmp_path) -> None:
    out = tmp_path / "ppo0"
    with pytest.warns(UserWarning, match="clip fraction 0.0% .* probably too low"):
        run_ppo(stories_base, sentence_rm[0], out, PPOConfig(**SMALL), lr=0.0, max_steps=8,
                batch_size=8, threads=1, progress=False)
    before, after = _weights(stories_base), _weights(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    records = [r for r in read_metrics(out) if "kl_k1" in r]
    assert records and all(r["kl_k1"] == 0.0 and r["kl_k3"] == 0.0 for r in records)
    assert all(r["clip_fraction"] == 0.0 and r["approx_kl_old"] == 0.0 for r in records)


def test_the_run_stops_at_its_kl_budget_and_keeps_milestones(stories_base, sentence_rm,
                                                             tmp_path) -> None:
    out = tmp_path / "ppo_budget"
    cfg = PPOConfig(**SMALL, kl_budget=0.5, kl_milestones=(0.1, 0.5, 1e6))
    with pytest.warns(UserWarning, match="clip fraction .* probably too high"):
        result = run_ppo(stories_base, sentence_rm[0], out, cfg, lr=1e-3, max_steps=400,
                         batch_size=8, threads=1, progress=False)
    assert result.step < 400
    _, weights = open_run(out)
    assert weights.finished and weights.step == result.step  # the run ended there
    records = read_metrics(out)
    assert records[-1]["event"] == "stopped early by the data"
    *before, last = [r for r in records if "kl_k1" in r]
    assert last["kl_k1"] >= 0.5 and all(r["kl_k1"] < 0.5 for r in before)
    assert "the last rollout within it" in records[-1]["reason"]
    kept = sorted(p.name for p in (out / KL_DIR).iterdir())
    assert kept == ["kl_0.1", "kl_0.5", "within_budget"]  # 1e6 nats was never reached
    # the run ends with the policy of the last rollout within the budget
    within = load(out / KL_DIR / "within_budget").state_dict()
    final = load(out).state_dict()
    assert all(torch.equal(within[k], final[k]) for k in final)
    stats = json.loads((out / KL_DIR / "kl_0.5" / "rollout.json").read_text())
    assert stats["kl_k1"] >= 0.5


def _ppo_cli(policy: Path, rm: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gptscope", "align", "ppo", str(policy), "--reward",
            str(rm), "--out", str(out), "--rollout-size", "16", "--max-new-tokens", "40",
            "--batch-size", "8", "--lr", "3e-4", "--max-steps", "24", "--ckpt-every", "4",
            "--log-every", "4", "--eval-every", "0", "--threads", "1", "--no-progress", *extra]


def test_sigkill_then_resume_matches_the_uninterrupted_run(stories_base, sentence_rm,
                                                           tmp_path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(_ppo_cli(stories_base, sentence_rm[0], straight), check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(_ppo_cli(stories_base, sentence_rm[0], killed), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list_checkpoints(killed):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert list_checkpoints(killed)[-1][0] < 24 and not (killed / "model.safetensors").exists()
    subprocess.run(_ppo_cli(stories_base, sentence_rm[0], killed, "--resume"), check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = _weights(straight), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    strip = ("tokens_per_s", "mfu")
    ra = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(straight)]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(killed)]
    assert ra == rb  # every logged reward, KL and clip fraction repeats


def test_errors_the_issue_names(stories_base, sentence_rm, tmp_path, capsys) -> None:
    rm = sentence_rm[0]
    assert main(["align", "ppo", str(stories_base), "--reward", str(rm), "--out",
                 str(tmp_path / "x"), "--kl-budget", "0"]) == 2
    assert "PPOConfig.kl_budget must be > 0" in capsys.readouterr().err
    # A reward model of another vocabulary: one trained from a base with other characters.
    from gptscope.align.reward import RewardModel, save_reward_model
    from gptscope.config import ModelConfig
    from gptscope.model.transformer import Transformer
    from gptscope.tokenizers import CharTokenizer

    body = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=128, d_vocab=5))
    body.tokenizer = CharTokenizer("\n .ab")
    save_reward_model(RewardModel(body), tmp_path / "other_rm")
    assert main(["align", "ppo", str(stories_base), "--reward", str(tmp_path / "other_rm"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "reads another vocabulary" in capsys.readouterr().err
    # A run without a tokenizer cannot be fine-tuned.
    bare = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, d_vocab=5))
    from gptscope.io.checkpoint import save

    save(bare, tmp_path / "bare")
    assert main(["align", "ppo", str(tmp_path / "bare"), "--reward", str(rm), "--out",
                 str(tmp_path / "z")]) == 2
    assert "has no tokenizer.json" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must be a multiple of the minibatch"):
        run_ppo(stories_base, rm, tmp_path / "w", PPOConfig(rollout_size=10), batch_size=8)


def test_gae_hand_worked() -> None:
    from gptscope.align.value import gae, token_rewards, whiten

    # One row, completion at positions 1..2; gamma 1, lam 0.5, values 1, 2 there.
    mask = torch.tensor([[False, True, True]])
    values = torch.tensor([[9.0, 1.0, 2.0]])  # the prompt's value is ignored
    rewards = torch.tensor([[0.0, 0.0, 3.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # A_2 = 3 - 2 = 1; A_1 = (0 + 2 - 1) + 0.5 * 1 = 1.5
    assert adv.tolist() == [[0.0, 1.5, 1.0]] and ret.tolist() == [[0.0, 2.5, 3.0]]
    r = token_rewards(torch.tensor([2.0]), torch.tensor([[0.0, -1.0, -1.0]]),
                      torch.tensor([[0.0, -2.0, -1.5]]), mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[0.0, -0.1, 2.0 - 0.05]]))
    w = whiten(torch.tensor([[5.0, 1.0, 3.0]]), mask)
    assert torch.allclose(w, torch.tensor([[0.0, -1.0, 1.0]]), atol=1e-6)


def test_value_head_option_trains_a_critic_and_saves_the_policy(stories_base, sentence_rm,
                                                                tmp_path) -> None:
    out = tmp_path / "ppo_v"
    cfg = PPOConfig(**SMALL, value_head=True, kl_coef=0.05)
    run_ppo(stories_base, sentence_rm[0], out, cfg, lr=3e-4, max_steps=8, batch_size=8,
            log_every=4, threads=1, progress=False)
    records = [r for r in read_metrics(out) if "value_loss" in r]
    assert len(records) == 2 and all(r["value_loss"] > 0 for r in records)
    tuned = load(out)  # the folder holds the policy alone, a plain model
    assert set(tuned.state_dict()) == set(load(stories_base).state_dict())
