"""ModelConfig: defaults, validation messages, JSON round trip and replace."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gptscope import ModelConfig
from gptscope.config import MAX_N_CTX, OPTIONAL_IN_FILES


def test_defaults_derive_d_head_and_d_mlp():
    cfg = ModelConfig(d_model=64, n_heads=4)
    assert cfg.d_head == 16
    assert cfg.d_mlp == 256
    assert cfg.rotary_dim is None
    cfg = ModelConfig(d_model=64, n_heads=4, d_head=8, d_mlp=100)
    assert (cfg.d_head, cfg.d_mlp) == (8, 100)
    assert ModelConfig(d_model=64, n_heads=4, positional="rotary").rotary_dim == 16


def test_json_round_trip(tmp_path):
    cfg = ModelConfig(n_layers=3, d_model=48, n_heads=6, d_vocab=77, n_ctx=33, act_fn="relu",
                      normalization="rms", positional="rotary", rotary_dim=4,
                      tie_embeddings=True, seed=7, extra={"source": "test"})
    text = cfg.to_json()
    back = ModelConfig.from_json(text)
    assert back == cfg
    assert dataclasses.asdict(back) == dataclasses.asdict(cfg)
    path = tmp_path / "config.json"
    path.write_text(text)
    assert ModelConfig.from_json(path) == cfg
    assert ModelConfig.from_json(str(path)) == cfg
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_from_json_invalid_raises_value_error():
    with pytest.raises(ValueError, match="JSON"):
        ModelConfig.from_json("{not json")


def test_replace_recomputes_derived_fields():
    cfg = ModelConfig(d_model=64, n_heads=4)
    wider = cfg.replace(d_model=128)
    assert wider.d_head == 32 and wider.d_mlp == 512
    assert cfg.d_model == 64  # original untouched
    explicit = ModelConfig(d_model=64, n_heads=4, d_mlp=100).replace(n_layers=5)
    assert explicit.d_mlp == 100 and explicit.n_layers == 5
    assert cfg.replace(d_head=8).d_head == 8


def test_d_model_not_divisible_by_n_heads():
    with pytest.raises(ValueError, match="n_heads") as info:
        ModelConfig(d_model=30, n_heads=4)
    assert "d_model=30" in str(info.value)


@pytest.mark.parametrize(
    "field, value, choices",
    [
        ("act_fn", "swish", ["relu", "gelu", "gelu_new", "silu"]),
        ("normalization", "batch", ["layer", "rms", "None"]),
        ("positional", "alibi", ["learned", "sinusoidal", "rotary", "None"]),
    ],
)
def test_unknown_choice_lists_choices(field, value, choices):
    with pytest.raises(ValueError) as info:
        ModelConfig(**{field: value})
    msg = str(info.value)
    assert field in msg and repr(value) in msg
    for c in choices:
        assert c in msg


def test_unknown_field_in_from_dict():
    data = ModelConfig().to_dict()
    data["n_layer"] = 3
    with pytest.raises(ValueError, match="n_layer"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize(
    "kw",
    [{"n_layers": -1}, {"d_model": 0}, {"n_heads": 2.0}, {"dropout": 1.0},
     {"positional": "rotary", "d_model": 64, "n_heads": 4, "rotary_dim": 5},
     {"positional": "rotary", "d_model": 64, "n_heads": 4, "rotary_dim": 32},
     {"norm_position": "post", "normalization": None}],
)
def test_other_invalid_values(kw):
    with pytest.raises(ValueError):
        ModelConfig(**kw)


def test_saved_json_must_state_every_computation_field(tmp_path):
    data = ModelConfig(act_fn="relu").to_dict()
    del data["act_fn"], data["eps"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config\.json lacks the fields \['act_fn', 'eps'\]"):
        ModelConfig.from_json(path)
    with pytest.raises(ValueError, match=r"lacks the fields \['act_fn', 'eps'\]"):
        ModelConfig.from_json(json.dumps(data))
    # from_dict builds configs in code: fields left out keep their defaults.
    assert ModelConfig.from_dict(data).act_fn == "gelu_new"


def test_saved_json_may_omit_only_init_and_provenance_fields():
    # image_shape, patch_size and cross_attention came later; their defaults are what a file
    # from before them computed.
    assert OPTIONAL_IN_FILES == {"extra", "seed", "init_range", "image_shape", "patch_size",
                                 "cross_attention"}
    data = ModelConfig(seed=3).to_dict()
    for name in OPTIONAL_IN_FILES:
        del data[name]
    assert ModelConfig.from_json(json.dumps(data)) == ModelConfig()


def test_to_json_writes_every_field():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(json.loads(ModelConfig().to_json())) == names


@pytest.mark.parametrize("kw", [{"causal": "no"}, {"attn_only": "false"}, {"causal": 1},
                                {"d_head": "8"}, {"dropout": "0.1"}, {"n_ctx": 1e8},
                                {"d_model": 64.0}, {"eps": -1}, {"rotary_base": 0},
                                {"n_ctx": MAX_N_CTX + 1}, {"seed": True}])
def test_values_are_checked_as_json_data(kw):
    (name, value), = kw.items()
    with pytest.raises(ValueError, match=rf"ModelConfig\.{name}\b") as info:
        ModelConfig(**kw)
    assert repr(value) in str(info.value)


def test_ints_are_accepted_for_float_fields():
    cfg = ModelConfig(eps=1, rotary_base=500, positional="rotary", dropout=0)
    assert (cfg.eps, cfg.rotary_base, cfg.dropout) == (1, 500, 0)
    assert ModelConfig(n_ctx=MAX_N_CTX).n_ctx == MAX_N_CTX


