"""Out-of-distribution detection: score each input, then ask how well the scores separate
in-distribution inputs from the others (AUROC, FPR at 95% TPR, as OpenOOD reports them).

Scores follow the convention "higher = more in-distribution": max-softmax probability
(Hendrycks & Gimpel 2017) and negative energy, logsumexp of the logits (Liu et al. 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptscope.evals.checks import check_binary


def max_softmax_score(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """logits [..., n_classes] -> [...]: the largest softmax probability."""
    return (logits.double() / temperature).softmax(-1).amax(-1)


def energy_score(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """logits [..., n_classes] -> [...]: T * logsumexp(logits / T), the negative free energy.
    Unlike max-softmax it keeps the logits' scale, which softmax throws away."""
    return temperature * torch.logsumexp(logits.double() / temperature, dim=-1)


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive (label 1) scores above a
    random negative, ties counting one half (Mann-Whitney U / (n_pos n_neg)), from ranks in
    O(n log n). scores [n]; labels [n] of 0/1."""
    s, lab = check_binary(scores, labels)
    order = s.argsort()
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    # Tied scores share the mean of their ranks.
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True,
                                                  return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    n_pos, n_neg = int(lab.sum()), int((~lab).sum())
    u = float(ranks[lab].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def fpr_at_tpr(scores: Tensor, labels: Tensor, tpr: float = 0.95) -> float:
    """The fraction of negatives accepted by the strictest threshold that accepts at least
    ``tpr`` of the positives (accept = score >= threshold). FPR@95: lower is better."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    s, lab = check_binary(scores, labels)
    pos = s[lab].sort(descending=True).values
    k = -(-round(tpr * len(pos) * 1e9) // 10**9)  # ceil, robust to 0.95 * 20 = 18.999...
    threshold = pos[max(k, 1) - 1]
    return float((s[~lab] >= threshold).double().mean())
