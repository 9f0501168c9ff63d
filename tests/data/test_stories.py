"""The generated story corpus: determinism, grammar, and labels that match the text."""

from __future__ import annotations

import re

import pytest

from gptscope.data import (
    Span,
    classify_sentiment,
    generate_stories,
    label_tokens,
    sentiment_pairs,
    stories_text,
    token_labels,
)
from gptscope.data import stories as S

STORIES = generate_stories(200, seed=3)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text)


def sentences(kind: str):
    for story in STORIES:
        for span in story.spans_with("kind"):
            if span.labels["kind"] == kind:
                yield story, span, story.text[span.start : span.end]


def test_deterministic() -> None:
    assert [s.text for s in generate_stories(20, seed=3)] == [s.text for s in STORIES[:20]]
    assert generate_stories(20, seed=3)[5].spans == STORIES[5].spans
    assert stories_text(20, seed=4) != stories_text(20, seed=3)


def test_small_alphabet() -> None:
    text = stories_text(200, seed=3)
    assert set(text) <= set("abcdefghijklmnopqrstuvwxyz .,\n")
    assert text.count("\n") == 200


def test_sentence_spans_tile_each_story() -> None:
    # Sentences are labelled end to end: every sentence span ends in '.', and joining the
    # sentence spans with single spaces rebuilds the story.
    for story in STORIES:
        spans = story.spans_with("kind")
        assert " ".join(story.text[s.start : s.end] for s in spans) == story.text
        assert all(story.text[s.end - 1] == "." for s in spans)


def test_sentiment_labels_match_words() -> None:
    seen = set()
    for _, span, sentence in sentences("sentiment"):
        ws = set(words(sentence))
        label = span.labels["sentiment"]
        seen.add(label)
        pos, neg = ws & S.POSITIVE_WORDS, ws & S.NEGATIVE_WORDS
        if label == "positive":
            assert pos and not neg, sentence
        elif label == "negative":
            assert neg and not pos, sentence
        else:
            assert not pos and not neg, sentence
    assert seen == {"positive", "negative", "neutral"}


def test_subject_verb_agreement() -> None:
    singular_verbs = {v[0] for v in S.POSITIVE_VERBS + S.NEGATIVE_VERBS + S.NEUTRAL_VERBS}
    plural_verbs = {v[1] for v in S.POSITIVE_VERBS + S.NEGATIVE_VERBS + S.NEUTRAL_VERBS}
    counts = {"singular": 0, "plural": 0}
    for story, span, sentence in sentences("sentiment"):
        number = span.labels["subject_number"]
        counts[number] += 1
        inside = [s for s in story.spans if span.start <= s.start and s.end <= span.end]
        role = {s.labels["role"]: story.text[s.start : s.end] for s in inside if "role" in s.labels}
        subject, verb = role["subject"], role["verb"]
        assert sentence.startswith(subject) or sentence.startswith("the " + subject)
        if number == "plural":
            assert subject[:-1] in S.ANIMALS and subject.endswith("s")
            assert verb in plural_verbs | {"are"}, sentence
        else:
            assert subject in S.ANIMALS or subject in S.NAMES
            assert verb in singular_verbs | {"is"}, sentence
    assert min(counts.values()) > 50


def test_ioi_label_is_the_name_not_repeated() -> None:
    n = 0
    for story, span, sentence in sentences("ioi"):
        m = re.fullmatch(
            r"when (\w+) and (\w+) went to the \w+, (\w+) gave a \w+ to (\w+)\.", sentence
        )
        assert m, sentence
        a, b, subject, last = m.groups()
        assert a != b and subject in (a, b)
        io = b if subject == a else a
        assert last == io
        [name_span] = [s for s in story.spans_with("io_name") if span.start <= s.start < span.end]
        assert name_span.labels["io_name"] == io and name_span.labels["s_name"] == subject
        assert story.text[name_span.start : name_span.end] == io
        assert name_span.end == span.end - 1  # the final name, right before the full stop
        n += 1
    assert n > 50


def test_token_labels_char_level_and_subword() -> None:
    text = "the dog runs. when"
    spans = [Span(0, 13, {"sentiment": "positive"}), Span(4, 7, {"io_name": "dog"})]
    labels = token_labels(spans, [(i, i + 1) for i in range(len(text))], "sentiment")
    assert labels == ["positive"] * 13 + [None] * 5
    # Subword offsets: " dog" (leading space) overlaps the name span most, so it gets its label.
    offsets = [(0, 3), (3, 7), (7, 12), (12, 13), (13, 18)]
    assert token_labels(spans, offsets, "io_name") == [None, "dog", None, None, None]
    assert token_labels(spans, offsets, "sentiment") == ["positive"] * 4 + [None]


def test_label_tokens_on_story() -> None:
    story = STORIES[0]
    per_char = label_tokens(story, "sentiment")
    assert len(per_char) == len(story.text)
    for span in story.spans_with("sentiment"):
        assert set(per_char[span.start : span.end]) == {span.labels["sentiment"]}


def test_sentiment_pairs_are_minimal_contrasts() -> None:
    pairs = sentiment_pairs(100, seed=1)
    assert pairs == sentiment_pairs(100, seed=1)
    for pos, neg in pairs:
        wp, wn = words(pos), words(neg)
        assert len(wp) == len(wn)
        diff = [(a, b) for a, b in zip(wp, wn, strict=True) if a != b]
        assert 1 <= len(diff) <= 2
        assert all(a in S.POSITIVE_WORDS and b in S.NEGATIVE_WORDS for a, b in diff)
        assert classify_sentiment(pos) == 1.0 and classify_sentiment(neg) == 0.0


def test_classify_sentiment() -> None:
    assert classify_sentiment("the dog loves the happy cat.") == 1.0
    assert classify_sentiment("The dogs HATE the sad cat.") == 0.0
    assert classify_sentiment("the dog loves the sad cat.") == 0.5
    assert classify_sentiment("the dog sees the cat.") == 0.5
    assert classify_sentiment("") == 0.5
    for _, span, sentence in sentences("sentiment"):
        expected = {"positive": 1.0, "negative": 0.0, "neutral": 0.5}[span.labels["sentiment"]]
        assert classify_sentiment(sentence) == expected


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_stories"):
        generate_stories(-1)
    with pytest.raises(ValueError, match="ioi_fraction"):
        generate_stories(3, ioi_fraction=2.0)
    with pytest.raises(ValueError, match="n must be"):
        sentiment_pairs(-2)
