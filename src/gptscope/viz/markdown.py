"""Markdown-lite for report text: paragraphs, bullet lists, **bold**, *italic*, `code`, links.

Text is escaped first and only then given markup, so user text can never inject HTML.
"""

from __future__ import annotations

import re

from .html import escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)


def _inline(text: str) -> str:
    # Code spans are cut out first so their content is not treated as markup.
    pieces = _CODE.split(text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"<code>{escape(piece)}</code>")
            continue
        s = escape(piece)
        s = _BOLD.sub(r"<strong>\1</strong>", s)
        s = _ITALIC.sub(r"<em>\1</em>", s)

        def link(m: re.Match[str]) -> str:
            url = m.group(2)
            # Only ordinary targets become links: no javascript: or data: URLs.
            if _SAFE_URL.match(url) or ":" not in url:
                return f'<a href="{url}">{m.group(1)}</a>'
            return m.group(0)

        out.append(_LINK.sub(link, s))
    return "".join(out)


def render(text: str) -> str:
    """Markdown-lite to HTML. Blank lines separate paragraphs; lines starting "- " make a list."""
    blocks = re.split(r"\n\s*\n", str(text).strip())
    html = []
    for block in blocks:
        lines = block.splitlines()
        if lines and all(ln.lstrip().startswith(("- ", "* ")) for ln in lines):
            items = "".join(f"<li>{_inline(ln.lstrip()[2:])}</li>" for ln in lines)
            html.append(f"<ul>{items}</ul>")
        elif block.strip():
            html.append(f"<p>{'<br>'.join(_inline(ln) for ln in lines)}</p>")
    return "\n".join(html)
