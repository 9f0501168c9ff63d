"""Transformer over a grid of configs: shapes, loss, causality, layer slicing, padding,
TransformerLens-shaped weights, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_model

import gptscope as gs

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)

CONFIGS = {
    "gpt2": {},
    "sinusoidal": {"positional": "sinusoidal"},
    "rotary": {"positional": "rotary"},
    "rotary_partial": {"positional": "rotary", "rotary_dim": 4},
    "no_pos": {"positional": None},
    "rms": {"normalization": "rms"},
    "no_norm": {"normalization": None},
    "attn_only": {"attn_only": True},
    "encoder": {"causal": False},
    "tied": {"tie_embeddings": True},
    "bigram": {"n_layers": 0},
    "relu": {"act_fn": "relu"},
    "gelu": {"act_fn": "gelu"},
    "silu": {"act_fn": "silu"},
    "no_bias_unembed_bias": {"attn_bias": False, "mlp_bias": False, "unembed_bias": True},
}


def make(**kw) -> gs.Transformer:
    return random_model(**{**BASE, **kw})


def tokens(batch=2, n=10, d_vocab=41, seed=0):
    return torch.randint(0, d_vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=list(CONFIGS), scope="module")
def model(request):
    return make(**CONFIGS[request.param])


def test_output_shapes(model):
    t = tokens()
    assert model(t).shape == (2, 10, 41)
    assert model(t[0]).shape == (1, 10, 41)  # [pos] is a batch of one
    assert model(t[0].tolist()).shape == (1, 10, 41)
    assert model(t, return_type=None) is None


def test_logits_at_unembeds_only_the_masked_positions(model):
    t = tokens()
    keep = torch.rand(2, 10, generator=torch.Generator().manual_seed(1)) < 0.4
    got = model(t, logits_at=keep)
    assert got.shape == (int(keep.sum()), 41)
    torch.testing.assert_close(got, model(t)[keep])


def test_logits_at_refuses_a_bad_mask():
    small, t = make(), tokens()
    with pytest.raises(ValueError, match=r"bool mask \[batch, pos\] = \[2, 10\].*mask.bool"):
        small(t, logits_at=torch.ones(2, 10))
    with pytest.raises(ValueError, match=r"got \(2, 9\)"):
        small(t, logits_at=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs return_type='logits'"):
        small(t, return_type="loss", logits_at=torch.ones(2, 10, dtype=torch.bool))


def test_loss_is_cross_entropy_of_shifted_logits(model):
    t = tokens()
    logits = model(t)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 41), t[:, 1:].reshape(-1))
    torch.testing.assert_close(model(t, return_type="loss"), ref)
    both_logits, both_loss = model(t, return_type="both")
    torch.testing.assert_close(both_logits, logits)
    torch.testing.assert_close(both_loss, ref)
    per = model(t, return_type="loss", loss_per_token=True)
    assert per.shape == (2, 9)
    ref_per = F.cross_entropy(logits[:, :-1].transpose(1, 2), t[:, 1:], reduction="none")
    torch.testing.assert_close(per, ref_per)


def test_causality(model):
    t = tokens()
    t2 = t.clone()
    t2[:, 6] = (t2[:, 6] + 1) % 41
    a, b = model(t), model(t2)
    if model.cfg.causal:
        torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    if model.cfg.n_layers == 0:
        torch.testing.assert_close(a[:, :6], b[:, :6])  # a bigram model sees one token
    elif not model.cfg.causal:
        assert not torch.allclose(a[:, :6], b[:, :6], atol=1e-4)
    assert not torch.allclose(a[:, 6], b[:, 6], atol=1e-4)


def test_start_and_stop_at_layer_compose(model):
    t = tokens()
    full = model(t)
    for k in range(model.cfg.n_layers + 1):
        resid = model(t, stop_at_layer=k)
        assert resid.shape == (2, 10, 32)
        torch.testing.assert_close(model(resid, start_at_layer=k), full, atol=1e-5, rtol=1e-5)


def test_right_padding_leaves_real_logits_unchanged(model):
    t = tokens(batch=1, n=7)
    ref = model(t)
    padded = torch.cat([t, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 3])
    out = model(padded, attention_mask=mask)
    if model.cfg.causal:
        torch.testing.assert_close(out[:, :7], ref, atol=1e-5, rtol=1e-5)
    else:  # an encoder would see the pad tokens without the mask
        torch.testing.assert_close(out[:, :7], ref, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(padded)[:, :7], ref, atol=1e-4) or model.cfg.n_layers == 0
    assert out.isfinite().all()


@pytest.mark.parametrize("kw", [{}, {"positional": "rotary"}, {"positional": "sinusoidal"}])
def test_left_padding_batch_matches_unpadded(kw):
    model = make(**kw)
    a, b = tokens(1, 8, seed=1), tokens(1, 5, seed=2)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    mask = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    out = model(batch, attention_mask=mask)
    torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, 3:], model(b)[0], atol=1e-5, rtol=1e-5)


def test_masked_loss_ignores_padding():
    model = make()
    t = tokens(1, 7)
    padded = torch.cat([t, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 3])
    loss = model(padded, return_type="loss", attention_mask=mask)
    torch.testing.assert_close(loss, model(t, return_type="loss"), atol=1e-5, rtol=1e-5)


# -- TransformerLens-shaped weights ------------------------------------------------------------


def test_weight_shapes():
    model = make(n_layers=3)
    L, H, d, dh, V, m = 3, 4, 32, 8, 41, 128
    assert model.W_E.shape == (V, d)
    assert model.W_pos.shape == (16, d)
    assert model.W_U.shape == (d, V)
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(model, name).shape == (L, H, d, dh)
    assert model.W_O.shape == (L, H, dh, d)
    assert model.b_Q.shape == (L, H, dh)
    assert model.b_O.shape == (L, d)
    assert model.W_in.shape == (L, d, m) and model.W_out.shape == (L, m, d)
    assert model.b_in.shape == (L, m) and model.b_out.shape == (L, d)
    assert torch.equal(model.W_Q[1], model.blocks[1].attn.W_Q)
    assert torch.equal(model.W_out[2], model.blocks[2].mlp.W_out)
    assert model.b_U is None


def test_weights_drive_the_forward():
    """W_E, W_pos and W_U really are what the forward uses (bigram model, no norm)."""
    model = make(n_layers=0, normalization=None)
    t = tokens(1, 5)
    expected = (model.W_E[t[0]] + model.W_pos[:5]) @ model.W_U
    torch.testing.assert_close(model(t)[0], expected)


def test_sinusoidal_w_pos_is_fixed_table():
    model = make(positional="sinusoidal")
    torch.testing.assert_close(model.W_pos, gs.model.functional.sinusoidal_positions(16, 32))
    assert "pos_embed.W_pos" not in model.state_dict()
    with pytest.raises(ValueError, match="W_pos"):
        _ = make(positional="rotary").W_pos


def test_tied_embeddings():
    model = make(tie_embeddings=True)
    assert torch.equal(model.W_U, model.W_E.T)
    keys = list(model.state_dict())
    assert "embed.W_E" in keys and not any("W_U" in k for k in keys)
    with torch.no_grad():
        model.embed.W_E[3] += 1.0
    assert torch.equal(model.W_U[:, 3], model.W_E[3])
    n_params = sum(p.numel() for p in model.parameters())
    untied = make()
    assert sum(p.numel() for p in untied.parameters()) - n_params == 32 * 41


def test_bigram_weight_properties_are_empty():
    model = make(n_layers=0)
    assert model.W_Q.shape == (0, 4, 32, 8)
    assert model.W_O.shape == (0, 4, 8, 32)


def test_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = gs.Transformer(gs.ModelConfig(**BASE))
    after = torch.rand(1)
    b = gs.Transformer(gs.ModelConfig(**BASE))
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return make()


@pytest.mark.parametrize(
    "bad, word",
    [
        (torch.tensor([[1, 2, -1]]), "d_vocab"),
        (torch.tensor([[1, 2, 41]]), "d_vocab"),
        (torch.tensor([[1.0, 2.0]]), "dtype"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        ([], "empty"),
        (torch.zeros(1, 17, dtype=torch.long), "n_ctx"),
        (torch.zeros(1, 2, 3, dtype=torch.long), "batch, pos"),
        ("hello", "tokenizer"),
        (3.5, "tokens"),
    ],
)
def test_bad_tokens_raise_value_error(small, bad, word):
    with pytest.raises(ValueError, match=word):
        small(bad)


def test_bad_return_type(small):
    with pytest.raises(ValueError, match="return_type"):
        small(tokens(), return_type="probs")


@pytest.mark.parametrize("shape", [(2, 10), (2, 10, 31), (10, 32, 1, 1)])
def test_start_at_layer_wrong_shape(small, shape):
    with pytest.raises(ValueError, match="start_at_layer"):
        small(torch.randn(*shape), start_at_layer=1)


def test_loss_needs_two_tokens(small):
    with pytest.raises(ValueError, match="2 tokens"):
        small(tokens(1, 1), return_type="loss")


def test_transformer_needs_model_config():
    with pytest.raises(ValueError, match="ModelConfig"):
        gs.Transformer({"n_layers": 1})


@pytest.mark.parametrize("kw", [{"positional": "rotary"}, {}])
def test_padded_layer_slicing_keeps_positions(kw):
    # The residual path numbers positions from the mask too, as the token path does.
    model = make(**kw)
    t = tokens(2, 8, seed=3)
    mask = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    full = model(t, attention_mask=mask)
    resid = model(t, attention_mask=mask, stop_at_layer=1)
    torch.testing.assert_close(model(resid, attention_mask=mask, start_at_layer=1), full,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("start, stop", [(-1, None), (None, -1), (-2, -1), (0, 2), (2, 2)])
def test_negative_layers_count_from_the_end(start, stop):
    model = make(n_layers=3)
    t = tokens()
    norm = {None: None, -1: 2, -2: 1}
    resid = model(t, stop_at_layer=norm.get(start, start) if start is not None else 0)
    a = model(resid, start_at_layer=start if start is not None else 0, stop_at_layer=stop)
    b = model(resid, start_at_layer=norm.get(start, start) if start is not None else 0,
              stop_at_layer=norm.get(stop, stop))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_small_integer_token_dtypes_are_widened(small, dtype):
    t = tokens()
    torch.testing.assert_close(small(t.to(dtype)), small(t))


def test_numpy_tokens_accepted(small):
    import numpy as np

    t = tokens()
    torch.testing.assert_close(small(t.numpy()), small(t))
    torch.testing.assert_close(small(t.numpy().astype(np.int16)), small(t))
