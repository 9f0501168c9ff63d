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
(for activations normalised to have mean squared norm ``d_in``); this module's defaults are
larger, for short runs (see :class:`JumpReLUSAEConfig`).

``theta`` is stored as ``log_threshold`` so it stays positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from gptscope.sae.base import SAE, SAEConfig, TrainStepOutput, n_inputs, register_sae


def _above(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Float ``[..., d_sae]`` mask, 1 where ``z > theta``.

    Masks are kept as floats throughout this module: on CPU, writing the comparison straight
    into a float tensor and multiplying by it is several times faster than a bool mask, which
    every later use converts to float in an extra pass.
    """
    return torch.gt(z, theta, out=torch.empty_like(z))


def _window(z: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Float mask of the rectangle kernel ``K((z - theta) / eps)``: 1 where
    ``|z - theta| < eps / 2``. Built in place in one buffer."""
    return (z - theta).abs_().lt_(0.5 * bandwidth)


def _sum_rows(t: torch.Tensor) -> torch.Tensor:
    """Sum ``[..., d_sae]`` over every leading dim, giving ``[d_sae]``."""
    return t.reshape(-1, t.shape[-1]).sum(dim=0)


class _JumpReLUFn(torch.autograd.Function):
    """``(z * H(z - theta), mean over inputs of sum_i H(z_i - theta_i))``: the activations
    and the L0 penalty in one pass, with the rectangle-kernel pseudo-derivatives for
    ``theta``. The firing mask is kept from the forward pass, the kernel window is built
    once for both outputs, and per-feature factors are applied after the sum over inputs.
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, theta: torch.Tensor, bandwidth: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fired = _above(z, theta)
        ctx.save_for_backward(z, theta, fired)
        ctx.bandwidth = bandwidth
        ctx.set_materialize_grads(False)
        return z * fired, fired.sum() / n_inputs(z)

    @staticmethod
    def backward(
        ctx: Any, grad_acts: torch.Tensor | None, grad_l0: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor, None]:
        z, theta, fired = ctx.saved_tensors
        eps = ctx.bandwidth
        window = _window(z, theta, eps)
        grad_theta = torch.zeros_like(theta)
        if grad_l0 is not None:
            # d L0 / d theta = -(1 / eps) * window summed over inputs, averaged.
            grad_theta -= _sum_rows(window) * (grad_l0 / (eps * n_inputs(z)))
        if grad_acts is None:
            return None, grad_theta, None  # the L0 penalty never pushes z
        # d acts / d theta = -(theta / eps) * window; d acts / d z = H(z - theta).
        grad_theta -= (theta / eps) * _sum_rows(window.mul_(grad_acts))
        return grad_acts * fired, grad_theta, None


class _StepFn(torch.autograd.Function):
    """``H(z - theta)`` with the rectangle-kernel pseudo-derivative for ``theta`` only."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return _above(z, theta)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(1.0 / eps) * _sum_rows(_window(z, theta, eps).mul_(grad_out))
        # The L0 penalty must not push z around: only theta learns from it.
        # No gradient to z (None, not a zeros tensor: nothing to allocate or add).
        return None, grad_theta, None


def jumprelu_with_l0(
    z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(jumprelu(z, threshold), step(z, threshold).sum(-1).mean())`` in one pass over ``z``
    ``[..., d_sae]``, with the same gradients as the two computed apart."""
    return _JumpReLUFn.apply(z, threshold, bandwidth)


def jumprelu(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """JumpReLU ``[..., d_sae]`` with a straight-through gradient to ``threshold`` ``[d_sae]``."""
    return jumprelu_with_l0(z, threshold, bandwidth)[0]


def step(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """Heaviside ``H(z - threshold)`` ``[..., d_sae]`` with a straight-through gradient to
    ``threshold``; summed over features it is the (differentiable-in-theta) L0 norm."""
    return _StepFn.apply(z, threshold, bandwidth)


@dataclass
class JumpReLUSAEConfig(SAEConfig):
    """Config of :class:`JumpReLUSAE`.

    Attributes:
        threshold_init: initial threshold of every feature, in training units (activations
            normalised to mean norm ``sqrt(d_in)``). The paper's 0.001 suits its runs of
            hundreds of thousands of steps; thresholds learn in log space, a few thousandths
            per step, so runs of a few thousand steps start them near where they end (0.5).
        bandwidth: width ``epsilon`` of the rectangle kernel in the pseudo-derivative, in
            the same units (paper: 0.001; 0.5 here, for the same reason).
    """

    threshold_init: float = 0.5
    bandwidth: float = 0.5

    kind: ClassVar[str] = "jumprelu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.threshold_init > 0:
            raise ValueError(f"threshold_init must be > 0, got {self.threshold_init!r}")
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth!r}")


@register_sae
class JumpReLUSAE(SAE):
    """SAE with a learned per-feature threshold, trained with an L0 penalty."""

    config_class: ClassVar[type[SAEConfig]] = JumpReLUSAEConfig
    coefficient_defaults: ClassVar[dict[str, float]] = {"l0_coefficient": 1.0}
    sparsity_coefficient: ClassVar[str | None] = "l0_coefficient"
    cfg: JumpReLUSAEConfig

    def _init_extra_parameters(self) -> None:
        self.log_threshold = nn.Parameter(torch.empty(self.cfg.d_sae))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Base initialisation plus every threshold at ``threshold_init``."""
        super().reset_parameters(generator)
        with torch.no_grad():
            self.log_threshold.fill_(math.log(self.cfg.threshold_init))

    def _scale_extras_(self, factor: float) -> None:
        self.log_threshold.add_(math.log(factor))  # thresholds live in activation units

    def per_feature_parameters(self) -> list[tuple[nn.Parameter, int]]:
        return [*super().per_feature_parameters(), (self.log_threshold, 0)]

    @torch.no_grad()
    def restart_features_(self, idx: torch.Tensor) -> None:
        """A resampled feature starts again from ``threshold_init``."""
        self.log_threshold[idx] = math.log(self.cfg.threshold_init)

    @property
    def threshold(self) -> torch.Tensor:
        """Per-feature thresholds ``[d_sae]`` (always positive)."""
        return self.log_threshold.exp()

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """``JumpReLU(pre; threshold)``, ``[..., d_sae] -> [..., d_sae]``."""
        return jumprelu(pre, self.threshold, self.cfg.bandwidth)

    def training_forward(
        self, x: torch.Tensor, *, l0_coefficient: float = 1.0
    ) -> TrainStepOutput:
        """Loss for ``x`` ``[batch, d_in]``: MSE + ``l0_coefficient`` * L0.

        When ``normalize_decoder`` is off, each feature's L0 contribution is weighted by its
        decoder-row norm (as in the paper), so shrinking rows cannot hide activity.
        """
        self._check_input(x)
        pre = self.encode_pre(x)
        theta = self.threshold
        acts, l0 = jumprelu_with_l0(pre, theta, self.cfg.bandwidth)
        x_hat = self.decode(acts)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        if not self.cfg.normalize_decoder:
            l0 = (step(pre, theta, self.cfg.bandwidth) @ self.decoder_norms()).mean()
        fired = self._update_firing_stats(acts) if self.training else None
        losses = {"mse": mse, "l0": l0}
        return TrainStepOutput(mse + l0_coefficient * l0, losses, x_hat, acts, fired)
