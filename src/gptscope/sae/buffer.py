"""A shuffling buffer of activation vectors, filled from a stream of batches or from a model.

Adjacent positions of one sequence are highly correlated, and training an SAE on them in
order hurts; the buffer mixes vectors from many token batches, and spills to a memory-mapped
file on disk when it would not fit in its memory budget.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptscope.sae.batches import make_generator


class ActivationBuffer:
    """Shuffling buffer of activation vectors ``[d_in]`` drawn from a stream of batches.

    It holds up to ``buffer_size`` vectors. Iterating makes one pass over ``source``: fill
    every free slot, yield a random half of the stored vectors in ``[batch_size, d_in]``
    batches, refill the freed slots, and so on; when the source runs dry the rest is
    drained. Every vector from the source is yielded exactly once per pass, in an order
    mixed across roughly ``buffer_size`` neighbours.

    Storage is float32. When ``buffer_size * d_in * 4`` bytes exceeds ``max_memory_bytes``,
    it lives in a numpy memmap file in a temporary folder (under ``spill_dir`` if given),
    deleted by :meth:`close` (also on garbage collection, or use ``with``).

    Args:
        source: re-iterable of activation tensors ``[..., d_in]`` (rows are flattened).
        buffer_size: vectors held at once; bigger mixes better.
        batch_size: rows per yielded batch (the last batch of a pass may be smaller).
        max_memory_bytes: in-RAM budget before spilling to disk.
        spill_dir: parent folder for the memmap file (default: the system temp dir).
        d_in: expected width, checked on the first batch (inferred if None).
        seed / generator: shuffling RNG.
        drop_last: skip the final smaller batch of each pass.
    """

    def __init__(
        self,
        source: Iterable[torch.Tensor],
        *,
        buffer_size: int = 65536,
        batch_size: int = 4096,
        max_memory_bytes: int = 512 * 2**20,
        spill_dir: str | Path | None = None,
        d_in: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(
                f"buffer_size and batch_size must be >= 1, got {buffer_size} and {batch_size}"
            )
        if seed is not None and generator is not None:
            raise ValueError("pass seed=... or generator=..., not both")
        self.source = source
        self.buffer_size, self.batch_size = buffer_size, batch_size
        self.max_memory_bytes, self.spill_dir = max_memory_bytes, spill_dir
        self.d_in = d_in
        self.drop_last = drop_last
        self.generator = generator if generator is not None else make_generator(seed)
        self._store: torch.Tensor | np.memmap | None = None
        self._tmpdir: str | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def from_model(
        cls,
        model: Any,
        hook_name: str,
        token_batches: Iterable[torch.Tensor],
        **kwargs: Any,
    ) -> ActivationBuffer:
        """Buffer of activations at ``hook_name`` of ``model`` for each token batch
        ``[batch, pos]``; each batch contributes ``batch * pos`` vectors."""
        return cls(ModelActivations(model, hook_name, token_batches), **kwargs)

    @property
    def spilled(self) -> bool:
        """True when the storage is a memmap file on disk."""
        return isinstance(self._store, np.memmap)

    @property
    def path(self) -> Path | None:
        """The memmap file, when spilled."""
        return Path(self._tmpdir) / "activations.f32" if self._tmpdir else None

    def _allocate(self, d_in: int) -> None:
        n_bytes = self.buffer_size * d_in * 4
        if n_bytes > self.max_memory_bytes:
            self._tmpdir = tempfile.mkdtemp(prefix="gptscope-acts-", dir=self.spill_dir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
            self._store = np.memmap(
                self.path, dtype=np.float32, mode="w+", shape=(self.buffer_size, d_in)
            )
        else:
            self._store = torch.empty(self.buffer_size, d_in, dtype=torch.float32)

    def _write(self, slots: torch.Tensor, rows: torch.Tensor) -> None:
        if isinstance(self._store, np.memmap):
            self._store[slots.numpy()] = rows.numpy()
        else:
            self._store.index_copy_(0, slots, rows)  # type: ignore[union-attr]

    def _read(self, slots: torch.Tensor) -> torch.Tensor:
        if isinstance(self._store, np.memmap):
            # Sorted reads walk the file forwards; order inside a batch does not matter.
            slots = slots.sort().values
            return torch.from_numpy(np.ascontiguousarray(self._store[slots.numpy()]))
        return self._store.index_select(0, slots)  # type: ignore[union-attr]

    def _rows(self, batch: Any, i: int) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point() or batch.ndim < 1:
            raise ValueError(
                f"ActivationBuffer source item {i} must be a float tensor [..., d_in], got "
                f"{getattr(batch, 'dtype', type(batch).__name__)}"
            )
        if self.d_in is None:
            self.d_in = batch.shape[-1]
        if batch.shape[-1] != self.d_in:
            raise ValueError(
                f"ActivationBuffer source item {i} has width {batch.shape[-1]}, expected "
                f"d_in={self.d_in}; check the hook name and the SAE's d_in"
            )
        return batch.detach().reshape(-1, self.d_in).to("cpu", torch.float32)

    def __iter__(self) -> Iterator[torch.Tensor]:
        source = iter(self.source)
        pending = torch.empty(0)
        free = torch.arange(self.buffer_size)
        occupied = torch.empty(0, dtype=torch.long)
        exhausted = False
        i = 0
        while True:
            while not exhausted and len(free) > 0:
                if len(pending) == 0:
                    try:
                        pending = self._rows(next(source), i)
                    except StopIteration:
                        exhausted = True
                        break
                    i += 1
                    if self._store is None:
                        self._allocate(pending.shape[-1])
                    continue
                n = min(len(free), len(pending))
                slots, free = free[:n], free[n:]
                self._write(slots, pending[:n])
                pending = pending[n:]
                occupied = torch.cat([occupied, slots])
            if len(occupied) == 0:
                return
            occupied = occupied[torch.randperm(len(occupied), generator=self.generator)]
            if exhausted:
                n_out = len(occupied)  # drain: every vector leaves exactly once
            else:
                half = (len(occupied) // 2) // self.batch_size * self.batch_size
                n_out = min(len(occupied), max(self.batch_size, half))
            out, occupied = occupied[:n_out], occupied[n_out:]
            for j in range(0, n_out, self.batch_size):
                idx = out[j : j + self.batch_size]
                if len(idx) < self.batch_size and self.drop_last:
                    continue
                yield self._read(idx)
            free = torch.cat([free, out])

    def close(self) -> None:
        """Release the storage and delete the spill file, if any."""
        self._store = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._tmpdir = None

    def __enter__(self) -> ActivationBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModelActivations:
    """Re-iterable: activations at one hook for each token batch ``[batch, pos]``."""

    def __init__(self, model: Any, hook_name: str, token_batches: Iterable[torch.Tensor]) -> None:
        self.model, self.hook_name, self.token_batches = model, hook_name, token_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            for i, tokens in enumerate(self.token_batches):
                if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
                    raise ValueError(
                        f"token batch {i} must be a LongTensor [batch, pos], got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}"
                    )
                yield self.model.activations(tokens, self.hook_name)[self.hook_name]
        finally:
            self.model.train(was_training)
