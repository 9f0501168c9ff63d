"""Patching on small random models: fixed points, exact cases and input checks.

The trained induction model's patching tests live in test_interp_induction.py.
"""

from __future__ import annotations

import pytest
import torch

import gptscope.interp as gi


@pytest.fixture(scope="module")
def setup(make_small_model):
    model = make_small_model()
    g = torch.Generator().manual_seed(5)
    clean = torch.randint(0, 50, (3, 8), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, 50, (3,), generator=g)
    answer, wrong = clean[:, 0], clean[:, 1]
    with torch.no_grad():
        metric = gi.logit_diff_metric(model(clean), model(corrupted), answer, wrong)
    return model, clean, corrupted, metric


def test_logit_diff_metric_is_one_clean_zero_corrupted(setup):
    model, clean, corrupted, metric = setup
    assert metric(model(clean)).item() == pytest.approx(1.0, abs=1e-5)
    assert metric(model(corrupted)).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="nothing to restore"):
        logits = model(clean)
        gi.logit_diff_metric(logits, logits, 0, 1)


@pytest.mark.parametrize("kind,shape", [("resid_pre", (3, 8)), ("attn_out", (3, 8)),
                                        ("mlp_out", (3, 8)), ("head", (3, 4)),
                                        ("pattern", (3, 4)), ("v", (3, 4))])
def test_patching_x_into_x_keeps_the_metric(setup, kind, shape):
    model, clean, corrupted, metric = setup
    for tokens, value in ((clean, 1.0), (corrupted, 0.0)):
        for fn in (gi.activation_patching, gi.attribution_patching):
            out = fn(model, tokens, tokens, metric, kind=kind)
            assert out.shape == shape
            # (pattern hooks leave the fused SDPA kernel: float noise differs slightly)
            torch.testing.assert_close(out, torch.full(shape, value), atol=5e-4, rtol=0)


def test_patching_the_whole_residual_restores_clean(setup):
    model, clean, corrupted, metric = setup
    # The corruption is at position 2: patching layer 0's resid_pre there restores
    # everything; before it nothing differs, so patching changes nothing. Patching a whole
    # residual stream (all positions) restores everything at any layer.
    out = gi.activation_patching(model, clean, corrupted, metric, kind="resid_pre")
    assert out[0, 2].item() == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(out[:, :2], torch.zeros(3, 2), atol=1e-4, rtol=0)
    whole = gi.activation_patching(model, clean, corrupted, metric, "resid_pre",
                                   per_position=False)
    torch.testing.assert_close(whole, torch.ones(3), atol=1e-4, rtol=0)


def test_per_position_head_maps_have_head_then_pos(setup):
    model, clean, corrupted, metric = setup
    act = gi.activation_patching(model, clean, corrupted, metric, "z", per_position=True)
    attr = gi.attribution_patching(model, clean, corrupted, metric, "z", per_position=True)
    assert act.shape == attr.shape == (3, 4, 8)
    # positions before the corruption see no difference at all
    torch.testing.assert_close(attr[..., :2], torch.zeros(3, 4, 2), atol=1e-5, rtol=0)


def test_pattern_dest_src_patching_matches_tl(setup, to_tl):
    model, clean, corrupted, metric = setup
    from transformer_lens import patching

    tl = to_tl(model)
    _, tl_clean = tl.run_with_cache(clean)
    theirs = patching.get_act_patch_attn_head_pattern_dest_src_pos(tl, corrupted, tl_clean,
                                                                   metric)
    ours = gi.activation_patching(model, clean, corrupted, metric, kind="pattern_dest_src")
    assert ours.shape == theirs.shape == (3, 4, 8, 8)
    # The metric divides by a small logit gap, so pattern hooks' float noise (they leave the
    # fused kernel) shows at ~1e-4, as in test_patching_x_into_x_keeps_the_metric.
    torch.testing.assert_close(ours, theirs, atol=5e-4, rtol=0)
    # Keys after the query are masked in both runs: patching them changes nothing.
    assert ours[0, 0, 1, 5].item() == pytest.approx(0.0, abs=1e-6)
    attr = gi.attribution_patching(model, clean, corrupted, metric, kind="pattern_dest_src")
    assert attr.shape == (3, 4, 8, 8)
    assert torch.corrcoef(torch.stack([ours.flatten(), attr.flatten()]))[0, 1] > 0.5
    with pytest.raises(ValueError, match="one \\(query, key\\) weight"):
        gi.activation_patching(model, clean, corrupted, metric, kind="pattern_dest_src",
                               per_position=False)


def test_path_patching_to_logits_equals_activation_patching_in_last_layer(setup):
    model, clean, corrupted, metric = setup
    path = gi.path_patching(model, clean, corrupted, metric, receivers="logits",
                            senders=[(2, h) for h in range(4)], freeze_mlps=True)
    act = gi.activation_patching(model, clean, corrupted, metric, kind="z")
    # A last-layer head has only a direct path once the MLP after it is frozen... except
    # through that MLP, which freeze_mlps removes; so compare with MLPs recomputed too.
    path_mlp = gi.path_patching(model, clean, corrupted, metric, receivers="logits",
                                senders=[(2, h) for h in range(4)])
    torch.testing.assert_close(path_mlp[2], act[2], atol=1e-5, rtol=1e-4)
    assert torch.isnan(path[:2]).all() and not torch.isnan(path[2]).any()


def test_path_patching_clean_into_clean_is_one(setup):
    model, clean, _, metric = setup
    out = gi.path_patching(model, clean, clean, metric, receivers=[(2, 1)], receiver_input="qkv")
    torch.testing.assert_close(out[:2], torch.ones(2, 4), atol=1e-5, rtol=0)
    assert torch.isnan(out[2]).all()


def test_patching_input_checks(setup):
    model, clean, corrupted, metric = setup
    with pytest.raises(ValueError, match="same shape"):
        gi.activation_patching(model, clean, corrupted[:, :5], metric)
    with pytest.raises(ValueError, match="unknown patching kind"):
        gi.activation_patching(model, clean, corrupted, metric, kind="mlp")
    with pytest.raises(ValueError, match="sender"):
        gi.path_patching(model, clean, corrupted, metric, receivers=[(1, 0)], senders=[(1, 2)])
    with pytest.raises(ValueError, match="receiver_input"):
        gi.path_patching(model, clean, corrupted, metric, receivers=[(1, 0)],
                         receiver_input="x")
    with pytest.raises(ValueError, match="scalar"):
        gi.activation_patching(model, clean, corrupted, lambda logits: logits[:, -1, 0])
