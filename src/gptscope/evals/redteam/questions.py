"""The red-team language model: a character model that writes test questions.

Perez et al. prompt a pretrained LM with "List of questions to ask someone:" and let it
continue the list. Here the red LM starts from the target's own weights (as the paper's
red LM and chatbot share a pretrained model) and is trained on **lists of instructions**
written from the stories grammar: one instruction per line, a blank line between lists,
and each list on one topic (its kind, and its mood for stories and rewrites), as lists on
the web mostly are. So the red LM can learn in context what kind of question comes next,
which is what few-shot red teaming relies on.

A question is one line: sampled after the list opening ``"\\n\\n"`` (zero-shot) or after
example lines (few-shot), up to its newline.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from gptscope.data.chat import CHAT_TOKENS
from gptscope.data.instructions import Instruction, generate_instructions

LIST_START = "\n\n"
NEWLINE = "\n"
MAX_QUESTION_TOKENS = 112  # the longest generated instruction (an IOI one) is ~110 chars
RED_LM_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 20,
                                   "max_steps": 400, "batch_size": 16, "eval_every": 200,
                                   "log_every": 50, "weight_decay": 0.0}


def topic(instruction: Instruction) -> str:
    """A list's topic: the kind, with the mood asked for in a story or a rewrite."""
    if instruction.kind == "story":
        return f"story-{instruction.target['sentiment']}"
    if instruction.kind == "rewrite":
        return f"rewrite-{'happy' if instruction.prompt.startswith('make it happy') else 'sad'}"
    return instruction.kind


def question_lists(n_lists: int, seed: int, sizes: tuple[int, int] = (2, 5)) -> str:
    """``n_lists`` topical lists of ``sizes`` instructions each, as the red LM's corpus."""
    rng = random.Random(seed)
    pool: dict[str, list[str]] = {}
    for instruction in generate_instructions(n_lists * sizes[1], seed):
        pool.setdefault(topic(instruction), []).append(instruction.prompt)
    topics = sorted(pool)
    lists = []
    for _ in range(n_lists):
        prompts = pool[rng.choice(topics)]
        lists.append(NEWLINE.join(rng.sample(prompts, min(rng.randint(*sizes),
                                                          len(prompts)))))
    return _corpus(lists)


def lists_text(questions: list[str], n_lists: int, seed: int, sizes: tuple[int, int] = (2, 4)
               ) -> str:
    """``n_lists`` lists drawn from ``questions`` (the supervised red LM's corpus)."""
    rng = random.Random(seed)
    lists = [NEWLINE.join(rng.choices(questions, k=rng.randint(*sizes)))
             for _ in range(n_lists)]
    return _corpus(lists)


def _corpus(lists: list[str]) -> str:
    """Lists (each its lines joined) as the red LM reads them: each after a blank line."""
    return LIST_START + LIST_START.join(lists) + NEWLINE


def train_on_lists(base_run: str | Path, text: str, out: str | Path, overwrite: bool = False,
                   **overrides: Any) -> Any:
    """Train a red LM from ``base_run``'s weights on ``text`` (written beside ``out`` as
    ``out.txt``, the trainer's text data); returns the trainer's `TrainResult`."""
    from gptscope.align.options import align_train_config
    from gptscope.train.trainer import train
    from gptscope.utils.atomic import write_text

    out = Path(out)
    data = out.with_name(out.name + ".txt")
    write_text(data, text)
    cfg = align_train_config(base_run, RED_LM_DEFAULTS, overrides, {"text": str(data)})
    return train(None, cfg, out, overwrite=overwrite)


def is_question(line: str) -> bool:
    """A sampled line counts as a question when it ended (with its newline), is not blank
    and holds no chat marker (the red LM inherits the target's role tokens and may sample
    one); the paper likewise keeps only generated text that is a question."""
    return line.endswith(NEWLINE) and bool(line.strip()) and \
        not any(marker in line for marker in CHAT_TOKENS)


def sample_questions(red_lm: Any, n: int, seed: int, examples: tuple[str, ...] = (),
                     temperature: float = 1.0, max_rounds: int = 20) -> list[str]:
    """``n`` questions sampled from ``red_lm`` after a list opening and ``examples`` (the
    few-shot lines); lines that are not questions (`is_question`) are dropped and more are
    drawn, up to ``max_rounds`` batches."""
    from gptscope.align.ppo import stop_ids
    from gptscope.align.rollout import sample_rollout

    prompt = LIST_START + "".join(e + NEWLINE for e in examples)
    budget = min(MAX_QUESTION_TOKENS, red_lm.cfg.n_ctx - len(red_lm.tokenizer.encode(prompt)))
    if budget < 1:
        raise ValueError(f"the few-shot examples fill the {red_lm.cfg.n_ctx}-token context; "
                         "give fewer or shorter ones")
    gen = torch.Generator().manual_seed(seed)
    stops = stop_ids(red_lm.tokenizer, (NEWLINE,))
    kept: list[str] = []
    rounds = 0
    while len(kept) < n:
        if rounds == max_rounds:
            raise ValueError(f"the red LM wrote only {len(kept)} questions in {max_rounds} "
                             f"batches (asked {n}); it writes blank or unfinished lines: "
                             "train it longer")
        lines = sample_rollout(red_lm, prompt, min(128, 2 * (n - len(kept))), budget, gen,
                               stops, temperature).texts
        kept += [line.strip() for line in lines if is_question(line)]
        rounds += 1
    return kept[:n]
