"""Checks for lesson 7's decoding and tokenizer exercises: one attention step with a KV
cache, beam search, and BPE's pair counts.

kv_cache_attention is compared with causal attention recomputed over the whole sequence
(``gptscope.model.functional.attention``, in float64); bpe_pair_counts with the library's
``get_pair_counts`` summed over the sequences; beam_search, which the library does not
have, with a float64 reference written here, on toy language models built so that each
known mistake picks another sequence or score on some case, and on a small Transformer.
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.course.checks._answers import tuple_answer
from gptscope.course.checks._common import (
    Ambiguous,
    Mismatch,
    Unexplained,
    call,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf
from gptscope.model.transformer import Transformer
from gptscope.tokenizers.bpe import get_pair_counts, merge_pair

# -- kv_cache_attention -----------------------------------------------------------------------

KV_NO_PREFIX = ("the cached prefix is ignored: attend over the cached keys and values *and* "
                "the new ones (torch.cat([k_past, k], dim=-2))")
KV_NO_OFFSET = ("the causal mask has no offset: query i sits at absolute position prefix + i, "
                "so it sees every cached key and the new keys up to itself")
KV_NO_MASK = ("no causal mask among the new positions: new query i must not see new keys "
              "after it")
KV_ORDER = ("keys and values appended in the wrong order: the cached ones come first, then "
            "this step's (torch.cat([k_past, k], dim=-2))")
KV_NO_SCALE = "the scores are not divided by sqrt(d_head)"
KV_OLD_CACHE = ("returned the old cache: return (k_all, v_all), the cached keys and values "
                "with this step's appended")
KV_SWAPPED = "the new cache holds (values, keys): return (k_all, v_all) in that order"

# (label, batch, head, prefix, new, d_head)
KV_CASES = [
    ("one new token after 5 cached (a decoding step)", 2, 2, 5, 1, 4),
    ("3 new tokens after 4 cached", 1, 3, 4, 3, 8),
    ("an empty cache and 4 new tokens (the prompt)", 2, 2, 0, 4, 4),
    ("2 new tokens after 6 cached, d_head 16", 2, 1, 6, 2, 16),
]


def _attend(q: Tensor, k: Tensor, v: Tensor, offset: int | None, scale: bool = True) -> Tensor:
    """Attention in float64 where query i sits at ``offset + i`` (None: no mask)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    mask = None
    if offset is not None:
        mask = torch.arange(n_k)[None, :] <= torch.arange(offset, offset + n_q)[:, None]
    return gf.attention(q, k, v, mask, scale=None if scale else 1.0)


def _kv_inputs(index: int) -> tuple[Tensor, Tensor, Tensor, int]:
    _, batch, head, prefix, new, d_head = KV_CASES[index]
    q, k, v = (randn(batch, head, prefix + new, d_head, seed=10 * index + i, dtype=torch.float64)
               for i in range(3))
    return q, k, v, prefix


