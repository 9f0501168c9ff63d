"""Generation: the KV cache changes nothing but speed; seeds, streaming, stops, overflow, hooks."""

from __future__ import annotations

import pytest
import torch

import gptscope as gs
from gptscope.model import KVCache

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=37, n_ctx=12, seed=0)

CONFIGS = {
    "gpt2": {},
    "rotary": {"positional": "rotary"},
    "rotary_partial_rms": {"positional": "rotary", "rotary_dim": 4, "normalization": "rms"},
    "sinusoidal": {"positional": "sinusoidal"},
    "attn_only_nonorm": {"attn_only": True, "normalization": None},
    "bigram": {"n_layers": 0},
    "tied": {"tie_embeddings": True},
}


def make(**kw) -> gs.Transformer:
    # A larger init makes the greedy choices depend on the context (not one fixed token).
    model = gs.Transformer(gs.ModelConfig(**{**BASE, "init_range": 0.5, **kw}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def prompt(batch=2, n=4, seed=0):
    return torch.randint(0, 37, (batch, n), generator=torch.Generator().manual_seed(seed))


def greedy_reference(model, toks, n):
    """Plain argmax loop over full forward passes, with a sliding window of n_ctx."""
    out = toks
    for _ in range(n):
        logits = model(out[:, -model.cfg.n_ctx:])
        out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return out


@pytest.fixture(params=list(CONFIGS), scope="module")
def model(request):
    return make(**CONFIGS[request.param])


def test_greedy_cache_equals_no_cache_within_context(model):
    toks = prompt()
    a = model.generate(toks, max_new_tokens=8, temperature=0.0, use_cache=True)
    b = model.generate(toks, max_new_tokens=8, temperature=0.0, use_cache=False)
    assert a.shape == (2, 12)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :4], toks)
    assert torch.equal(a, greedy_reference(model, toks, 8))


def test_greedy_cache_equals_no_cache_past_n_ctx(model):
    toks = prompt(n=5, seed=1)
    a = model.generate(toks, max_new_tokens=15, temperature=0.0, use_cache=True)
    b = model.generate(toks, max_new_tokens=15, temperature=0.0, use_cache=False)
    assert a.shape == (2, 20)
    assert torch.equal(a, b)
    assert torch.equal(a, greedy_reference(model, toks, 15))


def test_prompt_longer_than_n_ctx_slides():
    model = make()
    toks = prompt(n=15, seed=2)
    a = model.generate(toks, max_new_tokens=3, temperature=0.0)
    assert a.shape == (2, 18)
    assert torch.equal(a, greedy_reference(model, toks, 3))


def test_greedy_is_not_trivially_constant():
    # Guards the tests above against a model that always emits the same token.
    out = make().generate(prompt(n=4), max_new_tokens=8, temperature=0.0)
    assert len(set(out[:, 4:].flatten().tolist())) > 2


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("kw", [{"positional": "rotary"}, {}])
def test_incremental_logits_match_full_forward(kw, explicit):
    model = make(**kw)
    toks = prompt(n=10, seed=3)
    full = model(toks)
    cache = KVCache(model.cfg, 2, model.device, model.dtype)
    # Chunks of several tokens after the first need the offset causal mask.
    hooks = [("blocks.0.attn.hook_pattern", lambda t, h: None)] if explicit else []
    with model.hooks(fwd_hooks=hooks):
        pieces = [model(toks[:, a:b], past=cache) for a, b in ((0, 4), (4, 7), (7, 8), (8, 10))]
    assert cache.length == 10
    # Chunks sum in another order than one pass: up to 1.2e-5 apart on logits of order 1
    # with ATEN_CPU_CAPABILITY=default kernels (8e-6 with avx2 and avx512).
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=5e-5, rtol=1e-5)
    cache = KVCache(model.cfg, 2)
    model(toks[:, :8], past=cache)
    with pytest.raises(ValueError, match="n_ctx"):
        model(prompt(n=5), past=cache)


def test_sampling_with_seed_reproduces(model):
    toks = prompt()
    kw = dict(max_new_tokens=8, temperature=1.5, seed=11)
    a = model.generate(toks, **kw)
    assert torch.equal(a, model.generate(toks, **kw))
    assert torch.equal(a, model.generate(toks, use_cache=False, **kw))
    others = [model.generate(toks, max_new_tokens=8, temperature=1.5, seed=s) for s in range(4)]
    assert any(not torch.equal(a, o) for o in others)


def test_top_k_one_sampling_is_greedy():
    model = make()
    toks = prompt()
    greedy = model.generate(toks, max_new_tokens=6, temperature=0.0)
    assert torch.equal(model.generate(toks, max_new_tokens=6, temperature=2.0, top_k=1, seed=0),
                       greedy)


