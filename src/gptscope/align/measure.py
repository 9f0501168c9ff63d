"""What a tuned policy's samples look like: the judge's verdict, the reward model's score
and the KL to the starting model, measured the same way for PPO, DPO and any checkpoint."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.align.losses import entropy, kl_estimators, masked_mean
from gptscope.align.rollout import Rollout, sample_rollout, sequence_token_logprobs
from gptscope.data.stories import classify_sentiment


def judge_positive(text: str) -> bool:
    """The stories' exact lexical judge: more positive than negative sentiment words."""
    return classify_sentiment(text) > 0.5


def reward_scores(reward_model: Any, rollout: Rollout, transform: str = "logsigmoid"
                  ) -> Tensor:
    """The reward model's reward per completion [n]: log p(positive) or its raw score."""
    raw = reward_model(rollout.tokens, rollout.lengths).float()
    return F.logsigmoid(raw) if transform == "logsigmoid" else raw


@torch.no_grad()
def rollout_stats(rollout: Rollout, policy_logp: Tensor, ref_logp: Tensor, scores: Tensor,
                  transform: str = "logsigmoid") -> dict[str, float]:
    """Means over a rollout: reward-model score (and p(positive)), judge's positive
    fraction, KL(policy || start) per completion (k1 and k3, nats), completion length."""
    kl = {k: (v * rollout.mask).sum(-1) for k, v in kl_estimators(policy_logp, ref_logp).items()}
    judged = [judge_positive(t) for t in rollout.texts]
    score = [classify_sentiment(t) for t in rollout.texts]  # 0.5 for neutral, as RM labels
    return {"reward_model_score": float(scores.mean()),
            # mean p(positive) of a log p(positive) reward (NaN for raw scores): comparable
            # with the judge's positive fraction, which is what the chart puts beside it
            "reward_model_p": float(scores.exp().mean()) if transform == "logsigmoid"
            else float("nan"),
            "judge_positive": sum(judged) / len(judged),
            "judge_score": sum(score) / len(score),
            "kl_k1": float(kl["k1"].mean()), "kl_k3": float(kl["k3"].mean()),
            "completion_tokens": float(rollout.mask.sum(-1).float().mean())}


@torch.no_grad()
def policy_stats(policy: Any, reference: Any, reward_model: Any, n: int = 256,
                 prompt: str = "\n", max_new_tokens: int = 64, stop_ids: list[int] | None = None,
                 seed: int = 0, transform: str = "logsigmoid") -> dict[str, Any]:
    """`rollout_stats` of ``n`` fresh samples of ``policy`` (seeded), plus the first few
    completions under ``"samples"`` (reward_model None: its score is NaN)."""
    gen = torch.Generator().manual_seed(seed)
    stats: dict[str, list[float]] = {}
    texts: list[str] = []
    for start in range(0, n, 128):
        rollout = sample_rollout(policy, prompt, min(128, n - start), max_new_tokens, gen,
                                 stop_ids)
        logp, _ = sequence_token_logprobs(policy, rollout.tokens)
        ref, _ = sequence_token_logprobs(reference, rollout.tokens)
        scores = reward_scores(reward_model, rollout, transform) if reward_model is not None \
            else torch.full((len(rollout.texts),), float("nan"))
        for k, v in rollout_stats(rollout, logp, ref, scores, transform).items():
            stats.setdefault(k, []).append(v * len(rollout.texts))
        texts += rollout.texts
    return {**{k: sum(v) / n for k, v in stats.items()}, "samples": texts[:8]}


def sample_texts(model: Any, n: int, prompt: str = "\n", max_new_tokens: int = 64,
                 seed: int = 0, stop: tuple[str, ...] = (".",)) -> list[str]:
    """``n`` sampled completions of ``prompt`` (each to its first stop string)."""
    from gptscope.align.ppo import stop_ids

    gen = torch.Generator().manual_seed(seed)
    stops = stop_ids(model.tokenizer, stop) if stop else None
    texts: list[str] = []
    while len(texts) < n:
        texts += sample_rollout(model, prompt, min(128, n - len(texts)), max_new_tokens, gen,
                                stops).texts
    return texts


@torch.no_grad()
def record_update(stats: dict[str, list[float]], logp: Tensor, old_logp: Tensor,
                  logits: Tensor, mask: Tensor, clip_fraction: Tensor) -> None:
    """Append one policy update's clip fraction, approximate KL to the rollout's policy
    (k3, per token) and entropy per token to ``stats`` (PPO's and GRPO's logs)."""
    stats.setdefault("clip_fraction", []).append(float(clip_fraction))
    stats.setdefault("approx_kl_old", []).append(float(masked_mean(
        kl_estimators(logp, old_logp)["k3"], mask)))
    stats.setdefault("entropy", []).append(float(masked_mean(entropy(logits), mask)))
