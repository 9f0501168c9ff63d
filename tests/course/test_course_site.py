"""The course site renders offline in headless Chromium without JS errors."""

from __future__ import annotations

import re

import pytest

from gptscope.course.progress import Progress
from gptscope.course.site import build_site
from gptscope.viz.browser import render_in_browser


@pytest.fixture
def progress(tmp_path):
    p = Progress(tmp_path / "progress.sqlite")
    p.tick_reading("02", 1)
    p.record_attempt("softmax", True, "ok")
    p.record_attempt("log_softmax", False, "underflows")
    p.add_note("02", "softmax <is> shift invariant")
    return p


def test_site_pages_are_self_contained(tmp_path, progress):
    index = build_site(tmp_path / "site", progress)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert len(pages) == 23  # index + 22 lessons
    for page in index.parent.glob("*.html"):
        html = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//[^"]*\.(js|css)', html)
        assert "<style>" in html
    lesson = (index.parent / "lesson02_softmax.html").read_text()
    assert "softmax &lt;is&gt; shift invariant" in lesson  # escaped
    assert "passed" in lesson and "tried" in lesson


def test_site_renders_in_chromium(chromium, tmp_path, progress):
    index = build_site(tmp_path / "site", progress)
    result = render_in_browser(index)
    assert result.errors == []
    m = re.search(r'data-course-ready="(\d+)"', result.dom)
    assert m and int(m.group(1)) == 22  # the script ran and filled every progress bar
    assert "width: " in result.dom or "width:" in result.dom
    page = render_in_browser(index.parent / "lesson02_softmax.html", screenshot=tmp_path / "l.png")
    assert page.errors == []
    assert page.screenshot is not None and page.screenshot.stat().st_size > 1000
