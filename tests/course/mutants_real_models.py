"""Wrong and right answers to the new exercises of lessons 7 and 8.

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter

import torch

from gptscope.course.checks import attribution as a08
from gptscope.course.checks import real_models as r07
from gptscope.model import functional as gf
from gptscope.tokenizers.bpe import get_pair_counts

# -- kv_cache_attention


def _kv(q, k, v, cache, keep_prefix=True, offset=True, order="past_first", scale=True,
        mask=True, returned="new"):
    """The KV-cache step with one mistake switched on."""
    kp, vp = cache
    if not keep_prefix:
        kp, vp = kp[..., :0, :], vp[..., :0, :]
    first = order == "past_first"
    k_all = torch.cat([kp, k] if first else [k, kp], -2)
    v_all = torch.cat([vp, v] if first else [v, vp], -2)
    n, total = q.shape[-2], k_all.shape[-2]
    start = total - n if offset else 0
    allowed = torch.arange(total)[None] <= torch.arange(start, start + n)[:, None]
    scores = q @ k_all.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if mask:
        scores = scores.masked_fill(~allowed, float("-inf"))
    z = scores.softmax(-1) @ v_all
    new_cache = {"new": (k_all, v_all), "old": cache, "swapped": (v_all, k_all)}[returned]
    return z, new_cache


def kv_no_prefix(q, k, v, cache):
    return _kv(q, k, v, cache, keep_prefix=False)


def kv_no_offset(q, k, v, cache):
    return _kv(q, k, v, cache, offset=False)


def kv_new_first(q, k, v, cache):
    return _kv(q, k, v, cache, order="new_first")


def kv_no_scale(q, k, v, cache):
    return _kv(q, k, v, cache, scale=False)


def kv_no_mask(q, k, v, cache):
    return _kv(q, k, v, cache, mask=False)


def kv_old_cache(q, k, v, cache):
    return _kv(q, k, v, cache, returned="old")


def kv_swapped_cache(q, k, v, cache):
    return _kv(q, k, v, cache, returned="swapped")


def kv_library(q, k, v, cache):
    k_all, v_all = torch.cat([cache[0], k], -2), torch.cat([cache[1], v], -2)
    mask = gf.causal_mask(q.shape[-2], k_all.shape[-2])
    return gf.attention(q, k_all, v_all, mask), (k_all, v_all)


def kv_loops_float64(q, k, v, cache):
    """One query at a time, in float64, seeing only the keys up to its absolute position."""
    k_all, v_all = torch.cat([cache[0], k], -2), torch.cat([cache[1], v], -2)
    prefix = cache[0].shape[-2]
    rows = []
    for i in range(q.shape[-2]):
        keys, values = k_all[..., :prefix + i + 1, :].double(), v_all[..., :prefix + i + 1, :]
        w = (keys @ q[..., i, :, None].double()).squeeze(-1) / q.shape[-1] ** 0.5
        rows.append((w.softmax(-1)[..., None] * values.double()).sum(-2))
    return torch.stack(rows, -2).float(), (k_all, v_all)


# -- beam_search


def _beam(rank="logp", width=None, eos="given", ties=1, drop_done=False, own_best=False,
          steps_off=0, prompt_kept=True, product=False, name="beam"):
    def beam(next_log_probs, prompt, beam_width, max_new_tokens, eos_id=None):
        seq, score = r07.reference_beam(
            next_log_probs, prompt, beam_width if width is None else width,
            max_new_tokens + steps_off, eos_id if eos == "given" else None, rank=rank,
            ties=ties, drop_done=drop_done, own_best=own_best)
        return (seq if prompt_kept else seq[len(prompt):]), (math.exp(score) if product
                                                             else score)
    beam.__name__ = name
    return beam


beam_greedy = _beam(width=1, name="beam_greedy")
beam_sum_probs = _beam(rank="probs", name="beam_sum_probs")
beam_product_score = _beam(product=True, name="beam_product_score")
beam_last_token = _beam(rank="last", name="beam_last_token")
beam_own_best = _beam(own_best=True, name="beam_own_best")
beam_eos_ignored = _beam(eos=None, name="beam_eos_ignored")
beam_eos_dropped = _beam(drop_done=True, name="beam_eos_dropped")
beam_length_norm = _beam(rank="mean", name="beam_length_norm")
beam_ties_larger = _beam(ties=-1, name="beam_ties_larger")
def beam_eos_cut(next_log_probs, prompt, beam_width, max_new_tokens, eos_id=None):
    seq, score = r07.reference_beam(next_log_probs, prompt, beam_width, max_new_tokens, eos_id)
    ended = eos_id is not None and len(seq) > len(prompt) and seq[-1] == eos_id
    return (seq[:-1] if ended else seq), score


beam_no_prompt = _beam(prompt_kept=False, name="beam_no_prompt")
beam_one_step_more = _beam(steps_off=1, name="beam_one_step_more")


def beam_heap_one_row_at_a_time(next_log_probs, prompt, beam_width, max_new_tokens,
                                eos_id=None):
    """heapq.nsmallest on (-score, sequence), the model called on one sequence at a time."""
    beams = [(0.0, list(prompt), False)]
    for _ in range(max_new_tokens):
        if all(done for _, _, done in beams):
            break
        cands = []
        for score, seq, done in beams:
            if done:
                cands.append((score, seq, True))
                continue
            row = next_log_probs(torch.tensor([seq], dtype=torch.long))[0].double()
            for t in range(row.shape[0]):
                cands.append((score + float(row[t]), seq + [t], t == eos_id))
        beams = heapq.nsmallest(beam_width, cands, key=lambda c: (-c[0], c[1]))
    best = beams[0]
    return best[1], best[0]


def beam_tensor_scores(next_log_probs, prompt, beam_width, max_new_tokens, eos_id=None):
    """Scores kept in a float64 tensor; finished beams get -inf everywhere but a 0 at eos,
    so extending them by eos is the same as carrying them over."""
    seqs, scores = [list(prompt)], torch.zeros(1, dtype=torch.float64)
    finished = [False]
    for _ in range(max_new_tokens):
        if all(finished):
            break
        live = [i for i, f in enumerate(finished) if not f]
        rows = next_log_probs(torch.tensor([seqs[i] for i in live])).double()
        d_vocab = rows.shape[1]
        table = torch.full((len(seqs), d_vocab), float("-inf"), dtype=torch.float64)
        table[live] = rows
        for i, f in enumerate(finished):
            if f:
                table[i, eos_id] = 0.0
        total = scores[:, None] + table
        flat = [(-total[i, t].item(), seqs[i] + ([] if finished[i] else [t]), i, t)
                for i in range(len(seqs)) for t in range(d_vocab)
                if total[i, t] > float("-inf")]
        kept = sorted(flat, key=lambda c: (c[0], c[1]))[:beam_width]
        seqs = [c[1] for c in kept]
        scores = torch.tensor([-c[0] for c in kept], dtype=torch.float64)
        finished = [finished[c[2]] or c[3] == eos_id for c in kept]
    best = min(range(len(seqs)), key=lambda i: (-scores[i].item(), seqs[i]))
    return seqs[best], scores[best].item()


# -- bpe_pair_counts


def pairs_across(sequences):
    return get_pair_counts([t for s in sequences for t in s])


def pairs_no_overlap(sequences):
    """Each pair's occurrences counted like str.count: after a match, skip past it."""
    counts = Counter()
    for seq in sequences:
        for pair in set(zip(seq, seq[1:])):
            i = 0
            while i + 1 < len(seq):
                hit = (seq[i], seq[i + 1]) == pair
                counts[pair] += hit
                i += 2 if hit else 1
    return dict(counts)


