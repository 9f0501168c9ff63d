"""Calibration metrics against scikit-learn's calibration curve and Brier score, and a
hand-worked case with confidences on the bin edges."""

import math

import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from gptscope.evals.calibration import (
    brier_score,
    classifier_confidence,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    next_token_confidence,
    reliability_bins,
)


def _random_case(seed: int, n: int = 400, tied: bool = False):
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, generator=g, dtype=torch.float64)
    if tied:  # few distinct values, many on bin edges
        conf = (conf * 5).ceil() / 5
    correct = torch.rand(n, generator=g, dtype=torch.float64) < conf ** 2
    return conf, correct


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tied", [False, True])
def test_equal_width_bins_match_sklearn(seed, tied):
    conf, correct = _random_case(seed, tied=tied)
    bins = [b for b in reliability_bins(conf, correct, n_bins=10) if b.count]
    acc, mean_conf = calibration_curve(correct.numpy(), conf.numpy(), n_bins=10,
                                       strategy="uniform")
    # sklearn's bins are [lo, hi) and ours (lo, hi]: they agree when no value sits on an
    # inner edge, so compare the untied case exactly and the tied one through the ECE.
    if not tied:
        assert [b.accuracy for b in bins] == pytest.approx(acc.tolist(), abs=1e-12)
        assert [b.confidence for b in bins] == pytest.approx(mean_conf.tolist(), abs=1e-12)
    ece = expected_calibration_error(conf, correct)
    by_hand = 0.0
    for b in range(10):  # (b/10, (b+1)/10], 0 in the first bin
        m = ((conf > b / 10) | ((b == 0) & (conf == 0))) & (conf <= (b + 1) / 10)
        if m.any():
            by_hand += float(m.double().mean()) * abs(float(correct[m].double().mean())
                                                      - float(conf[m].mean()))
    assert ece == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_equal_mass_bins_match_sklearn_quantiles(seed):
    conf, correct = _random_case(seed, n=500)
    bins = reliability_bins(conf, correct, n_bins=5, scheme="mass")
    assert [b.count for b in bins] == [100] * 5
    acc, mean_conf = calibration_curve(correct.numpy(), conf.numpy(), n_bins=5,
                                       strategy="quantile")
    # sklearn puts each quantile cut into the upper bin, we into the lower; with distinct
    # values and 100 per bin the two differ by at most one example per bin.
    assert [b.accuracy for b in bins] == pytest.approx(acc.tolist(), abs=0.011)
    assert [b.confidence for b in bins] == pytest.approx(mean_conf.tolist(), abs=0.011)


def test_edges_belong_to_the_bin_below():
    conf = torch.tensor([0.5, 0.5, 1.0, 0.25, 0.0])
    correct = torch.tensor([True, False, True, False, False])
    bins = reliability_bins(conf, correct, n_bins=4)
    assert [b.count for b in bins] == [2, 2, 0, 1]  # 0 and 0.25 | 0.5, 0.5 | - | 1.0
    # gaps: |0 - 0.125| * 2/5 + |0.5 - 0.5| * 2/5 + |1 - 1| * 1/5
    assert expected_calibration_error(conf, correct, n_bins=4) == pytest.approx(0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_brier_matches_sklearn_for_two_classes(seed):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.rand(300, generator=g, dtype=torch.float64)
    labels = (torch.rand(300, generator=g) < p1).long()
    probs = torch.stack([1 - p1, p1], -1)
    # sklearn's binary Brier is the mean squared error of p(1); ours sums over both
    # classes, which doubles it.
    assert brier_score(probs, labels) == pytest.approx(
        2 * brier_score_loss(labels.numpy(), p1.numpy()), abs=1e-12)


def _overconfident(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, (n,), generator=g)
    logits = torch.randn(n, 4, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, 4)
    return logits * 4.0, labels  # scaled up: over-confident


def test_temperature_scaling_lowers_held_out_nll_and_keeps_accuracy():
    val_logits, val_labels = _overconfident(0, 2000)
    test_logits, test_labels = _overconfident(1, 2000)
    t = fit_temperature(val_logits, val_labels)
    # With unit Gaussian noise and the true class shifted by 1.5, the calibrated logits are
    # 1.5 x; the model's are 4 x, so the right temperature is 4 / 1.5 = 2.67.
    assert 2.4 < t < 2.9
    before = negative_log_likelihood(test_logits, test_labels)
    after = negative_log_likelihood(test_logits, test_labels, temperature=t)
    assert after < before - 0.1
    assert torch.equal((test_logits / t).argmax(-1), test_logits.argmax(-1))
    conf, right = classifier_confidence((test_logits / t).softmax(-1), test_labels)
    conf0, right0 = classifier_confidence(test_logits.softmax(-1), test_labels)
    assert torch.equal(right, right0)
    assert expected_calibration_error(conf, right) < expected_calibration_error(conf0, right0)


def test_fitted_temperature_is_the_minimum():
    logits, labels = _overconfident(2, 500)
    t = fit_temperature(logits, labels)
    best = negative_log_likelihood(logits, labels, t)
    for other in (t * 0.99, t * 1.01):
        assert negative_log_likelihood(logits, labels, other) > best


def test_next_token_confidence_reads_the_next_token():
    logits = torch.full((1, 3, 5), -10.0)
    logits[0, 0, 2] = logits[0, 1, 4] = 10.0
    conf, right = next_token_confidence(logits, torch.tensor([[0, 2, 3]]))
    assert right.tolist() == [True, False]
    assert conf.tolist() == pytest.approx([1.0, 1.0], abs=1e-7)


@pytest.mark.parametrize("call, needle", [
    (lambda: reliability_bins(torch.tensor([1.5]), torch.tensor([True])), "confidence"),
    (lambda: reliability_bins(torch.tensor([0.5]), torch.tensor([True, False])), "correct"),
    (lambda: reliability_bins(torch.tensor([0.5]), torch.tensor([True]), scheme="x"),
     "scheme"),
    (lambda: brier_score(torch.tensor([[2.0, -1.0]]), torch.tensor([0])), "softmax"),
    (lambda: brier_score(torch.tensor([[0.5, 0.5]]), torch.tensor([2])), "class ids"),
    (lambda: fit_temperature(torch.zeros(3), torch.tensor([0, 1, 0])), "logits"),
])
def test_bad_input_is_named(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_nan_bins_are_empty_ones():
    bins = reliability_bins(torch.tensor([0.95]), torch.tensor([True]), n_bins=2)
    assert bins[0].count == 0 and math.isnan(bins[0].accuracy)
