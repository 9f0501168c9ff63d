"""The HTML shell: escaping, embedding JSON safely, the shared CSS/JS, and the Visual base class.

Every visual is a ``<div>`` with a unique id, optionally followed by a JSON data block and a
one-line ``<script>`` that asks the shared runtime (``runtime.js``) to draw it. The runtime is
included once per page, records any JavaScript error in ``<pre id="gs-errors">`` and counts
drawn visuals in ``document.body.dataset.gsRendered`` so tests can check a page really works.
"""

from __future__ import annotations

import html as _html
import json
import os
import uuid
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gptscope.utils.atomic import write_text

from . import colors

_ASSETS = ("runtime.js", "attention.js", "tokens.js")


def escape(text: Any) -> str:
    """Escape text for HTML element content *and* attribute values (quotes included)."""
    return _html.escape(str(text), quote=True)


def json_for_script(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--`` or stray line separators.

    Escaping ``<``, ``>`` and ``&`` as ``\\u00XX`` keeps the JSON valid while making it
    impossible for a token such as ``</script>`` to end the script element early.
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


_CONTROL_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def display_token(token: str, show_spaces: bool = True) -> str:
    """How a token is shown: whitespace and control characters made visible.

    GPT tokens often start with a space (" the") or are pure whitespace; drawn as-is they
    would be invisible, so spaces become a middle dot and newlines a literal ``\\n``.
    """
    out = []
    for ch in str(token):
        if ch in _CONTROL_NAMES:
            out.append(_CONTROL_NAMES[ch])
        elif ch == " " and show_spaces:
            out.append("\u00b7")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) if out else "\u2205"  # an empty token still gets a visible mark


def display_label(label: str) -> str:
    """Axis/row labels: like :func:`display_token`, but only *edge* spaces become dots.

    "layer 0" stays readable while a token label " the" still shows its leading space.
    """
    s = display_token(label, show_spaces=False)
    core = s.strip(" ")
    if not core:
        return "\u00b7" * len(s)
    lead = len(s) - len(s.lstrip(" "))
    trail = len(s) - len(s.rstrip(" "))
    return "\u00b7" * lead + core + "\u00b7" * trail


def new_id(prefix: str = "gs") -> str:
    """A fresh element id, so one page can hold the same visual twice without clashes."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@cache
def _asset(name: str) -> str:
    return resources.files("gptscope.viz").joinpath(name).read_text(encoding="utf-8")


def runtime_js() -> str:
    """All JavaScript the visuals need, with the colour scales injected from ``colors``."""
    scales = json_for_script(
        {"seq": colors.SEQUENTIAL, "div": colors.DIVERGING, "nan": colors.NAN_COLOR}
    )
    body = "\n".join(_asset(n) for n in _ASSETS)
    return body.replace("/*GS_SCALES*/null", scales)


def component_css() -> str:
    """Styles for the visuals only (all under ``.gs-`` classes, safe inside a notebook)."""
    return _asset("style.css")


def page_css() -> str:
    """Extra styles for a standalone page or report: body, headings, prose, tables."""
    return _asset("page.css")


def assets_block() -> str:
    """CSS + JS for a fragment that must stand alone (Jupyter). Runtime guards double loads."""
    return f"<style>{component_css()}</style>\n<script>{runtime_js()}</script>\n"


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document: no network, no external fonts."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{component_css()}\n{page_css()}</style>\n"
        f"<script>{runtime_js()}</script>\n</head>\n<body>\n"
        '<pre id="gs-errors" hidden></pre>\n'
        f'<main class="gs-page">\n{body}\n</main>\n</body>\n</html>\n'
    )


class Visual:
    """Base class: subclasses give ``kind``, and server-side markup and/or JSON data."""

    kind = "static"

    def __init__(self, title: str | None = None) -> None:
        self.title = title

    def _body(self) -> str:
        """Markup drawn in Python (SVG, tables). JS-drawn visuals return ""."""
        return ""

    def _data(self) -> Any:
        """JSON-able data for the JS renderer, or None when there is nothing to hand over."""
        return None

    def html(self) -> str:
        """An HTML fragment; needs the runtime on the page (``Report`` and ``save`` add it)."""
        vid = new_id()
        parts = [
            f'<div class="gs-visual gs-kind-{self.kind}" id="{vid}" data-gs-kind="{self.kind}">'
        ]
        if self.title:
            parts.append(f'<div class="gs-title">{escape(self.title)}</div>')
        parts.append(self._body())
        parts.append("</div>")
        data = self._data()
        if data is not None:
            parts.append(
                f'<script type="application/json" id="{vid}-data">{json_for_script(data)}</script>'
            )
        parts.append(
            f'<script>window.gscope ? gscope.draw("{vid}") : '
            f'console.warn("gptscope runtime missing for {vid}");</script>'
        )
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return f'<div class="gs-root">{assets_block()}{self.html()}</div>'

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a standalone HTML page with just this visual (atomically)."""
        return write_text(path, page(self.title or type(self).__name__, self.html()))
