"""Lesson 6b (optimization) at depth: each mistake in mutants_optimization.py is told its own
message alone, right answers written differently pass, each reference agrees with cases
worked by hand, and the noisy quadratic model's formula agrees with simulated SGD."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.course import load_syllabus
from gptscope.course.checks import optimization as oc
from gptscope.course.solutions import lesson06b_optimization as s06b

from .mutants_optimization import MUTANTS, RIGHT_ANSWERS

EXERCISES = ["adam_step", "noisy_quadratic_loss", "optimal_lr_by_batch",
             "adam_noisy_quadratic_loss"]
CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items]
RIGHT = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


def test_the_syllabus_lists_the_lesson_after_06_with_enough_mutants():
    syl = load_syllabus()
    ids = [lesson.id for lesson in syl.lessons]
    assert ids.index("06b") == ids.index("06") + 1
    lesson = syl.lesson("06b")
    assert lesson.exercises == EXERCISES and lesson.module_name == "lesson06b_optimization"
    for name in EXERCISES:
        assert len(MUTANTS[name]) >= 5 and len(RIGHT_ANSWERS[name]) >= 2, name


# -- hand-worked cases ------------------------------------------------------------------------

def test_adam_first_step_by_hand():
    # On the first step m_hat = g and v_hat = g^2 exactly (the bias correction undoes the
    # (1 - beta) factors), so the update is lr * g / (|g| + eps): with g = 3, eps = 1,
    # lr = 0.5 it is 0.5 * 3 / 4 = 0.375. Decay 0.2 first scales p = 2 by 1 - 0.1 = 0.9:
    # 1.8 - 0.375 = 1.425.
    p = torch.tensor([2.0], dtype=torch.float64)
    state = s06b.adam_step([p], [torch.tensor([3.0], dtype=torch.float64)], {}, lr=0.5,
                           betas=(0.9, 0.99), eps=1.0, weight_decay=0.2)
    assert p.item() == pytest.approx(1.425)
    assert state["step"] == 1
    assert state["m"][0].item() == pytest.approx(0.3) and state["v"][0].item() == \
        pytest.approx(0.09)


def test_adam_replay_without_mistakes_is_torch():
    params0, grads = oc._adam_inputs(4, 1.0, 5)
    for wd in (0.0, 0.1):
        args = (params0, grads, 0.03, (0.6, 0.8), 1e-3, wd)
        assert torch.allclose(oc.adam_replay(*args), oc.torch_adam_trajectory(*args),
                              atol=1e-12)


def test_nqm_by_hand():
    # One coordinate, h = 1, c = 2, x0 = 1, lr = 0.5, batch 4: (1 - lr h)^2 = 1/4 and the
    # noise adds 0.25 * 2 / 4 = 1/8 per step. s: 1 -> 1/4 + 1/8 = 3/8 -> 3/32 + 1/8 = 7/32;
    # the loss is half of s.
    one = torch.tensor([1.0], dtype=torch.float64)
    args = (one, 2 * one, one, 0.5)
    assert s06b.noisy_quadratic_loss(*args, 4, 0).item() == pytest.approx(0.5)
    assert s06b.noisy_quadratic_loss(*args, 4, 1).item() == pytest.approx(3 / 16)
    assert s06b.noisy_quadratic_loss(*args, 4, 2).item() == pytest.approx(7 / 64)
    # Many steps: s tends to the fixed point s = s / 4 + 1/8, i.e. 1/6, the docstring's
    # lr c / (B h (2 - lr h)) = 0.5 * 2 / (4 * 1.5) = 1/6.
    assert s06b.noisy_quadratic_loss(*args, 4, 200).item() == pytest.approx(1 / 12)


def test_nqm_formula_agrees_with_simulated_sgd():
    # Simulate 4000 independent SGD runs whose batch gradient is h x plus the mean of
    # batch_size draws of noise with variance c; the mean final loss must lie within four
    # of its standard errors of the formula.
    g = torch.Generator().manual_seed(0)
    h = torch.tensor([1.0, 0.4, 0.1], dtype=torch.float64)
    c = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64)
    x0 = torch.tensor([1.0, -2.0, 1.5], dtype=torch.float64)
    lr, batch_size, steps, runs = 0.4, 8, 15, 4000
    x = x0.expand(runs, 3).clone()
    for _ in range(steps):
        draws = torch.randn(runs, batch_size, 3, generator=g, dtype=torch.float64)
        noise = (draws * c.sqrt()).mean(1)
        x = x - lr * (h * x + noise)
    losses = 0.5 * (h * x * x).sum(-1)
    standard_error = losses.std().item() / math.sqrt(runs)
    want = s06b.noisy_quadratic_loss(h, c, x0, lr, batch_size, steps).item()
    assert abs(losses.mean().item() - want) < 4 * standard_error
    # And the simulation can tell the known mistakes apart from the formula.
    wrong = oc.nqm_replay(h, c, x0, lr, batch_size, steps, divide=False).item()
    assert abs(losses.mean().item() - wrong) > 4 * standard_error


def test_optimal_lr_grows_with_the_batch_then_slows(capsys):
    best = s06b.explore_optimal_lr()
    growth = (best[1:] / best[:-1]).tolist()
    assert all(g >= 1 for g in growth)
    assert min(growth[:3]) > 2.5 and max(growth[-2:]) < 1.6  # near 4x early, slow late
    assert float(best.max()) < 2.0  # below the stability limit 2 / max(h)
    assert "batch size" in capsys.readouterr().out


def test_optimal_lr_ties_go_to_the_smallest():
    lrs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)

    def flat(h, c, x0, lr, batch_size, steps):
        return torch.tensor(0.0 if lr >= 0.2 else 1.0, dtype=torch.float64)

    one = torch.ones(1, dtype=torch.float64)
    got = s06b.optimal_lr_by_batch(one, one, one, 3, [1, 2], lrs, flat)
    assert got.tolist() == [0.2, 0.2]


def test_adam_nqm_by_hand():
    # One coordinate, h = 1, c = 2, batch 2 (noise variance 1), x0 = 1, lr = 1/sqrt(2).
    # Step 1: v = 1 + 1 = 2, eta = 1/2, s = s/4 + 1/4 = 1/2. Step 2: v = 3/2,
    # eta = 1/sqrt(3), s = (1 - 1/sqrt(3))^2 / 2 + 1/3 = 1 - 1/sqrt(3).
    one = torch.tensor([1.0], dtype=torch.float64)
    args = (one, 2 * one, one, 1 / math.sqrt(2), 2)
    assert s06b.adam_noisy_quadratic_loss(*args, 0).item() == pytest.approx(0.5)
    assert s06b.adam_noisy_quadratic_loss(*args, 1).item() == pytest.approx(0.25)
    assert s06b.adam_noisy_quadratic_loss(*args, 2).item() == pytest.approx(
        (1 - 1 / math.sqrt(3)) / 2)


def _best_lr_of_torch_optimizer(make, lrs, batch_size, examples=1024, runs=16, d=100,
                                seed=0):
    """The lr of ``lrs`` whose mean final loss over ``runs`` simulated runs of a torch
    optimizer on the noisy quadratic model (h = 1/i, c = 100 h, x0 = 1) is lowest."""
    g = torch.Generator().manual_seed(1000 * seed + batch_size)
    h = 1 / torch.arange(1, d + 1, dtype=torch.float64)
    noise_std = (100 * h / batch_size).sqrt()
    params = [torch.ones(runs, d, dtype=torch.float64, requires_grad=True) for _ in lrs]
    opt = make([{"params": [p], "lr": float(lr)} for p, lr in zip(params, lrs)])
    for _ in range(examples // batch_size):
        draws = torch.randn(len(lrs), runs, d, generator=g, dtype=torch.float64)
        for p, draw in zip(params, draws):
            p.grad = h * p.detach() + draw * noise_std
        opt.step()
    losses = torch.stack([(0.5 * h * p.detach() ** 2).sum(-1).mean() for p in params])
    return float(lrs[int(losses.nan_to_num(float("inf")).argmin())])


def test_real_adam_follows_the_square_root_rule_the_idealised_model_predicts():
    # torch.optim.Adam with its default betas, momentum and all, on sampled gradients: on a
    # fixed 1024 examples its best lr grows as about batch^0.5, SGD's as about batch^1
    # (measured 0.457-0.519 and 0.997-1.017 over 4 seeds, the same under avx2 and two
    # threads); the idealised model gives 0.49 and 0.97 (the test below). At batch 1 real
    # Adam's best lr is the idealised model's (0.0178 on this grid, every seed).
    lrs = torch.logspace(-3.5, 0, 29, dtype=torch.float64)  # steps of 33%
    batches = [1, 4, 16, 64]
    best = {name: torch.tensor([_best_lr_of_torch_optimizer(make, lrs, b) for b in batches])
            for name, make in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD))}
    slope = {name: s06b._log_slope(batches, lr) for name, lr in best.items()}
    assert 0.3 < slope["adam"] < 0.7 and slope["sgd"] > 0.8, slope
    h = 1 / torch.arange(1, 101, dtype=torch.float64)
    (predicted,) = s06b.optimal_lr_by_batch(h, 100 * h, torch.ones(100, dtype=torch.float64),
                                            1024, [1], lrs, s06b.adam_noisy_quadratic_loss)
    assert 1 / 1.5 < float(best["adam"][0] / predicted) < 1.5, (best["adam"][0], predicted)


def test_explore_batch_scaling_rules(capsys):
    slopes = s06b.explore_batch_scaling_rules()
    assert 0.4 < slopes["adam"] < 0.6 and 0.9 < slopes["sgd"] < 1.1, slopes
    assert "for SGD" in capsys.readouterr().out
