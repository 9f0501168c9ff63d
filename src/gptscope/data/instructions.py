"""A generated instruction set over the stories grammar, each instruction with a checkable
answer, so supervised fine-tuning can turn a stories model into a small assistant and
whether it follows an instruction is a fact, not an opinion.

Four kinds, all in the corpus's own alphabet (lowercase words, commas, full stops), so a
character model of the stories can read them:

- ``story``: "tell a happy story about the dog." -> one or two sentences about that
  subject, every one of the asked sentiment;
- ``ioi``: "when mary and john went to the store, john gave a drink to one of them. who
  got the drink." -> "mary." (the indirect object: the name not repeated);
- ``classify``: "is this happy or sad. the dog loves the ball in the park." -> "happy.";
- ``rewrite``: "make it happy. the dog hates the cruel cat near the river." -> the same
  sentence with its sentiment words swapped ("the dog loves the kind cat ...").

`follows` judges a response against the instruction's ``target``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from gptscope.data.stories import (
    ANIMALS,
    NAMES,
    OBJECTS,
    PLACES,
    classify_sentiment,
    sentiment_pairs,
    sentiment_sentence,
)

INSTRUCTION_KINDS = ("story", "ioi", "classify", "rewrite")
MOODS = {"positive": "happy", "negative": "sad"}
# A story gets a second sentence when prompt and story stay within this many characters,
# so every turn (with its three role tokens) fits the stories model's 128-token context.
STORY_CHARS = 124


@dataclass(frozen=True)
class Instruction:
    """A prompt, the response to learn, and what any correct response must satisfy."""

    kind: str
    prompt: str
    response: str
    target: dict[str, Any] = field(default_factory=dict)


def _subject(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 1 / 3:
        return rng.choice(NAMES)
    animal = rng.choice(ANIMALS)
    return f"the {animal}s" if roll < 2 / 3 else f"the {animal}"


def _story(rng: random.Random) -> Instruction:
    sentiment = rng.choice(list(MOODS))
    subject = _subject(rng)
    prompt = f"tell a {MOODS[sentiment]} story about {subject}."
    story = sentiment_sentence(subject, sentiment, rng)
    more = sentiment_sentence(subject, sentiment, rng)
    if len(prompt) + len(story) + 1 + len(more) <= STORY_CHARS:
        story = f"{story} {more}"
    return Instruction("story", prompt, story, {"sentiment": sentiment, "subject": subject})


def _ioi(rng: random.Random) -> Instruction:
    io, s = rng.sample(NAMES, 2)
    first, second = (io, s) if rng.random() < 0.5 else (s, io)
    thing, place = rng.choice(OBJECTS), rng.choice(PLACES)
    prompt = (f"when {first} and {second} went to the {place}, {s} gave a {thing} to one "
              f"of them. who got the {thing}.")
    return Instruction("ioi", prompt, f"{io}.", {"answer": io})


def _classify(rng: random.Random) -> Instruction:
    sentiment = rng.choice(list(MOODS))
    text = sentiment_sentence(_subject(rng), sentiment, rng)
    answer = MOODS[sentiment]
    return Instruction("classify", f"is this happy or sad. {text}", f"{answer}.",
                       {"answer": answer})


def _rewrite(rng: random.Random) -> Instruction:
    positive, negative = sentiment_pairs(1, seed=rng.randrange(2**32))[0]
    if rng.random() < 0.5:
        return Instruction("rewrite", f"make it happy. {negative}", positive,
                           {"answer": positive})
    return Instruction("rewrite", f"make it sad. {positive}", negative, {"answer": negative})


_MAKERS = {"story": _story, "ioi": _ioi, "classify": _classify, "rewrite": _rewrite}


def generate_instructions(n: int, seed: int = 0,
                          kinds: tuple[str, ...] = INSTRUCTION_KINDS) -> list[Instruction]:
    """``n`` instructions, kinds in turn (so every kind is equally common), the same for the
    same ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty tuple of {INSTRUCTION_KINDS}, got "
                         f"{kinds!r}")
    rng = random.Random(seed)
    return [_MAKERS[kinds[i % len(kinds)]](rng) for i in range(n)]


def follows(instruction: Instruction, response: str) -> bool:
    """Whether ``response`` does what ``instruction`` asked (judged exactly, by rule).

    A story must mention its subject, contain a sentiment word, and have only the asked
    sentiment; the other kinds must give the answer (a trailing full stop is optional).
    """
    response = response.strip()
    target = instruction.target
    if instruction.kind == "story":
        score = classify_sentiment(response)
        wanted = 1.0 if target["sentiment"] == "positive" else 0.0
        has_sentiment = any(w in response.split() for w in _sentiment_vocabulary())
        mentioned = re.search(rf"\b{re.escape(target['subject'])}\b", response) is not None
        return mentioned and has_sentiment and score == wanted
    return response.removesuffix(".") == target["answer"].removesuffix(".")


def _sentiment_vocabulary() -> frozenset[str]:
    from gptscope.data.stories import NEGATIVE_WORDS, POSITIVE_WORDS

    return POSITIVE_WORDS | NEGATIVE_WORDS
