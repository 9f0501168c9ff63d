"""DPO: preference files, completion-only masks, the reference's log-probs, a zero-lr run
whose loss is log 2, pairs ranked by a reward model, resume refusing a changed beta, and
online DPO's rounds (fresh pairs each round, exact resume)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from gptscope.align.dpo import (
    DPOData,
    completion_logprobs,
    encode_pairs,
    rank_samples,
    read_preferences,
    run_dpo,
)
from gptscope.align.losses import dpo_loss
from gptscope.align.reward import load_reward_model
from gptscope.config import ModelConfig
from gptscope.io.checkpoint import load
from gptscope.model.transformer import Transformer
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


def _tiny_policy() -> Transformer:
    tok = CharTokenizer.train("abcd\n.")
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=tok.vocab_size, n_ctx=16,
                      seed=0)
    model = Transformer(cfg, dtype=torch.float64)
    model.tokenizer = tok
    return model


def test_completion_logprobs_equal_the_full_logits_gathered() -> None:
    # Unembedding only the completion's positions must give what the full logits give:
    # log_softmax over every position, the next token gathered, summed under the mask.
    model = _tiny_policy()
    enc = encode_pairs(model.tokenizer, [("\nab", "c.", "dd."), ("\n", "a", "b"),
                                         ("\nd", "abca.", "b.")])
    full = model(enc.chosen[:, :-1]).log_softmax(-1)  # [n, pos - 1, d_vocab]
    want = (full.gather(-1, enc.chosen[:, 1:, None])[..., 0] * enc.chosen_mask).sum(-1)
    torch.testing.assert_close(completion_logprobs(model, enc.chosen, enc.chosen_mask), want)


def test_dpo_loss_of_one_batched_forward_equals_two_separate_ones() -> None:
    # Chosen and rejected go through the model together, padded to one width: the loss
    # and its gradient equal those of two forwards of the full logits.
    model = _tiny_policy()
    pairs = [("\nab", "c.", "dd."), ("\n", "a", "bcd."), ("\nd", "abca.", "b.")]
    data = DPOData(pairs, _tiny_policy(), beta=0.3, val_fraction=0.0, sft_weight=0.5)
    t = data.train
    micro = (t.chosen, t.chosen_mask, t.rejected, t.rejected_mask, t.ref_chosen,
             t.ref_rejected)
    loss = data._loss(model, micro)[0]
    grad = torch.autograd.grad(loss, model.W_U)[0]

    def side(tokens, mask):
        lp = model(tokens[:, :-1]).log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
        return (lp * mask).sum(-1), lp

    (pc, lc), (pr, _) = side(t.chosen, t.chosen_mask), side(t.rejected, t.rejected_mask)
    want = dpo_loss(pc, pr, t.ref_chosen, t.ref_rejected, 0.3, "sigmoid")[0] \
        - 0.5 * (lc * t.chosen_mask).sum() / t.chosen_mask.sum()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(grad, torch.autograd.grad(want, model.W_U)[0])


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
