"""PNG export for papers and slides.

matplotlib draws heat maps, attention patterns, line charts, bar charts and histograms (it is
imported lazily and is not a runtime dependency). Other visuals, or any visual when matplotlib
is missing, are screenshotted with headless Chromium if one is installed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gptscope.utils.atomic import write_bytes

from . import colors
from .attention import AttentionPatterns
from .bars import BarChart, Histogram
from .browser import find_chromium, render_in_browser
from .curves import LineChart
from .heatmap import Heatmap
from .html import Visual, display_label, display_token


def _cmap(diverging: bool) -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    stops = colors.DIVERGING if diverging else colors.SEQUENTIAL
    return LinearSegmentedColormap.from_list("gptscope", stops)


def _heatmap(fig: Any, v: Heatmap) -> None:
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(
        v.values,
        cmap=_cmap(v.diverging),
        vmin=v.vmin,
        vmax=v.vmax,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(
        range(len(v.col_labels)), v.col_labels, rotation=90 if len(v.col_labels) > 12 else 0
    )
    ax.set_yticks(range(len(v.row_labels)), v.row_labels)
    if v.x_label:
        ax.set_xlabel(v.x_label)
    if v.y_label:
        ax.set_ylabel(v.y_label)
    fig.colorbar(im, ax=ax)


def _attention(fig: Any, v: AttentionPatterns) -> None:
    heads = v.pattern.shape[0]
    cols = int(np.ceil(np.sqrt(heads)))
    rows = int(np.ceil(heads / cols))
    labels = [display_token(t) for t in v.raw_tokens]
    for h in range(heads):
        ax = fig.add_subplot(rows, cols, h + 1)
        ax.imshow(
            v.pattern[h], cmap=_cmap(v.diverging), vmin=v.vmin, vmax=v.vmax, interpolation="nearest"
        )
        ax.set_title(v.head_names[h], fontsize=9)
        if heads == 1 and len(labels) <= 40:  # token labels only fit on a single big map
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
            ax.set_xlabel("key")
            ax.set_ylabel("query")
        else:
            ax.set_xticks([])
            ax.set_yticks([])


def _line(fig: Any, v: LineChart) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, (xs, ys)) in enumerate(v.series.items()):
        ax.plot(xs, ys, label=name, color=colors.PALETTE[i % len(colors.PALETTE)], linewidth=1.6)
    for x, label in v.annotations:
        ax.axvline(x, color="#7b5ea7", linestyle="--", linewidth=1.2)
        ax.annotate(
            label,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            color="#7b5ea7",
            fontsize=9,
        )
    if v.log_y:
        ax.set_yscale("log")
    ax.set_xlabel(v.x_label)
    ax.set_ylabel(v.y_label)
    ax.grid(alpha=0.3)
    if len(v.series) > 1:
        ax.legend(frameon=False)


def _bars(fig: Any, v: BarChart) -> None:
    ax = fig.add_subplot(1, 1, 1)
    labels = [display_label(s) for s in v.labels]
    ys = np.arange(len(labels))
    cols = [colors.PALETTE[0] if x >= 0 else colors.PALETTE[3] for x in v.values]
    ax.barh(ys, v.values, color=cols)
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()  # first label on top, as in the HTML version
    ax.axvline(0, color="#8a96a3", linewidth=0.8)
    if v.x_label:
        ax.set_xlabel(v.x_label)


def _hist(fig: Any, v: Histogram) -> None:
    ax = fig.add_subplot(1, 1, 1)
    ax.stairs(v.counts, v.edges, fill=True, color=colors.PALETTE[0])
    if v.log_y:
        ax.set_yscale("log")
    ax.set_xlabel(v.x_label)
    ax.set_ylabel("count")


_MPL = {
    Heatmap: _heatmap,
    AttentionPatterns: _attention,
    LineChart: _line,
    BarChart: _bars,
    Histogram: _hist,
}


def _figsize(visual: Visual) -> tuple[float, float]:
    if isinstance(visual, AttentionPatterns):
        heads = visual.pattern.shape[0]
        cols = int(np.ceil(np.sqrt(heads)))
        rows = int(np.ceil(heads / cols))
        return (7.0, 7.0) if heads == 1 else (2.2 * cols, 2.3 * rows)
    if isinstance(visual, Heatmap):
        r, c = visual.values.shape
        return (min(max(c * 0.45 + 2.5, 5), 14), min(max(r * 0.35 + 1.5, 3), 12))
    if isinstance(visual, BarChart):
        return (7.0, max(2.5, 0.3 * len(visual.labels) + 1))
    return (7.0, 4.0)


def _with_matplotlib(visual: Visual, path: Path, dpi: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot, so no global state or GUI backend is touched.
    fig = Figure(figsize=_figsize(visual), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    _MPL[type(visual)](fig, visual)
    if visual.title:
        fig.suptitle(visual.title)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figure.png"
        fig.savefig(out, dpi=dpi)
        write_bytes(path, out.read_bytes())


def _with_chromium(visual: Visual, path: Path, window_size: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "visual.html"
        visual.save(page)
        shot = Path(tmp) / "shot.png"
        result = render_in_browser(page, screenshot=shot, window_size=window_size)
        if result.errors:
            raise RuntimeError(f"the visual failed to draw: {result.errors[:3]}")
        write_bytes(path, shot.read_bytes())


def save_png(
    visual: Visual,
    path: str | os.PathLike[str],
    dpi: int = 150,
    window_size: tuple[int, int] = (1100, 900),
) -> Path:
    """Write ``visual`` as a PNG (atomically) and return the path.

    Uses matplotlib when installed and the visual type supports it, otherwise headless
    Chromium. Raises ``ImportError`` naming ``pip install matplotlib`` when neither works.
    """
    if not isinstance(visual, Visual):
        raise ValueError(f"save_png needs a gptscope.viz visual, got {type(visual).__name__}")
    if hasattr(visual, "n_visuals"):
        raise ValueError("save_png takes one visual, not a Report; use Report.save() for HTML")
    path = Path(path)
    try:
        import matplotlib  # noqa: F401

        have_mpl = True
    except ImportError:
        have_mpl = False
    if have_mpl and type(visual) in _MPL:
        _with_matplotlib(visual, path, dpi)
    elif find_chromium() is not None:
        _with_chromium(visual, path, window_size)
    elif type(visual) in _MPL:
        raise ImportError(
            f"PNG export of {type(visual).__name__} needs matplotlib: pip install matplotlib "
            "(or install chromium for a browser screenshot)"
        )
    else:
        raise ImportError(
            f"PNG export of {type(visual).__name__} needs a headless Chromium "
            "(apt-get install chromium); matplotlib cannot draw this visual"
        )
    return path
