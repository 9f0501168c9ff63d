"""Lesson 7: using real transformers. How big is a model, counted from its config? How does
generation reuse keys and values, search over continuations, and learn its tokens?"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gptscope.config import ModelConfig


def count_params(cfg: ModelConfig) -> int:
    """The number of parameters of ``gptscope.Transformer(cfg)``, from the config alone.

    With d = d_model, "a norm" is d weights and d biases for a LayerNorm
    (``cfg.normalization == "layer"``) and d weights, no bias, for an RMSNorm (``"rms"``).
    Count:

    - the token embedding W_E [d_vocab, d]; learned positions W_pos [n_ctx, d] only when
      ``cfg.positional == "learned"`` (sinusoidal and rotary positions have no parameters);
      BERT's token-type embeddings [n_token_types, d]; a norm on the embeddings when
      ``cfg.embed_norm`` (a LayerNorm if normalization is None);
    - per block (n_layers of them): W_Q, W_K, W_V, W_O (n_heads * d_head * d each; d_head
      need not be d / n_heads); when ``cfg.attn_bias``, b_Q, b_K, b_V (n_heads * d_head
      each) and b_O (d); unless ``cfg.attn_only``, the MLP: W_in and W_out (d * d_mlp each)
      and, when ``cfg.mlp_bias``, b_in (d_mlp) and b_out (d); the norms ln1 and ln2, none
      when normalization is None (attention-only blocks have ln1 only, plus ln2 when
      ``cfg.norm_position == "post"``);
    - ln_final, a norm, when normalization is set, ``cfg.final_norm`` and norm_position is
      "pre"; BERT's MLM head when ``cfg.mlm_head``: W [d, d], b [d] and a norm (a
      LayerNorm if normalization is None);
    - the unembedding W_U [d, d_vocab] unless ``cfg.tie_embeddings`` (then it is W_E,
      counted once), and its bias b_U [d_vocab] when ``cfg.unembed_bias``.

    Return an int. Check your count against ``sum(p.numel() for p in model.parameters())``.
    """
    d = cfg.d_model
    sizes = {"layer": 2 * d, "rms": d, None: 0}
    norm = sizes[cfg.normalization]
    extra_norm = sizes[cfg.normalization or "layer"]  # embed_ln, the MLM head's norm
    total = cfg.d_vocab * d + cfg.n_token_types * d
    if cfg.positional == "learned":
        total += cfg.n_ctx * d
    if cfg.embed_norm:
        total += extra_norm
    attn = 4 * cfg.n_heads * cfg.d_head * d
    if cfg.attn_bias:
        attn += 3 * cfg.n_heads * cfg.d_head + d
    if cfg.attn_only:
        block = attn + norm * (2 if cfg.norm_position == "post" else 1)
    else:
        mlp = 2 * d * cfg.d_mlp + (cfg.d_mlp + d if cfg.mlp_bias else 0)
        block = attn + mlp + 2 * norm
    total += cfg.n_layers * block
    if cfg.final_norm and cfg.norm_position == "pre":
        total += norm
    if cfg.mlm_head:
        total += d * d + d + extra_norm
    if not cfg.tie_embeddings:
        total += d * cfg.d_vocab
    if cfg.unembed_bias:
        total += cfg.d_vocab
    return total


def kv_cache_attention(q: Tensor, k: Tensor, v: Tensor, cache: tuple[Tensor, Tensor]
                       ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One causal attention step with a KV cache, as ``generate`` runs it.

    q, k, v [batch, head, new, d_head]: this step's queries, keys and values, for ``new``
    positions that come right after the ``prefix`` positions already cached. cache is
    ``(k_past, v_past)``, each [batch, head, prefix, d_head] (prefix may be 0).

    Append this step's keys and values after the cached ones (k_all = k_past then k along
    the position axis, the same for v), then attend: scores q @ k_all^T / sqrt(d_head),
    softmax over the prefix + new keys. Causal: query i sits at absolute position
    prefix + i, so it sees keys 0 .. prefix + i (every cached key and the new ones up to
    itself), not just keys 0 .. i.

    Returns ``(z, (k_all, v_all))``: z [batch, head, new, d_head], and the new cache, each
    [batch, head, prefix + new, d_head]. z equals the last ``new`` positions of causal
    attention recomputed over the whole prefix + new sequence.
    """
    k_all, v_all = torch.cat([cache[0], k], dim=-2), torch.cat([cache[1], v], dim=-2)
    new, total = q.shape[-2], k_all.shape[-2]
    # Absolute positions: queries are the last `new` of `total`.
    allowed = torch.arange(total)[None, :] <= torch.arange(total - new, total)[:, None]
    scores = q @ k_all.transpose(-2, -1) / math.sqrt(q.shape[-1])
    z = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v_all
    return z, (k_all, v_all)