def _kv_case(fn: Callable[..., Any], index: int) -> str:
    q, k, v, p = _kv_inputs(index)
    label, *_ = KV_CASES[index]
    n = q.shape[-2] - p
    # The truth: causal attention recomputed over the whole sequence, its last n queries.
    want = gf.attention(q, k, v, gf.causal_mask(q.shape[-2]))[..., p:, :]
    qn, kn, vn, kp, vp = q[..., p:, :], k[..., p:, :], v[..., p:, :], k[..., :p, :], v[..., :p, :]
    args = [t.float().contiguous() for t in (qn, kn, vn)]
    past = (kp.float().contiguous(), vp.float().contiguous())
    case = f"{label}: q [{', '.join(map(str, qn.shape))}], prefix {p}"
    got = tuple_answer(call(fn, *args, past), ("z", "new_cache"), "kv_cache_attention")
    reordered = (torch.cat([kn, kp], -2), torch.cat([vn, vp], -2))
    compare(got[0], want, case, {
        KV_NO_PREFIX: lambda: _attend(qn, kn, vn, 0),
        KV_NO_OFFSET: lambda: _attend(qn, k, v, 0),
        KV_NO_MASK: lambda: _attend(qn, k, v, None),
        KV_ORDER: lambda: _attend(qn, *reordered, p),
        KV_NO_SCALE: lambda: _attend(qn, k, v, p, scale=False),
    }, what="z", axes=("batch", "head", "new", "d_head"))
    cache = got[1]
    if not isinstance(cache, (tuple, list)) or len(cache) != 2:
        raise Mismatch("the new cache should be a tuple (k_all, v_all) of two tensors; got "
                       f"{type(cache).__name__}", [f"case: {case}"])
    for i, name in enumerate(("k_all", "v_all")):
        compare(cache[i], (k, v)[i], case, {
            KV_NO_PREFIX: lambda: (kn, vn)[i],
            KV_ORDER: lambda: reordered[i],
            KV_OLD_CACHE: lambda: (kp, vp)[i],
            KV_SWAPPED: lambda: (v, k)[i],
        }, what=f"the new cache's {name}", axes=("batch", "head", "pos", "d_head"))
    return f"{case}, {n} new"


def check_kv_cache_attention(fn: Callable[..., Any]) -> CheckResult:
    return run_check("kv_cache_attention",
                     lambda: run_cases(range(len(KV_CASES)), lambda i: _kv_case(fn, i)))


# -- beam_search ------------------------------------------------------------------------------

BEAM_GREEDY = ("kept only the single best candidate each step (greedy): keep the beam_width "
               "best")
BEAM_PROBS = ("added probabilities: a beam's score is the sum of its tokens' *log*-probs "
              "(exp of it is their product)")
BEAM_PRODUCT = ("returned the product of the probabilities as the score; return the sum of "
                "the log-probs (its log)")
BEAM_LAST = ("ranked the candidates by the new token's log-prob alone: rank by the beam's "
             "score plus it")
BEAM_OWN_BEST = ("each beam was extended only by its own best token: pool every beam's every "
                 "continuation and keep the beam_width best of them all")
BEAM_EOS_IGNORED = ("beams went on after eos_id: a beam whose last added token is eos_id is "
                    "finished and carried over unchanged")
BEAM_EOS_DROPPED = ("finished beams were dropped: carry a beam that ended with eos_id over "
                    "unchanged, as a candidate, to compete with the extended ones")
BEAM_LENGTH = ("the score was normalised by length: rank by and return the plain sum of the "
               "log-probs")
BEAM_TIES = ("ties went to the larger sequence: on equal scores keep the smaller one "
             "(Python's list order)")
BEAM_EOS_CUT = ("the eos token was cut from the finished sequence: it is part of the beam, "
                "and its log-prob counts")
BEAM_NO_PROMPT = "returned only the new tokens: the sequence includes the prompt"
BEAM_STEPS = "ran the wrong number of steps: extend the beams max_new_tokens times"


class _TableLM:
    """A toy language model: log-probs [n, d_vocab] of the next token for ids [n, pos].

    The distribution after a sequence is ``table[tuple(seq)]`` when given, else a seeded
    random one depending on the last two ids (peaked by ``sharp``), in float64.
    """

    def __init__(self, d_vocab: int, seed: int, sharp: float = 2.0,
                 table: Mapping[tuple[int, ...], Mapping[int, float]] | None = None) -> None:
        self.d_vocab, self.seed, self.sharp, self.table = d_vocab, seed, sharp, table or {}
        self.memo: dict[tuple[int, ...], Tensor] = {}  # the variants ask for the same rows

    def _row(self, seq: tuple[int, ...]) -> Tensor:
        if seq not in self.memo:
            self.memo[seq] = self._fresh_row(seq)
        return self.memo[seq].clone()

    def _fresh_row(self, seq: tuple[int, ...]) -> Tensor:
        if seq in self.table:
            probs = torch.zeros(self.d_vocab, dtype=torch.float64)
            for t, p in self.table[seq].items():
                probs[t] = p
            rest = (1 - probs.sum()) / (probs == 0).sum()
            return probs.where(probs > 0, rest).log()
        a, b = (seq[-2] if len(seq) > 1 else 0), seq[-1]
        g = torch.Generator().manual_seed(self.seed * 100_003 + a * 1009 + b)
        logits = torch.randn(self.d_vocab, generator=g, dtype=torch.float64) * self.sharp
        return logits.log_softmax(-1)

    def __call__(self, seqs: Any) -> Tensor:
        ids = torch.as_tensor(seqs)
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError("next_log_probs takes int64 token ids [n, pos] (n sequences of "
                             f"one length), got shape {list(ids.shape)} {ids.dtype}")
        return torch.stack([self._row(tuple(r)) for r in ids.tolist()])


