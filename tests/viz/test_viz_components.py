"""Unit tests for gptscope.viz: markup, escaping, validation, atomic writes, PNG export."""

from __future__ import annotations

import json
import os
import re
import struct
import sys

import numpy as np
import pytest

from gptscope.viz import (
    AttentionPatterns,
    BarChart,
    ColoredTokens,
    Heatmap,
    Histogram,
    LineChart,
    LogitLensTable,
    Report,
    save_png,
)
from gptscope.viz import png as png_mod
from gptscope.viz.html import display_label, display_token, json_for_script

HOSTILE = ["</script><script>alert(1)</script>", '"q"', "a&b", "\n", " ", "", "<img src=x>"]
RNG = np.random.default_rng(0)


def _attention(tokens=None):
    tokens = tokens or ["a", " b", "c", "d"]
    t = len(tokens)
    p = np.tril(RNG.random((2, t, t)))
    return AttentionPatterns(p / p.sum(-1, keepdims=True), tokens, head_names=["L0H0", "L0H1"])


def _lens(tokens=None):
    tokens = tokens or ["x", "y"]
    n = len(tokens)
    top = [[[tokens[p], "z"] for p in range(n)] for _ in range(3)]
    return LogitLensTable(
        ["emb", "L0", "L1"], tokens, top, RNG.random((3, n, 2)), target_probs=RNG.random((3, n))
    )


FACTORIES = {
    "attention": _attention,
    "heatmap": lambda t=None: Heatmap(RNG.normal(size=(2, 3)), t and t[:2] or None, None),
    "lens": _lens,
    "tokens": lambda t=None: ColoredTokens(t or ["a", "b"], RNG.normal(size=len(t or "ab"))),
    "line": lambda t=None: LineChart({"train": ([0, 1, 2], [3.0, 2.0, 1.5])}),
    "bars": lambda t=None: BarChart(t or ["a", "b"], RNG.normal(size=len(t or "ab"))),
    "hist": lambda t=None: Histogram(RNG.normal(size=200), bins=10),
}


def _png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", FACTORIES)
def test_fragment_has_unique_div_and_draw_script(name):
    v = FACTORIES[name]()
    a, b = v.html(), v.html()
    ida = re.search(r'<div class="gs-visual[^"]*" id="(gs-[0-9a-f]+)"', a).group(1)
    idb = re.search(r'<div class="gs-visual[^"]*" id="(gs-[0-9a-f]+)"', b).group(1)
    assert ida != idb, "the same visual twice on one page must not share an id"
    assert f'gscope.draw("{ida}")' in a
    full = v._repr_html_()
    assert "window.gscope" in full and "<style>" in full and ida not in full


