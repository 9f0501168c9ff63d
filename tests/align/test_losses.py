"""The alignment losses against hand-worked values and independent formulations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gptscope.align.losses import (
    bradley_terry_loss,
    dpo_loss,
    entropy,
    group_advantages,
    kl_estimators,
    masked_sft_loss,
    normalize_rewards,
    pairwise_accuracy,
    ppo_clip_loss,
    reward_label_loss,
    sequence_logprobs,
    token_logprobs,
)


def test_masked_sft_loss_equals_cross_entropy_that_ignores_the_prompt() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    targets = torch.randint(11, (3, 7), generator=g)
    mask = torch.rand(3, 7, generator=g) > 0.4
    ignored = targets.masked_fill(~mask, -100)  # torch's own way to leave tokens out
    expected = F.cross_entropy(logits.flatten(0, 1), ignored.flatten(), ignore_index=-100)
    assert masked_sft_loss(logits, targets, mask) == pytest.approx(float(expected), rel=1e-6)


def test_masked_sft_loss_hand_worked() -> None:
    # Two equal logits: every token costs log 2; only the one masked-in token counts.
    logits = torch.zeros(1, 2, 2)
    logits[0, 1] = torch.tensor([0.0, math.log(3.0)])  # p = 1/4, 3/4
    targets = torch.tensor([[0, 1]])
    assert masked_sft_loss(logits, targets, torch.tensor([[False, True]])) == \
        pytest.approx(-math.log(0.75))
    assert masked_sft_loss(logits, targets, torch.tensor([[True, False]])) == \
        pytest.approx(math.log(2))
    assert masked_sft_loss(logits, targets, torch.zeros(1, 2, dtype=torch.bool)) == 0.0


def test_token_and_sequence_logprobs() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.1, 0.9]]]))
    lp = token_logprobs(logits, torch.tensor([[1, 1]]))
    assert torch.allclose(lp, torch.log(torch.tensor([[0.5, 0.9]])))
    assert sequence_logprobs(lp, torch.tensor([[False, True]])) == pytest.approx(math.log(0.9))


def test_bradley_terry_hand_worked_and_against_float64() -> None:
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])) == \
        pytest.approx(math.log(1 + math.exp(-1)))
    g = torch.Generator().manual_seed(1)
    c, r = torch.randn(50, generator=g) * 5, torch.randn(50, generator=g) * 5
    truth = -torch.log(torch.sigmoid(c.double() - r.double())).mean()
    assert bradley_terry_loss(c, r) == pytest.approx(float(truth), rel=1e-5)
    assert pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])) \
        == pytest.approx(1 / 3)  # a tie is not a win


def test_reward_label_loss_soft_labels() -> None:
    rewards = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([0.5, 1.0, 0.0])
    p = torch.sigmoid(rewards.double())
    truth = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert reward_label_loss(rewards, labels) == pytest.approx(float(truth), rel=1e-6)
    with pytest.raises(ValueError, match="labels must lie in"):
        reward_label_loss(rewards, torch.tensor([0.5, 1.5, 0.0]))


def test_ppo_clip_loss_hand_worked() -> None:
    # Ratios 1.5, 0.5, 0.5 with advantages +1, +1, -1 and clip 0.2:
    # -min(1.5, 1.2) = -1.2; -min(0.5, 0.8) = -0.5; -min(-0.5, -0.8) = 0.8.
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, clipped = ppo_clip_loss(new, old, adv, torch.ones(1, 3, dtype=torch.bool), 0.2)
    assert loss == pytest.approx((-1.2 - 0.5 + 0.8) / 3)
    assert clipped == pytest.approx(1.0)  # every ratio lies outside [0.8, 1.2]
    # Masked positions do not count; a per-completion advantage broadcasts over tokens.
    loss, clipped = ppo_clip_loss(new, old, torch.tensor([1.0]),
                                  torch.tensor([[True, True, False]]), 0.6)
    assert loss == pytest.approx((-1.5 - 0.5) / 2)
    assert clipped == 0.0


def test_ppo_clip_loss_gradient_is_the_policy_gradient_at_ratio_one() -> None:
    """At the rollout's own policy (ratio 1) the clipped objective's gradient is the
    vanilla policy gradient: -A * d log p."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -3.0]])
    loss, clipped = ppo_clip_loss(logp, logp.detach(), adv, torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    assert torch.allclose(logp.grad, -adv / 2)
    assert clipped == 0.0


def test_kl_estimators_hand_worked_and_unbiased() -> None:
    kl = kl_estimators(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])))
    assert kl["k1"].item() == pytest.approx(math.log(2))
    assert kl["k2"].item() == pytest.approx(math.log(2) ** 2 / 2)
    assert kl["k3"].item() == pytest.approx(-0.5 + math.log(2))
    # Sampling from p, k1 and k3 average to the exact KL(p || q).
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())
    draws = torch.multinomial(p, 200_000, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    est = kl_estimators(p.log()[draws], q.log()[draws])
    assert est["k1"].mean().item() == pytest.approx(exact, abs=0.01)
    assert est["k3"].mean().item() == pytest.approx(exact, abs=0.01)
    assert (est["k3"] >= 0).all() and (est["k1"] < 0).any()  # k3 never negative, k1 can be


def test_dpo_loss_hand_worked_and_as_trl_writes_it() -> None:
    one = torch.tensor([1.0])
    zero = torch.tensor([0.0])
    loss, chosen, rejected = dpo_loss(one, zero, zero, zero, beta=0.5)
    assert loss == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == 0.0
    loss, _, _ = dpo_loss(one, zero, zero, zero, beta=0.5, kind="ipo")
    assert loss.item() == pytest.approx(0.0)  # the margin is exactly 1 / (2 beta)
    g = torch.Generator().manual_seed(2)
    pc, pr, rc, rr = (torch.randn(16, generator=g) * 3 for _ in range(4))
    logits = (pc - pr) - (rc - rr)  # policy log-ratio minus reference log-ratio
    assert dpo_loss(pc, pr, rc, rr, beta=0.1)[0] == pytest.approx(
        float(-F.logsigmoid(0.1 * logits).mean()), rel=1e-6)
    assert dpo_loss(pc, pr, rc, rr, beta=0.1, kind="ipo")[0] == pytest.approx(
        float(((logits - 5.0) ** 2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)


def test_normalize_rewards() -> None:
    r = torch.tensor([1.0, 2.0, 3.0, 6.0])
    z = normalize_rewards(r)
    assert z.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert z.std(correction=0).item() == pytest.approx(1.0, abs=1e-6)
    # Fixed constants from elsewhere are used as given, not the batch's own.
    assert torch.allclose(normalize_rewards(r, mean=2.0, std=4.0, eps=0.0),
                          torch.tensor([-0.25, 0.0, 0.25, 1.0]))


def test_group_advantages_and_entropy() -> None:
    adv = group_advantages(torch.tensor([[1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))
    assert entropy(torch.zeros(2, 4)).tolist() == pytest.approx([math.log(4)] * 2)


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="chosen \\[2\\], rejected \\[3\\]"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"logits \[2, 6, 5\] must be \[\*targets.shape"):
        masked_sft_loss(torch.zeros(2, 6, 5), torch.zeros(2, 4, dtype=torch.long),
                        torch.ones(2, 4, dtype=torch.bool))


def test_advantages_are_constants_and_float64_stays_float64() -> None:
    logp = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    adv = torch.ones(1, 2, dtype=torch.float64, requires_grad=True)
    loss, _ = ppo_clip_loss(logp, logp.detach(), adv, torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    assert adv.grad is None and loss.dtype == torch.float64
    assert bradley_terry_loss(torch.zeros(2, dtype=torch.float64),
                              torch.zeros(2, dtype=torch.float64)).dtype == torch.float64
