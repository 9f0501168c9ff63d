"""Lesson 14: projects, and reporting their results honestly.

Run ``gptscope learn new-project NAME`` for a reproducible experiment folder (config.json,
run.py, README.md with a question / method / result template, a fixed seed), run it, and
write up what you found in its README.

A result is a number *and* how far to trust it. The three exercises here are the tools a
write-up needs: a bootstrap confidence interval for a score averaged over examples, a paired
permutation test for "model A beats model B on the same examples", and the spread of a
metric over training seeds. Each takes its randomness from a ``torch.Generator`` you are
given, so that a report can be rerun and give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def bootstrap_interval(values: Tensor, statistic: Callable[[Tensor], Tensor],
                       n_resamples: int, level: float, generator: torch.Generator) -> Tensor:
    """A percentile bootstrap confidence interval of ``statistic`` over examples: [low, high].

    values [n]: one number per example (a loss, 1.0 / 0.0 for right / wrong, ...).
    statistic maps a [n] tensor to a 0-d tensor (e.g. ``torch.mean``). Draw every resample
    at once, with replacement, as ``idx = torch.randint(0, n, (n_resamples, n),
    generator=generator)``: row r of idx is resample r, ``values[idx[r]]``. Compute the
    statistic on each of the n_resamples resamples; the interval is their
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (``torch.quantile``, its default
    linear interpolation), e.g. 2.5% and 97.5% for level 0.95. Returns a float tensor [2]:
    (low, high), low <= high.
    """
    n = values.shape[0]
    idx = torch.randint(0, n, (n_resamples, n), generator=generator)
    stats = torch.stack([statistic(values[row]) for row in idx]).double()
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return torch.quantile(stats, tails).to(values.dtype)


def paired_permutation_test(a: Tensor, b: Tensor, n_permutations: int,
                            generator: torch.Generator) -> float:
    """Two-sided p-value that models A and B score differently on the same examples.

    a, b [n]: each model's score on the same n examples (example i is a[i] and b[i]). Under
    the null hypothesis the two scores of an example are exchangeable, so each paired
    difference d = a - b is as likely to have either sign. Draw the sign flips at once,
    ``signs = torch.randint(0, 2, (n_permutations, n), generator=generator) * 2 - 1``
    (row r: +1 keeps d[i], -1 flips it). Observed statistic |mean(d)|; the null statistics
    |mean(signs[r] * d)|, one per row. p = (1 + the number of rows whose null statistic is
    >= the observed one) / (1 + n_permutations): the +1s count the observed labelling as
    one of the permutations, so p is never 0. Returns a Python float in (0, 1].
    """
    d = (a - b).double()
    signs = torch.randint(0, 2, (n_permutations, d.shape[0]), generator=generator) * 2 - 1
    observed = d.mean().abs()
    null = (signs * d).mean(dim=1).abs()  # [n_permutations]
    return (1 + int((null >= observed).sum())) / (1 + n_permutations)


def seed_spread(finals: Tensor) -> dict[str, float]:
    """Summarise one metric's final value over runs that differ only in their seed.

    finals [n_runs]: the final metric of each run. Returns a dict of Python floats:
    "mean"; "std", the *sample* standard deviation (ddof = 1, dividing by n_runs - 1: the
    runs are a sample of the seeds one could have used); "sem", the standard error of the
    mean, std / sqrt(n_runs); "min" and "max". With fewer than two runs there is no spread
    to estimate: raise ValueError.
    """
    if finals.numel() < 2:
        raise ValueError(f"seed_spread needs at least two runs, got {finals.numel()}")
    x = finals.double()
    std = x.std(correction=1).item()
    return {"mean": x.mean().item(), "std": std, "sem": std / math.sqrt(x.numel()),
            "min": x.min().item(), "max": x.max().item()}


def fourier_concentration(W_E: Tensor, p: int, top: int = 5) -> float:
    """Given: the share of the number embeddings' power in their ``top`` strongest
    frequencies. W_E [d_vocab, d_model]; rows 0..p-1 embed the numbers. A discrete Fourier
    transform along the numbers (the constant term left out) gives each frequency's
    power summed over d_model. A model that computes a + b mod p with rotations, as Nanda
    et al. (2023) found, embeds the numbers with a few frequencies: a share near 1."""
    power = torch.fft.rfft(W_E[:p].double(), dim=0).abs().pow(2).sum(-1)[1:]
    return float(power.topk(top).values.sum() / power.sum())


def explore_grokking(seed: int = 0) -> dict[str, float]:
    """Given: a project that starts from shipped checkpoints, reported with *your*
    ``bootstrap_interval`` and ``paired_permutation_test``.

    ``modadd-grokked`` (``gs.zoo.recipe("modadd-grokked")`` holds its one command) learned
    a + b mod 59 from 45% of the pairs. Its run's metrics ship with it: by step 500 it had
    memorised every training pair but got few test pairs right; hundreds of steps later it
    generalised (grokking). Its step-500 checkpoint ships too. Both are scored on the
    held-out pairs, with 95% bootstrap intervals and a paired permutation test, and their
    embeddings' Fourier concentration is compared: the generalising solution uses a few
    frequencies. Returns the test accuracies, their intervals, the p-value and both
    concentrations.
    """
    import gptscope as gs
    from gptscope.data.tasks import make_task
    from gptscope.train.config import TrainConfig
    from gptscope.train.runs import read_metrics

    folder = gs.zoo.path("modadd-grokked")
    spec = TrainConfig.from_json(folder / "train_config.json").data
    task = make_task(spec.task, **spec.task_kwargs)
    for row in read_metrics(folder):
        if "val_exact_match" in row and row["step"] % 250 == 0:
            print(f"step {row['step']:5d}: train {row['train_exact_match']:.2f}, "
                  f"test {row['val_exact_match']:.2f}")
    tokens, _ = task.full_dataset()["test"]  # [pairs, 4]: a, b, =, (a + b) mod p
    g = torch.Generator().manual_seed(seed)
    out, right = {}, {}
    for name, model in (("step_500", gs.load(folder / "checkpoints" / "step_000500")),
                        ("final", gs.load(folder))):
        with torch.no_grad():
            right[name] = (model(tokens[:, :3])[:, -1].argmax(-1) == tokens[:, 3]).double()
        low, high = bootstrap_interval(right[name], torch.mean, 1000, 0.95, g).tolist()
        out[f"{name}_accuracy"] = float(right[name].mean())
        out[f"{name}_interval"] = (low, high)
        out[f"{name}_fourier_top5"] = fourier_concentration(model.W_E.detach(), task.p)
        print(f"{name:8s}: test accuracy {out[f'{name}_accuracy']:.3f} (95% interval "
              f"{low:.3f}-{high:.3f}); embedding power in its 5 strongest frequencies "
              f"{out[f'{name}_fourier_top5']:.2f}")
    out["p_value"] = paired_permutation_test(right["final"], right["step_500"], 2000, g)
    print(f"paired permutation test, final vs step 500: p = {out['p_value']:.4f}")
    return out
