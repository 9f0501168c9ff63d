"""AUROC and FPR@95%TPR against scikit-learn on random and tied scores."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from gptscope.evals.ood import auroc, energy_score, fpr_at_tpr, max_softmax_score


def _case(seed: int, tied: bool):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(300, generator=g) < 0.4).long()
    scores = torch.randn(300, generator=g, dtype=torch.float64) + labels
    if tied:
        scores = scores.round()
    return scores, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_auroc_matches_sklearn(seed, tied):
    scores, labels = _case(seed, tied)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_fpr_at_95_matches_the_roc_curve(seed, tied):
    scores, labels = _case(seed, tied)
    fpr, tpr, _ = roc_curve(labels, scores)
    expected = float(fpr[np.argmax(tpr >= 0.95)])  # the first threshold reaching 95% TPR
    assert fpr_at_tpr(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_perfect_and_reversed_detectors():
    labels = torch.tensor([0, 0, 1, 1])
    assert auroc(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(torch.ones(4), labels) == 0.5
    assert fpr_at_tpr(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 0.0


def test_scores_rank_confident_logits_higher():
    logits = torch.tensor([[8.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    assert max_softmax_score(logits).argmax() == 0
    assert energy_score(logits).argmax() == 0
    # energy keeps the scale softmax discards: doubling all logits raises it
    assert (energy_score(2 * logits) > energy_score(logits)).all()


@pytest.mark.parametrize("scores, labels, needle", [
    (torch.tensor([0.1, 0.2]), torch.tensor([1, 1]), "one positive"),
    (torch.tensor([0.1, 0.2]), torch.tensor([0, 2]), "0 or 1"),
    (torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]), "NaN"),
    (torch.tensor([0.1]), torch.tensor([0, 1]), "labels"),
])
def test_bad_input_is_named(scores, labels, needle):
    with pytest.raises(ValueError, match=needle):
        auroc(scores, labels)
