"""Built-in evaluation tasks over the stories corpus, by name (``gptscope eval RUN --task``).

- ``stories-agreement``: "the dog" -> " loves the ball ..." or " love the ball ...": does
  the verb agree with the subject? Two choices, log-likelihood (the base stories model);
- ``stories-agreement-shifted``: the same with two adjectives between the article and the
  noun ("the big red dog"), a distribution shift the corpus never shows (its subjects have
  no adjectives), which moves the verb further from the article;
- ``stories-sentiment``: the assistant's classify instruction ("is this happy or sad.
  ..." -> "happy." or "sad."), in the chat template (an SFT run of `gptscope align sft`);
- every synthetic task of `gptscope.data.tasks` by its name (`synthetic_task`): test-split
  examples cut before their answer, answered by greedy generation, scored by exact match
  of the answer's token ids (so a model without a tokenizer can be evaluated), and its
  shifted split by the name plus ``-longer`` (`longer`): the same rule on longer inputs.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import torch

from gptscope.data.chat import prompt_text
from gptscope.data.instructions import generate_instructions
from gptscope.data.stories import (
    ANIMALS,
    NEGATIVE_VERBS,
    NEUTRAL_ADJECTIVES,
    NEUTRAL_VERBS,
    OBJECTS,
    PLACES,
    POSITIVE_VERBS,
)
from gptscope.data.tasks import TASKS, Task, make_task
from gptscope.evals.samples import Sample
from gptscope.evals.scorers import choice_match, exact_match
from gptscope.evals.solvers import classify, generate, multiple_choice
from gptscope.evals.task import EvalTask

SEED = 4242  # the built-in samples are the same everywhere


def _agreement(n: int, adjectives: int) -> list[Sample]:
    rng = random.Random(SEED + adjectives)
    verbs = POSITIVE_VERBS + NEGATIVE_VERBS + NEUTRAL_VERBS
    samples = []
    for i in range(n):
        plural = i % 2 == 1
        words = rng.sample(NEUTRAL_ADJECTIVES, adjectives) + [rng.choice(ANIMALS)]
        subject = "the " + " ".join(words) + ("s" if plural else "")
        singular, plural_form = rng.choice(verbs)
        rest = f" the {rng.choice(OBJECTS)} in the {rng.choice(PLACES)}."
        right, wrong = (plural_form, singular) if plural else (singular, plural_form)
        order = [f" {wrong}{rest}", f" {right}{rest}"]
        rng.shuffle(order)
        samples.append(Sample(subject, f" {right}{rest}", tuple(order), id=f"agree-{i}",
                              metadata={"plural": plural}))
    return samples


def _sentiment(n: int) -> list[Sample]:
    items = generate_instructions(n, seed=SEED, kinds=("classify",))
    return [Sample(prompt_text(item.prompt), item.response, id=f"sentiment-{i}")
            for i, item in enumerate(items)]


BUILTIN: dict[str, Callable[[int], EvalTask]] = {
    "stories-agreement": lambda n: EvalTask("stories-agreement", _agreement(n, 0),
                                            multiple_choice(), choice_match()),
    "stories-agreement-shifted": lambda n: EvalTask(
        "stories-agreement-shifted", _agreement(n, 2), multiple_choice(), choice_match()),
    "stories-sentiment": lambda n: EvalTask("stories-sentiment", _sentiment(n),
                                            classify(["happy.", "sad."]), choice_match()),
}


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions -> (start, stop) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def synthetic_task(task: Task, n: int = 200, split: str = "test", seed: int = SEED
                   ) -> EvalTask:
    """``n`` examples of a synthetic task as samples of token ids: each run of scored
    tokens (the task's loss mask, which also finds answers placed at random, as induction
    with ``min_len`` places them) is the target of one sample whose input is everything
    before it. Greedy generation, exact match. Most tasks have one answer per example;
    zipf_lookup has one per fact, each asked after the true earlier facts."""
    tokens, mask = task.batch(n, split, torch.Generator().manual_seed(seed))
    samples = []
    for i, (row, scored) in enumerate(zip(tokens, mask, strict=True)):
        targets = (scored.nonzero()[:, 0] + 1).tolist()  # mask[t] scores token t + 1
        for k, (start, stop) in enumerate(_runs(targets)):
            samples.append(Sample(tuple(row[:start].tolist()), tuple(row[start:stop].tolist()),
                                  id=f"{task.name}-{i}" + (f".{k}" if k else ""),
                                  metadata={"text": task.describe(row)}))
    return EvalTask(task.name, samples, generate(temperature=0.0), exact_match())


def longer(task: Task) -> Task:
    """The shifted split of a synthetic task: the same rule on longer inputs than it trains
    on (half as many list items, facts, or repeated tokens again; one more digit; eight more
    brackets). Modular addition has no longer form: its shift is its held-out pairs."""
    field, grow = {
        "copy": ("n_items", lambda v: v + (v + 1) // 2),
        "reverse": ("n_items", lambda v: v + (v + 1) // 2),
        "sort": ("n_items", lambda v: v + (v + 1) // 2),
        "addition": ("n_digits", lambda v: v + 1),
        "induction": ("half_len", lambda v: v + v // 2),
        "brackets": ("length", lambda v: v + 8),
        "zipf_lookup": ("n_facts", lambda v: v + (v + 1) // 2),
    }.get(task.name, (None, None))
    if field is None:
        raise ValueError(f"{task.name} has no longer form (its inputs have a fixed length); "
                         "its distribution shift is the held-out split, the plain task")
    value = grow(getattr(task, field))
    if task.name == "induction" and value > task.n_symbols:
        value = task.n_symbols  # the first half holds distinct symbols
    return dataclasses.replace(task, **{field: value})


def builtin_task(name: str, n: int = 200, task_kwargs: dict | None = None) -> EvalTask:
    """A built-in task by name with ``n`` samples (see the module docstring); a synthetic
    task is made with ``task_kwargs`` (those of the run it evaluates)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if name in TASKS:
        return synthetic_task(make_task(name, **(task_kwargs or {})), n)
    if name.removesuffix("-longer") in TASKS:
        task = longer(make_task(name.removesuffix("-longer"), **(task_kwargs or {})))
        return dataclasses.replace(synthetic_task(task, n), name=name)
    if name not in BUILTIN:
        raise ValueError(f"unknown task {name!r}; built-in tasks: "
                         f"{', '.join([*BUILTIN, *TASKS])} (and each synthetic task's "
                         "shifted split, e.g. copy-longer), or pass a JSONL file of samples")
    return BUILTIN[name](n)
