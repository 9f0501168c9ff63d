"""Shifted stories: what the shift changes, and that the shipped stories model is worse
and over-confident on them, and that energy flags them (measured: accuracy 0.869 -> 0.678,
ECE 0.018 -> 0.151, AUROC energy 0.978, max-softmax 0.760; the bounds leave wide room)."""

import random

import gptscope as gs
from gptscope.data.stories import NAMES
from gptscope.evals.shift import UNSEEN_NAMES, shift_report, shifted_sentence


def test_shifted_sentence_swaps_names_and_adds_adjectives():
    rng = random.Random(0)
    out = shifted_sentence("when mary and tom went to the park, tom gave a cup to mary.", rng)
    words = out.replace(",", "").replace(".", "").split()
    assert not set(words) & set(NAMES) and set(words) & set(UNSEEN_NAMES)
    assert len(words) == 14 + 2
    assert words[1] == words[-1] and words[3] == words[10] and words[1] != words[3]


def test_the_stories_model_under_shift():
    report = shift_report(gs.load(gs.zoo.path("stories")).eval(), n=100)
    assert report["shifted_accuracy"] < report["stories_accuracy"] - 0.1
    assert report["shifted_ece"] > report["stories_ece"] + 0.05
    assert report["energy_auroc"] > 0.9
    assert report["energy_auroc"] > report["max_softmax_auroc"]
