"""Log-likelihood scoring of continuations, identical at any batch size and padding side.

lm-evaluation-harness users find that scores move with the batch size (its issues #1645,
#879): a CPU or GPU matrix product sums in an order that depends on the batch's shape, and
padding shifts where each row's numbers fall in the vector lanes. Measured on the stories
model, fp32 per-sequence log-likelihoods differ by up to 6.6e-7 nats between batch 1, 3 and
16 (left or right padding, 1 or 2 threads); in float64 by up to 5.3e-15. So the scores here
are computed in float64 and each token's log-prob is rounded to a multiple of 2**-24 nats
(6e-8, far below any difference that matters): a 1e-14 wobble crosses a rounding boundary
with odds of about 1e-7 per token, so the reported numbers are the same however the samples
are batched. Sums are then taken on the host in a fixed order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

QUANTUM = 2.0**-24  # the grid every reported token log-prob is rounded to


def _float64(model: Any) -> Any:
    """The model itself when it already computes in float64, else a float64 copy."""
    if model.dtype == torch.float64:
        return model
    return copy.deepcopy(model).to(torch.float64).eval()


def _check_pairs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], n_ctx: int) -> None:
    if len(pairs) == 0:
        raise ValueError("no (context, continuation) pairs to score: the dataset is empty")
    for i, (context, continuation) in enumerate(pairs):
        if len(context) == 0 or len(continuation) == 0:
            raise ValueError(f"sample {i}: context and continuation must each have at least "
                             "one token (start the context with a newline or BOS)")
        if len(context) + len(continuation) - 1 > n_ctx:
            raise ValueError(f"sample {i}: context ({len(context)}) + continuation "
                             f"({len(continuation)}) tokens exceed n_ctx={n_ctx} + 1; "
                             "shorten the context")


def _padded(rows: list[list[int]], side: str) -> tuple[Tensor, Tensor, list[int]]:
    """rows -> ids [batch, longest], attention mask [batch, longest], each row's offset."""
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    offsets = []
    for i, row in enumerate(rows):
        start = longest - len(row) if side == "left" else 0
        ids[i, start:start + len(row)] = torch.tensor(row)
        mask[i, start:start + len(row)] = 1
        offsets.append(start)
    return ids, mask, offsets


@torch.no_grad()  # not inference_mode: the float64 copy's weights must stay normal tensors
def continuation_logprobs(model: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                          batch_size: int = 16, padding_side: str = "left"
                          ) -> list[list[float]]:
    """The log-prob (nats) of each continuation token given the context and the tokens
    before it: pairs of (context ids, continuation ids) -> one list per pair, as long as its
    continuation. batch_size and padding_side ("left" or "right") change only the speed."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    _check_pairs(pairs, model.cfg.n_ctx)
    exact = _float64(model)
    out: list[list[float]] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        # The last continuation token is only predicted, never fed.
        rows = [list(c) + list(k)[:-1] for c, k in chunk]
        ids, mask, offsets = _padded(rows, padding_side)
        logprobs = exact(ids.to(exact.device), attention_mask=mask.to(exact.device)
                         ).log_softmax(-1).cpu()
        for row, (context, continuation), offset in zip(logprobs, chunk, offsets, strict=True):
            first = offset + len(context) - 1  # the position that predicts continuation[0]
            picked = row[first:first + len(continuation)].gather(
                -1, torch.tensor(list(continuation))[:, None])[:, 0]
            out.append((torch.round(picked / QUANTUM) * QUANTUM).tolist())
    return out


def loglik_choice(logliks: Sequence[float], lengths: Sequence[int] | None = None) -> int:
    """The index of the chosen answer: the largest summed log-likelihood (lm-eval's
    ``acc``) or, given each choice's length, the largest log-likelihood per unit of length
    (``acc_norm``, where lm-eval divides by the choice's characters). Without normalisation
    every extra token costs log-probability, so longer answers lose even when they are
    right: the length trap. Ties go to the first choice."""
    if len(logliks) == 0:
        raise ValueError("logliks is empty: a question needs at least one choice")
    if lengths is None:
        scores = list(logliks)
    else:
        if len(lengths) != len(logliks) or any(n <= 0 for n in lengths):
            raise ValueError("lengths must give a positive length for every choice")
        scores = [ll / n for ll, n in zip(logliks, lengths, strict=True)]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
