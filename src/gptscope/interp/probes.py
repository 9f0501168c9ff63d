"""Linear probes: is a label linearly readable from the activations?

A probe's accuracy alone overstates what the model "knows": a flexible probe can learn a
task by itself. So every probe is also trained on a control task (Hewitt & Liang, 2019):
the same inputs with labels that carry no information about the activations beyond token
identity (a random label per token type) or none at all (shuffled). Selectivity = accuracy
- control accuracy is the part the representation earns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.model.hooks import act_name

PROBE_KINDS = ("logistic", "linear")


@dataclass
class ProbeResult:
    """A trained probe and how it scores on held-out data.

    accuracy: test accuracy (R^2 for a regression on float labels); baseline: the majority
    class's share of the test set (0 for R^2); control_accuracy: the same probe trained on
    the control task; selectivity = accuracy - control_accuracy. weight ``[d, n_classes]``
    (``[d, 1]`` for regression) and bias act on standardised inputs (``mean``, ``std``).
    """

    accuracy: float
    baseline: float
    control_accuracy: float
    selectivity: float
    train_accuracy: float
    kind: str
    metric: str
    n_train: int
    n_test: int
    weight: Tensor = field(repr=False)
    bias: Tensor = field(repr=False)
    mean: Tensor = field(repr=False)
    std: Tensor = field(repr=False)

    def predict(self, activations: Tensor) -> Tensor:
        """Class ids ``[n]`` (or values for a regression) for activations ``[n, d]``."""
        out = ((activations.float() - self.mean) / self.std) @ self.weight + self.bias
        return out[:, 0] if self.metric == "r2" else out.argmax(-1)


def _fit(x: Tensor, y: Tensor, kind: str, n_classes: int, l2: float, steps: int
         ) -> tuple[Tensor, Tensor]:
    """Fit on standardised x ``[n, d]``; y: class ids (n_classes > 0) or floats."""
    n, d = x.shape
    if kind == "linear":
        # Ridge regression in closed form onto the targets (one-hot for classes).
        target = F.one_hot(y, n_classes).float() if n_classes else y.float()[:, None]
        xb = torch.cat([x, torch.ones(n, 1)], dim=1)
        reg = l2 * n * torch.eye(d + 1)
        reg[-1, -1] = 0.0  # the bias is not shrunk
        sol = torch.linalg.lstsq(xb.T @ xb + reg, xb.T @ target).solution
        return sol[:-1], sol[-1]
    weight = torch.zeros(d, n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    # L-BFGS on the full batch: the problem is convex and small, so it converges in a few
    # dozen iterations without a learning rate to tune.
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def _score(x: Tensor, y: Tensor, w: Tensor, b: Tensor, regression: bool) -> float:
    out = x @ w + b
    if regression:
        pred = out[:, 0]
        ss_res = (y - pred).pow(2).sum()
        ss_tot = (y - y.mean()).pow(2).sum().clamp(min=1e-12)
        return (1 - ss_res / ss_tot).item()
    return (out.argmax(-1) == y).float().mean().item()


def train_probe(
    activations: Tensor,
    labels: Tensor,
    kind: str = "logistic",
    test_fraction: float = 0.2,
    seed: int = 0,
    l2: float = 1e-4,
    steps: int = 100,
    control: str = "shuffle",
    token_ids: Tensor | None = None,
) -> ProbeResult:
    """Train a linear probe from ``activations`` ``[n, d]`` to ``labels`` ``[n]``.

    kind: "logistic" (multinomial logistic regression, integer labels) or "linear" (ridge
    regression: on one-hot targets for integer labels, scored by accuracy; on float labels,
    scored by R^2). control: "shuffle" (labels permuted) or "type" (each distinct
    ``token_ids`` value gets a random label, drawn from the label distribution; needs
    ``token_ids`` ``[n]``). The split into train and test is random under ``seed``.
    """
    x, y, regression = _checked_probe_data(activations, labels, kind, test_fraction)
    n = x.shape[0]
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < 2:
        raise ValueError(f"only {n} examples; a probe needs a few more to train and test")
    n_classes = 0 if regression else int(y.max()) + 1
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    test, train = perm[:n_test], perm[n_test:]
    mean = x[train].mean(0)
    std = x[train].std(0).clamp(min=1e-6)
    xs = (x - mean) / std

    def run(targets: Tensor) -> tuple[float, float, Tensor, Tensor]:
        w, b = _fit(xs[train], targets[train], kind, n_classes, l2, steps)
        return (_score(xs[test], targets[test], w, b, regression),
                _score(xs[train], targets[train], w, b, regression), w, b)

    accuracy, train_acc, w, b = run(y)
    control_y = _control(y, control, token_ids, g)
    control_acc = run(control_y)[0]
    if regression:
        baseline = 0.0
    else:
        baseline = (torch.bincount(y[test], minlength=n_classes).max() / n_test).item()
    return ProbeResult(
        accuracy=accuracy, baseline=baseline, control_accuracy=control_acc,
        selectivity=accuracy - control_acc, train_accuracy=train_acc, kind=kind,
        metric="r2" if regression else "accuracy", n_train=len(train), n_test=n_test,
        weight=w, bias=b, mean=mean, std=std,
    )


def _checked_probe_data(activations: Tensor, labels: Tensor, kind: str, test_fraction: float
                        ) -> tuple[Tensor, Tensor, bool]:
    """``(x [n, d] float, y [n], regression)`` once the probe's inputs are checked."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"kind must be one of {PROBE_KINDS}, got {kind!r}")
    x = torch.as_tensor(activations).detach().float().cpu()
    y = torch.as_tensor(labels).detach().cpu()
    if x.dim() != 2:
        raise ValueError(f"activations must be [n, d], got {tuple(x.shape)}; flatten batch "
                         "and position first (acts.flatten(0, -2))")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must be [n={x.shape[0]}], got {tuple(y.shape)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    regression = y.is_floating_point()
    if regression and kind == "logistic":
        raise ValueError("float labels need kind='linear' (regression); for classes pass "
                         "integer labels")
    if not regression:
        y = y.long()
        if y.min() < 0:
            raise ValueError("class labels must be >= 0; drop ignored positions first")
    return x, y, regression


def _control(y: Tensor, control: str, token_ids: Tensor | None, g: torch.Generator) -> Tensor:
    if control == "shuffle":
        return y[torch.randperm(len(y), generator=g)]
    if control != "type":
        raise ValueError(f"control must be 'shuffle' or 'type', got {control!r}")
    if token_ids is None:
        raise ValueError("control='type' needs token_ids [n] (the token at each example)")
    ids = torch.as_tensor(token_ids).long().cpu().reshape(-1)
    if ids.shape != y.shape:
        raise ValueError(f"token_ids must be [n={len(y)}], got {tuple(ids.shape)}")
    types, inverse = ids.unique(return_inverse=True)
    # Each token type gets the label of a random example: the control keeps the label
    # distribution but ties labels to token identity alone.
    pick = torch.randint(0, len(y), (len(types),), generator=g)
    return y[pick][inverse]


def probe_layers(
    model: Any,
    tokens: Tensor,
    labels_per_token: Tensor,
    hooks: list[str] | None = None,
    kind: str = "logistic",
    control: str = "type",
    **probe_kwargs: Any,
) -> dict[str, ProbeResult]:
    """Probe the same per-token labels at several hooks: ``{hook_name: ProbeResult}``.

    tokens, labels_per_token: ``[batch, pos]``; labels < 0 (integer) or NaN (float) mark
    positions to skip. hooks default to ``hook_embed`` and each layer's ``resid_post``. The
    control task defaults to a random label per token type, which only a probe reading
    context (not just the current token) can beat.
    """
    tokens = model.to_tokens(tokens)
    labels = torch.as_tensor(labels_per_token).cpu()
    if labels.shape != tokens.shape:
        raise ValueError(f"labels_per_token {tuple(labels.shape)} must match tokens "
                         f"{tuple(tokens.shape)}")
    if hooks is None:
        hooks = ["hook_embed"] + [act_name("resid_post", i)
                                  for i in range(model.cfg.n_layers)]
    keep = ~labels.isnan() if labels.is_floating_point() else labels >= 0
    cache = model.activations(tokens, hooks)
    flat_labels = labels[keep]
    flat_ids = tokens.cpu()[keep]
    results = {}
    for name in hooks:
        acts = cache[name].cpu()
        if acts.shape[:2] != tokens.shape:
            raise ValueError(f"{name} is not per token ([batch, pos, ...]); pick residual or "
                             "MLP hooks")
        results[name] = train_probe(acts[keep].flatten(1), flat_labels, kind=kind,
                                    control=control, token_ids=flat_ids, **probe_kwargs)
    return results
