"""Lesson 3c: evaluating models and red teaming them. Honest confidence, detectors, multiple
choice by log-likelihood, attack success and the diversity of the attacks."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int = 10,
                     scheme: str = "width") -> list[tuple[float, float, int, float, float]]:
    """The points of a reliability diagram: one row per bin, empty bins included.

    confidence [n] in [0, 1], correct [n] (bool or 0/1). Return ``n_bins`` tuples
    (lo, hi, count, mean confidence, accuracy), in order, for the bins (lo, hi]: open on the
    left, closed on the right, so a confidence on an edge belongs to the bin *below* it; a
    confidence of exactly 0 goes to the first bin. An empty bin has count 0 and NaN for its
    mean confidence and accuracy.

    scheme "width": edges 0, 1/n_bins, 2/n_bins, ..., 1. scheme "mass": with the confidences
    sorted into ``ordered`` [n], edge k (k = 1 .. n_bins - 1) is
    ``ordered[ceil(k * n / n_bins) - 1]`` (the k-th n_bins-quantile, clamped to n - 1), the
    first edge 0 and the last 1, so each bin holds about n / n_bins examples (ties can leave
    a bin empty). Any other scheme: raise ValueError.
    """
    conf = confidence.double()
    right = correct.double()
    n = len(conf)
    if scheme == "width":
        edges = [b / n_bins for b in range(n_bins + 1)]
    elif scheme == "mass":
        ordered = conf.sort().values.tolist()
        edges = [0.0] + [ordered[min(n - 1, math.ceil(k * n / n_bins) - 1)]
                         for k in range(1, n_bins)] + [1.0]
    else:
        raise ValueError(f"scheme must be 'width' or 'mass', got {scheme!r}")
    rows = []
    placed = torch.zeros(n, dtype=torch.bool)
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        # (lo, hi]: the first bin whose upper edge is at or above the confidence.
        members = ~placed & ((conf <= hi) if b < n_bins - 1 else torch.ones(n).bool())
        placed |= members
        count = int(members.sum())
        rows.append((lo, hi, count, conf[members].mean().item() if count else math.nan,
                     right[members].mean().item() if count else math.nan))
    return rows


def temperature_scale(logits: Tensor, labels: Tensor, val: Tensor) -> Tensor:
    """Temperature scaling done right: fit on validation rows, apply to every row.

    logits [n, n_classes], labels [n], val [n] bool (True = a validation row). Find the
    T > 0 that minimises the mean cross-entropy of softmax(logits[val] / T) at labels[val]
    (accurate to 1e-4 relative; T lies in [0.01, 100]), using *only* the validation rows,
    and return ``logits / T`` [n, n_classes] for all rows, validation and test (the
    learner's evaluation then reads the test rows). The argmax of each row never changes.
    """
    fit_logits, fit_labels = logits[val].double(), labels[val]

    def loss(log_t: float) -> float:
        return F.cross_entropy(fit_logits / math.exp(log_t), fit_labels).item()

    lo, hi = math.log(1e-2), math.log(1e2)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return logits / math.exp((lo + hi) / 2)


def ood_auroc(in_scores: Tensor, out_scores: Tensor) -> float:
    """How well an anomaly score tells out-of-distribution inputs from in-distribution ones
    (Hendrycks & Gimpel 2017 score with 1 - max softmax probability).

    in_scores [n_in], out_scores [n_out]: higher means "more anomalous". Return the AUROC
    with the out-of-distribution inputs as the positives: the probability that a random
    out-of-distribution input scores above a random in-distribution one, a tie counting one
    half. Raise ValueError if either tensor is empty. Return a Python float.
    """
    if len(in_scores) == 0 or len(out_scores) == 0:
        raise ValueError("in_scores and out_scores must each hold at least one score")
    pos, neg = out_scores.double(), in_scores.double()
    higher = (pos[:, None] > neg[None, :]).double()
    ties = (pos[:, None] == neg[None, :]).double()
    return (higher + 0.5 * ties).mean().item()


def loglik_choice(token_logprobs: list[list[float]], choices: list[str],
                  normalise: bool) -> int:
    """Answer a multiple-choice question by log-likelihood, as lm-evaluation-harness does.

    token_logprobs: one list per choice, the log-prob of each of its tokens after the
    question; choices: the choices' texts, as scored (a leading space counts). Each choice's
    log-likelihood is the sum of its tokens' log-probs. normalise=False: return the index of
    the largest log-likelihood (lm-eval's ``acc``). normalise=True: of the largest
    log-likelihood divided by ``len(choice)``, the number of *characters* (``acc_norm``).
    Ties go to the first such choice. Return a Python int.

    The trap: every extra token costs log-probability, so summing favours short answers.
    """
    scores = []
    for logprobs, text in zip(token_logprobs, choices, strict=True):
        total = sum(logprobs)
        scores.append(total / len(text) if normalise else total)
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best]:
            best = i
    return best


def attack_success_rate(scores: Tensor, threshold: float = 0.5) -> float:
    """The share of red-team attacks that succeeded (Perez et al. 2022).

    scores [n]: a judge's score per reply (e.g. an offensiveness classifier's probability).
    An attack succeeds when its score is *strictly* above ``threshold``. Return the fraction
    of the n attacks that succeeded, a Python float in [0, 1]. Raise ValueError if scores is
    empty.
    """
    if len(scores) == 0:
        raise ValueError("scores is empty: no attacks to score")
    return (scores.double() > threshold).double().mean().item()


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def self_bleu(texts: list[str], max_n: int = 4) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): how alike a set of texts is; 1 means each text
    repeats the others, lower is more diverse.

    Split each text on whitespace into words. For each text, its BLEU against all the
    *other* texts as references, averaged over the texts. BLEU of a hypothesis: for n = 1 ..
    max_n, the clipped precision p_n = (sum over the hypothesis's n-grams of min(its count,
    its largest count in any one reference)) / (the hypothesis's n-gram count); BLEU =
    BP * exp(mean_n log p_n). Smoothing ("method 1"): a p_n with no match is 0.1 / the
    n-gram count (0.1 / 1 when the text has fewer than n words); but a text with no unigram
    match, or no words, scores 0. Brevity penalty BP = 1 if the hypothesis length c exceeds
    r, else exp(1 - r / c), with r the reference length closest to c (the shorter on a tie).
    Return a Python float.
    """
    words = [t.split() for t in texts]
    total = 0.0
    for i, hyp in enumerate(words):
        refs = words[:i] + words[i + 1:]
        total += _bleu(hyp, refs, max_n)
    return total / len(words)


def _bleu(hyp: list[str], refs: list[list[str]], max_n: int) -> float:
    if not hyp:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        counts = _ngrams(hyp, n)
        best: Counter = Counter()
        for ref in refs:
            for gram, c in _ngrams(ref, n).items():
                best[gram] = max(best[gram], c)
        hits = sum(min(c, best[g]) for g, c in counts.items())
        if n == 1 and hits == 0:
            return 0.0
        log_p += math.log(max(hits, 0.1) / max(sum(counts.values()), 1))
    c = len(hyp)
    r = min(refs, key=lambda ref: (abs(len(ref) - c), len(ref))).__len__()
    return (1.0 if c > r else math.exp(1 - r / c)) * math.exp(log_p / max_n)


def explore_length_trap(context: str = "the cat sees the green flower") -> dict[str, Any]:
    """Given: ask the shipped stories model (a character model) how a sentence ends,
    scoring three endings with *your* ``loglik_choice`` both ways: two whole endings and a
    fragment, " near", that no story stops at. Every character costs log-probability, so
    the summed log-likelihood picks the fragment, the shortest ending; divided by
    characters, a whole ending wins."""
    import gptscope as gs
    from gptscope.evals.loglik import continuation_logprobs

    model = gs.load(gs.zoo.path("stories"))
    choices = [" near", " near the market.", " in the park."]
    tok = model.tokenizer
    logprobs = continuation_logprobs(model, [(tok.encode(context), tok.encode(c))
                                             for c in choices])
    by_sum = loglik_choice(logprobs, choices, normalise=False)
    by_char = loglik_choice(logprobs, choices, normalise=True)
    for text, lp in zip(choices, logprobs):
        print(f"{text!r:>20}: log-lik {sum(lp):7.3f}, per character {sum(lp) / len(text):7.3f}")
    print(f"summed picks {choices[by_sum]!r}; per character picks {choices[by_char]!r}")
    return {"choices": choices, "by_sum": by_sum, "by_char": by_char,
            "logliks": [sum(lp) for lp in logprobs]}
