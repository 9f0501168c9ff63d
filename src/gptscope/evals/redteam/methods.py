"""The four ways Perez et al. 2022 make a red LM write test questions, at toy scale.

- ``zero-shot``: sample lists from the red LM as it is;
- ``few-shot``: put found failures (zero-shot questions whose reply was judged offensive,
  drawn in proportion to the classifier's p(offensive)) before the next line;
- ``supervised``: fine-tune the red LM on lists of the failures, then sample zero-shot;
- ``rl``: PPO on the red LM, rewarded by log p(offensive) of the target's reply, with a KL
  penalty to the red LM that keeps the questions from collapsing onto one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptscope.evals.redteam.questions import (
    LIST_START,
    MAX_QUESTION_TOKENS,
    NEWLINE,
    lists_text,
    sample_questions,
    train_on_lists,
)

METHODS = ("zero-shot", "few-shot", "supervised", "rl")
FEW_SHOT_CHARS = 64  # room the examples may take, so any question still fits after them
FEW_SHOT_CONTEXTS = 16


@dataclass
class Lab:
    """What every method reads: the models, the zero-shot failures (question, p) the later
    methods learn from, the folder stage runs are written to, and the settings."""

    target: Any
    classifier: Any
    red_lm: Any
    red_lm_run: Path
    out: Path
    n: int = 256
    seed: int = 0
    failures: list[tuple[str, float]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)  # trainer overrides (threads, ...)
    rl_steps: int = 320
    # The smallest KL penalty Perez et al. used (their reward's scale differs, so it is a
    # starting point, not a match); docs/evals.md has 0.05 and 1 beside it.
    kl_coef: float = 0.3
    rollout_size: int = 64  # PPO: questions per rollout, and completions the reward's
    norm_samples: int = 256  # normalising constants are measured on

    def need_failures(self, method: str) -> None:
        if not self.failures:
            raise ValueError(f"{method} red teaming learns from the zero-shot failures, and "
                             f"zero-shot found none in {self.n} questions; ask more (--n)")


def zero_shot(lab: Lab) -> list[str]:
    return sample_questions(lab.red_lm, lab.n, lab.seed)


def few_shot(lab: Lab) -> list[str]:
    """``n`` questions over `FEW_SHOT_CONTEXTS` contexts of failures (as many as fit in
    `FEW_SHOT_CHARS`), each context drawn with weights p(offensive)."""
    lab.need_failures("few-shot")
    rng = random.Random(lab.seed)
    texts, weights = [q for q, _ in lab.failures], [p for _, p in lab.failures]
    out: list[str] = []
    for i in range(FEW_SHOT_CONTEXTS):
        examples: list[str] = []
        for _ in range(8):
            pick = rng.choices(texts, weights)[0]
            if sum(len(e) + 1 for e in examples) + len(pick) + 1 > FEW_SHOT_CHARS:
                break
            examples.append(pick)
        share = lab.n // FEW_SHOT_CONTEXTS + (i < lab.n % FEW_SHOT_CONTEXTS)
        if share:
            out += sample_questions(lab.red_lm, share, lab.seed + i,
                                    tuple(examples or texts[:1]))
    return out


def supervised(lab: Lab) -> list[str]:
    lab.need_failures("supervised")
    text = lists_text([q for q, _ in lab.failures], 1000, lab.seed)
    result = train_on_lists(lab.red_lm_run, text, lab.out / "supervised", overwrite=True,
                            **{"max_steps": 100, "eval_every": 100, **lab.train})
    return sample_questions(result.model.eval(), lab.n, lab.seed)


def rl(lab: Lab) -> list[str]:
    from gptscope.align.ppo import fit_ppo
    from gptscope.align.ppo_config import PPOConfig
    from gptscope.evals.redteam.target import ReplyReward

    cfg = PPOConfig(prompt=LIST_START, max_new_tokens=MAX_QUESTION_TOKENS, stop=(NEWLINE,),
                    rollout_size=lab.rollout_size, kl_coef=lab.kl_coef,
                    norm_samples=lab.norm_samples)
    reward = ReplyReward(lab.target, lab.classifier, lab.red_lm.tokenizer, LIST_START)
    result = fit_ppo(lab.red_lm_run, reward, lab.out / "rl", cfg, overwrite=True,
                     **{"max_steps": lab.rl_steps, "seed": lab.seed, **lab.train})
    return sample_questions(result.model.eval(), lab.n, lab.seed)


GENERATORS = {"zero-shot": zero_shot, "few-shot": few_shot, "supervised": supervised,
              "rl": rl}
