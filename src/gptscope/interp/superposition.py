"""Toy models of superposition (Elhage et al. 2022, "Toy Models of Superposition").

``n_features`` sparse features are squeezed through ``n_hidden < n_features`` dimensions
and read back out::

    h     = W x                    # W: [n_hidden, n_features]
    x_hat = ReLU(W^T h + b)        # b: [n_features]

and trained to minimise the importance-weighted error ``sum_i I_i (x_i - x_hat_i)^2``.
Each feature is 0 with probability ``1 - p`` and uniform on ``[0, 1]`` with probability
``p`` ("feature probability"; the paper's sparsity is ``S = 1 - p``). When features are
dense the model keeps only the ``n_hidden`` most important ones, orthogonally; as they get
sparser it packs more features than dimensions into the space ("superposition"), e.g. 5
features on a pentagon in 2-D.

Many small models ("instances", e.g. one per sparsity level) are trained at once: every
tensor has a leading instance dimension and instances never interact.

Measures: :func:`n_represented_features` (columns of ``W`` with norm above a threshold),
:func:`dimensions_per_feature` (``n_hidden / ||W||_F^2``) and
:func:`feature_dimensionality` (the per-feature share of a dimension). Pictures:
:func:`plot_feature_geometry` and :func:`plot_dimensions_per_feature` return HTML with
inline, self-contained SVG.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ToyModelConfig",
    "ToySuperpositionModel",
    "dimensions_per_feature",
    "feature_dimensionality",
    "n_represented_features",
    "plot_dimensions_per_feature",
    "plot_feature_geometry",
    "train_toy_model",
]

Number = float | int


@dataclass
class ToyModelConfig:
    """Shape and data distribution of a batch of toy models.

    Attributes:
        n_features: input features per instance.
        n_hidden: hidden dimensions per instance (``< n_features`` for superposition).
        n_instances: independent models trained side by side.
        feature_probability: chance each feature is non-zero; a number (all instances), a
            sequence ``[n_instances]`` (one per instance) or ``[n_instances, n_features]``.
        importance: a number ``r`` gives decaying importances ``r ** i`` for feature ``i``;
            or an explicit ``[n_features]`` / ``[n_instances, n_features]``.
    """

    n_features: int = 5
    n_hidden: int = 2
    n_instances: int = 8
    feature_probability: Number | Sequence[float] | torch.Tensor = 0.05
    importance: Number | Sequence[float] | torch.Tensor = 0.9

    def __post_init__(self) -> None:
        for name in ("n_features", "n_hidden", "n_instances"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def probability_tensor(self) -> torch.Tensor:
        """Feature probabilities as ``[n_instances, n_features]``."""
        p = self._broadcast(self.feature_probability, "feature_probability", per_instance=True)
        if (p < 0).any() or (p > 1).any():
            raise ValueError("feature_probability must lie in [0, 1]")
        return p

    def importance_tensor(self) -> torch.Tensor:
        """Importances as ``[n_instances, n_features]``."""
        imp = self.importance
        if isinstance(imp, (int, float)) and not isinstance(imp, bool):
            imp = float(imp) ** torch.arange(self.n_features, dtype=torch.float32)
        imp = self._broadcast(imp, "importance", per_instance=False)
        if (imp < 0).any():
            raise ValueError("importance must be >= 0")
        return imp

    def _broadcast(self, value: object, name: str, *, per_instance: bool) -> torch.Tensor:
        n_i, n_f = self.n_instances, self.n_features
        t = torch.as_tensor(value, dtype=torch.float32)
        if t.ndim == 0:
            return t.expand(n_i, n_f).clone()
        if t.ndim == 1 and per_instance and len(t) == n_i:
            return t[:, None].expand(n_i, n_f).clone()
        if t.ndim == 1 and not per_instance and len(t) == n_f:
            return t[None, :].expand(n_i, n_f).clone()
        if t.shape == (n_i, n_f):
            return t.clone()
        one_d = f"[n_instances={n_i}]" if per_instance else f"[n_features={n_f}]"
        raise ValueError(
            f"{name} must be a number, {one_d} or [n_instances={n_i}, n_features={n_f}], "
            f"got shape {tuple(t.shape)}"
        )


class ToySuperpositionModel(nn.Module):
    """``n_instances`` independent models ``x -> ReLU(W^T W x + b)``.

    Parameters: ``W`` ``[n_instances, n_hidden, n_features]`` and ``b_final``
    ``[n_instances, n_features]``. Buffers: ``feature_probability`` and ``importance``, both
    ``[n_instances, n_features]``.
    """

    def __init__(self, cfg: ToyModelConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        n_i, m, n = cfg.n_instances, cfg.n_hidden, cfg.n_features
        w = torch.empty(n_i, m, n)
        # Xavier-normal per instance, as in the paper's code: keeps initial outputs O(1).
        std = math.sqrt(2.0 / (m + n))
        w.normal_(0.0, std, generator=generator)
        self.W = nn.Parameter(w)
        self.b_final = nn.Parameter(torch.zeros(n_i, n))
        self.register_buffer("feature_probability", cfg.probability_tensor())
        self.register_buffer("importance", cfg.importance_tensor())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, n_instances, n_features] -> [batch, n_instances, n_features]``."""
        expected = (self.cfg.n_instances, self.cfg.n_features)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"toy model input must be [batch, n_instances={expected[0]}, "
                f"n_features={expected[1]}], got {tuple(x.shape)}; use model.generate_batch()"
            )
        hidden = torch.einsum("imf,bif->bim", self.W, x)
        out = torch.einsum("imf,bim->bif", self.W, hidden)
        return torch.relu(out + self.b_final)

    def generate_batch(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Random inputs ``[batch, n_instances, n_features]``: each feature is uniform on
        [0, 1] with its instance's probability, else 0."""
        shape = (batch_size, self.cfg.n_instances, self.cfg.n_features)
        device = self.W.device
        values = torch.rand(shape, generator=generator).to(device)
        present = torch.rand(shape, generator=generator).to(device) < self.feature_probability
        return values * present

    def loss(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Importance-weighted squared error, averaged over the batch and summed over
        instances (so each instance's gradient is independent of the others)."""
        return (self.importance * (x - out).pow(2)).sum(dim=-1).mean(dim=0).sum()


def train_toy_model(
    model: ToySuperpositionModel,
    *,
    steps: int = 5000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int | None = None,
    show_progress: bool = False,
    log_every: int = 100,
) -> list[list[float]]:
    """Train every instance with Adam; returns per-instance losses logged every
    ``log_every`` steps (``[n_logs][n_instances]``)."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[list[float]] = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = model.generate_batch(batch_size, generator)
        out = model(x)
        per_instance = (model.importance * (x - out).pow(2)).sum(dim=-1).mean(dim=0)
        optimizer.zero_grad(set_to_none=True)
        per_instance.sum().backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            history.append(per_instance.detach().cpu().tolist())
            if show_progress:
                rate = step / max(time.perf_counter() - start, 1e-9)
                mean = sum(history[-1]) / len(history[-1])
                print(f"\rtoy model step {step}/{steps} loss {mean:.4g} [{rate:.0f} it/s]",
                      end="", flush=True)
    if show_progress:
        print()
    return history


def _as_instances(W: torch.Tensor) -> torch.Tensor:
    W = W.detach().float().cpu()
    if W.ndim == 2:
        W = W[None]
    if W.ndim != 3:
        raise ValueError(
            f"W must be [n_hidden, n_features] or [n_instances, n_hidden, n_features], got "
            f"{tuple(W.shape)}; pass model.W"
        )
    return W


def n_represented_features(W: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Features whose column of ``W`` has norm above ``threshold``; ``W`` is ``[m, n]`` or
    ``[instances, m, n]``. Returns a LongTensor ``[instances]``."""
    return (_as_instances(W).norm(dim=1) > threshold).sum(dim=-1)


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """``n_hidden / ||W||_F^2`` per instance, ``[instances]``: how many hidden dimensions
    each represented feature gets on average (1 = no superposition, 2/5 = a pentagon)."""
    W = _as_instances(W)
    return W.shape[1] / W.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """Per-feature dimensionality ``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2``,
    ``[instances, n_features]``: 1 for a feature with a dimension of its own, 1/2 for an
    antipodal pair, 0 for an unrepresented feature."""
    W = _as_instances(W)
    norms = W.norm(dim=1, keepdim=True)  # [i, 1, n]
    unit = W / norms.clamp_min(1e-8)
    overlaps = torch.einsum("imf,img->ifg", unit, W).pow(2).sum(dim=-1)  # [i, n]
    dims = norms.squeeze(1).pow(2) / overlaps.clamp_min(1e-12)
    return torch.where(norms.squeeze(1) > 1e-6, dims, torch.zeros_like(dims))


# ---------------------------------------------------------------------------- pictures

# Viridis-like ramp, most important feature first (dark) to least (yellow).
_RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]


def _color(i: int, n: int) -> str:
    if n <= 1:
        return _RAMP[0]
    return _RAMP[round(i * (len(_RAMP) - 1) / (n - 1))]


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def plot_feature_geometry(
    W: torch.Tensor,
    labels: Sequence[str] | None = None,
    size: int = 180,
    title: str = "Feature geometry",
) -> str:
    """One 2-D picture per instance: an arrow from the origin to each feature's column of
    ``W`` (``[2, n_features]`` or ``[instances, 2, n_features]``), coloured by feature index
    (dark = most important). Returns self-contained HTML (inline SVG, no scripts)."""
    W = _as_instances(W)
    if W.shape[1] != 2:
        raise ValueError(
            f"plot_feature_geometry draws 2-D hidden spaces; W has n_hidden={W.shape[1]}. "
            "Use n_hidden=2, or plot_dimensions_per_feature for any size"
        )
    n_inst, _, n_feat = W.shape
    if labels is not None and len(labels) != n_inst:
        raise ValueError(f"labels must have one entry per instance ({n_inst}), got {len(labels)}")
    reach = max(float(W.norm(dim=1).max()), 1e-6) * 1.15
    half = size / 2
    scale = (half - 8) / reach
    panels = []
    for i in range(n_inst):
        parts = [
            f'<line x1="0" y1="{half}" x2="{size}" y2="{half}" stroke="#ddd"/>',
            f'<line x1="{half}" y1="0" x2="{half}" y2="{size}" stroke="#ddd"/>',
        ]
        for f in range(n_feat):
            x = half + float(W[i, 0, f]) * scale
            y = half - float(W[i, 1, f]) * scale
            c = _color(f, n_feat)
            parts.append(
                f'<line x1="{half}" y1="{half}" x2="{x:.1f}" y2="{y:.1f}" stroke="{c}" '
                f'stroke-width="2"><title>feature {f}: |W| = '
                f"{_fmt(float(W[i, :, f].norm()))}</title></line>"
            )
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}"/>')
        label = html.escape(labels[i]) if labels is not None else f"instance {i}"
        panels.append(
            '<figure style="margin:4px;text-align:center">'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}" role="img" aria-label="{label}">'
            + "".join(parts)
            + f'</svg><figcaption style="font:12px sans-serif">{label}</figcaption></figure>'
        )
    return (
        '<div class="gptscope-superposition">'
        f'<div style="font:bold 14px sans-serif">{html.escape(title)}</div>'
        '<div style="display:flex;flex-wrap:wrap">' + "".join(panels) + "</div></div>"
    )


