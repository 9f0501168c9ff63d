"""Pictures of toy models of superposition (:mod:`gptscope.interp.superposition`): each
instance's feature directions in its hidden space, and dimensions per feature against
sparsity, as HTML with inline, self-contained SVG."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import torch

from gptscope.interp.superposition import (
    as_instances,
    dimensions_per_feature,
    feature_dimensionality,
)

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
    W = as_instances(W)
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
    W = as_instances(W)
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
