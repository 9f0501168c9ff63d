"""Parity with TransformerLens's HookedTransformer: same weights -> same activations by name."""

from __future__ import annotations

import warnings

import pytest
import torch

import gptscope as gs

tl = pytest.importorskip("transformer_lens")

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=53, n_ctx=16, seed=0)

CONFIGS = {
    "gpt2_like": {"act_fn": "gelu_new", "unembed_bias": True},
    "attn_only": {"attn_only": True, "normalization": None},
    "attn_only_ln": {"attn_only": True},
    "rotary_rms": {"positional": "rotary", "normalization": "rms", "act_fn": "silu"},
    "rotary_partial": {"positional": "rotary", "rotary_dim": 4, "act_fn": "relu"},
    "tied": {"tie_embeddings": True, "act_fn": "gelu"},
}


def ours(**kw) -> gs.Transformer:
    model = gs.Transformer(gs.ModelConfig(**{**BASE, **kw}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random biases and norm weights, so their placement matters
        for name, p in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def theirs(model: gs.Transformer):
    c = model.cfg
    tl_cfg = tl.HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_ctx=c.n_ctx, d_head=c.d_head,
        n_heads=c.n_heads, d_mlp=None if c.attn_only else c.d_mlp, d_vocab=c.d_vocab,
        act_fn=c.act_fn, normalization_type={"layer": "LN", "rms": "RMS", None: None}[
            c.normalization],
        attn_only=c.attn_only, eps=c.eps,
        positional_embedding_type="rotary" if c.positional == "rotary" else "standard",
        rotary_dim=c.rotary_dim, rotary_base=int(c.rotary_base), default_prepend_bos=False,
        seed=0, device="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tl.HookedTransformer(tl_cfg)
    state = dict(model.state_dict())
    if c.tie_embeddings:
        state["unembed.W_U"] = model.W_U.detach().clone()
    result = ref.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    allowed = ("attn.mask", "attn.IGNORE", "attn.rotary_sin", "attn.rotary_cos")
    missing = [k for k in result.missing_keys if not k.endswith(allowed)]
    buffers = {name for name, _ in ref.named_buffers()}
    assert all(k in buffers for k in result.missing_keys if k.endswith(allowed))
    if not c.unembed_bias:
        # TransformerLens always has b_U; it is zero-initialised, which equals "no bias".
        assert missing == ["unembed.b_U"]
        assert (ref.unembed.b_U == 0).all()
    else:
        assert missing == []
    return ref.eval()


@pytest.fixture(params=list(CONFIGS), scope="module")
def pair(request):
    model = ours(**CONFIGS[request.param])
    return model, theirs(model)


def test_logits_and_every_activation_match(pair):
    model, ref = pair
    toks = torch.randint(0, 53, (2, 12), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(toks)
    ref_logits, ref_cache = ref.run_with_cache(toks)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    ours_names = set(cache.keys())
    assert ours_names == set(ref_cache.keys())
    for name in sorted(ours_names):
        a, b = cache[name], ref_cache[name]
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    # The plain (fused, SDPA) forward agrees too.
    torch.testing.assert_close(model(toks), ref_logits, atol=1e-5, rtol=1e-5)


def test_weights_read_the_same(pair):
    model, ref = pair
    for name in ("W_E", "W_U", "W_Q", "W_K", "W_V", "W_O"):
        torch.testing.assert_close(getattr(model, name), getattr(ref, name), rtol=0, atol=0)
    if model.cfg.positional == "learned":
        torch.testing.assert_close(model.W_pos, ref.W_pos, rtol=0, atol=0)
    if not model.cfg.attn_only:
        torch.testing.assert_close(model.W_in, ref.W_in, rtol=0, atol=0)
        torch.testing.assert_close(model.W_out, ref.W_out, rtol=0, atol=0)


def test_result_hook_matches():
    model = ours(**CONFIGS["gpt2_like"])
    ref = theirs(model)
    ref.set_use_attn_result(True)
    toks = torch.randint(0, 53, (1, 10), generator=torch.Generator().manual_seed(2))
    name = "blocks.1.attn.hook_result"
    _, cache = model.run_with_cache(toks, names_filter=name)
    _, ref_cache = ref.run_with_cache(toks, names_filter=name)
    torch.testing.assert_close(cache[name], ref_cache[name], atol=1e-5, rtol=1e-5)


ON_REQUEST = ["hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in"]


@pytest.mark.parametrize("config", ["gpt2_like", "rotary_rms"])
def test_on_request_hooks_match(config):
    """TransformerLens's opt-in hooks (use_attn_in, use_split_qkv_input, use_hook_mlp_in):
    the same values, and the same logits and downstream activations while they are on."""
    model = ours(**CONFIGS[config])
    ref = theirs(model)
    ref.set_use_attn_in(True)
    ref.set_use_split_qkv_input(True)
    ref.set_use_hook_mlp_in(True)
    toks = torch.randint(0, 53, (2, 10), generator=torch.Generator().manual_seed(5))
    names = [f"blocks.{i}.{n}" for i in range(2) for n in ON_REQUEST]
    names += ["blocks.1.attn.hook_q", "blocks.1.ln1.hook_scale", "blocks.1.hook_resid_post"]
    logits, cache = model.run_with_cache(toks, names_filter=names)
    ref_logits, ref_cache = ref.run_with_cache(toks, names_filter=names)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert set(cache.keys()) == set(ref_cache.keys()) == set(names)
    for name in names:
        torch.testing.assert_close(cache[name], ref_cache[name], atol=1e-5, rtol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")
    assert cache["blocks.0.hook_k_input"].shape == (2, 10, 4, 32)
    # Not cached by default, as in TransformerLens.
    assert not set(model.run_with_cache(toks)[1].keys()) & set(names[:10])


def test_patching_one_heads_value_input_matches():
    """Negating head 2's value input in layer 1 changes the same logits in both libraries,
    and leaves the other heads' values alone."""
    model = ours(**CONFIGS["gpt2_like"])
    ref = theirs(model)
    ref.set_use_split_qkv_input(True)
    toks = torch.randint(0, 53, (2, 10), generator=torch.Generator().manual_seed(6))

    def flip_head_2(x, hook):
        x[:, :, 2] *= -1
        return x

    hooks = [("blocks.1.hook_v_input", flip_head_2)]
    ours_logits = model.run_with_hooks(toks, fwd_hooks=hooks)
    torch.testing.assert_close(ours_logits, ref.run_with_hooks(toks, fwd_hooks=hooks),
                               atol=1e-5, rtol=1e-5)
    assert (ours_logits - model(toks)).abs().max() > 1e-3
    with model.hooks(hooks):
        _, cache = model.run_with_cache(toks, names_filter="blocks.1.attn.hook_v")
    clean = model.run_with_cache(toks, names_filter="blocks.1.attn.hook_v")[1]
    v, v0 = cache["blocks.1.attn.hook_v"], clean["blocks.1.attn.hook_v"]
    torch.testing.assert_close(v[:, :, [0, 1, 3]], v0[:, :, [0, 1, 3]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(v[:, :, 2], v0[:, :, 2])


def test_gradients_match():
    model = ours(**CONFIGS["gpt2_like"])
    ref = theirs(model)
    toks = torch.randint(0, 53, (2, 10), generator=torch.Generator().manual_seed(3))
    loss = model(toks, return_type="loss")
    ref_loss = ref(toks, return_type="loss")
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    loss.backward()
    ref_loss.backward()
    for name in ("blocks.0.attn.W_Q", "blocks.1.mlp.W_in", "embed.W_E", "blocks.0.ln1.w"):
        a = model.get_parameter(name).grad
        b = ref.get_parameter(name).grad
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("config", ["gpt2_like", "rotary_rms"])
def test_backward_cache_matches(config):
    """incl_bwd caches the same gradients, under the same names, as TransformerLens."""
    model = ours(**CONFIGS[config])
    ref = theirs(model)
    toks = torch.randint(0, 53, (2, 10), generator=torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(toks, return_type="loss", incl_bwd=True)
    _, ref_cache = ref.run_with_cache(toks, return_type="loss", incl_bwd=True)
    grads = {k for k in cache.keys() if k.endswith("_grad")}
    ref_grads = {k for k in ref_cache.keys() if k.endswith("_grad")}
    assert grads == ref_grads
    # TransformerLens runs ln1 three times per block (for q, k and v inputs) and its cache
    # keeps the gradient of the last call only; ours is the whole gradient, checked against
    # autograd in test_model_hooks.
    for name in sorted(n for n in grads if ".ln1." not in n):
        torch.testing.assert_close(cache[name], ref_cache[name], atol=1e-5, rtol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")
