"""Lesson 10: linear probes. Is a concept linearly readable from the activations?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 steps: int = 200, seed: int = 0) -> float:
    """Train a logistic-regression probe on (train_x, train_y); return its *test* accuracy.

    train_x [n, d] activations, train_y [n] class ids; test_x, test_y the held-out set.
    A linear map W [d, n_classes], b [n_classes] trained with cross-entropy (Adam, a small
    weight decay, full batch) is enough. Return accuracy on the test set as a float.

    Why held out: with more dimensions than examples a probe can fit even random labels,
    so training accuracy says little. Compare with a control (shuffled labels).
    """
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    W = torch.zeros(xs.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(xs @ W + b, train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((xt @ W + b).argmax(-1) == test_y).float().mean().item()
