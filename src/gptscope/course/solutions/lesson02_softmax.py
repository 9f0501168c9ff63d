"""Lesson 2: softmax, log-softmax and cross-entropy, written to survive large inputs."""

from __future__ import annotations

from torch import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``; same shape as x.

    Must not overflow: inputs like 1000 or 1e4 have to give finite probabilities. Any batch
    dimensions, any ``dim`` (also 0 or 1 of a 3-d tensor), float32 or float64 input.

    Hint: softmax(x) == softmax(x - c) for any constant c; pick c = the max along ``dim``
    (``x.amax(dim=dim, keepdim=True)``) so every exponent is <= 0.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, accurate even where softmax underflows to 0.

    For x = [0, -1e4] the answer is [0, -1e4], not [0, -inf]. Same shape as x.

    Hint: log softmax(x) = x - logsumexp(x), and logsumexp(x) = m + log(sum(exp(x - m)))
    with m the max along ``dim``.
    """
    m = x.amax(dim=dim, keepdim=True)
    return x - m - (x - m).exp().sum(dim=dim, keepdim=True).log()


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of the ``targets`` under ``logits``: a scalar.

    logits [..., n_classes] (any number of batch dimensions), targets [...] int64 class ids.
    Loss per example = -log softmax(logits)[target]; return the mean over all examples.

    Hint: write a stable log-softmax, then ``.gather(-1, targets.unsqueeze(-1))``.
    """
    m = logits.amax(dim=-1, keepdim=True)
    logp = logits - m - (logits - m).exp().sum(dim=-1, keepdim=True).log()
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean()
