"""Residual-stream analysis, logit lens and DLA: agreement with TransformerLens and exact sums."""

from __future__ import annotations

import pytest
import torch

import gptscope.interp as gi

ATOL = 1e-5


@pytest.fixture(scope="module")
def pair(make_small_model, to_tl):
    """Our model with MLPs, LayerNorm and non-zero biases, the same weights in TL, tokens."""
    model = make_small_model()
    tl = to_tl(model)
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        tl_logits, tl_cache = tl.run_with_cache(tokens)
    assert torch.allclose(logits, tl_logits, atol=1e-4)
    return model, tl, tokens, cache, tl_cache


@pytest.mark.parametrize("kwargs", [
    {}, {"incl_mid": True}, {"apply_ln": True}, {"layer": 2, "apply_ln": True},
    {"layer": 1, "incl_mid": True, "pos_slice": -1}, {"pos_slice": (2, 5), "apply_ln": True},
    {"layer": 1, "mlp_input": True, "apply_ln": True},
])
def test_accumulated_resid_matches_tl(pair, kwargs):
    _, _, _, cache, tl_cache = pair
    ours, labels = gi.accumulated_resid(cache, return_labels=True, **kwargs)
    theirs, tl_labels = tl_cache.accumulated_resid(return_labels=True, **kwargs)
    assert labels == tl_labels
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {}, {"mode": "attn"}, {"mode": "mlp", "layer": 2}, {"apply_ln": True},
    {"layer": 1, "mlp_input": True, "apply_ln": True}, {"incl_embeds": False, "pos_slice": -1},
])
def test_decompose_resid_matches_tl_and_sums(pair, kwargs):
    _, _, _, cache, tl_cache = pair
    ours, labels = gi.decompose_resid(cache, return_labels=True, **kwargs)
    theirs, tl_labels = tl_cache.decompose_resid(return_labels=True, **kwargs)
    assert labels == tl_labels
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)
    if not kwargs:  # attn_out and mlp_out carry their biases, so the parts sum exactly
        torch.testing.assert_close(ours.sum(0), cache["resid_post", 2], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {}, {"layer": 2}, {"incl_remainder": True}, {"pos_slice": -1, "apply_ln": True},
])
def test_stack_head_results_from_z_matches_tl(pair, kwargs):
    _, _, _, cache, tl_cache = pair
    assert "blocks.0.attn.hook_result" not in cache  # so ours computes it from hook_z
    ours, labels = gi.stack_head_results(cache, return_labels=True, **kwargs)
    theirs, tl_labels = tl_cache.stack_head_results(return_labels=True, **kwargs)
    assert labels == tl_labels
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {}, {"layer": 2}, {"incl_remainder": True}, {"pos_slice": -1, "apply_ln": True},
    {"layer": 1, "neuron_slice": (3, 9)},
])
def test_stack_neuron_results_matches_tl(pair, kwargs):
    _, _, _, cache, tl_cache = pair
    ours, labels = gi.stack_neuron_results(cache, return_labels=True, **kwargs)
    theirs, tl_labels = tl_cache.stack_neuron_results(
        kwargs.pop("layer", 3), return_labels=True, **kwargs)
    assert labels == tl_labels
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def test_neurons_sum_to_the_mlp_output_minus_its_bias(pair):
    model, _, _, cache, _ = pair
    neurons = gi.stack_neuron_results(cache, 2)[model.cfg.d_mlp:]  # layer 1's neurons
    torch.testing.assert_close(neurons.sum(0) + model.blocks[1].mlp.b_out,
                               cache["mlp_out", 1], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"layer": 0}, {"layer": 2}, {"layer": 1, "mlp_input": True},
    {"layer": 3, "include_mlp_biases": False},
])
def test_accumulated_bias_matches_tl(pair, kwargs):
    model, tl, _, _, _ = pair
    torch.testing.assert_close(gi.accumulated_bias(model, **kwargs),
                               tl.accumulated_bias(**kwargs), atol=0, rtol=0)


@pytest.mark.parametrize("kwargs", [
    {}, {"layer": 2, "expand_neurons": False}, {"layer": 1, "mlp_input": True},
    {"apply_ln": True, "pos_slice": -1}, {"layer": 2, "mlp_input": True, "apply_ln": True},
])
def test_full_resid_decomposition_matches_tl_and_sums(pair, kwargs):
    model, _, _, cache, tl_cache = pair
    ours, labels = gi.full_resid_decomposition(cache, return_labels=True, **kwargs)
    theirs, tl_labels = tl_cache.get_full_resid_decomposition(return_labels=True, **kwargs)
    assert labels == tl_labels
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)
    if not kwargs.get("apply_ln"):
        layer = kwargs.get("layer", 3)
        whole = cache["resid_post", 2] if layer == 3 else \
            cache["resid_mid" if kwargs.get("mlp_input") else "resid_pre", layer]
        torch.testing.assert_close(ours.sum(0), whole, atol=ATOL, rtol=1e-4)


def test_head_results_from_hook_result_equal_from_z(pair):
    model, _, tokens, cache, _ = pair
    _, with_result = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_result")
    torch.testing.assert_close(gi.head_results(with_result, 1), gi.head_results(cache, 1),
                               atol=ATOL, rtol=1e-4)


