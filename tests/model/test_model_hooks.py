"""Hook points and the activation cache: names, identity, patching, gradients, splicing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_model
from torch import nn

import gptscope as gs
from gptscope.model.hooks import HookPoint

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)
AUTOGRAD_MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
                  "inference": torch.inference_mode}


def make(**kw) -> gs.Transformer:
    return random_model(**{**BASE, **kw})


@pytest.fixture(scope="module")
def model():
    return make()


@pytest.fixture(scope="module")
def toks():
    return torch.randint(0, 41, (2, 9), generator=torch.Generator().manual_seed(0))


def _no_hooks_left(model):
    return all(not p.fwd_fns and not p.bwd_fns for p in model.hook_dict.values())


def expected_names(n_layers: int) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale", "ln_final.hook_normalized",
             "unembed.hook_in", "unembed.hook_out"}
    for l in range(n_layers):
        b = f"blocks.{l}."
        names |= {b + s for s in (
            "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
            "hook_mlp_out", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z",
            "attn.hook_attn_scores", "attn.hook_pattern", "mlp.hook_pre", "mlp.hook_post",
            "ln1.hook_scale", "ln1.hook_normalized", "ln2.hook_scale", "ln2.hook_normalized",
        )}
    return names


# -- names and shapes ----------------------------------------------------------------------------


def test_cache_has_exactly_the_transformerlens_names(model, toks):
    _, cache = model.run_with_cache(toks)
    assert set(cache.keys()) == expected_names(2)
    on_request = ("attn.hook_result", "hook_attn_in", "hook_q_input", "hook_k_input",
                  "hook_v_input", "hook_mlp_in")
    assert set(model.hook_dict) == expected_names(2) | {f"blocks.{i}.{n}" for i in range(2)
                                                        for n in on_request}
    assert _no_hooks_left(model)


def test_cache_shapes(model, toks):
    _, cache = model.run_with_cache(toks)
    B, P, H, d, dh = 2, 9, 4, 32, 8
    assert cache["hook_embed"].shape == (B, P, d)
    assert cache["hook_pos_embed"].shape == (B, P, d)
    assert cache["blocks.0.attn.hook_q"].shape == (B, P, H, dh)
    assert cache["blocks.0.attn.hook_z"].shape == (B, P, H, dh)
    assert cache["blocks.1.attn.hook_pattern"].shape == (B, H, P, P)
    assert cache["blocks.1.attn.hook_attn_scores"].shape == (B, H, P, P)
    assert cache["blocks.0.mlp.hook_pre"].shape == (B, P, 4 * d)
    assert cache["blocks.0.ln1.hook_scale"].shape == (B, P, 1)
    assert cache["ln_final.hook_normalized"].shape == (B, P, d)
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(B, H, P))
    assert (pattern.triu(1) == 0).all()  # causal


@pytest.mark.parametrize(
    "kw, present, absent",
    [
        ({"attn_only": True, "normalization": None}, {"blocks.0.hook_attn_out"},
         {"blocks.0.hook_resid_mid", "blocks.0.mlp.hook_pre", "blocks.0.ln1.hook_scale",
          "ln_final.hook_scale"}),
        ({"positional": "rotary"}, {"blocks.0.attn.hook_rot_q", "blocks.0.attn.hook_rot_k"},
         {"hook_pos_embed"}),
        ({"positional": "sinusoidal"}, {"hook_pos_embed"}, set()),
        ({"n_layers": 0}, {"hook_embed", "ln_final.hook_normalized"}, {"blocks.0.hook_resid_pre"}),
    ],
)
def test_names_follow_config(toks, kw, present, absent):
    _, cache = make(**kw).run_with_cache(toks)
    assert present <= set(cache.keys())
    assert not absent & set(cache.keys())


# -- identity and equality -----------------------------------------------------------------------


def test_identity_hooks_are_bitwise(model, toks):
    plain = model(toks)
    seen = []

    def identity(t, hook):
        seen.append(hook.name)

    fast_points = [n for n in model.hook_dict
                   if not n.endswith(("hook_scale", "hook_normalized", "hook_attn_scores",
                                      "hook_pattern", "hook_result", "hook_attn_in",
                                      "hook_q_input", "hook_k_input", "hook_v_input"))]
    hooked = model.run_with_hooks(toks, fwd_hooks=[(n, identity) for n in fast_points])
    assert torch.equal(plain, hooked)
    assert set(seen) == set(fast_points)
    assert _no_hooks_left(model)


def test_explicit_path_close_to_fast_path(model, toks):
    plain = model(toks)
    every = model.run_with_hooks(toks, fwd_hooks=[(lambda n: True, lambda t, h: None)])
    torch.testing.assert_close(every, plain, atol=1e-5, rtol=1e-5)
    logits, _ = model.run_with_cache(toks)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("grad", [True, False])
def test_ln_hooks_follow_the_definition(toks, norm, grad):
    """hook_scale = sqrt(var + eps) (mean square for RMS); hook_normalized = centred / scale;
    a hook that replaces the scale is what the normalisation then divides by. With and
    without autograd (the no-grad path takes a fused kernel's statistics)."""
    model = make(normalization=norm)
    names = ["blocks.1.hook_resid_mid", "blocks.1.ln2.hook_scale", "blocks.1.ln2.hook_normalized"]
    with torch.set_grad_enabled(grad):
        _, cache = model.run_with_cache(toks, names_filter=names)
        x = cache["blocks.1.hook_resid_mid"]
        centred = x - x.mean(-1, keepdim=True) if norm == "layer" else x
        scale = (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
        torch.testing.assert_close(cache["blocks.1.ln2.hook_scale"], scale)
        torch.testing.assert_close(cache["blocks.1.ln2.hook_normalized"], centred / scale)

        def double(t, hook):
            return 2 * t

        with model.hooks([("blocks.1.ln2.hook_scale", double)]):
            _, doubled = model.run_with_cache(toks, names_filter=names)
    torch.testing.assert_close(doubled["blocks.1.ln2.hook_normalized"], centred / (2 * scale))
    assert doubled["blocks.1.ln2.hook_scale"].dtype == x.dtype


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
def test_ln_scale_edited_in_place_is_used(toks, mode):
    """A hook may edit the scale in place and return None, as with every hook point."""
    model = make()
    name = "blocks.0.ln1.hook_scale"

    def unit_scale(t, hook):
        t.fill_(1.0)

    with AUTOGRAD_MODES[mode]():
        _, cache = model.run_with_cache(toks, names_filter=["blocks.0.hook_resid_pre",
                                                            "blocks.0.ln1.hook_normalized"])
        with model.hooks([(name, unit_scale)]):
            _, edited = model.run_with_cache(toks, names_filter=["blocks.0.ln1.hook_normalized"])
    x = cache["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(edited["blocks.0.ln1.hook_normalized"],
                               x - x.mean(-1, keepdim=True))
    assert not torch.allclose(cache["blocks.0.ln1.hook_normalized"],
                              edited["blocks.0.ln1.hook_normalized"])


@pytest.mark.parametrize("kw", [
    {},
    {"normalization": "rms", "positional": "rotary", "act_fn": "relu"},
    {"causal": False, "norm_position": "post", "embed_norm": True},
], ids=["gpt2", "rotary_rms_relu", "bert"])
@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
def test_editing_in_place_equals_returning_the_edit(toks, kw, mode):
    """At every hook point, a hook that edits its tensor in place and returns None has the
    same effect as one that returns the edited tensor: on the logits and, under autograd,
    on the gradients."""
    model = make(**kw)
    names = [n for n in model.hook_dict if not n.endswith("hook_result")] + \
        ["blocks.0.attn.hook_result"]

    # Not a constant shift: a norm right after a hook (the per-head inputs) would undo it.
    def ramp(t):
        return torch.linspace(0.1, 0.3, t.shape[-1], dtype=t.dtype)

    def returned(t, hook):
        return t * 0.5 + ramp(t)

    def in_place(t, hook):
        t.mul_(0.5).add_(ramp(t))

    with AUTOGRAD_MODES[mode]():
        plain = model(toks)
        for name in names:
            a = model.run_with_hooks(toks, fwd_hooks=[(name, returned)])
            b = model.run_with_hooks(toks, fwd_hooks=[(name, in_place)])
            torch.testing.assert_close(b, a, msg=lambda m, n=name: f"{n}: {m}")
            assert not torch.allclose(a, plain), name
            if mode == "grad":
                (ga,), (gb,) = (torch.autograd.grad(out.square().mean(), model.W_E)
                                for out in (a, b))
                torch.testing.assert_close(gb, ga, msg=lambda m, n=name: f"{n} grad: {m}")
        torch.testing.assert_close(model(toks), plain)  # no edit leaked into the weights


def test_cached_tensor_equals_what_a_hook_saw(model, toks):
    seen = {}

    def grab(t, hook):
        seen[hook.name] = t.clone()

    names = ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.mlp.hook_post"]
    model.run_with_hooks(toks, fwd_hooks=[(n, grab) for n in names])
    _, cache = model.run_with_cache(toks, names_filter=names)
    for n in names:
        torch.testing.assert_close(cache[n], seen[n], atol=1e-6, rtol=0)


def test_patching_back_the_cached_value_reproduces_logits(model, toks):
    logits, cache = model.run_with_cache(toks, names_filter="blocks.1.hook_resid_pre")
    resid = cache["blocks.1.hook_resid_pre"]
    patched = model.run_with_hooks(
        toks, fwd_hooks=[("blocks.1.hook_resid_pre", lambda t, h: resid.clone())])
    torch.testing.assert_close(patched, logits, rtol=0, atol=0)
    other = torch.randint(0, 41, toks.shape, generator=torch.Generator().manual_seed(5))
    patched_other = model.run_with_hooks(
        other, fwd_hooks=[("blocks.1.hook_resid_pre", lambda t, h: resid.clone())])
    # Everything downstream of layer 1's input is the original run's: the logits too.
    torch.testing.assert_close(patched_other, logits, atol=1e-6, rtol=0)


def test_zero_ablation_changes_logits(model, toks):
    plain = model(toks)
    ablated = model.run_with_hooks(
        toks, fwd_hooks=[("blocks.0.hook_attn_out", lambda t, h: torch.zeros_like(t))])
    assert not torch.allclose(plain, ablated, atol=1e-4)
    head = model.run_with_hooks(
        toks, fwd_hooks=[("blocks.0.attn.hook_z", lambda t, h: t.index_fill(2, torch.tensor(1),
                                                                            0.0))])
    assert not torch.allclose(plain, head, atol=1e-5)


def test_hook_gets_name_and_layer(model, toks):
    got = []

    def record(t, hook):
        got.append((hook.name, hook.layer()))

    model.run_with_hooks(toks, fwd_hooks=[("blocks.1.attn.hook_v", record),
                                          ("hook_embed", record),
                                          ("ln_final.hook_scale", record)])
    assert sorted(got, key=str) == sorted([("blocks.1.attn.hook_v", 1), ("hook_embed", None),
                                           ("ln_final.hook_scale", None)], key=str)


def test_hook_wrong_shape_raises(model, toks):
    with pytest.raises(ValueError, match="shape"):
        model.run_with_hooks(toks, fwd_hooks=[("hook_embed", lambda t, h: t[:, :1])])
    assert _no_hooks_left(model)


def test_hooks_removed_when_forward_raises(model, toks):
    def boom(t, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(toks, fwd_hooks=[("blocks.0.hook_resid_mid", boom),
                                              ("blocks.1.hook_resid_pre", boom)],
                             bwd_hooks=[("blocks.0.hook_resid_post", boom)])
    assert _no_hooks_left(model)
    with pytest.raises(RuntimeError, match="boom"), model.hooks([("hook_embed", boom)]):
        model(toks)
    assert _no_hooks_left(model)
    with pytest.raises(ValueError):  # a bad name after a good one: nothing stays attached
        model.run_with_hooks(toks, fwd_hooks=[("hook_embed", boom), ("hook_embedd", boom)])
    assert _no_hooks_left(model)


def test_hooks_context_manager(model, toks):
    plain = model(toks)
    zero = [("blocks.1.hook_mlp_out", lambda t, h: torch.zeros_like(t))]
    with model.hooks(fwd_hooks=zero):
        inside = model(toks)
        assert model.hook_dict["blocks.1.hook_mlp_out"].fwd_fns
    assert not torch.allclose(inside, plain, atol=1e-5)
    assert torch.equal(model(toks), plain)
    assert _no_hooks_left(model)


# -- gradients -----------------------------------------------------------------------------------


def test_bwd_cache_matches_autograd(model, toks):
    # Reference: autograd on the residual stream fed back through the upper layers.
    _, cache = model.run_with_cache(toks, names_filter="blocks.1.hook_resid_pre")
    resid = cache["blocks.1.hook_resid_pre"].clone().requires_grad_(True)
    logits = model(resid, start_at_layer=1)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 41), toks[:, 1:].reshape(-1))
    (ref,) = torch.autograd.grad(loss, resid)

    names = ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post", "hook_embed"]
    loss2, gcache = model.run_with_cache(toks, names_filter=names, incl_bwd=True,
                                         return_type="loss")
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(gcache["blocks.1.hook_resid_pre_grad"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gcache["blocks.0.hook_resid_post_grad"], ref, atol=1e-6,
                               rtol=1e-5)
    assert gcache["hook_embed_grad"].shape == (2, 9, 32)
    model.zero_grad(set_to_none=True)
    assert _no_hooks_left(model)


@pytest.mark.parametrize("name", ["blocks.1.ln2.hook_scale", "blocks.0.ln1.hook_scale",
                                  "blocks.0.ln1.hook_normalized", "blocks.0.attn.hook_k"])
def test_bwd_cache_has_every_gradient_and_each_is_whole(model, toks, name):
    """Every cached activation has its gradient (the LN scale too, as in TransformerLens), and
    it equals autograd's gradient with respect to a leaf put in the activation's place (for
    ln1, the sum over its uses by q, k and v)."""
    _, gcache = model.run_with_cache(toks, incl_bwd=True, return_type="loss")
    forward = [k for k in gcache if not k.endswith("_grad")]
    assert [k for k in forward if k + "_grad" not in gcache] == []

    leaf = {}

    def as_leaf(t, hook):
        leaf["t"] = t.detach().clone().requires_grad_(True)
        return leaf["t"]

    loss = model.run_with_hooks(toks, return_type="loss", fwd_hooks=[(name, as_leaf)])
    (ref,) = torch.autograd.grad(loss, leaf["t"])
    torch.testing.assert_close(gcache[name + "_grad"], ref, atol=1e-7, rtol=1e-5)
    model.zero_grad(set_to_none=True)


def test_bwd_hooks_see_and_can_change_the_gradient(model, toks):
    seen = {}

    def grab(g, hook):
        seen[hook.name] = g.clone()

    stash = {}

    def keep(t, hook):
        stash["resid"] = t

    loss = model.run_with_hooks(toks, return_type="loss",
                                fwd_hooks=[("blocks.0.hook_resid_mid", keep)],
                                bwd_hooks=[("blocks.0.hook_resid_mid", grab)])
    (ref,) = torch.autograd.grad(loss, stash["resid"], retain_graph=True)
    loss.backward()
    torch.testing.assert_close(seen["blocks.0.hook_resid_mid"], ref)

    # A backward hook that zeros the gradient at the embedding stops it reaching W_E.
    model.zero_grad(set_to_none=True)
    loss = model.run_with_hooks(toks, return_type="loss",
                                bwd_hooks=[("hook_embed", lambda g, h: torch.zeros_like(g))])
    loss.backward()
    assert model.embed.W_E.grad is not None and (model.embed.W_E.grad == 0).all()
    model.zero_grad(set_to_none=True)
    assert _no_hooks_left(model)


def test_incl_bwd_needs_scalar(model, toks):
    with pytest.raises(ValueError, match="loss"):
        model.run_with_cache(toks, names_filter="hook_embed", incl_bwd=True)
    model.zero_grad(set_to_none=True)
    assert _no_hooks_left(model)


# -- names_filter, lookup shorthand, errors ------------------------------------------------------


def test_names_filter_forms(model, toks):
    _, c = model.run_with_cache(toks, names_filter="blocks.0.attn.hook_pattern")
    assert list(c.keys()) == ["blocks.0.attn.hook_pattern"]
    _, c = model.run_with_cache(toks, names_filter=["hook_embed", "blocks.1.hook_resid_post"])
    assert set(c.keys()) == {"hook_embed", "blocks.1.hook_resid_post"}
    _, c = model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    assert set(c.keys()) == {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"}


def test_unknown_hook_name_suggests(model, toks):
    with pytest.raises(ValueError, match="blocks.0.attn.hook_pattern"):
        model.run_with_cache(toks, names_filter="blocks.0.attn.hook_patern")
    with pytest.raises(ValueError, match="unknown hook name"):
        model.run_with_hooks(toks, fwd_hooks=[("blocks.9.hook_resid_pre", lambda t, h: None)])
    assert _no_hooks_left(model)


def test_cache_shorthand(model, toks):
    _, cache = model.run_with_cache(toks)
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["resid_pre", 1] is cache["blocks.1.hook_resid_pre"]
    assert cache["scale", 1, "ln2"] is cache["blocks.1.ln2.hook_scale"]
    assert cache["embed"] is cache["hook_embed"]
    assert ("q", 1) in cache and "blocks.0.attn.hook_result" not in cache
    assert gs.act_name("mlp_post", 0) == "blocks.0.mlp.hook_post"
    with pytest.raises(KeyError, match="not in the cache"):
        cache["result", 0]


def test_hook_result_sums_to_attn_out(model, toks):
    names = ["blocks.0.attn.hook_result", "blocks.0.hook_attn_out", "blocks.0.attn.hook_z"]
    logits, cache = model.run_with_cache(toks, names_filter=names)
    result = cache["blocks.0.attn.hook_result"]
    assert result.shape == (2, 9, 4, 32)
    b_O = model.blocks[0].attn.b_O
    torch.testing.assert_close(result.sum(2) + b_O, cache["blocks.0.hook_attn_out"], atol=1e-6,
                               rtol=1e-5)
    W_O = model.W_O[0]
    torch.testing.assert_close(result[:, :, 2], cache["blocks.0.attn.hook_z"][:, :, 2] @ W_O[2],
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, model(toks), atol=1e-5, rtol=1e-5)


# -- splicing modules ------------------------------------------------------------------------


class Zeroer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_x = HookPoint()

    def forward(self, x):
        return self.hook_x(x) * 0


def test_attach_splices_and_detach_restores(toks):
    model = make()
    plain = model(toks)
    name = "blocks.1.hook_resid_pre"
    model.attach(name, Zeroer())
    assert f"{name}.hook_x" in model.hook_dict
    logits, cache = model.run_with_cache(toks)
    assert f"{name}.hook_x" in cache.keys()
    assert (cache[name] == 0).all()
    torch.testing.assert_close(cache[f"{name}.hook_x"], model(toks, stop_at_layer=1),
                               atol=1e-6, rtol=0)
    # With layer 1's input zeroed, the output depends on layer 1 alone: tokens do not matter.
    zeros = model(torch.zeros(1, 9, 32), start_at_layer=1)
    torch.testing.assert_close(logits, zeros.expand(2, -1, -1), atol=1e-5, rtol=1e-5)
    assert model.hook_dict[f"{name}.hook_x"].layer() == 1
    with pytest.raises(ValueError, match="already"):
        model.attach(name, Zeroer())
    module = model.detach(name)
    assert isinstance(module, Zeroer)
    assert f"{name}.hook_x" not in model.hook_dict
    assert torch.equal(model(toks), plain)
    with pytest.raises(ValueError, match="nothing is attached"):
        model.detach(name)
    with model.attached(name, Zeroer()):
        assert not torch.allclose(model(toks), plain)
    assert torch.equal(model(toks), plain)


# -- the one way in: hook_point, activations, where a hook is in the sequence ------------------


def test_hook_point_finds_or_suggests(model):
    assert model.hook_point("blocks.1.attn.hook_z") is model.blocks[1].attn.hook_z
    with pytest.raises(ValueError, match="did you mean 'blocks.1.attn.hook_z'"):
        model.hook_point("blocks.1.attn.hook_zz")
    with pytest.raises(ValueError, match="one hook's name"):
        model.hook_point(3)


@pytest.mark.parametrize("names", [
    "hook_embed", ["blocks.0.attn.hook_pattern", "blocks.0.hook_resid_post"],
    ["blocks.1.mlp.hook_post", "hook_pos_embed"], "ln_final.hook_normalized",
    ["unembed.hook_out", "blocks.0.hook_mlp_out"], lambda n: n.endswith("hook_v"),
])
def test_activations_equal_the_full_cache(model, toks, names):
    got = model.activations(toks, names)
    _, cache = model.run_with_cache(toks, names_filter=names)
    assert list(got) == list(cache.keys())
    for name, tensor in got.items():
        assert torch.equal(tensor, cache[name]), name
        assert not tensor.requires_grad


@pytest.mark.parametrize("names, last_block_run", [
    ("hook_embed", None), ("blocks.0.hook_resid_pre", 0), (["blocks.1.attn.hook_q"], 1),
    ("ln_final.hook_scale", 1),
])
def test_activations_stop_after_the_deepest_hook(model, toks, names, last_block_run):
    ran = []

    def note(t, hook):
        ran.append(hook.layer())

    hooks = [(f"blocks.{i}.hook_resid_pre", note) for i in range(2)]
    unembedded = []
    hooks.append(("unembed.hook_in", lambda t, h: unembedded.append(1)))
    with model.hooks(hooks):
        model.activations(toks, names)
    assert ran == list(range((last_block_run if last_block_run is not None else -1) + 1))
    assert not unembedded  # no logits unless an unembed hook is asked for


def test_activations_pass_the_attention_mask(model):
    padded = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    got = model.activations(padded, "blocks.1.hook_resid_post", attention_mask=mask)
    alone = model.activations(padded[:1, 2:], "blocks.1.hook_resid_post")
    torch.testing.assert_close(got["blocks.1.hook_resid_post"][:1, 2:],
                               alone["blocks.1.hook_resid_post"], atol=1e-5, rtol=1e-5)


def test_activations_bad_arguments(model, toks):
    with pytest.raises(ValueError, match="names must pick the hooks"):
        model.activations(toks, None)
    with pytest.raises(ValueError, match="not \\['return_type'\\]"):
        model.activations(toks, "hook_embed", return_type="logits")
    with pytest.raises(ValueError, match="unknown hook name"):
        model.activations(toks, ["hook_embedd"])


def test_hooks_know_the_offset_and_positions_during_cached_decoding(model):
    seen = []

    def note(t, hook):
        seen.append((hook.offset, hook.positions.tolist(), t.shape[1]))

    prompt = torch.tensor([[3, 4, 5, 6]])
    with model.hooks([("blocks.0.hook_resid_pre", note)]):
        model.generate(prompt, max_new_tokens=2, temperature=0)
    assert seen == [(0, [0, 1, 2, 3], 4), (4, [4], 1)]
    point = model.hook_point("blocks.0.hook_resid_pre")
    assert (point.offset, point.positions) == (0, None)  # outside a forward pass


def test_reset_hooks_and_remove_batch_dim_as_in_transformerlens(model, toks):
    """Kept for code ported from TransformerLens, which calls both."""
    model.hook_point("blocks.0.hook_resid_pre").fwd_fns.append(lambda t, h: t * 0)
    model.reset_hooks()
    assert _no_hooks_left(model)
    _, cache = model.run_with_cache(toks[:1], names_filter="blocks.0.hook_resid_post")
    single = cache.remove_batch_dim()
    assert single["blocks.0.hook_resid_post"].shape == (9, 32)
    with pytest.raises(ValueError, match="batch size 2"):
        model.run_with_cache(toks, names_filter="hook_embed")[1].remove_batch_dim()
