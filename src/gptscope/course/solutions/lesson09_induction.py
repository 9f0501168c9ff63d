"""Lesson 9: induction heads, and activation patching to find what matters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def induction_score(pattern: Tensor, seq_len: int) -> Tensor:
    """How much each head behaves like an induction head: [head], each in [0, 1].

    pattern [batch, head, 2 * seq_len, 2 * seq_len]: attention patterns (query, key) on
    sequences of seq_len distinct random tokens repeated twice. An induction head, at a
    token in the second copy (query q >= seq_len), attends to the token *after* that token's
    first occurrence: key q - seq_len + 1. Score = that attention, averaged over the second
    half's queries and the batch.

    Hint: ``pattern.diagonal(offset=..., dim1=-2, dim2=-1)`` picks key = query + offset.
    """
    diag = pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)  # [batch, head, ...]
    # The diagonal starts at query seq_len - 1 (key 0); the second copy starts one later.
    return diag[..., 1:].mean(dim=(0, 2))


def activation_patching(model, clean: Tensor, corrupted: Tensor,
                        metric: Callable[[Tensor], Tensor]) -> Tensor:
    """Patch the clean residual stream into the corrupted run, one layer and position at a time.

    clean, corrupted: token ids [batch, pos] of the same shape. For each layer L and position
    p: run the model on ``corrupted`` with ``blocks.{L}.hook_resid_pre`` at position p
    replaced by its value from the clean run, and record ``metric(logits)`` (a scalar).
    Returns [n_layers, pos] (float).

    Hint: cache the clean run once (``model.run_with_cache``), then for each (L, p) use
    ``model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])`` with a hook that returns
    a copy of its input with ``[:, p]`` overwritten.
    """
    names = [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)]
    out = torch.zeros(len(names), clean.shape[1])
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
        for layer, name in enumerate(names):
            for pos in range(clean.shape[1]):
                def hook(x: Tensor, hook, name: str = name, pos: int = pos) -> Tensor:
                    x = x.clone()
                    x[:, pos] = cache[name][:, pos]
                    return x

                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])
                out[layer, pos] = float(metric(logits))
    return out


def explore_trained_induction(steps: int = 200, seed: int = 0) -> Tensor:
    """Given: train a 2-layer attention-only model on repeated random tokens (about 10-20
    seconds on a laptop), then score its heads with *your* ``induction_score``.

    Induction heads form during this short run: the best layer-1 head should score well
    above 0.4, the layer-0 heads (which cannot do induction alone) near 0. Returns the
    scores [layer, head].
    """
    import gptscope as gs
    from gptscope.data.tasks import InductionTask

    task = InductionTask(half_len=16, n_symbols=64)
    cfg = gs.ModelConfig(n_layers=2, n_heads=4, d_model=64, n_ctx=33, d_vocab=task.vocab_size,
                         attn_only=True, normalization=None, positional="rotary", seed=seed)
    model = gs.Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens, mask = task.batch(32, "train", generator=g)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[mask], tokens[:, 1:][mask[:, :-1]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    half = torch.stack([torch.randperm(64, generator=g)[:16] for _ in range(8)])
    repeated = torch.cat([half, half], dim=1)  # [8, 32]: distinct tokens, repeated once
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(repeated, names_filter=names)
    scores = torch.stack([induction_score(cache[name], 16) for name in names])
    print(f"final training loss {loss.item():.3f}; induction scores [layer, head]:")
    print(scores)
    print(f"best head: {scores.max().item():.2f} (an induction head scores > 0.4)")
    return scores
