"""Built-in evaluation tasks over the stories corpus, by name (``gptscope eval RUN --task``).

- ``stories-agreement``: "the dog" -> " loves the ball ..." or " love the ball ...": does
  the verb agree with the subject? Two choices, log-likelihood (the base stories model);
- ``stories-agreement-shifted``: the same with two adjectives between the article and the
  noun ("the big red dog"), a distribution shift the corpus never shows (its subjects have
  no adjectives), which moves the verb further from the article;
- ``stories-sentiment``: the assistant's classify instruction ("is this happy or sad.
  ..." -> "happy." or "sad."), in the chat template (an SFT run of `gptscope align sft`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

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
from gptscope.evals.samples import Sample
from gptscope.evals.scorers import choice_match
from gptscope.evals.solvers import classify, multiple_choice
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


def builtin_task(name: str, n: int = 200) -> EvalTask:
    """A built-in task by name with ``n`` samples (see the module docstring)."""
    if name not in BUILTIN:
        raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN)}, or "
                         "pass a JSONL file of samples")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return BUILTIN[name](n)
