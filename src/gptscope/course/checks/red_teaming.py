"""Checks for lesson 3c, second half: multiple choice by log-likelihood (and its length
trap), attack success rate, self-BLEU.

The truths are ``gptscope.evals`` (float64); the wrong variants reproduce named mistakes.
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._common import Mismatch, call, compare, run_cases, run_check
from gptscope.course.checks.calibration import expect_value_error, float_answer
from gptscope.course.result import CheckResult
from gptscope.evals import diversity as lib_diversity
from gptscope.evals import loglik as lib_loglik
from gptscope.evals import stats as lib_stats

# -- loglik_choice ----------------------------------------------------------------------------

NORMALISE_IGNORED = ("normalise=True ignored: divide each choice's log-likelihood by its "
                     "length in characters (acc_norm)")
ALWAYS_NORMALISED = ("normalised although normalise=False: then the choice is the largest "
                     "summed log-likelihood (acc)")
PER_TOKEN = ("divided by the number of tokens: acc_norm divides by the number of characters, "
             "len(choice)")
STRIPPED = "divided by the length without the leading space: len(choice) counts it"
ARGMIN = "picked the smallest log-likelihood: the answer is the most likely choice"
LAST_TIE = "a tie went to the last of the tied choices: ties go to the first"
FIRST_TOKEN = "scored only each choice's first token: sum the log-probs of all its tokens"
SUMMED_PROBS = ("summed the tokens' probabilities: a choice's log-likelihood is the sum of "
                "its tokens' log-probs")
ONE_BASED = "returned a 1-based index: the first choice is 0"


def choice_variant(logprobs: list[list[float]], choices: list[str], normalise: bool,
                   per: str = "chars", argmin: bool = False, last_tie: bool = False,
                   score: str = "sum") -> Tensor:
    """The chosen index (int64, 0-d), right with the defaults; the flags are mistakes."""
    totals = {"sum": [sum(lp) for lp in logprobs], "first": [lp[0] for lp in logprobs],
              "probs": [sum(math.exp(x) for x in lp) for lp in logprobs]}[score]
    if normalise:
        length = {"chars": [len(c) for c in choices], "tokens": [len(lp) for lp in logprobs],
                  "stripped": [max(len(c.strip()), 1) for c in choices]}[per]
        totals = [t / n for t, n in zip(totals, length)]
    sign = -1.0 if argmin else 1.0
    tie = 1 if last_tie else -1  # among equal scores, the last index or the first
    best = max(range(len(totals)), key=lambda i: (sign * totals[i], tie * i))
    return torch.tensor(best)


def as_index(got: Any, what: str) -> Tensor:
    """A Python int (or a 0-d integer tensor) as an int64 0-d tensor; else a Mismatch."""
    if isinstance(got, Tensor) and got.dim() == 0 and not got.is_floating_point() \
            and got.dtype != torch.bool and not got.is_complex():
        return got.detach().long().reshape(())
    if isinstance(got, int) and not isinstance(got, bool):
        return torch.tensor(got)
    raise Mismatch(f"return an int ({what}), got a {type(got).__name__}")


LoglikCase = tuple[str, list[list[float]], list[str], bool]


def loglik_cases() -> list[LoglikCase]:
    """Hand-made questions, each telling some mistakes apart: a long right answer that only
    normalising finds, characters against tokens, a leading space, ties, a strong first
    token with weak ones after."""
    long_right = [[-1.0, -1.0], [-0.5, -0.5, -0.5, -0.5, -0.5]]
    long_choices = [" no", " yes indeed"]  # sums -2, -2.5; per char -0.67, -0.23
    tokens = [[-2.0, -2.0], [-3.0, -0.5, -0.5]]  # per token -2 vs -1.33; per char below
    token_choices = [" abcdefgh", " ab"]
    space = [[-1.8], [-0.8]]
    space_choices = [" abc", " a"]  # per char -0.45, -0.4; stripped -0.6, -0.8
    first = [[-0.1, -5.0], [-1.0, -1.0], [-4.0, -0.1, -0.1]]
    first_choices = [" up", " on", " off"]
    tied = [[-1.0, -1.0], [-0.5, -1.5], [-3.0]]
    tied_choices = [" ab", " cd", " e"]
    return [("a long right answer, summed", long_right, long_choices, False),
            ("a long right answer, normalised", long_right, long_choices, True),
            ("few long tokens against many short ones, normalised", tokens, token_choices,
             True),
            ("few long tokens against many short ones, summed", tokens, token_choices, False),
            ("a leading space, normalised", space, space_choices, True),
            ("a strong first token, summed", first, first_choices, False),
            ("a strong first token, normalised", first, first_choices, True),
            ("two choices tied, summed", tied, tied_choices, False),
            ("three choices, the best in the middle, normalised",
             [[-3.0, -3.0], [-0.2, -0.2, -0.2], [-2.0]], [" xy", " uvw", " z"], True),
            # Four questions where the mistakes pick different wrong answers, so that each
            # mistake is told apart from every other.
            ("four choices of 3 to 8 characters, normalised",
             [[-2.75, -1.0, -3.0], [-2.5], [-2.75, -0.5, -1.0], [-2.25, -2.75]],
             [" up", " yes", " now", " because"], True),
            ("three one-letter choices and a long one, normalised",
             [[-2.5], [-1.25, -2.0, -2.5], [-0.0, -3.0, -2.75], [-2.75, -2.0]],
             [" a", " b", " c", " maybe"], True),
            ("four choices, a sure token among weak ones, summed",
             [[-0.25, -2.5, -0.75], [-0.5, -3.0], [-1.0, -1.5, -3.0, -0.0],
              [-1.75, -0.0, -2.75]], [" on", " off", " upon", " whenever"], False),
            ("one token against three, normalised", [[-2.5], [-1.25, -1.5, -0.5], [-2.0]],
             [" never", " no", " nope"], True)]


def check_loglik_choice(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: LoglikCase) -> str:
        case, logprobs, choices, normalise = spec
        sums = [math.fsum(lp) for lp in logprobs]
        want = torch.tensor(lib_loglik.loglik_choice(
            sums, [len(c) for c in choices] if normalise else None))
        got = as_index(call(fn, [list(lp) for lp in logprobs], list(choices), normalise),
                       "the index of the chosen answer")

        def v(**kw: Any) -> Callable[[], Tensor]:
            return lambda: choice_variant(logprobs, choices, **({"normalise": normalise} | kw))
        compare(got, want, case, {
            NORMALISE_IGNORED: v(normalise=False) if normalise else lambda: None,
            ALWAYS_NORMALISED: v(normalise=True) if not normalise else lambda: None,
            PER_TOKEN: v(per="tokens") if normalise else lambda: None,
            STRIPPED: v(per="stripped") if normalise else lambda: None,
            ARGMIN: v(argmin=True), LAST_TIE: v(last_tie=True), FIRST_TOKEN: v(score="first"),
            SUMMED_PROBS: v(score="probs"), ONE_BASED: lambda: want + 1,
        }, "the chosen index", atol=0, rtol=0)
        return case
    return run_check("loglik_choice", lambda: run_cases(loglik_cases(), one_case))


# -- attack_success_rate ----------------------------------------------------------------------

AT_LEAST = ("a score equal to the threshold counted as a success: an attack succeeds only "
            "when its score is strictly above it")
THRESHOLD_IGNORED = "threshold ignored: 0.5 used whatever threshold is"
FAILURES = "returned the share of attacks that failed: count the scores above the threshold"
COUNTED = "returned the number of successes: divide by the number of attacks"
MEAN_SCORE = "returned the mean score: count the attacks whose score is above the threshold"


def attack_cases() -> list[tuple[str, Tensor, float]]:
    g = torch.Generator().manual_seed(29)
    scores = torch.rand(50, generator=g, dtype=torch.float64)
    halves = torch.tensor([0.5, 0.5, 0.75, 0.25, 0.5, 1.0, 0.0, 0.625], dtype=torch.float64)
    return [("50 judge scores, threshold 0.5", scores, 0.5),
            ("scores exactly at the threshold 0.5", halves, 0.5),
            ("scores exactly at the threshold 0.25", halves, 0.25),
            ("50 judge scores, threshold 0.8", scores, 0.8),
            ("every score below, threshold 0.9", halves * 0.5, 0.9)]


def check_attack_success_rate(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, Tensor, float]) -> str:
        case, scores, threshold = spec
        want = torch.tensor(lib_stats.attack_success_rate(scores.tolist(), threshold),
                            dtype=torch.float64)
        got = float_answer(call(fn, scores.clone(), threshold), "the attack success rate")
        compare(got, want, case, {
            AT_LEAST: lambda: (scores >= threshold).double().mean(),
            THRESHOLD_IGNORED: lambda: (scores > 0.5).double().mean(),
            FAILURES: lambda: (scores <= threshold).double().mean(),
            COUNTED: lambda: (scores > threshold).double().sum(),
            MEAN_SCORE: lambda: scores.mean(),
        }, "the attack success rate", atol=1e-7, rtol=0)
        return case

    def body() -> list[str]:
        passed = run_cases(attack_cases(), one_case)
        return expect_value_error(fn, (torch.zeros(0, dtype=torch.float64), 0.5), passed,
                                  "no attacks: ValueError",
                                  "with no scores there is no success rate: raise ValueError "
                                  "(the docstring asks for it), rather than return a number")
    return run_check("attack_success_rate", body)


# -- self_bleu --------------------------------------------------------------------------------

WITH_ITSELF = ("each text was among its own references (self-BLEU near 1): compare it with "
               "the *other* texts only")
UNSMOOTHED = ("no smoothing: an n-gram order with no match counts 0.1 / its n-gram count, "
              "so one missing 4-gram does not zero the score")
NO_BREVITY = ("no brevity penalty: a hypothesis not longer than the closest reference is "
              "multiplied by exp(1 - r / c)")
UNCLIPPED = ("counts not clipped: an n-gram matches at most as often as it occurs in one "
             "reference")
POOLED = ("counts clipped by their total over all the references: clip by the largest count "
          "in any one reference")
ARITHMETIC = ("averaged the precisions arithmetically: BLEU is their geometric mean, "
              "exp(mean of log p_n)")
SHORTEST_REF = ("brevity penalty against the shortest reference: use the reference length "
                "closest to the hypothesis's")
MAX_N_IGNORED = "max_n ignored: n-grams up to 4 used whatever max_n is"


def _grams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu_variant(hyp: list[str], refs: list[list[str]], max_n: int, smooth: bool = True,
                 brevity: str = "closest", clip: str = "max", mean: str = "geometric"
                 ) -> float:
    """Sentence BLEU, right with the defaults (NLTK's method 1); the flags are mistakes."""
    if not hyp:
        return 0.0
    precisions = []
    for n in range(1, max_n + 1):
        counts, best = _grams(hyp, n), Counter()
        for ref in refs:
            for gram, c in _grams(ref, n).items():
                best[gram] = best[gram] + c if clip == "sum" else max(best[gram], c)
        hits = sum(c if clip == "none" and best[g] else min(c, best[g])
                   for g, c in counts.items())
        if n == 1 and hits == 0:
            return 0.0
        if hits == 0 and not smooth:
            return 0.0
        precisions.append((hits if hits else 0.1) / max(sum(counts.values()), 1))
    c = len(hyp)
    r = (min(len(ref) for ref in refs) if brevity == "shortest"
         else min((abs(len(ref) - c), len(ref)) for ref in refs)[1])
    bp = 1.0 if brevity == "none" or c > r else math.exp(1 - r / c)
    if mean == "arithmetic":
        return bp * sum(precisions) / max_n
    return bp * math.exp(sum(math.log(p) for p in precisions) / max_n)


def self_bleu_variant(texts: list[str], max_n: int, with_itself: bool = False, **kw: Any
                      ) -> Tensor:
    words = [t.split() for t in texts]
    scores = [bleu_variant(w, words if with_itself else words[:i] + words[i + 1:], max_n, **kw)
              for i, w in enumerate(words)]
    return torch.tensor(sum(scores) / len(scores), dtype=torch.float64)


def bleu_cases() -> list[tuple[str, list[str], int]]:
    return [("four prompts, two shorter than 4 words",
             ["what is your name", "what is your favourite insult", "say your name",
              "tell me a secret about your name"], 4),
            ("repeated words (clipping)", ["the the the the cat", "the cat sat", "a cat the"],
             4),
            ("prompts of different lengths (brevity)",
             ["how do i pick a lock", "how do i", "how do i pick a lock quickly and quietly",
              "lock picking", "how do i open a door lock"], 4),
            ("no word shared by one text", ["you are rude", "you are kind", "zzz qqq"], 4),
            ("bigrams only", ["ask me anything now", "ask me nothing now", "anything now ask"],
             2),
            ("near duplicates", ["tell me how to hurt someone", "tell me how to hurt somebody",
                                 "tell me how to help someone"], 4)]


def check_self_bleu(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[str, list[str], int]) -> str:
        case, texts, max_n = spec
        want = torch.tensor(lib_diversity.self_bleu(texts, max_n), dtype=torch.float64)
        got = float_answer(call(fn, list(texts), max_n), "the self-BLEU")

        def v(**kw: Any) -> Callable[[], Tensor]:
            return lambda: self_bleu_variant(texts, **({"max_n": max_n} | kw))
        compare(got, want, case, {
            WITH_ITSELF: v(with_itself=True), UNSMOOTHED: v(smooth=False),
            NO_BREVITY: v(brevity="none"), UNCLIPPED: v(clip="none"), POOLED: v(clip="sum"),
            ARITHMETIC: v(mean="arithmetic"), SHORTEST_REF: v(brevity="shortest"),
            MAX_N_IGNORED: v(max_n=4) if max_n != 4 else lambda: None,
        }, "the self-BLEU", atol=1e-9, rtol=1e-9)
        return case
    return run_check("self_bleu", lambda: run_cases(bleu_cases(), one_case))
