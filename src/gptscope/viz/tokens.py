"""ColoredTokens: text whose tokens are coloured by a value each (activations, losses, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._util import as_array, as_labels, finite_range, json_numbers
from .html import Visual, display_token


def _prepare(tokens: Sequence[str], values: Any, where: str) -> tuple[list[str], np.ndarray]:
    toks = as_labels(tokens, f"{where}tokens")
    arr = as_array(values, f"{where}values", ndim=(1, 2))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape[0] != len(toks):
        raise ValueError(
            f"{where}values has {arr.shape[0]} positions but there are {len(toks)} tokens; "
            "values must be [pos] or [pos, k] with pos == len(tokens)"
        )
    return toks, arr


class ColoredTokens(Visual):
    """Tokens coloured by ``values[pos]`` (or ``values[pos, k]`` with a selector for ``k``).

    Signed values use blue (negative) / red (positive); non-negative values a white-to-blue
    scale. Use :meth:`from_examples` for several rows, e.g. max-activating examples.
    """

    kind = "tokens"

    def __init__(
        self,
        tokens: Sequence[str],
        values: Any,
        title: str | None = None,
        value_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(title)
        toks, arr = _prepare(tokens, values, "")
        self._set([(toks, arr)], value_names, None)

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[tuple[Sequence[str], Any]],
        title: str | None = None,
        value_names: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
    ) -> ColoredTokens:
        """Several rows of (tokens, values), coloured on one shared scale so rows compare."""
        if len(examples) == 0:
            raise ValueError("examples is empty; pass a list of (tokens, values) pairs")
        rows = []
        for i, ex in enumerate(examples):
            if not isinstance(ex, (tuple, list)) or len(ex) != 2:
                raise ValueError(f"examples[{i}] must be a (tokens, values) pair")
            rows.append(_prepare(ex[0], ex[1], f"examples[{i}] "))
        widths = {a.shape[1] for _, a in rows}
        if len(widths) != 1:
            raise ValueError(
                f"examples have different numbers of value columns {sorted(widths)}; "
                "every example's values must be [pos] or all [pos, k] with the same k"
            )
        self = cls.__new__(cls)
        Visual.__init__(self, title)
        self._set(rows, value_names, labels)
        return self

    def _set(
        self,
        rows: list[tuple[list[str], np.ndarray]],
        value_names: Sequence[str] | None,
        labels: Sequence[str] | None,
    ) -> None:
        k = rows[0][1].shape[1]
        self.rows = rows
        self.value_names = (
            as_labels(value_names, "value_names", k)
            if value_names is not None
            else (["value"] if k == 1 else [f"#{i}" for i in range(k)])
        )
        self.labels = (
            as_labels(labels, "labels", len(rows))
            if labels is not None
            else [str(i + 1) for i in range(len(rows))]
        )
        stacked = np.concatenate([a for _, a in rows], axis=0)
        self.ranges = []
        self.diverging = []
        for j in range(k):
            lo, hi = finite_range(stacked[:, j])
            signed = lo < 0  # any negative value needs a scale with a visible zero
            if signed:
                m = max(abs(lo), abs(hi)) or 1.0
                lo, hi = -m, m
            else:
                lo = min(lo, 0.0)
            self.ranges.append([lo, hi])
            self.diverging.append(bool(signed))

    def _data(self) -> dict[str, Any]:
        return {
            "names": self.value_names,
            "ranges": self.ranges,
            "diverging": self.diverging,
            "examples": [
                {
                    # Spaces stay spaces (it reads as text); newlines and control chars are shown.
                    "tokens": [display_token(t, show_spaces=False) for t in toks],
                    "raw": [repr(t) for t in toks],
                    "values": json_numbers(arr, 4),
                    "label": label,
                }
                for (toks, arr), label in zip(self.rows, self.labels, strict=True)
            ],
        }
