"""Lesson 3c (evaluating models and red teaming them) at depth: the lesson sits after 3b with
enough mistakes and right answers, the checks' wrong variants are right with their flags
off (they agree with gptscope.evals), the references agree with cases worked by hand, and
the exploration shows the length trap on the shipped stories model. (Each mistake told its
own message alone: test_course_depth.py; right answers: test_course_checks.py.)"""

from __future__ import annotations

import math
import re

import pytest
import torch

import gptscope as gs
from gptscope.course import check, load_syllabus, stub_source
from gptscope.course.checks import calibration as cc
from gptscope.course.checks import evaluation as ce
from gptscope.course.checks import red_teaming as cr
from gptscope.course.solutions import lesson03c_red_teaming as s03c
from gptscope.evals import diversity as lib_div

from .mutants_red_teaming import MUTANTS, RIGHT_ANSWERS

EXERCISES = ["reliability_bins", "temperature_scale", "ood_auroc", "loglik_choice",
             "attack_success_rate", "self_bleu"]


def test_the_syllabus_lists_the_lesson_after_03b_with_enough_mutants():
    syl = load_syllabus()
    ids = [lesson.id for lesson in syl.lessons]
    assert ids.index("03b") + 1 == ids.index("03c") == ids.index("04") - 1
    lesson = syl.lesson("3c")
    assert lesson is syl.lesson("red_teaming")
    assert lesson.exercises == EXERCISES and lesson.module_name == "lesson03c_red_teaming"
    titles = " ".join(r.title for r in lesson.readings)
    for paper in ("Guo et al. 2017", "Hendrycks & Gimpel 2017", "Perez et al. 2022",
                  "Zhu et al. 2018"):
        assert paper in titles, paper
    shown = [lesson.title, lesson.builds, syl.follows(lesson), *(g.text for g in lesson.goals)]
    assert not any(re.search(r"\b00\d\b", text) for text in shown), shown
    assert set(MUTANTS) == set(RIGHT_ANSWERS) == set(EXERCISES)
    for name in EXERCISES:
        assert len(MUTANTS[name]) >= 6 and len(RIGHT_ANSWERS[name]) >= 2, name
        assert any("differs from the right answer" in p or "ValueError" in p
                   for _, p in MUTANTS[name]), name
    assert "explore_length_trap" in stub_source(lesson)


def test_stub_docstrings_state_the_contract():
    source = stub_source(load_syllabus().lesson("03c"))
    assert "(lo, hi]" in source and "ceil(k * n / n_bins) - 1" in source
    assert "val [n] bool" in source and "logits / T" in source
    assert "len(choice)" in source and "leading space" in source
    assert "*strictly* above" in source and "0.1 / the" in source
    assert "_bleu" not in source.split("def self_bleu")[1].split('"""')[2]


def test_the_variants_with_their_flags_off_are_the_library():
    for _, conf, correct, n_bins, scheme in ce.bins_cases():
        torch.testing.assert_close(ce.bins_variant(conf, correct, n_bins, scheme),
                                   ce.bins_truth(conf, correct, n_bins, scheme),
                                   equal_nan=True, rtol=0, atol=0)
    for _, texts, max_n in cr.bleu_cases():
        assert float(cr.self_bleu_variant(texts, max_n)) == pytest.approx(
            lib_div.self_bleu(texts, max_n), abs=1e-12)
    for _, logprobs, choices, normalise in cr.loglik_cases():
        assert int(cr.choice_variant(logprobs, choices, normalise)) == \
            s03c.loglik_choice(logprobs, choices, normalise)


def test_reliability_bins_by_hand():
    # 4 equal-width bins: 0 and 0.25 fall in the first, 0.5 in the second (edges belong to
    # the bin below), nothing in (0.5, 0.75], 1.0 in the last.
    conf = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    rows = s03c.reliability_bins(conf, torch.tensor([1, 0, 1, 1]), 4)
    assert [r[2] for r in rows] == [2, 1, 0, 1]
    assert rows[0][:4] == (0.0, 0.25, 2, 0.125) and rows[0][4] == 0.5
    assert math.isnan(rows[2][3]) and math.isnan(rows[2][4])
    # equal mass, n = 5, 2 bins: the edge is ordered[ceil(5 / 2) - 1] = ordered[2] = 0.3
    conf = torch.tensor([0.9, 0.1, 0.3, 0.2, 0.8], dtype=torch.float64)
    rows = s03c.reliability_bins(conf, torch.ones(5), 2, "mass")
    assert [(r[0], r[1], r[2]) for r in rows] == [(0.0, 0.3, 3), (0.3, 1.0, 2)]
    bumped = ce.bins_variant(conf, torch.ones(5), 2, "mass", mass_offset=0)
    assert bumped[0, 1].item() == 0.8 and bumped[0, 2].item() == 4
    with pytest.raises(ValueError):
        s03c.reliability_bins(conf, torch.ones(5), 2, "quantile")


