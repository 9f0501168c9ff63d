"""LineChart: loss curves and other series, drawn as SVG in Python with JS hover read-outs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import colors
from ._util import as_array, fmt
from .html import Visual, escape
from .svg import Axes, open_svg, text_width

MAX_POINTS = 1500  # per series in the page; PNG export still uses every point


def _series(name: str, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(spec, tuple) and len(spec) == 2:
        xs = as_array(spec[0], f"series[{name!r}] xs", ndim=1)
        ys = as_array(spec[1], f"series[{name!r}] ys", ndim=1)
    else:  # just ys: x is the index
        ys = as_array(spec, f"series[{name!r}]", ndim=1)
        xs = np.arange(len(ys), dtype=np.float64)
    if len(xs) != len(ys):
        raise ValueError(f"series {name!r} has {len(xs)} xs but {len(ys)} ys; they must match")
    return xs, ys


class LineChart(Visual):
    """One or more lines: ``series = {"train": (steps, losses), "val": (steps, val_losses)}``.

    A value may also be just ``ys`` (x = 0, 1, 2, ...). ``log_y`` needs positive values.
    ``annotate(x, label)`` adds a labelled vertical marker, e.g. the induction bump.
    """

    kind = "line"

    def __init__(
        self,
        series: Mapping[str, Any],
        x_label: str = "step",
        y_label: str = "value",
        title: str | None = None,
        log_y: bool = False,
        annotations: list[tuple[float, str]] | None = None,
    ) -> None:
        super().__init__(title)
        if not isinstance(series, Mapping) or len(series) == 0:
            raise ValueError('series must be a non-empty dict like {"train": (xs, ys)}')
        self.series = {str(k): _series(str(k), v) for k, v in series.items()}
        self.x_label, self.y_label, self.log_y = x_label, y_label, log_y
        ys = np.concatenate([y for _, y in self.series.values()])
        finite = ys[np.isfinite(ys)]
        if finite.size == 0:
            raise ValueError("series contain no finite y values; nothing to plot")
        if log_y and (finite <= 0).any():
            raise ValueError(
                f"log_y=True needs positive y values but the minimum is {finite.min():g}; "
                "use log_y=False or drop non-positive points"
            )
        self.annotations: list[tuple[float, str]] = []
        for x, label in annotations or []:
            self.annotate(x, label)

    def annotate(self, x: float, label: str) -> LineChart:
        """Add a dashed vertical line at ``x`` with ``label``; returns self for chaining."""
        if not math.isfinite(float(x)):
            raise ValueError(f"annotation x must be a finite number; got {x!r}")
        self.annotations.append((float(x), str(label)))
        return self

    def _ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs = np.concatenate([x for x, _ in self.series.values()])
        ys = np.concatenate([y for _, y in self.series.values()])
        xs = np.concatenate([xs[np.isfinite(xs)], [a for a, _ in self.annotations]])
        ys = ys[np.isfinite(ys)]
        lo, hi = float(ys.min()), float(ys.max())
        if self.log_y:
            return (float(xs.min()), float(xs.max())), (lo / 1.15, hi * 1.15)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        return (float(xs.min()), float(xs.max())), (lo - pad, hi + pad)

    def _layout(self) -> tuple[Axes, float, float, list[tuple[str, float]]]:
        width, left, right = 720.0, 70.0, 20.0
        # Legend entries flow left to right above the plot, wrapping if needed.
        legend, x, row = [], 0.0, 0
        for name in self.series:
            w = 26 + text_width(name, 12) + 16
            if x + w > width - left - right and x > 0:
                x, row = 0.0, row + 1
            legend.append((name, x, row))
            x += w
        top = 16 + 18 * (row + 1) + (14 if self.annotations else 0)
        height = top + 260 + 46
        axes = Axes((left, top, width - left - right, 260), *self._ranges(), log_y=self.log_y)
        return axes, width, height, legend

    def _body(self) -> str:
        axes, width, height, legend = self._layout()
        out = [
            open_svg(width, height, self.title or "line chart").replace(
                "<svg ", '<svg data-gs-owntip="1" ', 1
            )
        ]
        out.append(axes.draw(self.x_label, self.y_label))
        for i, (name, x, row) in enumerate(legend):
            c = colors.PALETTE[i % len(colors.PALETTE)]
            lx, ly = axes.left + x, 14 + 18 * row
            out.append(
                f'<line x1="{lx}" x2="{lx + 20}" y1="{ly}" y2="{ly}" stroke="{c}" '
                f'stroke-width="2.5"/><text x="{lx + 26}" y="{ly + 4}" font-size="12" '
                f'fill="#1d2430">{escape(name)}</text>'
            )
        bottom = axes.top + axes.height
        for ax, label in self.annotations:
            x = axes.px(ax)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axes.top - 4}" y2="{bottom}" '
                f'stroke="#7b5ea7" stroke-dasharray="5 4" stroke-width="1.3"/>'
            )
            anchor = "end" if x > axes.left + axes.width * 0.75 else "start"
            dx = -4 if anchor == "end" else 4
            out.append(
                f'<text x="{x + dx:.1f}" y="{axes.top - 6}" font-size="11" fill="#7b5ea7" '
                f'text-anchor="{anchor}">{escape(label)} ({escape(fmt(ax))})</text>'
            )
        hover = []
        for i, (name, (xs, ys)) in enumerate(self.series.items()):
            c = colors.PALETTE[i % len(colors.PALETTE)]
            if len(xs) > MAX_POINTS:
                idx = np.unique(np.linspace(0, len(xs) - 1, MAX_POINTS).round().astype(int))
                xs, ys = xs[idx], ys[idx]
            d, pen_down = [], False
            hx, hy, hp = [], [], []
            for x, y in zip(xs, ys, strict=True):
                if not (math.isfinite(x) and math.isfinite(y)):
                    pen_down = False  # a gap in the data is a gap in the line
                    continue
                px, py = axes.px(x), axes.py(y)
                d.append(f"{'L' if pen_down else 'M'}{px:.1f},{py:.1f}")
                pen_down = True
                hx.append(float(x))
                hy.append(float(y))
                hp.append(round(px, 1))
            out.append(
                f'<path d="{"".join(d)}" fill="none" stroke="{c}" stroke-width="2" '
                f'stroke-linejoin="round"/>'
            )
            if len(hx) == 1:  # a single point has no line; show it as a dot
                out.append(f'<circle cx="{hp[0]}" cy="{axes.py(hy[0]):.1f}" r="3" fill="{c}"/>')
            hover.append({"name": name, "x": hx, "y": hy, "px": hp})
        out.append(
            f'<line class="gs-guide" x1="0" x2="0" y1="{axes.top}" y2="{bottom}" '
            f'stroke="#8a96a3" stroke-width="1" style="display:none" pointer-events="none"/>'
        )
        out.append("</svg>")
        self._hover = {
            "series": hover,
            "x0": axes.left,
            "x1": axes.left + axes.width,
            "xLabel": self.x_label,
        }
        return "".join(out)

    def _data(self) -> dict[str, Any]:
        # The hover data holds pixel positions, so it comes from the same layout pass as the SVG.
        if not hasattr(self, "_hover"):
            self._body()
        return self._hover
