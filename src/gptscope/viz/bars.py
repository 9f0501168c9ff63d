"""BarChart (labelled values, e.g. top tokens or per-head scores) and Histogram, as SVG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import colors
from ._util import as_array, as_labels, fmt
from .html import Visual, display_label, escape
from .svg import Axes, nice_ticks, open_svg, text_width


class BarChart(Visual):
    """Horizontal bars, one per label, so long labels (tokens) stay readable.

    Negative values grow left from a zero line and are drawn in a second colour.
    """

    kind = "bars"

    def __init__(
        self,
        labels: Sequence[Any],
        values: Any,
        title: str | None = None,
        x_label: str | None = None,
    ) -> None:
        super().__init__(title)
        arr = as_array(values, "values", ndim=1)
        if arr.size == 0:
            raise ValueError("values is empty; pass at least one bar")
        if not np.isfinite(arr).all():
            raise ValueError("values contains NaN or inf; drop or replace those bars first")
        self.values = arr
        self.labels = as_labels(labels, "labels", len(arr))
        self.x_label = x_label

    def _body(self) -> str:
        labels = [display_label(s) for s in self.labels]
        left = min(max(text_width(s) for s in labels) + 14, 220)
        bar_h, gap, top = 18.0, 5.0, 10.0
        plot_w = 720 - left - 60
        height = top + len(labels) * (bar_h + gap) + 44
        lo, hi = min(0.0, float(self.values.min())), max(0.0, float(self.values.max()))
        if lo == hi:
            hi = 1.0
        # Leave room beside the longest bars for their value labels.
        span = hi - lo
        lo, hi = (lo - 0.1 * span if lo < 0 else lo), (hi + 0.1 * span if hi > 0 else hi)
        ticks = nice_ticks(lo, hi, 5)
        lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
        axes = Axes((left, top, plot_w, len(labels) * (bar_h + gap)), (lo, hi), (0, 1))

        def px(v: float) -> float:
            return axes.px(v)

        out = [open_svg(720, height, self.title or "bar chart")]
        b = top + axes.height
        for t in ticks:
            x = px(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{b}" stroke="#edf0f3"/>')
            out.append(
                f'<text x="{x:.1f}" y="{b + 15}" font-size="11" text-anchor="middle" '
                f'fill="#5f6b7a">{escape(fmt(t))}</text>'
            )
        for i, (lab, v) in enumerate(zip(labels, self.values, strict=True)):
            y = top + i * (bar_h + gap) + gap / 2
            x0, x1 = sorted((px(0.0), px(float(v))))
            c = colors.PALETTE[0] if v >= 0 else colors.PALETTE[3]
            tip = f"{lab}\n{fmt(float(v), 4)}"
            out.append(
                f'<text x="{left - 8}" y="{y + bar_h / 2 + 4:.1f}" font-size="12" '
                f'text-anchor="end" fill="#1d2430" xml:space="preserve">{escape(lab)}</text>'
            )
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{bar_h}" fill="{c}" rx="2" data-tip="{escape(tip)}"/>'
            )
            vx, anchor = (x1 + 4, "start") if v >= 0 else (x0 - 4, "end")
            out.append(
                f'<text x="{vx:.1f}" y="{y + bar_h / 2 + 4:.1f}" font-size="11" '
                f'text-anchor="{anchor}" fill="#5f6b7a">{escape(fmt(float(v)))}</text>'
            )
        out.append(
            f'<line x1="{px(0.0):.1f}" x2="{px(0.0):.1f}" y1="{top}" y2="{b}" stroke="#8a96a3"/>'
        )
        if self.x_label:
            out.append(
                f'<text x="{left + plot_w / 2:.1f}" y="{b + 34}" font-size="12" '
                f'text-anchor="middle" fill="#1d2430">{escape(self.x_label)}</text>'
            )
        out.append("</svg>")
        return "".join(out)


class Histogram(Visual):
    """Distribution of ``values`` in ``bins`` bins (an int, or explicit edges).

    Non-finite values are dropped and their number printed on the chart; ``log_y`` makes rare
    tails visible (e.g. SAE feature densities).
    """

    kind = "histogram"

    def __init__(
        self,
        values: Any,
        bins: int | Sequence[float] = 30,
        title: str | None = None,
        log_y: bool = False,
        x_label: str = "value",
    ) -> None:
        super().__init__(title)
        arr = as_array(values, "values").ravel()
        finite = arr[np.isfinite(arr)]
        self.dropped = int(arr.size - finite.size)
        if finite.size == 0:
            raise ValueError("values has no finite numbers; nothing to count")
        if isinstance(bins, int) and bins < 1:
            raise ValueError(f"bins must be a positive int or a list of edges; got {bins}")
        self.counts, self.edges = np.histogram(finite, bins=bins)
        self.log_y, self.x_label = log_y, x_label

    def _body(self) -> str:
        counts, edges = self.counts, self.edges
        top_count = max(int(counts.max()), 1)
        y_range = (0.8, top_count * 1.3) if self.log_y else (0.0, top_count * 1.05)
        axes = Axes((70, 14, 630, 240), (float(edges[0]), float(edges[-1])), y_range, self.log_y)
        out = [open_svg(720, 14 + 240 + 50, self.title or "histogram")]
        out.append(axes.draw(self.x_label, "count (log)" if self.log_y else "count"))
        base = axes.top + axes.height
        for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
            if c <= 0:
                continue
            x0, x1 = axes.px(float(a)), axes.px(float(b))
            y = axes.py(float(c))
            tip = f"[{fmt(float(a), 4)}, {fmt(float(b), 4)})\ncount = {int(c)}"
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.6, 0.6):.1f}" '
                f'height="{max(base - y, 0.5):.1f}" fill="{colors.PALETTE[0]}" '
                f'data-tip="{escape(tip)}"/>'
            )
        if self.dropped:
            out.append(
                f'<text x="700" y="26" font-size="11" text-anchor="end" fill="#a61b1b">'
                f"{self.dropped} non-finite value(s) not shown</text>"
            )
        out.append("</svg>")
        return "".join(out)