@pytest.mark.parametrize("name", ["attention", "heatmap", "lens", "tokens", "bars"])
def test_hostile_tokens_cannot_break_the_page(name):
    toks = HOSTILE[:2] if name == "heatmap" else HOSTILE
    html = FACTORIES[name](toks).html()
    # Only our own script elements exist: one JSON block (if any) and one draw call.
    expected = 2 if 'type="application/json"' in html else 1
    assert html.count("<script") == expected
    assert "alert(1)</script>" not in html
    assert "<img" not in html
    for m in re.finditer(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        json.loads(m.group(1))  # still valid JSON after escaping


def test_tokens_are_shown_visibly():
    assert display_token(" the") == "\u00b7the"
    assert display_token("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert display_token("") == "\u2205"
    assert display_token("\x00") == "\\x00"
    assert display_token(" x", show_spaces=False) == " x"
    assert display_label("layer 0") == "layer 0"
    assert display_label(" the ") == "\u00b7the\u00b7"
    data = _attention(["\n", " ", "<b>"])._data()
    assert data["tokens"] == ["\\n", "\u00b7", "<b>"]  # escaped later, at embedding time


def test_json_for_script_escapes_closing_tags():
    payload = {"t": "</script><!-- \u2028 &"}
    text = json_for_script(payload)
    assert "</" not in text and "<!--" not in text and "\u2028" not in text
    assert json.loads(text) == payload


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    pat = torch.softmax(torch.randn(3, 4, 4, dtype=torch.bfloat16), -1)
    v = AttentionPatterns(pat, list("abcd"))
    assert v.pattern.shape == (3, 4, 4)
    Heatmap(torch.randn(2, 2, requires_grad=True))  # grad tensors are detached, not rejected


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: AttentionPatterns(np.ones((2, 3, 3)), ["a", "b"]), ["len(tokens)"]),
        (lambda: AttentionPatterns(np.ones((2, 1, 3, 3)), ["a", "b", "c"]), ["pattern[0]"]),
        (lambda: AttentionPatterns(np.ones((3, 3)), "abc"), ["list of strings"]),
        (lambda: AttentionPatterns(np.ones((2, 3, 3)), list("abc"), max_cells=10), ["max_cells"]),
        (lambda: Heatmap(np.ones((2, 3)), ["a"]), ["row_labels", "2"]),
        (lambda: Heatmap(np.ones((2, 2, 2))), ["2-D"]),
        (lambda: Heatmap([["x"]]), ["numeric"]),
        (lambda: ColoredTokens(["a"], [1.0, 2.0]), ["len(tokens)"]),
        (lambda: ColoredTokens.from_examples([(["a"], [1.0]), (["b"], [[1.0, 2.0]])]), ["same k"]),
        (lambda: ColoredTokens.from_examples([]), ["empty"]),
        (lambda: LineChart({}), ["non-empty"]),
        (lambda: LineChart({"a": ([1, 2], [1.0])}), ["must match"]),
        (lambda: LineChart({"a": [1.0, -1.0]}, log_y=True), ["log_y"]),
        (lambda: LineChart({"a": [1.0]}).annotate(float("nan"), "x"), ["finite"]),
        (lambda: BarChart(["a"], [float("nan")]), ["NaN"]),
        (lambda: Histogram([float("nan")]), ["finite"]),
        (lambda: Histogram([1.0], bins=0), ["bins"]),
        (lambda: LogitLensTable(["L0"], ["a"], [[["x"]]], np.ones((1, 2, 1))), ["tokens", "2"]),
        (lambda: LogitLensTable(["L0"], ["a"], [[["x", "y"]]], np.ones((1, 1, 1))), ["1 tokens"]),
        (lambda: LogitLensTable(["L0"], ["a"], [], np.ones((1, 1, 1))), ["top_tokens"]),
        (
            lambda: LogitLensTable(["L0"], ["a"], [[["x"]]], np.ones((1, 1, 1)), color_by="target"),
            ["target_probs"],
        ),
        (lambda: Report().add("<p>"), ["add_html"]),
        (lambda: Report().add_table([["a", "b"]], header=["x"]), ["header"]),
    ],
)
def test_bad_input_says_what_to_do(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for w in words:
        assert w in str(info.value)


def test_heatmap_scale_choice():
    signed = Heatmap(np.array([[-1.0, 3.0]]))
    assert signed.diverging and signed.vmin == -3.0 and signed.vmax == 3.0
    positive = Heatmap(np.array([[0.2, 0.9]]))
    assert not positive.diverging and (positive.vmin, positive.vmax) == (0.2, 0.9)
    fixed = Heatmap(np.array([[0.2, 0.9]]), vmin=0, vmax=1, diverging=False)
    assert (fixed.vmin, fixed.vmax) == (0, 1)
    clipped = Heatmap(np.array([[-5.0, 2.0]]), vmax=1.0)
    assert (clipped.vmin, clipped.vmax) == (-1.0, 1.0)
    nan = Heatmap(np.array([[np.nan, 1.0]])).html()
    assert "value = nan" in nan


def test_nan_attention_becomes_json_null():
    p = np.full((1, 2, 2), 0.5)
    p[0, 0, 1] = np.nan
    html = AttentionPatterns(p, ["a", "b"]).html()
    data = json.loads(re.search(r'application/json"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert data["pattern"][0][0] == [0.5, None]


def test_linechart_thins_long_series_but_keeps_gaps():
    xs = np.arange(20000)
    ys = np.exp(-xs / 5000.0)
    ys[100] = np.nan
    chart = LineChart({"loss": (xs, ys)}, log_y=True).annotate(5000, "bump")
    html = chart.html()
    path = re.search(r'<path d="([^"]+)"', html).group(1)
    assert path.count("L") + path.count("M") <= 1500
    assert "bump" in html
    assert chart._data()["series"][0]["name"] == "loss"


def test_report_is_one_self_contained_file(tmp_path):
    r = Report("R <&>", subtitle="sub")
    r.add_heading("Heads").add_text(
        "**bold** `<code>` [ok](https://x.org) [no](javascript:alert(1))"
    )
    for make in FACTORIES.values():
        r.add(make(), caption="cap <i>")
    r.add_table([["<b>", 1.234567, None]], header=["a", "b", "c"]).add_html("<hr>")
    out = r.save(tmp_path / "sub" / "report.html")
    html = out.read_text()
    assert r.n_visuals == len(FACTORIES)
    assert html.count("gs.renderers.attention = function") == 1  # runtime inlined once
    assert "<title>R &lt;&amp;&gt;</title>" in html
    assert "<strong>bold</strong>" in html and "<code>&lt;code&gt;</code>" in html
    assert '<a href="https://x.org">ok</a>' in html and 'href="javascript' not in html
    assert "cap &lt;i&gt;" in html and "<td>&lt;b&gt;</td><td>1.235</td><td></td>" in html
    # Links are fine; anything the browser would *fetch* (scripts, styles, fonts, images) is not.
    assert not re.search(r"src=|<link|@import|url\((?!#)", html), "no external resources"
    assert os.listdir(out.parent) == ["report.html"], "temp files must not be left behind"


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "page.html"
    target.write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        FACTORIES["heatmap"]().save(target)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["page.html"]


@pytest.mark.parametrize("name", ["attention", "heatmap", "line", "bars", "hist"])
def test_save_png_with_matplotlib(tmp_path, name):
    pytest.importorskip("matplotlib")
    v = FACTORIES[name]()
    v.title = "A title"
    out = save_png(v, tmp_path / f"{name}.png", dpi=100)
    w, h = _png_size(out)
    fw, fh = png_mod._figsize(v)
    assert abs(w - fw * 100) <= 2 and abs(h - fh * 100) <= 2


def test_save_png_without_matplotlib_or_chromium_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    monkeypatch.setattr(png_mod, "find_chromium", lambda: None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        save_png(FACTORIES["heatmap"](), tmp_path / "x.png")
    with pytest.raises(ImportError, match="chromium"):
        save_png(FACTORIES["lens"](), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_scatter_chart_draws_points_lines_and_hover_texts():
    from gptscope.viz import ScatterChart
    from gptscope.viz.scatter import power_law_line

    xs = [1e10, 1e11, 1e12]
    chart = ScatterChart({"runs": (xs, [3.0, 2.5, 2.1], ["a", "b", "c"]),
                          "bad": ([0.0, 1e11], [1.0, float("nan")])},
                         {"fit": power_law_line(30.0, -0.1, xs)},
                         "C", "loss", log_x=True, log_y=True)
    svg = chart.html()
    assert svg.count("<circle") == 3 + 2  # three runs (the bad series has none) + legend dots
    assert "<title>b</title>" in svg and 'stroke-dasharray="6 4"' in svg
    assert "1e11" in svg  # a decade tick on the log x axis
    with pytest.raises(ValueError, match="one of each per point"):
        ScatterChart({"runs": ([1.0, 2.0], [1.0, 2.0], ["only one"])})
    with pytest.raises(ValueError, match="no finite point"):
        ScatterChart({"runs": ([0.0], [1.0])}, log_x=True)