def pairs_unique(sequences):
    counts = Counter()
    for seq in sequences:
        counts.update(set(zip(seq, seq[1:])))
    return dict(counts)


def pairs_last_only(sequences):
    counts = {}
    for seq in sequences:
        counts = get_pair_counts(seq)
    return counts


def pairs_missed_last(sequences):
    counts = Counter()
    for seq in sequences:
        for i in range(len(seq) - 2):
            counts[(seq[i], seq[i + 1])] += 1
    return dict(counts)


def pairs_reversed(sequences):
    return Counter((b, a) for seq in sequences for a, b in zip(seq, seq[1:]))


def pairs_counter_pairwise(sequences):
    return Counter(p for seq in sequences for p in itertools.pairwise(seq))


def pairs_library(sequences):
    counts: dict = {}
    for seq in sequences:
        get_pair_counts(seq, counts)
    return counts


# -- direct_logit_attribution


def _dla(scale="shared", centre=True, weight=True, recompute=False, one_token=False,
         last_pos=False, pos_embed=True, name="dla"):
    def attribution(model, tokens, correct, incorrect, pos=-1):
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens)
            at = tokens.shape[1] - 1 if last_pos else pos % tokens.shape[1]
            return a08._dla_variant(model, cache, correct, None if one_token else incorrect,
                                    at, scale=scale, centre=centre, weight=weight,
                                    recompute=recompute, pos_embed=pos_embed)
    attribution.__name__ = name
    return attribution


