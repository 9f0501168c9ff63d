"""Bad configs and bad files, as data: every case is a ValueError naming the field or file.

One table: (id, a callable taking tmp_path, a regex the message must match). The regex
names the field (``ModelConfig.causal``) or the file, and for field cases the bad value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import gptscope as gs
from gptscope import ModelConfig
from gptscope.config import MAX_N_CTX
from gptscope.data import TokenFile
from gptscope.io.hf_import import load_pretrained
from gptscope.tokenizers import load_tokenizer
from gptscope.train import DataSpec, TrainConfig
from gptscope.train.data import corpus_text

NAN, INF = float("nan"), float("inf")


def _names(where: str, value: Any) -> str:
    """A regex: the message names ``where`` and shows ``repr(value)``."""
    return rf"(?s)(?=.*{re.escape(where)}\b)(?=.*{re.escape(repr(value))})"


# -- field cases: (class, field, bad value, other keyword arguments) ------------------------

MODEL_FIELDS = [
    ("n_layers", "2"), ("n_layers", -1), ("n_layers", 2.0),
    ("d_model", 64.0), ("d_model", True), ("d_model", 0),
    ("n_heads", 0), ("n_heads", None),
    ("d_vocab", "256"), ("d_vocab", 0),
    ("n_ctx", 1e8), ("n_ctx", MAX_N_CTX + 1), ("n_ctx", 0),
    ("d_head", "8"), ("d_head", 0), ("d_mlp", 2.5), ("d_mlp", 0),
    ("act_fn", "swish"), ("act_fn", None), ("act_fn", 1),
    ("normalization", "batch"), ("normalization", True),
    ("positional", "alibi"),
    ("attn_only", "false"), ("attn_only", 0),
    ("causal", "no"), ("causal", 1), ("causal", None),
    ("tie_embeddings", "true"),
    ("dropout", "0.1"), ("dropout", 1.0), ("dropout", -0.1), ("dropout", NAN),
    ("init_range", 0), ("init_range", INF),
    ("seed", 1.5), ("seed", True), ("seed", "0"),
    ("norm_position", "middle"), ("norm_position", None),
    ("embed_norm", "yes"), ("final_norm", 0),
    ("n_token_types", -1), ("n_token_types", 2.0),
    ("eps", -1), ("eps", 0), ("eps", "1e-5"), ("eps", NAN),
    ("rotary_dim", 0), ("rotary_dim", 4.0),
    ("rotary_base", 0), ("rotary_base", -10000.0), ("rotary_base", INF),
    ("attn_bias", "true"), ("mlp_bias", None), ("unembed_bias", 1), ("mlm_head", "no"),
    ("extra", []), ("extra", None),
]

TRAIN_FIELDS = [
    ("lr", "1e-3"), ("lr", -1e-3), ("lr", NAN),
    ("min_lr", -1.0), ("min_lr", INF), ("min_lr", 1.0),
    ("schedule", "cosinus"), ("schedule", None),
    ("warmup_steps", 10.0), ("warmup_steps", -1),
    ("max_steps", 1e3), ("max_steps", 0),
    ("batch_size", True), ("batch_size", 0), ("grad_accum", 0),
    ("weight_decay", -0.1), ("decay_embeddings", "no"),
    ("betas", (0.9,)), ("betas", ("0.9", 0.95)), ("betas", (0.9, 1.0)), ("betas", 0.9),
    ("eps", 0), ("grad_clip", -1), ("eval_every", -1), ("eval_steps", 0),
    ("log_every", "10"), ("ckpt_every", -1), ("ckpt_every", 1.5), ("keep_last", 0),
    ("seed", None), ("seed", "1337"), ("device", 0), ("device", None),
    ("threads", 0), ("threads", 2.0),
    ("bf16", "true"), ("compile", 1), ("progress", "yes"), ("wandb", "false"),
    ("tensorboard", None), ("data", []),
]

DATA_FIELDS = [
    ("task", 3, {}), ("task_kwargs", [], {"task": "sort"}),
    ("task_kwargs", {1: 2}, {"task": "sort"}), ("text", 5, {}),
    ("corpus", "wikipedia", {}), ("corpus", 1, {}),
    ("tokenizer", "word", {"corpus": "stories"}), ("tokenizer", None, {"corpus": "stories"}),
    ("bpe_vocab_size", 256, {"corpus": "stories"}),
    ("bpe_vocab_size", "512", {"corpus": "stories"}),
    ("val_fraction", 0, {"corpus": "stories"}), ("val_fraction", 1, {"corpus": "stories"}),
    ("val_fraction", "0.1", {"corpus": "stories"}),
    ("n_stories", 0, {"corpus": "stories"}), ("n_stories", 10.5, {"corpus": "stories"}),
    ("full_batch", "yes", {"task": "sort"}),
]


def _field_cases() -> list[tuple[str, Callable[[Path], Any], str]]:
    cases = []
    for name, value in MODEL_FIELDS:
        extra = {"positional": "rotary"} if name == "rotary_dim" else {}
        cases.append((f"ModelConfig.{name}={value!r}",
                      lambda _, kw={name: value, **extra}: ModelConfig(**kw),
                      _names(f"ModelConfig.{name}", value)))
    for name, value in TRAIN_FIELDS:
        cases.append((f"TrainConfig.{name}={value!r}",
                      lambda _, kw={name: value}: TrainConfig(**kw),
                      _names(f"TrainConfig.{name}", value)))
    for name, value, others in DATA_FIELDS:
        cases.append((f"DataSpec.{name}={value!r}",
                      lambda _, kw={**others, name: value}: DataSpec(**kw),
                      _names(f"DataSpec.{name}", value)))
    return cases


# -- file cases ------------------------------------------------------------------------------


def _model_config_file(tmp_path: Path, drop: tuple[str, ...] = (), **changes: Any) -> Path:
    data = ModelConfig(act_fn="relu").to_dict()
    for name in drop:
        del data[name]
    data.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def _hand_edited(**changes: Any) -> Callable[[Path], Any]:
    return lambda tmp: ModelConfig.from_json(_model_config_file(tmp, **changes))


def _hand_edited_text(**changes: Any) -> Callable[[Path], Any]:
    return lambda _: ModelConfig.from_json(json.dumps({**ModelConfig().to_dict(), **changes}))


def _saved_run(tmp_path: Path, **changes: Any) -> Path:
    gs.save(gs.Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=8,
                                       d_vocab=11, act_fn="relu")), tmp_path / "run")
    data = json.loads((tmp_path / "run" / "config.json").read_text())
    for name in changes.pop("drop", ()):
        del data[name]
    data.update(changes)
    (tmp_path / "run" / "config.json").write_text(json.dumps(data))
    return tmp_path / "run"


def _escaping_shard(tmp_path: Path) -> Any:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "outside").mkdir()
    save_file({"wte.weight": torch.zeros(2, 2)}, tmp_path / "outside" / "x.safetensors")
    index = {"weight_map": {"wte.weight": "../outside/x.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return load_pretrained(folder)


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    (tmp_path / name).write_bytes(content)
    return tmp_path / name


class _Chars:
    vocab_size = 3

    def encode(self, text: str) -> list[int]:
        return [0] * len(text)


FILE_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("json causal 'no'", _hand_edited(causal="no"), r"config\.json: ModelConfig\.causal "
     r"must be true or false \(a JSON boolean\), got 'no'"),
    ("json attn_only 'false'", _hand_edited(attn_only="false"),
     r"config\.json: ModelConfig\.attn_only must be true or false"),
    ("json d_head '8'", _hand_edited(d_head="8"),
     r"config\.json: ModelConfig\.d_head must be an integer or null \(None\), got '8'"),
    ("json dropout '0.1'", _hand_edited(dropout="0.1"),
     r"config\.json: ModelConfig\.dropout must be a finite number, got '0\.1'"),
    ("json n_ctx 1e8", _hand_edited(n_ctx=1e8),
     r"config\.json: ModelConfig\.n_ctx must be an integer, got 100000000\.0; write 100000000"),
    ("json n_ctx over the cap", _hand_edited(n_ctx=2**24),
     r"config\.json: ModelConfig\.n_ctx must be in \[1, 1048576\]"),
    ("json eps -1", _hand_edited(eps=-1), r"config\.json: ModelConfig\.eps must be > 0"),
    ("json missing act_fn", lambda tmp: ModelConfig.from_json(
        _model_config_file(tmp, drop=("act_fn",))), r"config\.json lacks the fields \['act_fn'\]"),
    ("json text missing act_fn", lambda _: ModelConfig.from_json(json.dumps(
        {k: v for k, v in ModelConfig().to_dict().items() if k != "act_fn"})),
     r"model config text lacks the fields \['act_fn'\]"),
    ("json text causal 'no'", _hand_edited_text(causal="no"), r"ModelConfig\.causal"),
    ("json list", lambda tmp: ModelConfig.from_json(_write(tmp, "config.json", b"[]")),
     r"config\.json: ModelConfig needs a JSON object"),
    ("json unknown field", _hand_edited(n_layer=3), r"unknown ModelConfig fields \['n_layer'\]"),
    ("json not UTF-8", lambda tmp: ModelConfig.from_json(_write(tmp, "config.json", b"\xff")),
     r"config\.json is not UTF-8 text \(byte 0xff at offset 0\)"),
    ("gs.load missing act_fn", lambda tmp: gs.load(_saved_run(tmp, drop=["act_fn"])),
     r"run/config\.json lacks the fields \['act_fn'\]"),
    ("gs.load causal 'no'", lambda tmp: gs.load(_saved_run(tmp, causal="no")),
     r"run/config\.json: ModelConfig\.causal"),
    ("gs.load n_ctx 1e8", lambda tmp: gs.load(_saved_run(tmp, n_ctx=1e8)),
     r"run/config\.json: ModelConfig\.n_ctx must be an integer"),
    ("train_config.json progress 'yes'", lambda tmp: TrainConfig.from_json(_write(
        tmp, "train_config.json", json.dumps({"progress": "yes"}).encode())),
     r"train_config\.json: TrainConfig\.progress must be true or false"),
    ("train_config.json nested field", lambda tmp: TrainConfig.from_json(_write(
        tmp, "train_config.json", b'{"data": {"task": "sort", "n_stories": "9"}}')),
     r"train_config\.json: DataSpec\.n_stories must be an integer"),
    ("train_config.json not UTF-8", lambda tmp: TrainConfig.from_json(_write(
        tmp, "train_config.json", b"\x00\x9f")), r"train_config\.json is not UTF-8 text "
     r"\(byte 0x9f at offset 1\)"),
    ("shard escapes the folder", _escaping_shard, r"model\.safetensors\.index\.json lists "
     r"shard '\.\./outside/x\.safetensors', which lies outside the model folder"),
    ("garbage tokenizer.json", lambda tmp: load_tokenizer(_write(
        tmp, "tokenizer.json", b"\x1f\x8b\x08\x00garbage")),
     r"tokenizer\.json is not UTF-8 text \(byte 0x8b at offset 1\)"),
    ("tokenizer.json not JSON", lambda tmp: load_tokenizer(_write(
        tmp, "tokenizer.json", b"{model: BPE}")), r"tokenizer\.json is not valid JSON"),
    ("tokenizer.json a list", lambda tmp: load_tokenizer(_write(tmp, "tokenizer.json", b"[]")),
     r"tokenizer\.json holds a JSON list, not an object"),
    ("tokenizer.json bad structure", lambda tmp: load_tokenizer(_write(
        tmp, "tokenizer.json", b'{"type": "char", "chars": "ab", "special_tokens": 5}')),
     r"tokenizer\.json does not have the structure of a tokenizer\.json"),
    ("binary --data file", lambda tmp: corpus_text(DataSpec(text=str(_write(
        tmp, "data.txt", b"hello\xff\xfeworld")))), r"data\.txt is not UTF-8 text \(byte 0xff "
     r"at offset 5\); gptscope trains on UTF-8 text files"),
    ("binary token-file source", lambda tmp: TokenFile.write(
        tmp / "t.bin", _Chars(), source=_write(tmp, "src.txt", b"ok\n\x80")),
     r"src\.txt is not UTF-8 text \(byte 0x80 at offset 3\)"),
]

CASES = _field_cases() + FILE_CASES


def test_the_table_is_large_and_ids_are_unique():
    assert len(CASES) >= 40
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("make, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_or_file_is_a_clear_value_error(tmp_path, make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(tmp_path)
