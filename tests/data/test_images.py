"""The bundled digits' fixed split, which the scaling lab's CNNs and the ViT both read."""

from __future__ import annotations

import torch

from gptscope.data.images import digits_split


def test_the_digits_split_is_fixed_and_disjoint():
    x_tr, y_tr, x_te, y_te, source = digits_split()
    assert x_tr.shape[1:] == (1, 8, 8) and len(x_te) == round(0.2 * (len(x_tr) + len(x_te)))
    again = digits_split.__wrapped__()  # recomputed, not the cached tensors
    assert torch.equal(again[2], x_te) and torch.equal(again[3], y_te)
    # no held-out image is a training image
    train = {tuple(row.tolist()) for row in x_tr.flatten(1)}
    assert not any(tuple(row.tolist()) in train for row in x_te.flatten(1))
    assert 0 <= float(x_tr.min()) and float(x_tr.max()) <= 1
    assert set(y_te.tolist()) <= set(range(10))
    assert source in ("scikit-learn digits", "gptscope glyphs (scikit-learn not installed)")