dla_no_scale = _dla(scale="none", name="dla_no_scale")
dla_own_scale = _dla(scale="own", name="dla_own_scale")
dla_recomputed = _dla(recompute=True, name="dla_recomputed")
dla_not_centred = _dla(centre=False, name="dla_not_centred")
dla_no_weight = _dla(weight=False, name="dla_no_weight")
dla_one_token = _dla(one_token=True, name="dla_one_token")
dla_last_pos = _dla(last_pos=True, name="dla_last_pos")
dla_no_pos_embed = _dla(pos_embed=False, name="dla_no_pos_embed")


def dla_library(model, tokens, correct, incorrect, pos=-1):
    from gptscope.interp.attribution import dla

    parts = dla(model, tokens, correct, incorrect, pos)
    return {"embed": parts.embed_per_example + parts.pos_embed_per_example,
            "heads": parts.heads_per_example, "mlp": parts.mlp_per_example}


def dla_float64_loops(model, tokens, correct, incorrect, pos=-1):
    """Every component by hand in float64, one row and one head at a time."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = {"embed": torch.zeros(len(tokens), dtype=torch.float64),
           "heads": torch.zeros(len(tokens), n_layers, n_heads, dtype=torch.float64),
           "mlp": torch.zeros(len(tokens), n_layers, dtype=torch.float64)}
    w = model.ln_final.w.detach().double()
    W_U = model.W_U.detach().double()
    for b in range(len(tokens)):
        direction = w * (W_U[:, correct[b]] - W_U[:, incorrect[b]])
        scale = cache["ln_final.hook_scale"][b, pos, 0].double()

        def effect(x, scale=scale, direction=direction):
            x = x.double()
            return ((x - x.mean()) / scale) @ direction
        out["embed"][b] = effect(cache["hook_embed"][b, pos] + cache["hook_pos_embed"][b, pos])
        for layer in range(n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"][b, pos].double()
            W_O = model.blocks[layer].attn.W_O.detach().double()
            for h in range(n_heads):
                out["heads"][b, layer, h] = effect(z[h] @ W_O[h])
            out["mlp"][b, layer] = effect(cache[f"blocks.{layer}.hook_mlp_out"][b, pos])
    return out


# -- top_activating_examples


def _top(hook="post", per_row=False, ascending=False, shift=0, ties_later=False,
         columns_swapped=False, name="top"):
    def top(model, tokens, layer, neuron, k):
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens)
            post = cache[f"blocks.{layer}.mlp.hook_{hook}"][..., neuron]
        if per_row:
            best, at = post.max(1)
            rows = best.sort(descending=True, stable=True).indices[:k]
            return best[rows], torch.stack([rows, at[rows]], -1)
        values, where = a08._ranked(post, k, later_first=ties_later)
        if ascending:
            values, where = values.flip(0), where.flip(0)
        where = where + torch.tensor([0, shift])
        return values, where.flip(-1) if columns_swapped else where
    top.__name__ = name
    return top


top_pre = _top(hook="pre", name="top_pre")
top_per_row = _top(per_row=True, name="top_per_row")
top_ascending = _top(ascending=True, name="top_ascending")
top_position_plus_one = _top(shift=1, name="top_position_plus_one")
top_ties_later_first = _top(ties_later=True, name="top_ties_later_first")
top_columns_swapped = _top(columns_swapped=True, name="top_columns_swapped")


def top_library(model, tokens, layer, neuron, k):
    """The library's streaming top-k, its exact ties put back in row-major order."""
    from gptscope.interp.neurons import top_activating_examples

    found = top_activating_examples(model, tokens, f"blocks.{layer}.mlp.hook_post",
                                    unit=neuron, k=k, batch_size=len(tokens))
    found.sort(key=lambda ex: (-ex.value, ex.seq, ex.pos))
    return (torch.tensor([ex.value for ex in found]),
            torch.tensor([[ex.seq, ex.pos] for ex in found]))


