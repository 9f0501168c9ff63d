"""Render every visual in headless Chromium and check that the page really works.

The page's runtime writes JavaScript errors into <pre id="gs-errors"> and counts drawn visuals
in data-gs-rendered; Chromium's console log is checked for "Uncaught" as well. Without
Chromium these tests skip locally but FAIL when $CI is set, so CI cannot silently skip them.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct

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
    render_in_browser,
    save_png,
)

# A token that would run script if it were ever inserted as HTML instead of text.
XSS = '<img src=x onerror="document.body.dataset.pwned=1">'
TOKENS = [
    "<|bos|>",
    " The",
    " cat",
    " sat",
    "\n",
    "</script>",
    XSS,
    ' "q"',
    " &amp;",
    " The",
    " cat",
]


def _png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return struct.unpack(">II", data[16:24])


def _keep(path) -> None:
    """Copy an artifact to $GPTSCOPE_ARTIFACTS (if set) so people can look at it."""
    dest = os.environ.get("GPTSCOPE_ARTIFACTS")
    if dest:
        os.makedirs(dest, exist_ok=True)
        shutil.copy(path, dest)


def full_report() -> Report:
    rng = np.random.default_rng(0)
    t, heads = len(TOKENS), 4
    scores = rng.normal(size=(heads, t, t)) * 2
    scores[:, np.triu(np.ones((t, t), bool), 1)] = -np.inf
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    k = 3
    top = [[[f" t{layer}{p}{j}" for j in range(k)] for p in range(5)] for layer in range(3)]
    top[0][0][0] = XSS
    probs = -np.sort(-rng.dirichlet(np.ones(6), size=(3, 5))[..., :k], -1)
    steps = np.arange(0, 1000, 5)
    loss = 3 * np.exp(-steps / 300) + 1.4 + rng.normal(scale=0.04, size=len(steps))

    r = Report("Every gptscope visual", subtitle="browser test")
    r.add_heading("Attention").add_text("Hover a **token**; `</script>` stays text.")
    r.add(AttentionPatterns(pattern, TOKENS, [f"L0H{h}" for h in range(heads)]), caption="L0")
    r.add(
        Heatmap(
            rng.normal(size=(3, 6)),
            ["L0", "L1", "L2"],
            None,
            "Head scores",
            x_label="head",
            y_label="layer",
        )
    )
    r.add(Heatmap(rng.random((3, t)), ["L0", "L1", "L2"], TOKENS, "Patching"))
    r.add(
        LogitLensTable(
            ["embed", "L0", "L1"],
            TOKENS[:5],
            top,
            probs,
            target_probs=rng.random((3, 5)),
            target_tokens=TOKENS[1:6],
        )
    )
    r.add(ColoredTokens(TOKENS, rng.normal(size=(t, 2)), "Neurons", value_names=["n0", "n1"]))
    r.add(
        ColoredTokens.from_examples(
            [(TOKENS[:6], rng.random(6)), (TOKENS[3:], rng.random(t - 3))], title="Top examples"
        )
    )
    r.add(
        LineChart(
            {"train": (steps, loss), "val": (steps[::4], loss[::4] + 0.1)},
            "step",
            "loss",
            "Loss",
            annotations=[(400, "induction bump")],
        )
    )
    r.add(BarChart(TOKENS[:5], [0.5, -0.2, 0.1, 0.3, -0.05], "Logit attribution"))
    r.add(Histogram(rng.lognormal(size=2000), 30, "Feature density", log_y=True))
    r.add_table([["heads", heads], ["tokens", t]], header=["what", "count"])
    return r


def test_report_with_every_visual_draws_without_errors(chromium, tmp_path):
    report = full_report()
    page = report.save(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    result = render_in_browser(page, screenshot=shot, window_size=(1200, 1600))
    assert result.errors == [], f"JavaScript errors: {result.errors}"
    assert not [ln for ln in result.console if "Uncaught" in ln]
    assert result.rendered == report.n_visuals == 9
    dom = result.dom
    assert len(re.findall(r'<button [^>]*class="gs-attn-thumb\b', dom)) == 4  # one per head
    assert dom.count('class="gs-attn-cell"') == len(TOKENS) ** 2  # the enlarged head
    assert "data-pwned" not in dom  # the XSS token never ran...
    assert "&lt;img src=x" in dom  # ... and is shown as text instead
    assert _png_size(shot) == (1200, 1600)
    _keep(page)
    _keep(shot)


def test_error_detection_is_not_vacuous(chromium, tmp_path):
    r = Report("broken").add(Heatmap(np.eye(2)))
    r.add_html('<script>throw new Error("boom-from-test")</script>')
    r.add_html('<div id="gs-x" data-gs-kind="nope"></div><script>gscope.draw("gs-x")</script>')
    result = render_in_browser(r.save(tmp_path / "broken.html"))
    text = "\n".join(result.errors)
    assert "boom-from-test" in text
    assert "no renderer for kind nope" in text
    assert result.rendered == 1


def test_save_png_falls_back_to_browser_screenshot(chromium, tmp_path):
    table = LogitLensTable(["L0"], ["a", "b"], [[["x"], ["y"]]], np.array([[[0.9], [0.2]]]))
    out = save_png(table, tmp_path / "lens.png", window_size=(800, 400))
    assert _png_size(out) == (800, 400)


def test_render_in_browser_rejects_missing_file(tmp_path):
    with pytest.raises(ValueError, match="save the page first"):
        render_in_browser(tmp_path / "missing.html")


def test_xss_token_is_data_not_markup():
    html = full_report().html()
    assert XSS not in html
    assert not re.search(r"<img", html)


# Runs after the visuals were drawn: pokes them like a user would and records what happened.
PROBE = """<script>
(function () {
  var attn = document.querySelector(".gs-kind-attention");
  var strip = attn.querySelectorAll(".gs-attn-strip .gs-tok");
  strip[3].dispatchEvent(new MouseEvent("mouseenter"));
  var coloured = Array.prototype.filter.call(strip, function (s) { return s.style.background; });
  var query = attn.querySelector(".gs-tok-query");
  var tipTo0 = strip[0].getAttribute("data-tip");
  attn.querySelectorAll("button.gs-attn-thumb")[2].click();
  var head = attn.querySelector(".gs-attn-head").textContent;
  var tokens = document.querySelector(".gs-kind-tokens");
  var before = tokens.querySelector(".gs-tok").style.background;
  var sel = tokens.querySelector("select");
  sel.value = "1";
  sel.dispatchEvent(new Event("change"));
  document.body.dataset.gsProbe = JSON.stringify({
    coloured: coloured.length, query: query && query.textContent, tipTo0: tipTo0, head: head,
    tokenTip: tokens.querySelector(".gs-tok").getAttribute("data-tip"),
    recoloured: before !== tokens.querySelector(".gs-tok").style.background
  });
})();
</script>"""


def test_visuals_respond_to_hover_click_and_select(chromium, tmp_path):
    r = full_report().add_html(PROBE)
    result = render_in_browser(r.save(tmp_path / "probe.html"))
    assert result.errors == []
    m = re.search(r'data-gs-probe="([^"]*)"', result.dom)
    assert m, "the probe script did not run"
    probe = json.loads(html.unescape(m.group(1)))
    assert probe["coloured"] == len(TOKENS) - 1  # every key token but the query is coloured
    assert probe["query"] == "\u00b7sat"
    assert probe["tipTo0"].startswith("\u00b7sat (3) \u2192 <|bos|> (0): ")
    assert probe["head"].startswith("L0H2")  # clicking a thumbnail enlarged that head
    assert probe["tokenTip"].splitlines()[1].startswith("n1 = ")
    assert probe["recoloured"]


def test_notebook_fragments_work_side_by_side(chromium, tmp_path):
    # Two notebook cells each carry the runtime; the second copy must be a harmless no-op.
    cells = [
        AttentionPatterns(np.full((1, 2, 2), 0.5), ["a", "b"])._repr_html_(),
        ColoredTokens(["a", "b"], [1.0, -1.0])._repr_html_(),
    ]
    page = tmp_path / "cells.html"
    page.write_text("<!doctype html><meta charset=utf-8><body>" + "".join(cells) + "</body>")
    result = render_in_browser(page)
    assert result.errors == []
    assert result.rendered == 2


def test_long_context_attention_uses_a_canvas(chromium, tmp_path):
    t, heads = 80, 12
    rng = np.random.default_rng(1)
    pattern = np.tril(rng.random((heads, t, t)))
    pattern /= pattern.sum(-1, keepdims=True)
    tokens = [f" w{i}" for i in range(t)]
    result = render_in_browser(AttentionPatterns(pattern, tokens).save(tmp_path / "long.html"))
    assert result.errors == []
    assert result.rendered == 1
    assert result.dom.count('class="gs-pixels"') == heads + 1  # thumbnails + enlarged head
    assert 'class="gs-attn-cell"' not in result.dom
