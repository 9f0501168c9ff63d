"""How good is an SAE? Sparsity, reconstruction and downstream-loss metrics.

Conventions (the same as :func:`gptscope.sae.sae_loss`): ``mse`` is the squared error
summed over ``d_in`` and averaged over inputs; "per input" metrics average over the batch.

* :func:`l0` - mean number of active features per input (sparsity).
* :func:`mse`, :func:`explained_variance`, :func:`cosine_similarity` - reconstruction.
* :func:`ce_loss_recovered` - splice the SAE into the model and see how much of the
  language-modelling loss survives: ``(ce_zero_ablation - ce_sae) / (ce_zero_ablation -
  ce_clean)``; 1 means the SAE is as good as the real activations, 0 as bad as zeros.
* :func:`feature_frequencies`, :func:`dead_fraction`, :func:`dense_fraction` - features that
  never fire, or fire on most inputs, over a set of batches.
* :func:`mmcs` - mean max cosine similarity between two dictionaries (used with toy data
  whose true features are known).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gptscope.sae.base import SAE


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def l0(acts: torch.Tensor) -> float:
    """Mean number of non-zero features per input; ``acts`` is ``[..., d_sae]``."""
    return float((acts != 0).sum(dim=-1).float().mean())


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Squared error summed over the last dim, averaged over inputs; ``[..., d_in]`` each."""
    _same_shape(x, x_hat, "x and x_hat")
    return float((x_hat - x).pow(2).sum(dim=-1).mean())


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over a batch ``[n, d_in]``.

    1 is a perfect reconstruction; 0 is no better than predicting the batch mean.
    """
    _same_shape(x, x_hat, "x and x_hat")
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    total = (x - x.mean(dim=0)).pow(2).sum()
    if total <= 0:
        raise ValueError("explained_variance needs inputs that vary; all rows of x are equal")
    return float(1 - (x - x_hat).pow(2).sum() / total)


def cosine_similarity(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean cosine similarity between each input and its reconstruction, ``[..., d_in]``."""
    _same_shape(x, x_hat, "x and x_hat")
    return float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1, eps=1e-8).mean())


@torch.no_grad()
def feature_frequencies(
    sae: SAE, batches: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 4096
) -> torch.Tensor:
    """Fraction of inputs on which each feature fires, ``[d_sae]``.

    ``batches`` is a tensor ``[n, d_in]`` (processed in ``batch_size`` chunks) or an
    iterable of ``[b, d_in]`` tensors.
    """
    if isinstance(batches, torch.Tensor):
        batches = batches.reshape(-1, batches.shape[-1]).split(batch_size)
    device = sae.W_dec.device
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.float64, device=device)
    n = 0
    for x in batches:
        acts = sae.encode(x.to(device, sae.W_dec.dtype))
        acts = acts.reshape(-1, sae.cfg.d_sae)
        counts += (acts != 0).sum(dim=0)
        n += len(acts)
    if n == 0:
        raise ValueError("feature_frequencies got no inputs; pass at least one batch")
    return (counts / n).float()


def dead_fraction(frequencies: torch.Tensor) -> float:
    """Fraction of features that never fired; ``frequencies`` ``[d_sae]`` from
    :func:`feature_frequencies`."""
    return float((frequencies == 0).float().mean())


def dense_fraction(frequencies: torch.Tensor, threshold: float = 0.1) -> float:
    """Fraction of features firing on more than ``threshold`` of inputs (0.1 = 10%)."""
    return float((frequencies > threshold).float().mean())


