"""Small shared helpers for the interp modules: position slices, model and token checks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

PosSlice = int | slice | tuple | list | Tensor | None


def slice_pos(t: Tensor, pos_slice: PosSlice, dim: int = -2) -> Tensor:
    """Index ``t`` along ``dim`` (the position axis) the way TransformerLens's ``Slice`` does.

    None keeps everything; an int picks one position and drops the axis; a tuple is the
    arguments of ``slice`` ((k,) is :k); a slice, list or 1-d tensor selects positions.
    """
    if pos_slice is None:
        return t
    if isinstance(pos_slice, tuple):
        pos_slice = slice(*pos_slice)
    elif isinstance(pos_slice, list):
        pos_slice = torch.tensor(pos_slice, dtype=torch.long, device=t.device)
    elif isinstance(pos_slice, Tensor):
        pos_slice = pos_slice.to(t.device).long()
    elif not isinstance(pos_slice, (int, slice)):
        raise ValueError(
            f"pos_slice must be None, an int, a slice, a tuple, a list or a tensor of "
            f"positions; got {type(pos_slice).__name__}"
        )
    index: list[Any] = [slice(None)] * t.dim()
    index[dim] = pos_slice
    return t[tuple(index)]


def cache_model(cache: Any) -> Any:
    """The model an ActivationCache was made by (analyses read its weights and config)."""
    model = getattr(cache, "model", None)
    if model is None:
        raise ValueError(
            "this cache has no model attached; make it with model.run_with_cache(...) "
            "(ActivationCache(store, model) if you build one by hand)"
        )
    return model


def resolve_layer(layer: int | None, n_layers: int) -> int:
    """None or -1 mean 'after the last layer' (n_layers), as in TransformerLens."""
    if layer is None or layer == -1:
        return n_layers
    if not isinstance(layer, int) or not 0 <= layer <= n_layers:
        raise ValueError(
            f"layer must be an int in [0, n_layers={n_layers}] (or None/-1 for the end), "
            f"got {layer!r}"
        )
    return layer


def as_token_ids(x: Any, name: str, d_vocab: int) -> Tensor:
    """An int, list or LongTensor of token ids -> LongTensor, checked against the vocab."""
    if isinstance(x, int):
        x = torch.tensor(x)
    elif isinstance(x, (list, tuple)):
        x = torch.tensor(x)
    if not isinstance(x, Tensor) or x.is_floating_point() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be token ids (an int or a LongTensor), got {x!r:.80}")
    x = x.long()
    if x.numel() and (x.min() < 0 or x.max() >= d_vocab):
        raise ValueError(
            f"{name} holds ids outside [0, d_vocab={d_vocab}): min {x.min().item()}, "
            f"max {x.max().item()}"
        )
    return x
