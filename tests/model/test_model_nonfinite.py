"""NaN and inf are never hidden: the fused attention (SDPA) and the written-out path (taken
when something hooks the pattern) agree that a broken model is broken; padding stays out of
real tokens whatever it holds; generation refuses logits it cannot sample from."""

from __future__ import annotations

import pytest
import torch
from helpers import random_model

import gptscope as gs
from gptscope.model import KVCache

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)
CONFIGS = {
    "gpt2": {},
    "rotary": {"positional": "rotary"},
    "encoder": {"causal": False},
    "attn_only_rms": {"attn_only": True, "normalization": "rms"},
}
NAN = float("nan")
# Hooking the pattern makes every layer take the written-out attention path.
WRITTEN_OUT = [(lambda name: name.endswith("hook_pattern"), lambda t, hook: None)]


def make(**kw) -> gs.Transformer:
    return random_model(**{**BASE, **kw})


def tokens(batch=2, n=10, seed=0):
    return torch.randint(0, 41, (batch, n), generator=torch.Generator().manual_seed(seed))


def finite_positions(model, toks, hooks=(), **kw) -> torch.Tensor:
    """Bool [batch, pos]: positions whose logits are all finite, fused and written out."""
    with model.hooks(fwd_hooks=list(hooks)):
        fused = model(toks, **kw)
    with model.hooks(fwd_hooks=list(hooks) + WRITTEN_OUT):
        written = model(toks, **kw)
    return fused.isfinite().all(-1), written.isfinite().all(-1)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("param", ["W_Q", "b_Q", "W_K", "b_K", "W_V"])
@pytest.mark.parametrize("layer", [0, 1])
def test_nan_weights_are_nan_in_both_paths(config, param, layer):
    # The reported bug: with W_Q NaN every score is NaN, SDPA's flash kernel treats the
    # rows as fully masked and returns 0, and model(tokens) looked healthy.
    model = make(**CONFIGS[config])
    with torch.no_grad():
        getattr(model.blocks[layer].attn, param).fill_(NAN)
    fused, written = finite_positions(model, tokens())
    assert not written.any()
    assert torch.equal(fused, written)
    _, cache = model.run_with_cache(tokens(), names_filter=f"blocks.{layer}.attn.hook_z")
    assert not cache[f"blocks.{layer}.attn.hook_z"].isfinite().any()


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("what", ["q", "k", "v"])
def test_one_nan_position_is_nan_wherever_the_written_out_path_says(config, what):
    model = make(**CONFIGS[config])

    def poison(t, hook):  # t: [batch, pos, head, d_head]
        t = t.clone()
        t[:, 3] = NAN
        return t

    hooks = [(f"blocks.0.attn.hook_{what}", poison)]
    fused, written = finite_positions(model, tokens(), hooks)
    assert not written.all()
    assert not (fused & ~written).any()  # fused is never finite where written-out is not
    assert not fused[:, 3].any()


def test_nan_query_row_in_a_cached_step():
    model = make(positional="rotary")
    toks = tokens()
    cache = KVCache(model.cfg, 2)
    model(toks[:, :6], past=cache)

    def poison(t, hook):
        return torch.full_like(t, NAN)

    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_q", poison)]):
        step = model(toks[:, 6:7], past=cache)
    assert not step.isfinite().any()


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("hook", ["hook_embed", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v",
                                  "blocks.1.hook_resid_pre"])
def test_nan_in_padding_does_not_reach_real_tokens(config, hook):
    """Padding is masked so that real tokens do not depend on it: that has to hold for
    whatever the padded positions hold, NaN included (a pad id whose embedding row is
    garbage, or a hook that writes there). Before, a NaN padded value spread to every real
    token (a masked weight is 0, and 0 * NaN is NaN) and a NaN padded key did in SDPA."""
    model = make(**CONFIGS[config])
    a, b = tokens(1, 8, seed=1), tokens(1, 5, seed=2)
    pad_left = model.cfg.causal  # encoders pad on the right, as BERT tokenizers do
    zeros = torch.zeros(1, 3, dtype=torch.long)
    row = torch.cat([zeros, b] if pad_left else [b, zeros], 1)
    batch = torch.cat([a, row])
    mask = torch.ones(2, 8, dtype=torch.long)
    padded = slice(0, 3) if pad_left else slice(5, 8)
    real = slice(3, 8) if pad_left else slice(0, 5)
    mask[1, padded] = 0

    def poison(t, hook):
        t = t.clone()
        t[1, padded] = NAN
        return t

    for extra in ([], WRITTEN_OUT):
        with model.hooks(fwd_hooks=[(hook, poison)] + extra):
            out = model(batch, attention_mask=mask)
        assert out[0].isfinite().all() and out[1, real].isfinite().all()
        torch.testing.assert_close(out[1, real], model(b)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)


def test_fused_path_still_trains():
    # The NaN guard adds to SDPA's output out of place; backward must still work and be
    # unchanged (the guard's gradient is 0).
    model = make()
    loss = model(tokens(), return_type="loss")
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with model.hooks(fwd_hooks=WRITTEN_OUT):
        model(tokens(), return_type="loss").backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4, msg=n)


# -- generation refuses logits it cannot sample from --------------------------------------------


def nan_model(**kw) -> gs.Transformer:
    model = make(**kw)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.fill_(NAN)
    return model


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_refuses_nan_logits(temperature, use_cache):
    # Greedy used to return token 0 (argmax of NaN) without a word.
    model = nan_model()
    with pytest.raises(ValueError, match=r"generation step 0 produced logits that are not "
                                         r"finite \(NaN in rows \[0, 1\]\)"):
        model.generate(tokens(), max_new_tokens=3, temperature=temperature, use_cache=use_cache)
    with pytest.raises(ValueError, match="not finite"):
        list(model.stream(tokens(), max_new_tokens=3, temperature=temperature,
                          stop_tokens=[1]))


def test_generate_refuses_inf_logits_midway():
    model = make()
    calls = []

    def blow_up_later(t, hook):
        calls.append(1)
        return t * float("inf") if len(calls) == 3 else None

    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", blow_up_later)]), \
            pytest.raises(ValueError, match=r"generation step 2 produced logits"):
        model.generate(tokens(), max_new_tokens=5, temperature=0.0)


def test_generate_banned_tokens_fine_all_banned_refused():
    model = make(unembed_bias=True)
    toks = tokens(1, 4)
    free = model.generate(toks, max_new_tokens=6, temperature=0.0)[0, 4:].tolist()
    banned = sorted(set(free))
    with torch.no_grad():
        model.unembed.b_U[banned] = float("-inf")  # some -inf: legal, those never come out
    for temperature in (0.0, 1.0):
        out = model.generate(toks, max_new_tokens=6, temperature=temperature, seed=0)
        assert not set(out[0, 4:].tolist()) & set(banned)
    with torch.no_grad():
        model.unembed.b_U.fill_(float("-inf"))
    with pytest.raises(ValueError, match=r"-inf everywhere \(every token banned\) in rows \[0\]"):
        model.generate(toks, max_new_tokens=2, temperature=1.0)
