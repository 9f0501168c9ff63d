"""sample_next: greedy, temperature, top-k and top-p (nucleus) against hand-made distributions."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.model import sample_next


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _draws(logits, n=400, **kw):
    g = _gen()
    rows = logits.expand(n, -1)
    return set(sample_next(rows, generator=g, **kw).tolist())


def test_temperature_zero_is_argmax():
    logits = torch.randn(16, 50)
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))


def test_top_k_one_is_argmax():
    logits = torch.randn(16, 50)
    out = sample_next(logits, temperature=1.5, top_k=1, generator=_gen())
    assert torch.equal(out, logits.argmax(-1))


def test_tiny_top_p_is_argmax():
    logits = torch.randn(16, 50)
    out = sample_next(logits, temperature=1.0, top_p=1e-6, generator=_gen())
    assert torch.equal(out, logits.argmax(-1))


def test_top_k_restricts_support():
    logits = torch.randn(1, 30)
    top = set(logits[0].topk(4).indices.tolist())
    seen = _draws(logits, temperature=2.0, top_k=4)
    assert seen == top  # all four appear in 400 hot draws, nothing else does
    assert len(_draws(logits, temperature=2.0)) > 4  # without top_k, more tokens appear


def test_top_p_keeps_minimal_nucleus():
    probs = torch.tensor([0.05, 0.5, 0.05, 0.25, 0.15])
    logits = probs.log()[None]
    # Sorted: 0.5 (id 1), 0.25 (id 3), 0.15 (id 4), 0.05, 0.05.
    assert _draws(logits, top_p=0.4) == {1}  # 0.5 alone reaches 0.4
    assert _draws(logits, top_p=0.7) == {1, 3}  # 0.75 reaches 0.7; 0.5 does not
    assert _draws(logits, top_p=0.8) == {1, 3, 4}  # 0.9 reaches 0.8
    assert _draws(logits, top_p=1.0) == {0, 1, 2, 3, 4}


def test_seeded_sampling_reproduces_and_follows_distribution():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    a = sample_next(logits.expand(2000, -1), generator=_gen(1))
    b = sample_next(logits.expand(2000, -1), generator=_gen(1))
    assert torch.equal(a, b)
    assert a.float().mean().item() == pytest.approx(0.75, abs=0.04)


def test_low_temperature_sharpens():
    logits = torch.tensor([[0.0, 1.0, 0.5]])
    assert _draws(logits, temperature=0.01) == {1}


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_bad_args_raise(kw, word):
    with pytest.raises(ValueError, match=word):
        sample_next(torch.randn(2, 5), **kw)
