"""Acceptance: SAEs recover known features from synthetic data (Sharkey et al. 2022 setup).

512 ground-truth unit-norm features live in 256 dimensions. Each sample switches on about
5 of them (feature frequencies decay geometrically across features, so some are ~8x rarer
than others) with coefficients uniform on [0, 1]. A good SAE's decoder rows should line
up with the true features: mean max cosine similarity (MMCS) >= 0.95.
"""

from __future__ import annotations

import pytest
import torch
from bounds import check, seed

from gptscope.sae import SAE, train_sae
from gptscope.sae.metrics import evaluate_sae, mmcs

N_FEATURES, D, AVG_ACTIVE = 512, 256, 5.0


def make_toy_data(n: int, data_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (samples [n, 256], true features [512, 256])."""
    g = torch.Generator().manual_seed(data_seed)
    features = torch.nn.functional.normalize(torch.randn(N_FEATURES, D, generator=g), dim=-1)
    decay = 0.996 ** torch.arange(N_FEATURES, dtype=torch.float32)
    probs = decay / decay.sum() * AVG_ACTIVE  # ~0.023 for the commonest, ~0.003 the rarest
    present = torch.rand(n, N_FEATURES, generator=g) < probs
    coefficients = torch.rand(n, N_FEATURES, generator=g) * present
    return coefficients @ features, features


@pytest.fixture(scope="module")
def toy() -> tuple[torch.Tensor, torch.Tensor]:
    return make_toy_data(100_000, seed(0))


@pytest.mark.learned
def test_relu_sae_recovers_ground_truth_features(toy) -> None:
    x, features = toy
    assert 4.0 < float((x != 0).any(-1).float().mean() * AVG_ACTIVE) < 6.0
    torch.manual_seed(seed(0))
    sae = SAE(D, N_FEATURES, kind="relu")
    train_sae(sae, x, steps=600, batch_size=512, lr=3e-3, show_progress=False, seed=seed(0))
    # measured over 30 runs: 0.997 to 0.997
    check("sae_toy.relu_mmcs", mmcs(sae.W_dec, features), ">=", 0.95)
    report = evaluate_sae(sae, x[:4096])
    # measured over 30 runs: 0.95 to 0.952
    check("sae_toy.relu_explained_variance", report["explained_variance"], ">", 0.9)
    # measured over 30 runs: 6.12 to 6.35
    check("sae_toy.relu_l0", report["l0"], "<", 20)


@pytest.mark.learned
def test_topk_sae_recovers_ground_truth_features(toy) -> None:
    x, features = toy
    torch.manual_seed(seed(0))
    sae = SAE(D, N_FEATURES, kind="topk", k=5)
    train_sae(sae, x, steps=600, batch_size=512, lr=3e-3, show_progress=False, seed=seed(0))
    # measured over 30 runs: 0.999 to 0.999
    check("sae_toy.topk_mmcs", mmcs(sae.W_dec, features), ">=", 0.95)


@pytest.mark.learned
def test_jumprelu_sae_recovers_ground_truth_features(toy) -> None:
    x, features = toy
    torch.manual_seed(seed(0))
    sae = SAE(D, N_FEATURES, kind="jumprelu")  # the default threshold, kernel and L0 weight
    train_sae(sae, x, steps=600, batch_size=512, lr=3e-3, show_progress=False, seed=seed(0))
    # measured over 30 runs: 0.999 to 0.999
    check("sae_toy.jumprelu_mmcs", mmcs(sae.W_dec, features), ">=", 0.95)
    # measured over 30 runs: 5.18 to 5.35
    check("sae_toy.jumprelu_l0", evaluate_sae(sae, x[:4096])["l0"], "<", 10)
