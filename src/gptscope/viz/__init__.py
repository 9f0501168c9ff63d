"""Look inside: self-contained HTML visuals that work offline, plus PNG export.

Every visual takes numpy arrays or torch tensors and token strings, shows itself in Jupyter
(``_repr_html_``), returns an HTML fragment (``.html()``) and saves a standalone page
(``.save(path)``). ``Report`` collects several into one HTML file.

    from gptscope.viz import AttentionPatterns, LineChart, Report, save_png

    report = Report("Layer 0")
    report.add(AttentionPatterns(pattern, tokens), caption="pattern is [head, query, key]")
    report.add(LineChart({"train": (steps, losses)}, "step", "loss").annotate(800, "bump"))
    report.save("layer0.html")          # one file, works offline
    save_png(LineChart({"train": losses}), "loss.png")  # matplotlib (or chromium)
"""

from .attention import AttentionPatterns
from .bars import BarChart, Histogram
from .browser import BrowserResult, ChromiumNotFound, find_chromium, render_in_browser
from .curves import LineChart
from .heatmap import Heatmap
from .html import Visual
from .logit_lens import LogitLensTable
from .png import save_png
from .report import Report
from .scatter import ScatterChart
from .tokens import ColoredTokens

__all__ = [
    "AttentionPatterns",
    "BarChart",
    "BrowserResult",
    "ChromiumNotFound",
    "ColoredTokens",
    "Heatmap",
    "Histogram",
    "LineChart",
    "LogitLensTable",
    "Report",
    "ScatterChart",
    "Visual",
    "find_chromium",
    "render_in_browser",
    "save_png",
]