def _tiny_gpt() -> Callable[[Tensor], Tensor]:
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=13, n_ctx=12, seed=3)
    model = Transformer(cfg).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5, generator=g)

    memo: dict[tuple[int, ...], Tensor] = {}  # the variants ask for the same rows

    def step(seqs: Any) -> Tensor:
        ids = torch.as_tensor(seqs)
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError("next_log_probs takes int64 token ids [n, pos], got shape "
                             f"{list(ids.shape)} {ids.dtype}")
        fresh = [r for r in ids.tolist() if tuple(r) not in memo]
        if fresh:
            with torch.no_grad():
                rows = model(torch.tensor(fresh))[:, -1].log_softmax(-1)
            memo.update((tuple(r), row) for r, row in zip(fresh, rows))
        return torch.stack([memo[tuple(r)] for r in ids.tolist()])
    return step


# (label, model, prompt, beam_width, max_new_tokens, eos_id); the first three are built by
# hand: greedy falls in a trap, a finished beam wins, and a tie decides the answer.
TRAP = {(10,): {11: 0.5, 3: 0.4}, (10, 3): {7: 0.9}}
EOS_WIN = {(10,): {2: 0.55, 11: 0.4}, (10, 2): {5: 0.3}}
TIE = {(10,): {3: 0.3, 5: 0.3}, (10, 3): {1: 0.2}, (10, 5): {1: 0.9}}
BEAM_CASES = [
    ("greedy's trap: the likelier first token leads nowhere", _TableLM(12, 0, table=TRAP),
     [10], 2, 2, None),
    ("a beam that ends with eos (11) early wins", _TableLM(12, 1, table=EOS_WIN), [10], 2, 3,
     11),
    ("two first tokens tie exactly (beam width 1)", _TableLM(12, 2, table=TIE), [10], 1, 2,
     None),
    ("random toy LM, width 3, 4 steps", _TableLM(12, 3), [11, 10], 3, 4, None),
    ("flatter random toy LM, width 3, 4 steps", _TableLM(12, 23, sharp=1.0), [10, 11], 3, 4,
     None),
    ("random toy LM, width 4, 5 steps, eos 10", _TableLM(12, 4, sharp=1.5), [10, 11],
     4, 5, 10),
    ("random toy LM, width 2, 3 steps, eos 3", _TableLM(12, 5, sharp=1.0), [10], 2, 3, 3),
    ("no new tokens", _TableLM(12, 6), [10, 11], 3, 0, None),
]


