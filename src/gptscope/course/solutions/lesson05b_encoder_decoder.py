"""Lesson 5b: the encoder-decoder, and the attention that joins its two halves.

The transformer of "Attention Is All You Need", the one *The Annotated Transformer* builds
and trains, is not a GPT: it maps a *source* sequence to a *target* sequence. An
**encoder** (lesson 5's block with ``causal=False``) reads the whole source at once and
leaves one vector per source token, the *memory* [batch, src_pos, d_model]. A **decoder**
writes the target one token at a time, like a GPT, but each of its blocks has a third
sublayer between self-attention and the MLP: **cross-attention**, whose queries come from
the decoder's residual stream and whose keys and values come from the memory:

    q = ln_cross(resid) @ W_Q      [batch, tgt_pos, head, d_head]
    k = memory @ W_K,  v = memory @ W_V   [batch, src_pos, head, d_head]
    pattern = softmax(q k^T / sqrt(d_head)) over the *source* positions

Three things differ from self-attention. The pattern is [tgt_pos, src_pos], not square.
There is no causal mask: the whole source is known before decoding starts, so every target
position may look at every source token (a causal mask here is a classic bug). And the
*source's* padding must be masked, since sources in a batch have different lengths.

In gptscope the two halves are ordinary ``Transformer``s (the decoder built with
``ModelConfig(cross_attention=True)``), composed by ``gs.EncoderDecoder``; the hooks are
named ``decoder.blocks.0.cross_attn.hook_pattern`` and so on. *The Annotated Transformer*
first trains its model to copy its input; the exploration at the end trains one on a
synthetic translation task, whose word order differs between the two languages, and looks
at where its cross-attention looks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_attention(decoder_resid: Tensor, encoder_out: Tensor, W_Q: Tensor, W_K: Tensor,
                    W_V: Tensor, W_O: Tensor, src_mask: Tensor | None = None) -> Tensor:
    """Multi-head cross-attention: decoder_resid [batch, tgt_pos, d_model] attends over
    encoder_out [batch, src_pos, d_model]; returns [batch, tgt_pos, d_model].

    W_Q, W_K, W_V [head, d_model, d_head]; W_O [head, d_head, d_model] (no biases). Queries
    come from decoder_resid, keys and values from encoder_out. Scores are divided by
    sqrt(d_head). src_mask [batch, src_pos] (bool, True = a real source token; None = no
    padding): padding gets attention weight exactly 0 (score -inf before the softmax). No
    causal mask: every target position may look at every source token.
    """
    q = torch.einsum("bqm,hmd->bhqd", decoder_resid, W_Q)
    k = torch.einsum("bkm,hmd->bhkd", encoder_out, W_K)
    v = torch.einsum("bkm,hmd->bhkd", encoder_out, W_V)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [batch, head, tgt, src]
    if src_mask is not None:
        scores = scores.masked_fill(~src_mask.bool()[:, None, None, :], float("-inf"))
    pattern = scores.softmax(dim=-1)  # over the source positions
    z = pattern @ v  # [batch, head, tgt_pos, d_head]
    return torch.einsum("bhqd,hdm->bqm", z, W_O)


def decoder_block_with_cross(x: Tensor, encoder_out: Tensor, params: dict[str, Tensor],
                             src_mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """One pre-LN decoder block: x [batch, tgt_pos, d_model] -> [batch, tgt_pos, d_model].

    params holds gptscope's Block weights under its names (no attention biases):
    ``ln1.w``/``ln1.b``, ``attn.W_Q``/``W_K``/``W_V`` [head, d_model, d_head] and ``attn.W_O``
    [head, d_head, d_model]; ``ln_cross.w``/``ln_cross.b`` and ``cross_attn.W_Q`` ...
    ``cross_attn.W_O``; ``ln2.w``/``ln2.b``, ``mlp.W_in`` [d_model, d_mlp], ``mlp.b_in``,
    ``mlp.W_out`` [d_mlp, d_model], ``mlp.b_out``. Three sublayers, each reading a
    LayerNorm'd copy (eps) of the residual stream and adding its output to it:

        mid = x + self_attn(ln1(x))                     causal, over the target
        mid_cross = mid + cross_attn(ln_cross(mid), encoder_out, src_mask)   not causal
        out = mid_cross + mlp(ln2(mid_cross))           relu(h @ W_in + b_in) @ W_out + b_out

    Scores in both attentions are divided by sqrt(d_head).
    """
    p = params

    def ln(h: Tensor, name: str) -> Tensor:
        return F.layer_norm(h, h.shape[-1:], p[f"{name}.w"], p[f"{name}.b"], eps)

    def attend(h: Tensor, kv: Tensor, name: str, mask: Tensor | None) -> Tensor:
        q = torch.einsum("bqm,hmd->bhqd", h, p[f"{name}.W_Q"])
        k = torch.einsum("bkm,hmd->bhkd", kv, p[f"{name}.W_K"])
        v = torch.einsum("bkm,hmd->bhkd", kv, p[f"{name}.W_V"])
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.einsum("bhqd,hdm->bqm", scores.softmax(-1) @ v, p[f"{name}.W_O"])

    n = x.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
    h = ln(x, "ln1")
    mid = x + attend(h, h, "attn", causal)
    source = None if src_mask is None else src_mask.bool()[:, None, None, :]
    mid = mid + attend(ln(mid, "ln_cross"), encoder_out, "cross_attn", source)
    hidden = F.relu(ln(mid, "ln2") @ p["mlp.W_in"] + p["mlp.b_in"])
    return mid + hidden @ p["mlp.W_out"] + p["mlp.b_out"]


def greedy_translate(model, src: Tensor, src_mask: Tensor, bos: int, eos: int,
                     max_new_tokens: int) -> Tensor:
    """Greedy decoding with a ``gs.EncoderDecoder``: src [batch, src_pos] (src_mask [batch,
    src_pos], 1 = real token) -> LongTensor [batch, 1 + n], BOS first, n <= max_new_tokens.

    Encode once (``model.encode(src, src_mask)``: the memory [batch, src_pos, d_model]), then
    repeat: run ``model.decoder(tgt, context=memory, context_mask=src_mask)`` on the target
    so far, take the argmax of the logits at the *last* position, append it. A row that has
    produced ``eos`` keeps appending ``eos``; stop as soon as every row has produced it, or
    after max_new_tokens steps. (``model.generate`` does the same with a KV cache.)
    """
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        tgt = torch.full((src.shape[0], 1), bos, dtype=torch.long)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_new_tokens):
            logits = model.decoder(tgt, context=memory, context_mask=src_mask)
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            tgt = torch.cat([tgt, nxt[:, None]], dim=1)
            done = done | (nxt == eos)
            if done.all():
                break
    return tgt


def explore_cross_attention(steps: int = 200, seed: int = 0):
    """Train a one-layer encoder-decoder on the synthetic translation task (a few seconds on
    one core), translate three held-out sentences with your ``greedy_translate``, and draw
    where each cross-attention head looks.

    The source is subject-verb-object with adjectives first ("big cat sees small dog"); the
    target puts the verb last and adjectives after their nouns ("kat gros hund lit mira").
    Each row of a heat map is a target position, predicting the *next* target word, and
    each column a source word: a head that learned the alignment lights up the source word
    being translated next, off the diagonal wherever the word order differs.
    """
    from dataclasses import replace

    from gptscope.seq2seq import PRESETS, alignment_agreement, exact_match, train_seq2seq
    from gptscope.viz import Heatmap, Report

    run = train_seq2seq(replace(PRESETS["translation-tiny"], steps=steps, seed=seed))
    task, model = run.task, run.model
    test = task.test.rows(torch.arange(3))
    # Your greedy_translate on three held-out sentences (BOS is 1, EOS 2).
    out = greedy_translate(model, test.src, test.src_mask, 1, 2, task.tgt_len - 1)
    _, cache = model.run_with_cache(test.src, test.tgt, src_mask=test.src_mask,
                                    names_filter="decoder.blocks.0.cross_attn.hook_pattern")
    pattern = cache["decoder.blocks.0.cross_attn.hook_pattern"]  # [batch, head, tgt, src]
    agree = alignment_agreement(model, task.test)
    report = Report(f"Cross-attention after {steps} steps: held-out exact match "
                    f"{exact_match(model, task.test):.3f}, heads agreeing with the true "
                    f"alignment {[round(a, 3) for a in agree[0].tolist()]}")
    report.add_table([[task.decode(test.src[i]), task.decode(out[i]), task.decode(test.tgt[i])]
                      for i in range(len(test))], header=["source", "yours", "reference"])
    for i in range(len(test)):
        src_words = [task.words[t] for t in test.src[i][test.src_mask[i].bool()].tolist()]
        n_tgt = int(test.tgt_mask[i].sum()) - 1  # queries that predict a real token
        rows = [f"{task.words[t]} -> {task.words[n]}"
                for t, n in zip(test.tgt[i, :n_tgt].tolist(), test.tgt[i, 1:n_tgt + 1].tolist())]
        for head in range(pattern.shape[1]):
            report.add(Heatmap(pattern[i, head, :n_tgt, :len(src_words)], row_labels=rows,
                               col_labels=src_words),
                       caption=f"sentence {i}, head {head}: rows predict the next target word")
    return report
