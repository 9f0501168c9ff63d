"""PPOConfig: every choice of an RLHF run with PPO that the trainer's config does not hold."""

from __future__ import annotations

from dataclasses import dataclass

from gptscope.utils.fields import JSONConfig, checked, validate_fields

REWARD_TRANSFORMS = ("logsigmoid", "raw")
KL_MILESTONES = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass
class PPOConfig(JSONConfig):
    """The curriculum's simple PPO by default: the reward model's log p(positive)
    (``reward="logsigmoid"``; "raw" uses its score as is, for a pairwise model), recentred
    and scaled by constants measured once on ``norm_samples`` completions of the starting
    policy, is the advantage of every token of its completion; no value function.

    Each rollout samples ``rollout_size`` completions of ``prompt`` (up to
    ``max_new_tokens``, ending at the first ``stop`` string, which must be one token); the
    policy then takes ``ppo_epochs`` passes over it in minibatches of the trainer's batch
    size. ``kl_coef`` > 0 subtracts that many times each completion's KL to the starting
    model from its reward (0: KL is only watched). The run stops at the first rollout whose
    mean KL per completion reaches ``kl_budget`` nats, and keeps the policy at each of
    ``kl_milestones`` it passes on the way (``kl_checkpoints/kl_<x>``).

    ``value_head=True`` is the full form instead: per-token rewards (the KL penalty at
    each token, the score at the last), a value head trained with weight ``vf_coef``, and
    GAE advantages with ``gamma`` and ``lam`` (see ``gptscope.align.value``).
    """

    prompt: str = "\n"
    max_new_tokens: int = checked(64, ge=1)
    stop: tuple[str, ...] = (".",)
    rollout_size: int = checked(64, ge=1)
    ppo_epochs: int = checked(2, ge=1)
    clip: float = checked(0.2, gt=0, lt=1)
    kl_budget: float = checked(10.0, gt=0, hint="a KL budget is nats per completion, > 0; "
                                                "10 is the default")
    kl_milestones: tuple[float, ...] = checked(KL_MILESTONES, gt=0)
    kl_coef: float = checked(0.0, ge=0)
    reward: str = checked("logsigmoid", choices=REWARD_TRANSFORMS)
    norm_samples: int = checked(1024, ge=2)
    temperature: float = checked(1.0, gt=0)
    value_head: bool = False
    gamma: float = checked(1.0, ge=0, le=1)
    lam: float = checked(0.95, ge=0, le=1)
    vf_coef: float = checked(0.1, ge=0)

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)  # JSON gives a list
        self.kl_milestones = tuple(float(k) for k in self.kl_milestones)
        validate_fields(self)
