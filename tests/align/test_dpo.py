"""DPO: preference files, completion-only masks, the reference's log-probs, a zero-lr run
whose loss is log 2, pairs ranked by a reward model, resume refusing a changed beta, and
online DPO's rounds (fresh pairs each round, exact resume)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from gptscope.align.dpo import encode_pairs, rank_samples, read_preferences, run_dpo
from gptscope.align.reward import load_reward_model
from gptscope.io.checkpoint import load
from gptscope.tokenizers import CharTokenizer
from gptscope.train.checkpoint import list_checkpoints
from gptscope.train.runs import open_run, read_metrics


def test_read_preferences_names_the_problem(tmp_path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"prompt": "\n", "chosen": "a.", "rejected": "b."}) + "\n")
    assert read_preferences(good) == [("\n", "a.", "b.")]
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="is empty: it holds no records"):
        read_preferences(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(ValueError,
                       match="line 1 needs string fields 'prompt', 'chosen' and 'rejected'"):
        read_preferences(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="does not exist"):
        read_preferences(tmp_path / "missing.jsonl")


def test_masks_cover_the_completions_only() -> None:
    tok = CharTokenizer.train("abcd\n.")
    enc = encode_pairs(tok, [("\nab", "c.", "dd."), ("\n", "a", "b")])
    # targets are tokens[1:]: the completion starts after the prompt
    # (prompt "\nab" is 3 tokens: targets a, b are prompt; c, . are the completion)
    assert enc.chosen_mask.tolist() == [[False, False, True, True], [True, False, False, False]]
    assert enc.rejected_mask.tolist() == [[False, False, True, True, True],
                                          [True, False, False, False, False]]
    with pytest.raises(ValueError, match="empty prompt"):
        encode_pairs(tok, [("", "a", "b")])


def test_zero_lr_dpo_starts_at_log_two_and_leaves_the_policy(stories_base, tmp_path) -> None:
    pairs = [("\n", "the dog loves the cake in the park.", "the dog hates the cake in the park."),
             ("\n", "mary likes the red ball by the river.", "mary fears the red ball by the "
              "river.")] * 8
    out = tmp_path / "dpo0"
    run_dpo(stories_base, out, pairs=pairs, lr=0.0, max_steps=3, batch_size=4, log_every=1,
            threads=1, progress=False)
    losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert losses and all(loss == pytest.approx(math.log(2), abs=1e-6) for loss in losses)
    before, after = load(stories_base).state_dict(), load(out).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pairs_ranked_by_the_reward_model(stories_base, sentence_rm) -> None:
    policy, _ = open_run(stories_base)
    rm = load_reward_model(sentence_rm[0])
    stop = policy.tokenizer.encode(".")
    pairs = rank_samples(policy, rm, 20, max_new_tokens=40, stop_ids=stop, seed=1, group=4)
    assert len(pairs) == 20 and all(p == "\n" for p, _, _ in pairs)
    chosen = rm.score_texts(["\n" + c for _, c, _ in pairs])
    rejected = rm.score_texts(["\n" + r for _, _, r in pairs])
    assert (chosen > rejected).all()
    with pytest.raises(ValueError, match="group must be >= 2"):
        rank_samples(policy, rm, 2, group=1)


def test_resume_refuses_another_beta(stories_base, tmp_path) -> None:
    pairs = [("\n", "the dog loves the cake.", "the dog hates the cake.")] * 8
    out = tmp_path / "dpo"
    run_dpo(stories_base, out, pairs=pairs, max_steps=2, batch_size=4, threads=1,
            progress=False, kind="ipo")
    with pytest.raises(ValueError, match="beta: 0.1 -> 0.3"):
        run_dpo(stories_base, out, pairs=pairs, max_steps=4, batch_size=4, threads=1,
                progress=False, kind="ipo", beta=0.3, resume=True)
    with pytest.raises(ValueError, match="exactly one of them"):
        run_dpo(stories_base, tmp_path / "x")


def _online(stories_base, sentence_rm, out, **kw):
    settings = {"n_pairs": 16, "group": 4, "max_new_tokens": 30, "rounds": 3, "max_steps": 6,
                "batch_size": 4, "ckpt_every": 2, "keep_last": 5, "log_every": 1,
                "eval_every": 100, "threads": 1, "progress": False, "lr": 1e-3}
    return run_dpo(stories_base, out, reward_run=sentence_rm[0], **{**settings, **kw})


def test_online_dpo_ranks_fresh_samples_each_round_and_resumes_exactly(
        stories_base, sentence_rm, tmp_path, capsys) -> None:
    straight = tmp_path / "online"
    _online(stories_base, sentence_rm, straight)
    rounds = straight / "dpo_rounds"
    assert sorted(p.name for p in rounds.iterdir()) == ["round_1.jsonl", "round_2.jsonl"]
    first, second = (read_preferences(rounds / f"round_{k}.jsonl") for k in (1, 2))
    assert len(first) == len(second) == 16 and first != second
    rm = load_reward_model(sentence_rm[0])
    chosen = rm.score_texts(["\n" + c for _, c, _ in second])
    rejected = rm.score_texts(["\n" + r for _, _, r in second])
    assert (chosen > rejected).all()
    assert [r["round"] for r in read_metrics(straight) if "round" in r] == [0, 0, 1, 1, 2, 2]
    # A run killed after step 2, before round 2 existed, resumes to the same weights.
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    (killed / "model.safetensors").unlink()
    for step, folder in list_checkpoints(killed):
        if step > 2:
            shutil.rmtree(folder)
    (killed / "dpo_rounds" / "round_2.jsonl").unlink()
    assert _online(stories_base, sentence_rm, killed, resume=True).step == 6
    assert "resumed from step 2" in capsys.readouterr().err
    assert read_preferences(killed / "dpo_rounds" / "round_2.jsonl") == second
    a, b = load(straight).state_dict(), load(killed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="round_steps: 2 -> 3"):
        _online(stories_base, sentence_rm, killed, resume=True, max_steps=9)
    with pytest.raises(ValueError, match="only with a reward model"):
        run_dpo(stories_base, tmp_path / "x", pairs=first, rounds=2)
