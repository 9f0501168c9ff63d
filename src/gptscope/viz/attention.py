"""AttentionPatterns: per-head attention heat maps with a clickable head grid and token hover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._util import as_array, as_labels, finite_range, json_numbers
from .html import Visual, display_token


class AttentionPatterns(Visual):
    """Attention probabilities ``pattern[head, query_pos, key_pos]`` over ``tokens``.

    A 2-D ``[query_pos, key_pos]`` pattern is treated as a single head. Click a thumbnail to
    enlarge that head; hover a token to colour the tokens it attends to. Values are drawn on a
    fixed 0..1 scale (blue-white-red centred on 0 if any value is negative, e.g. differences).
    """

    kind = "attention"

    def __init__(
        self,
        pattern: Any,
        tokens: Sequence[str],
        head_names: Sequence[str] | None = None,
        title: str | None = "Attention patterns",
        max_cells: int = 2_000_000,
    ) -> None:
        super().__init__(title)
        arr = as_array(pattern, "pattern", ndim=(2, 3, 4))
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ValueError(
                    f"pattern has shape {arr.shape} (batch, head, query, key); pass one example, "
                    "e.g. pattern[0]"
                )
            arr = arr[0]
        if arr.ndim == 2:
            arr = arr[None]
        heads, q, k = arr.shape
        self.raw_tokens = as_labels(tokens, "tokens")
        if not (q == k == len(self.raw_tokens)):
            raise ValueError(
                f"pattern is [head, query, key] = {arr.shape} but there are "
                f"{len(self.raw_tokens)} tokens; query and key lengths must both equal len(tokens)"
            )
        if heads == 0 or q == 0:
            raise ValueError(
                f"pattern is empty (shape {arr.shape}); pass at least one head and token"
            )
        if heads * q * k > max_cells:
            # Every value is embedded in the page; millions of them make a page nobody can open.
            raise ValueError(
                f"pattern has {heads * q * k:,} values (more than max_cells={max_cells:,}); "
                "pass fewer heads (e.g. pattern[:4]) or a shorter context, or raise max_cells"
            )
        if head_names is None:
            head_names = [f"head {h}" for h in range(heads)]
        self.head_names = as_labels(head_names, "head_names", heads)
        self.pattern = arr
        lo, hi = finite_range(arr)
        self.diverging = lo < 0
        # Probabilities are drawn on a fixed 0..1 scale so heads compare honestly.
        self.vmin, self.vmax = (
            (-max(-lo, hi), max(-lo, hi)) if self.diverging else (0.0, max(hi, 1.0))
        )

    def _data(self) -> dict[str, Any]:
        return {
            "tokens": [display_token(t) for t in self.raw_tokens],
            "heads": self.head_names,
            "pattern": json_numbers(self.pattern, 4),
            "vmin": self.vmin,
            "vmax": self.vmax,
            "diverging": self.diverging,
        }
