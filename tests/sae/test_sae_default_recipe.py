"""Acceptance: with no argument but the data, every SAE kind recovers a toy dictionary.

Each case draws unit-norm ground-truth features in ``d`` dimensions (as many as the SAE has
latents: ``expansion * d``), switches on about ``active`` of them per sample with
coefficients uniform on [0, 1] (frequencies decaying geometrically, so some features are
rarer than others), and trains ``SAE(d, expansion * d, kind=...)`` with ``train_sae(sae, x)``
and nothing else: the recipe (normalisation, geometric-median start, sparsity warm-up,
learning-rate decay, default coefficients and length) has to work on its own. The cases span
d 32-512, expansion 1-8x and 2-10 active features; raw scales differ by 100x between cases
(``scale``), which normalisation must absorb.
"""

from __future__ import annotations

import os

import pytest
import torch
from bounds import check, seed

from gptscope.sae import SAE, train_sae
from gptscope.sae.metrics import mmcs

# (d, expansion, active features per sample, raw scale of the data)
CASES = [(32, 8, 2, 0.05), (64, 4, 10, 5.0), (128, 2, 5, 1.0), (256, 1, 10, 20.0),
         (512, 1, 2, 0.2)]


def toy_dictionary(d: int, n_features: int, active: float, n: int, data_seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples ``[n, d]``, true features ``[n_features, d]``)."""
    g = torch.Generator().manual_seed(data_seed)
    features = torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=-1)
    decay = 0.996 ** torch.arange(n_features, dtype=torch.float32)
    probs = (decay / decay.sum() * active).clamp(max=1.0)
    present = torch.rand(n, n_features, generator=g) < probs
    return (torch.rand(n, n_features, generator=g) * present) @ features, features


# d512 trains for over a minute per kind on the plain kernels: `make test` runs it for relu
# (the fastest), the other two with GPTSCOPE_SAE_ACCEPTANCE=1 (all three reach MMCS 1.000:
# docs/sae.md).
LONG = {(512, "topk"), (512, "jumprelu")}
RUN_LONG = bool(os.environ.get("GPTSCOPE_SAE_ACCEPTANCE"))
GRID = [pytest.param(kind, *case, id=f"d{case[0]}x{case[1]}a{case[2]}-{kind}",
                     marks=[pytest.mark.skipif((case[0], kind) in LONG and not RUN_LONG,
                                               reason="opt-in: GPTSCOPE_SAE_ACCEPTANCE=1")])
        for case in CASES for kind in ("relu", "topk", "jumprelu")]


@pytest.mark.learned
@pytest.mark.parametrize(("kind", "d", "expansion", "active", "scale"), GRID)
def test_default_recipe_recovers_toy_dictionary(kind: str, d: int, expansion: int, active: int,
                                                scale: float) -> None:
    x, features = toy_dictionary(d, d * expansion, active, 20_000, seed(0))
    torch.manual_seed(seed(0))
    sae = SAE(d, d * expansion, kind=kind)
    result = train_sae(sae, x * scale, show_progress=False, seed=seed(0))
    assert result.steps == 1000  # the default length for 20k rows
    # measured over 150 runs: jumprelu 0.963 to 1; relu 0.983 to 1; topk 0.932 to 1
    check(f"sae_recipe.{kind}_mmcs", mmcs(sae.W_dec, features), ">=", 0.9)
    # aligned decoder rows alone could come from an SAE that has stopped firing: it must also
    # reconstruct (the fit is judged on raw activations, through the folded-back scale)
    # measured over 150 runs: jumprelu 0.804 to 1; relu 0.712 to 0.997; topk 0.91 to 1
    check(f"sae_recipe.{kind}_explained_variance", result.evaluation["explained_variance"],
          ">", 0.5)
