"""The syllabus data and the stubs made from the reference solutions."""

from __future__ import annotations

import ast

import pytest

from gptscope.course import check, load_syllabus, stub_source
from gptscope.course.checks import CHECKS
from gptscope.course.exercises import load_learner_module, start_lesson

SYLLABUS = load_syllabus()


def test_lessons_in_order_with_3b():
    ids = [lesson.id for lesson in SYLLABUS.lessons]
    assert ids == ["01", "02", "03", "03b", "03c", "04", "05", "05b", "05c", "06", "06b",
                   "06c", "06d", "07", "08", "09", "10", "11", "12", "13", "13b", "14"]
    assert len(set(SYLLABUS.exercises)) == len(SYLLABUS.exercises)
    for required in ("mlp_forward", "mlp_backward", "train_classifier", "softmax",
                     "log_softmax", "cross_entropy", "sinusoidal_positions", "causal_mask",
                     "attention", "multihead_attention", "layer_norm", "transformer_block",
                     "gpt_forward", "sample_next", "bpe_merge", "train_step", "train_loop",
                     "induction_score", "logit_lens", "activation_patching", "linear_probe",
                     "steering_vector", "sae_loss", "flops_per_token", "fit_power_law",
                     "expected_calibration_error"):
        assert required in CHECKS, required


def test_seed_000_keeps_both_halves_with_minutes():
    week1 = SYLLABUS.lesson("1")
    kinds = [r.kind for r in week1.readings]
    assert kinds.count("conceptual") == 2 and kinds.count("technical") == 3
    assert [r.minutes for r in week1.readings] == [60, 30, 21, 40, 30]
    assert week1.readings[0].link == "https://homosabiens.substack.com/p/deadly-by-default"
    week6 = SYLLABUS.lesson("gpt")
    assert week6.readings[-1].minutes == 120
    assert {r.kind for r in SYLLABUS.lesson("05").readings} == {"conceptual", "technical"}


def test_lesson_lookup_forms():
    assert SYLLABUS.lesson("4").id == "04"
    assert SYLLABUS.lesson("attention").id == "04"
    assert SYLLABUS.lesson("lesson04_attention").id == "04"
    assert SYLLABUS.lesson("3B").id == "03b"
    assert SYLLABUS.lesson("3c").id == "03c"
    assert SYLLABUS.lesson_of("sae_loss").id == "12"
    with pytest.raises(ValueError, match="lessons are"):
        SYLLABUS.lesson("99")


@pytest.mark.parametrize("lesson", SYLLABUS.lessons, ids=lambda lesson: lesson.id)
def test_stub_keeps_docstrings_and_hides_bodies(lesson, tmp_path):
    source = stub_source(lesson)
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not any(name.startswith("_") for name in funcs)
    for ex in lesson.exercises:
        node = funcs[ex]
        assert ast.get_docstring(node), ex
        assert len(node.body) == 2 and isinstance(node.body[1], ast.Raise), ex
    path = start_lesson(lesson.id, tmp_path)
    module = load_learner_module(path)
    for ex in lesson.exercises:
        result = check(ex, getattr(module, ex))
        assert not result.passed and "not implemented" in result.message


def test_learners_read_seed_names_and_reading_times_not_ids_or_zeros():
    from gptscope.course.notebooks import lesson_intro

    syl = load_syllabus()
    attention = syl.lesson("04")
    intro = lesson_intro(attention)
    assert "AI Safety at UCLA Intro Fellowship: Transformers Track: week 4" in intro
    assert "000 week" not in intro and "(seed 000)" not in intro
    # Lesson 4's goals are about attention, not the fellowship's research-culture goals.
    assert all("attention" in g.text for g in attention.goals)
    assert syl.source("999 week 1") == "999 week 1"  # an unknown seed stays as written
    for lesson in syl.lessons:
        timed = [r.minutes for r in lesson.readings if r.minutes is not None]
        text = lesson.reading_time
        if not lesson.readings:
            assert text == "no readings"
        elif not timed:
            assert "times not given" in text and "0 min" not in text
        else:
            assert f"{sum(timed)} min" in text
