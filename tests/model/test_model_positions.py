"""Lazily built position tables: same logits as full tables, memory only for used positions."""

from __future__ import annotations

import pytest
import torch

import gptscope as gs
from gptscope.model import functional as gf
from gptscope.model import layers
from gptscope.model.layers import KVCache

N_CTX = 48


def _model(positional: str) -> gs.Transformer:
    cfg = gs.ModelConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=20, n_ctx=N_CTX,
                         positional=positional, seed=0)
    return gs.Transformer(cfg).eval()


def _rows(model: gs.Transformer) -> int:
    if model.cfg.positional == "sinusoidal":
        return model.pos_embed.W_pos.shape[0]
    return model.rotary_cos.shape[0]


def _with_full_tables(model: gs.Transformer) -> gs.Transformer:
    """A copy of ``model`` holding the whole eagerly built tables, as gptscope used to."""
    full = gs.Transformer(model.cfg, device="meta")
    full.load_state_dict(model.state_dict(), assign=True)
    cfg = model.cfg
    if cfg.positional == "sinusoidal":
        full.pos_embed.W_pos = gf.sinusoidal_positions(cfg.n_ctx, cfg.d_model)
    else:
        full.rotary_cos, full.rotary_sin = gf.rotary_angles(cfg.n_ctx, cfg.rotary_dim,
                                                            cfg.rotary_base)
    return full.eval()


@pytest.fixture
def small_eager(monkeypatch):
    """Start tables at 4 rows so the tests cross the eager size with short inputs."""
    monkeypatch.setattr(layers, "EAGER_POSITIONS", 4)


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_lazy_tables_give_the_logits_of_full_tables(small_eager, positional):
    model = _model(positional)
    assert _rows(model) == 4
    full = _with_full_tables(model)
    tokens = torch.randint(0, 20, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), full(tokens), rtol=0, atol=0)
    assert _rows(model) == 11  # grown to what was asked (more than double 4)
    with torch.no_grad():
        model(torch.randint(0, 20, (1, 13)))
    assert _rows(model) == 22  # doubled
    with torch.no_grad():
        model(torch.randint(0, 20, (1, N_CTX)))
    assert _rows(model) == N_CTX  # never past n_ctx


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_cached_decoding_grows_tables_past_the_eager_size(small_eager, positional):
    model = _model(positional)
    full = _with_full_tables(model)
    tokens = torch.randint(0, 20, (1, 9), generator=torch.Generator().manual_seed(1))
    past = KVCache(model.cfg, batch=1)
    with torch.no_grad():
        steps = [model(tokens[:, :3], past=past)]
        steps += [model(tokens[:, i:i + 1], past=past) for i in range(3, 9)]
        expected = full(tokens)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, rtol=1e-5, atol=1e-5)
    assert _rows(model) >= 9


def test_start_at_layer_grows_rotary_tables(small_eager):
    model = _model("rotary")
    full = _with_full_tables(model)
    resid = torch.randn(1, 10, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(resid, start_at_layer=1),
                                   full(resid, start_at_layer=1), rtol=0, atol=0)


def test_W_pos_is_the_full_sinusoidal_table(small_eager):
    model = _model("sinusoidal")
    torch.testing.assert_close(model.W_pos, gf.sinusoidal_positions(N_CTX, 16), rtol=0, atol=0)
    assert _model("learned").W_pos.shape == (N_CTX, 16)  # a parameter: always full-size


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_a_million_positions_cost_only_the_eager_table(positional):
    cfg = gs.ModelConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=20, n_ctx=2**20,
                         positional=positional, seed=0)
    model = gs.Transformer(cfg, device="meta")
    model.rebuild_buffers("cpu")
    assert _rows(model) == layers.EAGER_POSITIONS  # not 2**20
    built = gs.Transformer(cfg)
    assert _rows(built) == layers.EAGER_POSITIONS
    with torch.no_grad():
        assert built(torch.tensor([[1, 2, 3]])).shape == (1, 3, 20)


def test_small_models_get_their_whole_table_at_init():
    """No growth in forward for n_ctx <= EAGER_POSITIONS (torch.compile sees one graph)."""
    for positional in ("sinusoidal", "rotary"):
        assert _rows(_model(positional)) == N_CTX
