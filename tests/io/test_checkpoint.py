"""gs.save / gs.load: safetensors run folders, atomic writes, pickles refused, clear errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from helpers import random_model

import gptscope as gs

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)

CONFIGS = {
    "gpt2": {},
    "tied": {"tie_embeddings": True},
    "sinusoidal": {"positional": "sinusoidal", "normalization": "rms"},
    "rotary": {"positional": "rotary", "rotary_dim": 4, "unembed_bias": True},
    "attn_only": {"attn_only": True, "normalization": None, "attn_bias": False},
}


def make(**kw) -> gs.Transformer:
    return random_model(**{**BASE, **kw})


TOKS = torch.randint(0, 41, (2, 11), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def saved(tmp_path):
    model = make()
    gs.save(model, tmp_path / "run")
    return model, tmp_path / "run"


@pytest.fixture(autouse=True)
def _never_unpickle(monkeypatch):
    """Any attempt to unpickle during these tests fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle load was attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip(tmp_path, name):
    model = make(**CONFIGS[name])
    out = gs.save(model, tmp_path / "run")
    assert out == tmp_path / "run"
    loaded = gs.load(tmp_path / "run")
    assert isinstance(loaded, gs.Transformer)
    assert loaded.cfg == model.cfg
    assert not loaded.training
    assert torch.equal(loaded(TOKS), model(TOKS))
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    if model.cfg.tie_embeddings:
        assert torch.equal(loaded.W_U, loaded.W_E.T)
    if model.cfg.positional == "sinusoidal":
        assert torch.equal(loaded.W_pos, model.W_pos)
    a = loaded.generate(TOKS[:, :4], max_new_tokens=5, temperature=0.0)
    assert torch.equal(a, model.generate(TOKS[:, :4], max_new_tokens=5, temperature=0.0))


def test_files_present_and_no_temp_files(saved):
    model, path = saved
    names = sorted(os.listdir(path))
    assert names == ["config.json", "model.safetensors"]
    assert gs.ModelConfig.from_json(path / "config.json") == model.cfg
    from safetensors.torch import load_file

    tensors = load_file(str(path / "model.safetensors"))
    assert tensors.keys() == model.state_dict().keys()
    # Saving again over an existing folder replaces the files, still without leftovers.
    with torch.no_grad():
        model.embed.W_E.mul_(2)
    gs.save(model, path)
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    assert torch.equal(gs.load(path).W_E, model.W_E)


def test_tied_weights_stored_once(tmp_path):
    gs.save(make(tie_embeddings=True), tmp_path / "run")
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "run" / "model.safetensors")))
    assert "embed.W_E" in keys and not any("W_U" in k for k in keys)


def test_failed_write_leaves_old_file_and_no_temp(saved, monkeypatch):
    model, path = saved
    before = (path / "model.safetensors").read_bytes()
    import safetensors.torch

    def broken(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        gs.save(model, path)
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("filename", ["pytorch_model.bin", "model.pt", "ckpt.pth"])
def test_pickle_only_folder_refused(tmp_path, filename):
    folder = tmp_path / "pickles"
    folder.mkdir()
    (folder / filename).write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="pickle") as info:
        gs.load(folder)
    assert filename in str(info.value)


def test_pickle_file_path_refused(tmp_path):
    file = tmp_path / "model.pt"
    file.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="pickle"):
        gs.load(file)


def test_truncated_weights(saved):
    _, path = saved
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        gs.load(path)
    weights.write_bytes(data[:5])
    with pytest.raises(ValueError, match="model.safetensors"):
        gs.load(path)


@pytest.mark.parametrize("text", ["{\"n_layers\": 2,", "\x00\xff garbage", ""])
def test_corrupt_config(saved, text):
    _, path = saved
    (path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="config.json"):
        gs.load(path)


def test_missing_files(saved):
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        gs.load(path)
    (path / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json"):
        gs.load(path)
    with pytest.raises(ValueError, match="folder"):
        gs.load(path / "nope")


def test_shape_mismatch_names_tensor(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["d_mlp"] = 64  # the saved MLP weights are [32, 128]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="mlp.W_in"):
        gs.load(path)


def test_key_mismatch(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["n_layers"] = 3
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="missing"):
        gs.load(path)


def test_save_rejects_non_gptscope(tmp_path):
    with pytest.raises(ValueError, match="Transformer"):
        gs.save(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ValueError, match="format"):
        gs.save(make(), tmp_path / "y", format="onnx")


@pytest.mark.parametrize("kw", [{}, {"positional": "sinusoidal"}, {"positional": "rotary"}])
def test_bf16_round_trip_keeps_dtype(tmp_path, kw):
    model = make(**kw).to(torch.bfloat16)
    gs.save(model, tmp_path / "run")
    loaded = gs.load(tmp_path / "run")
    assert loaded.dtype == torch.bfloat16
    assert torch.equal(loaded(TOKS), model(TOKS))


def _edit_saved_config(path, drop=(), **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    for name in drop:
        del cfg[name]
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_config_without_act_fn_is_refused(tmp_path):
    """The default gelu_new would silently run a relu model with the wrong activation."""
    model = make(act_fn="relu")
    gs.save(model, tmp_path / "run")
    _edit_saved_config(tmp_path / "run", drop=["act_fn"])
    with pytest.raises(ValueError, match=r"config\.json lacks the fields \['act_fn'\].*silently"):
        gs.load(tmp_path / "run")


@pytest.mark.parametrize("field, value", [("causal", "no"), ("attn_only", "false"),
                                          ("d_head", "8"), ("dropout", "0.1"), ("n_ctx", 1e8)])
def test_hand_edited_config_types_are_refused(saved, field, value):
    _, path = saved
    _edit_saved_config(path, **{field: value})
    with pytest.raises(ValueError, match=rf"config\.json: ModelConfig\.{field} must be"):
        gs.load(path)


def test_config_may_omit_init_only_fields(saved):
    model, path = saved
    _edit_saved_config(path, drop=["seed", "init_range", "extra"])
    loaded = gs.load(path)
    assert loaded.cfg.act_fn == model.cfg.act_fn
    torch.testing.assert_close(loaded(TOKS), model(TOKS))


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_huge_n_ctx_loads_with_a_small_position_table(tmp_path, positional):
    from gptscope.model.layers import EAGER_POSITIONS

    model = make(positional=positional, n_ctx=2**20)
    gs.save(model, tmp_path / "run")
    loaded = gs.load(tmp_path / "run")
    table = loaded.pos_embed.W_pos if positional == "sinusoidal" else loaded.rotary_cos
    assert table.shape[0] == EAGER_POSITIONS  # not the 2**20 rows n_ctx allows
    torch.testing.assert_close(loaded(TOKS), model(TOKS))
