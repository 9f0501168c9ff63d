"""Top-k SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

Only the ``k`` largest pre-activations of each input survive (then a ReLU, so at most ``k``
features are non-zero and all activations are non-negative). Sparsity is set directly by
``k``, so there is no L1 penalty to tune.

AuxK (optional, on by default): features that have not fired for ``dead_steps_threshold``
training steps are "dead". The auxiliary loss asks the ``aux_k`` largest dead
pre-activations to reconstruct what the main SAE missed (the residual ``x - x_hat``), which
gives dead features a gradient and revives many of them. Gao et al. use ``k_aux = 512``
(about ``d_in / 2``) and a coefficient of ``1/32``; those are the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from gptscope.sae.base import SAE, SAEConfig, TrainStepOutput, register_sae


@dataclass
class TopKSAEConfig(SAEConfig):
    """Config of :class:`TopKSAE`.

    Attributes:
        k: number of features kept per input.
        aux_k: number of dead features used by the AuxK loss; ``None`` means ``d_in // 2``,
            ``0`` turns AuxK off.
        aux_k_coefficient: weight of the AuxK loss.
        dead_steps_threshold: training steps without firing after which a feature is dead.
    """

    k: int = 32
    aux_k: int | None = None
    aux_k_coefficient: float = 1 / 32
    dead_steps_threshold: int = 1000

    kind: ClassVar[str] = "topk"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 0 < self.k <= self.d_sae:
            raise ValueError(
                f"k must be an int in [1, d_sae={self.d_sae}], got {self.k!r}; "
                "pick how many features may be active per input"
            )
        if self.aux_k is not None and (not isinstance(self.aux_k, int) or self.aux_k < 0):
            raise ValueError(f"aux_k must be None or an int >= 0, got {self.aux_k!r}")
        if self.dead_steps_threshold < 1:
            raise ValueError(
                f"dead_steps_threshold must be >= 1, got {self.dead_steps_threshold!r}"
            )


@register_sae
class TopKSAE(SAE):
    """SAE whose activation keeps the top ``k`` pre-activations per input."""

    config_class: ClassVar[type[SAEConfig]] = TopKSAEConfig
    coefficient_defaults: ClassVar[dict[str, float]] = {}
    cfg: TopKSAEConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Keep the ``k`` largest entries of ``pre`` ``[..., d_sae]`` (ReLU'd), zero the rest."""
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))

    @property
    def effective_aux_k(self) -> int:
        """Number of dead features the AuxK loss may use."""
        aux_k = self.cfg.d_in // 2 if self.cfg.aux_k is None else self.cfg.aux_k
        return min(aux_k, self.cfg.d_sae)

    def training_forward(self, x: torch.Tensor) -> TrainStepOutput:
        """Loss for ``x`` ``[batch, d_in]``: MSE (+ ``aux_k_coefficient`` * AuxK loss)."""
        self._check_input(x)
        pre = self.encode_pre(x)
        acts = self.activation(pre)
        x_hat = self.decode(acts)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        losses = {"mse": mse}
        loss = mse
        fired = self._update_firing_stats(acts) if self.training else None
        dead = self.steps_since_fired >= self.cfg.dead_steps_threshold
        n_dead = int(dead.sum())
        if self.training and self.effective_aux_k > 0 and n_dead > 0:
            aux = self._aux_loss(x, x_hat, pre, dead, min(self.effective_aux_k, n_dead))
            losses["aux"] = aux
            loss = loss + self.cfg.aux_k_coefficient * aux
        return TrainStepOutput(loss, losses, x_hat, acts, fired)

    def _aux_loss(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        pre: torch.Tensor,
        dead: torch.Tensor,
        aux_k: int,
    ) -> torch.Tensor:
        # The residual is a fixed target: the aux loss should only move the dead features.
        residual = (x - x_hat).detach()
        dead_pre = pre.masked_fill(~dead, float("-inf"))
        values, indices = dead_pre.topk(aux_k, dim=-1, sorted=False)
        aux_acts = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
        residual_hat = aux_acts @ self.W_dec  # no b_dec: the residual is already centred
        # Normalise by the residual's variance so the coefficient does not depend on scale.
        scale = (residual - residual.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-8)
        return (residual_hat - residual).pow(2).sum(dim=-1).mean() / scale