def reference_beam(lm: Callable[[Any], Tensor], prompt: list[int], width: int, steps: int,
                   eos: int | None, rank: str = "logp", ties: int = 1, drop_done: bool = False,
                   own_best: bool = False) -> tuple[list[int], float]:
    """Beam search in float64; ``rank`` ("logp", "probs", "last", "mean") and the other
    switches build the known mistakes. Scores are kept as sums of log-probs (of probs for
    "probs"); ``ties`` -1 prefers the larger sequence."""
    beams: list[tuple[list[int], float, float]] = [(list(prompt), 0.0, 0.0)]  # seq, score, key
    n0 = len(prompt)
    for _ in range(steps):
        done = [b for b in beams if eos is not None and len(b[0]) > n0 and b[0][-1] == eos]
        alive = [b for b in beams if b not in done]
        if not alive:
            break
        rows = lm(torch.tensor([b[0] for b in alive])).double()
        cands = [] if drop_done else list(done)
        for (seq, score, _), row in zip(alive, rows):
            values = row.exp() if rank == "probs" else row
            ext = [(seq + [t], score + lp, lp) for t, lp in enumerate(values.tolist())]
            if own_best and len(beams) > 1:
                ext = [max(ext, key=lambda c: (c[1], [-t for t in c[0]]))]
            cands += ext

        def key(c: tuple[list[int], float, float]) -> tuple:
            value = {"last": c[2], "mean": c[1] / max(1, len(c[0]) - n0)}.get(rank, c[1])
            return (-value, [ties * t for t in c[0]])
        beams = sorted(cands, key=key)[:width]
        if not beams:
            break
    if not beams:
        return list(prompt), 0.0
    best = beams[0]
    return best[0], best[1] / max(1, len(best[0]) - n0) if rank == "mean" else best[1]


def _beam_variants(lm: Any, prompt: list[int], width: int, steps: int, eos: int | None
                   ) -> list[tuple[str, Callable[[], tuple[list[int], float]]]]:
    right = reference_beam(lm, prompt, width, steps, eos)
    return [
        (BEAM_GREEDY, lambda: reference_beam(lm, prompt, 1, steps, eos)),
        (BEAM_PROBS, lambda: reference_beam(lm, prompt, width, steps, eos, rank="probs")),
        (BEAM_PRODUCT, lambda: (right[0], math.exp(right[1]))),
        (BEAM_LAST, lambda: reference_beam(lm, prompt, width, steps, eos, rank="last")),
        (BEAM_OWN_BEST, lambda: reference_beam(lm, prompt, width, steps, eos, own_best=True)),
        (BEAM_EOS_IGNORED, lambda: reference_beam(lm, prompt, width, steps, None)),
        (BEAM_EOS_DROPPED, lambda: reference_beam(lm, prompt, width, steps, eos,
                                                  drop_done=True)),
        (BEAM_LENGTH, lambda: reference_beam(lm, prompt, width, steps, eos, rank="mean")),
        (BEAM_TIES, lambda: reference_beam(lm, prompt, width, steps, eos, ties=-1)),
        (BEAM_EOS_CUT, lambda: (right[0][:-1] if eos is not None and len(right[0]) > len(
            prompt) and right[0][-1] == eos else right[0], right[1])),
        (BEAM_NO_PROMPT, lambda: (right[0][len(prompt):], right[1])),
        (BEAM_STEPS, lambda: reference_beam(lm, prompt, width, steps - 1, eos)),
        (BEAM_STEPS, lambda: reference_beam(lm, prompt, width, steps + 1, eos)),
    ]


def _as_beam(value: Any, case: str) -> tuple[list[int], float]:
    """The learner's (sequence, score) as (list of ints, float), or a Mismatch."""
    seq, score = tuple_answer(value, ("sequence", "score"), "beam_search")
    if isinstance(seq, Tensor) and seq.dim() == 1 and not seq.is_floating_point() \
            and not seq.is_complex():
        seq = seq.tolist()
    if not isinstance(seq, (list, tuple)) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in seq):
        raise Mismatch("the sequence beam_search returns should be a list of ints (prompt "
                       f"included); got {type(seq).__name__}", [f"case: {case}"])
    if isinstance(score, Tensor) and score.numel() == 1 and score.is_floating_point():
        score = score.item()
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise Mismatch("the score beam_search returns should be a float (the sum of the "
                       f"log-probs); got {type(score).__name__}", [f"case: {case}"])
    return list(seq), float(score)


