"""Toy models of superposition (Elhage et al. 2022, "Toy Models of Superposition").

``n_features`` sparse features are squeezed through ``n_hidden < n_features`` dimensions
and read back out::

    h     = W x                    # W: [n_hidden, n_features]
    x_hat = ReLU(W^T h + b)        # b: [n_features]

and trained to minimise the importance-weighted error ``sum_i I_i (x_i - x_hat_i)^2``.
Each feature is 0 with probability ``1 - p`` and uniform on ``[0, 1]`` with probability
``p`` ("feature probability"; the paper's sparsity is ``S = 1 - p``). When features are
dense the model keeps only the ``n_hidden`` most important ones, orthogonally; as they get
sparser it packs more features than dimensions into the space ("superposition"), e.g. 5
features on a pentagon in 2-D.

Many small models ("instances", e.g. one per sparsity level) are trained at once: every
tensor has a leading instance dimension and instances never interact.

Measures: :func:`n_represented_features` (columns of ``W`` with norm above a threshold),
:func:`dimensions_per_feature` (``n_hidden / ||W||_F^2``) and
:func:`feature_dimensionality` (the per-feature share of a dimension). Pictures of them are in
:mod:`gptscope.viz.superposition`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ToyModelConfig",
    "ToySuperpositionModel",
    "dimensions_per_feature",
    "feature_dimensionality",
    "n_represented_features",
    "train_toy_model",
]

Number = float | int


@dataclass
class ToyModelConfig:
    """Shape and data distribution of a batch of toy models.

    Attributes:
        n_features: input features per instance.
        n_hidden: hidden dimensions per instance (``< n_features`` for superposition).
        n_instances: independent models trained side by side.
        feature_probability: chance each feature is non-zero; a number (all instances), a
            sequence ``[n_instances]`` (one per instance) or ``[n_instances, n_features]``.
        importance: a number ``r`` gives decaying importances ``r ** i`` for feature ``i``;
            or an explicit ``[n_features]`` / ``[n_instances, n_features]``.
    """

    n_features: int = 5
    n_hidden: int = 2
    n_instances: int = 8
    feature_probability: Number | Sequence[float] | torch.Tensor = 0.05
    importance: Number | Sequence[float] | torch.Tensor = 0.9

    def __post_init__(self) -> None:
        for name in ("n_features", "n_hidden", "n_instances"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def probability_tensor(self) -> torch.Tensor:
        """Feature probabilities as ``[n_instances, n_features]``."""
        p = self._broadcast(self.feature_probability, "feature_probability", per_instance=True)
        if (p < 0).any() or (p > 1).any():
            raise ValueError("feature_probability must lie in [0, 1]")
        return p

    def importance_tensor(self) -> torch.Tensor:
        """Importances as ``[n_instances, n_features]``."""
        imp = self.importance
        if isinstance(imp, (int, float)) and not isinstance(imp, bool):
            imp = float(imp) ** torch.arange(self.n_features, dtype=torch.float32)
        imp = self._broadcast(imp, "importance", per_instance=False)
        if (imp < 0).any():
            raise ValueError("importance must be >= 0")
        return imp

    def _broadcast(self, value: object, name: str, *, per_instance: bool) -> torch.Tensor:
        n_i, n_f = self.n_instances, self.n_features
        t = torch.as_tensor(value, dtype=torch.float32)
        if t.ndim == 0:
            return t.expand(n_i, n_f).clone()
        if t.ndim == 1 and per_instance and len(t) == n_i:
            return t[:, None].expand(n_i, n_f).clone()
        if t.ndim == 1 and not per_instance and len(t) == n_f:
            return t[None, :].expand(n_i, n_f).clone()
        if t.shape == (n_i, n_f):
            return t.clone()
        one_d = f"[n_instances={n_i}]" if per_instance else f"[n_features={n_f}]"
        raise ValueError(
            f"{name} must be a number, {one_d} or [n_instances={n_i}, n_features={n_f}], "
            f"got shape {tuple(t.shape)}"
        )


class ToySuperpositionModel(nn.Module):
    """``n_instances`` independent models ``x -> ReLU(W^T W x + b)``.

    Parameters: ``W`` ``[n_instances, n_hidden, n_features]`` and ``b_final``
    ``[n_instances, n_features]``. Buffers: ``feature_probability`` and ``importance``, both
    ``[n_instances, n_features]``.
    """

    def __init__(self, cfg: ToyModelConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        n_i, m, n = cfg.n_instances, cfg.n_hidden, cfg.n_features
        w = torch.empty(n_i, m, n)
        # Xavier-normal per instance, as in the paper's code: keeps initial outputs O(1).
        std = math.sqrt(2.0 / (m + n))
        w.normal_(0.0, std, generator=generator)
        self.W = nn.Parameter(w)
        self.b_final = nn.Parameter(torch.zeros(n_i, n))
        self.register_buffer("feature_probability", cfg.probability_tensor())
        self.register_buffer("importance", cfg.importance_tensor())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, n_instances, n_features] -> [batch, n_instances, n_features]``."""
        expected = (self.cfg.n_instances, self.cfg.n_features)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"toy model input must be [batch, n_instances={expected[0]}, "
                f"n_features={expected[1]}], got {tuple(x.shape)}; use model.generate_batch()"
            )
        hidden = torch.einsum("imf,bif->bim", self.W, x)
        out = torch.einsum("imf,bim->bif", self.W, hidden)
        return torch.relu(out + self.b_final)

    def generate_batch(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Random inputs ``[batch, n_instances, n_features]``: each feature is uniform on
        [0, 1] with its instance's probability, else 0."""
        shape = (batch_size, self.cfg.n_instances, self.cfg.n_features)
        device = self.W.device
        values = torch.rand(shape, generator=generator).to(device)
        present = torch.rand(shape, generator=generator).to(device) < self.feature_probability
        return values * present

    def loss(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Importance-weighted squared error, averaged over the batch and summed over
        instances (so each instance's gradient is independent of the others)."""
        return (self.importance * (x - out).pow(2)).sum(dim=-1).mean(dim=0).sum()


def train_toy_model(
    model: ToySuperpositionModel,
    *,
    steps: int = 5000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int | None = None,
    show_progress: bool = False,
    log_every: int = 100,
) -> list[list[float]]:
    """Train every instance with Adam; returns per-instance losses logged every
    ``log_every`` steps (``[n_logs][n_instances]``)."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[list[float]] = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = model.generate_batch(batch_size, generator)
        out = model(x)
        per_instance = (model.importance * (x - out).pow(2)).sum(dim=-1).mean(dim=0)
        optimizer.zero_grad(set_to_none=True)
        per_instance.sum().backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            history.append(per_instance.detach().cpu().tolist())
            if show_progress:
                rate = step / max(time.perf_counter() - start, 1e-9)
                mean = sum(history[-1]) / len(history[-1])
                print(f"\rtoy model step {step}/{steps} loss {mean:.4g} [{rate:.0f} it/s]",
                      end="", flush=True)
    if show_progress:
        print()
    return history


def as_instances(W: torch.Tensor) -> torch.Tensor:
    W = W.detach().float().cpu()
    if W.ndim == 2:
        W = W[None]
    if W.ndim != 3:
        raise ValueError(
            f"W must be [n_hidden, n_features] or [n_instances, n_hidden, n_features], got "
            f"{tuple(W.shape)}; pass model.W"
        )
    return W


def n_represented_features(W: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Features whose column of ``W`` has norm above ``threshold``; ``W`` is ``[m, n]`` or
    ``[instances, m, n]``. Returns a LongTensor ``[instances]``."""
    return (as_instances(W).norm(dim=1) > threshold).sum(dim=-1)


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """``n_hidden / ||W||_F^2`` per instance, ``[instances]``: how many hidden dimensions
    each represented feature gets on average (1 = no superposition, 2/5 = a pentagon)."""
    W = as_instances(W)
    return W.shape[1] / W.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """Per-feature dimensionality ``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2``,
    ``[instances, n_features]``: 1 for a feature with a dimension of its own, 1/2 for an
    antipodal pair, 0 for an unrepresented feature."""
    W = as_instances(W)
    norms = W.norm(dim=1, keepdim=True)  # [i, 1, n]
    unit = W / norms.clamp_min(1e-8)
    overlaps = torch.einsum("imf,img->ifg", unit, W).pow(2).sum(dim=-1)  # [i, n]
    dims = norms.squeeze(1).pow(2) / overlaps.clamp_min(1e-12)
    return torch.where(norms.squeeze(1) > 1e-6, dims, torch.zeros_like(dims))
