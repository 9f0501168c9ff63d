"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor


def is_int(value: Any) -> bool:
    """A whole number that is not a bool (True is an int to Python, never a count here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (int, float, numpy scalar) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sampling(temperature: Any, top_k: Any, top_p: Any) -> None:
    """Refuse sampling settings ``sample_next`` (and so ``generate``) cannot use."""
    if not (is_real(temperature) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got "
                         f"{temperature!r}; pass e.g. temperature=1.0")
    if top_k is not None and not (is_int(top_k) and top_k >= 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}; pass e.g. "
                         "top_k=50, or None to keep every token")
    if top_p is not None and not (is_real(top_p) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1] or None, got {top_p!r}; pass e.g. "
                         "top_p=0.9, or None to keep every token")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token id per row of ``logits`` [batch, d_vocab] -> [batch].

    temperature 0 is greedy (argmax). Otherwise logits are divided by the temperature, then
    top_k keeps the k most likely tokens and top_p keeps the smallest set whose probability
    reaches p (always at least the most likely token), and one token is drawn.
    """
    if not (isinstance(logits, Tensor) and logits.dim() in (1, 2) and logits.is_floating_point()):
        got = (f"a {logits.dtype} tensor of shape {tuple(logits.shape)}"
               if isinstance(logits, Tensor) else type(logits).__name__)
        raise ValueError(f"logits must be a float tensor [batch, d_vocab], got {got}; pass "
                         "the last position's logits, logits[:, -1]")
    check_sampling(temperature, top_k, top_p)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__}; pass torch.Generator().manual_seed(0)")
    rows_ok = finite_rows(logits)
    if not bool(rows_ok.all()):
        raise nonfinite_error(logits, "sample_next got logits")
    return draw(logits, temperature, top_k, top_p, generator)


def finite_rows(logits: Tensor) -> Tensor:
    """Bool [batch]: rows that can be sampled from. One reduction finds every bad row: a row's
    max is NaN or +inf when any entry is, and -inf only when every entry is. Some -inf
    entries are fine (hooks ban tokens that way)."""
    return torch.isfinite(logits.amax(dim=-1))


def nonfinite_error(logits: Tensor, where: str) -> ValueError:
    """Say which rows of ``logits`` [batch, d_vocab] are broken, and how (the slow path)."""
    rows = logits.reshape(-1, logits.shape[-1])
    found = []
    for label, bad in (("NaN", rows.isnan().any(-1)), ("+inf", rows.isposinf().any(-1)),
                       ("-inf everywhere (every token banned)", rows.isneginf().all(-1))):
        if bool(bad.any()):
            found.append(f"{label} in rows {bad.nonzero().flatten().tolist()}")
    return ValueError(
        f"{where} that are not finite ({'; '.join(found)}); the model's weights or a hook "
        "produced them: check the weights with all(p.isfinite().all() for p in "
        "model.parameters()) and any hooks' return values"
    )


def draw(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """``sample_next`` without the argument checks (``generate`` checks once, not per step)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already reach top_p.
        before = probs.cumsum(dim=-1) - probs
        drop_sorted = before >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
