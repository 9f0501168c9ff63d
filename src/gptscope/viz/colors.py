"""Colour scales shared by the Python (SVG, matplotlib) and JavaScript renderers.

The stops live here once and are handed to the JS runtime as JSON, so a heat map drawn in
Python and an attention pattern drawn in the browser use exactly the same colours.
"""

from __future__ import annotations

import math

# Light to dark blue: zero stays white so sparse attention reads as empty.
SEQUENTIAL = ["#ffffff", "#dbe8f6", "#9ecae1", "#4a98c9", "#1764ab", "#08306b"]
# Blue (negative) - white (zero) - red (positive), close to ColorBrewer RdBu.
DIVERGING = ["#2166ac", "#67a9cf", "#d1e5f0", "#ffffff", "#fddbc7", "#ef8a62", "#b2182b"]
# Distinct line/bar colours that stay distinguishable when printed in grey.
PALETTE = ["#1f6fb4", "#e3742f", "#2a9d57", "#c73e4a", "#7b5ea7", "#8c6d31", "#d45fb0", "#5b6770"]
NAN_COLOR = "#d9d9d9"


def _hex_to_rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def _interp(stops: list[str], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    a, b = _hex_to_rgb(stops[i]), _hex_to_rgb(stops[i + 1])
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))  # type: ignore[return-value]


def color_for(value: float, vmin: float, vmax: float, diverging: bool) -> str:
    """Hex colour for ``value``. Diverging scales are centred on 0 (vmin = -vmax)."""
    if value is None or math.isnan(value):
        return NAN_COLOR
    if diverging:
        m = max(abs(vmin), abs(vmax)) or 1.0
        t = 0.5 + 0.5 * value / m
        r, g, b = _interp(DIVERGING, t)
    else:
        span = (vmax - vmin) or 1.0
        r, g, b = _interp(SEQUENTIAL, (value - vmin) / span)
    return f"#{r:02x}{g:02x}{b:02x}"


def text_color(background: str) -> str:
    """Black or white text, whichever stays readable on ``background``."""
    r, g, b = _hex_to_rgb(background)
    luminance = (0.299 * r + 0.587 * g + 0.114 * b) / 255
    return "#111111" if luminance > 0.55 else "#ffffff"
