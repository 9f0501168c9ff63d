"""The vision transformer front end: patchify, PatchEmbed, the whole ViT forward against a
hand-written float64 one, hooks, saving, bad input, and token models left unchanged."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gptscope as gs
from gptscope.model.vision import PatchEmbed, patchify

VIT = dict(n_layers=2, d_model=24, n_heads=3, d_vocab=10, image_shape=(2, 8, 6), patch_size=2,
           n_ctx=13, causal=False, seed=0)


def vit(**kw) -> gs.Transformer:
    model = gs.Transformer(gs.ModelConfig(**{**VIT, **kw}))
    with torch.no_grad():  # biases and gains away from 0 and 1, so a wrong one shows
        g = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if name.endswith((".b", ".w", "b_E", "b_in", "b_out", "b_O", "b_Q", "b_K", "b_V")):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def images(batch=3, shape=(2, 8, 6), seed=0) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed))


def test_patchify_matches_unfold():
    x = images()
    # unfold gives [batch, C * p * p, n_patches], patches in raster order, channel first.
    want = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)
    assert torch.equal(patchify(x, 2), want)
    assert patchify(x, 2).shape == (3, 12, 8)


def test_patchify_hand_worked():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    got = patchify(x, 2)
    assert got[0, 0].tolist() == [0, 1, 4, 5]  # top-left patch
    assert got[0, 1].tolist() == [2, 3, 6, 7]  # its right neighbour: raster order
    assert got[0, 2].tolist() == [8, 9, 12, 13]


def test_patch_embed_equals_conv2d():
    cfg = gs.ModelConfig(**VIT)
    embed = PatchEmbed(cfg)
    torch.nn.init.normal_(embed.W_E)
    torch.nn.init.normal_(embed.b_E)
    torch.nn.init.normal_(embed.cls_token)
    conv = torch.nn.Conv2d(2, 24, kernel_size=2, stride=2)
    with torch.no_grad():
        conv.weight.copy_(embed.W_E.t().reshape(24, 2, 2, 2))
        conv.bias.copy_(embed.b_E)
    x = images()
    want = conv(x).flatten(2).transpose(1, 2)  # [batch, n_patches, d_model], raster order
    got = embed(x)
    assert got.shape == (3, 13, 24)
    torch.testing.assert_close(got[:, 1:], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[:, 0], embed.cls_token.expand(3, -1))


def _layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def reference_vit(p: dict, x: torch.Tensor, cfg: gs.ModelConfig) -> torch.Tensor:
    """The ViT forward written out with loops over patches and heads, in float64."""
    p = {k: v.double() for k, v in p.items()}
    c, h, w = cfg.image_shape
    s = cfg.patch_size
    rows = []
    for r in range(h // s):
        for col in range(w // s):
            rows.append(x[:, :, r * s:(r + 1) * s, col * s:(col + 1) * s].reshape(len(x), -1))
    patches = torch.stack(rows, 1).double() @ p["embed.W_E"] + p["embed.b_E"]
    resid = torch.cat([p["embed.cls_token"].expand(len(x), 1, -1), patches], 1)
    resid = resid + p["pos_embed.W_pos"]
    for layer in range(cfg.n_layers):
        q = f"blocks.{layer}."
        a = _layer_norm(resid, p[q + "ln1.w"], p[q + "ln1.b"], cfg.eps)
        out = p[q + "attn.b_O"].clone()
        for head in range(cfg.n_heads):
            qh, kh, vh = (a @ p[q + f"attn.W_{n}"][head] + p[q + f"attn.b_{n}"][head]
                          for n in "QKV")
            pattern = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(cfg.d_head), -1)
            out = out + pattern @ vh @ p[q + "attn.W_O"][head]
        resid = resid + out
        m = _layer_norm(resid, p[q + "ln2.w"], p[q + "ln2.b"], cfg.eps)
        hidden = F.gelu(m @ p[q + "mlp.W_in"] + p[q + "mlp.b_in"])
        resid = resid + hidden @ p[q + "mlp.W_out"] + p[q + "mlp.b_out"]
    resid = _layer_norm(resid, p["ln_final.w"], p["ln_final.b"], cfg.eps)
    return resid @ p["unembed.W_U"]


def test_forward_matches_hand_written_float64():
    model = vit(act_fn="gelu")
    x = images()
    want = reference_vit(dict(model.state_dict()), x, model.cfg)
    got = model.double()(x.double())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.classify(x.double()), want[:, 0], rtol=1e-10, atol=1e-10)
    assert model.float()(x).shape == (3, 13, 10)


def test_hooks_present_and_editable():
    model = vit()
    x = images()
    _, cache = model.run_with_cache(x)
    assert cache["hook_embed"].shape == (3, 13, 24)
    assert cache["hook_pos_embed"].shape == (3, 13, 24)
    assert cache["blocks.0.attn.hook_pattern"].shape == (3, 3, 13, 13)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1),
                               torch.ones(3, 3, 13))
    # Non-causal: the class token (query 0) attends to later patches too.
    assert (cache["blocks.0.attn.hook_pattern"][:, :, 0, 1:] > 0).all()

    def uniform(pattern, hook):
        return torch.full_like(pattern, 1 / pattern.shape[-1])

    edited = model.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_pattern", uniform)])
    assert not torch.allclose(edited, model(x))
    _, cache2 = model.run_with_cache(x, names_filter="blocks.1.attn.hook_pattern")
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", uniform)]):
        assert torch.equal(model(x), edited)
    assert cache2["blocks.1.attn.hook_pattern"].shape == (3, 3, 13, 13)
    assert model.W_pos.shape == (13, 24) and model.W_E.shape == (8, 24)


def test_save_load_round_trip(tmp_path):
    model = vit()
    gs.save(model, tmp_path / "run")
    back = gs.load(tmp_path / "run")
    assert back.cfg == model.cfg and back.cfg.image_shape == (2, 8, 6)
    x = images()
    assert torch.equal(back(x), model(x))
    assert gs.ModelConfig.from_json(model.cfg.to_json()) == model.cfg


@pytest.mark.parametrize("bad, message", [
    (torch.randint(0, 10, (3, 13)), "dtype"),
    (torch.rand(3, 1, 8, 6), "shape"),
    (torch.rand(3, 2, 6, 8), "shape"),
    ([1, 2, 3], "reads images"),
    ("a string", "reads images"),
])
def test_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        vit()(bad)


def test_token_only_paths_refuse():
    model = vit()
    x = images()
    for call in (lambda: model.generate(x), lambda: model.stream(x),
                 lambda: model.to_tokens("hi"), lambda: model(x, return_type="loss"),
                 lambda: model(x, attention_mask=torch.ones(3, 13))):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError, match="classify is for vision"):
        gs.Transformer(gs.ModelConfig(n_layers=1, d_model=8, n_heads=2)).classify(x)


@pytest.mark.parametrize("change, message", [
    ({"patch_size": 3}, "divisible by patch_size=3"),
    ({"patch_size": None}, "needs both"),
    ({"causal": True}, "causal=True"),
    ({"n_ctx": 12}, "n_ctx=12"),
    ({"tie_embeddings": True}, "tie_embeddings"),
    ({"positional": "rotary"}, "positional"),
    ({"image_shape": (1, 8)}, "image_shape"),
])
def test_bad_config(change, message):
    with pytest.raises(ValueError, match=message):
        gs.ModelConfig(**{**VIT, **change})


def test_token_models_unchanged():
    cfg = gs.ModelConfig(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)
    assert cfg.image_shape is None and cfg.patch_size is None and not cfg.is_vision
    saved = cfg.to_dict()
    del saved["image_shape"], saved["patch_size"]  # a config.json written before them
    assert gs.ModelConfig.from_saved(saved, "old.json") == cfg
    model = gs.Transformer(cfg).eval()
    tokens = torch.randint(0, 41, (2, 10), generator=torch.Generator().manual_seed(0))
    # The token path written out from the model's own modules: bitwise the same logits.
    with torch.no_grad():
        x = model.embed.W_E[tokens] + model.pos_embed.W_pos[:10]
        for block in model.blocks:
            x = block(x, None)
        want = model.unembed(model.ln_final(x))
        assert torch.equal(model(tokens), want)
    assert type(model.embed).__name__ == "Embed"


def test_hugging_face_export_refuses_a_vit(tmp_path):
    # Even shaped like a BERT (post-LN, embedding norm, MLM head), its W_E maps patches.
    model = vit(norm_position="post", embed_norm=True, mlm_head=True)
    with pytest.raises(ValueError, match="a vision front end"):
        gs.save(model, tmp_path / "hf", format="hf")
