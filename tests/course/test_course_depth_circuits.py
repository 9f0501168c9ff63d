"""Lessons 9 (circuits, ablation) and 14 (reporting results) at depth: each mistake in
mutants_circuits.py is told its own message alone, right answers written differently pass,
and each reference agrees with a case small enough to work by hand."""

from __future__ import annotations

import math

import pytest
import torch

import gptscope as gs
from gptscope.course import check, load_syllabus
from gptscope.course.checks.projects import _null, _permutation_cases
from gptscope.course.solutions import lesson09_induction as s09
from gptscope.course.solutions import lesson14_projects as s14

from .mutants_circuits import MUTANTS, RIGHT_ANSWERS

NEW = {"09": ["ov_qk_circuits", "composition_score", "ablate_head"],
       "14": ["bootstrap_interval", "paired_permutation_test", "seed_spread"]}
SOLUTIONS = {"ov_qk_circuits": s09.ov_qk_circuits, "composition_score": s09.composition_score,
             "ablate_head": s09.ablate_head, "bootstrap_interval": s14.bootstrap_interval,
             "paired_permutation_test": s14.paired_permutation_test,
             "seed_spread": s14.seed_spread}
CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items]
RIGHT = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


def test_the_syllabus_lists_the_new_exercises_with_enough_mutants():
    syl = load_syllabus()
    for lesson_id, names in NEW.items():
        assert set(names) <= set(syl.lesson(lesson_id).exercises)
    for name in SOLUTIONS:
        assert len(MUTANTS[name]) >= 5 and len(RIGHT_ANSWERS[name]) >= 2, name


# -- hand-worked cases ------------------------------------------------------------------------

