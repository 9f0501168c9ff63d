"""Top activating examples for a neuron or a direction, streamed over a dataset.

Only a running top-k (a min-heap of k candidates) is kept, so a dataset of any size costs
``k`` windows of memory, not ``[n_tokens, d]`` activations.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Example:
    """One top activation: ``tokens`` and ``activations`` around it (``[window]``), the
    ``value`` at ``(seq, pos)`` (``seq`` counts sequences from the dataset start), and
    ``offset``, the index of that position inside the window."""

    value: float
    seq: int
    pos: int
    tokens: Tensor
    activations: Tensor
    offset: int
    text: list[str] | None = None

    def __repr__(self) -> str:
        shown = self.text if self.text is not None else self.tokens.tolist()
        return f"Example(value={self.value:.4g}, seq={self.seq}, pos={self.pos}, {shown})"


def _batches(dataset: Any, batch_size: int) -> Iterator[Tensor]:
    if isinstance(dataset, Tensor):
        if dataset.dim() == 1:
            dataset = dataset[None]
        if dataset.dim() != 2:
            raise ValueError(f"dataset tokens must be [n_seq, pos], got {tuple(dataset.shape)}")
        yield from dataset.split(batch_size)
        return
    if not isinstance(dataset, Iterable):
        raise ValueError("dataset must be a LongTensor [n_seq, pos] or an iterable of batches")
    for batch in dataset:
        if isinstance(batch, dict):
            batch = batch.get("tokens", batch.get("input_ids"))
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            batch = batch[0]  # (tokens, labels) pairs from a DataLoader
        t = torch.as_tensor(batch)
        yield t[None] if t.dim() == 1 else t


def top_activating_examples(
    model: Any,
    dataset_tokens: Any,
    hook_name: str,
    unit: int | None = None,
    direction: Tensor | None = None,
    k: int = 10,
    context: int = 8,
    after: int = 2,
    batch_size: int = 32,
    largest: bool = True,
) -> list[Example]:
    """The ``k`` token positions where a unit (or a direction) fires most, highest first.

    hook_name: a hook whose activation is ``[batch, pos, ...]`` (e.g.
    ``blocks.0.mlp.hook_post``); trailing dims are flattened, so ``unit`` indexes them
    (for hook_z, unit = head * d_head + i). Or give ``direction`` (``[d]``) to score the
    projection onto it. Each example shows ``context`` tokens before and ``after`` tokens
    after. ``largest=False`` finds the most negative instead.
    """
    if (unit is None) == (direction is None):
        raise ValueError("give exactly one of unit= (an int) or direction= (a tensor [d])")
    model.hook_point(hook_name)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    top = _TopK(k, context, after, sign=1.0 if largest else -1.0)
    with torch.no_grad():
        for batch in _batches(dataset_tokens, batch_size):
            tokens = model.to_tokens(batch)
            acts = model.activations(tokens, hook_name)[hook_name].flatten(2).float()
            top.add(tokens, _unit_values(acts, hook_name, unit, direction))
    examples = top.examples()
    _add_text(examples, getattr(model, "tokenizer", None))
    return examples


def _unit_values(acts: Tensor, hook_name: str, unit: int | None, direction: Tensor | None
                 ) -> Tensor:
    """``[batch, pos]`` values of one unit of ``acts`` ``[batch, pos, d]``, or of its
    projection onto ``direction`` ``[d]``."""
    if unit is not None:
        if not 0 <= unit < acts.shape[-1]:
            raise ValueError(f"unit {unit} is outside the {acts.shape[-1]} units of {hook_name}")
        return acts[..., unit]
    d = torch.as_tensor(direction, dtype=acts.dtype, device=acts.device).flatten()
    if d.numel() != acts.shape[-1]:
        raise ValueError(f"direction has {d.numel()} entries; {hook_name} has {acts.shape[-1]}")
    return acts @ d


class _TopK:
    """The running top ``k`` positions over batches, each kept with its context."""

    def __init__(self, k: int, context: int, after: int, sign: float) -> None:
        self.k, self.context, self.after, self.sign = k, context, after, sign
        self.heap: list[tuple[float, int, Example]] = []  # min-heap on (signed) value
        self.counter = itertools.count()
        self.seq_offset = 0

    def add(self, tokens: Tensor, values: Tensor) -> None:
        """Offer one batch: ``tokens`` and ``values`` ``[batch, pos]``."""
        scored = values.flatten() * self.sign
        # Only this batch's own top k can enter the running top k.
        top_vals, top_idx = scored.topk(min(self.k, scored.numel()))
        n_pos = values.shape[1]
        for v, i in zip(top_vals.tolist(), top_idx.tolist()):
            if len(self.heap) == self.k and v <= self.heap[0][0]:
                break  # sorted descending: nothing later in this batch gets in
            b, p = divmod(i, n_pos)
            lo, hi = max(0, p - self.context), min(n_pos, p + self.after + 1)
            ex = Example(value=v * self.sign, seq=self.seq_offset + b, pos=p,
                         tokens=tokens[b, lo:hi].cpu(), activations=values[b, lo:hi].cpu(),
                         offset=p - lo)
            item = (v, next(self.counter), ex)
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, item)
            else:
                heapq.heapreplace(self.heap, item)
        self.seq_offset += tokens.shape[0]

    def examples(self) -> list[Example]:
        """The kept examples, highest first (ties: first seen first)."""
        return [ex for _, _, ex in sorted(self.heap, key=lambda t: (-t[0], t[1]))]


def _add_text(examples: list[Example], tokenizer: Any) -> None:
    """Decode each example's tokens one by one, when the model has a tokenizer."""
    if tokenizer is None:
        return
    for ex in examples:
        try:
            ex.text = [tokenizer.decode([int(t)]) for t in ex.tokens]
        except Exception:  # undecodable ids: keep the example, show ids
            ex.text = None