def test_stream_yields_generate_tokens():
    model = make()
    toks = prompt()
    out = model.generate(toks, max_new_tokens=6, temperature=0.0)
    steps = list(model.stream(toks, max_new_tokens=6, temperature=0.0))
    assert len(steps) == 6
    assert torch.equal(torch.stack(steps, dim=1), out[:, 4:])
    single = list(model.stream(toks[0], max_new_tokens=6, temperature=0.0))
    assert single == out[0, 4:].tolist()
    assert all(isinstance(t, int) for t in single)
    one_d = model.generate(toks[0], max_new_tokens=6, temperature=0.0)
    assert one_d.dim() == 1 and torch.equal(one_d, out[0])


def test_stop_tokens_stop():
    model = make()
    toks = prompt(batch=1)
    free = model.generate(toks, max_new_tokens=8, temperature=0.0)[0, 4:].tolist()
    stop = free[2]
    first = free.index(stop)
    out = model.generate(toks, max_new_tokens=8, temperature=0.0, stop_tokens=[stop])
    assert out[0, 4:].tolist() == free[: first + 1]
    streamed = list(model.stream(toks, max_new_tokens=8, temperature=0.0, stop_tokens=[stop]))
    assert streamed == free[: first + 1]


def test_stop_tokens_batch_pads_finished_rows():
    model = make()
    toks = prompt(batch=2)
    free = model.generate(toks, max_new_tokens=8, temperature=0.0)
    stop = int(free[0, 5])
    out = model.generate(toks, max_new_tokens=8, temperature=0.0, stop_tokens=[stop])
    for row in range(2):
        new = out[row, 4:].tolist()
        ref = free[row, 4:].tolist()
        if stop in ref:
            k = ref.index(stop)
            assert new[: k + 1] == ref[: k + 1]
            assert all(t == stop for t in new[k:])
        else:
            assert new == ref[: len(new)]


def test_overflow_error_raises():
    model = make()
    with pytest.raises(ValueError, match="n_ctx"):
        model.generate(prompt(n=8), max_new_tokens=5, on_overflow="error")
    with pytest.raises(ValueError, match="on_overflow"):
        model.generate(prompt(), max_new_tokens=2, on_overflow="wrap")
    out = model.generate(prompt(n=8), max_new_tokens=4, on_overflow="error", temperature=0)
    assert out.shape == (2, 12)


def test_generate_bad_args():
    model = make()
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt(), max_new_tokens=-1)
    with pytest.raises(ValueError, match="causal"):
        make(causal=False).generate(prompt(), max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt(), max_new_tokens=2, temperature=-1.0)
    assert torch.equal(model.generate(prompt(), max_new_tokens=0), prompt())


@pytest.mark.parametrize("cfg", ["gpt2", "rotary"])
def test_hooks_apply_in_cached_and_uncached_generation(cfg):
    model = make(**CONFIGS[cfg])
    toks = prompt()
    vec = torch.randn(32, generator=torch.Generator().manual_seed(9)) * 3
    calls = []

    def steer(t, hook):
        calls.append(t.shape[1])
        return t + vec

    plain = model.generate(toks, max_new_tokens=10, temperature=0.0)
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", steer)]):
        cached = model.generate(toks, max_new_tokens=10, temperature=0.0, use_cache=True)
        cached_calls, calls[:] = list(calls), []
        uncached = model.generate(toks, max_new_tokens=10, temperature=0.0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, plain)
    assert cached_calls[0] == 4 and set(cached_calls[1:8]) == {1}  # only new tokens fed
    assert set(calls[:8]) != {1}

    # Reference: greedy loop over full forwards with the same hook.
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", steer)]):
        assert torch.equal(cached, greedy_reference(model, toks, 10))


def test_generate_leaves_no_hooks_and_no_grad():
    model = make()
    model.generate(prompt(), max_new_tokens=3)
    assert all(not p.fwd_fns for p in model.hook_dict.values())
    assert all(p.grad is None for p in model.parameters())


def test_pattern_hook_generation_matches_fast_path():
    # A hook on the pattern forces the written-out attention, with and without the cache.
    model = make(positional="rotary")
    toks = prompt()
    fast = model.generate(toks, max_new_tokens=10, temperature=0.0)
    seen = []
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern",
                                 lambda t, h: seen.append(tuple(t.shape)))]):
        explicit = model.generate(toks, max_new_tokens=10, temperature=0.0)
        explicit_nocache = model.generate(toks, max_new_tokens=10, temperature=0.0,
                                          use_cache=False)
    assert torch.equal(explicit, fast) and torch.equal(explicit_nocache, fast)
    assert seen[0] == (2, 4, 4, 4) and seen[1] == (2, 4, 1, 5)


