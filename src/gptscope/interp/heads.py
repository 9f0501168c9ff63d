"""Head detectors: score every attention head on how much it attends where a known head type
would.

A head type is a detection pattern: a 0/1 matrix ``[query_pos, key_pos]`` marking the keys
that head type attends to from each query.

- previous_token: key = query - 1.
- duplicate_token: keys holding the same token as the query, earlier on.
- induction: keys just *after* an earlier occurrence of the query's token (prefix
  matching), so on a sequence repeated twice, a token in the second copy attends to the
  token that followed it in the first.

The score is the share of a head's attention that falls on the marked keys. By default
(``rows="marked"``) it is averaged only over queries that have at least one marked key (a
perfect induction head scores 1 on repeated random tokens). ``rows="all"`` divides by all
attention, as TransformerLens's ``detect_head(error_measure="mul")`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gptscope.model.hooks import act_name

KINDS = ("previous_token", "duplicate_token", "induction")


def detection_pattern(tokens: Tensor, kind: str) -> Tensor:
    """The 0/1 pattern for one head ``kind`` on ``tokens`` ``[batch, pos]``: ``[batch, query_pos,
    key_pos]`` (lower triangular, float)."""
    if kind not in KINDS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(KINDS)}")
    if tokens.dim() == 1:
        tokens = tokens[None]
    n = tokens.shape[-1]
    if kind == "previous_token":
        return torch.diag(torch.ones(n - 1, device=tokens.device), -1).expand(
            tokens.shape[0], n, n).clone()
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, query, key]
    strictly_before = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    dup = same & strictly_before
    if kind == "duplicate_token":
        return dup.float()
    # The key after an earlier copy of the query's token: shift the duplicate marks one key
    # to the right. Shifting keeps them causal (key j+1 <= query when j < query).
    ind = torch.zeros_like(dup)
    ind[:, :, 1:] = dup[:, :, :-1]
    return ind.float()


def repeated_tokens(d_vocab: int, seq_len: int, n_batch: int, seed: int = 0,
                    bos: int | None = None) -> Tensor:
    """Random tokens repeated twice: ``[n_batch, 2 * seq_len]`` (plus a leading ``bos``)."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(0, d_vocab, (n_batch, seq_len), generator=g)
    out = torch.cat([half, half], dim=1)
    if bos is not None:
        out = torch.cat([torch.full((n_batch, 1), bos, dtype=torch.long), out], dim=1)
    return out


def pattern_scores(
    patterns: Tensor,
    detection: Tensor,
    rows: str = "marked",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> Tensor:
    """Score attention ``patterns`` ``[batch, head, q, k]`` against ``detection`` ``[batch, q,
    k]``: ``[head]``, averaged over the batch (see the module docstring for ``rows``)."""
    if rows not in ("marked", "all"):
        raise ValueError(f"rows must be 'marked' or 'all', got {rows!r}")
    if exclude_bos or exclude_current_token:
        patterns = patterns.clone()  # never edit the caller's cached patterns
        if exclude_bos:
            patterns[..., 0] = 0
        if exclude_current_token:
            patterns.diagonal(dim1=-2, dim2=-1).zero_()
    det = detection[:, None].to(patterns.dtype)
    hit = (patterns * det).sum(-1)  # [batch, head, q]: attention on marked keys
    if rows == "all":
        return (hit.sum(-1) / patterns.sum((-2, -1))).mean(0)
    has = (det.sum(-1) > 0).expand_as(hit)  # queries with at least one marked key
    if not has.any():
        raise ValueError("no query has a marked key for this head kind on these tokens; use "
                         "tokens with repeats (e.g. repeated_tokens)")
    total = patterns.sum(-1)
    share = torch.where(has, hit / total.clamp(min=1e-12), torch.zeros_like(hit))
    return (share.sum((0, 2)) / has.sum((0, 2)).clamp(min=1))


def head_scores(
    model: Any,
    kind: str,
    tokens: Tensor | None = None,
    seq_len: int = 20,
    n_batch: int = 16,
    seed: int = 0,
    rows: str = "marked",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> Tensor:
    """Score every head on a head ``kind``: ``[n_layers, n_heads]``, each in [0, 1].

    kind: "previous_token", "duplicate_token" or "induction". tokens: ids ``[batch, pos]``;
    by default ``n_batch`` sequences of ``seq_len`` random tokens repeated twice (seeded).
    To match TransformerLens's ``detect_head`` (one sequence, error_measure="mul") pass
    ``rows="all"`` and the same ``exclude_bos`` / ``exclude_current_token``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(KINDS)}")
    if tokens is None:
        if 2 * seq_len > model.cfg.n_ctx:
            raise ValueError(f"2 * seq_len = {2 * seq_len} exceeds n_ctx={model.cfg.n_ctx}; "
                             "pass a smaller seq_len")
        tokens = repeated_tokens(model.cfg.d_vocab, seq_len, n_batch, seed)
    tokens = model.to_tokens(tokens)
    if tokens.shape[1] < 2:
        raise ValueError("head scores need sequences of at least 2 tokens")
    names = [act_name("pattern", i) for i in range(model.cfg.n_layers)]
    cache = model.activations(tokens, names)
    det = detection_pattern(tokens, kind)
    return torch.stack([
        pattern_scores(cache[name].float(), det, rows, exclude_bos, exclude_current_token)
        for name in names
    ]).cpu()
