"""Checks on what ``Transformer.forward`` is given: token ids, layer ranges, the residual
stream, a KV cache, padding masks and segment ids.

Each turns bad input into a ValueError that names the argument, the value and the fix,
before it can fail deep inside torch or, worse, run and give a wrong answer.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.model.layers import KVCache


def compiling() -> bool:
    """True while torch.compile traces this code (torch >= 2.3 can tell; older: False)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check is not None and check())


def token_ids(tokens: Any, tokenizer: Any, d_vocab: int, device: torch.device) -> Tensor:
    """A string (with a tokenizer), a list of ids (or of equally long lists), a numpy array
    or an integer tensor -> LongTensor [batch, pos] on ``device``, every id in [0, d_vocab)."""
    if isinstance(tokens, str):
        if tokenizer is None:
            raise ValueError(
                f"tokens is a string ({tokens!r:.40}) but this model has no tokenizer; "
                "pass token ids, or set model.tokenizer (gs.load attaches the run's "
                "tokenizer.json)"
            )
        tokens = tokenizer.encode(tokens)
    if isinstance(tokens, (list, tuple)):
        tokens = _ids_from_list(tokens)
    elif type(tokens).__module__ == "numpy":
        tokens = _ids_from_numpy(tokens)
    if not isinstance(tokens, Tensor):
        raise ValueError(f"tokens must be a LongTensor [batch, pos], got {type(tokens)}: "
                         f"{tokens!r:.60}; pass a list of ids or a tensor")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ValueError(
            f"tokens must be integer ids, got dtype {tokens.dtype}; use tokens.long() if "
            "they are whole numbers, or pass residual vectors with start_at_layer"
        )
    # The embedding lookup takes int64 (or int32) only; smaller ids widen losslessly.
    tokens = tokens.long()
    if tokens.dim() == 1:
        tokens = tokens.unsqueeze(0)
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError(f"tokens are empty (shape {tuple(tokens.shape)}); pass at least one")
    if compiling():
        # Reading the range back would split the compiled graph (and wait on the GPU);
        # out-of-range ids still fail, inside the embedding lookup.
        return tokens.to(device)
    lo, hi = tokens.aminmax()
    if lo.item() < 0 or hi.item() >= d_vocab:
        raise ValueError(
            f"token ids must lie in [0, d_vocab={d_vocab}); got min {lo.item()}, "
            f"max {hi.item()}. Is the tokenizer the one this model was trained with?"
        )
    return tokens.to(device)


def _ids_from_list(tokens: list | tuple) -> Tensor:
    """A list of ids, or a list of equally long lists of ids -> LongTensor."""
    try:
        ids = torch.tensor(tokens)
    except (TypeError, ValueError, RuntimeError) as e:  # ragged, or not numbers at all
        raise ValueError(_list_problem(tokens) or f"tokens could not be read ({e})") from e
    if ids.numel() and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):
        raise ValueError(_list_problem(tokens) or f"tokens must be int ids, got {ids.dtype}")
    return ids.long()


def _list_problem(tokens: list | tuple) -> str | None:
    """Say what is wrong with a token list (only called once torch refused it)."""
    rows = tokens if tokens and isinstance(tokens[0], (list, tuple)) else [tokens]
    for r, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            return (f"tokens mixes lists and single ids (entry {r} is {row!r}); pass a list "
                    "of ids [pos] or a list of equally long lists [batch, pos]")
        for i, t in enumerate(row):
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                where = f"tokens[{r}][{i}]" if rows is tokens else f"tokens[{i}]"
                return (f"token ids must be ints, got {t!r} at {where}; pass ids from the "
                        "tokenizer (strings go through model.tokenizer)")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        return (f"tokens rows have different lengths {lengths}; pad them to one length and "
                "pass attention_mask (1 for real tokens, 0 for padding)")
    return None


def _ids_from_numpy(array: Any) -> Tensor:
    try:
        return torch.as_tensor(array)
    except (TypeError, ValueError, RuntimeError) as e:  # object arrays, strings
        raise ValueError(f"tokens must be an integer array, got numpy dtype "
                         f"{getattr(array, 'dtype', '?')}; pass array.astype('int64')") from e


def check_length(n: int, n_ctx: int) -> None:
    if n > n_ctx:
        raise ValueError(
            f"sequence of length {n} exceeds n_ctx={n_ctx}; keep the last {n_ctx} tokens "
            f"(tokens[:, -{n_ctx}:]) or use a model with a larger n_ctx"
        )


def layer_range(n_layers: int, start: Any, stop: Any) -> tuple[int, int]:
    """start_at_layer / stop_at_layer -> block indices [start, stop); negative ones count
    from the end, as in Python and TransformerLens (stop_at_layer=-1: all but the last)."""
    n = n_layers
    bounds = []
    for name, value, default in (("start_at_layer", start, 0), ("stop_at_layer", stop, n)):
        if value is None:
            bounds.append(default)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not -n <= value <= n:
            raise ValueError(f"{name} must be an int in [-{n}, {n}] (this model has "
                             f"n_layers={n}), or None; got {value!r}")
        bounds.append(int(value) % n if value < 0 else int(value))
    if bounds[0] > bounds[1]:
        raise ValueError(f"start_at_layer ({start!r}) comes after stop_at_layer ({stop!r}); "
                         "no block would run: pass start_at_layer <= stop_at_layer")
    return bounds[0], bounds[1]


