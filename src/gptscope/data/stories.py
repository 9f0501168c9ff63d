"""A tiny procedurally generated story corpus with labels, for probing and steering.

The grammar is small on purpose: lowercase words, spaces, commas and full stops, so a
character-level model can learn it in minutes. Every sentence is one of:

* a *sentiment* sentence, whose subject is singular or plural and whose verb agrees with it
  ("the dog loves the bright ball in the park." / "the dogs love ..."), and whose sentiment
  (positive, negative or neutral) is set by the words chosen: a positive sentence uses only
  positive and neutral words, a negative one only negative and neutral words;
* an *IOI* (indirect object identification) sentence: "when mary and john went to the store,
  john gave a drink to mary." The final name is the indirect object: the one not repeated.

Labels are character spans (`Span`), so they can be mapped onto any tokenizer's tokens with
`token_labels`, given each token's character offsets.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

NAMES = (
    "mary", "john", "anna", "tom", "lucy", "sam", "emma", "jack", "lily", "ben",
    "rose", "max", "ella", "leo", "ruby", "dan", "ivy", "finn", "zoe", "paul",
)
# Nouns with regular plurals (+s), so agreement is visible on both noun and verb.
ANIMALS = ("dog", "cat", "bird", "frog", "horse", "duck", "rabbit", "goat")
OBJECTS = ("ball", "book", "cake", "hat", "kite", "drink", "flower", "apple", "toy", "cup")
PLACES = ("park", "store", "garden", "river", "school", "forest", "beach", "market")
PREPOSITIONS = ("in", "near", "by")

# Verbs as (singular form, plural form). Positive and negative lists pair up index by index,
# which is what makes `sentiment_pairs` minimal pairs.
POSITIVE_VERBS = (("loves", "love"), ("likes", "like"), ("hugs", "hug"), ("praises", "praise"))
NEGATIVE_VERBS = (("hates", "hate"), ("fears", "fear"), ("kicks", "kick"), ("blames", "blame"))
NEUTRAL_VERBS = (("sees", "see"), ("finds", "find"), ("holds", "hold"), ("takes", "take"))
POSITIVE_ADJECTIVES = ("happy", "kind", "lovely", "bright", "good", "gentle")
NEGATIVE_ADJECTIVES = ("sad", "angry", "awful", "gloomy", "bad", "cruel")
NEUTRAL_ADJECTIVES = ("small", "big", "old", "red", "green", "round")
COPULA = ("is", "are")

POSITIVE_WORDS = frozenset(
    [w for pair in POSITIVE_VERBS for w in pair] + list(POSITIVE_ADJECTIVES)
)
NEGATIVE_WORDS = frozenset(
    [w for pair in NEGATIVE_VERBS for w in pair] + list(NEGATIVE_ADJECTIVES)
)

SENTIMENTS = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class Span:
    """Labels for the characters ``text[start:end]``."""

    start: int
    end: int
    labels: dict[str, str]


@dataclass(frozen=True)
class Story:
    """Generated text plus its labelled character spans.

    Span label keys: ``kind`` ("sentiment" or "ioi") and ``sentiment`` on every sentence;
    ``subject_number`` ("singular"/"plural") on sentiment sentences; ``role`` ("subject",
    "verb") on those sentences' subject and verb words; ``io_name`` (the indirect object's
    name) on the final name of each IOI sentence, plus ``s_name`` (the repeated subject).
    """

    text: str
    spans: tuple[Span, ...] = field(default_factory=tuple)

    def spans_with(self, key: str) -> list[Span]:
        """The spans carrying label ``key``, in text order."""
        return [s for s in self.spans if key in s.labels]


class _Builder:
    """Appends words to a story while recording character spans."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[Span] = []

    def word(self, w: str, labels: dict[str, str] | None = None) -> None:
        if self.text and not self.text.endswith(" "):
            self.text += " "
        start = len(self.text)
        self.text += w
        if labels:
            self.spans.append(Span(start, len(self.text), labels))

    def punct(self, p: str) -> None:
        self.text += p

    def sentence_start(self) -> int:
        if self.text:
            self.text += " "
        return len(self.text)


