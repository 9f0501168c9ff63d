"""Lesson 5b (the encoder-decoder) at depth: each mistake in mutants_encoder_decoder.py is
told its own message alone (test_course_depth.py), right answers written differently pass,
and each check's truth agrees with gptscope's own Attention, Block and generate and with a
case worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.config import ModelConfig
from gptscope.course import check, load_syllabus
from gptscope.course.checks import encoder_decoder as ce
from gptscope.course.solutions import lesson05b_encoder_decoder as s05b
from gptscope.model.layers import Attention, Block, cross_inputs

from .mutants_encoder_decoder import MUTANTS, RIGHT_ANSWERS

EXERCISES = ["cross_attention", "decoder_block_with_cross", "greedy_translate"]
RIGHT = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


def test_the_syllabus_lists_the_lesson_after_05_with_enough_mutants():
    syl = load_syllabus()
    ids = [lesson.id for lesson in syl.lessons]
    assert ids.index("05b") == ids.index("05") + 1
    lesson = syl.lesson("5b")
    assert lesson.exercises == EXERCISES and lesson.module_name == "lesson05b_encoder_decoder"
    assert any("Annotated Transformer" in r.title and r.minutes for r in lesson.readings)
    for name in EXERCISES:
        assert len(MUTANTS[name]) >= 8 and len(RIGHT_ANSWERS[name]) >= 2, name


@pytest.mark.parametrize("exercise,fn", RIGHT, ids=[fn.__name__ for _, fn in RIGHT])
def test_right_answers_written_other_ways_pass(exercise, fn):
    result = check(exercise, fn)
    assert result.passed, result


def test_solutions_pass():
    for name in EXERCISES:
        assert check(name, getattr(s05b, name)).passed, name


# -- the truths against the library and by hand ------------------------------------------------


def test_cross_truth_equals_gptscope_attention():
    for spec in ce.CROSS_CASES:
        x, mem, W_Q, W_K, W_V, W_O = (t.double() for t in ce._cross_inputs(spec))
        H, d, dh = W_Q.shape
        cfg = ModelConfig(d_model=d, n_heads=H, d_head=dh, attn_bias=False, cross_attention=True)
        attn = Attention(cfg, dtype=torch.float64, cross=True)
        attn.load_state_dict({"W_Q": W_Q, "W_K": W_K, "W_V": W_V, "W_O": W_O})
        mask = ce.source_mask(spec[7], spec[3])
        _, padding = cross_inputs(cfg, mem, None if mask is None else mask.long(), len(x),
                                  "cpu", torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(attn(x, padding, context=mem),
                                       ce.cross_truth(x, mem, W_Q, W_K, W_V, W_O, mask),
                                       rtol=1e-10, atol=1e-10)


def test_cross_truth_by_hand():
    # One head, d_model = d_head = 1, every weight 1: a source token's key and value are
    # both its memory entry. The query (1) scores the memory [0, log 3, 50] as is (sqrt(1)
    # = 1); the third token is padding, so the weights are softmax([0, log 3]) = [1/4, 3/4]
    # and the output is 3/4 * log 3. Unmasked, the huge third key would take everything.
    one = torch.ones(1, 1, 1, dtype=torch.float64)
    x = torch.ones(1, 1, 1, dtype=torch.float64)
    memory = torch.tensor([[[0.0], [math.log(3)], [50.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    want = 0.75 * math.log(3)
    assert ce.cross_truth(x, memory, one, one, one, one, mask).item() == pytest.approx(want)
    assert s05b.cross_attention(x, memory, one, one, one, one, mask).item() == \
        pytest.approx(want)
    assert s05b.cross_attention(x, memory, one, one, one, one).item() == pytest.approx(50.0)


def test_block_truth_equals_gptscope_block():
    for spec in ce.BLOCK_CASES:
        _, batch, n_q, n_k, H, d, dh, d_mlp, lengths, _, seed = spec
        x = ce.randn(batch, n_q, d, seed=seed, dtype=torch.float64)
        mem = ce.randn(batch, n_k, d, seed=seed + 5, dtype=torch.float64)
        p = ce.block_params(d, H, dh, d_mlp, seed + 100, torch.float64)
        cfg = ModelConfig(d_model=d, n_heads=H, d_head=dh, d_mlp=d_mlp, act_fn="relu",
                          attn_bias=False, cross_attention=True)
        block = Block(cfg, dtype=torch.float64)
        block.load_state_dict(p)
        mask = ce.source_mask(lengths, n_k)
        cross = cross_inputs(cfg, mem, None if mask is None else mask.long(), batch, "cpu",
                             torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(block(x, None, cross=cross),
                                       ce.block_truth(x, mem, p, mask), rtol=1e-10, atol=1e-10)


def test_greedy_truth_equals_generate_and_rows_stop_at_different_steps():
    stops = set()
    for spec in ce.GREEDY_CASES:
        model, src, src_mask, bos, eos, n = ce.greedy_case(spec)
        want = ce.greedy_truth(model, src, src_mask, bos, eos, n)
        assert torch.equal(model.generate(src, n, bos=bos, eos=eos, src_mask=src_mask), want)
        first_eos = [(row == eos).nonzero()[0].item() if (row == eos).any() else None
                     for row in want[:, 1:]]
        stops.update(first_eos)
    assert len(stops) >= 3  # rows finish at several different steps (and some never)


def test_the_exploration_draws_every_head_of_three_sentences(tmp_path):
    report = s05b.explore_cross_attention(steps=60)
    html = report.save(tmp_path / "cross.html").read_text()
    assert "held-out exact match" in html and "reference" in html
    assert html.count("sentence 2, head 1") == 1  # 3 sentences x 2 heads, each drawn
