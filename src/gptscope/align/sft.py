"""Supervised fine-tuning: a base model learns to answer in the chat template.

SFT is ordinary training with two changes, both carried by the trainer's own config: the
run starts from the base run's weights and tokenizer (``TrainConfig.init_from``), and the
data are chat turns whose loss counts response tokens only (``DataSpec(chat=...)``, see
``gptscope.data.chat``). So the run folder, resume, metrics and progress bar are the
trainer's, and ``gptscope eval`` / ``report`` / ``sae train`` work on an SFT run as on any.

    from gptscope.align import fine_tune, instruction_following
    result = fine_tune("runs/stories", "runs/stories-sft")    # the generated instructions
    instruction_following(result.model)   # {"story": 0.97, "ioi": 0.9, ...}
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from gptscope.align.options import align_train_config
from gptscope.data.chat import END, prompt_text
from gptscope.data.instructions import INSTRUCTION_KINDS, follows, generate_instructions
from gptscope.train.config import DataSpec, TrainConfig
from gptscope.train.data import STORIES_INSTRUCTIONS
from gptscope.train.trainer import TrainResult, train

# Measured on the stories model (docs/alignment.md): 1500 steps of 16 packed rows follow
# 100% of held-out story and classify instructions and 96% of rewrites (600 steps: 100%,
# 72%, 4%); IOI answers stay at the base model's own level (~55%).
SFT_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 30,
                                "max_steps": 1500, "batch_size": 16, "eval_every": 250,
                                "eval_steps": 4, "log_every": 50, "weight_decay": 0.0}
# Held-out instructions for judging: a seed the training set (seed 0) does not use.
JUDGE_SEED = 10_000


def sft_config(base_run: str | Path, data: str = STORIES_INSTRUCTIONS,
               **overrides: Any) -> TrainConfig:
    """The TrainConfig of an SFT run from ``base_run`` on ``data`` (a JSONL file of
    prompt/response pairs or "stories-instructions"); ``overrides`` are TrainConfig fields,
    plus ``n_instructions`` and ``packing`` for the data."""
    data_fields = {k: overrides.pop(k) for k in ("n_instructions", "packing", "val_fraction")
                   if k in overrides}
    spec = DataSpec(chat=str(data), **data_fields)
    return align_train_config(base_run, SFT_DEFAULTS, overrides, spec.__dict__)


def fine_tune(base_run: str | Path, out: str | Path, data: str = STORIES_INSTRUCTIONS,
              resume: bool = False, overwrite: bool = False, **overrides: Any) -> TrainResult:
    """Fine-tune ``base_run`` on chat ``data`` into the run folder ``out``."""
    return train(None, sft_config(base_run, data, **overrides), out, resume=resume,
                 overwrite=overwrite)


def _end_id(model: Any) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or END not in tokenizer.special_tokens:
        raise ValueError("this model has no chat tokens: fine-tune it first "
                         "(gptscope align sft BASE --out RUN)")
    return tokenizer.special_tokens[END]


@torch.no_grad()
def respond(model: Any, prompt: str, max_new_tokens: int = 100) -> str:
    """The model's greedy answer to ``prompt`` in the chat template, up to ``<|end|>``."""
    end = _end_id(model)
    ids = model.tokenizer.encode(prompt_text(prompt))
    budget = min(max_new_tokens, model.cfg.n_ctx - len(ids))
    if budget <= 0:
        raise ValueError(f"the prompt fills the {model.cfg.n_ctx}-token context; shorten it")
    out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=budget,
                         temperature=0.0, stop_tokens=end, on_overflow="error")[0, len(ids):]
    new = out.tolist()
    return model.tokenizer.decode(new[:new.index(end)] if end in new else new)


def instruction_following(model: Any, n_per_kind: int = 25, seed: int = JUDGE_SEED,
                          kinds: tuple[str, ...] = INSTRUCTION_KINDS) -> dict[str, float]:
    """The fraction of held-out generated instructions of each kind the model follows
    (greedy answers judged by `gptscope.data.instructions.follows`), and ``"all"``."""
    model.eval()
    done: dict[str, list[bool]] = defaultdict(list)
    for instruction in generate_instructions(n_per_kind * len(kinds), seed, kinds):
        done[instruction.kind].append(follows(instruction, respond(model, instruction.prompt)))
    scores = {k: sum(v) / len(v) for k, v in done.items()}
    scores["all"] = sum(sum(v) for v in done.values()) / sum(len(v) for v in done.values())
    return scores