def test_logit_attrs_matches_tl(pair):
    _, _, tokens, cache, tl_cache = pair
    answer, wrong = tokens[:, -1], tokens[:, 0]
    stack = gi.decompose_resid(cache, pos_slice=-1)
    tl_stack = tl_cache.decompose_resid(pos_slice=-1)
    ours = gi.logit_attrs(cache, stack, answer, wrong, pos_slice=-1)
    theirs = tl_cache.logit_attrs(tl_stack, answer, wrong, pos_slice=-1)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)
    assert ours.shape == (len(stack), tokens.shape[0])


def test_apply_ln_to_stack_is_linear_and_matches_ln_final(pair):
    """Frozen-scale LN of the whole stream, then w and b, gives ln_final's output."""
    model, _, _, cache, _ = pair
    stack = gi.decompose_resid(cache)
    scaled = gi.apply_ln_to_stack(cache, stack)
    total = scaled.sum(0)
    expected = model.ln_final(cache["resid_post", 2])
    torch.testing.assert_close(total * model.ln_final.w + model.ln_final.b, expected,
                               atol=1e-4, rtol=1e-4)


def test_missing_scale_names_the_fix(pair):
    model, _, tokens, _, _ = pair
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: "resid" in n)
    with pytest.raises(ValueError, match="names_filter"):
        gi.accumulated_resid(cache, layer=1, apply_ln=True)
    with pytest.raises(ValueError, match="layer"):
        gi.accumulated_resid(cache, layer=7)


def test_logit_lens_last_row_is_the_model_output(pair):
    model, _, tokens, _, _ = pair
    lens = gi.logit_lens(model, tokens, k=3)
    assert lens.labels[-1] == "final_post" and lens.top_probs.shape == (4, 3, 12, 3)
    probs = model(tokens).softmax(-1)
    top_p, top_i = probs.topk(3, dim=-1)
    torch.testing.assert_close(lens.top_probs[-1], top_p, atol=1e-5, rtol=1e-4)
    assert torch.equal(lens.top_tokens[-1], top_i)
    expected = probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(lens.target_probs[-1, :, :-1], expected, atol=1e-5, rtol=1e-4)
    assert torch.isnan(lens.target_probs[:, :, -1]).all()
    table = lens.to_table()
    assert "final_post" in table and len(table.splitlines()) == 5
    assert "<table>" in lens._repr_html_()


def test_logit_lens_from_cache_and_int_target(pair):
    model, _, tokens, cache, _ = pair
    lens = gi.logit_lens(model, cache, target=7, k=2)
    assert lens.target_probs.shape == (4, 3, 12) and not torch.isnan(lens.target_probs).any()
    with pytest.raises(ValueError, match="k must"):
        gi.logit_lens(model, tokens, k=0)


@pytest.mark.parametrize("attn_only,norm", [(False, "layer"), (True, "layer"), (False, "rms"),
                                            (True, None)])
def test_dla_sums_to_logit_diff(make_small_model, attn_only, norm):
    model = make_small_model(attn_only=attn_only, normalization=norm, unembed_bias=True)
    tokens = torch.randint(0, 50, (4, 10), generator=torch.Generator().manual_seed(3))
    correct, wrong = tokens[:, 0], tokens[:, 1]
    result = gi.dla(model, tokens, correct, wrong)
    logits = model(tokens)[:, -1]
    rows = torch.arange(4)
    actual = logits[rows, correct] - logits[rows, wrong]
    torch.testing.assert_close(result.logit_diff_per_example, actual, atol=1e-4, rtol=1e-4)
    assert abs(result.rest) < 1e-4
    assert abs(result.total() - actual.mean().item()) < 1e-4
    assert result.heads.shape == (3, 4)
    assert (result.mlp is None) == attn_only
    assert "total" in result.to_table() and len(result.top(3)) == 3


def test_dla_heads_agree_with_tl_logit_attrs(pair, to_tl):
    """DLA per head = TL's logit_attrs on stacked head results once ln_final.w is folded."""
    model, _, tokens, _, _ = pair
    tl = to_tl(model)
    correct, wrong = tokens[:, 0], tokens[:, 1]
    ours = gi.dla(model, tokens, correct, wrong)
    tl.ln_final.w.data.fill_(1.0)  # TL's logit_attrs assumes a folded LayerNorm weight
    tl.unembed.W_U.data *= model.ln_final.w.detach()[:, None]
    _, tl_cache = tl.run_with_cache(tokens)
    stack = tl_cache.stack_head_results(pos_slice=-1)
    theirs = tl_cache.logit_attrs(stack, correct, wrong, pos_slice=-1).mean(-1)
    torch.testing.assert_close(ours.heads.flatten(), theirs, atol=1e-4, rtol=1e-4)


def test_dla_rejects_bad_input(pair):
    model, _, tokens, _, _ = pair
    with pytest.raises(ValueError, match="d_vocab"):
        gi.dla(model, tokens, 999)
    with pytest.raises(ValueError, match="pos"):
        gi.dla(model, tokens, 1, pos=40)
