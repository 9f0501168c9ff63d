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

from gptscope.model.layers import KVCache, cross_inputs
from gptscope.model.sampling import check_sampling, draw, finite_rows, is_int, nonfinite_error

if TYPE_CHECKING:
    from gptscope.model.transformer import Transformer


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _stop_ids(stop_tokens: Any, d_vocab: int) -> list[int]:
    """None, an id, a collection of ids or an integer tensor -> sorted distinct ids."""
    if stop_tokens is None:
        return []
    if isinstance(stop_tokens, Tensor):
        if stop_tokens.is_floating_point() or stop_tokens.is_complex() or \
                stop_tokens.dtype == torch.bool:
            raise ValueError(f"stop_tokens must hold integer token ids, got a {stop_tokens.dtype}"
                             " tensor; pass stop_tokens.long() or a list of ints")
        ids = stop_tokens.flatten().tolist()
    elif is_int(stop_tokens):
        ids = [stop_tokens]
    elif isinstance(stop_tokens, (str, bytes)) or not isinstance(stop_tokens, Iterable):
        raise ValueError(f"stop_tokens must be token ids (an int, a list of ints or an integer "
                         f"tensor), got {stop_tokens!r:.80}; for text, pass "
                         "model.tokenizer.encode(text)")
    else:
        ids = list(stop_tokens)
    bad = [i for i in ids if not (is_int(i) and 0 <= i < d_vocab)]
    if bad:
        raise ValueError(f"stop_tokens must be ints in [0, d_vocab={d_vocab}), got {bad[0]!r}; "
                         "pass ids the tokenizer produced")
    return sorted({int(i) for i in ids})


def _check_args(
    model: Transformer,
    max_new_tokens: Any,
    sampling: tuple[Any, Any, Any],
    seed: Any,
    use_cache: Any,
    on_overflow: Any,
) -> None:
    """Refuse bad settings before any work (``stream`` included: it checks when called)."""
    if not model.cfg.causal:
        raise ValueError("generate needs a causal model; this one has causal=False (an encoder)")
    if not (is_int(max_new_tokens) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}; pass "
                         "e.g. max_new_tokens=20")
    check_sampling(*sampling)
    if seed is not None and not (is_int(seed) and 0 <= seed < 2**64):
        raise ValueError(f"seed must be an int in [0, 2**64) or None, got {seed!r}; pass e.g. "
                         "seed=0")
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}")
    if on_overflow not in ("slide", "error"):
        raise ValueError(f"on_overflow must be 'slide' or 'error', got {on_overflow!r}")


@torch.inference_mode()
def _steps(
    model: Transformer,
    tokens: Tensor,
    max_new_tokens: int,
    sampling: tuple[float, int | None, float | None],
    seed: int | None,
    stops: list[int],
    use_cache: bool,
    on_overflow: str,
    cross: dict[str, Any] | None = None,
) -> Iterator[Tensor]:
    """Yield the next token ids [batch] until max_new_tokens or every row has stopped.

    The arguments are already checked (``_check_args``). One host sync per step reads
    whether the logits were finite and, with stop tokens, whether every row has stopped.
    cross: ``context`` and ``context_mask`` for a cross-attention decoder, passed to every
    step: the source is fixed, so only the decoder's own keys and values are cached.
    """
    cross = cross or {}
    n_ctx = model.cfg.n_ctx
    if on_overflow == "error" and tokens.shape[1] + max_new_tokens > n_ctx:
        raise ValueError(
            f"prompt ({tokens.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds "
            f"n_ctx={n_ctx}; shorten them or use on_overflow='slide'"
        )
    tokens = tokens[:, -n_ctx:]
    generator = _generator(seed, tokens.device)
    stop_ids = torch.tensor(stops, device=tokens.device, dtype=torch.long)
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    window = feed = tokens
    cache = None
    for step in range(max_new_tokens):
        if use_cache:
            if cache is None or cache.length + feed.shape[1] > cache.max_len:
                # Room for this call's tokens only, not n_ctx: a long-context model would
                # otherwise allocate its whole window per layer for a short generation.
                max_len = min(n_ctx, window.shape[1] + max_new_tokens - step)
                cache = KVCache(model.cfg, tokens.shape[0], model.device, model.dtype, max_len)
                feed = window[:, -n_ctx:]
            x = model(feed, return_type=None, stop_at_layer=model.cfg.n_layers, past=cache,
                      **cross)
        else:
            feed = window[:, -n_ctx:]
            x = model(feed, return_type=None, stop_at_layer=model.cfg.n_layers, **cross)
        logits = model.resid_to_logits(x[:, -1:])[:, -1]  # [batch, d_vocab]
        nxt, done, stopped = _pick(logits, sampling, generator, window[:, -1], stop_ids, done,
                                   step)
        yield nxt
        if stopped:
            return
        feed = nxt[:, None]
        window = torch.cat([window, feed], dim=1)


def _pick(
    logits: Tensor,
    sampling: tuple[float, int | None, float | None],
    generator: torch.Generator | None,
    previous: Tensor,
    stop_ids: Tensor,
    done: Tensor,
    step: int,
) -> tuple[Tensor, Tensor, bool]:
    """Sample from logits [batch, d_vocab]; return (ids [batch], done [batch], all stopped).

    Raises if a row cannot be sampled (NaN, +inf, or every token -inf): greedy would
    otherwise return token 0 for it, and multinomial fails (on CUDA, with a device assert).
    """
    rows_ok = finite_rows(logits)
    safe = logits
    if sampling[0] > 0:  # keep NaN away from multinomial until the check below has run
        safe = logits.where(rows_ok[:, None], 0.0)
    nxt = draw(safe, *sampling, generator)
    if stop_ids.numel():
        # Rows that already stopped keep repeating their stop token.
        nxt = torch.where(done, previous, nxt)
        done = done | torch.isin(nxt, stop_ids)
        ok, stopped = torch.stack((rows_ok.all(), done.all())).tolist()  # one sync
    else:
        ok, stopped = bool(rows_ok.all()), False
    if not ok:
        raise nonfinite_error(logits, f"generation step {step} produced logits")
    return nxt, done, stopped


