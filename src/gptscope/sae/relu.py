"""ReLU SAE trained with an L1 penalty (Anthropic, "Towards Monosemanticity", 2023).

``acts = ReLU((x - b_dec) @ W_enc + b_enc)``; loss ``= ||x - x_hat||^2 + l1_coefficient * L1``.

Two ways to stop the L1 penalty from being gamed by shrinking ``acts`` while growing
``W_dec`` (both are supported, pick with ``normalize_decoder``):

* ``normalize_decoder=True`` (default, the 2023 recipe): rows of ``W_dec`` are projected
  back to unit norm after every optimiser step, and the gradient component parallel to
  each row is removed before the step. The penalty is then the plain L1 of ``acts``.
* ``normalize_decoder=False`` (the April 2024 update): rows are free, and the penalty
  weights each feature's activation by its decoder-row norm, ``sum_i |a_i| * ||W_dec[i]||``.

Both penalties are the same number when rows have unit norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from gptscope.sae.base import SAE, SAEConfig, TrainStepOutput, register_sae, sae_loss


@dataclass
class ReLUSAEConfig(SAEConfig):
    """Config of :class:`ReLUSAE`; only the shared fields of :class:`SAEConfig`."""

    kind: ClassVar[str] = "relu"


@register_sae
class ReLUSAE(SAE):
    """Standard ReLU sparse autoencoder with an L1 sparsity penalty."""

    config_class: ClassVar[type[SAEConfig]] = ReLUSAEConfig
    coefficient_defaults: ClassVar[dict[str, float]] = {"l1_coefficient": 2.0}
    sparsity_coefficient: ClassVar[str | None] = "l1_coefficient"

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """``ReLU(pre)``, ``[..., d_sae] -> [..., d_sae]``."""
        return torch.relu(pre)

    def training_forward(
        self, x: torch.Tensor, *, l1_coefficient: float = 2.0
    ) -> TrainStepOutput:
        """Loss for one batch ``x`` ``[batch, d_in]``: MSE + ``l1_coefficient`` * L1.

        The L1 term is weighted by decoder-row norms when ``normalize_decoder`` is off.
        """
        acts = self.encode(x)
        x_hat = self.decode(acts)
        norms = None if self.cfg.normalize_decoder else self.decoder_norms()
        loss, mse, l1 = sae_loss(
            x, x_hat, acts, l1_coefficient, decoder_norms=norms, acts_nonnegative=True
        )
        fired = self._update_firing_stats(acts) if self.training else None
        return TrainStepOutput(loss, {"mse": mse, "l1": l1}, x_hat, acts, fired)