@torch.no_grad()
def evaluate_sae(
    sae: SAE,
    activations: torch.Tensor,
    batch_size: int = 4096,
    dense_threshold: float = 0.1,
) -> dict[str, float]:
    """All activation-level metrics of ``sae`` on ``activations`` ``[n, d_in]`` in one dict:
    ``l0``, ``mse``, ``explained_variance``, ``cosine_similarity``, ``dead_fraction``,
    ``dense_fraction``."""
    if not isinstance(activations, torch.Tensor) or activations.shape[-1] != sae.cfg.d_in:
        raise ValueError(
            f"activations must be a tensor [n, d_in={sae.cfg.d_in}], got "
            f"{tuple(getattr(activations, 'shape', ()))}"
        )
    x = activations.reshape(-1, sae.cfg.d_in).to(sae.W_dec.device, sae.W_dec.dtype)
    acts = torch.cat([sae.encode(c) for c in x.split(batch_size)])
    x_hat = sae.decode(acts)
    freqs = (acts != 0).float().mean(dim=0)
    return {
        "l0": l0(acts),
        "mse": mse(x, x_hat),
        "explained_variance": explained_variance(x, x_hat),
        "cosine_similarity": cosine_similarity(x, x_hat),
        "dead_fraction": dead_fraction(freqs),
        "dense_fraction": dense_fraction(freqs, dense_threshold),
    }


@torch.no_grad()
def ce_loss_recovered(
    model: Any, sae: SAE, tokens: torch.Tensor, hook_name: str | None = None
) -> dict[str, float]:
    """Language-modelling loss with the SAE spliced in, compared with clean and zero-ablated.

    Args:
        model: a ``gptscope.Transformer``.
        sae: SAE whose ``d_in`` matches the hook's width.
        tokens: LongTensor ``[batch, pos]``.
        hook_name: where to splice; defaults to ``sae.cfg.hook_name``.

    Returns:
        ``{"ce_clean", "ce_sae", "ce_zero_ablation", "ce_loss_recovered"}`` where
        ``ce_loss_recovered = (ce_zero_ablation - ce_sae) / (ce_zero_ablation - ce_clean)``.
    """
    hook_name = hook_name or sae.cfg.hook_name
    if not hook_name:
        raise ValueError(
            "ce_loss_recovered needs a hook name: pass hook_name=... or set sae.cfg.hook_name"
        )
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.ndim != 2:
        raise ValueError(
            f"tokens must be a LongTensor [batch, pos], got "
            f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
            f"{tuple(getattr(tokens, 'shape', ()))}"
        )

    def splice_sae(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return sae(act.to(sae.W_dec.dtype)).to(act.dtype)

    def zero(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return torch.zeros_like(act)

    was_training = model.training
    model.eval()
    try:
        ce_clean = float(model(tokens, return_type="loss"))
        with model.hooks(fwd_hooks=[(hook_name, splice_sae)]):
            ce_sae = float(model(tokens, return_type="loss"))
        with model.hooks(fwd_hooks=[(hook_name, zero)]):
            ce_zero = float(model(tokens, return_type="loss"))
    finally:
        model.train(was_training)
    gap = ce_zero - ce_clean
    recovered = (ce_zero - ce_sae) / gap if abs(gap) > 1e-12 else float("nan")
    return {
        "ce_clean": ce_clean,
        "ce_sae": ce_sae,
        "ce_zero_ablation": ce_zero,
        "ce_loss_recovered": recovered,
    }


def mmcs(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Mean max cosine similarity: for each true feature (row of ``true`` ``[n_true, d]``),
    the best cosine with any learned feature (row of ``learned`` ``[n_learned, d]``),
    averaged over true features. 1 means every true feature was found."""
    if learned.ndim != 2 or true.ndim != 2 or learned.shape[1] != true.shape[1]:
        raise ValueError(
            f"learned and true must be [n, d] with the same d, got {tuple(learned.shape)} "
            f"and {tuple(true.shape)}; pass sae.W_dec and the true feature matrix"
        )
    a = torch.nn.functional.normalize(learned.detach().float(), dim=-1)
    b = torch.nn.functional.normalize(true.detach().float(), dim=-1)
    return float((b @ a.T).max(dim=1).values.mean())