def _cross_args(model: Transformer, context: Any, context_mask: Any, batch: int
                ) -> dict[str, Any]:
    """Check the context up front and return the forward kwargs: the checked context and
    its PaddingMask, which every step's forward then takes as they are."""
    checked = cross_inputs(model.cfg, context, context_mask, batch, model.device, model.dtype)
    if checked is None:
        return {}
    return {"context": checked[0], "context_mask": checked[1]}


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
    stop_tokens: Iterable[int] | int | Tensor | None = None,
    use_cache: bool = True,
    on_overflow: str = "slide",
    context: Tensor | None = None,
    context_mask: Tensor | None = None,
) -> Any:
    """Continue ``tokens`` [batch, pos] by up to ``max_new_tokens``; returns [batch, pos + new].

    A string prompt (with ``model.tokenizer``) returns a string. temperature 0 is greedy.
    Generation stops early once every row has produced one of ``stop_tokens`` (an id, a
    collection of ids or an integer tensor). Raises ValueError if the logits turn NaN/inf.
    context [batch, src_pos, d_model] and context_mask [batch, src_pos]: the encoder output a
    cross-attention decoder reads (see ``gptscope.model.encoder_decoder``).
    """
    sampling = (temperature, top_k, top_p)
    _check_args(model, max_new_tokens, sampling, seed, use_cache, on_overflow)
    stops = _stop_ids(stop_tokens, model.cfg.d_vocab)
    ids, squeeze = _prepare(model, tokens)
    cross = _cross_args(model, context, context_mask, ids.shape[0])
    new = list(_steps(model, ids, max_new_tokens, sampling, seed, stops, use_cache, on_overflow,
                      cross))
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
    stop_tokens: Iterable[int] | int | Tensor | None = None,
    use_cache: bool = True,
    on_overflow: str = "slide",
) -> Iterator[Any]:
    """Like ``generate`` but yields each step: a string piece for string prompts, an int for
    a single sequence, else a LongTensor [batch]. Bad arguments raise here, not at the
    first ``next``."""
    sampling = (temperature, top_k, top_p)
    _check_args(model, max_new_tokens, sampling, seed, use_cache, on_overflow)
    stops = _stop_ids(stop_tokens, model.cfg.d_vocab)
    ids, _ = _prepare(model, tokens)
    steps = _steps(model, ids, max_new_tokens, sampling, seed, stops, use_cache, on_overflow)
    if isinstance(tokens, str):
        return _decode_stream(model.tokenizer, (int(t[0]) for t in steps))
    if ids.shape[0] == 1:
        return (int(t[0]) for t in steps)
    return steps


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


@torch.inference_mode()
def greedy_continuations(model: Transformer, prompts: list[list[int]], max_new_tokens: int,
                         stop_tokens: Iterable[int] | int | None = None) -> list[list[int]]:
    """Greedy continuations of prompts of different lengths in one batch; returns each
    row's new tokens, up to and including its first stop token.

    The prompts are padded on the left and the padding is masked out of attention and
    positions, so each row gets the tokens it would get alone (up to float rounding between
    batch shapes, which can flip a near-tie). Every prompt plus ``max_new_tokens`` must fit
    n_ctx.
    """
    _check_args(model, max_new_tokens, (0.0, None, None), None, True, "error")
    if not prompts or any(not p for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token-id lists")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(f"the longest prompt ({longest} tokens) + max_new_tokens "
                         f"({max_new_tokens}) exceeds n_ctx={model.cfg.n_ctx}")
    stops = torch.tensor(_stop_ids(stop_tokens, model.cfg.d_vocab), dtype=torch.long,
                         device=model.device)
    feed = torch.zeros(len(prompts), longest, dtype=torch.long, device=model.device)
    keys = torch.zeros_like(feed, dtype=torch.bool)
    for row, ids in enumerate(prompts):
        feed[row, longest - len(ids):] = torch.tensor(ids)
        keys[row, longest - len(ids):] = True
    cache = KVCache(model.cfg, len(prompts), model.device, model.dtype,
                    longest + max_new_tokens)
    new, done = [], torch.zeros(len(prompts), dtype=torch.bool, device=model.device)
    for step in range(max_new_tokens):
        x = model(feed, return_type=None, stop_at_layer=model.cfg.n_layers, past=cache,
                  attention_mask=keys)
        logits = model.resid_to_logits(x[:, -1:])[:, -1]  # [batch, d_vocab]
        if not bool(finite_rows(logits).all()):
            raise nonfinite_error(logits, f"generation step {step} produced logits")
        nxt = logits.argmax(-1)
        new.append(nxt)
        done = done | torch.isin(nxt, stops)
        if bool(done.all()):
            break
        feed = nxt[:, None]
        keys = torch.cat([keys, torch.ones_like(feed, dtype=torch.bool)], dim=1)
    rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
    stop_set = set(stops.tolist())
    return [row[:next((i + 1 for i, t in enumerate(row) if t in stop_set), len(row))]
            for row in rows]
