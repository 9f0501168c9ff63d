"""SteeringVector: build one (ActAdd, CAA, a probe's direction) and apply it with a coefficient."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptscope.model.hooks import HookPoint

Positions = str | int  # "all", "prompt", or an int k meaning "from position k on"


def _activations(model: Any, prompt: Any, hook_name: str) -> Tensor:
    """The activation at ``hook_name`` for one prompt: [pos, d_model]."""
    tokens = model.to_tokens(prompt)
    if tokens.shape[0] != 1:
        raise ValueError("pass one prompt at a time (a string or a single token sequence)")
    return model.activations(tokens, hook_name)[hook_name][0]


@dataclass
class SteeringVector:
    """A direction to add at one hook.

    ``vector`` is [d_model] (added at every chosen position) or [n, d_model] (ActAdd: row
    i is added at position start + i, aligning the contrast prompts with the prompt's start).
    """

    vector: Tensor
    hook_name: str

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_contrast(
        cls, model: Any, positive: Any, negative: Any, hook_name: str, aligned: bool = True
    ) -> SteeringVector:
        """ActAdd (Turner et al. 2023): activations of ``positive`` minus ``negative``.

        aligned=True keeps one row per position (the shorter prompt is zero-padded at the
        end, as in the paper's padding); aligned=False uses the last position only.
        """
        pos = _activations(model, positive, hook_name)
        neg = _activations(model, negative, hook_name)
        if not aligned:
            return cls(pos[-1] - neg[-1], hook_name)
        n = max(pos.shape[0], neg.shape[0])
        pad = lambda a: torch.cat([a, a.new_zeros(n - a.shape[0], a.shape[1])])  # noqa: E731
        return cls(pad(pos) - pad(neg), hook_name)

    @classmethod
    def from_pairs(
        cls, model: Any, pairs: Sequence[tuple[Any, Any]], hook_name: str, position: int = -1
    ) -> SteeringVector:
        """CAA (Rimsky et al. 2023): mean over pairs of (positive - negative) at ``position``."""
        if not pairs:
            raise ValueError("from_pairs needs at least one (positive, negative) pair")
        diffs = [
            _activations(model, pos, hook_name)[position]
            - _activations(model, neg, hook_name)[position]
            for pos, neg in pairs
        ]
        return cls(torch.stack(diffs).mean(0), hook_name)

    @classmethod
    def from_direction(
        cls, direction: Tensor, hook_name: str, normalize: bool = True
    ) -> SteeringVector:
        """Any direction [d_model], e.g. a trained probe's weight vector (unit norm by default)."""
        direction = torch.as_tensor(direction).detach().float().flatten()
        if normalize:
            direction = direction / direction.norm().clamp_min(1e-12)
        return cls(direction, hook_name)

    # -- applying ---------------------------------------------------------------------------

    def _check(self, model: Any) -> None:
        model.hook_point(self.hook_name)
        d = model.cfg.d_model
        if self.vector.shape[-1] != d or self.vector.dim() not in (1, 2):
            raise ValueError(
                f"steering vector has shape {tuple(self.vector.shape)}; the model needs "
                f"[{d}] or [n, {d}] (was it built on another model?)"
            )

    def hook_fn(self, model: Any, coefficient: float = 1.0, positions: Positions = "all"):
        """The hook function ``fn(activation, hook)`` that adds coefficient * vector."""
        self._check(model)
        if not (positions in ("all", "prompt") or isinstance(positions, int)):
            raise ValueError(f"positions must be 'all', 'prompt' or an int, got {positions!r}")
        vec = self.vector

        def add(act: Tensor, hook: HookPoint) -> Tensor:
            offset = hook.offset  # sequence index of act[:, 0]: > 0 in cached decoding
            if positions == "prompt" and offset > 0:
                return act  # cached decoding: only the prompt's forward pass is steered
            start = positions if isinstance(positions, int) else 0
            v = (coefficient * vec).to(act.device, act.dtype)
            out = act.clone()
            n_pos = act.shape[1]
            if v.dim() == 1:
                lo = max(start - offset, 0)
                if lo < n_pos:
                    out[:, lo:] += v
                return out
            # Row i of an aligned vector belongs at absolute position start + i.
            lo, hi = max(start, offset), min(start + v.shape[0], offset + n_pos)
            if lo < hi:
                out[:, lo - offset : hi - offset] += v[lo - start : hi - start]
            return out

        return add

    @contextlib.contextmanager
    def apply(
        self, model: Any, coefficient: float = 1.0, positions: Positions = "all"
    ) -> Iterator[Any]:
        """``with vector.apply(model, coefficient=4): ...`` steers every forward inside."""
        with model.hooks(fwd_hooks=[(self.hook_name, self.hook_fn(model, coefficient,
                                                                  positions))]):
            yield model

    # -- arithmetic and files ---------------------------------------------------------------

    def __add__(self, other: SteeringVector) -> SteeringVector:
        if other.hook_name != self.hook_name:
            raise ValueError("can only add steering vectors at the same hook")
        return SteeringVector(self.vector + other.vector, self.hook_name)

    def __mul__(self, k: float) -> SteeringVector:
        return SteeringVector(self.vector * k, self.hook_name)

    __rmul__ = __mul__

    def save(self, path: str | Path) -> None:
        """Write ``path`` (safetensors) with the hook name in its metadata."""
        from safetensors.torch import save_file

        from gptscope.utils.atomic import write_with

        meta = {"hook_name": self.hook_name, "format": json.dumps({"kind": "steering"})}
        tensor = self.vector.detach().contiguous().cpu()
        write_with(path, lambda tmp: save_file({"vector": tensor}, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return cls(f.get_tensor("vector"), f.metadata()["hook_name"])
        except Exception as e:  # safetensors raises several types for bad files
            raise ValueError(f"{path} is not a steering vector file ({e})") from e
