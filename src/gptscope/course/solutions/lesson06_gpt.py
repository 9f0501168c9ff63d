"""Lesson 6: GPT from scratch: the forward pass, sampling, BPE merges and training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ModelConfig


def _ln(h: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    c = h - h.mean(-1, keepdim=True)
    return c / (c.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def gpt_forward(tokens: Tensor, params: dict[str, Tensor], cfg: ModelConfig) -> Tensor:
    """The whole GPT-2-style model: token ids [batch, pos] -> logits [batch, pos, d_vocab].

    params is a gptscope ``Transformer``'s ``state_dict()``: ``embed.W_E`` [d_vocab,
    d_model], ``pos_embed.W_pos`` [n_ctx, d_model], ``blocks.{i}.`` + the block names of
    lesson 5 for i in range(cfg.n_layers), ``ln_final.w``, ``ln_final.b``, ``unembed.W_U``
    [d_model, d_vocab]. The check loads a reference model's weights into yours this way and
    compares logits.

    Steps: x = W_E[tokens] + W_pos[:pos]; each block (pre-LN, causal, as in lesson 5, every
    LayerNorm with ``cfg.eps``); ln_final; logits = x @ W_U.

    The check varies the shapes and two switches, so follow them: n_layers (0 too: then
    only the embeddings, ln_final and the unembedding), n_heads, ``cfg.d_head`` (need not be
    d_model / n_heads: scale the scores by sqrt(d_head)), ``cfg.d_mlp``, ``cfg.eps``;
    ``cfg.attn_only``: blocks without ln2 and MLP, x + attn(ln1(x)); ``cfg.tie_embeddings``:
    params has no ``unembed.W_U``, the unembedding is W_E.T. The rest stays at GPT-2's
    choices: LayerNorm, learned positions, biases everywhere, tanh GELU, causal attention.

    Prefer modules? Define instead ``class gpt_forward(nn.Module)`` whose ``__init__(cfg)``
    makes parameters with exactly these names and whose ``forward(tokens)`` returns logits:
    the check then loads the reference weights into it with ``load_state_dict``.
    """
    p = params
    n = tokens.shape[1]
    x = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][:n]
    allowed = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        h = _ln(x, p[b + "ln1.w"], p[b + "ln1.b"], cfg.eps)
        q = torch.einsum("bpm,hmd->bhpd", h, p[b + "attn.W_Q"]) + p[b + "attn.b_Q"][:, None]
        k = torch.einsum("bpm,hmd->bhpd", h, p[b + "attn.W_K"]) + p[b + "attn.b_K"][:, None]
        v = torch.einsum("bpm,hmd->bhpd", h, p[b + "attn.W_V"]) + p[b + "attn.b_V"][:, None]
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(
            ~allowed, float("-inf"))
        z = scores.softmax(-1) @ v
        x = x + torch.einsum("bhpd,hdm->bpm", z, p[b + "attn.W_O"]) + p[b + "attn.b_O"]
        if cfg.attn_only:
            continue
        h = _ln(x, p[b + "ln2.w"], p[b + "ln2.b"], cfg.eps)
        h = F.gelu(h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"], approximate="tanh")
        x = x + h @ p[b + "mlp.W_out"] + p[b + "mlp.b_out"]
    x = _ln(x, p["ln_final.w"], p["ln_final.b"], cfg.eps)
    W_U = p["embed.W_E"].T if cfg.tie_embeddings else p["unembed.W_U"]
    return x @ W_U


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw the next token id for each row of logits [batch, d_vocab] -> [batch] (int64).

    temperature 0: greedy (argmax). Otherwise divide the logits by the temperature; top_k
    keeps only the k largest logits; top_p keeps the smallest set of most likely tokens whose
    probabilities (after temperature and top-k) add up to at least p, always keeping the
    most likely one; then sample from the softmax of what is left (``torch.multinomial``
    with ``generator``). Ties at the k-th logit may all stay.

    Hint: "drop" a token by setting its logit to -inf. For top-p, sort descending, and drop a
    token when the probability mass *before* it already reaches p.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def bpe_merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Occurrences do not overlap: bpe_merge([5, 5, 5], (5, 5), 9) == [9, 5]. Returns a new
    list; ``ids`` is left unchanged.
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: Tensor
               ) -> float:
    """One optimisation step of next-token prediction; returns the loss (a Python float).

    tokens [batch, pos]. ``model(tokens)`` gives logits [batch, pos, d_vocab]; the logits at
    position t predict token t + 1, so compare logits[:, :-1] with tokens[:, 1:] using
    ``F.cross_entropy`` (flatten batch and position first; its mean over every predicted
    token). Then clear old gradients (the model may arrive holding some from earlier: call
    ``optimizer.zero_grad()`` before ``loss.backward()``), backpropagate and step the
    optimizer you are given: its state (momentum, Adam's moments) carries over between
    calls. Return the loss before the step, as ``loss.item()``.
    """
    logits = model(tokens)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def train_loop(model: torch.nn.Module, data: Tensor, steps: int = 300, batch_size: int = 32,
               lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``model`` on sequences ``data`` [n, pos] for ``steps`` steps; return the losses.

    Before the loop make one ``torch.optim.AdamW(model.parameters(), lr=lr)`` and one
    generator ``g = torch.Generator().manual_seed(seed)``; each step draws ``rows =
    torch.randint(0, n, (batch_size,), generator=g)`` and calls ``train_step(model,
    optimizer, data[rows])``. Return the list of the ``steps`` losses (floats).

    That makes the run reproducible, and the check replays it: it needs the same rows, one
    AdamW with your lr, the reference's losses, and a held-out loss that beats the best
    bigram model's on a task where the next token depends on more than the current one.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, data.shape[0], (batch_size,), generator=g)
        losses.append(train_step(model, optimizer, data[rows]))
    return losses
