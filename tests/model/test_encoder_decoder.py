"""Cross-attention and the EncoderDecoder, checked against independent references:
a float64 einsum and PyTorch's own scaled_dot_product_attention with the same weights."""

import pytest
import torch
import torch.nn.functional as F

from gptscope.config import ModelConfig
from gptscope.io.encoder_decoder import load_encoder_decoder, save_encoder_decoder
from gptscope.model.encoder_decoder import EncoderDecoder, pair_configs
from gptscope.model.layers import Attention, PaddingMask, cross_inputs
from gptscope.model.transformer import Transformer

D, H = 16, 4


def _cross(dtype=torch.float64, bias=True):
    cfg = ModelConfig(n_layers=1, d_model=D, n_heads=H, d_vocab=10, n_ctx=8,
                      cross_attention=True, attn_bias=bias)
    attn = Attention(cfg, dtype=dtype, cross=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    return cfg, attn


def _inputs(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, D, generator=g, dtype=dtype)
    ctx = torch.randn(2, 5, D, generator=g, dtype=dtype)
    src_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    return x, ctx, src_mask


def _keep(seen):
    def keep(t, hook):
        seen["p"] = t.clone()

    return keep


def _einsum_reference(attn, x, ctx, src_mask):
    """Written out independently: per-head projections, scores over source keys, padding
    keys at -inf, softmax over keys, heads summed through W_O."""
    q = torch.einsum("bqm,hmd->bhqd", x, attn.W_Q) + attn.b_Q[None, :, None]
    k = torch.einsum("bkm,hmd->bhkd", ctx, attn.W_K) + attn.b_K[None, :, None]
    v = torch.einsum("bkm,hmd->bhkd", ctx, attn.W_V) + attn.b_V[None, :, None]
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / (q.shape[-1] ** 0.5)
    scores = scores.masked_fill(~src_mask.bool()[:, None, None, :], float("-inf"))
    pattern = scores.softmax(-1)
    z = torch.einsum("bhqk,bhkd->bhqd", pattern, v)
    return torch.einsum("bhqd,hdm->bqm", z, attn.W_O) + attn.b_O, pattern


@pytest.mark.parametrize("hooked", [False, True])
def test_cross_attention_matches_einsum_and_sdpa_with_padding(hooked):
    cfg, attn = _cross()
    x, ctx, src_mask = _inputs()
    _, mask = cross_inputs(cfg, ctx, src_mask, 2, "cpu", torch.float64)
    seen = {}
    if hooked:  # a hook on the pattern forces the written-out path
        attn.hook_pattern.fwd_fns.append(_keep(seen))
    with torch.no_grad():
        out = attn(x, mask, context=ctx)
        want, pattern = _einsum_reference(attn, x, ctx, src_mask)
        torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
        if hooked:
            torch.testing.assert_close(seen["p"], pattern, rtol=1e-10, atol=1e-10)
            assert (seen["p"][0, :, :, 3:] == 0).all()  # padding gets no weight
        # PyTorch's own kernel on the same projections: an independent second reference.
        q = torch.einsum("bqm,hmd->bhqd", x, attn.W_Q) + attn.b_Q[None, :, None]
        k = torch.einsum("bkm,hmd->bhkd", ctx, attn.W_K) + attn.b_K[None, :, None]
        v = torch.einsum("bkm,hmd->bhkd", ctx, attn.W_V) + attn.b_V[None, :, None]
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=src_mask.bool()[:, None, None])
        torch.testing.assert_close(out, torch.einsum("bhqd,hdm->bqm", z, attn.W_O) + attn.b_O,
                                   rtol=1e-10, atol=1e-10)


def test_cross_attention_is_not_causal():
    """A query sees source keys beyond its own index (a causal mask would hide them)."""
    cfg, attn = _cross()
    x, ctx, _ = _inputs()
    seen = {}
    attn.hook_pattern.fwd_fns.append(_keep(seen))
    with torch.no_grad():
        attn(x, None, context=ctx)
    assert (seen["p"][:, :, 0, 1:] > 0).all()


def _model(seed=0, n_layers=2, **kw):
    enc, dec = pair_configs(12, 14, 9, 10, n_layers=n_layers, d_model=D, n_heads=H, seed=seed,
                            **kw)
    return EncoderDecoder.from_configs(enc, dec).eval()


def _batch():
    g = torch.Generator().manual_seed(2)
    src = torch.randint(3, 12, (3, 9), generator=g)
    tgt = torch.randint(3, 14, (3, 10), generator=g)
    src_mask = torch.ones(3, 9, dtype=torch.long)
    src_mask[0, 5:] = 0
    src_mask[2, 2:] = 0
    return src, tgt, src_mask


