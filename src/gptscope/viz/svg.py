"""Tiny helpers for server-side SVG: tick placement, label sizes, colour-bar legends."""

from __future__ import annotations

import math

from . import colors
from ._util import fmt
from .html import escape, new_id

CHAR_W = 0.6  # rough glyph width / font size for system sans fonts; good enough for layout


def text_width(text: str, size: float = 11) -> float:
    return len(text) * size * CHAR_W


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten in [lo, hi]; adds 2x and 5x when the range spans under two decades, and
    gives evenly spaced round values when it spans under a factor of 5 (a loss axis from 1.8
    to 2.8 would otherwise show one tick)."""
    if hi < 5 * lo:
        return [t for t in nice_ticks(lo, hi, 4) if t > 0]
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if b - a <= 2 else (1,)
    out = [m * 10.0**e for e in range(a, b + 1) for m in mults]
    return [t for t in out if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def open_svg(width: float, height: float, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{escape(label)}">'
    )


def color_bar(x: float, y: float, h: float, vmin: float, vmax: float, diverging: bool) -> str:
    """A vertical gradient legend with min / (0) / max labels, drawn at (x, y)."""
    gid = new_id("gsg")
    if diverging:
        m = max(abs(vmin), abs(vmax)) or 1.0
        vmin, vmax = -m, m
    stops = "".join(
        f'<stop offset="{i / 20:.2f}" stop-color="{colors.color_for(vmax - (vmax - vmin) * i / 20, vmin, vmax, diverging)}"/>'  # noqa: E501
        for i in range(21)
    )
    parts = [
        f'<defs><linearGradient id="{gid}" x1="0" y1="0" x2="0" y2="1">{stops}'
        "</linearGradient></defs>",
        f'<rect x="{x}" y="{y}" width="12" height="{h}" fill="url(#{gid})" stroke="#c9d1da"/>',
    ]
    labels = [(vmax, y), (vmin, y + h)]
    if diverging:
        labels.append((0.0, y + h / 2))
    for v, ty in labels:
        parts.append(
            f'<text x="{x + 16}" y="{ty + 4:.1f}" font-size="10" fill="#5f6b7a">'
            f"{escape(fmt(v))}</text>"
        )
    return "".join(parts)


class Axes:
    """Maps data to pixels inside a plot box and draws the gridlines, ticks and axis labels."""

    def __init__(
        self,
        box: tuple[float, float, float, float],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        log_y: bool = False,
        log_x: bool = False,
    ) -> None:
        self.left, self.top, self.width, self.height = box
        self.log_x = log_x
        self.x0, self.x1 = (math.log10(v) for v in x_range) if log_x else x_range
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        self.log_y = log_y
        y0, y1 = y_range
        if log_y:
            y0, y1 = math.log10(y0), math.log10(y1)
        if y1 == y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        self.y0, self.y1 = y0, y1

    def px(self, x: float) -> float:
        if self.log_x:
            x = math.log10(x)
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def py(self, y: float) -> float:
        if self.log_y:
            y = math.log10(y)
        return self.top + self.height - (y - self.y0) / (self.y1 - self.y0) * self.height

    def draw(
        self,
        x_label: str | None,
        y_label: str | None,
        x_ticks: list[float] | None = None,
        x_tick_labels: list[str] | None = None,
    ) -> str:
        out = []
        if self.log_y:
            yt = log_ticks(10**self.y0, 10**self.y1)
        else:
            yt = nice_ticks(self.y0, self.y1, 5)
        r = self.left + self.width
        b = self.top + self.height
        for t in yt:
            y = self.py(t)
            out.append(
                f'<line x1="{self.left}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#edf0f3"/>'
            )
            out.append(
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
                f'fill="#5f6b7a">{escape(fmt(t))}</text>'
            )
        if x_ticks is None and self.log_x:
            x_ticks = log_ticks(10**self.x0, 10**self.x1)
        elif x_ticks is None:
            x_ticks = nice_ticks(self.x0, self.x1, 6)
        labels = x_tick_labels or [fmt(t) for t in x_ticks]
        for t, lab in zip(x_ticks, labels, strict=True):
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{b}" y2="{b + 4}" stroke="#8a96a3"/>')
            out.append(
                f'<text x="{x:.1f}" y="{b + 16}" font-size="11" text-anchor="middle" '
                f'fill="#5f6b7a">{escape(lab)}</text>'
            )
        out.append(f'<line x1="{self.left}" x2="{r}" y1="{b}" y2="{b}" stroke="#8a96a3"/>')
        out.append(
            f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" y2="{b}" stroke="#8a96a3"/>'
        )
        if x_label:
            out.append(
                f'<text x="{self.left + self.width / 2:.1f}" y="{b + 34}" font-size="12" '
                f'text-anchor="middle" fill="#1d2430">{escape(x_label)}</text>'
            )
        if y_label:
            out.append(
                f'<text transform="translate({self.left - 48},{self.top + self.height / 2:.1f}) '
                f'rotate(-90)" font-size="12" text-anchor="middle" fill="#1d2430">'
                f"{escape(y_label)}</text>"
            )
        return "".join(out)
