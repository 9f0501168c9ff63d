"""GRPO with verifiable rewards on a synthetic task, as a data object the trainer trains on.

Group relative policy optimisation (Shao et al. 2024, DeepSeekMath) drops PPO's value
function: it samples a group of G completions of each prompt, and a completion's advantage
is its reward against the group's, ``(reward - group mean) / group std``. The reward here
needs no model: a task example's answer is known, so a sampled answer is checked against it
(1 when every answer token is right, or optionally the fraction that are).

One cycle: draw ``prompts_per_rollout`` training examples of the base run's task, cut each
before its answer, sample ``group_size`` answers per prompt with the KV cache, reward them,
then take ``epochs`` passes over the rollout in minibatches with PPO's clipped objective
(`ppo_clip_loss`), plus ``kl_coef`` times the k3 estimate of KL(policy || base) per token.
A group whose rewards are all equal (all right, or all wrong) has advantage 0 and teaches
nothing. As in `gptscope.align.ppo`, the trainer's step is one minibatch update;
checkpoints fall between rollouts and the sampler draws its seed from the trainer's saved
data generator, so a resumed run repeats the killed one exactly.

Logged, as means over the rollouts and updates since the last log: the samples' mean
``reward`` and ``sample_exact_match``, the share of groups with no signal
(``no_signal_groups``), KL(policy || base) per completion (``kl_k1``, ``kl_k3``), the
``clip_fraction``, the approximate KL to the rollout's policy (``approx_kl_old``) and the
``entropy`` per answer token. Each evaluation scores greedy answers on held-out test
examples (``val_exact_match``).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gptscope.align.losses import (
    group_advantages,
    kl_estimators,
    masked_mean,
    ppo_clip_loss,
)
from gptscope.align.measure import record_update
from gptscope.align.rollout import sequence_token_logprobs
from gptscope.utils.fields import JSONConfig, checked, validate_fields

REWARDS = ("exact", "per_token")
GRPO_OPTIONS = "grpo_config.json"


@dataclass
class GRPOConfig(JSONConfig):
    """Every choice of a GRPO run that the trainer's config does not hold.

    Each rollout samples ``group_size`` answers (at ``temperature``) for each of
    ``prompts_per_rollout`` training prompts of the task; the policy then takes ``epochs``
    passes over it in minibatches of the trainer's batch size, so a rollout is
    ``prompts_per_rollout * group_size // batch_size * epochs`` trainer steps. ``reward``:
    "exact" pays 1 for an answer whose every token is right, else 0; "per_token" pays the
    fraction of answer tokens that are right (partial credit: a denser signal, but it also
    pays for wrong answers). ``clip`` is PPO's ratio clip; ``kl_coef`` > 0 adds that many
    times the k3 estimate of KL(policy || base) per answer token to the loss (DeepSeekMath
    uses 0.04); 0 only watches the KL.
    """

    group_size: int = checked(8, ge=2, hint="GRPO compares the answers to one prompt with "
                                            "each other, so a group needs at least 2 (8 is "
                                            "the default)")
    prompts_per_rollout: int = checked(16, ge=1)
    epochs: int = checked(1, ge=1)
    clip: float = checked(0.2, gt=0, lt=1)
    kl_coef: float = checked(0.0, ge=0)
    temperature: float = checked(1.0, gt=0, hint="sampling needs a temperature > 0 (1 is "
                                                 "the default); greedy answers all agree")
    reward: str = checked("exact", choices=REWARDS)

    def __post_init__(self) -> None:
        validate_fields(self)

    @property
    def rollout_size(self) -> int:
        """Completions per rollout."""
        return self.prompts_per_rollout * self.group_size


# -- the task: prompts, answers and rewards ----------------------------------------------


def answer_span(task: Any) -> slice:
    """The positions of ``task``'s answer, checked to be the same span in every example
    (the prompt is everything before it; the completion is exactly its tokens)."""
    span = task.answer_slice()
    _, mask = task.batch(64, "train", torch.Generator().manual_seed(0))
    fixed = torch.zeros_like(mask)
    fixed[:, span.start - 1:span.stop - 1] = True  # the task's mask marks the position before
    if span.start < 1 or not torch.equal(mask, fixed):
        raise ValueError(f"GRPO needs a task whose answer is one fixed span of every example, "
                         f"but {task.name} scores other positions (an induction task with "
                         "min_len places its copy at random); use a task with a fixed layout "
                         "(addition, reverse, sort, ...)")
    return span


def answer_rewards(sampled: Tensor, truth: Tensor, kind: str = "exact") -> Tensor:
    """The verifiable reward of each answer: sampled, truth [n, answer] -> [n] float.

    "exact": 1.0 where every answer token is right, else 0.0; "per_token": the fraction
    of answer tokens that are right."""
    if kind not in REWARDS:
        raise ValueError(f"kind must be one of {REWARDS}, got {kind!r}")
    if sampled.shape != truth.shape:
        raise ValueError(f"sampled {list(sampled.shape)} and truth {list(truth.shape)} must "
                         "have one shape [n, answer_tokens]")
    right = sampled == truth
    return right.all(-1).float() if kind == "exact" else right.float().mean(-1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Sample and measure log-probs as the greedy evaluation does (no dropout)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def sample_groups(model: Any, prompts: Tensor, group_size: int, new_tokens: int,
                  generator: torch.Generator, temperature: float = 1.0) -> Tensor:
    """``group_size`` completions of each prompt row, sampled with the KV cache.

    prompts [n_prompts, prompt_len] (equal lengths, so no padding) -> [n_prompts *
    group_size, prompt_len + new_tokens]; a prompt's completions are consecutive rows. The
    sampler's seed is drawn from ``generator``, so a saved generator repeats the sample."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    seed = int(torch.randint(2**62, (1,), generator=generator))
    rows = prompts.to(model.device).repeat_interleave(group_size, dim=0)
    with _eval_mode(model):
        return model.generate(rows, max_new_tokens=new_tokens, temperature=temperature,
                              seed=seed, on_overflow="error")