def _sentiment_sentence(
    b: _Builder, rng: random.Random, names: list[str], sentiment: str, plural: bool,
    subject: list[str] | None = None,
) -> None:
    """One sentiment sentence; ``subject`` (e.g. ["the", "dogs"]) fixes its subject words,
    which must agree with ``plural``, instead of drawing them."""
    start = b.sentence_start()
    number = "plural" if plural else "singular"
    k = 1 if plural else 0
    if subject is not None:
        pass
    elif plural:
        subject = ["the", rng.choice(ANIMALS) + "s"]
    elif rng.random() < 0.5:
        subject = [rng.choice(names)]
    else:
        subject = ["the", rng.choice(ANIMALS)]
    for w in subject[:-1]:
        b.word(w)
    b.word(subject[-1], {"role": "subject"})

    if sentiment == "neutral":
        verbs, adjs = NEUTRAL_VERBS, NEUTRAL_ADJECTIVES
    elif sentiment == "positive":
        verbs, adjs = POSITIVE_VERBS, POSITIVE_ADJECTIVES
    else:
        verbs, adjs = NEGATIVE_VERBS, NEGATIVE_ADJECTIVES

    if rng.random() < 0.3:
        # "the dogs are happy near the river." : the adjective carries the sentiment.
        b.word(COPULA[k], {"role": "verb"})
        b.word(rng.choice(adjs))
    else:
        # The verb carries the sentiment; the adjective may too, or stay neutral.
        b.word(rng.choice(verbs)[k], {"role": "verb"})
        b.word("the")
        b.word(rng.choice(adjs if rng.random() < 0.5 else NEUTRAL_ADJECTIVES))
        b.word(rng.choice(OBJECTS))
    b.word(rng.choice(PREPOSITIONS))
    b.word("the")
    b.word(rng.choice(PLACES))
    b.punct(".")
    b.spans.append(
        Span(start, len(b.text), {"kind": "sentiment", "sentiment": sentiment,
                                  "subject_number": number})
    )


def _ioi_sentence(b: _Builder, rng: random.Random, names: list[str]) -> None:
    start = b.sentence_start()
    io, s = rng.sample(names, 2)
    first, second = (io, s) if rng.random() < 0.5 else (s, io)
    for w in ("when", first, "and", second, "went", "to", "the", rng.choice(PLACES)):
        b.word(w)
    b.punct(",")
    b.word(s)
    b.word("gave")
    b.word("a")
    b.word(rng.choice(OBJECTS))
    b.word("to")
    b.word(io, {"io_name": io, "s_name": s})
    b.punct(".")
    b.spans.append(Span(start, len(b.text), {"kind": "ioi", "sentiment": "neutral"}))


def _story(rng: random.Random, ioi_fraction: float) -> Story:
    b = _Builder()
    cast = rng.sample(NAMES, 3)
    for _ in range(rng.randint(3, 6)):
        if rng.random() < ioi_fraction:
            _ioi_sentence(b, rng, cast)
        else:
            _sentiment_sentence(b, rng, cast, rng.choice(SENTIMENTS), rng.random() < 0.5)
    b.spans.sort(key=lambda s: (s.start, -s.end))
    return Story(b.text, tuple(b.spans))


def generate_stories(n_stories: int, seed: int = 0, ioi_fraction: float = 0.25) -> list[Story]:
    """``n_stories`` stories of 3 to 6 sentences, the same for the same ``seed``.

    ioi_fraction: the chance that each sentence is an IOI sentence.
    """
    if n_stories < 0:
        raise ValueError(f"n_stories must be >= 0, got {n_stories}")
    if not 0.0 <= ioi_fraction <= 1.0:
        raise ValueError(f"ioi_fraction must be in [0, 1], got {ioi_fraction}")
    rng = random.Random(seed)
    return [_story(rng, ioi_fraction) for _ in range(n_stories)]


def stories_text(n_stories: int, seed: int = 0, ioi_fraction: float = 0.25) -> str:
    """Training text: the stories of `generate_stories`, one per line."""
    return "".join(s.text + "\n" for s in generate_stories(n_stories, seed, ioi_fraction))


