"""Dead-feature resampling (Anthropic, "Towards Monosemanticity", 2023) and the pool it draws
from."""

from __future__ import annotations

from collections import deque

import torch

from gptscope.sae.base import SAE
from gptscope.sae.batches import check_activation_batch


@torch.no_grad()
def resample_dead_features(
    sae: SAE,
    inputs: torch.Tensor,
    dead: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    encoder_scale: float = 0.2,
    generator: torch.Generator | None = None,
) -> int:
    """Re-initialise dead features towards inputs the SAE reconstructs badly.

    Sample inputs with probability proportional to the square of their reconstruction loss;
    point each dead feature's decoder row at one such (normalised) input, set its encoder
    column to the same direction scaled to ``encoder_scale`` times the mean encoder norm of
    the living features, zero its encoder bias (and let the kind restart its own per-feature
    parameters, e.g. JumpReLU thresholds), and reset Adam's moments for the touched entries
    so stale statistics do not undo the reset.

    Args:
        sae: the SAE to modify in place.
        inputs: ``[n, d_in]`` activations to draw new directions from.
        dead: ``[d_sae]`` bool mask of features to resample.
        optimizer: the Adam(-like) optimiser whose state to reset, if any.
        encoder_scale: encoder norm of new features relative to living ones (paper: 0.2).
        generator: RNG for sampling inputs.

    Returns:
        The number of features resampled.
    """
    d_sae = sae.cfg.d_sae
    if dead.shape != (d_sae,) or dead.dtype != torch.bool:
        raise ValueError(f"dead must be a bool mask of shape [{d_sae}], got {dead.dtype} "
                         f"{tuple(dead.shape)}")
    inputs = check_activation_batch(inputs, sae.cfg.d_in, "inputs")
    idx = dead.nonzero().flatten()
    if len(idx) == 0 or len(inputs) == 0:
        return 0
    directions = _badly_reconstructed(sae, inputs, len(idx), generator)
    alive = ~dead
    enc_norms = sae.W_enc.norm(dim=0)
    alive_norm = enc_norms[alive].mean() if alive.any() else enc_norms.new_tensor(1.0)
    sae.W_dec[idx] = directions
    sae.W_enc[:, idx] = directions.T * (alive_norm * encoder_scale)
    sae.b_enc[idx] = 0.0
    sae.steps_since_fired[idx] = 0
    sae.restart_features_(idx)
    if optimizer is not None:
        for param, feature_dim in sae.per_feature_parameters():
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].index_fill_(feature_dim, idx, 0.0)
    return len(idx)


def _badly_reconstructed(
    sae: SAE, inputs: torch.Tensor, n: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` unit-norm rows ``[n, d_in]`` of ``inputs``, drawn with probability proportional
    to the square of their reconstruction loss."""
    inputs = inputs.to(sae.W_dec.device, sae.W_dec.dtype)
    loss = (sae(inputs) - inputs).pow(2).sum(dim=-1)
    probs = loss.pow(2)
    if not torch.isfinite(probs).all() or probs.sum() <= 0:
        probs = torch.ones_like(probs)
    picks = torch.multinomial(probs.cpu(), n, replacement=True, generator=generator)
    directions = inputs[picks.to(inputs.device)]
    return directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class RecentRows:
    """The most recent training rows, at least ``size`` of them: the pool resampling draws
    from when the data is a stream rather than a tensor."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._batches: deque[torch.Tensor] = deque()
        self._rows = 0

    def add(self, x: torch.Tensor) -> None:
        """Keep batch ``x`` ``[b, d_in]``, dropping old batches beyond ``size`` rows."""
        self._batches.append(x.detach())
        self._rows += len(x)
        while self._rows - len(self._batches[0]) >= self.size:
            self._rows -= len(self._batches.popleft())

    def pool(self) -> torch.Tensor:
        """The kept rows ``[n, d_in]``."""
        return torch.cat(list(self._batches))
