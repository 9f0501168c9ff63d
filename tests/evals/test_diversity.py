"""distinct-n by hand and self-BLEU against NLTK's smoothed sentence BLEU."""

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from gptscope.evals.diversity import bleu, distinct_n, self_bleu
from gptscope.evals.stats import attack_success_rate, bootstrap_ci

TEXTS = [
    "tell a sad story about mary.",
    "tell a sad story about the dog.",
    "tell a happy story about tom and the red ball.",
    "who got the cake when mary and john went to the park.",
    "make it sad. the dog loves the kind cat near the river.",
    "sad mary",
    "tell a sad story about mary.",
]


def test_bleu_matches_nltk_method1():
    smooth = SmoothingFunction().method1
    words = [t.split() for t in TEXTS]
    for i, hyp in enumerate(words):
        refs = words[:i] + words[i + 1:]
        assert bleu(hyp, refs) == pytest.approx(
            sentence_bleu(refs, hyp, smoothing_function=smooth), abs=1e-12)


def test_self_bleu_is_the_mean_and_orders_sets():
    smooth = SmoothingFunction().method1
    words = [t.split() for t in TEXTS]
    expected = sum(sentence_bleu(words[:i] + words[i + 1:], w, smoothing_function=smooth)
                   for i, w in enumerate(words)) / len(words)
    assert self_bleu(TEXTS) == pytest.approx(expected, abs=1e-12)
    same = ["tell a sad story about mary."] * 4
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(TEXTS) < 0.6


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b", "a b"], n=1) == 2 / 6
    assert distinct_n(["a b a b", "a b"], n=2) == 2 / 4  # (a b) (b a) (a b) (a b)
    assert distinct_n(["a"], n=2) == 0.0
    assert distinct_n(["x y", "z w"], n=2) == 1.0


def test_attack_success_rate_and_bootstrap():
    assert attack_success_rate([0.9, 0.2, 0.5, 0.51]) == 0.5  # 0.5 is not above 0.5
    mean, low, high = bootstrap_ci([0.0] * 50 + [1.0] * 50, seed=3)
    assert mean == 0.5 and 0.38 < low < 0.45 and 0.55 < high < 0.62
    assert bootstrap_ci([1.0, 0.0, 1.0], seed=1) == bootstrap_ci([1.0, 0.0, 1.0], seed=1)


@pytest.mark.parametrize("call, needle", [
    (lambda: self_bleu(["only one"]), "at least 2"),
    (lambda: distinct_n("a string"), "list of strings"),
    (lambda: attack_success_rate([]), "non-empty"),
    (lambda: attack_success_rate([0.5, "high"]), "finite numbers"),
    (lambda: bootstrap_ci([1.0], confidence=1.5), "confidence"),
])
def test_bad_input_is_named(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()