def char_offsets(text: str) -> list[tuple[int, int]]:
    """Token offsets for a character-level tokenizer: ``[(0, 1), (1, 2), ...]``."""
    return [(i, i + 1) for i in range(len(text))]


def token_labels(
    spans: list[Span] | tuple[Span, ...], offsets: list[tuple[int, int]], key: str
) -> list[str | None]:
    """Per-token value of label ``key``, or None where no span with that key covers the token.

    offsets: each token's character ``(start, end)`` in the text, e.g. from a tokenizer's
    offset mapping or `char_offsets`. A token takes the label of the span it overlaps most, so
    a token like " john" (leading space) still gets the label of the span "john". Cost is
    tokens x spans, so label one story at a time, not a whole concatenated corpus.
    """
    keyed = [s for s in spans if key in s.labels]
    out: list[str | None] = []
    for start, end in offsets:
        best, best_overlap = None, 0
        for s in keyed:
            overlap = min(end, s.end) - max(start, s.start)
            if overlap > best_overlap:
                best, best_overlap = s.labels[key], overlap
        out.append(best)
    return out


def label_tokens(
    story: Story, key: str, offsets: list[tuple[int, int]] | None = None
) -> list[str | None]:
    """`token_labels` for a story; ``offsets=None`` means one token per character."""
    return token_labels(story.spans, char_offsets(story.text) if offsets is None else offsets, key)


def sentiment_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (positive, negative) sentence pairs that differ only in their sentiment words.

    For steering: contrast activations of the two members. Example:
    ("the dog loves the kind cat near the river.", "the dog hates the cruel cat near the river.")
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        plural = rng.random() < 0.5
        k = 1 if plural else 0
        subject = "the " + rng.choice(ANIMALS) + ("s" if plural else "")
        if not plural and rng.random() < 0.5:
            subject = rng.choice(NAMES)
        tail = f"{rng.choice(PREPOSITIONS)} the {rng.choice(PLACES)}."
        if rng.random() < 0.3:
            i = rng.randrange(len(POSITIVE_ADJECTIVES))
            pos = f"{subject} {COPULA[k]} {POSITIVE_ADJECTIVES[i]} {tail}"
            neg = f"{subject} {COPULA[k]} {NEGATIVE_ADJECTIVES[i]} {tail}"
        else:
            v = rng.randrange(len(POSITIVE_VERBS))
            a = rng.randrange(len(POSITIVE_ADJECTIVES))
            obj = rng.choice(OBJECTS)
            pos = f"{subject} {POSITIVE_VERBS[v][k]} the {POSITIVE_ADJECTIVES[a]} {obj} {tail}"
            neg = f"{subject} {NEGATIVE_VERBS[v][k]} the {NEGATIVE_ADJECTIVES[a]} {obj} {tail}"
        pairs.append((pos, neg))
    return pairs


_WORD = re.compile(r"[a-z]+")


def classify_sentiment(text: str) -> float:
    """Fraction of this corpus's sentiment words in ``text`` that are positive.

    1.0 is all positive, 0.0 all negative; 0.5 when the text has no sentiment word at all, so
    that neutral text sits between the two. Case-insensitive; other words are ignored.
    """
    words = _WORD.findall(text.lower())
    pos = sum(w in POSITIVE_WORDS for w in words)
    neg = sum(w in NEGATIVE_WORDS for w in words)
    return 0.5 if pos + neg == 0 else pos / (pos + neg)


def sentiment_sentence(subject: str, sentiment: str, rng: random.Random) -> str:
    """One sentence of the corpus about ``subject`` ("mary", "the dog", "the dogs") with
    ``sentiment``; the verb agrees with the subject (plural when it is "the <animal>s")."""
    if sentiment not in SENTIMENTS:
        raise ValueError(f"sentiment must be one of {SENTIMENTS}, got {sentiment!r}")
    words = subject.split()
    plural = len(words) == 2 and words[1].endswith("s") and words[1][:-1] in ANIMALS
    b = _Builder()
    _sentiment_sentence(b, rng, [], sentiment, plural, subject=words)
    return b.text