def top_python_sorted(model, tokens, layer, neuron, k):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    acts = cache[f"blocks.{layer}.mlp.hook_post"][..., neuron].tolist()
    ranked = sorted(((v, b, p) for b, row in enumerate(acts) for p, v in enumerate(row)),
                    key=lambda t: (-t[0], t[1], t[2]))[:k]
    return (torch.tensor([v for v, _, _ in ranked]),
            torch.tensor([[b, p] for _, b, p in ranked]))


MUTANTS: dict[str, list] = {
    "kv_cache_attention": [
        (kv_no_prefix, "the cached prefix is ignored"), (kv_no_offset, "has no offset"),
        (kv_new_first, "appended in the wrong order"),
        (kv_no_scale, "not divided by sqrt(d_head)"),
        (kv_no_mask, "no causal mask among the new positions"),
        (kv_old_cache, "returned the old cache"), (kv_swapped_cache, "holds (values, keys)")],
    "beam_search": [
        (beam_greedy, "greedy"), (beam_sum_probs, "added probabilities"),
        (beam_product_score, "product of the probabilities"),
        (beam_last_token, "new token's log-prob alone"), (beam_own_best, "its own best token"),
        (beam_eos_ignored, "beams went on after eos_id"),
        (beam_eos_dropped, "finished beams were dropped"),
        (beam_length_norm, "normalised by length"), (beam_ties_larger, "larger sequence"),
        (beam_eos_cut, "eos token was cut"), (beam_no_prompt, "only the new tokens"),
        (beam_one_step_more, "wrong number of steps")],
    "bpe_pair_counts": [
        (pairs_across, "across sequence boundaries"), (pairs_no_overlap, "overlapping pairs"),
        (pairs_unique, "once per sequence"), (pairs_last_only, "only one sequence's pairs"),
        (pairs_missed_last, "last pair is missing"), (pairs_reversed, "pairs are reversed")],
    "direct_logit_attribution": [
        (dla_no_scale, "scale is ignored"), (dla_own_scale, "divided by its own scale"),
        (dla_recomputed, "run on each component separately"),
        (dla_not_centred, "were not centred"), (dla_no_weight, "ln_final.w is missing"),
        (dla_one_token, "correct token alone"), (dla_last_pos, "read the wrong position"),
        (dla_no_pos_embed, "position embeddings are missing")],
    "top_activating_examples": [
        (top_pre, "read hook_pre"), (top_per_row, "each text's maximum only"),
        (top_ascending, "the order is ascending"), (top_position_plus_one, "off by one"),
        (top_ties_later_first, "later position first"),
        (top_columns_swapped, "columns of `where` are swapped")],
}
RIGHT_ANSWERS: dict[str, list] = {
    "kv_cache_attention": [kv_library, kv_loops_float64],
    "beam_search": [beam_heap_one_row_at_a_time, beam_tensor_scores],
    "bpe_pair_counts": [pairs_counter_pairwise, pairs_library],
    "direct_logit_attribution": [dla_library, dla_float64_loops],
    "top_activating_examples": [top_library, top_python_sorted],
}
