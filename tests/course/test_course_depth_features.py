"""Lessons 10-12 (probes, steering, superposition and SAEs): each known mistake gets its own
message and no other, right answers written in other ways pass, any odd return value is a
message rather than a crash, the truths agree with the library, and the linear probe's bars
sit clear of where the reference and the named mistakes land."""

from __future__ import annotations

import math

import pytest
import torch
from bounds import check as bound
from bounds import seed

from gptscope.course import check, load_syllabus
from gptscope.course.checks.features import probes, sae, steering
from gptscope.course.exercises import solution_module
from gptscope.course.solutions import lesson10_probes as s10
from gptscope.course.solutions import lesson11_steering as s11
from gptscope.course.solutions import lesson12_superposition as s12

from .mutants import MUTANTS
from .mutants_features import probe_gradient_ascent, probe_one_sigmoid_logit
from .right_answers import RIGHT

SYLLABUS = load_syllabus()
LESSONS = [SYLLABUS.lesson(k) for k in ("10", "11", "12")]
EXERCISES = [ex for lesson in LESSONS for ex in lesson.exercises]
MUTANT_CASES = [(ex, fn, phrase) for ex in EXERCISES for fn, phrase in MUTANTS[ex]]
RIGHT_CASES = [(ex, fn) for ex in EXERCISES for fn in RIGHT[ex]]


def test_each_lesson_has_three_checked_exercises_with_mutants_and_right_answers():
    assert [lesson.exercises for lesson in LESSONS] == [
        ["linear_probe", "probe_selectivity", "mean_difference_direction"],
        ["steering_vector", "apply_steering", "steering_effect"],
        ["toy_model_forward", "sae_loss", "sae_training_step"]]
    for ex in EXERCISES:
        assert len(MUTANTS[ex]) >= 5, ex
        assert len(RIGHT[ex]) >= 2, ex


def test_every_named_mistake_has_a_mutant():
    messages = [v for module in (probes, steering, sae) for k, v in vars(module).items()
                if k.isupper() and isinstance(v, str)]
    phrases = [p for ex in EXERCISES for _, p in MUTANTS[ex]]
    missing = [m for m in messages if not any(p in m for p in phrases)]
    assert not missing, missing


# -- any return value is a message, never an exception -----------------------------------------

ODD = {"None": None, "a float": 0.5, "nan": math.nan, "a string": "0.5", "a bool": True,
       "a list": [0.5, 0.5], "a dict": {"x": 1.0}, "a short tuple": (torch.zeros(()),),
       "a tensor [3]": torch.zeros(3), "an int64 tensor [2, 3]": torch.zeros(2, 3).long(),
       "a complex 0-dim tensor": torch.zeros((), dtype=torch.complex64)}


def _returns(exercise: str, value: object):
    """An answer that does what the contract asks of its arguments (calls the probe, takes
    the optimizer step) and then returns ``value``."""
    reference = getattr(solution_module(SYLLABUS.lesson_of(exercise)), exercise)

    def answer(*args, **kwargs):
        if exercise in ("probe_selectivity", "sae_training_step"):
            reference(*args, **kwargs)
        return value
    return answer


ODD_CASES = [(ex, kind) for ex in EXERCISES for kind in ODD]
# Odd values inside the right container, for the answers that are tuples or dicts.
INNER = {"sae_loss": lambda v: (v, v, v), "toy_model_forward": lambda v: (v, v),
         "steering_effect": lambda v: {"effect": v, "kl": v},
         "probe_selectivity": lambda v: {"accuracy": v, "control_accuracy": v,
                                         "selectivity": v}}
INNER_CASES = [(ex, kind) for ex in INNER for kind in ODD]


def _is_a_message(result) -> None:
    assert not result.passed and result.message
    assert "could not read your answer" not in result.message, result.message
    assert "Traceback" not in result.message


@pytest.mark.parametrize("exercise,kind", ODD_CASES, ids=[f"{e}-{k}" for e, k in ODD_CASES])
def test_an_odd_return_value_is_a_message_not_a_crash(exercise, kind):
    _is_a_message(check(exercise, _returns(exercise, ODD[kind])))


@pytest.mark.parametrize("exercise,kind", INNER_CASES,
                         ids=[f"{e}-{k}" for e, k in INNER_CASES])
def test_an_odd_value_inside_the_answer_is_a_message(exercise, kind):
    _is_a_message(check(exercise, _returns(exercise, INNER[exercise](ODD[kind]))))


def test_missing_keys_and_wrong_lengths_are_named():
    result = check("steering_effect", _returns("steering_effect", {"effect": 0.1}))
    assert "no key 'kl'" in result.message
    result = check("sae_loss", _returns("sae_loss", (torch.zeros(()),) * 2))
    assert "should return 3 values" in result.message


# -- the truths are the library's, and the library's are right -------------------------------