def grpo_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor,
              advantages: Tensor, mask: Tensor, clip: float = 0.2, kl_coef: float = 0.0
              ) -> tuple[Tensor, Tensor]:
    """GRPO's loss to minimise and the clip fraction.

    logprobs [batch, pos] of the sampled tokens under the policy being trained; old and ref
    [batch, pos] under the rollout's policy and the frozen base; advantages [batch], one
    per completion; mask [batch, pos] the answer tokens. The clipped surrogate of
    `ppo_clip_loss` plus ``kl_coef`` times the token mean of k3 = q/p - log(q/p) - 1, the
    unbiased, non-negative estimator DeepSeekMath puts in the loss (not in the reward)."""
    loss, clipped = ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)
    if kl_coef:
        loss = loss + kl_coef * masked_mean(kl_estimators(logprobs, ref_logprobs)["k3"], mask)
    return loss, clipped


# -- the data object ---------------------------------------------------------------------


class GRPOData:
    """Rollouts of the policy on a task as the trainer's data; see the module docstring.

    ``reference`` is the base model (frozen; the policy starts as its copy), ``task`` the
    task it learned, ``minibatch`` the trainer's batch size (completions per update) and
    ``eval_cfg`` the base run's TrainConfig: evaluations score the same held-out examples
    as the base run's own, so its last ``val_exact_match`` is where this curve starts."""

    tokenizer = None  # task runs have none: their token ids are the task's own

    def __init__(self, cfg: GRPOConfig, reference: nn.Module, task: Any, minibatch: int,
                 eval_cfg: Any) -> None:
        if reference.cfg.d_vocab != task.vocab_size:
            raise ValueError(f"the base model has {reference.cfg.d_vocab} token ids but the "
                             f"{task.name} task uses {task.vocab_size}; pass the run that "
                             "trained on this task")
        if cfg.rollout_size % minibatch:
            raise ValueError(f"a rollout ({cfg.prompts_per_rollout} prompts x "
                             f"{cfg.group_size} = {cfg.rollout_size} completions) must be a "
                             f"multiple of the minibatch (--batch-size {minibatch})")
        self.cfg, self.reference, self.task, self.eval_cfg = cfg, reference, task, eval_cfg
        self.span, self.minibatch = answer_span(task), minibatch
        self.updates_per_rollout = cfg.rollout_size // minibatch * cfg.epochs
        reference.eval().requires_grad_(False)
        self.policy: nn.Module | None = None
        self._queue: list[tuple[Tensor, ...]] = []
        # Numbers of each rollout and each update since the last log, averaged by metrics().
        self._stats: dict[str, list[float]] = defaultdict(list)

    vocab_size = property(lambda self: self.task.vocab_size)
    seq_len = property(lambda self: self.span.stop)  # prompt + answer; nothing after it

    def bind(self, model: nn.Module) -> nn.Module:
        """The policy starts as a copy of the base (loaded here, not through
        TrainConfig.init_from, whose loader wants a tokenizer that task runs lack)."""
        model.load_state_dict(self.reference.state_dict())
        self.reference.to(model.device)
        self.policy = model
        return model

    # -- rollouts ------------------------------------------------------------------------

    def _prompts(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Training examples cut at the answer: prompts [P, start], answers [P, answer]."""
        tokens, _ = self.task.batch(self.cfg.prompts_per_rollout, "train", generator)
        return tokens[:, :self.span.start], tokens[:, self.span.start:self.span.stop]

    def _answer_mask(self, n: int) -> Tensor:
        """[n, seq_len - 1]: True where the next token is an answer token."""
        mask = torch.zeros(n, self.seq_len - 1, dtype=torch.bool)
        mask[:, self.span.start - 1:] = True
        return mask

    @torch.no_grad()
    def _new_rollout(self, generator: torch.Generator) -> None:
        """Sample, reward and measure a rollout; queue its minibatches for the updates."""
        cfg, start = self.cfg, self.span.start
        prompts, answers = self._prompts(generator)
        tokens = sample_groups(self.policy, prompts, cfg.group_size, answers.shape[1],
                               generator, cfg.temperature)  # [P * G, seq_len]
        with _eval_mode(self.policy):
            old, _ = sequence_token_logprobs(self.policy, tokens)  # [P * G, seq_len - 1]
        ref, _ = sequence_token_logprobs(self.reference, tokens)
        truth = answers.to(tokens.device).repeat_interleave(cfg.group_size, dim=0)
        rewards = answer_rewards(tokens[:, start:], truth, cfg.reward)  # [P * G]
        grouped = rewards.view(cfg.prompts_per_rollout, cfg.group_size)  # [P, G]
        advantages = group_advantages(grouped).flatten()  # [P * G]
        mask = self._answer_mask(len(tokens)).to(tokens.device)
        for name, value in _rollout_stats(grouped, tokens[:, start:] == truth, old, ref,
                                          mask).items():
            self._stats[name].append(value)
        rows = (tokens, mask, old, ref, advantages)
        for _ in range(cfg.epochs):
            order = torch.randperm(cfg.rollout_size, generator=generator)
            for chunk in order.split(self.minibatch):
                self._queue.append(tuple(t[chunk.to(t.device)] for t in rows))

    # -- the trainer's protocol ----------------------------------------------------------

    def start(self, step: int) -> None:
        """Training starts (or resumes) at ``step``, which must fall between rollouts."""
        if step % self.updates_per_rollout:
            raise ValueError(f"a GRPO run resumes between rollouts, but step {step} is "
                             f"inside one ({self.updates_per_rollout} updates each); "
                             "checkpoint every multiple of that")
        self._queue.clear()

    def train_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        if n != self.minibatch:
            raise ValueError(f"GRPO minibatches are {self.minibatch} completions, asked {n}")
        if not self._queue:
            self._new_rollout(generator)
        return self._queue.pop(0)

    def count(self, batch: tuple[Tensor, ...]) -> int:
        return int(batch[1].sum())

    def loss_sum(self, net: nn.Module, micro: tuple[Tensor, ...], autocast: Any) -> Tensor:
        tokens, mask, old, ref, advantages = micro
        with autocast():
            logp, logits = sequence_token_logprobs(net, tokens)
        loss, clipped = grpo_loss(logp, old, ref, advantages, mask, self.cfg.clip,
                                  self.cfg.kl_coef)
        record_update(self._stats, logp, old, logits, mask, clipped)
        return loss * mask.sum()

    def metrics(self) -> dict[str, float]:
        """Means over the rollouts and the updates since the last log (one rollout's
        reward is a noisy number; a few together make a readable curve)."""
        record = {name: sum(values) / len(values) for name, values in self._stats.items()}
        self._stats.clear()
        return record

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Greedy accuracy on held-out test examples (and on training ones), scored by
        `gptscope.train.evaluate.evaluate` as the base run scored itself: its exact match
        is teacher-forced, which for a fixed-length answer is the greedy answer's exact
        match (every argmax right given a right prefix is the same as the greedy answer
        being right)."""
        from gptscope.train.data import TaskData
        from gptscope.train.evaluate import evaluate

        data = TaskData(self.task, self.eval_cfg.data.full_batch)
        return evaluate(model, data, self.eval_cfg)


@torch.no_grad()
def _rollout_stats(rewards: Tensor, right: Tensor, old: Tensor, ref: Tensor, mask: Tensor
                   ) -> dict[str, float]:
    """Means over a rollout. rewards [P, G]; right [P * G, answer] (token right or not);
    old, ref, mask [P * G, pos]."""
    kl = {k: (v * mask).sum(-1) for k, v in kl_estimators(old, ref).items()}  # per completion
    flat = rewards.max(-1).values == rewards.min(-1).values  # [P]: nothing to compare
    return {"reward": float(rewards.mean()),
            "sample_exact_match": float(right.all(-1).float().mean()),
            "no_signal_groups": float(flat.float().mean()),
            "kl_k1": float(kl["k1"].mean()), "kl_k3": float(kl["k3"].mean())}


# -- the run -------------------------------------------------------------------------------

# Measured on a weak addition base (docs/alignment.md): two updates per rollout of 16 x 8.
GRPO_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "schedule": "constant", "warmup_steps": 0,
                                 "max_steps": 2000, "batch_size": 64, "weight_decay": 0.0,
                                 "grad_clip": 1.0}