def past_length(past: Any, n_layers: int) -> int:
    """Positions already in the KV cache ``past`` (0 without one)."""
    if past is None:
        return 0
    if not isinstance(past, KVCache):
        raise ValueError(f"past must be a KVCache or None, got {type(past).__name__}; make "
                         "one with KVCache(model.cfg, batch, model.device, model.dtype)")
    if len(past.layers) != n_layers:
        raise ValueError(f"past holds {len(past.layers)} layers but this model has "
                         f"n_layers={n_layers}; make it from this model's cfg")
    return past.length


def residual_input(x: Any, d_model: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Check a residual stream passed with start_at_layer: [batch, pos, d_model]."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != d_model \
            or x.shape[:2].numel() == 0:
        raise ValueError(
            f"with start_at_layer, pass the residual stream [batch, pos, "
            f"d_model={d_model}], got {getattr(x, 'shape', type(x))}"
        )
    if not x.is_floating_point():
        raise ValueError(f"with start_at_layer, the residual stream must be a float tensor, "
                         f"got dtype {x.dtype}; token ids go in without start_at_layer")
    return x.to(device=device, dtype=dtype)


def mask_and_types(cfg: ModelConfig, attention_mask: Any, token_type_ids: Any, x: Tensor,
                   past: KVCache | None, device: torch.device
                   ) -> tuple[Tensor | None, Tensor | None]:
    """Check past's batch and room, token_type_ids and attention_mask against x [batch,
    pos, ...]. Returns (padding keys as bool [batch, key], True = real token, or None when
    nothing is padded; token_type_ids), on ``device``."""
    batch, n = x.shape[:2]
    if past is not None and past.batch != batch:
        raise ValueError(f"past (a KVCache) was made for batch {past.batch}, but the input "
                         f"has batch {batch}; make a KVCache for this batch")
    if past is not None and past.length + n > past.max_len:
        raise ValueError(f"past (a KVCache) holds {past.max_len} positions; {past.length} "
                         f"cached + {n} new do not fit: make it with a larger max_len")
    if token_type_ids is not None:
        token_type_ids = _token_types(token_type_ids, x, cfg.n_token_types, device)
    if attention_mask is None:
        return None, token_type_ids
    n_key = n + (past.length if past is not None else 0)
    keys = _padding_keys(attention_mask, (batch, n_key), past is not None, device)
    return keys, token_type_ids


def _token_types(ids: Any, tokens: Tensor, n_types: int, device: torch.device) -> Tensor:
    if not n_types:
        raise ValueError("token_type_ids given, but this model has no segment embeddings "
                         "(n_token_types=0); drop token_type_ids")
    if tokens.dim() != 2:
        raise ValueError("token_type_ids go with token ids, not with start_at_layer (the "
                         "residual stream already holds the segment embeddings)")
    if not isinstance(ids, Tensor) or ids.shape != tokens.shape or ids.is_floating_point() \
            or ids.is_complex() or ids.dtype == torch.bool:
        got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else repr(ids)
        raise ValueError(f"token_type_ids must be an integer tensor shaped like the tokens "
                         f"{tuple(tokens.shape)}, got {got:.80}; pass e.g. "
                         "torch.zeros_like(tokens)")
    ids = ids.to(device)
    if not compiling():
        lo, hi = (int(v) for v in ids.aminmax())
        if lo < 0 or hi >= n_types:
            raise ValueError(f"token_type_ids must lie in [0, n_token_types={n_types}); "
                             f"got min {lo}, max {hi}")
    return ids


def _padding_keys(mask: Any, shape: tuple[int, int], cached: bool,
                  device: torch.device) -> Tensor | None:
    """attention_mask -> bool [batch, key] on ``device`` (True = real token), or None when
    nothing is padded: the same result, by the faster unmasked path."""
    if isinstance(mask, Tensor) and mask.dim() == 1 and shape[0] == 1:
        mask = mask[None]
    want = "[batch, cached + new positions]" if cached else "[batch, pos] like the tokens"
    if not isinstance(mask, Tensor) or tuple(mask.shape) != shape or mask.is_complex():
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else repr(mask)
        raise ValueError(f"attention_mask must be a tensor {want}, {shape}, got {got:.80}; "
                         "pass 1 for real tokens and 0 for padding")
    mask = mask.to(device)
    keys = mask.bool()
    if compiling():  # reading values back would split the graph: no checks, no shortcut
        return keys
    checks = [keys.all()]
    if mask.dtype != torch.bool:
        checks.append(((mask == 0) | (mask == 1)).all())
    unpadded, *valid = torch.stack(checks).tolist()  # one sync for both
    if not all(valid):
        raise ValueError(f"attention_mask must hold only 0 and 1 (or bools), got values "
                         f"{mask.unique()[:8].tolist()}; pass 1 for real tokens and 0 for "
                         "padding")
    return None if unpadded else keys


def positions(keys: Tensor | None, offset: int, n: int, device: torch.device) -> Tensor:
    """Position ids of this call's n tokens: [pos], or [batch, pos] counting only real
    tokens when there is padding (left-padded rows then start at 0, as unpadded)."""
    if keys is None:
        return torch.arange(offset, offset + n, device=device)
    return (keys.long().cumsum(-1) - 1).clamp(min=0)[:, offset:]
