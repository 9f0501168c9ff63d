"""Lesson 5c (vision transformers) at depth: the lesson sits after lesson 5 with enough
mistakes and right answers, each reference agrees with cases worked by hand or with an
independent computation, and the exploration runs on a trained ViT. (Each mistake told its
own message alone: test_course_depth.py; right answers: test_course_checks.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gptscope as gs
from gptscope.course import load_syllabus, stub_source
from gptscope.course.checks import vision as cv
from gptscope.course.solutions import lesson05c_vision as s05c

from .mutants_vision import MUTANTS, RIGHT_ANSWERS

EXERCISES = ["patchify", "vit_forward", "position_similarity"]


def test_the_syllabus_lists_the_lesson_after_05_with_enough_mutants():
    syl = load_syllabus()
    ids = [lesson.id for lesson in syl.lessons]
    assert ids.index("05") < ids.index("05c") < ids.index("06")
    lesson = syl.lesson("05c")
    assert lesson.exercises == EXERCISES and lesson.module_name == "lesson05c_vision"
    assert all(r.minutes and r.seed == "002" for r in lesson.readings)
    for name in EXERCISES:
        assert len(MUTANTS[name]) >= 8 and len(RIGHT_ANSWERS[name]) >= 2, name
    assert "explore_vit_digits" in stub_source(lesson)


def test_patchify_by_hand():
    # A 4x4 image of 0..15 in 2x2 patches: the top-left patch is [0, 1, 4, 5], its right
    # neighbour [2, 3, 6, 7] (raster order), and with a second channel (+100) each patch
    # lists channel 0's four values, then channel 1's.
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert s05c.patchify(x, 2)[0, :2].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]
    two = torch.cat([x, x + 100], 1)
    assert s05c.patchify(two, 2)[0, 0].tolist() == [0, 1, 4, 5, 100, 101, 104, 105]
    assert cv.patchify_variant(two, 2, "channel_last")[0, 0].tolist() == \
        [0, 100, 1, 101, 4, 104, 5, 105]
    assert cv.patchify_variant(x, 2, "column_major")[0, 1].tolist() == [8, 9, 12, 13]


def test_vit_truth_and_the_unmistaken_variant_agree_with_the_solution():
    for spec in cv.VIT_CASES:
        _, shape, patch, layers, d_model, heads, batch, _, seed = spec
        cfg = cv.vit_config(shape, patch, layers, d_model, heads)
        params = cv.vit_params(cfg, seed, torch.float64)
        x = torch.rand(batch, *shape, dtype=torch.float64)
        truth = cv.vit_truth(x, params, cfg)
        torch.testing.assert_close(cv.vit_variant(x, params, cfg), truth, rtol=1e-10,
                                   atol=1e-10)
        torch.testing.assert_close(s05c.vit_forward(x, params, cfg), truth, rtol=1e-10,
                                   atol=1e-10)


def test_vit_with_one_patch_and_no_layers_by_hand():
    # No blocks: the class logits are ln_final(cls + W_pos[0]) @ W_U, whatever the image.
    cfg = gs.ModelConfig(n_layers=0, d_model=4, n_heads=1, d_vocab=2, n_ctx=2,
                         image_shape=(1, 2, 2), patch_size=2, causal=False)
    params = cv.vit_params(cfg, 0, torch.float64)
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    cls = params["embed.cls_token"] + params["pos_embed.W_pos"][0]
    normed = (cls - cls.mean()) / torch.sqrt(cls.var(unbiased=False) + cfg.eps)
    want = (normed * params["ln_final.w"] + params["ln_final.b"]) @ params["unembed.W_U"]
    got = s05c.vit_forward(x, params, cfg)
    torch.testing.assert_close(got, want.expand(3, -1))


def test_position_similarity_by_hand():
    # 1x2 grid: patch rows (3, 4) and (4, 3) have cosine 24 / 25; the class row is ignored.
    w = torch.tensor([[100.0, -7.0], [3.0, 4.0], [4.0, 3.0]], dtype=torch.float64)
    got = s05c.position_similarity(w, (1, 2))
    assert got.shape == (1, 2, 1, 2)
    torch.testing.assert_close(got[0, :, 0], torch.tensor([[1, 0.96], [0.96, 1]],
                                                          dtype=torch.float64))
    ref = F.cosine_similarity(w[1:, None], w[None, 1:], dim=-1).view(1, 2, 1, 2)
    torch.testing.assert_close(cv.library_similarity(w, (1, 2)), ref)
    assert math.isclose(float(cv.similarity_variant(w, (1, 2), "dot")[0, 0, 0, 1]), 24.0)


def test_explore_runs_on_a_trained_vit(capsys):
    report = s05c.explore_vit_digits(steps=30)
    out = capsys.readouterr().out
    assert "your vit_forward's accuracy" in out and "predictions that agree" in out
    # The same forward written twice on the same weights: float32 rounding could flip at
    # most a near-tie, so all but a few of the 359 predictions agree.
    assert float(out.split("predictions that agree")[1].split()[0]) >= 0.99
    assert report.n_visuals == 4  # three images' attention maps and the position grid


def test_checks_survive_odd_answers():
    for exercise in EXERCISES:
        for answer in (lambda *a: None, lambda *a: 3.0, lambda *a: torch.zeros(2),
                       lambda *a: [1, 2], lambda *a: torch.full((2, 5), float("nan"))):
            result = gs.course.check(exercise, answer)
            assert not result.passed and result.message, exercise


@pytest.mark.parametrize("exercise", EXERCISES)
def test_reference_solution_passes(exercise):
    assert gs.course.check(exercise, getattr(s05c, exercise)).passed