def test_hook_names_and_run_with_cache_by_name():
    model = _model()
    for name in ("encoder.blocks.0.attn.hook_pattern", "decoder.blocks.0.attn.hook_pattern",
                 "decoder.blocks.1.cross_attn.hook_pattern", "decoder.blocks.0.cross_attn.hook_q",
                 "decoder.blocks.0.cross_attn.hook_k", "decoder.blocks.0.cross_attn.hook_v",
                 "decoder.blocks.0.cross_attn.hook_z", "decoder.blocks.0.hook_cross_attn_out",
                 "decoder.blocks.0.cross_attn.hook_attn_scores",
                 "decoder.blocks.0.hook_resid_mid_cross", "decoder.blocks.0.ln_cross.hook_scale"):
        assert name in model.hook_dict, name
    assert not any("cross" in n for n in model.hook_dict if n.startswith("encoder."))
    src, tgt, src_mask = _batch()
    logits, cache = model.run_with_cache(src, tgt, src_mask=src_mask)
    torch.testing.assert_close(logits, model(src, tgt, src_mask=src_mask), rtol=1e-5, atol=1e-6)
    pattern = cache["decoder.blocks.0.cross_attn.hook_pattern"]
    assert pattern.shape == (3, H, 10, 9)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(3, H, 10))
    assert (pattern[0, :, :, 5:] == 0).all() and (pattern[2, :, :, 2:] == 0).all()
    assert cache["decoder.blocks.0.cross_attn.hook_k"].shape == (3, 9, H, D // H)
    assert cache["encoder.blocks.0.attn.hook_pattern"].shape == (3, H, 9, 9)


def test_editing_the_cross_attention_pattern_changes_the_output():
    model = _model()
    src, tgt, src_mask = _batch()
    with torch.no_grad():
        base = model(src, tgt, src_mask=src_mask)

        def first_key_only(pattern, hook):
            new = torch.zeros_like(pattern)
            new[..., 0] = 1.0
            return new

        edited = model.run_with_hooks(src, tgt, src_mask=src_mask, fwd_hooks=[
            ("decoder.blocks.0.cross_attn.hook_pattern", first_key_only)])
    assert (edited - base).abs().max() > 1e-3
    # With every query looking at source token 0 only, the rest of the source is irrelevant.
    src2 = src.clone()
    src2[:, 1:] = 3
    with torch.no_grad():
        pinned = [("decoder.blocks.0.cross_attn.hook_pattern", first_key_only),
                  ("decoder.blocks.1.cross_attn.hook_pattern", first_key_only)]
        a = model.run_with_hooks(src, tgt, src_mask=src_mask, fwd_hooks=pinned)
        b = model.run_with_hooks(src2, tgt, src_mask=src_mask, fwd_hooks=pinned)
    assert not torch.allclose(a, b)  # still different: the encoder mixes the source itself


def test_padded_source_tokens_do_not_reach_the_decoder():
    model = _model()
    src, tgt, src_mask = _batch()
    changed = src.masked_fill(src_mask == 0, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt, src_mask=src_mask),
                                   model(changed, tgt, src_mask=src_mask), rtol=0, atol=1e-6)
        # ... while without the mask they do.
        assert not torch.allclose(model(src, tgt), model(changed, tgt))


def test_hooked_path_equals_sdpa_path():
    model = _model()
    src, tgt, src_mask = _batch()
    with torch.no_grad():
        fast = model(src, tgt, src_mask=src_mask)
        slow = model.run_with_hooks(src, tgt, src_mask=src_mask, fwd_hooks=[
            (lambda n: n.endswith("hook_pattern"), lambda t, h: None)])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def test_loss_is_next_token_cross_entropy_with_an_ignore_mask():
    model = _model()
    src, tgt, src_mask = _batch()
    tgt_mask = torch.ones_like(tgt)
    tgt_mask[1, 6:] = 0
    with torch.no_grad():
        logits, loss = model(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask, return_type="both")
        per = F.cross_entropy(logits[:, :-1].reshape(-1, 14), tgt[:, 1:].reshape(-1),
                              reduction="none").view(3, 9)
        keep = tgt_mask[:, 1:].bool()
    torch.testing.assert_close(loss, per[keep].mean())
    assert keep.sum() == 3 * 9 - 4


def test_plain_configs_are_unchanged():
    """A config file written before the field existed loads, builds the same modules and
    gives bitwise the same logits as one with the default."""
    cfg = ModelConfig(n_layers=2, d_model=D, n_heads=H, d_vocab=20, n_ctx=8, seed=3)
    old = cfg.to_dict()
    del old["cross_attention"]
    cfg_old = ModelConfig.from_saved(old, "an old config.json")
    assert cfg_old == cfg and not cfg_old.cross_attention
    a, b = Transformer(cfg), Transformer(cfg_old)
    assert list(a.state_dict()) == list(b.state_dict())
    assert not any("cross" in k for k in a.state_dict())
    assert not any("cross" in k for k in a.hook_dict)
    tokens = torch.randint(0, 20, (2, 8))
    with torch.no_grad():
        assert torch.equal(a(tokens), b(tokens))
    assert ModelConfig.from_json(cfg.replace(cross_attention=True).to_json()).cross_attention
    assert cfg.replace(cross_attention=True).n_params > cfg.n_params


