"""RLHF with PPO, as a data object the trainer trains on (``gptscope.train.data``'s hooks).

One cycle: sample a rollout from the current policy (`sample_rollout`), score it with the
reward model, measure its KL to the starting model, then take ``ppo_epochs`` passes over
it in minibatches with the clipped objective (`ppo_clip_loss`). The trainer's step is one
minibatch update, so its optimizer, schedule, checkpoints, metrics and progress bar serve
unchanged; checkpoints fall between cycles (the config is checked for that), and the
rollout sampler draws its seed from the trainer's saved data generator, so a resumed run
repeats the killed one exactly.

Logged each step: the reward model's score and the normalised reward of the last rollout,
the lexical judge's positive fraction of it, KL(policy || start) per completion (k1 and
k3), the clip fraction and the approximate KL to the rollout's policy over the updates,
and the policy's entropy per token.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gptscope.align.losses import (
    normalize_rewards,
    ppo_clip_loss,
    token_logprobs,
)
from gptscope.align.measure import record_update, reward_scores, rollout_stats
from gptscope.align.ppo_config import PPOConfig
from gptscope.align.rollout import Rollout, sample_rollout, sequence_token_logprobs
from gptscope.align.value import (
    PolicyWithValue,
    gae,
    save_policy,
    token_rewards,
    value_loss,
    whiten,
)
from gptscope.io.checkpoint import read_step
from gptscope.train.distributed import env_dist_info

KL_DIR = "kl_checkpoints"
WITHIN_BUDGET = "within_budget"  # the last policy whose rollout was within the KL budget
CLIP_RANGE = (0.01, 0.20)  # a clip fraction outside this suggests the step is off


def stop_ids(tokenizer: Any, stops: tuple[str, ...]) -> list[int]:
    """The token ids of the stop strings (each must be exactly one token)."""
    ids = []
    for s in stops:
        encoded = tokenizer.encode(s)
        if len(encoded) != 1:
            raise ValueError(f"stop string {s!r} is {len(encoded)} tokens; give strings that "
                             "are one token each (e.g. '.' for a char model)")
        ids.append(encoded[0])
    return ids


def check_same_vocabulary(policy_tokenizer: Any, reward_tokenizer: Any) -> None:
    if reward_tokenizer is None or policy_tokenizer.to_dict() != reward_tokenizer.to_dict():
        raise ValueError("the reward model reads another vocabulary than the policy (their "
                         "tokenizers differ), so it would score other tokens than were "
                         "sampled; train the reward model from the policy's own base run "
                         "(gptscope align rm BASE_RUN --out RM)")


class PPOData:
    """Rollouts of the policy as the trainer's data; see the module docstring."""

    def __init__(self, cfg: PPOConfig, reference: nn.Module, reward_model: nn.Module,
                 out_dir: str | Path, minibatch: int) -> None:
        self.cfg, self.reference, self.reward_model = cfg, reference, reward_model
        self.tokenizer = reference.tokenizer
        check_same_vocabulary(self.tokenizer, reward_model.tokenizer)
        if cfg.rollout_size % minibatch:
            raise ValueError(f"rollout_size ({cfg.rollout_size}) must be a multiple of the "
                             f"minibatch (--batch-size {minibatch})")
        self.out_dir, self.minibatch = Path(out_dir), minibatch
        self.stops = stop_ids(self.tokenizer, cfg.stop)
        self.updates_per_rollout = cfg.rollout_size // minibatch * cfg.ppo_epochs
        for module in (reference, reward_model):
            module.eval().requires_grad_(False)
        self.policy: nn.Module | None = None
        self._value_net: nn.Module | None = None  # the PolicyWithValue, when there is one
        self._step = 0  # the trainer's step the next minibatch is for
        self._reached: dict[float, bool] = {}
        self._warned = False
        self.stop_reason = ""
        self._queue: list[tuple[Tensor, ...]] = []
        self._rollout_stats: dict[str, float] = {}
        self._update_stats: dict[str, list[float]] = defaultdict(list)
        self.reward_mean, self.reward_std = self._reward_constants()

    vocab_size = property(lambda self: self.tokenizer.vocab_size)

    @property
    def seq_len(self) -> int:
        return len(self.tokenizer.encode(self.cfg.prompt)) + self.cfg.max_new_tokens

    def bind(self, model: nn.Module) -> nn.Module:
        """The policy samples; with a value head the trainer trains both together. The
        frozen models follow the policy to its device."""
        self.policy = model
        self.reference.to(model.device)
        self.reward_model.to(model.device)
        if not self.cfg.value_head:
            return model
        self._value_net = PolicyWithValue(model)
        return self._value_net

    def save_model(self, model: nn.Module, folder: Path, step: int | None = None) -> Path:
        return save_policy(model, folder, step)

    # -- rewards -------------------------------------------------------------------------

    @torch.no_grad()
    def _reward_constants(self) -> tuple[float, float]:
        """Mean and std of the reward over ``norm_samples`` completions of the starting
        model (its own generator, so they do not depend on the run's progress)."""
        gen = torch.Generator().manual_seed(20_240)
        scores = []
        for start in range(0, self.cfg.norm_samples, 256):
            n = min(256, self.cfg.norm_samples - start)
            scores.append(reward_scores(self.reward_model, self._sample(self.reference, n, gen),
                                        self.cfg.reward))
        every = torch.cat(scores)
        return float(every.mean()), float(every.std(correction=0))

    def _sample(self, model: nn.Module, n: int, gen: torch.Generator) -> Rollout:
        return sample_rollout(model, self.cfg.prompt, n, self.cfg.max_new_tokens, gen,
                              self.stops, self.cfg.temperature)

    # -- the trainer's protocol ----------------------------------------------------------

    @torch.no_grad()
    def _new_rollout(self, generator: torch.Generator) -> None:
        """Sample, score and measure a rollout; queue its minibatches for the updates."""
        rollout = self._sample(self.policy, self.cfg.rollout_size, generator)
        old, _ = sequence_token_logprobs(self.policy, rollout.tokens)
        ref, _ = sequence_token_logprobs(self.reference, rollout.tokens)
        scores = reward_scores(self.reward_model, rollout, self.cfg.reward)
        rewards = normalize_rewards(scores, self.reward_mean, self.reward_std)
        if self.cfg.kl_coef:
            rewards = rewards - self.cfg.kl_coef * ((old - ref) * rollout.mask).sum(-1)
        self._rollout_stats = {**rollout_stats(rollout, old, ref, scores, self.cfg.reward),
                               "reward": float(rewards.mean())}
        self._keep_milestones()
        self._remember_within_budget()
        rows: tuple[Tensor, ...] = (rollout.tokens, rollout.mask, old, rewards)
        if self.cfg.value_head:
            rows = self._critic_rows(rollout, old, ref, normalize_rewards(
                scores, self.reward_mean, self.reward_std))
        for _ in range(self.cfg.ppo_epochs):
            order = torch.randperm(self.cfg.rollout_size, generator=generator)
            for chunk in order.split(self.minibatch):
                self._queue.append(tuple(t[chunk] for t in rows))

    def _critic_rows(self, rollout: Rollout, old: Tensor, ref: Tensor, scores: Tensor
                     ) -> tuple[Tensor, ...]:
        """(tokens, mask, old log-probs, whitened GAE advantages, old values, returns)."""
        _, values = self._value_net(rollout.tokens[:, :-1])
        rewards = token_rewards(scores, old, ref, rollout.mask, self.cfg.kl_coef)
        advantages, returns = gae(rewards, values.float(), rollout.mask, self.cfg.gamma,
                                  self.cfg.lam)
        return (rollout.tokens, rollout.mask, old, whiten(advantages, rollout.mask), values,
                returns)

    def start(self, step: int) -> None:
        """The trainer starts (or resumes) at ``step``: milestones kept at or before it
        count as reached; ones a killed run kept later will be kept again."""
        if step % self.updates_per_rollout:
            raise ValueError(f"a PPO run resumes between rollouts, but step {step} is inside "
                             f"one ({self.updates_per_rollout} updates each); checkpoint "
                             "every multiple of that")
        self._step = step
        for milestone in self.cfg.kl_milestones:
            folder = self.out_dir / KL_DIR / f"kl_{milestone:g}"
            kept = read_step(folder) if (folder / "model.safetensors").is_file() else None
            self._reached[milestone] = kept is not None and kept <= step

    def train_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        if n != self.minibatch:
            raise ValueError(f"PPO minibatches are {self.minibatch} completions, asked {n}")
        if not self._queue:
            self._new_rollout(generator)
        self._step += 1
        return self._queue.pop(0)

    def count(self, batch: tuple[Tensor, ...]) -> int:
        return int(batch[1].sum())

    def loss_sum(self, net: nn.Module, micro: tuple[Tensor, ...], autocast: Any) -> Tensor:
        tokens, mask, old, advantages = micro[:4]
        with autocast():
            if self.cfg.value_head:
                logits, values = net(tokens[:, :-1])
                logp = token_logprobs(logits, tokens[:, 1:])
            else:
                logp, logits = sequence_token_logprobs(net, tokens)
        loss, clipped = ppo_clip_loss(logp, old, advantages, mask, self.cfg.clip)
        if self.cfg.value_head:
            v_loss = value_loss(values.float(), micro[4], micro[5], mask, self.cfg.clip)
            self._update_stats["value_loss"].append(float(v_loss.detach()))
            loss = loss + self.cfg.vf_coef * v_loss
        record_update(self._update_stats, logp, old, logits, mask, clipped)
        return loss * mask.sum()

    def metrics(self) -> dict[str, float]:
        """The last rollout's numbers and the means over the updates since the last log."""
        record = dict(self._rollout_stats)
        for name, values in self._update_stats.items():
            record[name] = sum(values) / len(values)
        self._update_stats.clear()
        clip = record.get("clip_fraction")
        if clip is not None and not CLIP_RANGE[0] <= clip <= CLIP_RANGE[1] \
                and not self._warned:
            self._warned = True  # once per run: the metrics keep the whole story
            warnings.warn(f"PPO clip fraction {clip:.1%} is outside {CLIP_RANGE[0]:.0%}-"
                          f"{CLIP_RANGE[1]:.0%}: the learning rate is probably too "
                          f"{'high' if clip > CLIP_RANGE[1] else 'low'}", stacklevel=2)
        return record

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The last rollout's reward, judge and KL (PPO's evaluation is its own samples)."""
        return {f"rollout_{k}": v for k, v in self._rollout_stats.items()}

    def after_step(self, model: nn.Module, step: int) -> bool:
        """Stop once a rollout's mean KL per completion reached the budget, and return the
        policy to the last one whose rollout was within it (its step in ``stop_reason``)."""
        if self._queue or self._rollout_stats.get("kl_k1", 0.0) < self.cfg.kl_budget:
            return False
        from gptscope.io.checkpoint import read_safetensors

        folder = self.out_dir / KL_DIR / WITHIN_BUDGET
        self.policy.load_state_dict(read_safetensors(folder / "model.safetensors"))
        self.stop_reason = (f"a rollout's KL per completion reached the budget of "
                            f"{self.cfg.kl_budget:g} nats; the weights are the policy of "
                            f"step {read_step(folder)}, the last rollout within it")
        return True

    def _remember_within_budget(self) -> None:
        """Save the policy that sampled a rollout within the KL budget (on disk, not in
        memory, so a resumed run ends with the same weights as an uninterrupted one)."""
        from gptscope.io.checkpoint import save

        if self._rollout_stats["kl_k1"] < self.cfg.kl_budget and env_dist_info().is_main:
            save(self.policy, self.out_dir / KL_DIR / WITHIN_BUDGET, step=self._step)

    # -- checkpoints at rising KL ----------------------------------------------------------

    def _keep_milestones(self) -> None:
        """Save the policy at each KL milestone the rollout just reached (first time only;
        a resumed run that reaches it again replaces the copy of the killed run)."""
        from gptscope.io.checkpoint import save
        from gptscope.utils.atomic import write_text

        if not env_dist_info().is_main:
            return
        kl = self._rollout_stats["kl_k1"]
        for milestone in self.cfg.kl_milestones:
            folder = self.out_dir / KL_DIR / f"kl_{milestone:g}"
            if kl >= milestone and not self._reached.get(milestone, False):
                save(self.policy, folder, step=self._step)
                write_text(folder / "rollout.json", _json(self._rollout_stats))
            self._reached[milestone] = self._reached.get(milestone, False) or kl >= milestone


def _json(record: dict[str, Any]) -> str:
    import json

    return json.dumps({k: (v if math.isfinite(v) else None) for k, v in record.items()},
                      indent=2) + "\n"


# Measured on the stories model (docs/alignment.md).
PPO_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "schedule": "constant", "warmup_steps": 0,
                                "max_steps": 800, "batch_size": 16, "weight_decay": 0.0,
                                "grad_clip": 1.0}
PPO_OPTIONS = "ppo_config.json"


def _ppo_train_config(policy_run: str | Path, updates: int, overrides: dict[str, Any]) -> Any:
    from gptscope.align.options import align_train_config

    every = {"log_every": updates, "eval_every": 5 * updates, "ckpt_every": 5 * updates}
    cfg = align_train_config(policy_run, {**PPO_DEFAULTS, **every}, overrides)
    if cfg.grad_accum != 1:
        raise ValueError("PPO minibatches are the batch size; leave grad_accum at 1")
    if cfg.checkpoint_every % updates:
        raise ValueError(f"PPO checkpoints fall between rollouts: ckpt_every "
                         f"({cfg.checkpoint_every}) must be a multiple of the {updates} "
                         "updates per rollout")
    return cfg


def run_ppo(policy_run: str | Path, reward_run: str | Path, out: str | Path,
            cfg: PPOConfig | None = None, resume: bool = False, overwrite: bool = False,
            **overrides: Any) -> Any:
    """RLHF: tune ``policy_run`` against the reward model of ``reward_run`` into ``out``.

    ``overrides`` are TrainConfig fields (``lr``, ``max_steps``, ``batch_size`` = the
    minibatch, ...). Returns the trainer's `TrainResult`."""
    from gptscope.align.reward import load_reward_model

    return fit_ppo(policy_run, load_reward_model(reward_run), out, cfg, resume, overwrite,
                   **overrides)


