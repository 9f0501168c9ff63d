"""The interpretability tools on an encoder-decoder, through ``cache.submodel("decoder")``:
the logit lens ends at the model's own output, the residual decomposition and the direct
logit attribution account for the cross-attention (checked against the cached outputs and
the logits, in float64), and what does not split cross-attention refuses it."""

from __future__ import annotations

import pytest
import torch

from gptscope.interp.attribution import dla
from gptscope.interp.lens import logit_lens
from gptscope.interp.resid import decompose_resid, full_resid_decomposition, head_results
from gptscope.model.encoder_decoder import EncoderDecoder, pair_configs


def _model(bias: bool = True) -> EncoderDecoder:
    enc, dec = pair_configs(src_vocab=11, tgt_vocab=13, src_ctx=6, tgt_ctx=5, n_layers=2,
                            d_model=16, n_heads=4, d_head=3, attn_bias=bias, seed=0)
    model = EncoderDecoder.from_configs(enc, dec, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # biases away from zero, so forgetting one shows
        for name, p in model.named_parameters():
            if name.endswith(("b_O", "b_Q", "b_K", "b_V")):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return model


def _inputs():
    g = torch.Generator().manual_seed(4)
    src = torch.randint(0, 11, (3, 6), generator=g)
    tgt = torch.randint(0, 13, (3, 5), generator=g)
    src_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    return src, tgt, src_mask


def _run(model: EncoderDecoder):
    src, tgt, src_mask = _inputs()
    return model.run_with_cache(src, tgt, src_mask=src_mask)


def test_submodel_strips_the_prefix_and_binds_the_part():
    model = _model()
    _, cache = _run(model)
    dec = cache.submodel("decoder")
    assert dec.model is model.decoder
    assert torch.equal(dec["blocks.1.cross_attn.hook_pattern"],
                       cache["decoder.blocks.1.cross_attn.hook_pattern"])
    assert dec["pattern", 0].shape == (3, 4, 5, 5)  # the shorthand reads the part's names
    assert all(not k.startswith("decoder.") for k in dec)
    assert cache.submodel("encoder").model is model.encoder
    with pytest.raises(ValueError, match="no cached activation starts with 'dec.'.*decoder"):
        cache.submodel("dec")
    with pytest.raises(ValueError, match="prefix must be"):
        cache.submodel("")


def test_logit_lens_on_the_decoder_ends_at_the_models_own_output():
    model = _model()
    logits, cache = _run(model)
    lens = logit_lens(model.decoder, cache.submodel("decoder"), target=0)
    final = logits.softmax(-1)[..., 0]  # [batch, pos]
    torch.testing.assert_close(lens.target_probs[-1].double(), final, atol=1e-6, rtol=1e-5)


def test_decompose_resid_counts_the_cross_attention():
    model = _model()
    _, cache = _run(model)
    dec = cache.submodel("decoder")
    stack, labels = decompose_resid(dec, layer=2, return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_cross_attn_out", "0_mlp_out",
                      "1_attn_out", "1_cross_attn_out", "1_mlp_out"]
    torch.testing.assert_close(stack.sum(0), dec["blocks.1.hook_resid_post"])
    # The MLP of layer 1 reads resid_mid_cross: both attentions of that layer included.
    stack = decompose_resid(dec, layer=1, mlp_input=True)
    torch.testing.assert_close(stack.sum(0), dec["blocks.1.hook_resid_mid_cross"])
    _, labels = decompose_resid(dec, layer=1, mode="attn", return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_cross_attn_out"]


def test_cross_head_results_sum_to_the_cross_attention_output():
    model = _model()
    _, cache = _run(model)
    dec = cache.submodel("decoder")
    for layer in range(2):
        heads = head_results(dec, layer, cross=True)  # [batch, pos, head, d_model]
        b_O = model.decoder.blocks[layer].cross_attn.b_O
        torch.testing.assert_close(heads.sum(-2) + b_O,
                                   dec[f"blocks.{layer}.hook_cross_attn_out"])
    with pytest.raises(ValueError, match="cross=True needs a decoder"):
        head_results(cache.submodel("encoder"), 0, cross=True)


@pytest.mark.parametrize("bias", [True, False])
def test_dla_of_a_decoder_accounts_for_every_cross_attention_head(bias):
    model = _model(bias)
    logits, cache = _run(model)
    out = dla(model.decoder, cache.submodel("decoder"), correct=3, incorrect=7, pos=-1)
    assert out.cross_heads_per_example.shape == (3, 2, 4)
    want = logits[:, -1, 3] - logits[:, -1, 7]
    torch.testing.assert_close(out.logit_diff_per_example, want)
    # Every part is counted: nothing is left over but float error.
    assert out.rest_per_example.abs().max() < 1e-10
    labels = [name for name, _ in out.items()]
    assert "L1X3" in labels and labels.index("L0X0") == labels.index("L0H3") + 1


def test_dla_cross_heads_are_their_outputs_read_through_the_final_norm():
    # An independent count for one cross head: its result at the last position, centred
    # and divided by ln_final's cached scale, dotted with w_ln * (W_U[:, 3] - W_U[:, 7]).
    model = _model()
    _, cache = _run(model)
    dec = cache.submodel("decoder")
    out = dla(model.decoder, dec, correct=3, incorrect=7, pos=-1)
    result = dec["blocks.1.cross_attn.hook_z"][:, -1, 2] @ \
        model.decoder.blocks[1].cross_attn.W_O[2]  # [batch, d_model]
    centred = result - result.mean(-1, keepdim=True)
    scale = dec["ln_final.hook_scale"][:, -1]  # [batch, 1]
    direction = model.decoder.ln_final.w * (model.decoder.W_U[:, 3] - model.decoder.W_U[:, 7])
    torch.testing.assert_close(out.cross_heads_per_example[:, 1, 2],
                               (centred / scale * direction).sum(-1))


def test_full_resid_decomposition_refuses_cross_attention():
    model = _model()
    _, cache = _run(model)
    with pytest.raises(ValueError, match="decompose_resid.*dla"):
        full_resid_decomposition(cache.submodel("decoder"))


def test_dla_from_tokens_on_a_decoder_asks_for_its_context():
    model = _model()
    with pytest.raises(ValueError, match="needs context.*encoder output"):
        dla(model.decoder, torch.zeros(1, 5, dtype=torch.long), correct=1)


def test_a_composed_decoder_records_under_its_own_names():
    # The halves' hook points carry the whole model's names; the decoder run on its own
    # still caches, reads and hooks by its own, and agrees with the whole model's cache.
    model = _model()
    src, tgt, src_mask = _inputs()
    _, cache = model.run_with_cache(src, tgt, src_mask=src_mask)
    memory = model.encode(src, src_mask)
    _, alone = model.decoder.run_with_cache(tgt, context=memory, context_mask=src_mask)
    name = "blocks.1.cross_attn.hook_pattern"
    torch.testing.assert_close(alone[name], cache["decoder." + name])
    read = model.decoder.activations(tgt, [name], context=memory, context_mask=src_mask)
    torch.testing.assert_close(read[name], cache["decoder." + name])
    seen = []
    model.decoder.run_with_hooks(tgt, context=memory, context_mask=src_mask,
                                 fwd_hooks=[(name, lambda t, hook: seen.append(hook.name))])
    assert seen == ["decoder." + name]  # the point itself keeps the whole model's name