def _two_by_two(n_layers: int = 1, **weights: list) -> gs.Transformer:
    """A 1-head model with d_model = d_vocab = 2, no normalisation, every weight zero but
    those given (by parameter name, for every layer)."""
    cfg = gs.ModelConfig(n_layers=n_layers, d_model=2, n_heads=1, d_vocab=2, n_ctx=4,
                         attn_only=True, normalization=None)
    model = gs.Transformer(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = name.rsplit(".", 1)[-1]
            p.copy_(torch.tensor(weights[key]).expand_as(p) if key in weights else 0 * p)
    return model.eval()


def test_circuits_by_hand():
    # W_E = W_U = I, so the circuits are the middle products. QK: W_Q W_K^T with
    # W_Q = [[1, 2], [0, 1]], W_K = [[1, 0], [1, 1]]: row 0 is (1*1 + 2*0, 1*1 + 2*1) = (1, 3),
    # row 1 is (0, 1). OV: W_V W_O with W_V = [[0, 1], [1, 0]] (a swap), W_O = diag(2, 1): the
    # swap of diag(2, 1)'s rows, [[0, 1], [2, 0]]. The biases (all 5) must not show.
    model = _two_by_two(W_E=[[1.0, 0], [0, 1]], W_U=[[1.0, 0], [0, 1]],
                        W_Q=[[1.0, 2], [0, 1]], W_K=[[1.0, 0], [1, 1]],
                        W_V=[[0.0, 1], [1, 0]], W_O=[[2.0, 0], [0, 1]],
                        b_Q=[5.0, 5], b_K=[5.0, 5], b_V=[5.0, 5], b_O=[5.0, 5])
    qk, ov = s09.ov_qk_circuits(model, 0, 0)
    assert torch.equal(qk, torch.tensor([[1.0, 3], [0, 1]]))
    assert torch.equal(ov, torch.tensor([[0.0, 1], [2, 0]]))


def test_composition_by_hand():
    # Every head: W_V = W_O = W_Q = W_K = I, so W_A = W_B = I and the score is
    # ||I||_F / (||I||_F ||I||_F) = 1 / sqrt(2) for each kind.
    eye = [[1.0, 0], [0, 1]]
    model = _two_by_two(2, W_Q=eye, W_K=eye, W_V=eye, W_O=eye)
    for kind in "QKV":
        assert s09.composition_score(model, 0, 0, 1, 0, kind).item() == pytest.approx(
            1 / math.sqrt(2))
    # W_V = diag(1, 0) (head a writes only direction 0; layer 1's W_V too) and W_Q = W_K =
    # diag(0, 1) (queries and keys read only direction 1): W_A W_B = 0 for Q and K, while
    # for V, W_A W_B = diag(1, 0) and the score is 1 / (1 * 1) = 1.
    model = _two_by_two(2, W_Q=[[0.0, 0], [0, 1]], W_K=[[0.0, 0], [0, 1]],
                        W_V=[[1.0, 0], [0, 0]], W_O=eye)
    assert s09.composition_score(model, 0, 0, 1, 0, "Q").item() == 0
    assert s09.composition_score(model, 0, 0, 1, 0, "K").item() == 0
    assert s09.composition_score(model, 0, 0, 1, 0, "V").item() == pytest.approx(1.0)


def test_ablation_by_hand():
    # W_E = W_pos = 0, so the residual stream starts at 0 and the head's z is its value bias
    # b_V = (1, 0) at every position (attention weights sum to 1). With W_O = diag(ln 3, 0)
    # and W_U = I the logits are (ln 3, 0) everywhere: on tokens all 0 the loss is
    # -log(3 / 4) = log(4/3). Zeroing z gives logits (0, 0) and loss log 2, a change of
    # log 2 - log(4/3) = log(3/2); z is the same at every position, so its mean is z itself
    # and mean ablation changes nothing.
    model = _two_by_two(W_U=[[1.0, 0], [0, 1]], W_O=[[math.log(3), 0], [0, 0]],
                        b_V=[1.0, 0])
    tokens = torch.zeros(2, 4, dtype=torch.long)
    assert s09.ablate_head(model, tokens, 0, 0, "zero").item() == pytest.approx(
        math.log(1.5), abs=1e-6)
    assert s09.ablate_head(model, tokens, 0, 0, "mean").item() == pytest.approx(0, abs=1e-6)
    assert not any(p.fwd_fns for p in model.hook_dict.values())


def test_bootstrap_by_hand():
    g = torch.Generator().manual_seed(0)
    # Every resample of a constant is that constant: the interval is [3, 3] at any level.
    assert torch.equal(s14.bootstrap_interval(torch.full((5,), 3.0), torch.mean, 50, 0.9, g),
                       torch.tensor([3.0, 3.0]))
    # Two examples, 0 and 1: a resample's mean is 0, 0.5 or 1 (chances 1/4, 1/2, 1/4). Of
    # 2000 resamples about 500 are all 0 and 500 all 1, so the 0.05% and 99.95% quantiles
    # (level 0.999) fall inside those runs: exactly 0 and 1. At level 0 both ends are the
    # median, 0.5 (about 1000 resamples sit there).
    two = torch.tensor([0.0, 1.0])
    assert torch.equal(s14.bootstrap_interval(two, torch.mean, 2000, 0.999, g),
                       torch.tensor([0.0, 1.0]))
    assert torch.equal(s14.bootstrap_interval(two, torch.mean, 2000, 0.0, g),
                       torch.tensor([0.5, 0.5]))


def test_permutation_by_hand():
    g = torch.Generator().manual_seed(0)
    # One example: every sign flip gives |+-d| = |d|, all 99 rows tie the observed value, so
    # p = (1 + 99) / (1 + 99) = 1. No difference at all: 0 >= 0 everywhere, p = 1 again.
    assert s14.paired_permutation_test(torch.tensor([2.0]), torch.tensor([1.0]), 99, g) == 1
    assert s14.paired_permutation_test(torch.ones(10), torch.ones(10), 99, g) == 1
    # A ahead by 1 on each of 20 examples: |mean(signs * d)| reaches 1 only when all 20 signs
    # agree (chance 2^-19 per row), so none of 99 rows does and p = (1 + 0) / 100.
    assert s14.paired_permutation_test(torch.ones(20), torch.zeros(20), 99, g) == 0.01


def test_seed_spread_by_hand():
    # Runs 1, 2, 3, 6: mean 3; squared deviations 4 + 1 + 0 + 9 = 14; sample variance 14 / 3;
    # std sqrt(14 / 3) = 2.1602; sem = std / sqrt(4) = 1.0801; min 1, max 6.
    got = s14.seed_spread(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert got == pytest.approx({"mean": 3.0, "std": math.sqrt(14 / 3),
                                 "sem": math.sqrt(14 / 3) / 2, "min": 1.0, "max": 6.0})
    with pytest.raises(ValueError):
        s14.seed_spread(torch.tensor([0.5]))


def test_permutation_cases_have_no_near_ties_where_scores_are_continuous():
    # A float32 answer sums in another order than the float64 reference; its null statistics
    # must not sit so close to the observed one that >= could tip either way. The 0/1 case
    # ties exactly, and integer sums are exact in float32 too.
    for label, a, b, R, seed in _permutation_cases():
        if label.startswith("0/1"):
            continue
        d = (a - b).double()
        gap = (_null(d, R, seed).abs() - d.mean().abs()).abs().min()
        assert gap > 1e-5, label


def test_a_stub_that_returns_odd_values_gets_a_message():
    odd = [None, 0.5, "x", [1.0], (1.0,), {"mean": 1}, torch.zeros(3), True]
    for ex in SOLUTIONS:
        for value in odd:
            result = check(ex, lambda *a, value=value, **k: value)
            assert not result.passed and result.message, (ex, value)
            assert "could not read your answer" not in result.message, (ex, value, result)


def test_an_answer_that_draws_differently_is_told_the_exact_draw():
    def signs_from_rand(a, b, n_permutations, generator):
        d = a - b
        signs = (torch.rand(n_permutations, len(d), generator=generator) < 0.5) * 2 - 1
        null = (signs * d).mean(1).abs()
        return (1 + int((null >= d.mean().abs()).sum())) / (1 + n_permutations)

    result = check("paired_permutation_test", signs_from_rand)
    assert not result.passed and "torch.randint(0, 2, (n_permutations, n)" in result.message
