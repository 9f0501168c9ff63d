"""Lesson 13b: from base model to assistant: SFT, reward models, RLHF, DPO.

A base model continues text; an assistant answers. The usual recipe has three steps:
supervised fine-tuning (SFT) on example conversations, a reward model trained on
comparisons ("this answer is better than that one"), and reinforcement learning (PPO)
against that reward, kept close to the SFT model by a KL penalty. DPO skips the reward
model and the sampling and learns from the comparisons directly. Each exercise below is one
of the losses these steps minimise.

Conventions shared by every exercise:

- token log-probs are the log-probabilities of the tokens that were actually given or
  sampled, one per position: ``[batch, pos]``;
- a mask ``[batch, pos]`` is a bool tensor, True at the positions that count (the
  response) and False at the prompt and the padding;
- a sequence log-prob is the sum of one row's masked token log-probs: ``[batch]``;
- "the mean over tokens" is one mean over all masked tokens of the batch together, so a
  long response weighs more than a short one;
- return tensors, not Python floats: a loss must keep its gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_sft_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Supervised fine-tuning loss: the mean cross-entropy over the response tokens only.

    logits [batch, pos, d_vocab] are the model's outputs and targets [batch, pos] (int64)
    the tokens they should predict. The targets are already shifted: logits[:, t] predicts
    targets[:, t], so do not shift them again. mask [batch, pos] is True where the target
    is a response token. The prompt is context the assistant reads, not text it should
    learn to write, so its positions do not count.

    Return a 0-dim tensor: -log softmax(logits)[target], averaged over every masked token
    of the batch together (not row by row); 0 when no position is masked in.
    """
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    weights = mask.to(logp.dtype)
    # Clamping the count at 1 makes an all-False mask give 0 instead of 0 / 0.
    return -(logp * weights).sum() / weights.sum().clamp(min=1)


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """The reward model's loss on comparisons: -log sigmoid(r_chosen - r_rejected).

    chosen, rejected [batch]: the reward model's scores of the preferred response and of
    the other one, for the same prompt. The Bradley-Terry model says the preferred one wins
    with probability sigmoid(r_chosen - r_rejected); the loss is minus the log of that
    probability, averaged over the pairs. Only the difference matters: adding the same
    constant to both rewards changes nothing. Return a 0-dim tensor.

    Hint: ``F.logsigmoid`` computes log sigmoid(x) without overflow.
    """
    return -F.logsigmoid(chosen - rejected).mean()


