"""ScatterChart: points and fitted lines on linear or log axes (scaling-law plots).

Each point carries its own hover text (an SVG ``<title>``, so it needs no script), which is
how a sweep plot says which run a dot is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import colors
from ._util import as_array
from .html import Visual, escape
from .svg import Axes, open_svg, text_width


def _xy(what: str, name: str, spec: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(xs, ys) or (xs, ys, hover texts) -> arrays and one text per point."""
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(f"{what}[{name!r}] must be (xs, ys) or (xs, ys, labels)")
    xs = as_array(spec[0], f"{what}[{name!r}] xs", ndim=1)
    ys = as_array(spec[1], f"{what}[{name!r}] ys", ndim=1)
    labels = [str(t) for t in spec[2]] if len(spec) == 3 else [""] * len(xs)
    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"{what}[{name!r}] has {len(xs)} xs, {len(ys)} ys and {len(labels)} "
                         "labels; give one of each per point")
    return xs, ys, labels


class ScatterChart(Visual):
    """``points = {"runs": (flops, losses, names)}``, ``lines = {"fit": (xs, ys)}``.

    ``log_x`` / ``log_y`` need positive values (the others are dropped with their labels).
    """

    kind = "scatter"

    def __init__(self, points: Mapping[str, Any], lines: Mapping[str, Any] | None = None,
                 x_label: str = "x", y_label: str = "y", title: str | None = None,
                 log_x: bool = False, log_y: bool = False) -> None:
        super().__init__(title)
        if not points:
            raise ValueError('points must be a non-empty dict like {"runs": (xs, ys)}')
        self.log_x, self.log_y = log_x, log_y
        self.points = {str(k): self._keep(*_xy("points", str(k), v)) for k, v in points.items()}
        self.lines = {str(k): self._keep(*_xy("lines", str(k), v))
                      for k, v in (lines or {}).items()}
        if not any(len(x) for x, _, _ in self.points.values()):
            raise ValueError("points holds no finite point that fits the axes; nothing to plot")
        self.x_label, self.y_label = x_label, y_label

    def _keep(self, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        ok = np.isfinite(xs) & np.isfinite(ys)
        if self.log_x:
            ok &= xs > 0
        if self.log_y:
            ok &= ys > 0
        return xs[ok], ys[ok], [t for t, k in zip(labels, ok, strict=True) if k]

    def _axes(self, top: float) -> Axes:
        xs = np.concatenate([x for x, _, _ in (*self.points.values(), *self.lines.values())])
        ys = np.concatenate([y for _, y, _ in (*self.points.values(), *self.lines.values())])
        (x0, x1), (y0, y1) = (xs.min(), xs.max()), (ys.min(), ys.max())
        if self.log_x:
            x0, x1 = x0 / 1.3, x1 * 1.3
        else:
            pad = (x1 - x0) * 0.04 or 1.0
            x0, x1 = x0 - pad, x1 + pad
        if self.log_y:
            y0, y1 = y0 / 1.08, y1 * 1.08
        else:
            pad = (y1 - y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        return Axes((70.0, top, 630.0, 280.0), (float(x0), float(x1)), (float(y0), float(y1)),
                    log_y=self.log_y, log_x=self.log_x)

    def _body(self) -> str:
        names = [*self.points, *self.lines]
        legend, x, row = [], 0.0, 0
        for name in names:
            w = 26 + text_width(name, 12) + 16
            if x + w > 630 and x > 0:
                x, row = 0.0, row + 1
            legend.append((name, x, row))
            x += w
        axes = self._axes(16 + 18 * (row + 1))
        height = axes.top + axes.height + 46
        out = [open_svg(720, height, self.title or "scatter chart"),
               axes.draw(self.x_label, self.y_label)]
        for i, (name, lx, ly) in enumerate(legend):
            c = colors.PALETTE[i % len(colors.PALETTE)]
            mark = (f'<circle cx="{70 + lx + 10}" cy="{14 + 18 * ly}" r="4" fill="{c}"/>'
                    if name in self.points else
                    f'<line x1="{70 + lx}" x2="{70 + lx + 20}" y1="{14 + 18 * ly}" '
                    f'y2="{14 + 18 * ly}" stroke="{c}" stroke-width="2.5"/>')
            out.append(mark + f'<text x="{70 + lx + 26}" y="{14 + 18 * ly + 4}" font-size="12" '
                              f'fill="#1d2430">{escape(name)}</text>')
        for i, name in enumerate(names):
            c = colors.PALETTE[i % len(colors.PALETTE)]
            if name in self.lines:
                xs, ys, _ = self.lines[name]
                d = "".join(f"{'L' if j else 'M'}{axes.px(a):.1f},{axes.py(b):.1f}"
                            for j, (a, b) in enumerate(zip(xs, ys, strict=True)))
                out.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2" '
                           'stroke-dasharray="6 4"/>')
                continue
            for a, b, label in zip(*self.points[name], strict=True):
                tip = f"<title>{escape(label)}</title>" if label else ""
                out.append(f'<circle cx="{axes.px(a):.1f}" cy="{axes.py(b):.1f}" r="4" '
                           f'fill="{c}" fill-opacity="0.8">{tip}</circle>')
        out.append("</svg>")
        return "".join(out)


def power_law_line(scale: float, exponent: float, xs: Any, n: int = 50
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Points along ``y = scale * x^exponent`` over the range of ``xs`` (log-spaced)."""
    xs = np.asarray(xs, dtype=np.float64)
    grid = np.logspace(math.log10(xs.min()), math.log10(xs.max()), n)
    return grid, scale * grid**exponent
