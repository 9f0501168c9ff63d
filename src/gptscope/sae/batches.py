"""Activation data for SAE training: checked batches ``[b, d_in]`` from a tensor or an iterable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def check_activation_batch(x: Any, d_in: int, what: str) -> torch.Tensor:
    """``x`` as ``[n, d_in]`` rows, or a ValueError naming ``what`` and the fix."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{what} must be a torch.Tensor of shape [n, {d_in}], got {type(x).__name__}; "
            "convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {x.dtype}; use x.float()")
    if x.ndim < 2 or x.shape[-1] != d_in:
        raise ValueError(
            f"{what} must have shape [n, d_in={d_in}] (or [..., {d_in}]), got "
            f"{tuple(x.shape)}; the SAE was built for d_in={d_in}"
        )
    return x.reshape(-1, d_in)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (or from torch's global RNG when None)."""
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    return generator


class Batches:
    """Training batches ``[b, d_in]`` from a tensor (shuffled each epoch) or an iterable of
    batches (used as given)."""

    def __init__(
        self,
        data: torch.Tensor | Iterable[torch.Tensor],
        d_in: int,
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.d_in, self.batch_size, self.generator = d_in, batch_size, generator
        if isinstance(data, torch.Tensor):
            self.tensor: torch.Tensor | None = check_activation_batch(data, d_in, "activations")
            self.iterable: Iterable[torch.Tensor] | None = None
        else:
            if not isinstance(data, Iterable):
                raise ValueError(
                    f"activations must be a tensor [n, {d_in}] or an iterable of [b, {d_in}] "
                    f"batches, got {type(data).__name__}"
                )
            self.tensor, self.iterable = None, data

    @property
    def reiterable(self) -> bool:
        """Whether a second pass is possible (not a one-shot iterator)."""
        return self.tensor is not None or iter(self.iterable) is not self.iterable  # type: ignore[arg-type]

    def steps_per_epoch(self) -> int | None:
        if self.tensor is not None:
            return math.ceil(len(self.tensor) / self.batch_size)
        try:
            return len(self.iterable)  # type: ignore[arg-type]
        except TypeError:
            return None

    def epoch(self) -> Iterator[torch.Tensor]:
        """One pass over the data."""
        if self.tensor is not None:
            perm = torch.randperm(len(self.tensor), generator=self.generator)
            for i in range(0, len(perm), self.batch_size):
                yield self.tensor[perm[i : i + self.batch_size].to(self.tensor.device)]
        else:
            for i, batch in enumerate(self.iterable):  # type: ignore[union-attr]
                yield check_activation_batch(batch, self.d_in, f"batch {i}")

    def stream(self, epochs: int | None, steps: int | None) -> Iterator[torch.Tensor]:
        """``epochs`` passes, or as many as ``steps`` batches need (a one-shot iterator that
        runs dry first ends the stream early)."""
        epoch, step = 0, 0
        while True:
            got_any = False
            for batch in self.epoch():
                if steps is not None and step >= steps:
                    return
                got_any = True
                step += 1
                yield batch
            epoch += 1
            if epochs is not None and epoch >= epochs:
                return
            if not got_any or not self.reiterable:
                return

    def sample(self, n: int) -> torch.Tensor | None:
        """Up to ``n`` random rows, when the data is a tensor (else None)."""
        if self.tensor is None:
            return None
        idx = torch.randperm(len(self.tensor), generator=self.generator)[:n]
        return self.tensor[idx.to(self.tensor.device)]
