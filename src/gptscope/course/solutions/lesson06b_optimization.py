"""Lesson 6b: optimization. Adam by hand, and why the best learning rate depends on the batch.

Lesson 6 trained with ``torch.optim.AdamW`` as a black box; here you write its update
yourself, moments, bias correction and decoupled weight decay included, and the check
holds it against PyTorch's step by step. Then a model small enough to solve on paper: the
*noisy quadratic model* (Zhang et al., 2019, "Which Algorithmic Choices Matter at Which
Batch Sizes? Insights From a Noisy Quadratic Model"), a diagonal quadratic loss whose
gradients carry noise that shrinks as 1 / batch size. Its expected loss after k SGD steps
has a closed form, so you can ask exactly what a larger batch buys: at small batches the
noise decides, and the best learning rate grows in proportion to the batch size; past a
*critical* batch size the curvature decides, and a larger batch buys almost nothing.
Last, the same model under an idealised Adam, whose step is divided by the root of the
gradient's second moment: with the number of examples fixed, SGD's best learning rate grows
in proportion to the batch, Adam's as its square root (the scaling rule Malladi et al., 2022,
"On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", derive).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def adam_step(params: list[Tensor], grads: list[Tensor], state: dict[str, Any],
              lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0) -> dict[str, Any]:
    """One AdamW step (Loshchilov & Hutter's decoupled weight decay; Adam when it is 0).

    params: a list of tensors (any shapes, no ``requires_grad``), updated *in place*;
    grads: a list of tensors of the same shapes, the gradient of each. ``state`` is what
    the previous call returned, or ``{}`` on the first call; return the new state, a dict
    {"step": t (an int, the number of steps taken so far, this one included), "m": list
    of the first moments, "v": list of the second moments} (moments shaped like params).
    You may change the state you were given or build a new one; the next call receives
    what you return. With beta1, beta2 = betas, for each parameter p with gradient g:

        t = t + 1                       (t = 0 and m = v = 0 before the first step)
        p = p * (1 - lr * weight_decay)  (decoupled decay, applied first, as PyTorch does)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t);  v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Why bias correction: m and v start at 0, so for small t they are shrunk towards 0 by
    the factors 1 - beta ** t; dividing by them undoes it. Why decoupled decay: added to
    the gradient (L2), the decay would be rescaled by 1 / sqrt(v_hat) like everything
    else, so weights with large gradients would hardly be decayed at all.
    """
    beta1, beta2 = betas
    t = state.get("step", 0) + 1
    ms = state.get("m") or [torch.zeros_like(p) for p in params]
    vs = state.get("v") or [torch.zeros_like(p) for p in params]
    new_m, new_v = [], []
    with torch.no_grad():
        for p, g, m, v in zip(params, grads, ms, vs):
            p.mul_(1 - lr * weight_decay)
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** t)
            v_hat = v / (1 - beta2 ** t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
            new_m.append(m)
            new_v.append(v)
    return {"step": t, "m": new_m, "v": new_v}


def noisy_quadratic_loss(h: Tensor, c: Tensor, x0: Tensor, lr: float, batch_size: int,
                         steps: int) -> Tensor:
    """The expected loss of the noisy quadratic model after ``steps`` steps of SGD.

    h [d] curvatures (> 0), c [d] gradient-noise variances for a batch of one, x0 [d] the
    start. The loss is L(x) = 1/2 * sum_i h_i * x_i ** 2; each SGD step is
    x <- x - lr * (h * x + noise), the noise independent across steps and coordinates with
    mean 0 and variance c_i / batch_size (the mean of batch_size independent gradients).
    Each coordinate keeps its own second moment s_i = E[x_i ** 2]:

        s_i = x0_i ** 2 before any step;
        each step: s_i <- (1 - lr * h_i) ** 2 * s_i + lr ** 2 * c_i / batch_size

    (the mean part shrinks by (1 - lr h_i) per step, the variance by its square, and each
    step adds lr ** 2 times the noise's variance). Return E[L] after exactly ``steps``
    steps, 1/2 * sum_i h_i * s_i, as a 0-dim tensor (steps = 0: the loss at x0).

    Summed, the s_i recursion is a geometric series: the noise part tends to
    lr * c_i / (batch_size * h_i * (2 - lr * h_i)), the floor that a larger batch lowers.
    """
    s = x0 * x0
    shrink = (1 - lr * h) ** 2
    noise = lr ** 2 * c / batch_size
    for _ in range(steps):
        s = shrink * s + noise
    return 0.5 * (h * s).sum()


def optimal_lr_by_batch(h: Tensor, c: Tensor, x0: Tensor, steps: int, batch_sizes: list[int],
                        lrs: Tensor,
                        loss: Callable[..., Tensor] = noisy_quadratic_loss) -> Tensor:
    """For each batch size, the learning rate of the grid ``lrs`` with the lowest loss.

    h, c, x0 [d] and steps define the noisy quadratic model as in ``noisy_quadratic_loss``;
    batch_sizes a list of n_batch ints; lrs [n_lrs] the grid, in increasing order. Call
    ``loss(h, c, x0, lr, batch_size, steps)`` (use the ``loss`` you are given; it returns a
    0-dim tensor) for every lr of the grid and every batch size. Return [n_batch], the lr
    (a value of ``lrs``, same dtype) with the lowest loss for each batch size; where several
    lrs tie for the lowest, the smallest of them.

    Why a grid: it is how learning rates are tuned in practice, and the answer is exact,
    with no optimiser of its own to disagree about.
    """
    best = []
    for batch_size in batch_sizes:
        losses = torch.stack([loss(h, c, x0, float(lr), batch_size, steps) for lr in lrs])
        best.append(lrs[int(torch.argmin(losses))])  # argmin takes the first of ties
    return torch.stack(best)


def explore_optimal_lr(d: int = 100, steps: int = 100, noise: float = 100.0) -> Tensor:
    """Given: how the best SGD learning rate grows with the batch size (uses *your*
    ``optimal_lr_by_batch``).

    Zhang et al.'s setting in small: curvatures h_i = 1 / i for i = 1..d, gradient noise
    shaped like the curvature, c_i = noise * h_i (as for a well-specified model), and x0 of
    ones; a log-spaced grid of learning rates from 1e-3 to 2 = 2 / max(h) (beyond it the
    steepest direction diverges). Prints the best lr, how much it grew since the batch
    4 times smaller, and the loss it reaches, for batch sizes 1, 4, ..., 16384; returns
    the best lrs [8].
    """
    h = 1 / torch.arange(1, d + 1, dtype=torch.float64)
    c, x0 = noise * h, torch.ones(d, dtype=torch.float64)
    lrs = torch.logspace(-3, 0.3, 67, dtype=torch.float64)  # 1e-3 ... 2 in steps of 12%
    batch_sizes = [4 ** k for k in range(8)]
    best = optimal_lr_by_batch(h, c, x0, steps, batch_sizes, lrs)
    print("batch size   best lr   grew by (batch x4)   expected loss")
    previous = None
    for b, lr in zip(batch_sizes, best.tolist()):
        value = noisy_quadratic_loss(h, c, x0, lr, b, steps).item()
        grew = f"{lr / previous:17.2f}x" if previous else " " * 18
        print(f"{b:10d}   {lr:7.4f}   {grew}   {value:13.5f}")
        previous = lr
    print("at small batches the best lr grows nearly as fast as the batch (about 3x per 4x: "
          "the noise limits it); at large ones it slows, capped by 2 / max(h): the "
          "curvature limits it, and a bigger batch buys ever less")
    return best


def adam_noisy_quadratic_loss(h: Tensor, c: Tensor, x0: Tensor, lr: float, batch_size: int,
                              steps: int) -> Tensor:
    """The expected loss of the noisy quadratic model after ``steps`` steps of idealised Adam.

    The model, its arguments and its s_i = E[x_i ** 2] are those of ``noisy_quadratic_loss``
    (c > 0). Adam divides each coordinate's step by the root of its running mean of g * g;
    idealised here as no momentum (beta1 = 0), no eps, and the running mean replaced by what
    it tracks when beta2 is close to 1, the expected squared gradient of that coordinate:

        v_i = h_i ** 2 * s_i + c_i / batch_size   (squared mean gradient + noise variance)
        eta_i = lr / sqrt(v_i)                    (the coordinate's step size this step)
        s_i <- (1 - eta_i * h_i) ** 2 * s_i + eta_i ** 2 * c_i / batch_size

    each step taking v_i from s_i *before* that step's update; s_i = x0_i ** 2 before any
    step. Return 1/2 * sum_i h_i * s_i after exactly ``steps`` steps, a 0-dim tensor.

    Why the square-root rule: while the noise dominates v_i, eta_i is about
    lr * sqrt(batch_size / c_i), so a batch 4 times larger already doubles every step, and
    lr itself need only double where SGD's had to grow fourfold.
    """
    s = x0 * x0
    noise = c / batch_size
    for _ in range(steps):
        eta = lr / (h * h * s + noise).sqrt()
        s = (1 - eta * h) ** 2 * s + eta ** 2 * noise
    return 0.5 * (h * s).sum()


def _log_slope(batch_sizes: list[int], lrs: Tensor) -> float:
    """The least-squares slope of log lr against log batch size."""
    x = torch.tensor([math.log(b) for b in batch_sizes], dtype=torch.float64)
    y = lrs.double().log()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def explore_batch_scaling_rules(examples: int = 1024, d: int = 100,
                                noise: float = 100.0) -> dict[str, float]:
    """Given: SGD's linear rule and Adam's square-root rule, on a fixed number of examples
    (uses *your* ``noisy_quadratic_loss``, ``adam_noisy_quadratic_loss`` and
    ``optimal_lr_by_batch``).

    The model of ``explore_optimal_lr``, but each batch size gets ``examples`` // batch
    steps, as when a dataset is read once: a larger batch takes fewer, less noisy steps.
    Prints the best lr of each optimiser for batch sizes 1 ... 256 and the loss it reaches,
    and returns the slope of log best lr against log batch size over batches 1 to 64,
    {"sgd": about 1, "adam": about 1/2}.
    """
    h = 1 / torch.arange(1, d + 1, dtype=torch.float64)
    c, x0 = noise * h, torch.ones(d, dtype=torch.float64)
    lrs = torch.logspace(-4, 0.3, 45, dtype=torch.float64)  # 1e-4 ... 2 in steps of 25%
    batch_sizes = [1, 4, 16, 64, 256]
    slopes = {}
    for name, loss in (("sgd", noisy_quadratic_loss), ("adam", adam_noisy_quadratic_loss)):
        best = torch.cat([optimal_lr_by_batch(h, c, x0, examples // b, [b], lrs, loss)
                          for b in batch_sizes])
        print(f"{name}: batch size, steps, best lr, expected loss")
        for b, lr in zip(batch_sizes, best.tolist()):
            value = loss(h, c, x0, lr, b, examples // b).item()
            print(f"{b:10d} {examples // b:6d} {lr:9.4f} {value:9.4f}")
        slopes[name] = _log_slope(batch_sizes[:4], best[:4])
    print(f"best lr ~ batch^{slopes['sgd']:.2f} for SGD, batch^{slopes['adam']:.2f} for Adam "
          "(batches 1-64): the same examples in 64 times fewer steps reach about the same "
          "loss, if the lr grows linearly for SGD and as the square root for Adam; at 256 "
          "the loss starts to rise for both: past the critical batch size, fewer steps cost "
          "more than less noise buys")
    return slopes
