"""Lesson 7's count_params at depth: the random configs cover every option its docstring
names, and the truth is the module's own count (checked by hand). The strict message test
of mutants_gpt.py and mutants_interp.py is in test_course_depth.py."""

from __future__ import annotations

import dataclasses

from gptscope.config import ModelConfig
from gptscope.course.checks.params import SWITCHES, model_count, random_configs


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
