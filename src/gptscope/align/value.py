"""PPO's optional critic: a value head on the policy, and GAE advantages from it.

With ``PPOConfig(value_head=True)`` the reward is no longer spread over every token as one
advantage. Each completion token gets a reward (minus ``kl_coef`` times its log-ratio to
the starting model; the reward model's normalised score is added at the last token), a
value head on the policy's final residual stream predicts the return from each position,
and generalised advantage estimation (Schulman et al. 2016) turns rewards and values into
per-token advantages, whitened over the rollout. The value loss is clipped like the
policy's ratio (as in OpenAI's summarisation PPO and TRL).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gptscope.align.losses import masked_mean
from gptscope.align.reward import scalar_head


class PolicyWithValue(nn.Module):
    """The policy (a `Transformer`) and a scalar value head on its final residual stream,
    trained together; the head starts at zero."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.value = scalar_head(policy)

    cfg = property(lambda self: self.policy.cfg)
    tokenizer = property(lambda self: self.policy.tokenizer)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens [batch, pos] -> (logits [batch, pos, d_vocab], values [batch, pos])."""
        resid = self.policy(tokens, stop_at_layer=self.cfg.n_layers)
        final = self.policy.final_norm(resid)
        return self.policy.unembed(final), self.value(final).squeeze(-1)


def token_rewards(scores: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor,
                  kl_coef: float) -> Tensor:
    """Per-token rewards [batch, pos]: -kl_coef * (logp - ref_logp) at completion tokens,
    plus each completion's score [batch] at its last token."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = mask.long().cumsum(-1).argmax(-1)  # position of each row's last masked token
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[Tensor, Tensor]:
    """Advantages and returns [batch, pos] over the masked (completion) positions.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with
    V and A taken as 0 past a row's last completion token; returns = A + V.
    """
    m = mask.to(values.dtype)
    values = values * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        following = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * following - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, advantages + values


def whiten(values: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(values - mean) / std over the masked positions; unmasked positions become 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean).square(), mask)
    return (values - mean) / (var.sqrt() + eps) * mask


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
               clip: float) -> Tensor:
    """0.5 * max((V - R)^2, (clip(V, V_old -/+ clip) - R)^2), mean over masked tokens."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    worst = torch.maximum((values - returns).square(), (clipped - returns).square())
    return 0.5 * masked_mean(worst, mask)


def save_policy(model: Any, folder: Any, step: int | None = None) -> Any:
    """Save the policy alone (what `gs.load` opens); the value head is PPO's own."""
    from gptscope.io.checkpoint import save

    return save(model.policy if isinstance(model, PolicyWithValue) else model, folder,
                step=step)