def open_task_base(base_run: str | Path) -> tuple[nn.Module, Any]:
    """The newest good weights of a task run (`open_run`) and its TrainConfig."""
    from gptscope.train.config import TrainConfig
    from gptscope.train.runs import open_run

    file = Path(base_run) / "train_config.json"
    if not file.is_file():
        raise ValueError(f"{file} is missing, so GRPO cannot tell which task the base "
                         "learned; pass a folder written by gptscope train on a task "
                         "(e.g. gptscope train --preset addition --out RUN)")
    base_cfg = TrainConfig.from_json(file)
    if not base_cfg.data.is_task:
        raise ValueError(f"{base_run} trained on text, not on a task; GRPO here rewards "
                         "answers it can check, so pass a task run (e.g. gptscope train "
                         "--preset addition --out RUN)")
    model, _ = open_run(base_run)
    return model.eval(), base_cfg


def _grpo_train_config(base_cfg: Any, cfg: GRPOConfig, overrides: dict[str, Any]) -> Any:
    """GRPO's TrainConfig: the defaults, the overrides, the base's task as its data; log
    every 5 rollouts, evaluate and checkpoint every 50, unless told otherwise."""
    from gptscope.train.config import TrainConfig

    if "init_from" in overrides:
        raise ValueError("init_from is the base run itself (run_grpo's first argument); "
                         "drop it from the overrides")
    train_cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **GRPO_DEFAULTS,
                                       **overrides, "data": base_cfg.data.__dict__})
    if train_cfg.grad_accum != 1:
        raise ValueError("GRPO minibatches are the batch size; leave grad_accum at 1")
    updates = max(cfg.rollout_size // train_cfg.batch_size, 1) * cfg.epochs
    every = {"log_every": 5 * updates, "eval_every": 50 * updates,
             "ckpt_every": 50 * updates}
    train_cfg = train_cfg.replace(**{k: v for k, v in every.items() if k not in overrides})
    for name, value in (("ckpt_every", train_cfg.checkpoint_every),
                        ("max_steps", train_cfg.max_steps)):
        if value % updates:
            raise ValueError(f"GRPO trains and checkpoints whole rollouts: {name} ({value}) "
                             f"must be a multiple of the {updates} updates per rollout")
    return train_cfg


def run_grpo(base_run: str | Path, out: str | Path, cfg: GRPOConfig | None = None,
             resume: bool = False, overwrite: bool = False, **train_overrides: Any) -> Any:
    """GRPO: tune the task run ``base_run`` on its own task's checkable answers into ``out``.

    ``train_overrides`` are TrainConfig fields (``lr``, ``max_steps``, ``batch_size`` = the
    minibatch of completions, ``seed``, ``threads``, ...). Returns the trainer's
    `TrainResult`; ``out`` is a run folder like any other (``gptscope eval OUT`` scores it
    on the task)."""
    from gptscope.align.options import check_options, write_options
    from gptscope.data import make_task
    from gptscope.train.trainer import Trainer

    cfg = cfg or GRPOConfig()
    # The base is part of the options: it is the reference, so a resume must keep it.
    options = {**cfg.to_dict(), "base_run": str(base_run)}
    check_options(out, GRPO_OPTIONS, options, resume)
    reference, base_cfg = open_task_base(base_run)
    train_cfg = _grpo_train_config(base_cfg, cfg, train_overrides)
    task = make_task(base_cfg.data.task, **base_cfg.data.task_kwargs)
    data = GRPOData(cfg, reference, task, train_cfg.batch_size, base_cfg)
    trainer = Trainer(reference.cfg, train_cfg, out, resume=resume, overwrite=overwrite,
                      data=data)
    if trainer.is_main:
        write_options(out, GRPO_OPTIONS, options)
    return trainer.fit()