@pytest.mark.parametrize("attn_only", [False, True])
def test_cached_greedy_equals_uncached(attn_only):
    model = _model(seed=5, attn_only=attn_only)
    src, _, src_mask = _batch()
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        start = torch.full((3, 1), 1)
        kw = dict(temperature=0.0, context=memory, context_mask=src_mask)
        cached = model.decoder.generate(start, 9, **kw)
        plain = model.decoder.generate(start, 9, use_cache=False, **kw)
    assert torch.equal(cached, plain)
    out = model.generate(src, 9, bos=1, src_mask=src_mask)
    assert torch.equal(out, cached)
    # Hand-rolled greedy, one full teacher-forced forward per step.
    seq = start
    with torch.no_grad():
        for _ in range(9):
            nxt = model(src, seq, src_mask=src_mask)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    assert torch.equal(seq, out)


def test_generate_stops_at_eos_and_samples_by_seed():
    model = _model(seed=5)
    src, _, src_mask = _batch()
    out = model.generate(src, 9, bos=1, src_mask=src_mask)
    eos = int(out[0, 3])
    stopped = model.generate(src, 9, bos=1, eos=eos, src_mask=src_mask)
    assert stopped.shape[1] <= out.shape[1] and (stopped[0, 3:] == eos).all()
    a = model.generate(src, 6, bos=1, temperature=1.0, seed=7)
    assert torch.equal(a, model.generate(src, 6, bos=1, temperature=1.0, seed=7))


def test_bad_inputs_are_named():
    model = _model()
    src, tgt, src_mask = _batch()
    memory = model.encode(src, src_mask)
    with pytest.raises(ValueError, match="needs context"):
        model.decoder(tgt)
    with pytest.raises(ValueError, match="d_model=16"):
        model.decoder(tgt, context=torch.randn(3, 9, 8))
    with pytest.raises(ValueError, match="batch=3"):
        model.decoder(tgt, context=memory[:2])
    with pytest.raises(ValueError, match="context_mask must be a tensor"):
        model.decoder(tgt, context=memory, context_mask=src_mask[:, :4])
    with pytest.raises(ValueError, match="0/1"):
        model.decoder(tgt, context=memory, context_mask=src_mask * 2)
    with pytest.raises(ValueError, match="all padding"):
        model.decoder(tgt, context=memory, context_mask=torch.zeros_like(src_mask))
    with pytest.raises(ValueError, match="float vectors"):
        model.decoder(tgt, context=src[..., None].expand(-1, -1, D))
    with pytest.raises(ValueError, match="cross_attention=False"):
        model.encoder(src, context=memory)
    with pytest.raises(ValueError, match="needs context"):
        model.decoder.generate(tgt[:, :1], 3)
    with pytest.raises(ValueError, match="causal=False"):
        EncoderDecoder(model.decoder, model.decoder)
    with pytest.raises(ValueError, match="one d_model"):
        enc = ModelConfig(d_model=32, n_heads=4, causal=False)
        EncoderDecoder.from_configs(enc, model.decoder.cfg)
    with pytest.raises(ValueError, match="pre-LN"):
        ModelConfig(cross_attention=True, norm_position="post")
    with pytest.raises(ValueError, match="bos"):
        model.generate(src, 3, bos=99)


def test_padding_mask_is_the_shape_attention_uses():
    cfg = ModelConfig(d_model=D, n_heads=H, cross_attention=True)
    ctx, mask = cross_inputs(cfg, torch.randn(2, 3, D), torch.tensor([[1, 0, 1], [1, 1, 1]]),
                             2, "cpu", torch.float32)
    assert isinstance(mask, PaddingMask)
    assert mask.allowed.shape == (2, 1, 1, 3) and mask.pad.shape == (2, 1, 3, 1)
    assert mask.allowed[0, 0, 0].tolist() == [True, False, True]


def test_save_load_round_trip(tmp_path):
    model = _model(seed=9)
    src, tgt, src_mask = _batch()
    folder = save_encoder_decoder(model, tmp_path / "ed")
    back = load_encoder_decoder(folder)
    with torch.no_grad():
        assert torch.equal(model(src, tgt, src_mask=src_mask), back(src, tgt, src_mask=src_mask))
    assert "decoder.blocks.0.cross_attn.hook_pattern" in back.hook_dict
    assert back.decoder.cfg.cross_attention and not back.encoder.cfg.causal
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind
    with pytest.raises(ValueError, match="not a saved EncoderDecoder"):
        load_encoder_decoder(tmp_path)


def test_activations_of_a_cross_attention_decoder_take_the_context():
    cfg = ModelConfig(n_layers=2, d_model=D, n_heads=H, d_vocab=14, n_ctx=10, seed=4,
                      cross_attention=True)
    decoder = Transformer(cfg).eval()
    _, tgt, src_mask = _batch()
    memory = torch.randn(3, 9, D)
    name = "blocks.1.cross_attn.hook_pattern"
    acts = decoder.activations(tgt, name, context=memory, context_mask=src_mask)
    _, cache = decoder.run_with_cache(tgt, context=memory, context_mask=src_mask,
                                      names_filter=name)
    torch.testing.assert_close(acts[name], cache[name])
    assert (acts[name][0, :, :, 5:] == 0).all()