def test_temperature_scale_fits_on_validation_rows_only():
    # Validation rows drawn from softmax(z) but shown as 3 z: T is close to 3; the test rows
    # are noise and must not move it.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8000, 4, generator=g, dtype=torch.float64)
    labels = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(-1)
    val = torch.arange(8000) < 6000
    labels[~val] = torch.randint(0, 4, (2000,), generator=g)
    out = s03c.temperature_scale(3 * z, labels, val)
    t = (3 * z[0, 0] / out[0, 0]).item()
    assert t == pytest.approx(3.0, rel=0.05)
    assert torch.equal(out.argmax(-1), z.argmax(-1))


def test_ood_auroc_and_attack_success_rate_by_hand():
    # out 0.8, 0.4 against in 0.4, 0.1: win, win, tie, win -> 3.5 / 4
    assert s03c.ood_auroc(torch.tensor([0.4, 0.1]), torch.tensor([0.8, 0.4])) == 0.875
    with pytest.raises(ValueError):
        s03c.ood_auroc(torch.tensor([]), torch.tensor([0.3]))
    scores = torch.tensor([0.5, 0.51, 0.2, 0.9])
    assert s03c.attack_success_rate(scores) == 0.5  # 0.5 itself is not above 0.5
    assert s03c.attack_success_rate(scores, 0.95) == 0.0
    with pytest.raises(ValueError):
        s03c.attack_success_rate(torch.tensor([]))


def test_loglik_choice_by_hand_shows_the_length_trap():
    logprobs = [[-1.0, -1.0], [-0.5] * 5]  # sums -2 and -2.5
    choices = [" no", " yes indeed"]  # 3 and 11 characters: -0.67 and -0.23 per character
    assert s03c.loglik_choice(logprobs, choices, normalise=False) == 0
    assert s03c.loglik_choice(logprobs, choices, normalise=True) == 1
    assert s03c.loglik_choice([[-1.0], [-1.0]], [" a", " b"], normalise=True) == 0  # tie


def test_self_bleu_by_hand():
    # Two identical texts of 4+ words repeat each other: 1. Two texts sharing no word: 0.
    assert s03c.self_bleu(["the cat sat down", "the cat sat down"]) == pytest.approx(1.0)
    assert s03c.self_bleu(["red fox", "blue whale"]) == 0.0
    # "a b" against "a c": p1 = 1/2, p2 = 0.1 / 1 (smoothed), equal lengths so BP = 1:
    # BLEU with max_n = 2 is sqrt(0.05) for each text.
    assert s03c.self_bleu(["a b", "a c"], max_n=2) == pytest.approx(math.sqrt(0.05))
    with_itself = cr.self_bleu_variant(["a b", "a c"], 2, with_itself=True)
    assert float(with_itself) == pytest.approx(1.0)


def test_the_auroc_checks_share_their_variants():
    # 3b's and 3c's AUROC checks read one list of mistakes; only 3c's swapped message differs.
    scores, labels = torch.tensor([0.1, 0.4, 0.4]), torch.tensor([0, 1, 0])
    assert set(cc.auroc_variants(scores, labels)) - {cc.SWAPPED} == \
        set(cc.auroc_variants(scores, labels, ce.OOD_SWAPPED)) - {ce.OOD_SWAPPED}
    assert check("auroc", lambda s, y: 1 - cc.auroc_truth(s, y).item()).message == cc.SWAPPED


def test_explore_shows_the_length_trap_on_the_stories_model(capsys):
    found = s03c.explore_length_trap()
    choices = found["choices"]
    # Summing picks the fragment " near", the shortest choice; per character a whole ending.
    assert choices[found["by_sum"]] == " near"
    assert len(choices[found["by_char"]]) > len(choices[found["by_sum"]])
    assert choices[found["by_char"]].endswith(".")
    assert max(found["logliks"]) == found["logliks"][found["by_sum"]]
    assert "per character picks" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES)
def test_reference_solution_passes_and_odd_answers_fail(exercise):
    assert gs.course.check(exercise, getattr(s03c, exercise)).passed
    for answer in (lambda *a: None, lambda *a: 3.0, lambda *a: torch.zeros(2),
                   lambda *a: [1, 2], lambda *a: torch.full((2, 5), float("nan"))):
        result = gs.course.check(exercise, answer)
        assert not result.passed and result.message, exercise
        assert "could not read your answer" not in result.message, (exercise, result.message)