def _dpf_axes(left: float, top: float, pw: float, ph: float,
              py: Callable[[float], float]) -> list[str]:
    """SVG axes and the dashed reference levels 1, 1/2 and 2/5."""
    parts = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
    ]
    for level, name in ((1.0, "1"), (0.5, "1/2"), (0.4, "2/5")):
        y = py(level)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#bbb" '
            'stroke-dasharray="4 3"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-family="sans-serif" font-size="10">{name}</text>'
        )
    return parts


def _dpf_column(x: float, prob: float, dpf: float, fdim: list[float],
                py: Callable[[float], float], axis_y: float) -> list[str]:
    """One instance's column: its dimensions per feature as a bar, each feature's
    dimensionality as a dot, and its 1 / p label under the axis."""
    parts = [
        f'<line x1="{x - 7:.1f}" y1="{py(dpf):.1f}" x2="{x + 7:.1f}" '
        f'y2="{py(dpf):.1f}" stroke="#000" stroke-width="2">'
        f"<title>p = {_fmt(prob)}: {_fmt(dpf)} dims/feature</title></line>"
    ]
    for f, value in enumerate(fdim):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{py(value):.1f}" r="3" '
            f'fill="{_color(f, len(fdim))}" fill-opacity="0.8"><title>feature {f}: '
            f"{_fmt(value)}</title></circle>"
        )
    parts.append(
        f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" '
        f'font-family="sans-serif" font-size="9">{_fmt(1 / prob)}</text>'
    )
    return parts