def test_toy_truth_is_the_hand_formula():
    for c in sae.toy_cases():
        x, W, b, imp = (t.double() for t in (c.x, c.W, c.b, c.importance))
        by_hand = torch.stack([torch.relu(x[:, i] @ W[i].T @ W[i] + b[i])
                               for i in range(W.shape[0])], dim=1)
        loss = sum((imp[i] * (x[:, i] - by_hand[:, i]) ** 2).sum(-1).mean()
                   for i in range(W.shape[0]))
        want_hat, want_loss = sae.toy_truth(c)
        assert torch.allclose(want_hat, by_hand) and torch.allclose(want_loss, loss)


def test_sae_step_truth_is_the_flagged_recipe_and_the_reference():
    for c in sae.sae_step_cases():
        truth, losses = sae.sae_step_truth(c)
        recipe = sae.sae_steps(c)
        params = {k: v.double().clone().requires_grad_(True) for k, v in c.params.items()}
        opt = c.make_optimizer(list(params.values()))
        ours = [s12.sae_training_step(params, x.double(), opt, c.l1_coefficient)
                for x in c.batches]
        assert losses == pytest.approx(ours, rel=1e-9)
        for name in sae.SAE_PARAMS:
            assert torch.allclose(truth[name], recipe[name], atol=1e-10), name
            assert torch.allclose(truth[name], params[name].detach(), atol=1e-10), name


def test_steering_truth_adds_the_vector_where_the_contract_says():
    model = steering._steering_model(seed=4)
    for c in steering.steer_cases():
        rows = c.vector[None].expand(c.tokens.shape[1], -1) if c.vector.dim() == 1 \
            else c.vector
        added = torch.zeros(c.tokens.shape[1], 32)
        for i in range(c.start, c.tokens.shape[1]):
            if c.vector.dim() == 1 or i - c.start < len(rows):
                added[i] = c.coefficient * rows[0 if c.vector.dim() == 1 else i - c.start]
        by_hand = steering._with_edit(model, c.tokens, c.hook, lambda x, a=added: x + a)
        assert torch.allclose(steering.steered_logits(model, c.tokens, c.vector, c.hook,
                                                      c.coefficient, c.start), by_hand)


def test_steering_effect_cases_measure_something():
    model = steering._steering_model(seed=5)
    for c in steering.effect_cases(model):
        found = s11.steering_effect(model, *c.args())
        assert abs(found["effect"]) > 0.02 and found["kl"] > 0.01, (c.label, found)


def test_selectivity_reference_control_keeps_the_label_shares():
    for case in (probes.selectivity_case("per type", 11, True),
                 probes.selectivity_case("per example", 10, False)):
        recorder = probes.RecordingProbe(case)
        s10.probe_selectivity(*case.args(), probe=recorder)
        labels = probes._control_labels(probes._calls(recorder, case)[1], case)
        probes._check_shares(probes._one_label_per_type(labels, case), case)


# -- the linear probe's bars, for any seed ----------------------------------------------------

@pytest.mark.learned
def test_linear_probe_bars_sit_clear_of_the_reference_and_the_mistakes():
    binary = probes._split("binary", *probes.planted_probe_data(600, 16, seed(0)), 400)
    reference = s10.linear_probe(*binary.args())
    share = binary.test_y.float().mean().item()
    # A right answer PROBE_SLACK below the reference is still clear of the majority bar.
    bound("course.probe_binary_slack_over_majority",
          reference - probes.PROBE_SLACK - max(share, 1 - share), ">", 0.2)
    bound("course.probe_backwards_accuracy", probe_gradient_ascent(*binary.args()), "<", 0.4)
    offset = probes._split("offset", *probes.offset_probe_data(500, 8, seed(3)), 300)
    right, no_bias = s10.linear_probe(*offset.args()), probes.probe_without_bias(
        *offset.args())
    bound("course.probe_offset_reference", right, ">", 0.9)
    bound("course.probe_no_bias_below_slack", right - probes.PROBE_SLACK - no_bias, ">",
          0.1)
    three = probes._split("three", *probes.three_class_probe_data(600, 12, seed(2)), 400)
    only_2 = three.test_y == 2
    class_2 = probes.ProbeCase("class 2", three.train_x, three.train_y,
                                 three.test_x[only_2], three.test_y[only_2])
    bound("course.probe_class2_reference", s10.linear_probe(*class_2.args()), ">", 0.5)
    bound("course.probe_class2_one_logit", probe_one_sigmoid_logit(*class_2.args()), "<",
          0.2)
    random = probes._split("random", *probes.planted_probe_data(
        140, 64, seed(1), signal=False), 40)
    bound("course.probe_random_reference", s10.linear_probe(*random.args()), "<=", 0.7)
    bound("course.probe_random_on_training_set", s10.linear_probe(
        random.train_x, random.train_y, random.train_x, random.train_y), ">", 0.9)