def _same_beam(a: tuple[list[int], float], b: tuple[list[int], float], tol: float) -> bool:
    return a[0] == b[0] and abs(a[1] - b[1]) <= tol * (1 + abs(b[1]))


def _beam_case(fn: Callable[..., Any], index: int) -> str:
    if index < len(BEAM_CASES):
        label, lm, prompt, width, steps, eos = BEAM_CASES[index]
    else:
        label, lm, prompt, width, steps, eos = ("a small Transformer", _tiny_gpt(),
                                                [12, 10, 11], 3, 3, None)
    case = (f"{label}: prompt {prompt}, beam_width {width}, max_new_tokens {steps}, "
            f"eos_id {eos}")
    tol = 1e-4 if index == len(BEAM_CASES) else 1e-7
    want = reference_beam(lm, prompt, width, steps, eos)
    got = _as_beam(call(fn, lm, list(prompt), width, steps, eos), case)
    if _same_beam(got, want, tol):
        return f"{case}: {want[0]}"
    found: list[str] = []
    ruled_out: set[str] = set()
    for message, make in _beam_variants(lm, prompt, width, steps, eos):
        wrong = make()
        if _same_beam(wrong, want, tol):
            continue  # this case cannot tell the mistake from the right answer
        if _same_beam(got, wrong, tol):
            found += [message] if message not in found else []
        else:
            ruled_out.add(message)
    details = [f"case: {case}", f"expected {want[0]} with score {want[1]:.6g}, got {got[0]} "
               f"with score {got[1]:.6g}"]
    located = f"{case}: expected {want[0]} (score {want[1]:.6g}), got {got[0]} " \
              f"(score {got[1]:.6g})"
    evidence = {"ruled_out": ruled_out - set(found), "located": located, "size": len(want[0])}
    if len(found) > 1:
        raise Ambiguous(found, details, **evidence)
    if found:
        raise Mismatch(found[0], details, found, **evidence)
    raise Unexplained(located, details, **evidence)


def check_beam_search(fn: Callable[..., Any]) -> CheckResult:
    indices = list(range(len(BEAM_CASES))) + [len(BEAM_CASES)]  # the last: a Transformer
    return run_check("beam_search", lambda: run_cases(indices, lambda i: _beam_case(fn, i)))


# -- bpe_pair_counts --------------------------------------------------------------------------

PAIRS_ACROSS = ("counted pairs across sequence boundaries: the last id of one sequence and "
                "the first of the next are not adjacent")
PAIRS_NO_OVERLAP = ("overlapping pairs were skipped: [5, 5, 5] holds (5, 5) twice; count "
                    "every adjacent pair, zip(seq, seq[1:])")
PAIRS_UNIQUE = ("counted each pair once per sequence: a pair that occurs twice in one "
                "sequence counts twice")
PAIRS_LAST_ONLY = ("only one sequence's pairs were kept: add every sequence's counts to one "
                   "dict instead of starting a new one per sequence")
PAIRS_MISSED_LAST = ("each sequence's last pair is missing: a sequence of n ids has n - 1 "
                     "pairs, the last one (seq[-2], seq[-1])")
PAIRS_REVERSED = "the pairs are reversed: the key of ids a then b is (a, b)"

PAIR_CASES = [
    ("two sequences", [[10, 11, 10, 11], [11, 10]]),
    ("one id repeated", [[257, 257, 257, 257]]),
    ("short and empty sequences", [[10, 11], [11, 10, 11], [257], [], [257, 10, 11]]),
    ("no sequences", []),
]


def _random_sequences(seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.choice([10, 11, 12, 257, 300]) for _ in range(rng.randint(0, 8))]
            for _ in range(30)]


