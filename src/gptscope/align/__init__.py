"""From a base model to an assistant: SFT, reward models, PPO, DPO, GRPO, blind rating, and
a look inside what the tuning changed. Every trainer here is the model trainer
(``gptscope.train``) fed a data object that says how it is trained on; see
docs/alignment.md."""

from gptscope.align.dpo import read_preferences, run_dpo
from gptscope.align.grpo import GRPOConfig, run_grpo
from gptscope.align.inside import compare_models, compare_runs
from gptscope.align.losses import (
    bradley_terry_loss,
    dpo_loss,
    group_advantages,
    kl_estimators,
    masked_sft_loss,
    normalize_rewards,
    ppo_clip_loss,
)
from gptscope.align.measure import policy_stats, sample_texts
from gptscope.align.ppo import run_ppo
from gptscope.align.ppo_config import PPOConfig
from gptscope.align.reward import RewardModel, load_reward_model, train_reward_model
from gptscope.align.sft import fine_tune, instruction_following, respond

__all__ = [
    "GRPOConfig", "PPOConfig", "RewardModel", "bradley_terry_loss", "compare_models",
    "compare_runs", "dpo_loss", "fine_tune", "group_advantages", "instruction_following",
    "kl_estimators", "load_reward_model", "masked_sft_loss", "normalize_rewards",
    "policy_stats", "ppo_clip_loss", "read_preferences", "respond", "run_dpo", "run_grpo",
    "run_ppo", "sample_texts", "train_reward_model",
]
