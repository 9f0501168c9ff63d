"""Lesson 13 (scaling laws): the checks name each mistake and no other, accept right answers
written in other ways, agree with ``gptscope.scaling`` and ``gptscope.train.mfu``, and turn
any odd return value into a message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptscope import scaling as lib
from gptscope.course import check, load_syllabus, stub_source
from gptscope.course.checks import scaling as checks
from gptscope.course.exercises import solution_module
from gptscope.scaling.analysis import shapes as lib_shapes
from gptscope.scaling.saved import load_saved_sweep, save_sweep, saved_sweeps
from gptscope.scaling.trends import doubling_time as library_doubling_time

from .mutants_scaling import MUTANTS, RIGHT_ANSWERS
from .strict import assert_named_alone

LESSON = load_syllabus().lesson("13")
MUTANT_CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items]
RIGHT_CASES = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


def test_every_exercise_has_mutants_and_right_answers():
    assert set(MUTANTS) == set(RIGHT_ANSWERS) == set(LESSON.exercises)
    assert LESSON.exercises == ["flops_per_token", "training_flops", "compute_frontier",
                                "fit_power_law", "fit_chinchilla", "compute_optimal_allocation",
                                "doubling_time"]
    for exercise, items in MUTANTS.items():
        assert len(items) >= 6, exercise


def test_every_named_mistake_has_a_mutant():
    messages = [v for k, v in vars(checks).items() if k.isupper() and isinstance(v, str)]
    phrases = [p for items in MUTANTS.values() for _, p in items]
    missing = [m for m in messages if not any(p in m for p in phrases)]
    assert not missing, missing


@pytest.mark.parametrize("exercise,mutant,phrase", MUTANT_CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn, _ in MUTANT_CASES])
def test_mutant_gets_its_own_message_and_no_other(exercise, mutant, phrase):
    assert_named_alone(exercise, mutant, phrase, MUTANTS[exercise], ignore=("expected",))


@pytest.mark.parametrize("exercise,answer", RIGHT_CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn in RIGHT_CASES])
def test_right_answer_written_differently_passes(exercise, answer):
    result = check(exercise, answer)
    assert result.passed, str(result)


ODD_ANSWERS = {"None": lambda *a: None, "a string": lambda *a: "0.3",
               "a list": lambda *a: [1.0, 2.0], "nan": lambda *a: math.nan,
               "a dict": lambda *a: {"x": 1.0}}


@pytest.mark.parametrize("exercise", LESSON.exercises)
@pytest.mark.parametrize("kind", list(ODD_ANSWERS))
def test_an_odd_return_value_is_a_message_not_a_crash(exercise, kind):
    result = check(exercise, ODD_ANSWERS[kind])
    assert not result.passed and result.message
    assert "could not read your answer" not in result.message, result.message


# -- the references agree with the library ---------------------------------------------------

def test_flop_reference_is_the_hand_count():
    for cfg, t in checks.FLOP_CASES:
        n = cfg.n_params + cfg.d_model * cfg.d_vocab
        hand = 6 * n + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * (t or cfg.n_ctx)
        assert math.isclose(checks.flops_truth(cfg, t), hand, rel_tol=1e-12)


def test_frontier_reference_is_the_librarys():
    for label, compute, loss in checks.frontier_cases():
        mean = loss.double().mean(1).numpy()
        ours = checks.frontier_truth(compute.double(), torch.from_numpy(mean))
        assert ours == lib.compute_frontier(compute.double().numpy(), mean).tolist(), label


def test_power_law_reference_is_a_log_log_line_and_a_linear_fit_differs():
    for label, n, loss in checks.power_law_cases():
        a, alpha = checks.reference_power_law(n, loss)
        slope, intercept = np.polyfit(np.log(n.double().numpy()),
                                      np.log(loss.double().numpy()), 1)
        assert math.isclose(a, math.exp(intercept), rel_tol=1e-9) and \
            math.isclose(alpha, -slope, rel_tol=1e-9), label
    noisy = checks.power_law_cases()[2]
    linear = checks.linear_space_power_law(noisy[1], noisy[2])
    assert not checks._pair_close(linear, checks.reference_power_law(noisy[1], noisy[2]))


def test_the_solutions_chinchilla_fit_is_as_good_as_the_librarys():
    """The torch L-BFGS of the lesson and the library's scipy L-BFGS-B find the same
    minimum, and it is near the truth the case was drawn from."""
    for index, case in enumerate(checks.chinchilla_cases()):
        best, value = checks._best_fit(index)
        theirs = lib.fit_chinchilla(case.n.numpy(), case.d.numpy(), case.loss.numpy(),
                                    n_starts=2)
        assert value <= checks.huber_log_objective(theirs.as_dict(), case) * 1.001, case.label
        assert math.isclose(best["alpha"], theirs.alpha, rel_tol=0.02), case.label
    hoffmann = checks._best_fit(0)[0]
    assert math.isclose(hoffmann["alpha"], 0.34, rel_tol=0.1)
    assert math.isclose(hoffmann["beta"], 0.28, rel_tol=0.1)


def test_allocation_reference_is_the_librarys():
    for label, fit, compute in checks.ALLOCATION_CASES:
        ours = checks.allocation_truth(fit, compute)
        theirs = lib.compute_optimal_allocation(lib.ChinchillaFit(**fit), compute)
        assert np.allclose(ours, theirs, rtol=1e-12), label
    # Chinchilla's own budget gives their 70B-parameter, 1.4T-token answer to within 2x.
    n, d = checks.allocation_truth(*checks.ALLOCATION_CASES[0][1:])
    assert 3e10 < n < 1.4e11 and 7e11 < d < 3e12


def test_doubling_reference_is_the_librarys():
    for label, years, compute in checks.doubling_cases():
        x, y = years.double(), compute.double().log2()
        want = float((x - x.mean()).pow(2).sum() / ((x - x.mean()) * (y - y.mean())).sum())
        assert math.isclose(want, library_doubling_time(years.numpy(), compute.numpy())[0],
                            rel_tol=1e-9), label


# -- the lesson's files and data ---------------------------------------------------------------

def test_stub_keeps_the_given_code_and_removes_every_exercise():
    source = stub_source(LESSON)
    assert source.count("raise NotImplementedError") == len(LESSON.exercises)
    assert "def sweep_table" in source and "def explore_scaling" in source
    namespace: dict = {}
    exec(compile(source, "lesson13_stub.py", "exec"), namespace)
    result = check("fit_chinchilla", namespace["fit_chinchilla"])
    assert not result.passed and "not implemented" in result.message


def test_the_shipped_sweeps_load_and_the_frontier_fits(tmp_path):
    assert {"cpu-20m", "shakespeare-20m", "shakespeare-20m-dropout"} <= set(saved_sweeps())
    saved = load_saved_sweep("cpu-20m")
    assert len(saved.rows) == 96 and saved.spec.seeds == [0, 1, 2, 3]
    table = solution_module(LESSON).sweep_table(saved.rows)
    assert table["loss"].shape == (24, 4)
    shapes = lib_shapes(saved.rows)
    front = lib.compute_frontier(shapes.flops, shapes.loss)
    law = lib.fit_power_law(shapes.flops[front], shapes.loss[front])
    assert -0.4 < law.exponent < -0.25 and law.r2 > 0.9
    with pytest.raises(ValueError, match="no saved sweep 'nope'"):
        load_saved_sweep("nope")


def _finished_sweep(folder, spec):
    """A sweep folder whose points are all marked done (made-up losses: the merge only
    moves rows)."""
    import json

    from gptscope.scaling import Sweep

    sweep = Sweep.create(folder, spec)
    for i, point in enumerate(spec.points):
        row = {"name": point.name, "width": point.width, "depth": point.depth,
               "fraction": point.fraction, "seed": point.seed, "val_loss": 3.0 - 0.1 * i,
               "run": f"points/{point.name}"}
        sweep.result_file(point).parent.mkdir(parents=True, exist_ok=True)
        sweep.result_file(point).write_text(json.dumps(row))
    return sweep


def test_save_sweep_merges_seeds_and_refuses_other_grids(tmp_path):
    from gptscope.scaling import SweepSpec

    base = dict(widths=[8, 11], depths=[1], data_fractions=[0.01], n_ctx=16)
    _finished_sweep(tmp_path / "a", SweepSpec(**base, seeds=[0]))
    _finished_sweep(tmp_path / "b", SweepSpec(**base, seeds=[1]))
    saved = save_sweep([tmp_path / "a", tmp_path / "b"], tmp_path / "s.json", "mine", "here")
    again = load_saved_sweep(str(tmp_path / "s.json"))
    assert again.spec.seeds == [0, 1] and len(again.rows) == 4 == len(saved.rows)
    assert all("run" not in r for r in again.rows) and again.machine == "here"
    _finished_sweep(tmp_path / "c", SweepSpec(**(base | {"widths": [8, 16]}), seeds=[2]))
    with pytest.raises(ValueError, match="another grid"):
        save_sweep([tmp_path / "a", tmp_path / "c"], tmp_path / "t.json", "x", "here")
    (tmp_path / "b" / "done" / "w8-l1-f0.01-s1.json").unlink()
    with pytest.raises(ValueError, match="1 of 2 points finished"):
        save_sweep([tmp_path / "b"], tmp_path / "u.json", "x", "here")
