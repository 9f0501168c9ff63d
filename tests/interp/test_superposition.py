"""Toy models of superposition: dense features get one dimension each, sparse ones share."""

from __future__ import annotations

import pytest
import torch
from bounds import check, seed

from gptscope.interp.superposition import (
    ToyModelConfig,
    ToySuperpositionModel,
    dimensions_per_feature,
    feature_dimensionality,
    n_represented_features,
    train_toy_model,
)
from gptscope.viz.superposition import plot_dimensions_per_feature, plot_feature_geometry

PROBS = [1.0, 1.0, 1.0, 0.05, 0.05, 0.05, 0.02, 0.02]


@pytest.fixture(scope="module")
def trained() -> ToySuperpositionModel:
    cfg = ToyModelConfig(n_features=5, n_hidden=2, n_instances=len(PROBS),
                         feature_probability=PROBS, importance=0.9)
    model = ToySuperpositionModel(cfg, generator=torch.Generator().manual_seed(seed(0)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation cost
    try:
        train_toy_model(model, steps=3000, batch_size=256, lr=5e-3, seed=seed(0))
    finally:
        torch.set_num_threads(threads)
    return model


@pytest.mark.learned
def test_dense_features_are_not_superposed(trained: ToySuperpositionModel) -> None:
    counts = n_represented_features(trained.W, threshold=0.5)
    # measured over 30 runs: 2 to 2
    check("superposition.dense_most_features", counts[:3].max(), "<=", 2)
    # measured over 30 runs: 2 to 2
    check("superposition.dense_fewest_features", counts[:3].min(), ">=", 2)
    # the two kept features get a whole dimension each: unit norm, orthogonal
    # measured over 30 runs: 0.00313 to 0.00665
    check("superposition.dense_dimensions_error",
          (dimensions_per_feature(trained.W[:3]) - 1).abs().max(), "<", 0.05)


@pytest.mark.learned
def test_sparse_features_are_superposed(trained: ToySuperpositionModel) -> None:
    counts = n_represented_features(trained.W, threshold=0.5)
    # measured over 30 runs: 5 to 5
    check("superposition.sparse_fewest_features", counts[3:].min(), ">=", 4)
    # measured over 30 runs: 0.313 to 0.319
    check("superposition.sparse_most_dimensions_per_feature",
          dimensions_per_feature(trained.W[3:]).max(), "<", 0.6)


def test_feature_dimensionality_hand_values() -> None:
    # 2-D: features 0 and 1 antipodal, feature 2 orthogonal, feature 3 absent.
    W = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(feature_dimensionality(W),
                               torch.tensor([[0.5, 0.5, 1.0, 0.0]]))
    assert n_represented_features(W).tolist() == [3]
    torch.testing.assert_close(dimensions_per_feature(W), torch.tensor([2 / 3]))


def test_plots_are_self_contained_svg(trained: ToySuperpositionModel) -> None:
    geometry = plot_feature_geometry(trained.W, labels=[f"p={p}" for p in PROBS])
    assert geometry.count("<svg") == len(PROBS) and "<script" not in geometry
    assert "http" not in geometry.replace("http://www.w3.org/2000/svg", "")
    dims = plot_dimensions_per_feature(trained.W, PROBS)
    assert dims.count("<svg") == 1 and "2/5" in dims
    with pytest.raises(ValueError, match="n_hidden=3"):
        plot_feature_geometry(torch.randn(3, 5))


def test_bad_config_and_input() -> None:
    with pytest.raises(ValueError, match=r"feature_probability must be a number"):
        ToyModelConfig(n_instances=3, feature_probability=[0.1, 0.2]).probability_tensor()
    model = ToySuperpositionModel(ToyModelConfig(n_instances=2))
    with pytest.raises(ValueError, match="n_instances=2"):
        model(torch.rand(4, 3, 5))
