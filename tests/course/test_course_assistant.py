"""Lesson 13b (base model to assistant): the checks name each mistake and no other, accept
right answers written in other ways or in float64, agree with ``gptscope.align.losses``, and
turn any odd return value into a message."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from gptscope.align import losses as lib
from gptscope.course import check, load_syllabus, stub_source
from gptscope.course.checks import alignment, rlhf
from gptscope.course.exercises import solution_module

from .mutants_assistant import MUTANTS, RIGHT_ANSWERS
from .strict import assert_named_alone

LESSON = load_syllabus().lesson("13b")
MUTANT_CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items]


def test_every_exercise_has_mutants_and_right_answers():
    assert set(MUTANTS) == set(RIGHT_ANSWERS) == set(LESSON.exercises)
    for exercise, items in MUTANTS.items():
        assert len(items) >= 6, exercise
        assert any("differs from the right answer" in p for _, p in items), exercise


@pytest.mark.parametrize("exercise,mutant,phrase", MUTANT_CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn, _ in MUTANT_CASES])
def test_mutant_gets_its_own_message_and_no_other(exercise, mutant, phrase):
    assert_named_alone(exercise, mutant, phrase, MUTANTS[exercise])


RIGHT_CASES = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


@pytest.mark.parametrize("exercise,answer", RIGHT_CASES,
                         ids=[f"{ex}-{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"
                              for ex, fn in RIGHT_CASES])
def test_right_answer_written_differently_passes(exercise, answer):
    result = check(exercise, answer)
    assert result.passed, str(result)


def _headroom(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float:
    """The largest error of ``got`` as a fraction of the check's tolerance."""
    err = (got.detach().double() - want).abs() / (atol + rtol * want.abs())
    return float(err.max()) if err.numel() else 0.0


def _library_errors() -> list[tuple[str, float]]:
    errors = []
    for c in alignment.sft_cases():
        got = lib.masked_sft_loss(c.logits, c.targets, c.mask)
        errors.append((c.label, _headroom(got, alignment.sft_truth(c.logits, c.targets, c.mask),
                                          1e-5, 1e-4)))
    for label, chosen, rejected in alignment.bt_cases():
        got = lib.bradley_terry_loss(chosen, rejected)
        errors.append((label, _headroom(got, alignment.bt_truth(chosen, rejected), 1e-5, 1e-4)))
    for c in alignment.norm_cases():
        args, kwargs = c.args()
        errors.append((c.label, _headroom(lib.normalize_rewards(*args, **kwargs),
                                          alignment.norm_truth(c), 1e-5, 1e-4)))
    for label, lp, ref in rlhf.kl_cases():
        got, want = lib.kl_estimators(lp, ref), rlhf.kl_truth(lp, ref)
        errors += [(f"{label} {k}", _headroom(got[k], want[k], 1e-6, 1e-4)) for k in want]
    for c in rlhf.ppo_cases():
        got = lib.ppo_clip_loss(c.logprobs, c.old_logprobs, c.advantages, c.mask, c.clip_value)
        errors += [(c.label, _headroom(g, w, 1e-6, 1e-4)) for g, w in zip(got, rlhf.ppo_truth(c))]
    for c in rlhf.dpo_cases():
        got = lib.dpo_loss(*c.logps, beta=c.beta_value, kind=c.kind_value)
        errors += [(c.label, _headroom(g, w, 1e-5, 1e-4)) for g, w in zip(got, rlhf.dpo_truth(c))]
    return errors


def test_the_float32_library_sits_far_inside_the_float64_tolerances():
    # gptscope.align.losses computes in float32; the checks' truths are float64. Its error
    # must be a small fraction of each tolerance, so float32 answers pass on any CPU.
    worst = max(_library_errors(), key=lambda e: e[1])
    assert worst[1] < 0.05, worst


WEIRD = {"a string": "0.5", "a dict": {"a": 1}, "a numpy float": np.float64(0.3),
         "an array": np.zeros(3), "(None, None)": (None, None), "None x3": (None, None, None),
         "a nested list": [[1.0]], "a generator": (i for i in range(2)), "a complex": 1j,
         "None-valued k1/k3": {"k1": None, "k3": None}, "float k1/k3": {"k1": 1.0, "k3": 2.0},
         "an empty tensor": torch.tensor([]), "strings x2": ("a", "b"),
         "strings x3": ("a", "b", "c"), "a big tensor": torch.ones(50, 50),
         "an int tensor": torch.tensor(1), "nan": torch.tensor(float("nan"))}


