"""Reference solutions against hand-worked cases (the checks compare learners to them)."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.course.solutions import lesson03_positions as s03
from gptscope.course.solutions import lesson03b_evaluation as s03b
from gptscope.course.solutions import lesson05_transformer as s05


def test_alibi_by_hand():
    bias = s03.alibi_bias(2, 2)
    inf = -math.inf
    assert bias.tolist() == [[[0.0, inf], [-1 / 16, 0.0]], [[0.0, inf], [-1 / 256, 0.0]]]
    # one head (slope 2^-8): a new query after three cached keys sees all four keys
    assert s03.alibi_bias(1, 1, 4).tolist() == [[[-3 / 256, -2 / 256, -1 / 256, 0.0]]]
    with pytest.raises(ValueError, match="power of two"):
        s03.alibi_bias(3, 2)


def test_rotary_by_hand_and_relative():
    # d = 2: one pair rotated by the position itself (base^0 = 1)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    out = s03.rotary_embed(x, torch.tensor([0, 1]))
    assert torch.allclose(out, torch.tensor([[1.0, 0.0], [math.cos(1), math.sin(1)]]))
    # a query-key dot product depends only on the offset
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 8, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g,
                                                                            dtype=torch.float64)
    near = s03.rotary_embed(q, torch.tensor([5])) @ s03.rotary_embed(k, torch.tensor([3])).T
    far = s03.rotary_embed(q, torch.tensor([105])) @ s03.rotary_embed(k, torch.tensor([103])).T
    assert torch.allclose(near, far)


def test_auroc_by_hand():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs win, tie, win, win -> 3.5 / 4
    assert s03b.auroc(torch.tensor([0.8, 0.4, 0.4, 0.1]), torch.tensor([1, 1, 0, 0])) == 0.875
    with pytest.raises(ValueError):
        s03b.auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]))


def test_fit_temperature_undoes_a_known_scaling():
    # labels drawn from softmax(z), logits shown as 3 z: the best temperature is close to 3
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=g, dtype=torch.float64)
    labels = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(-1)
    assert s03b.fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.03)


def test_rms_norm_matches_torch():
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    w = torch.rand(7, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(s05.rms_norm(x, w, 1e-6),
                          torch.nn.functional.rms_norm(x, (7,), w, 1e-6), atol=1e-6)