# -- argument forms and cache sizing ------------------------------------------------------------


@pytest.mark.parametrize("form", [
    lambda s: torch.tensor([s]),  # stop id 0 in a tensor used to be falsy: ignored
    lambda s: torch.tensor(s),
    lambda s: torch.tensor([[s, 36]], dtype=torch.int32),
    lambda s: s,
    lambda s: {s},
    lambda s: (s,),
], ids=["tensor", "0d-tensor", "2d-int32-tensor", "int", "set", "tuple"])
def test_stop_token_forms(form):
    model = make(unembed_bias=True)
    with torch.no_grad():
        model.unembed.b_U[0] = 100.0  # greedy picks token 0 first
    toks = prompt(batch=1)
    assert model.generate(toks, max_new_tokens=5, temperature=0.0)[0, 4:].tolist() == [0] * 5
    out = model.generate(toks, max_new_tokens=5, temperature=0.0, stop_tokens=form(0))
    assert out[0, 4:].tolist() == [0]
    assert list(model.stream(toks, max_new_tokens=5, temperature=0.0, stop_tokens=form(0))) == [0]


class _SpyCache(KVCache):
    made: list[KVCache] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _SpyCache.made.append(self)


def test_kv_cache_holds_only_what_generation_needs(monkeypatch):
    from gptscope.model import generation

    _SpyCache.made = []
    monkeypatch.setattr(generation, "KVCache", _SpyCache)
    # 2**20 positions x 2 heads x 8 dims x 2 (k, v) x 4 bytes would be 128 MiB per layer.
    model = make(positional="rotary", n_ctx=2**20, d_model=16, n_heads=2)
    toks = prompt(batch=1, n=3)
    out = model.generate(toks, max_new_tokens=5, temperature=0.0)
    (cache,) = _SpyCache.made
    assert cache.max_len == 8
    assert all(layer.k.shape == layer.v.shape == (1, 2, 8, 8) for layer in cache.layers)
    assert torch.equal(out, model.generate(toks, max_new_tokens=5, temperature=0.0,
                                           use_cache=False))


def test_kv_cache_sizes_when_sliding(monkeypatch):
    from gptscope.model import generation

    _SpyCache.made = []
    monkeypatch.setattr(generation, "KVCache", _SpyCache)
    model = make()
    toks = prompt(n=5, seed=1)
    out = model.generate(toks, max_new_tokens=10, temperature=0.0)  # 15 > n_ctx=12
    # Steps 0-7 fill the cache (5 + 7 tokens); steps 8 and 9 each rebuild it from n_ctx tokens.
    assert [c.max_len for c in _SpyCache.made] == [12] * 3
    assert torch.equal(out, greedy_reference(model, toks, 10))
    _SpyCache.made = []
    model.generate(toks, max_new_tokens=3, temperature=0.0)
    assert [c.max_len for c in _SpyCache.made] == [8]


def test_incremental_with_padding_matches_full_forward():
    # With a cache, attention_mask covers the cached and the new positions, as in HF.
    model = make(positional="rotary")
    toks = prompt(n=9, seed=4)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    full = model(toks, attention_mask=mask)
    cache = KVCache(model.cfg, 2)
    pieces = [model(toks[:, a:b], attention_mask=mask[:, :b], past=cache)
              for a, b in ((0, 5), (5, 6), (6, 9))]
    got = torch.cat(pieces, dim=1)
    torch.testing.assert_close(got[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, 3:], full[1, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", ["gpt2", "rotary", "sinusoidal"])
def test_greedy_continuations_equal_each_prompt_alone(cfg):
    """Mixed prompt lengths, left-padded in one batch: each row's tokens are the ones it
    gets generated alone, cut after its first stop token."""
    from gptscope.model.generation import greedy_continuations

    model = make(**CONFIGS[cfg])
    prompts = [[3], [5, 1, 4, 1], [9, 2, 6], [7, 7]]
    alone = [model.generate(torch.tensor([p]), max_new_tokens=6, temperature=0.0)[0, len(p):]
             .tolist() for p in prompts]
    stop = alone[1][2]  # a token some row produces, so at least one row stops early
    cut = [row[:row.index(stop) + 1] if stop in row else row for row in alone]
    assert greedy_continuations(model, prompts, 6, stop) == cut
    assert greedy_continuations(model, prompts, 6) == alone
    assert any(len(c) < 6 for c in cut)


def test_greedy_continuations_bad_input():
    from gptscope.model.generation import greedy_continuations

    model = make()
    with pytest.raises(ValueError, match="non-empty"):
        greedy_continuations(model, [[1], []], 3)
    with pytest.raises(ValueError, match="exceeds n_ctx=12"):
        greedy_continuations(model, [[1] * 10], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_continuations(model, [[1]], -1)
