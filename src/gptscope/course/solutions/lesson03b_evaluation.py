"""Lesson 3b: evaluation beyond accuracy. Is the classifier's confidence honest?"""

from __future__ import annotations

import torch
from torch import Tensor


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 10) -> float:
    """Expected calibration error (ECE) of predicted class probabilities.

    probs [n, n_classes] (rows sum to 1), labels [n] true class ids. Each example's
    confidence is its highest probability and its prediction that class. Split (0, 1] into
    ``n_bins`` equal bins, (0, 1/n_bins], (1/n_bins, 2/n_bins], ...; in each non-empty bin B
    compare accuracy(B) with mean confidence(B). ECE = sum over bins of
    (|B| / n) * |accuracy(B) - confidence(B)|. Return a Python float.

    Hint: bin index = ceil(confidence * n_bins) - 1 (clamped to [0, n_bins - 1]).
    """
    conf, pred = probs.max(dim=-1)
    correct = (pred == labels).double()
    conf = conf.double()
    bins = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    ece = 0.0
    n = probs.shape[0]
    for b in range(n_bins):
        members = bins == b
        if members.any():
            gap = (correct[members].mean() - conf[members].mean()).abs()
            ece += members.sum().item() / n * gap.item()
    return ece


def reliability_table(probs: Tensor, labels: Tensor, n_bins: int = 10
                      ) -> list[tuple[float, float, int]]:
    """Given: the points of a reliability diagram, (mean confidence, accuracy, count) per
    non-empty bin. A calibrated model's points lie on the diagonal."""
    conf, pred = probs.max(dim=-1)
    bins = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    rows = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append((conf[m].mean().item(), (pred[m] == labels[m]).float().mean().item(),
                         int(m.sum())))
    return rows


def explore_distribution_shift(steps: int = 200) -> dict[str, tuple[float, float]]:
    """Given: train a small classifier on the course's glyph images, then measure accuracy
    and your ECE on the same kind of images and on dimmer ones (a distribution shift).
    Accuracy alone hides how over-confident the model becomes under the shift."""
    from gptscope.course.datasets import glyphs

    torch.manual_seed(0)
    x, y = glyphs(1000, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x) * 3.0, y)  # over-confident logits
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {}
    for name, brightness in [("clean", 1.0), ("dimmed (shifted)", 0.45)]:
        xt, yt = glyphs(500, seed=7, brightness=brightness)
        with torch.no_grad():
            probs = (model(xt) * 3.0).softmax(-1)
        acc = (probs.argmax(-1) == yt).float().mean().item()
        ece = expected_calibration_error(probs, yt)
        out[name] = (acc, ece)
        print(f"{name:>17}: accuracy {acc:.1%}, ECE {ece:.3f}")
    return out