@pytest.mark.parametrize("exercise", LESSON.exercises)
def test_odd_return_values_get_a_message_not_an_exception(exercise):
    for name, value in WEIRD.items():
        result = check(exercise, lambda *args, v=value, **kwargs: v)
        assert not result.passed, name
        assert "could not read your answer" not in result.message, (name, result.message)


def test_messages_are_diagnoses_not_tracebacks_for_a_crash_in_the_learner_code():
    def broken(*args, **kwargs):
        raise RuntimeError("shapes do not match")

    for exercise in LESSON.exercises:
        result = check(exercise, broken)
        assert not result.passed and "RuntimeError: shapes do not match" in result.message


def test_the_lesson_sits_before_the_projects_with_plain_learner_text():
    ids = [lesson.id for lesson in load_syllabus().lessons]
    assert ids.index("13b") == ids.index("13") + 1 == ids.index("14") - 1
    assert load_syllabus().lesson("assistant") is LESSON
    assert LESSON.exercises == ["masked_sft_loss", "bradley_terry_loss", "normalize_rewards",
                                "kl_estimators", "ppo_clip_loss", "dpo_loss"]
    shown = [LESSON.title, LESSON.builds, *LESSON.follows, *(g.text for g in LESSON.goals)]
    assert not any(re.search(r"\b00\d\b", text) for text in shown), shown
    assert {r.seed for r in LESSON.readings} <= {"002", "003"}
    talk = LESSON.readings[0]
    assert (talk.minutes, talk.link) == (60, "https://www.youtube.com/watch?v=zjkBMFhNj_g")


SEEDS = Path("/work/shared/seeds")  # the seed syllabi, where this checkout has them


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed syllabi are not on this machine")
def test_readings_are_the_seeds_own():
    seeds = {path.name[:3]: path.read_text() for path in SEEDS.glob("*.txt")}
    assert "[1hr Talk] Intro to Large Language Models" in seeds["003"]
    assert "Reinforcement learning from human feedback - See this post by OpenAI" in seeds["002"]


def test_stub_docstrings_state_the_contract_with_shapes():
    tree = ast.parse(stub_source(LESSON))
    docs = {n.name: ast.get_docstring(n) or "" for n in tree.body
            if isinstance(n, ast.FunctionDef)}
    for exercise in LESSON.exercises:
        assert "[batch" in docs[exercise], exercise
    assert "k2" in docs["kl_estimators"] and "only if it is there" in docs["kl_estimators"]
    assert "correction=0" in docs["normalize_rewards"]
    assert "1 / (2 * beta)" in docs["dpo_loss"]
    assert "explore_preferences" in docs


def test_explore_shows_ipo_stopping_at_its_target_and_dpo_going_past(capsys):
    found = solution_module(LESSON).explore_preferences(steps=300)
    assert abs(found["ipo_margin"] - found["ipo_target"]) < 0.05
    assert found["dpo_margin"] > 3 * found["ipo_target"]
    assert abs(found["ipo_k3"] - found["ipo_kl"]) < 0.02
    assert "IPO's target margin" in capsys.readouterr().out


def test_syllabus_json_is_valid_and_keeps_every_other_lesson():
    text = resources.files("gptscope.course").joinpath("syllabus.json").read_text("utf-8")
    lessons = json.loads(text)["lessons"]
    assert [d["id"] for d in lessons].count("13b") == 1
    assert len(lessons) == 22


def _diagnoses() -> dict[str, str]:
    """Every fixed diagnostic message of the lesson's checks, by constant name."""
    found = {}
    for module in (alignment, rlhf):
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and name != "DPO_INPUTS":
                found[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = value
    return found


def test_every_diagnosis_the_checks_can_print_has_a_mutant():
    said = [check(ex, fn).message for ex, fn, _ in MUTANT_CASES]
    missing = [name for name, text in _diagnoses().items()
               if not any(text in message for message in said)]
    assert not missing, missing
