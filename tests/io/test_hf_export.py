"""save_hf writes folders transformers opens with the same outputs; round trips back."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import gptscope as gs
from gptscope.io.hf_export import save_hf

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)

ATOL = 1e-4


def _trained(cfg: gs.ModelConfig, steps: int = 5) -> gs.Transformer:
    """A model after a few Adam steps, so no weight is still at its initial value."""
    model = gs.Transformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        tokens = torch.randint(0, cfg.d_vocab, (4, 16), generator=g)
        loss = model(tokens, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 14), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("changes", [
    dict(tie_embeddings=False),
    dict(tie_embeddings=True, act_fn="gelu"),
    dict(act_fn="relu", attn_bias=False, mlp_bias=False, d_mlp=100),
], ids=["untied", "tied-gelu", "relu-nobias"])
def test_gpt2_export_matches_transformers_and_round_trips(tmp_path: Path,
                                                          changes: dict) -> None:
    cfg = gs.ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=200, n_ctx=32, seed=0,
                         **changes)
    model = _trained(cfg)
    gs.save(model, tmp_path, format="hf")
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    tokens = _tokens(cfg.d_vocab)
    with torch.no_grad():
        ours = model(tokens)
        torch.testing.assert_close(hf(tokens).logits, ours, atol=ATOL, rtol=0)
        back = gs.load_pretrained(tmp_path)
        torch.testing.assert_close(back(tokens), ours, atol=ATOL, rtol=0)
    assert back.cfg.tie_embeddings == cfg.tie_embeddings
    assert back.cfg.act_fn == cfg.act_fn and back.cfg.d_mlp == cfg.d_mlp


def test_export_writes_tokenizer(tmp_path: Path) -> None:
    from gptscope.tokenizers import BPETokenizer

    tok = BPETokenizer.train("the quick brown fox jumps over the lazy dog. " * 10,
                             vocab_size=280, special_tokens=["<|endoftext|>"],
                             eos_token="<|endoftext|>")
    model = gs.Transformer(gs.ModelConfig(n_layers=1, d_model=32, n_heads=2,
                                          d_vocab=tok.vocab_size, n_ctx=16, seed=1))
    model.tokenizer = tok
    save_hf(model, tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "the lazy fox"
    assert hf_tok(text)["input_ids"] == tok.encode(text)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == tok.eos_token_id
    assert gs.load_pretrained(tmp_path).tokenizer.encode(text) == tok.encode(text)


@pytest.mark.parametrize("mlm", [False, True], ids=["BertModel", "BertForMaskedLM"])
def test_bert_export_matches_transformers(tmp_path: Path, mlm: bool) -> None:
    cfg = gs.ModelConfig(n_layers=2, d_model=48, n_heads=3, d_vocab=150, n_ctx=24, seed=2,
                         causal=False, norm_position="post", embed_norm=True, final_norm=False,
                         n_token_types=2, act_fn="gelu", tie_embeddings=True,
                         mlm_head=mlm, unembed_bias=mlm, eps=1e-12)
    model = gs.Transformer(cfg).eval()
    with torch.no_grad():  # nontrivial norms and biases
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b", "b_U")) or ".b_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    save_hf(model, tmp_path)
    cls = transformers.BertForMaskedLM if mlm else transformers.BertModel
    hf = cls.from_pretrained(tmp_path).eval()
    tokens = _tokens(cfg.d_vocab)
    types = torch.zeros_like(tokens)
    types[:, 7:] = 1
    with torch.no_grad():
        hidden = model(tokens, token_type_ids=types, stop_at_layer=cfg.n_layers)
        out = hf(input_ids=tokens, token_type_ids=types, output_hidden_states=True)
        torch.testing.assert_close(out.hidden_states[-1], hidden, atol=ATOL, rtol=0)
        if mlm:
            torch.testing.assert_close(out.logits, model(tokens, token_type_ids=types),
                                       atol=ATOL, rtol=0)
        back = gs.load_pretrained(tmp_path)
        torch.testing.assert_close(back(tokens, token_type_ids=types,
                                        stop_at_layer=cfg.n_layers), hidden, atol=ATOL, rtol=0)


@pytest.mark.parametrize("changes", [
    dict(positional="rotary"),
    dict(normalization="rms"),
    dict(attn_only=True),
    dict(final_norm=False),
    dict(positional="sinusoidal"),
    dict(unembed_bias=True),
])
def test_unsupported_shapes_are_refused(tmp_path: Path, changes: dict) -> None:
    model = gs.Transformer(gs.ModelConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=50,
                                          n_ctx=16, **changes))
    if changes.get("unembed_bias"):
        with torch.no_grad():
            model.unembed.b_U.fill_(0.5)
    with pytest.raises(ValueError, match="Hugging Face export supports"):
        save_hf(model, tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_save_hf_rejects_non_models(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gptscope Transformer"):
        save_hf(torch.nn.Linear(2, 2), tmp_path)