def fit_ppo(policy_run: str | Path, reward_model: nn.Module, out: str | Path,
            cfg: PPOConfig | None = None, resume: bool = False, overwrite: bool = False,
            **overrides: Any) -> Any:
    """PPO of ``policy_run`` against any ``reward_model``: a module with the policy's
    ``tokenizer`` whose ``forward(tokens [n, pos], lengths [n])`` scores each completion
    [n] (a `RewardModel`, or a red team's score of the target's reply)."""
    from gptscope.align.options import check_options, write_options
    from gptscope.train.init import open_base
    from gptscope.train.trainer import Trainer

    cfg = cfg or PPOConfig()
    check_options(out, PPO_OPTIONS, cfg.to_dict(), resume)
    minibatch = overrides.get("batch_size", PPO_DEFAULTS["batch_size"])
    updates = cfg.rollout_size // minibatch * cfg.ppo_epochs if minibatch else 0
    train_cfg = _ppo_train_config(policy_run, max(updates, 1), overrides)
    data = PPOData(cfg, open_base(policy_run), reward_model, out, train_cfg.batch_size)
    trainer = Trainer(None, train_cfg, out, resume=resume, overwrite=overwrite, data=data)
    if trainer.is_main:
        write_options(out, PPO_OPTIONS, cfg.to_dict())
    return trainer.fit()