def _count(seqs: list[list[int]], unique: bool = False, last_pair: bool = True
           ) -> dict[tuple[int, int], int]:
    """Pair counts with one switch away from the contract, for the known mistakes."""
    counts: dict[tuple[int, int], int] = {}
    for seq in seqs:
        pairs = list(zip(seq, seq[1:] if last_pair else seq[1:-1]))
        for pair in set(pairs) if unique else pairs:
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _non_overlapping(seqs: list[list[int]]) -> dict[tuple[int, int], int]:
    """Each pair counted as the merge would replace it: [5, 5, 5] gives (5, 5) once."""
    counts: dict[tuple[int, int], int] = {}
    for seq in seqs:
        for pair in set(zip(seq, seq[1:])):
            counts[pair] = counts.get(pair, 0) + len(seq) - len(merge_pair(seq, pair, -1))
    return counts


def _pair_variants(seqs: list[list[int]]) -> dict[str, Callable[[], dict]]:
    return {
        PAIRS_ACROSS: lambda: get_pair_counts([t for s in seqs for t in s]),
        PAIRS_NO_OVERLAP: lambda: _non_overlapping(seqs),
        PAIRS_UNIQUE: lambda: _count(seqs, unique=True),
        PAIRS_LAST_ONLY: lambda: get_pair_counts(seqs[-1]) if seqs else {},
        PAIRS_MISSED_LAST: lambda: _count(seqs, last_pair=False),
        PAIRS_REVERSED: lambda: {(b, a): n for (a, b), n in _count(seqs).items()},
    }


def _as_counts(value: Any, case: str) -> dict[tuple[int, int], int]:
    """The learner's counts as a plain dict without zeros, or a Mismatch."""
    if not isinstance(value, Mapping):
        kind = "None" if value is None else f"a {type(value).__name__}"
        raise Mismatch(f"bpe_pair_counts should return a dict from (a, b) pairs to counts; "
                       f"it returned {kind}", [f"case: {case}"])
    out = {}
    for key, n in value.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(
                isinstance(t, int) and not isinstance(t, bool) for t in key)):
            raise Mismatch(f"the keys of the counts should be (a, b) tuples of two ints; got "
                           f"{key!r:.60}", [f"case: {case}"])
        if isinstance(n, bool) or not isinstance(n, int):
            raise Mismatch(f"the counts should be ints; got {type(n).__name__} for {key}",
                           [f"case: {case}"])
        if n:
            out[key] = n
    return out


def _pairs_case(fn: Callable[..., Any], label: str, seqs: list[list[int]]) -> str:
    want = {}
    for seq in seqs:
        get_pair_counts(seq, want)  # the library's count, added up over the sequences
    shown = f"{seqs}" if len(seqs) < 6 else f"{len(seqs)} random sequences"
    case = f"{label}: bpe_pair_counts({shown})"
    got = _as_counts(call(fn, [list(s) for s in seqs]), case)
    if got == want:
        return case
    found: list[str] = []
    ruled_out: set[str] = set()
    for message, make in _pair_variants(seqs).items():
        wrong = make()
        if wrong == want:
            continue
        if got == wrong:
            found.append(message)
        else:
            ruled_out.add(message)
    diff = sorted(set(got) ^ set(want) | {p for p in want if got.get(p) != want[p]})
    where = [f"pair {p}: counted {got.get(p, 0)}, expected {want.get(p, 0)}" for p in diff[:3]]
    details = [f"case: {case}"] + where
    located = f"{case}: {where[0]}"
    evidence = {"ruled_out": ruled_out, "located": located, "size": len(want)}
    if len(found) > 1:
        raise Ambiguous(found, details, **evidence)
    if found:
        raise Mismatch(found[0], details, found, **evidence)
    raise Unexplained(located, details, **evidence)


def check_bpe_pair_counts(fn: Callable[..., Any]) -> CheckResult:
    cases = PAIR_CASES + [(f"random sequences (seed {s})", _random_sequences(s))
                          for s in (0, 1)]
    return run_check("bpe_pair_counts",
                     lambda: run_cases(cases, lambda c: _pairs_case(fn, *c)))
