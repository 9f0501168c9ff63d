"""The losses and estimators of alignment, each one small function with its shapes.

Conventions, shared by every function here:

- log-probabilities are of the tokens that were actually sampled or given, one per
  position: ``logprobs [batch, pos]``; ``mask [batch, pos]`` is True where a position counts
  (response tokens, not the prompt or padding).
- a "sequence log-prob" is the sum of a row's masked token log-probs: ``[batch]``.
- means over tokens are over all masked tokens of the batch together (a token mean), as in
  the trainer's loss, so long and short completions weigh by their tokens.

``ppo_clip_loss`` and ``kl_estimators`` follow Schulman et al. 2017 and Schulman's note
"Approximating KL divergence" (2020); ``dpo_loss`` Rafailov et al. 2023 (DPO) and Azar et
al. 2023 (IPO); ``bradley_terry_loss`` the reward-model loss of Ouyang et al. 2022.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
        raise ValueError(f"these tensors must have one shape, got {listed}")


def _upcast(x: Tensor) -> Tensor:
    """float32 for half-precision inputs; float32 and float64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is True (0 when nothing is masked in)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(targets) under ``logits``: logits [batch, pos, d_vocab], targets [batch, pos]
    -> [batch, pos] (float32 at least: bf16/fp16 logits are upcast, float64 stays)."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {list(logits.shape)} must be [*targets.shape, d_vocab] for "
                         f"targets {list(targets.shape)}; pass the logits of the positions "
                         "that predict the targets")
    logp = _upcast(logits).log_softmax(-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def masked_sft_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Supervised fine-tuning loss: mean cross-entropy over the response tokens only.

    logits [batch, pos, d_vocab] predict targets [batch, pos] (the inputs shifted by one);
    mask [batch, pos] is True at positions whose target is a response token. Prompt tokens
    are context, not something the assistant should learn to say.
    """
    _check_same_shape(targets=targets, mask=mask)
    return masked_mean(-token_logprobs(logits, targets), mask)


def sequence_logprobs(logprobs: Tensor, mask: Tensor) -> Tensor:
    """[batch, pos] token log-probs -> [batch] sums over the masked positions."""
    _check_same_shape(logprobs=logprobs, mask=mask)
    return (logprobs * mask.to(logprobs.dtype)).sum(-1)


def reward_label_loss(rewards: Tensor, labels: Tensor) -> Tensor:
    """Absolute-label reward loss: binary cross-entropy of sigmoid(reward) against soft
    labels in [0, 1] (1 positive, 0 negative, 0.5 neutral), mean over the batch.

    rewards [batch] are the head's logits at each sequence's last token, so the reward model
    reads log p(positive) = logsigmoid(reward).
    """
    _check_same_shape(rewards=rewards, labels=labels)
    if labels.numel() and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(f"labels must lie in [0, 1] (1 positive, 0 negative, 0.5 neutral), "
                         f"got values from {float(labels.min())} to {float(labels.max())}")
    rewards = _upcast(rewards)
    return F.binary_cross_entropy_with_logits(rewards, labels.to(rewards.dtype))


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Pairwise reward loss: -log sigmoid(r_chosen - r_rejected), mean over pairs.

    chosen, rejected [batch]: the reward of the preferred and of the other completion. Under
    the Bradley-Terry model P(chosen beats rejected) = sigmoid(r_chosen - r_rejected).
    """
    _check_same_shape(chosen=chosen, rejected=rejected)
    return -F.logsigmoid(_upcast(chosen) - _upcast(rejected)).mean()


def pairwise_accuracy(chosen: Tensor, rejected: Tensor) -> float:
    """Fraction of pairs whose chosen reward is strictly higher (ties count as wrong)."""
    _check_same_shape(chosen=chosen, rejected=rejected)
    return float((chosen > rejected).float().mean()) if chosen.numel() else float("nan")


def normalize_rewards(rewards: Tensor, mean: float | Tensor | None = None,
                      std: float | Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """(rewards - mean) / (std + eps).

    ``mean`` and ``std`` are the constants measured once on a few thousand samples of the
    starting policy (the curriculum's recipe); None takes them from ``rewards`` itself (the
    population std, correction 0). Fixed constants keep the advantage's scale comparable from
    step to step; per-batch statistics would hide a rising reward.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    rewards = _upcast(rewards)
    mean = rewards.mean() if mean is None else mean
    std = rewards.std(correction=0) if std is None else std
    if bool((torch.as_tensor(std) < 0).any()):
        raise ValueError(f"std must be >= 0, got {std}")
    return (rewards - mean) / (std + eps)


def ppo_clip_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                  clip: float = 0.2) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate, as a loss to minimise; returns (loss, clip_fraction).

    logprobs [batch, pos] of the sampled tokens under the policy being trained (with
    gradient); old_logprobs [batch, pos] under the policy that sampled them (no gradient);
    advantages [batch, pos], or [batch] for one advantage per completion (broadcast over its
    tokens; constants: no gradient flows into them); mask [batch, pos] marks the completion
    tokens. Per token, with ratio r = exp(logprobs - old_logprobs):

        loss_t = -min(r * A, clip(r, 1 - clip, 1 + clip) * A)

    averaged over the masked tokens. clip_fraction: the share of masked tokens whose ratio
    lies outside [1 - clip, 1 + clip] (too high means too large a step).
    """
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}; PPO's usual value is 0.2")
    _check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    _check_same_shape(logprobs=logprobs, advantages=advantages)
    advantages = advantages.detach()  # constants of the rollout, never trained through
    ratio = (logprobs - old_logprobs.detach()).exp()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    outside = ((ratio - 1).abs() > clip).to(ratio.dtype)
    return masked_mean(-surrogate, mask), masked_mean(outside.detach(), mask)


def kl_estimators(logprobs: Tensor, ref_logprobs: Tensor) -> dict[str, Tensor]:
    """Per-token estimators of KL(policy || reference) from tokens sampled by the policy.

    logprobs, ref_logprobs [batch, pos]: log p and log q of the same sampled tokens. With
    log_ratio = log q - log p:

    - ``k1`` = -log_ratio: unbiased, high variance, can be negative per token;
    - ``k2`` = log_ratio**2 / 2: biased, low variance, >= 0;
    - ``k3`` = (exp(log_ratio) - 1) - log_ratio: unbiased, low variance, >= 0.

    Sum them over a completion's tokens for KL per completion (in nats). The estimates
    carry the inputs' gradients: detach them to use KL as a reward penalty, keep them to
    use it as a loss term.
    """
    _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    log_ratio = _upcast(ref_logprobs) - _upcast(logprobs)
    return {"k1": -log_ratio, "k2": log_ratio.square() / 2,
            "k3": torch.expm1(log_ratio) - log_ratio}


def entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of each position's next-token distribution: [..., d_vocab] -> [...]."""
    logp = _upcast(logits).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


DPO_KINDS = ("sigmoid", "ipo")


def dpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, beta: float = 0.1,
             kind: str = "sigmoid") -> tuple[Tensor, Tensor, Tensor]:
    """Direct preference optimisation from sequence log-probs; returns (loss, chosen_reward,
    rejected_reward).

    All four inputs are [batch] sums of completion-token log-probs, of the policy and of the
    frozen reference. The implicit rewards are beta * (policy - reference) per completion and
    h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps):

    - ``kind="sigmoid"`` (DPO): loss = -log sigmoid(beta * h);
    - ``kind="ipo"`` (IPO): loss = (h - 1 / (2 * beta))**2, which stops pushing once the
      margin reaches 1 / (2 beta) instead of driving it to infinity.

    Mean over pairs. The rewards are returned detached, for logging. The log-probs are
    sums over each completion's tokens (as in the DPO paper), so IPO's target margin
    1 / (2 beta) is in nats per completion, not per token.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}; DPO's usual values are 0.1 to 0.5")
    if kind not in DPO_KINDS:
        raise ValueError(f"kind must be one of {DPO_KINDS}, got {kind!r}")
    _check_same_shape(chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                      ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    chosen = _upcast(chosen_logps) - _upcast(ref_chosen_logps).detach()
    rejected = _upcast(rejected_logps) - _upcast(ref_rejected_logps).detach()
    h = chosen - rejected
    if kind == "sigmoid":
        loss = -F.logsigmoid(beta * h).mean()
    else:
        loss = (h - 1 / (2 * beta)).square().mean()
    return loss, (beta * chosen).detach(), (beta * rejected).detach()


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO's advantages: each reward minus its group's mean, over the group's std.

    rewards [groups, samples_per_group] (the completions of one prompt form a group) ->
    [groups, samples_per_group]. A group whose rewards are all equal gets advantage 0: it
    holds nothing to learn from.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [groups, samples_per_group], got shape "
                         f"{list(rewards.shape)}")
    rewards = rewards.float()
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, correction=0, keepdim=True) + eps)
