"""What every lesson's own mistake list must meet: each mistake is told its own message and
none of the others on the exercise's lists, and every lesson's stub file runs, with each
exercise saying "not implemented". (Right answers and the references are run by
test_course_checks.py; each lesson's test_course_depth_*.py adds its hand-worked cases.)"""

from __future__ import annotations

import pytest

from gptscope.course import check, load_syllabus, stub_source

from . import (
    mutants_circuits,
    mutants_contrastive,
    mutants_data_parallel,
    mutants_encoder_decoder,
    mutants_features,
    mutants_gpt,
    mutants_interp,
    mutants_optimization,
    mutants_real_models,
    mutants_red_teaming,
    mutants_vision,
)
from .mutants import MUTANTS, TESTED_ELSEWHERE
from .strict import assert_named_alone

STRICT = (mutants_gpt, mutants_interp, mutants_real_models, mutants_circuits,
          mutants_features, mutants_optimization, mutants_data_parallel, mutants_contrastive,
          mutants_vision, mutants_encoder_decoder, mutants_red_teaming)
# An exercise test_course_checks.py leaves out (TESTED_ELSEWHERE) has its whole list here;
# for the others, only the mistakes these modules add (the rest are tested there).
_OWN = {ex: items for module in STRICT for ex, items in module.MUTANTS.items()}
CASES = [(ex, fn, phrase) for ex, own in _OWN.items()
         for fn, phrase in (MUTANTS[ex] if ex in TESTED_ELSEWHERE else own)]


@pytest.mark.parametrize("exercise,mutant,phrase", CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn, _ in CASES])
def test_mutant_gets_its_own_message_and_no_other(exercise, mutant, phrase):
    assert_named_alone(exercise, mutant, phrase, MUTANTS[exercise])


LESSONS = load_syllabus().lessons


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.id for lesson in LESSONS])
def test_stub_file_runs_and_each_exercise_says_not_implemented(lesson):
    namespace: dict = {}
    exec(compile(stub_source(lesson), lesson.module_name, "exec"), namespace)
    for exercise in lesson.exercises:
        result = check(exercise, namespace[exercise])
        assert not result.passed and not result.implemented, exercise
        assert "not implemented" in result.message, exercise
