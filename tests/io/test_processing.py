"""Weight processing leaves log-probs unchanged and agrees with TransformerLens's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _hf_models import GPT2_SHAPES, make_gpt2, randomize_norms

import gptscope as gs
from gptscope.io.processing import center_unembed, fold_layer_norm, process_weights

ATOL = 1e-4
STEPS = ["fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases"]


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpt2")
    hf = make_gpt2(**GPT2_SHAPES[1])
    randomize_norms(hf)
    hf.save_pretrained(folder)
    return folder


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 16), generator=torch.Generator().manual_seed(4))


def _log_probs(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).log_softmax(-1)


@pytest.mark.parametrize("steps", [[s] for s in STEPS] + [STEPS], ids=[*STEPS, "all"])
def test_processing_keeps_log_probs(gpt2_folder: Path, steps: list[str]) -> None:
    plain = gs.load_pretrained(gpt2_folder)
    processed = gs.load_pretrained(gpt2_folder, **{s: True for s in steps})
    tokens = _tokens(plain.cfg.d_vocab)
    torch.testing.assert_close(_log_probs(processed, tokens), _log_probs(plain, tokens),
                               atol=ATOL, rtol=0)
    assert processed.cfg.extra["processing"] == steps
    if steps != ["fold_value_biases"]:
        assert not processed.cfg.tie_embeddings  # W_U got its own copy
    if "fold_value_biases" in steps:
        assert torch.equal(processed.b_V, torch.zeros_like(processed.b_V))
        assert not torch.equal(processed.b_O, plain.b_O)
    if "fold_ln" in steps:
        for block in processed.blocks:
            assert torch.equal(block.ln1.w, torch.ones_like(block.ln1.w))
            assert torch.equal(block.ln2.b, torch.zeros_like(block.ln2.b))
            # readers of a centred input are centred over d_model
            assert block.attn.W_Q.mean(1).abs().max() < 1e-6
    if "center_writing_weights" in steps:
        assert processed.W_E.mean(-1).abs().max() < 1e-6
        assert processed.W_O.mean(-1).abs().max() < 1e-6
        assert processed.b_out.mean(-1).abs().max() < 1e-6
    if steps == ["center_unembed"]:
        assert processed.W_U.mean(-1).abs().max() < 1e-6
        torch.testing.assert_close(processed.W_E, plain.W_E)  # untied first: W_E untouched


@pytest.mark.parametrize("fold_value_biases", [False, True])
def test_processing_matches_transformer_lens(gpt2_folder: Path, fold_value_biases: bool
                                             ) -> None:
    tl = pytest.importorskip("transformer_lens")
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    shape = GPT2_SHAPES[1]
    hf = pytest.importorskip("transformers").GPT2LMHeadModel.from_pretrained(gpt2_folder)
    tl_cfg = tl.HookedTransformerConfig(
        n_layers=shape["n_layer"], d_model=shape["n_embd"], n_heads=shape["n_head"],
        d_head=shape["n_embd"] // shape["n_head"], d_mlp=4 * shape["n_embd"],
        d_vocab=shape["vocab_size"], n_ctx=shape["n_positions"], act_fn="gelu_new",
        normalization_type="LN", eps=1e-5, default_prepend_bos=False,
    )
    reference = tl.HookedTransformer(tl_cfg)
    reference.load_and_process_state_dict(
        convert_gpt2_weights(hf, tl_cfg), fold_ln=True, center_writing_weights=True,
        center_unembed=True, fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=False,
    )
    ours = gs.load_pretrained(gpt2_folder, fold_ln=True, center_writing_weights=True,
                              center_unembed=True, fold_value_biases=fold_value_biases)
    theirs = reference.state_dict()
    mine = ours.state_dict()
    compared = 0
    for name, tensor in theirs.items():
        if name in mine:
            torch.testing.assert_close(mine[name], tensor, atol=ATOL, rtol=0,
                                       msg=lambda m, n=name: f"{n}: {m}")
            compared += 1
    assert compared >= 4 + 12 * shape["n_layer"]
    tokens = _tokens(shape["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), reference(tokens), atol=ATOL, rtol=0)


def test_processing_functions_return_new_models() -> None:
    cfg = gs.ModelConfig(n_layers=2, d_model=32, n_heads=4, d_vocab=60, n_ctx=16, seed=0,
                         normalization="rms", tie_embeddings=True)
    model = gs.Transformer(cfg).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.ln1.w.uniform_(0.5, 1.5)
    tokens = _tokens(60)
    before = _log_probs(model, tokens)
    ln_w = model.blocks[0].ln1.w.detach().clone()
    folded = fold_layer_norm(model)
    assert torch.equal(model.blocks[0].ln1.w, ln_w)  # not in place unless asked
    assert folded is not model and model.cfg.tie_embeddings  # the input is left alone
    torch.testing.assert_close(_log_probs(folded, tokens), _log_probs(model, tokens),
                               atol=ATOL, rtol=0)
    centred = center_unembed(model)
    torch.testing.assert_close(_log_probs(centred, tokens), _log_probs(model, tokens),
                               atol=ATOL, rtol=0)
    assert process_weights(model) is model
    torch.testing.assert_close(_log_probs(model, tokens), before)
    inplace = process_weights(model, fold_ln=True, inplace=True)
    assert torch.equal(model.blocks[0].ln1.w, torch.ones_like(ln_w))  # overwritten
    torch.testing.assert_close(_log_probs(inplace, tokens), before, atol=ATOL, rtol=0)


def test_processing_refuses_models_it_would_change() -> None:
    bert = gs.Transformer(gs.ModelConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=40,
                                         n_ctx=8, causal=False, norm_position="post",
                                         embed_norm=True))
    with pytest.raises(ValueError, match="fold_ln needs a pre-LN model"):
        fold_layer_norm(bert)
    rms = gs.Transformer(gs.ModelConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=40,
                                        n_ctx=8, normalization="rms"))
    with pytest.raises(ValueError, match="center_writing_weights needs"):
        process_weights(rms, center_writing_weights=True)
    center_unembed(bert)  # softmax ignores shifts in any model
