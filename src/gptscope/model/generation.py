"""Autoregressive generation with a KV cache.

Each step feeds only the newest token; keys and values of earlier positions come from the
cache, so a step costs O(pos) instead of O(pos^2). When the context window fills up, the
window slides: the oldest tokens drop out and the cache is rebuilt from the last n_ctx
tokens (learned positions cannot be shifted in place), which costs one full forward pass
per step from then on, exactly as generation without a cache does. Pass
``on_overflow="error"`` to refuse instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gptscope.model.layers import KVCache
from gptscope.model.sampling import sample_next

if TYPE_CHECKING:
    from gptscope.model.transformer import Transformer


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@torch.inference_mode()
def _steps(
    model: Transformer,
    tokens: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    stop_tokens: Iterable[int] | None,
    use_cache: bool,
    on_overflow: str,
) -> Iterator[Tensor]:
    """Yield the next token ids [batch] until max_new_tokens or every row has stopped."""
    if not model.cfg.causal:
        raise ValueError("generate needs a causal model; this one has causal=False (an encoder)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if on_overflow not in ("slide", "error"):
        raise ValueError(f"on_overflow must be 'slide' or 'error', got {on_overflow!r}")
    n_ctx = model.cfg.n_ctx
    if on_overflow == "error" and tokens.shape[1] + max_new_tokens > n_ctx:
        raise ValueError(
            f"prompt ({tokens.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds "
            f"n_ctx={n_ctx}; shorten them or use on_overflow='slide'"
        )
    if tokens.shape[1] > n_ctx:
        if on_overflow == "error":
            model._check_length(tokens.shape[1])
        tokens = tokens[:, -n_ctx:]
    generator = _generator(seed, tokens.device)
    stops = torch.tensor(sorted(set(stop_tokens or ())), device=tokens.device, dtype=torch.long)
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    window = tokens
    cache = None
    feed = tokens
    for _ in range(max_new_tokens):
        if use_cache:
            if cache is None or cache.length + feed.shape[1] > n_ctx:
                cache = KVCache(model.cfg, tokens.shape[0], model.device, model.dtype)
                feed = window[:, -n_ctx:]
            x = model(feed, return_type=None, stop_at_layer=model.cfg.n_layers, past=cache)
        else:
            feed = window[:, -n_ctx:]
            x = model(feed, return_type=None, stop_at_layer=model.cfg.n_layers)
        last = x[:, -1:]
        if model.ln_final is not None:
            last = model.ln_final(last)
        logits = model.unembed(last)[:, -1]  # [batch, d_vocab]
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        if stops.numel():
            # Rows that already stopped keep repeating their stop token.
            nxt = torch.where(done, window[:, -1], nxt)
            done = done | torch.isin(nxt, stops)
        yield nxt
        feed = nxt[:, None]
        window = torch.cat([window, feed], dim=1)
        if stops.numel() and bool(done.all()):
            return


def _prepare(model: Transformer, tokens: Any) -> tuple[Tensor, bool]:
    as_text = isinstance(tokens, str)
    was_1d = isinstance(tokens, Tensor) and tokens.dim() == 1
    return model.to_tokens(tokens), as_text or was_1d


def generate(
    model: Transformer,
    tokens: Any,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_tokens: Iterable[int] | None = None,
    use_cache: bool = True,
    on_overflow: str = "slide",
) -> Any:
    """Continue ``tokens`` [batch, pos] by up to ``max_new_tokens``; returns [batch, pos + new].

    A string prompt (with ``model.tokenizer``) returns a string. temperature 0 is greedy.
    Generation stops early once every row has produced one of ``stop_tokens``.
    """
    ids, squeeze = _prepare(model, tokens)
    new = list(_steps(model, ids, max_new_tokens, temperature, top_k, top_p, seed,
                      stop_tokens, use_cache, on_overflow))
    out = torch.cat([ids, torch.stack(new, dim=1)], dim=1) if new else ids
    if isinstance(tokens, str):
        return model.tokenizer.decode(out[0].tolist())
    return out[0] if squeeze else out


def stream(
    model: Transformer,
    tokens: Any,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_tokens: Iterable[int] | None = None,
    use_cache: bool = True,
    on_overflow: str = "slide",
) -> Iterator[Any]:
    """Like ``generate`` but yields each step: a string piece for string prompts, an int for
    a single sequence, else a LongTensor [batch]."""
    ids, _ = _prepare(model, tokens)
    steps = _steps(model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens,
                   use_cache, on_overflow)
    if isinstance(tokens, str):
        yield from _decode_stream(model.tokenizer, (int(t[0]) for t in steps))
    elif ids.shape[0] == 1:
        yield from (int(t[0]) for t in steps)
    else:
        yield from steps


def _decode_stream(tokenizer: Any, ids: Iterator[int]) -> Iterator[str]:
    """Decode incrementally; hold back text while a multi-byte character is incomplete."""
    seen: list[int] = []
    emitted = ""
    for i in ids:
        seen.append(i)
        text = tokenizer.decode(seen)
        if text.endswith("\ufffd"):
            continue
        yield text[len(emitted):]
        emitted = text
