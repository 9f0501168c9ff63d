"""Every reference solution passes its check; every known mutant fails, naming its mistake."""

from __future__ import annotations

import pytest
import torch

from gptscope.course import check, load_syllabus
from gptscope.course.checks import CHECKS
from gptscope.course.exercises import solution_module

from .mutants import MUTANTS, TESTED_ELSEWHERE
from .right_answers import RIGHT

SYLLABUS = load_syllabus()
EXERCISES = [(lesson, ex) for lesson in SYLLABUS.lessons for ex in lesson.exercises]


def test_every_syllabus_exercise_has_a_check_and_mutants():
    assert set(CHECKS) == set(SYLLABUS.exercises)
    assert set(MUTANTS) == set(SYLLABUS.exercises)


@pytest.mark.parametrize("lesson,exercise", EXERCISES, ids=[e for _, e in EXERCISES])
def test_reference_solution_passes(lesson, exercise):
    result = check(exercise, getattr(solution_module(lesson), exercise))
    assert result.passed, str(result)


CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items
         if ex not in TESTED_ELSEWHERE]


@pytest.mark.parametrize("exercise,mutant,phrase", CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn, _ in CASES])
def test_mutant_fails_with_named_mistake(exercise, mutant, phrase):
    result = check(exercise, mutant)
    assert not result.passed, f"{mutant.__name__} passed the {exercise} check"
    assert phrase in result.message, f"{mutant.__name__}: {result.message!r}"


def test_unimplemented_stub_says_not_implemented():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for exercise in CHECKS:
        result = check(exercise, stub)
        assert not result.passed and not result.implemented
        assert "not implemented" in result.message


def test_learner_exception_is_reported_not_raised():
    def broken(x, dim=-1):
        return x.nonexistent

    result = check("softmax", broken)
    assert not result.passed
    assert "AttributeError" in result.message


def test_result_html_box():
    ok = check("softmax", solution_module(SYLLABUS.lesson("02")).softmax)
    assert "passed" in ok._repr_html_() and "#1a7f37" in ok._repr_html_()
    bad = check("softmax", lambda x, dim=-1: x.exp() / x.exp().sum(dim, keepdim=True))
    assert "#b42318" in bad._repr_html_() and "overflows" in bad._repr_html_()


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(ValueError, match="softmax"):
        check("sofmax", lambda x: x)


def test_gpt_forward_accepts_a_module_class():
    ref = solution_module(SYLLABUS.lesson("06")).gpt_forward

    class MyGPT(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            from gptscope.course.checks.gpt import reference_gpt
            shapes = reference_gpt(cfg).state_dict()
            self.names = list(shapes)
            for name, value in shapes.items():
                self.register_parameter(name.replace(".", "__"),
                                        torch.nn.Parameter(torch.zeros_like(value)))

        def state_dict_view(self):
            return {n: getattr(self, n.replace(".", "__")) for n in self.names}

        def load_state_dict(self, params, strict=True):
            with torch.no_grad():
                for n in self.names:
                    getattr(self, n.replace(".", "__")).copy_(params[n])
            return torch.nn.modules.module._IncompatibleKeys([], [])

        def forward(self, tokens):
            return ref(tokens, self.state_dict_view(), self.cfg)

    assert check("gpt_forward", MyGPT).passed

    class Misnamed(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.wte = torch.nn.Embedding(cfg.d_vocab, cfg.d_model)

        def forward(self, tokens):
            return self.wte(tokens)

    result = check("gpt_forward", Misnamed)
    assert not result.passed and "parameter names differ" in result.message
    assert "wte.weight" in result.message and "blocks.0.attn.W_K" in result.message


RIGHT_CASES = [(ex, fn) for ex, fns in RIGHT.items() for fn in fns]


@pytest.mark.parametrize("exercise,answer", RIGHT_CASES,
                         ids=[f"{ex}-{fn.__name__}-{i}" for i, (ex, fn) in enumerate(RIGHT_CASES)])
def test_right_answer_written_another_way_passes(exercise, answer):
    result = check(exercise, answer)
    assert result.passed, str(result)
