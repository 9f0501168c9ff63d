"""The functional blocks against independent references (torch, hand computations)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gptscope.config import gelu_new
from gptscope.model import functional as gf


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- softmax / log_softmax / cross_entropy ---------------------------------------------------


@pytest.mark.parametrize("dim", [-1, 0, 1, 2])
def test_softmax_matches_torch(dim):
    x = torch.randn(3, 5, 7) * 4
    torch.testing.assert_close(gf.softmax(x, dim=dim), torch.softmax(x, dim=dim))
    torch.testing.assert_close(gf.log_softmax(x, dim=dim), torch.log_softmax(x, dim=dim))


def test_softmax_huge_inputs_stay_finite():
    x = torch.tensor([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4 + 1], [1e4, 1e4, 1e4]])
    p = gf.softmax(x, dim=-1)
    assert p.isfinite().all()
    torch.testing.assert_close(p, torch.softmax(x, dim=-1))
    torch.testing.assert_close(gf.softmax(x, dim=0), torch.softmax(x, dim=0))
    logp = gf.log_softmax(x, dim=-1)
    assert logp.isfinite().all()  # -2e4, not -inf
    torch.testing.assert_close(logp, torch.log_softmax(x, dim=-1))
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0]))
    assert gf.log_softmax(torch.tensor([1e4, -1e4]), dim=-1).isfinite().all()


def test_softmax_equal_values_is_uniform():
    x = torch.full((4, 6), 3.7)
    torch.testing.assert_close(gf.softmax(x), torch.full((4, 6), 1 / 6))
    torch.testing.assert_close(gf.log_softmax(x), torch.full((4, 6), -math.log(6)))


def test_softmax_rows_sum_to_one():
    p = gf.softmax(torch.randn(8, 11) * 10, dim=-1)
    torch.testing.assert_close(p.sum(-1), torch.ones(8))
    assert (p >= 0).all()


@pytest.mark.parametrize("shape", [(6, 10), (2, 5, 10)])
def test_cross_entropy_matches_torch(shape):
    logits = torch.randn(*shape) * 3
    targets = torch.randint(0, shape[-1], shape[:-1])
    ref = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(gf.cross_entropy(logits, targets), ref)


def test_cross_entropy_extreme_logits_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0]])
    out = gf.cross_entropy(logits, torch.tensor([1]))
    torch.testing.assert_close(out, F.cross_entropy(logits, torch.tensor([1])))
    assert out.isfinite()


# -- sinusoidal positions ----------------------------------------------------------------------


def test_sinusoidal_known_values():
    d = 8
    pe = gf.sinusoidal_positions(6, d)
    assert pe.shape == (6, d) and pe.dtype == torch.float32
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * (d // 2)))
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-6)
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    for p in range(6):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_shift_is_rotation_per_pair():
    d, k = 16, 5
    pe = gf.sinusoidal_positions(40, d).double()
    for i in range(d // 2):
        w = 1 / 10000 ** (2 * i / d)
        c, s = math.cos(k * w), math.sin(k * w)
        # [sin(a+b), cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] @ [sin a, cos a]
        rot = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
        for p in (0, 3, 17, 30):
            pair = pe[p, 2 * i : 2 * i + 2]
            torch.testing.assert_close(rot @ pair, pe[p + k, 2 * i : 2 * i + 2], atol=1e-6,
                                       rtol=0)


# -- rotary --------------------------------------------------------------------------------------


def _rope(x, positions, rotary_dim=None, base=10000.0):
    rd = rotary_dim or x.shape[-1]
    cos, sin = gf.rotary_angles(max(positions) + 1, rd, base)
    return gf.apply_rotary(x, cos[positions], sin[positions])


def test_rotary_preserves_norms():
    x = torch.randn(2, 9, 3, 8)
    out = _rope(x, list(range(9)))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(out[:, 0], x[:, 0])  # position 0: no rotation


def test_rotary_dot_depends_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def dot(pq, pk):
        return (_rope(q, [pq]) * _rope(k, [pk])).sum().item()

    for p, p2, s in ((3, 1, 7), (0, 5, 11), (10, 10, 3)):
        assert dot(p, p2) == pytest.approx(dot(p + s, p2 + s), abs=1e-4)
    assert abs(dot(3, 1) - dot(3, 2)) > 1e-3  # it does depend on the relative position


def test_rotary_rotate_half_convention():
    # Pair (i, i + rd/2) rotates by p * base^(-2i/rd): GPT-NeoX / TransformerLens layout.
    rd, p = 8, 3
    x = torch.randn(1, 1, 1, rd)
    out = _rope(x, [p])[0, 0, 0]
    x = x[0, 0, 0]
    for i in range(rd // 2):
        a = p * 10000 ** (-2 * i / rd)
        c, s = math.cos(a), math.sin(a)
        assert out[i].item() == pytest.approx(x[i].item() * c - x[i + rd // 2].item() * s,
                                              abs=1e-5)
        assert out[i + rd // 2].item() == pytest.approx(
            x[i + rd // 2].item() * c + x[i].item() * s, abs=1e-5)


def test_rotary_partial_dim_passes_rest_through():
    x = torch.randn(2, 6, 2, 16)
    out = _rope(x, list(range(6)), rotary_dim=4)
    assert out.shape == x.shape
    torch.testing.assert_close(out[..., 4:], x[..., 4:], rtol=0, atol=0)
    assert not torch.allclose(out[:, 1:, :, :4], x[:, 1:, :, :4])
    torch.testing.assert_close(out[..., :4], _rope(x[..., :4], list(range(6))))


def test_rotary_odd_dim_raises():
    with pytest.raises(ValueError, match="even"):
        gf.rotary_angles(4, 5)


# -- causal mask -----------------------------------------------------------------------------


def test_causal_mask_square():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(gf.causal_mask(3), expected)
    assert gf.causal_mask(3).dtype == torch.bool


def test_causal_mask_more_keys_than_queries():
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(gf.causal_mask(2, 5), expected)
    assert torch.equal(gf.causal_mask(1, 4), torch.ones(1, 4, dtype=torch.bool))


# -- attention -------------------------------------------------------------------------------


def test_attention_causal_matches_sdpa():
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    z = gf.attention(q, k, v, gf.causal_mask(7))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-5)


def test_attention_bool_mask_matches_sdpa_and_pattern_rows_sum_to_one():
    q = torch.randn(2, 3, 4, 8)
    k, v = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.rand(2, 1, 4, 6) > 0.4
    mask[..., 0] = True  # every query sees at least one key
    z, pattern = gf.attention(q, k, v, mask, return_pattern=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-5)
    assert pattern.shape == (2, 3, 4, 6)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 3, 4))
    assert (pattern[~mask.expand_as(pattern)] == 0).all()


def test_attention_no_mask_and_scale():
    q, k, v = (torch.randn(5, 8) for _ in range(3))
    torch.testing.assert_close(gf.attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(gf.attention(q, k, v, scale=0.5),
                               F.scaled_dot_product_attention(q, k, v, scale=0.5))


@pytest.mark.parametrize("causal", [True, False])
def test_multihead_attention_matches_torch(causal):
    d, H, n = 12, 3, 6
    dh = d // H
    mha = torch.nn.MultiheadAttention(d, H, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    x = torch.randn(2, n, d)
    attn_mask = ~gf.causal_mask(n) if causal else None  # torch: True = may NOT attend
    ref, _ = mha(x, x, x, attn_mask=attn_mask, need_weights=False)

    w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    W_Q, W_K, W_V = (w[i * d : (i + 1) * d].view(H, dh, d).transpose(1, 2) for i in range(3))
    b_Q, b_K, b_V = (b[i * d : (i + 1) * d].view(H, dh) for i in range(3))
    W_O = mha.out_proj.weight.detach().t().reshape(H, dh, d)
    out = gf.multihead_attention(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V,
                                 mha.out_proj.bias.detach(), causal=causal)
    assert W_Q.shape == (H, d, dh) and W_O.shape == (H, dh, d)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# -- norms, activation ---------------------------------------------------------------------


def test_layer_norm_matches_torch():
    x = torch.randn(3, 4, 10) * 5 + 2
    w, b = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(gf.layer_norm(x, w, b), F.layer_norm(x, (10,), w, b, 1e-5))
    torch.testing.assert_close(gf.layer_norm(x, None, None, eps=1e-3),
                               F.layer_norm(x, (10,), eps=1e-3))


def test_rms_norm_matches_hand_computation():
    x = torch.tensor([[3.0, 4.0]])
    # rms = sqrt((9 + 16) / 2) = sqrt(12.5)
    expected = x / math.sqrt(12.5 + 1e-5) * torch.tensor([2.0, -1.0])
    torch.testing.assert_close(gf.rms_norm(x, torch.tensor([2.0, -1.0])), expected)
    y = torch.randn(4, 7)
    hand = torch.stack([r / math.sqrt(sum(v * v for v in r.tolist()) / 7 + 1e-5) for r in y])
    torch.testing.assert_close(gf.rms_norm(y, None), hand)


def test_gelu_new_formula():
    x = torch.linspace(-5, 5, 101)
    ref = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(gelu_new(x), ref)
