"""The logit lens: read the residual stream after every layer as if it were the last.

Each accumulated residual stream goes through ``ln_final`` (with its own statistics) and the
unembedding. Where the right answer first climbs to the top shows which layers did the work.
Only the top-k tokens per layer and position are kept, so a GPT-2-sized vocabulary costs
``[layer, batch, pos, k]`` memory, not ``[layer, batch, pos, d_vocab]``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gptscope.interp._util import as_token_ids
from gptscope.interp.resid import accumulated_resid
from gptscope.model.cache import ActivationCache
from gptscope.model.hooks import act_name


@dataclass
class LogitLens:
    """Top-k predictions after every layer.

    labels: ``[layer]`` names ("0_pre" = embeddings only, ..., "final_post" = the model's own
    output). top_tokens, top_probs: ``[layer, batch, pos, k]`` (probabilities, highest first).
    target_probs: ``[layer, batch, pos]`` probability of ``targets`` ``[batch, pos]`` (NaN
    where a position has no target, e.g. the last one when the target is the next token).
    """

    labels: list[str]
    top_tokens: Tensor
    top_probs: Tensor
    targets: Tensor | None = None
    target_probs: Tensor | None = None
    tokens: Tensor | None = None
    tokenizer: Any = None

    @property
    def n_layers(self) -> int:
        return len(self.labels)

    def first_layer_above(self, threshold: float = 0.5) -> Tensor:
        """First layer index where the target's probability exceeds ``threshold``:
        ``[batch, pos]`` (-1 where it never does)."""
        if self.target_probs is None:
            raise ValueError("no targets were given; pass target= to logit_lens")
        above = self.target_probs > threshold
        first = above.float().argmax(0)
        return torch.where(above.any(0), first, torch.full_like(first, -1))

    def _decode(self, token_id: int) -> str:
        if self.tokenizer is not None:
            try:
                return str(self.tokenizer.decode([token_id]))
            except Exception:  # a tokenizer that cannot decode one id still gets shown by id
                pass
        return str(token_id)

    def _cells(self, batch: int) -> tuple[list[str], list[list[str]]]:
        n_pos = self.top_tokens.shape[2]
        if self.tokens is not None:
            header = [self._decode(int(t)) for t in self.tokens[batch]]
        else:
            header = [str(p) for p in range(n_pos)]
        rows = []
        for layer in range(self.n_layers):
            row = []
            for p in range(n_pos):
                tok = self._decode(int(self.top_tokens[layer, batch, p, 0]))
                cell = f"{tok!r} {self.top_probs[layer, batch, p, 0].item():.2f}"
                if self.target_probs is not None and not torch.isnan(
                    self.target_probs[layer, batch, p]
                ):
                    cell += f" ({self.target_probs[layer, batch, p].item():.2f})"
                row.append(cell)
            rows.append(row)
        return header, rows

    def to_table(self, batch: int = 0) -> str:
        """A plain-text table: rows are layers, columns positions; each cell the top-1 token,
        its probability, and (in brackets) the target's probability."""
        if not 0 <= batch < self.top_tokens.shape[1]:
            raise ValueError(f"batch must be in [0, {self.top_tokens.shape[1]}), got {batch}")
        header, rows = self._cells(batch)
        table = [["layer", *header]] + [[label, *row] for label, row in zip(self.labels, rows)]
        widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                         for r in table)

    def _repr_html_(self) -> str:
        header, rows = self._cells(0)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            f"<tr><th>{html.escape(label)}</th>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for label, row in zip(self.labels, rows)
        )
        return f"<table><tr><th>layer</th>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        _, b, p, k = self.top_tokens.shape
        return f"LogitLens({self.n_layers} layers, batch={b}, pos={p}, k={k})"


def _names(model: Any) -> list[str]:
    n = model.cfg.n_layers
    names = [act_name("resid_pre", i) for i in range(n)] + [act_name("resid_post", n - 1)]
    return names


def logit_lens(
    model: Any,
    tokens_or_cache: Any,
    target: Any = None,
    k: int = 5,
    tokens: Tensor | None = None,
) -> LogitLens:
    """Top-k next-token predictions after every layer (``LogitLens``).

    ``tokens_or_cache``: token ids ``[batch, pos]`` (the model is run) or an ActivationCache
    holding every ``resid_pre`` and the last ``resid_post``. ``target``: None (the next token,
    when the tokens are known), an int (one token everywhere) or ids ``[batch, pos]`` (-1 for
    none). The final row equals the model's own softmax output.
    """
    if model.cfg.n_layers == 0:
        raise ValueError("the logit lens needs a model with at least one layer")
    if model.cfg.norm_position != "pre":
        raise ValueError("the logit lens reads the residual stream of pre-LN models; this "
                         "model normalises after each block (norm_position='post')")
    if not isinstance(k, int) or not 1 <= k <= model.cfg.d_vocab:
        raise ValueError(f"k must be an int in [1, d_vocab={model.cfg.d_vocab}], got {k!r}")
    if hasattr(tokens_or_cache, "keys") and hasattr(tokens_or_cache, "model"):
        cache = tokens_or_cache
    else:
        tokens = model.to_tokens(tokens_or_cache)
        cache = ActivationCache(model.activations(tokens, _names(model)), model)
    with torch.no_grad():
        stack, labels = accumulated_resid(cache, apply_ln=True, return_labels=True)
        batch, n_pos = stack.shape[1:3]
        targets = _targets(model, target, tokens, batch, n_pos)
        top_tokens, top_probs, target_probs = [], [], []
        for x in stack:  # one layer at a time keeps [batch, pos, d_vocab] the largest tensor
            logits = model.unembed(x)  # x has been through ln_final already
            logp = logits.float().log_softmax(-1)
            vals, idx = logp.topk(k, dim=-1)
            top_tokens.append(idx)
            top_probs.append(vals.exp())
            if targets is not None:
                tp = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0].exp()
                target_probs.append(torch.where(targets >= 0, tp, torch.nan))
    return LogitLens(
        labels=labels,
        top_tokens=torch.stack(top_tokens).cpu(),
        top_probs=torch.stack(top_probs).cpu(),
        targets=targets.cpu() if targets is not None else None,
        target_probs=torch.stack(target_probs).cpu() if targets is not None else None,
        tokens=tokens.cpu() if isinstance(tokens, Tensor) else None,
        tokenizer=getattr(model, "tokenizer", None),
    )


def _targets(model: Any, target: Any, tokens: Tensor | None, batch: int,
             n_pos: int) -> Tensor | None:
    device = model.W_U.device
    if target is None:
        if tokens is None:
            return None
        nxt = torch.full((batch, n_pos), -1, dtype=torch.long, device=device)
        nxt[:, :-1] = tokens[:, 1:].to(device)
        return nxt
    if isinstance(target, int):
        as_token_ids(target, "target", model.cfg.d_vocab)
        return torch.full((batch, n_pos), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target).long().to(device)
    if t.shape != (batch, n_pos):
        raise ValueError(f"target must be an int or ids [batch, pos] = {(batch, n_pos)}, got "
                         f"shape {tuple(t.shape)}")
    if t.max() >= model.cfg.d_vocab:
        raise ValueError(f"target ids must be < d_vocab={model.cfg.d_vocab} (-1 for none)")
    return t