def beam_search(next_log_probs: Callable[[Tensor], Tensor], prompt: list[int],
                beam_width: int, max_new_tokens: int, eos_id: int | None = None
                ) -> tuple[list[int], float]:
    """Beam search: the continuation of ``prompt`` with the highest total log-probability
    that a beam of ``beam_width`` finds.

    next_log_probs(seqs) takes token ids [n, pos] (int64; n sequences of one length) and
    returns log-probabilities [n, d_vocab] of the next token after each. With a gptscope
    model: ``lambda s: model(s)[:, -1].log_softmax(-1)``. prompt: a non-empty list of ids.

    A beam is (sequence, score); the score is the *sum* of the log-probs of the tokens
    added after the prompt (no length normalisation; add log-probs, never multiply or add
    probabilities). Start with the single beam (prompt, 0.0). At each of ``max_new_tokens``
    steps, the candidates are every unfinished beam extended by every token (score + that
    token's log-prob) together with the finished beams, unchanged; keep the ``beam_width``
    best candidates. A beam is finished once the token it last added is ``eos_id`` (the eos
    token and its log-prob count; None: no beam ever finishes); stop early when every beam
    is finished.
    "Best" means the highest score; ties go to the smaller sequence (Python's list order),
    e.g. ``sorted(cands, key=lambda c: (-c[1], c[0]))``.

    Returns ``(sequence, score)`` of the best final beam: the sequence is a list of ints,
    prompt included; the score a float.
    """
    beams: list[tuple[list[int], float]] = [(list(prompt), 0.0)]
    for _ in range(max_new_tokens):
        done = [b for b in beams if eos_id is not None and b[0][-1] == eos_id
                and len(b[0]) > len(prompt)]
        alive = [b for b in beams if b not in done]
        if not alive:
            break
        rows = next_log_probs(torch.tensor([seq for seq, _ in alive])).double()
        cands = list(done)
        for (seq, score), row in zip(alive, rows):
            cands += [(seq + [t], score + lp) for t, lp in enumerate(row.tolist())]
        beams = sorted(cands, key=lambda c: (-c[1], c[0]))[:beam_width]
    return beams[0][0], beams[0][1]


def bpe_pair_counts(sequences: list[list[int]]) -> dict[tuple[int, int], int]:
    """How often each pair of adjacent ids occurs, over many sequences: BPE's statistic.

    sequences: a list of lists of token ids (any may be empty or hold one id). Count every
    adjacent pair (a, b) inside each sequence, overlapping ones too: [5, 5, 5] holds (5, 5)
    twice. Pairs never span two sequences: the last id of one and the first of the next
    are not adjacent. Sum the counts over all sequences (a pair that occurs in several
    sequences, or several times in one, counts every time).

    Returns a dict (a ``collections.Counter`` is fine) from (a, b) tuples of ints to counts;
    pairs that never occur are absent.
    """
    counts: dict[tuple[int, int], int] = {}
    for seq in sequences:
        for pair in zip(seq, seq[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    return counts
