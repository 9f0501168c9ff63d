import argparse
import json
import re

import numpy as np
import pytest

from gptscope import ModelConfig
from gptscope.cli import build_parser
from gptscope.cli.train import build_configs
from gptscope.train import DataSpec, TrainConfig, get_preset, list_presets


def test_train_config_json_round_trip():
    c = TrainConfig(data=DataSpec(task="sort", task_kwargs={"n_items": 4}), lr=3e-4,
                    betas=(0.8, 0.9), bf16=False, ckpt_every=7)
    back = TrainConfig.from_json(c.to_json())
    assert back == c
    assert isinstance(back.betas, tuple) and isinstance(back.data, DataSpec)


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(lr=-1.0), "lr"),
    (dict(betas=(0.9, 1.5)), "betas"),
    (dict(threads=0), "threads"),
])
def test_bad_train_config(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_bad_data_spec_names_the_fix():
    with pytest.raises(ValueError, match="exactly one"):
        DataSpec(task="reverse", corpus="shakespeare")
    with pytest.raises(ValueError, match="unknown corpus"):
        DataSpec(corpus="wikipedia")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_presets_are_typed_and_complete():
    names = list_presets()
    for want in ("bigram", "baby-cpu", "shakespeare-char", "induction-2l", "modadd",
                 "modadd-cpu", "stories", "reverse"):
        assert want in names
    for name in names:
        p = get_preset(name)
        assert TrainConfig.from_json(p.train.to_json()) == p.train
    assert get_preset("bigram").model.n_layers == 0
    m = get_preset("modadd").model
    assert (m.n_layers, m.d_model, m.n_heads, m.d_mlp, m.act_fn, m.normalization) == (
        1, 128, 4, 512, "relu", None)
    assert get_preset("shakespeare-char").model.dropout == 0.2
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("gpt5")


def test_cli_overrides_preset(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["train", "--preset", "reverse", "--out", str(tmp_path),
                              "--n-layers", "3", "--lr", "1e-4", "--max-steps", "7",
                              "--task-arg", "n_items=4", "--no-bf16"])
    model_cfg, train_cfg = build_configs(args)
    assert model_cfg.n_layers == 3 and train_cfg.lr == 1e-4 and train_cfg.max_steps == 7
    assert train_cfg.data.task_kwargs == {"n_items": 4, "n_symbols": 10}
    assert train_cfg.bf16 is False


def test_cli_needs_data(tmp_path):
    args = build_parser().parse_args(["train", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--preset"):
        build_configs(args)
    assert isinstance(args, argparse.Namespace)


@pytest.mark.parametrize("bad, match", [
    (dict(progress="yes"), r"TrainConfig\.progress must be true or false"),
    (dict(max_steps=1e3), r"TrainConfig\.max_steps must be an integer, got 1000\.0"),
    (dict(betas=["0.9", 0.95]), r"TrainConfig\.betas must be a list of 2 values"),
    (dict(device=0), r"TrainConfig\.device must be a string"),
    (dict(min_lr=float("nan")), r"TrainConfig\.min_lr must be a finite number"),
    (dict(data=DataSpec(task="sort"), seed=None), r"TrainConfig\.seed must be an integer"),
])
def test_train_config_types_are_checked_as_data(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_json_lists_become_tuples_and_ints_pass_as_floats():
    c = TrainConfig(betas=[0.5, 0.9], lr=1, weight_decay=0)
    assert c.betas == (0.5, 0.9) and c.lr == 1


def test_data_spec_from_dict_checks_fields():
    assert DataSpec.from_dict({"corpus": "stories", "n_stories": 5}).n_stories == 5
    with pytest.raises(ValueError, match=r"DataSpec\.n_stories must be an integer, got '5'"):
        DataSpec.from_dict({"corpus": "stories", "n_stories": "5"})
    with pytest.raises(ValueError, match=r"unknown DataSpec fields \['stories'\]"):
        TrainConfig.from_dict({"data": {"stories": 5}})


def test_train_config_file_errors_name_the_file(tmp_path):
    file = tmp_path / "train_config.json"
    data = TrainConfig().to_dict()
    data["wandb"] = "false"
    file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))}: TrainConfig\.wandb"):
        TrainConfig.from_json(file)
    file.write_bytes(b'{"lr": \xff}')
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))} is not UTF-8 text "
                                         r"\(byte 0xff at offset 7\)"):
        TrainConfig.from_json(file)
    file.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))}: TrainConfig needs a JSON"):
        TrainConfig.from_json(file)


def test_train_tokens_cuts_only_the_training_split():
    from gptscope.train.data import build_data

    cfg = ModelConfig(n_ctx=16)
    full = build_data(DataSpec(corpus="shakespeare"), cfg)
    cut = build_data(DataSpec(corpus="shakespeare", train_tokens=1000), cfg)
    assert len(cut.train) == 1000 and len(full.train) > 10**6
    assert np.array_equal(np.asarray(cut.train.tokens), np.asarray(full.train.tokens[:1000]))
    assert np.array_equal(np.asarray(cut.val.tokens), np.asarray(full.val.tokens))
    assert cut.tokenizer.vocab_size == full.tokenizer.vocab_size  # trained on all the text
    with pytest.raises(ValueError, match="train_tokens=.* but the training split holds"):
        build_data(DataSpec(corpus="shakespeare", train_tokens=10**9), cfg)
    with pytest.raises(ValueError, match="train_tokens limits a text corpus"):
        DataSpec(task="copy", train_tokens=100)
