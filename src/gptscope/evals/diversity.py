"""How varied is a set of texts? distinct-n (Li et al. 2016) and self-BLEU (Zhu et al. 2018,
Texygen), the diversity measures Perez et al. 2022 report beside attack success.

Texts are split on whitespace into words (pass ``tokenize`` to split otherwise).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _check_texts(texts: Sequence[str], at_least: int) -> None:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings")
    if len(texts) < at_least:
        raise ValueError(f"texts needs at least {at_least} strings, got {len(texts)}")


def distinct_n(texts: Sequence[str], n: int = 2,
               tokenize: Callable[[str], list[str]] = str.split) -> float:
    """Distinct n-grams over all n-grams in ``texts`` (0 when no text has n words): 1 means
    no n-gram repeats anywhere in the set."""
    _check_texts(texts, 1)
    counts: Counter = Counter()
    for text in texts:
        counts.update(_ngrams(tokenize(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def bleu(hypothesis: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU of word lists: the geometric mean of modified n-gram precisions, n = 1
    .. max_n, times the brevity penalty against the closest reference length. A precision
    with no match counts as 0.1 / its n-gram count ("method 1" smoothing, Chen & Cherry 2014,
    as Texygen's self-BLEU uses), so short texts do not all score 0; this is NLTK's
    ``sentence_bleu`` with ``SmoothingFunction().method1``, which the tests compare with."""
    if not hypothesis:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        best: Counter = Counter()
        for ref in references:
            best |= _ngrams(ref, n)  # per n-gram, the largest count in any one reference
        hits = sum(min(c, best[g]) for g, c in hyp.items())
        if n == 1 and hits == 0:
            return 0.0  # no word in common: no smoothing rescues that
        # A text shorter than n words has no n-grams: smoothed as 0.1 / 1, as NLTK does.
        log_p += math.log((hits if hits else 0.1) / max(sum(hyp.values()), 1)) / max_n
    c = len(hypothesis)
    r = min((abs(len(ref) - c), len(ref)) for ref in references)[1]
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_p)


def self_bleu(texts: Sequence[str], max_n: int = 4,
              tokenize: Callable[[str], list[str]] = str.split) -> float:
    """The mean BLEU of each text against all the others as references: 1 means every text
    repeats the rest, lower is more diverse."""
    _check_texts(texts, 2)
    words = [tokenize(t) for t in texts]
    scores = [bleu(w, words[:i] + words[i + 1:], max_n) for i, w in enumerate(words)]
    return sum(scores) / len(scores)
