"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction
Fidelity with JumpReLU Sparse Autoencoders").

Each feature ``i`` has a learned threshold ``theta_i > 0``; it outputs its pre-activation
``z_i`` when ``z_i > theta_i`` and 0 otherwise::

    JumpReLU(z; theta) = z * H(z - theta)          # H = Heaviside step

Sparsity is penalised directly with the L0 norm, ``sum_i H(z_i - theta_i)``. Both the jump
and the L0 term have zero gradient almost everywhere with respect to ``theta``, so the
paper trains ``theta`` with straight-through estimators: in the backward pass the Dirac
delta is replaced by a rectangle kernel of width ``bandwidth`` (``epsilon``)::

    d JumpReLU / d theta  := -(theta / epsilon) * K((z - theta) / epsilon)
    d H(z - theta) / d theta := -(1 / epsilon) * K((z - theta) / epsilon)
    K(u) = 1 if |u| < 1/2 else 0

while ``d JumpReLU / d z = H(z - theta)`` and the L0 term sends no gradient to ``z``.
The paper's defaults are ``bandwidth = 0.001`` and an initial threshold of ``0.001``
(for activations normalised to have mean squared norm ``d_in``).

``theta`` is stored as ``log_threshold`` so it stays positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from gptscope.sae.base import BaseSAE, SAEConfig, TrainStepOutput, register_sae


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLUFn(torch.autograd.Function):
    """``z * H(z - theta)`` with the rectangle-kernel pseudo-derivative for ``theta``.

    Written for few passes over the big ``[batch, d_sae]`` tensors: the firing mask is kept
    from the forward pass, and the per-feature factor ``theta / eps`` is applied after the
    sum over the batch.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        fired = z > theta
        ctx.save_for_backward(z, theta, fired)
        ctx.bandwidth = bandwidth
        return z * fired  # (torch.where with a scalar is several times slower on CPU)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        z, theta, fired = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad_out * fired
        window = (z - theta).abs_() < 0.5 * eps  # the rectangle kernel K((z - theta) / eps)
        summed = (grad_out * window).reshape(-1, theta.shape[-1]).sum(dim=0)
        return grad_z, -(theta / eps) * summed, None


class _StepFn(torch.autograd.Function):
    """``H(z - theta)`` with the rectangle-kernel pseudo-derivative for ``theta`` only."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(1.0 / eps) * _rectangle((z - theta) / eps) * grad_out
        grad_theta = grad_theta.reshape(-1, theta.shape[-1]).sum(dim=0)
        # The L0 penalty must not push z around: only theta learns from it.
        # No gradient to z (None, not a zeros tensor: nothing to allocate or add).
        return None, grad_theta, None


class _MeanL0Fn(torch.autograd.Function):
    """Mean over the batch of ``sum_i H(z_i - theta_i)``: `step` summed, without ever making
    the ``[batch, d_sae]`` float tensor or its gradient."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        rows = z.reshape(-1, z.shape[-1])
        return (rows > theta).sum(dtype=z.dtype) / rows.shape[0]

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        rows = z.reshape(-1, z.shape[-1])
        window = ((rows - theta).abs() < 0.5 * eps).sum(dim=0, dtype=z.dtype)
        return None, -(grad_out / (eps * rows.shape[0])) * window, None


def mean_l0(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """``step(z, threshold).sum(-1).mean()`` in one pass, with the same gradient."""
    return _MeanL0Fn.apply(z, threshold, bandwidth)


def jumprelu(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """JumpReLU ``[..., d_sae]`` with a straight-through gradient to ``threshold`` ``[d_sae]``."""
    return _JumpReLUFn.apply(z, threshold, bandwidth)


def step(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """Heaviside ``H(z - threshold)`` ``[..., d_sae]`` with a straight-through gradient to
    ``threshold``; summed over features it is the (differentiable-in-theta) L0 norm."""
    return _StepFn.apply(z, threshold, bandwidth)


@dataclass
class JumpReLUSAEConfig(SAEConfig):
    """Config of :class:`JumpReLUSAE`.

    Attributes:
        threshold_init: initial threshold of every feature (paper: 0.001).
        bandwidth: width ``epsilon`` of the rectangle kernel in the pseudo-derivative
            (paper: 0.001). Should be small relative to typical pre-activations.
    """

    threshold_init: float = 0.001
    bandwidth: float = 0.001

    kind: ClassVar[str] = "jumprelu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.threshold_init > 0:
            raise ValueError(f"threshold_init must be > 0, got {self.threshold_init!r}")
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth!r}")


@register_sae
class JumpReLUSAE(BaseSAE):
    """SAE with a learned per-feature threshold, trained with an L0 penalty."""

    config_class: ClassVar[type[SAEConfig]] = JumpReLUSAEConfig
    coefficient_defaults: ClassVar[dict[str, float]] = {"l0_coefficient": 1e-3}
    cfg: JumpReLUSAEConfig

    def _init_extra_parameters(self) -> None:
        self.log_threshold = nn.Parameter(torch.empty(self.cfg.d_sae))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Base initialisation plus every threshold at ``threshold_init``."""
        super().reset_parameters(generator)
        with torch.no_grad():
            self.log_threshold.fill_(math.log(self.cfg.threshold_init))

    @property
    def threshold(self) -> torch.Tensor:
        """Per-feature thresholds ``[d_sae]`` (always positive)."""
        return self.log_threshold.exp()

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """``JumpReLU(pre; threshold)``, ``[..., d_sae] -> [..., d_sae]``."""
        return jumprelu(pre, self.threshold, self.cfg.bandwidth)

    def training_forward(
        self, x: torch.Tensor, *, l0_coefficient: float = 1e-3
    ) -> TrainStepOutput:
        """Loss for ``x`` ``[batch, d_in]``: MSE + ``l0_coefficient`` * L0.

        When ``normalize_decoder`` is off, each feature's L0 contribution is weighted by its
        decoder-row norm (as in the paper), so shrinking rows cannot hide activity.
        """
        self._check_input(x)
        pre = self.encode_pre(x)
        theta = self.threshold
        acts = jumprelu(pre, theta, self.cfg.bandwidth)
        x_hat = self.decode(acts)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        if self.cfg.normalize_decoder:
            l0 = mean_l0(pre, theta, self.cfg.bandwidth)
        else:
            l0 = (step(pre, theta, self.cfg.bandwidth) * self.decoder_norms()).sum(-1).mean()
        if self.training:
            self._update_firing_stats(acts)
        return TrainStepOutput(mse + l0_coefficient * l0, {"mse": mse, "l0": l0}, x_hat, acts)
