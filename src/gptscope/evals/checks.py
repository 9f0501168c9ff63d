"""Argument checks shared by the evaluation metrics: each names the argument and the fix."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_probs(probs: Any) -> Tensor:
    """probs [n, n_classes], rows summing to 1 -> float64 on the CPU."""
    if not (isinstance(probs, Tensor) and probs.dim() == 2 and probs.shape[0] > 0
            and probs.is_floating_point()):
        got = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"probs must be a non-empty float tensor [n, n_classes], got {got}")
    probs = probs.detach().double().cpu()
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(-1), torch.ones(len(probs),
                                                     dtype=torch.float64), atol=1e-5):
        raise ValueError("probs rows must be probabilities summing to 1; pass "
                         "logits.softmax(-1), not logits")
    return probs


def check_labels(labels: Any, scores: Tensor) -> Tensor:
    """labels [n] of class ids in [0, n_classes) matching scores [n, n_classes]."""
    if not (isinstance(labels, Tensor) and labels.shape == scores.shape[:1]
            and not labels.is_floating_point()):
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor [{scores.shape[0]}] of class "
                         f"ids, got {got}")
    labels = labels.cpu().long()
    if bool(((labels < 0) | (labels >= scores.shape[1])).any()):
        raise ValueError(f"labels must be class ids in [0, {scores.shape[1]})")
    return labels


def check_binary(scores: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """scores [n] (higher = more positive) and binary labels [n] -> float64, bool."""
    if not (isinstance(scores, Tensor) and scores.dim() == 1):
        raise ValueError("scores must be a 1-d tensor [n] (higher = more likely positive)")
    if not (isinstance(labels, Tensor) and labels.shape == scores.shape):
        raise ValueError(f"labels must be a tensor [{len(scores)}] of 0/1 (1 = positive)")
    lab = labels.detach().cpu()
    if bool(((lab != 0) & (lab != 1)).any()):
        raise ValueError("labels must be 0 or 1 (1 = positive)")
    s = scores.detach().double().cpu()
    if bool(s.isnan().any()):
        raise ValueError("scores hold NaN; score every example with a number")
    lab = lab.bool()
    if bool(lab.all()) or not bool(lab.any()):
        raise ValueError("labels need at least one positive (1) and one negative (0)")
    return s, lab
