"""Lesson 9: induction heads, and activation patching to find what matters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gptscope.model.transformer import Transformer


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


def train_induction_model(steps: int = 200, seed: int = 0) -> Transformer:
    """Given: train a 2-layer attention-only model on repeated random tokens (BOS, 16
    distinct tokens, the same 16 again) for ``steps`` steps, about 10-20 seconds for 200 on
    a laptop. Induction heads form within such a short run."""
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
    print(f"trained {steps} steps; final training loss {loss.item():.3f}")
    return model.eval()


def explore_trained_induction(train_steps: int = 0, seed: int = 0) -> Tensor:
    """Given: score every head of a trained model with *your* ``induction_score``.

    By default the model is the shipped ``induction-2l`` (``gs.load("induction-2l")``: the
    trainer's preset of that name, 1000 steps, seed 1337; ``gs.zoo.recipe`` says how it was
    made); ``train_steps=200`` trains one here instead (``train_induction_model``). The
    sequences are a BOS token, then distinct random tokens repeated once, as in training;
    the pattern is scored without its BOS row and column. The best layer-1 head should
    score well above 0.4, the layer-0 heads (which cannot do induction alone) near 0.
    Returns the scores [layer, head].
    """
    import gptscope as gs

    model = train_induction_model(train_steps, seed) if train_steps else gs.load("induction-2l")
    n_symbols, half = model.cfg.d_vocab - 1, (model.cfg.n_ctx - 1) // 2  # BOS is the last id
    g = torch.Generator().manual_seed(seed)
    distinct = torch.stack([torch.randperm(n_symbols, generator=g)[:half] for _ in range(8)])
    bos = torch.full((8, 1), n_symbols)
    tokens = torch.cat([bos, distinct, distinct], dim=1)  # [8, 1 + 2 * half]
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    scores = torch.stack([induction_score(cache[name][..., 1:, 1:], half) for name in names])
    print("induction scores [layer, head]:")
    print(scores)
    print(f"best head: {scores.max().item():.2f} (an induction head scores > 0.4)")
    return scores


def ov_qk_circuits(model: Transformer, layer: int, head: int) -> tuple[Tensor, Tensor]:
    """One head's full QK and OV circuits, read from the weights alone: (qk, ov).

    With the row-vector convention (a residual vector x [d_model] times a matrix) and the
    weights of ``model.blocks[layer].attn`` (W_Q, W_K, W_V [n_heads, d_model, d_head],
    W_O [n_heads, d_head, d_model]), the embedding model.W_E [d_vocab, d_model] and the
    unembedding model.W_U [d_model, d_vocab]:

    - qk = W_E W_Q W_K^T W_E^T [d_vocab, d_vocab]: entry [i, j] is the attention score
      (before the 1/sqrt(d_head) scale, which is left out) a query on token i gives a key on
      token j.
    - ov = W_E W_V W_O W_U [d_vocab, d_vocab]: entry [i, j] is how much attending to token
      i raises the logit of token j.

    Only this head's slice ``[head]`` of each weight. Biases (b_Q, b_K, b_V, b_O) and
    LayerNorm are left out: the circuits are the weights' bilinear part, as TransformerLens
    and Elhage et al. (2021) define them. Read the weights; do not edit them.
    """
    attn = model.blocks[layer].attn
    W_E, W_U = model.W_E.detach(), model.W_U.detach()
    W_Q, W_K = attn.W_Q[head].detach(), attn.W_K[head].detach()
    W_V, W_O = attn.W_V[head].detach(), attn.W_O[head].detach()
    qk = (W_E @ W_Q) @ (W_E @ W_K).T
    ov = W_E @ W_V @ W_O @ W_U
    return qk, ov


def composition_score(model: Transformer, layer_a: int, head_a: int, layer_b: int, head_b: int,
                      kind: str = "Q") -> Tensor:
    """How strongly head b (a later layer) reads what head a writes (Elhage et al., 2021).

    Row-vector convention: head a's OV matrix is W_A = W_V^a W_O^a [d_model, d_model] (what
    a adds to the residual stream, x -> x W_A). Head b's matrix W_B [d_model, d_model] is
    W_Q^b W_K^b^T for kind "Q" (a's output read by b's queries), its transpose
    W_K^b W_Q^b^T for "K" (read by b's keys) and W_V^b W_O^b for "V" (by b's values); W_Q
    etc. are the ``[head]`` slices of ``model.blocks[layer].attn``'s weights, biases left
    out. Score = ||W_A W_B||_F / (||W_A||_F ||W_B||_F) with the Frobenius norm: near
    1/sqrt(d_model) for unrelated random heads, up to 1 when b reads exactly a's output.
    Callers pass layer_a < layer_b. Returns a 0-d float tensor.
    """
    a, b = model.blocks[layer_a].attn, model.blocks[layer_b].attn
    W_A = a.W_V[head_a].detach() @ a.W_O[head_a].detach()
    W_Q, W_K = b.W_Q[head_b].detach(), b.W_K[head_b].detach()
    W_B = {"Q": lambda: W_Q @ W_K.T, "K": lambda: W_K @ W_Q.T,
           "V": lambda: b.W_V[head_b].detach() @ b.W_O[head_b].detach()}[kind]()
    fro = torch.linalg.matrix_norm
    return fro(W_A @ W_B) / (fro(W_A) * fro(W_B))


def ablate_head(model: Transformer, tokens: Tensor, layer: int, head: int,
                kind: str = "zero") -> Tensor:
    """How much the loss rises when one head is knocked out: ablated loss - clean loss.

    tokens [batch, pos] (int64). The loss is the model's mean next-token loss,
    ``model(tokens, return_type="loss")``. The ablated run replaces head ``head``'s output
    z at ``blocks.{layer}.attn.hook_z`` ([batch, pos, head, d_head]) for that head only, and
    leaves every other head as it is:

    - kind "zero": by zeros;
    - kind "mean": by its mean over the batch and every position, one [d_head] vector (the
      head's average output on these tokens, computed from the clean run).

    Ablate with a hook (``model.run_with_hooks``), so no hook stays attached afterwards and
    the weights are not touched. Returns a 0-d float tensor (no gradient needed).
    """
    name = f"blocks.{layer}.attn.hook_z"
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens, names_filter=name, return_type="loss")
        fill = torch.zeros_like(cache[name][0, 0, head])
        if kind == "mean":
            fill = cache[name][:, :, head].mean(dim=(0, 1))

        def hook(z: Tensor, hook) -> Tensor:
            z = z.clone()
            z[:, :, head] = fill
            return z

        ablated = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, hook)])
    return ablated - clean
