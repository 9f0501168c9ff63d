"""Lesson 3b: evaluation beyond accuracy. Is the classifier's confidence honest?"""

from __future__ import annotations

import math

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


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of ``scores`` [n] for binary ``labels`` [n] (1 = positive).

    The probability that a random positive scores higher than a random negative, a tie
    counting one half (the Mann-Whitney statistic): 1 is a perfect detector, 0.5 chance,
    whatever threshold one would pick. Raise ValueError if a class is absent. Return a
    Python float.
    """
    labels = labels.bool()
    pos, neg = scores[labels].double(), scores[~labels].double()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auroc needs at least one positive and one negative label")
    higher = (pos[:, None] > neg[None, :]).double()
    ties = (pos[:, None] == neg[None, :]).double()
    return (higher + 0.5 * ties).mean().item()


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 that minimises the mean
    cross-entropy of softmax(logits / T) on held-out ``logits`` [n, n_classes] and
    ``labels`` [n]. Accurate to 1e-4 relative. T > 1 softens an over-confident model; the
    predictions (argmax) never change. Return a Python float.

    Hint: the loss is smooth in log T; a bracketing search (golden section or bisection on
    the derivative) over log T in [-5, 5] converges quickly.
    """
    logits = logits.double()

    def loss(log_t: float) -> float:
        return torch.nn.functional.cross_entropy(logits / math.exp(log_t), labels).item()

    lo, hi = -5.0, 5.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(100):  # golden section: the bracket shrinks by 0.618 per step
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


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
