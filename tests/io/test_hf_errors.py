"""Bad Hugging Face folders get a ValueError naming the file, tensor or field at fault."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from _hf_models import GPT2_SHAPES, make_gpt2, save_bin
from safetensors.torch import load_file, save_file

from gptscope.io import hf_import
from gptscope.io.hf_import import load_pretrained


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_gpt2(**GPT2_SHAPES[0]).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _edit_config(folder: Path, **changes) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def test_unsupported_model_type_lists_supported(folder: Path) -> None:
    _edit_config(folder, model_type="llama", architectures=["LlamaForCausalLM"])
    with pytest.raises(ValueError, match="'llama' is not supported") as err:
        load_pretrained(folder)
    assert "gpt2" in str(err.value) and "BertModel" in str(err.value)


def test_unsupported_architecture(folder: Path) -> None:
    _edit_config(folder, architectures=["GPT2ForSequenceClassification"])
    with pytest.raises(ValueError, match="GPT2ForSequenceClassification.*GPT2LMHeadModel"):
        load_pretrained(folder)


def test_missing_config_names_the_file(folder: Path) -> None:
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=re.escape(str(folder / "config.json"))):
        load_pretrained(folder)


def test_bad_config_json_names_the_file(folder: Path) -> None:
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_pretrained(folder)


def test_missing_weights_name_the_file(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="holds no weights: expected model.safetensors"):
        load_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors_names_the_file(folder: Path, damage: str) -> None:
    file = folder / "model.safetensors"
    data = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        file.write_bytes(b"\xff" * 64 + data[64:])
    else:
        file.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(str(file)) + " is corrupt"):
        load_pretrained(folder)


def test_shape_mismatch_names_tensor_and_shapes(folder: Path) -> None:
    file = folder / "model.safetensors"
    tensors = load_file(file)
    tensors["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 200)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=re.escape(
            "tensor transformer.h.1.mlp.c_fc.weight has shape (64, 200) but config.json "
            "implies (64, 256)")):
        load_pretrained(folder)


def test_missing_and_unexpected_tensors_are_named(folder: Path) -> None:
    file = folder / "model.safetensors"
    tensors = load_file(file)
    del tensors["transformer.h.0.ln_2.bias"]
    tensors["transformer.h.0.surprise"] = torch.zeros(3)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing tensors \['h.0.ln_2.bias'\].*"
                                         r"unexpected tensors \['transformer.h.0.surprise'\]"):
        load_pretrained(folder)


def test_bin_is_read_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = make_gpt2(**GPT2_SHAPES[0])
    save_bin(hf, tmp_path)
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_pretrained(tmp_path)
    assert calls and all(c.get("weights_only") is True for c in calls)


def test_bin_with_code_objects_is_refused(tmp_path: Path) -> None:
    make_gpt2(**GPT2_SHAPES[0]).config.save_pretrained(tmp_path)
    torch.save({"wte.weight": torch.zeros(2), "payload": Path(".")},
               tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin could not be read as a weights-only"):
        load_pretrained(tmp_path)


def test_no_plain_torch_load_in_io() -> None:
    """The CI hook's rule: every torch.load( call says weights_only=True on its line."""
    root = Path(hf_import.__file__).parent
    for file in root.glob("*.py"):
        for line in file.read_text().splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{file.name}: {line.strip()}"


def test_bad_paths(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere" / "model")
    with pytest.raises(ValueError, match="is a file"):
        load_pretrained(folder / "config.json")


def _shard(folder: Path, entries: tuple[str, str] | None = None) -> dict[str, str]:
    """Split folder's model.safetensors into two shards + an index, as large models ship.

    The shards live in ``folder/../blobs`` and are linked into the folder, like the Hugging
    Face cache's snapshot files. ``entries``: the two shard names the index lists.
    """
    file = folder / "model.safetensors"
    tensors = load_file(file)
    file.unlink()
    names = sorted(tensors)
    blobs = folder.parent / "blobs"
    blobs.mkdir()
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, blobs / shard, metadata={"format": "pt"})
        (folder / shard).symlink_to(blobs / shard)
        listed = entries[i] if entries else shard
        weight_map.update(dict.fromkeys(part, listed))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return weight_map


def test_sharded_folder_with_linked_shards_loads(folder: Path) -> None:
    whole = load_pretrained(folder)
    _shard(folder)
    sharded = load_pretrained(folder)
    tokens = torch.randint(0, 100, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(sharded(tokens), whole(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("entry", ["../outside/x.safetensors", "/tmp/x.safetensors",
                                   "sub/../../x.safetensors", ".."])
def test_shard_outside_the_folder_is_refused(folder: Path, entry: str) -> None:
    outside = folder.parent / "outside"
    outside.mkdir()
    save_file({"x": torch.zeros(1)}, outside / "x.safetensors")
    _shard(folder, entries=("model-00001-of-00002.safetensors", entry))
    index = folder / "model.safetensors.index.json"
    with pytest.raises(ValueError, match=re.escape(f"{index} lists shard {entry!r}, which "
                                                   "lies outside the model folder")):
        load_pretrained(folder)


@pytest.mark.parametrize("index", [b"\xff\xfe not json", b"[1, 2]", b'{"weight_map": [1]}',
                                   b'{"weight_map": {"a": 3}}'])
def test_bad_shard_index_names_the_file(folder: Path, index: bytes) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_bytes(index)
    with pytest.raises(ValueError, match=re.escape(str(folder / "model.safetensors.index.json"))):
        load_pretrained(folder)


def test_cache_ref_that_leads_outside_is_ignored(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "hub" / "models--org--m"
    snapshot = repo / "snapshots" / "abc123"
    make_gpt2(**GPT2_SHAPES[0]).save_pretrained(snapshot)
    make_gpt2(**GPT2_SHAPES[0]).save_pretrained(tmp_path / "elsewhere")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("../../../elsewhere")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hf_import.find_in_cache("org/m") == snapshot  # the real snapshot, not the ref's


@pytest.mark.parametrize(("key", "value"), [("tie_word_embeddings", "false"), ("n_layer", "2"),
                                            ("n_embd", 32.5), ("layer_norm_epsilon", True)])
def test_hand_edited_gpt2_config_values_are_refused_by_key(key, value):
    from gptscope.io.convert_gpt2 import config_from_hf

    hf = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 50, "n_positions": 16, key: value}
    with pytest.raises(ValueError, match=f"config key '{key}' must be"):
        config_from_hf(hf, set())


def test_hand_edited_bert_config_values_are_refused_by_key():
    from gptscope.io.convert_bert import config_from_hf

    with pytest.raises(ValueError, match="config key 'tie_word_embeddings' must be true or false"):
        config_from_hf({"tie_word_embeddings": "false"}, set())
