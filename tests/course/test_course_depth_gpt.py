"""Lessons 6 to 9's first exercises at depth: each mistake in mutants_gpt.py and
mutants_interp.py is told its own message alone, and the count_params cases cover every
option its docstring names."""

from __future__ import annotations

import dataclasses

import pytest

from gptscope.config import ModelConfig
from gptscope.course.checks.params import SWITCHES, model_count, random_configs

from .mutants import MUTANTS as ALL_MUTANTS
from .mutants_gpt import MUTANTS as GPT_MUTANTS
from .mutants_interp import MUTANTS as INTERP_MUTANTS
from .strict import assert_named_alone

CASES = [(ex, fn, phrase) for mutants in (GPT_MUTANTS, INTERP_MUTANTS)
         for ex, items in mutants.items() for fn, phrase in items]


@pytest.mark.parametrize("exercise,mutant,phrase", CASES,
                         ids=[f"{ex}-{fn.__name__}" for ex, fn, _ in CASES])
def test_mutant_gets_its_own_message_and_no_other(exercise, mutant, phrase):
    # Told its own mistake and none of the others any list holds for the exercise.
    assert_named_alone(exercise, mutant, phrase, ALL_MUTANTS[exercise])


def test_random_configs_set_every_switch_both_ways():
    configs = list(random_configs())
    defaults = ModelConfig()
    for field, _ in SWITCHES:
        if field in ("d_head", "d_mlp"):
            away = [c for c in configs if getattr(c, field) != (
                c.d_model // c.n_heads if field == "d_head" else 4 * c.d_model)]
        else:
            away = [c for c in configs if getattr(c, field) != getattr(defaults, field)]
        assert 10 <= len(away) <= len(configs) - 10, field


def test_model_count_is_the_module_count_by_hand():
    # 2 layers, d 8, 2 heads of 4, d_mlp 32, vocab 10, ctx 6, LayerNorm, learned, untied:
    # W_E 80 + W_pos 48 + per block (attn 4*2*4*8 = 256, biases 3*8 + 8 = 32, MLP 2*8*32 =
    # 512, biases 32 + 8 = 40, 2 norms 32) = 872, twice + ln_final 16 + W_U 80 = 1968.
    cfg = ModelConfig(n_layers=2, d_model=8, n_heads=2, d_vocab=10, n_ctx=6)
    total, parts = model_count(cfg)
    assert total == 1968
    assert parts["the unembedding W_U"] == 80
    rms = dataclasses.replace(cfg, normalization="rms")
    assert model_count(rms)[0] == 1968 - 5 * 8  # an RMSNorm has no bias
