"""Calibration: does a model's confidence match how often it is right?

Every function takes plain tensors, so the same code scores a classifier's class
probabilities and a language model's next-token distributions (`next_token_confidence`).
Bins are half-open on the left, (lo, hi], as in Guo et al. 2017 ("On Calibration of Modern
Neural Networks"), whose temperature scaling `fit_temperature` implements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.evals.checks import check_labels, check_probs


@dataclass(frozen=True)
class Bin:
    """One bin of a reliability diagram: its confidence range (lo, hi], the examples in it,
    their mean confidence and their accuracy (NaN for an empty bin)."""

    lo: float
    hi: float
    count: int
    confidence: float
    accuracy: float


def _check_pair(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    if not (isinstance(confidence, Tensor) and confidence.dim() == 1 and len(confidence)):
        raise ValueError("confidence must be a non-empty 1-d tensor [n] of values in [0, 1]")
    if not (isinstance(correct, Tensor) and correct.shape == confidence.shape):
        raise ValueError(f"correct must be a tensor [n] matching confidence "
                         f"{tuple(confidence.shape)}, got "
                         f"{tuple(correct.shape) if isinstance(correct, Tensor) else correct!r}")
    conf = confidence.detach().double().cpu()
    if bool(((conf < 0) | (conf > 1) | conf.isnan()).any()):
        raise ValueError("confidence must lie in [0, 1]; pass probabilities, not logits")
    return conf, correct.detach().cpu().double()


def _edges(conf: Tensor, n_bins: int, scheme: str) -> Tensor:
    """Bin edges [n_bins + 1] from 0 to 1: evenly spaced ("width"), or at the quantiles of
    ``conf`` so that every bin holds about the same number of examples ("mass")."""
    if scheme == "width":
        return torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    if scheme == "mass":
        ordered = conf.sort().values
        cuts = [ordered[min(len(ordered) - 1, math.ceil(k * len(ordered) / n_bins) - 1)]
                for k in range(1, n_bins)]
        return torch.tensor([0.0, *[float(c) for c in cuts], 1.0], dtype=torch.float64)
    raise ValueError(f"scheme must be 'width' (equal-width bins) or 'mass' (equal-mass "
                     f"bins), got {scheme!r}")


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int = 10,
                     scheme: str = "width") -> list[Bin]:
    """The points of a reliability diagram. confidence [n] in [0, 1]; correct [n] (bool or
    0/1). scheme "width": bins (0, 1/n_bins], ...; "mass": edges at the quantiles of the
    confidences, so each bin holds ~n / n_bins examples (ties can merge bins: empty ones are
    kept with count 0). A confidence of exactly 0 goes to the first bin."""
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    conf, right = _check_pair(confidence, correct)
    edges = _edges(conf, n_bins, scheme)
    # bucketize(right=False) puts x in bin i when edges[i-1] < x <= edges[i]: (lo, hi].
    index = (torch.bucketize(conf, edges[1:-1], right=False)).clamp(0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        mean_conf = float(conf[members].mean()) if count else math.nan
        acc = float(right[members].mean()) if count else math.nan
        bins.append(Bin(float(edges[b]), float(edges[b + 1]), count, mean_conf, acc))
    return bins


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 10,
                               scheme: str = "width") -> float:
    """ECE = sum over bins of (|B| / n) |accuracy(B) - confidence(B)|, with equal-width or
    equal-mass bins (see `reliability_bins`). 0 is perfectly calibrated."""
    bins = reliability_bins(confidence, correct, n_bins, scheme)
    n = sum(b.count for b in bins)
    return sum(b.count / n * abs(b.accuracy - b.confidence) for b in bins if b.count)


def classifier_confidence(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """probs [n, n_classes], labels [n] -> (confidence [n]: the top probability, correct
    [n]: whether the top class is the label), the inputs of the functions above."""
    probs = check_probs(probs)
    labels = check_labels(labels, probs)
    conf, pred = probs.max(-1)
    return conf, pred == labels


def brier_score(probs: Tensor, labels: Tensor) -> float:
    """Mean over examples of sum_k (p_k - [k == label])^2 (Brier 1950): 0 is perfect, and
    unlike ECE it also rewards being right, so a calibrated but useless model scores badly.
    probs [n, n_classes]; labels [n]."""
    probs = check_probs(probs).double()
    labels = check_labels(labels, probs)
    onehot = F.one_hot(labels, probs.shape[1]).double()
    return float(((probs - onehot) ** 2).sum(-1).mean())


def fit_temperature(logits: Tensor, labels: Tensor, bounds: tuple[float, float] = (1e-2, 1e2)
                    ) -> float:
    """The temperature T minimising the mean cross-entropy of softmax(logits / T) on
    held-out ``logits`` [n, n_classes] and ``labels`` [n] (Guo et al. 2017). Fit it on
    validation data, then divide test logits by it: NLL drops, the argmax (so accuracy)
    cannot change. Golden-section search over log T, which the loss is smooth in."""
    if not (isinstance(logits, Tensor) and logits.dim() == 2 and logits.is_floating_point()):
        raise ValueError("logits must be a float tensor [n, n_classes]")
    logits = logits.detach().double().cpu()
    labels = check_labels(labels, logits)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    golden = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    for _ in range(80):  # the bracket shrinks by 0.618 per step: 80 steps reach 1e-15
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def negative_log_likelihood(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy (nats) of softmax(logits / temperature) at ``labels``."""
    logits = logits.detach().double().cpu()
    return float(F.cross_entropy(logits / temperature, check_labels(labels, logits)))


def next_token_confidence(logits: Tensor, tokens: Tensor, mask: Tensor | None = None
                          ) -> tuple[Tensor, Tensor]:
    """Calibration of next-token prediction: logits [batch, pos, d_vocab] for ``tokens``
    [batch, pos] -> (confidence, correct), one entry per scored position (position t
    predicts token t + 1; ``mask`` [batch, pos] as in `gptscope.data.tasks`, default every
    position but the last)."""
    if mask is None:
        mask = torch.ones_like(tokens, dtype=torch.bool)
        mask[:, -1] = False
    probs = logits[:, :-1].double().softmax(-1)[mask[:, :-1]]
    conf, pred = probs.max(-1)
    return conf, pred == tokens[:, 1:][mask[:, :-1]]
