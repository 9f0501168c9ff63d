"""Heatmap: a labelled [rows, cols] grid, e.g. head scores [layer, head] or patching maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import colors
from ._util import as_array, default_labels, finite_range, fmt
from .html import Visual, display_label, escape
from .svg import color_bar, open_svg, text_width


class Heatmap(Visual):
    """Colour-coded matrix with hover values.

    ``diverging=None`` picks a blue-white-red scale centred at 0 when the data has both signs,
    and a white-to-blue scale otherwise. ``vmin``/``vmax`` fix the range (e.g. 0..1 for
    probabilities) so several maps can be compared.
    """

    kind = "heatmap"

    def __init__(
        self,
        values: Any,
        row_labels: Sequence[Any] | None = None,
        col_labels: Sequence[Any] | None = None,
        title: str | None = None,
        diverging: bool | None = None,
        *,
        x_label: str | None = None,
        y_label: str | None = None,
        vmin: float | None = None,
        vmax: float | None = None,
        show_values: bool | None = None,
    ) -> None:
        super().__init__(title)
        arr = as_array(values, "values", ndim=(1, 2))
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.size == 0:
            raise ValueError(f"values is empty (shape {arr.shape}); pass at least one cell")
        self.values = arr
        self.row_labels = [
            display_label(s) for s in default_labels(row_labels, arr.shape[0], "row_labels")
        ]
        self.col_labels = [
            display_label(s) for s in default_labels(col_labels, arr.shape[1], "col_labels")
        ]
        lo, hi = finite_range(arr)
        if diverging is None:
            diverging = lo < 0 < hi
        self.diverging = bool(diverging)
        if self.diverging:
            # A caller-given bound fixes the scale (values beyond it saturate); else fit the data.
            fixed = vmin is not None or vmax is not None
            m = max(abs(vmin or 0), abs(vmax or 0)) if fixed else max(abs(lo), abs(hi))
            m = m or 1.0
            lo, hi = -m, m
        else:
            lo = lo if vmin is None else vmin
            hi = hi if vmax is None else vmax
        if hi < lo:
            raise ValueError(f"vmax ({hi}) is below vmin ({lo}); swap them")
        self.vmin, self.vmax = lo, hi
        self.x_label, self.y_label = x_label, y_label
        self.show_values = show_values

    def _body(self) -> str:
        rows, cols = self.values.shape
        cw = min(max(640 / cols, 14), 46)
        ch = min(max(cw, 14), 32)
        left = max(text_width(s) for s in self.row_labels) + 10 + (18 if self.y_label else 0)
        rotate = max(len(s) for s in self.col_labels) > 3 or cw < 24
        top = (max(text_width(s) for s in self.col_labels) + 10) if rotate else 18
        top = min(top, 120) + (18 if self.x_label else 0)
        gw, gh = cw * cols, ch * rows
        bar_h = max(min(gh, 220), 60)
        width, height = left + gw + 84, top + max(gh, bar_h) + 10
        show = (
            self.show_values if self.show_values is not None else (cw >= 34 and rows * cols <= 400)
        )
        out = [open_svg(width, height, self.title or "heatmap")]
        if self.x_label:
            out.append(
                f'<text x="{left + gw / 2:.1f}" y="13" font-size="12" text-anchor="middle" '
                f'fill="#5f6b7a">{escape(self.x_label)}</text>'
            )
        if self.y_label:
            out.append(
                f'<text transform="translate(12,{top + gh / 2:.1f}) rotate(-90)" font-size="12" '
                f'text-anchor="middle" fill="#5f6b7a">{escape(self.y_label)}</text>'
            )
        for j, lab in enumerate(self.col_labels):
            x = left + (j + 0.5) * cw
            if rotate:
                out.append(
                    f'<text transform="translate({x + 4:.1f},{top - 6:.1f}) rotate(-90)" '
                    f'font-size="11" fill="#1d2430" xml:space="preserve">{escape(lab)}</text>'
                )
            else:
                out.append(
                    f'<text x="{x:.1f}" y="{top - 6:.1f}" font-size="11" text-anchor="middle" '
                    f'fill="#1d2430" xml:space="preserve">{escape(lab)}</text>'
                )
        for i, lab in enumerate(self.row_labels):
            y = top + (i + 0.5) * ch + 4
            out.append(
                f'<text x="{left - 6:.1f}" y="{y:.1f}" font-size="11" text-anchor="end" '
                f'fill="#1d2430" xml:space="preserve">{escape(lab)}</text>'
            )
        for i in range(rows):
            for j in range(cols):
                v = float(self.values[i, j])
                fill = colors.color_for(v, self.vmin, self.vmax, self.diverging)
                tip = f"{self.row_labels[i]} / {self.col_labels[j]}\nvalue = {fmt(v, 4)}"
                x, y = left + j * cw, top + i * ch
                out.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{cw:.1f}" height="{ch:.1f}" '
                    f'fill="{fill}" stroke="#fff" stroke-width="0.5" data-tip="{escape(tip)}"/>'
                )
                if show:
                    out.append(
                        f'<text x="{x + cw / 2:.1f}" y="{y + ch / 2 + 4:.1f}" font-size="10" '
                        f'text-anchor="middle" pointer-events="none" '
                        f'fill="{colors.text_color(fill) if np.isfinite(v) else "#111111"}">'
                        f"{escape(fmt(v, 2))}</text>"
                    )
        out.append(color_bar(left + gw + 14, top, bar_h, self.vmin, self.vmax, self.diverging))
        out.append("</svg>")
        return "".join(out)
