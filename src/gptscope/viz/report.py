"""Report: build one self-contained HTML document from headings, text, tables and visuals."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gptscope.utils.atomic import write_text

from . import markdown
from ._util import fmt
from .html import Visual, assets_block, escape, page


def table_html(rows: Sequence[Sequence[Any]], header: Sequence[Any] | None = None) -> str:
    """A plain escaped HTML table; floats are shortened so columns stay readable."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        return escape(fmt(v, 4) if isinstance(v, float) else v)

    width = len(header) if header is not None else None
    parts = ['<table class="gs-table">']
    if header is not None:
        parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)):
            raise ValueError(f"rows[{i}] is a string; each row must be a list of cells")
        if width is not None and len(row) != width:
            raise ValueError(f"rows[{i}] has {len(row)} cells but the header has {width}")
        parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


class Report:
    """A document builder. Every ``add_*`` returns the report, so calls can be chained.

    ``save(path)`` writes one HTML file with the CSS and JavaScript inline exactly once; it
    needs no network and no other files.
    """

    def __init__(self, title: str = "gptscope report", subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self.n_visuals = 0

    def add_heading(self, text: str, level: int = 2) -> Report:
        if level not in (2, 3):
            raise ValueError(f"level must be 2 or 3 (the title is level 1); got {level}")
        self._parts.append(f"<h{level}>{escape(text)}</h{level}>")
        return self

    def add_text(self, text: str, markdown_lite: bool = True) -> Report:
        """Paragraph(s). With ``markdown_lite``: **bold**, *italic*, `code`, [links](url), lists."""
        if markdown_lite:
            self._parts.append(markdown.render(text))
        else:
            paras = [p for p in str(text).split("\n\n") if p.strip()]
            self._parts.append("".join(f"<p>{escape(p)}</p>" for p in paras))
        return self

    def add(self, visual: Visual, caption: str | None = None) -> Report:
        if not isinstance(visual, Visual):
            raise ValueError(
                f"add() takes a gptscope.viz visual, got {type(visual).__name__}; "
                "use add_html() for raw HTML or add_table() for rows"
            )
        cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure class="gs-figure">{visual.html()}{cap}</figure>')
        self.n_visuals += 1
        return self

    def add_table(
        self, rows: Sequence[Sequence[Any]], header: Sequence[Any] | None = None
    ) -> Report:
        self._parts.append(table_html(rows, header))
        return self

    def add_html(self, raw: str) -> Report:
        """Insert HTML as-is (trusted input only: it is not escaped)."""
        self._parts.append(str(raw))
        return self

    def _body(self) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        sub = f"{escape(self.subtitle)} · " if self.subtitle else ""
        head = (
            f"<h1>{escape(self.title)}</h1>"
            f'<div class="gs-meta">{sub}made with gptscope, {stamp}</div>'
        )
        return head + "\n" + "\n".join(self._parts)

    def html(self) -> str:
        """The whole document as a string."""
        return page(self.title, self._body())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as one self-contained HTML file (atomically)."""
        return write_text(path, self.html())

    def _repr_html_(self) -> str:
        return f'<div class="gs-root gs-page">{assets_block()}{self._body()}</div>'