def normalize_rewards(rewards: Tensor, mean: float | Tensor | None = None,
                      std: float | Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Put rewards on a fixed scale for RL: (rewards - mean) / (std + eps).

    rewards [batch]. ``mean`` and ``std`` are constants measured once, for example on a few
    thousand answers of the starting policy: use them as given (a float or a 0-dim tensor;
    0.0 is a valid mean, not a missing one). Where one is None, take it from ``rewards``
    itself: its mean, or its population std (divide by n, not n - 1:
    ``std(correction=0)``). ``eps`` is added to the std, outside any square root, so a
    batch of equal rewards gives 0 rather than nan. Return a tensor shaped like rewards,
    and leave the caller's ``rewards`` unchanged. You need not validate the arguments.

    Why fixed constants: statistics of each batch would rescale every batch to mean 0 and
    std 1 and hide a reward that rises from step to step.
    """
    mean = rewards.mean() if mean is None else mean
    std = rewards.std(correction=0) if std is None else std
    return (rewards - mean) / (std + eps)


def kl_estimators(logprobs: Tensor, ref_logprobs: Tensor) -> dict[str, Tensor]:
    """Estimate KL(policy || reference) per token, from tokens the policy sampled.

    logprobs, ref_logprobs [batch, pos]: log p (the policy) and log q (the frozen reference)
    of the same sampled tokens. With log_ratio = log q - log p, return a dict of two
    [batch, pos] tensors:

    - ``"k1"`` = -log_ratio: unbiased but noisy, and negative on some tokens;
    - ``"k3"`` = (exp(log_ratio) - 1) - log_ratio: also unbiased, less noisy, never < 0.

    Summed over a response's tokens, either one estimates the KL of that response in nats;
    RLHF subtracts beta times it from the reward. The library's version also returns
    ``"k2"`` = log_ratio**2 / 2 (biased, low variance); you may add it too, and the check
    looks at it only if it is there.
    """
    log_ratio = ref_logprobs - logprobs
    return {"k1": -log_ratio, "k2": log_ratio.square() / 2,
            "k3": torch.expm1(log_ratio) - log_ratio}


def ppo_clip_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                  clip: float = 0.2) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate as a loss to minimise; return (loss, clip_fraction).

    logprobs [batch, pos]: log-probs of the sampled tokens under the policy being trained
    (they carry the gradient). old_logprobs [batch, pos]: the same tokens under the policy
    that sampled them; it is fixed during the update, so no gradient may reach it.
    advantages: [batch, pos] (one per token) or [batch] (one per response, the same for
    all its tokens). mask [batch, pos]: True at the response tokens. Per token, with the
    ratio r = exp(logprobs - old_logprobs):

        loss_t = -min(r * A, clip(r, 1 - clip, 1 + clip) * A)

    loss: loss_t averaged over the masked tokens (0-dim). clip_fraction (0-dim tensor): the
    share of masked tokens whose ratio lies outside [1 - clip, 1 + clip], whatever the
    sign of their advantage; a high value says the update moved the policy too far.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    ratio = (logprobs - old_logprobs.detach()).exp()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)
    weights = mask.to(ratio.dtype)
    count = weights.sum().clamp(min=1)
    outside = ((ratio - 1).abs() > clip).to(ratio.dtype).detach()
    return -(surrogate * weights).sum() / count, (outside * weights).sum() / count


def dpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, beta: float = 0.1,
             kind: str = "sigmoid") -> tuple[Tensor, Tensor, Tensor]:
    """Direct preference optimisation; return (loss, chosen_reward, rejected_reward).

    The four inputs are [batch] sequence log-probs (sums over the response tokens): of the
    chosen and the rejected response under the policy being trained, and under the frozen
    reference (no gradient may reach those two). With

        h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)

    the loss, averaged over the pairs, is

    - ``kind="sigmoid"`` (DPO): -log sigmoid(beta * h);
    - ``kind="ipo"`` (IPO): (h - 1 / (2 * beta))**2, which stops pushing once the margin
      reaches 1 / (2 beta) instead of driving it ever higher.

    chosen_reward = beta * (chosen_logps - ref_chosen_logps) and rejected_reward = beta *
    (rejected_logps - ref_rejected_logps), both [batch] and detached: they are for logging.
    You need not validate ``beta`` or ``kind``.
    """
    chosen = chosen_logps - ref_chosen_logps.detach()
    rejected = rejected_logps - ref_rejected_logps.detach()
    h = chosen - rejected
    if kind == "ipo":
        loss = (h - 1 / (2 * beta)).square().mean()
    else:
        loss = -F.logsigmoid(beta * h).mean()
    return loss, (beta * chosen).detach(), (beta * rejected).detach()


def explore_preferences(steps: int = 300, beta: float = 0.5, seed: int = 0
                        ) -> dict[str, float]:
    """Given: train a toy policy on comparisons with *your* ``dpo_loss``, then measure how
    far it moved from the reference with *your* ``kl_estimators``.

    The policy answers one prompt with one of four answers (four logits); the reference is
    where it starts, uniform. Every comparison prefers answer 0 to one of the others. DPO
    keeps widening the margin h; IPO settles near 1 / (2 beta). Then 4000 answers sampled
    from each trained policy give k1 and k3 estimates of KL(policy || reference), printed
    next to the exact value. After IPO's small step both are close; DPO's policy has moved
    far, and k3 falls short: its large terms come from answers the policy almost never
    samples. Returns the margins and KLs.
    """
    g = torch.Generator().manual_seed(seed)
    ref_logp = torch.zeros(4).log_softmax(-1)
    winners, losers = torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3])
    found: dict[str, float] = {"ipo_target": 1 / (2 * beta)}
    for kind in ("sigmoid", "ipo"):
        logits = torch.zeros(4, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=0.05)
        for _ in range(steps):
            logp = logits.log_softmax(-1)
            loss, _, _ = dpo_loss(logp[winners], logp[losers], ref_logp[winners],
                                  ref_logp[losers], beta, kind)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        logp = logits.detach().log_softmax(-1)
        margin = ((logp[winners] - ref_logp[winners]) - (logp[losers] - ref_logp[losers]))
        samples = torch.multinomial(logp.exp(), 4000, replacement=True, generator=g)
        estimates = kl_estimators(logp[samples][None], ref_logp[samples][None])
        exact = float((logp.exp() * (logp - ref_logp)).sum())
        name = "dpo" if kind == "sigmoid" else "ipo"
        found.update({f"{name}_margin": float(margin.mean()), f"{name}_kl": exact,
                      f"{name}_k1": float(estimates["k1"].mean()),
                      f"{name}_k3": float(estimates["k3"].mean())})
        print(f"{name}: margin h {found[f'{name}_margin']:.2f}; KL exact {exact:.3f}, "
              f"k1 {found[f'{name}_k1']:.3f}, k3 {found[f'{name}_k3']:.3f}")
    print(f"IPO's target margin 1/(2 beta) = {found['ipo_target']:.2f}")
    return found