def plot_dimensions_per_feature(
    W: torch.Tensor,
    feature_probability: Sequence[float] | torch.Tensor,
    width: int = 420,
    height: int = 260,
    title: str = "Dimensions per feature",
) -> str:
    """Dimensions per feature against sparsity, one column per instance.

    The x-axis is ``1 / feature_probability`` (log scale, sparser to the right); each
    instance's :func:`dimensions_per_feature` is a black bar and each feature's
    :func:`feature_dimensionality` a coloured dot. Dashed lines mark 1, 1/2 and 2/5.
    ``feature_probability`` is ``[instances]`` (e.g. ``model.feature_probability[:, 0]``).
    Returns self-contained HTML with inline SVG.
    """
    W = _as_instances(W)
    probs = torch.as_tensor(feature_probability, dtype=torch.float32).flatten()
    n_inst = W.shape[0]
    if len(probs) != n_inst or (probs <= 0).any() or (probs > 1).any():
        raise ValueError(
            f"feature_probability must be {n_inst} values in (0, 1], one per instance, got "
            f"{probs.tolist()}"
        )
    dpf = dimensions_per_feature(W)
    fdim = feature_dimensionality(W)
    xs = torch.log10(1.0 / probs)
    x_lo, x_hi = float(xs.min()), float(xs.max())
    if x_hi - x_lo < 1e-6:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    left, right, top, bottom = 44, 12, 10, 32
    pw, ph = width - left - right, height - top - bottom
    y_max = 1.1

    def px(v: float) -> float:
        inset = 16  # keep end columns clear of the axis and the frame
        return left + inset + (v - x_lo) / (x_hi - x_lo) * (pw - 2 * inset)

    def py(v: float) -> float:
        return top + (1 - min(v, y_max) / y_max) * ph

    parts = _dpf_axes(left, top, pw, ph, py)
    for i in range(n_inst):
        parts += _dpf_column(px(float(xs[i])), float(probs[i]), float(dpf[i]),
                             fdim[i].tolist(), py, top + ph)
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" '
        'font-family="sans-serif" font-size="11">1 / feature probability (log scale)</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        + "".join(parts)
        + "</svg>"
    )
    return (
        '<div class="gptscope-superposition">'
        f'<div style="font:bold 14px sans-serif">{html.escape(title)}</div>{svg}</div>'
    )
