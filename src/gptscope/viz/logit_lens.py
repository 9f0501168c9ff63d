"""LogitLensTable: the top predicted tokens at every [layer, position], coloured by probability."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import colors
from ._util import as_array, as_labels, fmt
from .html import Visual, display_token, escape


class LogitLensTable(Visual):
    """Rows are layers, columns are positions; each cell shows the top-1 token and its probability.

    ``top_tokens[layer][pos]`` is a list of k token strings and ``top_probs[layer, pos, k]`` their
    probabilities (highest first). The tooltip lists all k. With ``target_probs[layer, pos]``
    (probability of the true next token) cells also show it, and ``color_by="target"`` colours
    by it instead of the top-1 probability.
    """

    kind = "logitlens"

    def __init__(
        self,
        layer_labels: Sequence[Any],
        tokens: Sequence[str],
        top_tokens: Sequence[Sequence[Sequence[str]]],
        top_probs: Any,
        target_probs: Any = None,
        title: str | None = "Logit lens",
        target_tokens: Sequence[str] | None = None,
        color_by: str = "top",
    ) -> None:
        super().__init__(title)
        probs = as_array(top_probs, "top_probs", ndim=(2, 3))
        if probs.ndim == 2:
            probs = probs[..., None]
        n_layers, n_pos, k = probs.shape
        self.layers = as_labels(layer_labels, "layer_labels", n_layers)
        self.tokens = as_labels(tokens, "tokens", n_pos)
        if len(top_tokens) != n_layers or any(len(row) != n_pos for row in top_tokens):
            raise ValueError(
                f"top_tokens must be nested [layer][pos][k] matching top_probs {probs.shape}"
            )
        self.top_tokens = []
        for row in top_tokens:
            cells = []
            for cell in row:
                cell = [cell] if isinstance(cell, str) else list(cell)
                if len(cell) != k:
                    raise ValueError(
                        f"each top_tokens cell needs {k} tokens to match top_probs; got {len(cell)}"
                    )
                cells.append([str(t) for t in cell])
            self.top_tokens.append(cells)
        self.top_probs = probs
        self.target_probs = None
        if target_probs is not None:
            tp = as_array(target_probs, "target_probs", ndim=2)
            if tp.shape != (n_layers, n_pos):
                raise ValueError(
                    f"target_probs must be [layer, pos] = {(n_layers, n_pos)}; got {tp.shape}"
                )
            self.target_probs = tp
        self.target_tokens = (
            as_labels(target_tokens, "target_tokens", n_pos) if target_tokens is not None else None
        )
        if color_by not in ("top", "target"):
            raise ValueError(f'color_by must be "top" or "target"; got {color_by!r}')
        if color_by == "target" and self.target_probs is None:
            raise ValueError('color_by="target" needs target_probs')
        self.color_by = color_by

    def _body(self) -> str:
        head = ["<th>layer \\ position</th>"]
        for p, tok in enumerate(self.tokens):
            extra = ""
            if self.target_tokens is not None:
                extra = f"<br><small>\u2192 {escape(display_token(self.target_tokens[p]))}</small>"
            head.append(f'<th class="gs-pos">{p}: {escape(display_token(tok))}{extra}</th>')
        rows = [f"<tr>{''.join(head)}</tr>"]
        for li, layer in enumerate(self.layers):
            cells = [f"<th>{escape(layer)}</th>"]
            for p in range(len(self.tokens)):
                probs = self.top_probs[li, p]
                toks = self.top_tokens[li][p]
                shade = self.target_probs[li, p] if self.color_by == "target" else probs[0]
                bg = colors.color_for(float(shade), 0.0, 1.0, False)
                tip = [f"{layer}, position {p} ({display_token(self.tokens[p])})"]
                tip += [
                    f"{display_token(t):>12}  {fmt(float(q))}"
                    for t, q in zip(toks, probs, strict=True)
                ]
                target = ""
                if self.target_probs is not None:
                    tv = float(self.target_probs[li, p])
                    tip.append(f"target prob {fmt(tv)}")
                    target = f" \u00b7 tgt {fmt(tv, 2)}"
                cells.append(
                    f'<td style="background:{bg};color:{colors.text_color(bg)}" '
                    f'data-tip="{escape(chr(10).join(tip))}">{escape(display_token(toks[0]))}'
                    f'<span class="gs-p">{escape(fmt(float(probs[0]), 2))}{escape(target)}'
                    "</span></td>"
                )
            rows.append(f"<tr>{''.join(cells)}</tr>")
        note = "top-1 probability" if self.color_by == "top" else "target probability"
        return (
            f'<table class="gs-table gs-lens">{"".join(rows)}</table>'
            f'<div class="gs-legend-text">colour: {note}, white = 0, dark blue = 1</div>'
        )
