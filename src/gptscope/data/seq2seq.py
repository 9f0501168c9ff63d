"""Source -> target tasks with ground truth, for encoder-decoder models.

Two tasks, both deterministic by seed and with disjoint train/test splits:

- ``CopySeqTask``: source digits -> the same digits (the task *The Annotated Transformer*
  starts with). Target word i is aligned with source word i (a diagonal alignment).
- ``TranslationTask``: a tiny grammar rendered in two "languages". The source is English-like
  subject-verb-object with adjectives before nouns ("big cat sees dog"); the target is
  subject-object-verb with adjectives after nouns and its own words ("kat gros hund mira").
  Every target word translates exactly one source word, and the word order differs, so the
  known alignment (``Seq2SeqSplit.align``) is not the diagonal: a decoder must learn where
  in the source to look.

One vocabulary serves both sides: PAD 0, BOS 1, EOS 2, then the task's words. A split holds
whole padded tensors: ``src`` [n, src_pos] with ``src_mask``; ``tgt`` [n, tgt_pos] = BOS,
words, EOS, padding, with ``tgt_mask``; ``align`` [n, tgt_pos]: for each target position the
source position its word translates (-1 at BOS, EOS and padding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")


@dataclass
class Seq2SeqSplit:
    """One split's examples as padded tensors (see the module docstring for the layout)."""

    src: Tensor
    src_mask: Tensor
    tgt: Tensor
    tgt_mask: Tensor
    align: Tensor

    def __len__(self) -> int:
        return self.src.shape[0]

    def rows(self, index: Tensor) -> Seq2SeqSplit:
        """The examples at ``index`` (a LongTensor of row numbers)."""
        return Seq2SeqSplit(*(t[index] for t in (self.src, self.src_mask, self.tgt,
                                                  self.tgt_mask, self.align)))


def _pack(pairs: list[tuple[list[int], list[int], list[int]]], src_len: int, tgt_len: int
          ) -> Seq2SeqSplit:
    """(source ids, target word ids, alignment) triples -> a padded Seq2SeqSplit."""
    n = len(pairs)
    src = torch.full((n, src_len), PAD, dtype=torch.long)
    tgt = torch.full((n, tgt_len), PAD, dtype=torch.long)
    align = torch.full((n, tgt_len), -1, dtype=torch.long)
    for i, (s, t, a) in enumerate(pairs):
        src[i, :len(s)] = torch.tensor(s)
        tgt[i, :len(t) + 2] = torch.tensor([BOS, *t, EOS])
        align[i, 1:len(t) + 1] = torch.tensor(a)
    return Seq2SeqSplit(src, (src != PAD).long(), tgt, (tgt != PAD).long(), align)


class Seq2SeqTask:
    """What both tasks share: the vocabulary, the splits, batches and decoding to words."""

    words: tuple[str, ...]
    src_len: int
    tgt_len: int
    train: Seq2SeqSplit
    test: Seq2SeqSplit

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def split(self, name: str) -> Seq2SeqSplit:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test

    def batch(self, n: int, generator: torch.Generator, split: str = "train") -> Seq2SeqSplit:
        """``n`` examples of ``split`` drawn at random (with replacement) by ``generator``."""
        data = self.split(split)
        return data.rows(torch.randint(len(data), (n,), generator=generator))

    def decode(self, ids: Tensor | list[int]) -> str:
        """Token ids -> words, stopping at EOS and skipping BOS and padding."""
        out = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.words[i])
        return " ".join(out)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


class CopySeqTask(Seq2SeqTask):
    """Source: ``min_len`` to ``max_len`` digits from ``n_symbols``; target: the same digits.

    ``n_train`` and ``n_test`` distinct sequences (no test sequence appears in training),
    drawn with ``seed``.
    """

    def __init__(self, n_symbols: int = 10, min_len: int = 1, max_len: int = 10,
                 n_train: int = 20000, n_test: int = 500, seed: int = 0) -> None:
        for name, value, low in (("n_symbols", n_symbols, 2), ("min_len", min_len, 1),
                                 ("n_train", n_train, 1), ("n_test", n_test, 1)):
            _check_int(name, value, low)
        _check_int("max_len", max_len, min_len)
        space = sum(n_symbols ** k for k in range(min_len, max_len + 1))
        if n_train + n_test > space // 2:
            raise ValueError(f"n_train + n_test = {n_train + n_test} is more than half of the "
                             f"{space} possible sequences; lower them or raise max_len")
        self.words = (*SPECIALS, *(str(d) for d in range(n_symbols)))
        self.src_len, self.tgt_len = max_len, max_len + 2
        g = torch.Generator().manual_seed(seed)
        seen: set[tuple[int, ...]] = set()
        found: list[tuple[int, ...]] = []
        while len(found) < n_train + n_test:  # distinct sequences; rejection is rare
            length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
            seq = tuple((torch.randint(n_symbols, (length,), generator=g) + 3).tolist())
            if seq not in seen:
                seen.add(seq)
                found.append(seq)
        pairs = [(list(s), list(s), list(range(len(s)))) for s in found]
        self.test = _pack(pairs[:n_test], self.src_len, self.tgt_len)
        self.train = _pack(pairs[n_test:], self.src_len, self.tgt_len)


# The grammar: [adjective] noun verb [adjective] noun, each word with its translation.
NOUNS = {"cat": "kat", "dog": "hund", "bird": "fogel", "fox": "reva", "owl": "uhu",
         "mouse": "mys", "horse": "ros", "frog": "kvak"}
ADJECTIVES = {"big": "gros", "small": "lit", "red": "rod", "old": "gamla"}
VERBS = {"sees": "mira", "chases": "jaga", "likes": "ama", "bites": "morde", "finds": "trova",
         "helps": "ayuda"}


def _render(subj_adj: str | None, subj: str, verb: str, obj_adj: str | None, obj: str
            ) -> tuple[list[str], list[str], list[int]]:
    """One sentence: (source words, target words, for each target word its source index).

    Source order: [adj] subj verb [adj] obj. Target order: subj [adj] obj [adj] verb.
    """
    src, where = [], {}
    for role, word in (("sa", subj_adj), ("s", subj), ("v", verb), ("oa", obj_adj),
                       ("o", obj)):
        if word is not None:
            where[role] = len(src)
            src.append(word)
    table = {**NOUNS, **ADJECTIVES, **VERBS}
    tgt, align = [], []
    for role, word in (("s", subj), ("sa", subj_adj), ("o", obj), ("oa", obj_adj),
                       ("v", verb)):
        if word is not None:
            tgt.append(table[word])
            align.append(where[role])
    return src, tgt, align


class TranslationTask(Seq2SeqTask):
    """Every sentence of the grammar (8 nouns, 4 optional adjectives, 6 verbs: 9,600),
    ``n_test`` of them held out, chosen by ``seed``."""

    def __init__(self, n_test: int = 600, seed: int = 0) -> None:
        _check_int("n_test", n_test, 1)
        adjs = [None, *ADJECTIVES]
        sentences = [_render(*s) for s in itertools.product(adjs, NOUNS, VERBS, adjs, NOUNS)]
        if n_test >= len(sentences):
            raise ValueError(f"n_test must be below the {len(sentences)} sentences, got {n_test}")
        src_words = [*NOUNS, *ADJECTIVES, *VERBS]
        tgt_words = [*NOUNS.values(), *ADJECTIVES.values(), *VERBS.values()]
        self.words = (*SPECIALS, *src_words, *tgt_words)
        ids = {w: i for i, w in enumerate(self.words)}
        self.src_len, self.tgt_len = 5, 7
        pairs = [([ids[w] for w in s], [ids[w] for w in t], a) for s, t, a in sentences]
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
        pairs = [pairs[i] for i in order.tolist()]
        self.test = _pack(pairs[:n_test], self.src_len, self.tgt_len)
        self.train = _pack(pairs[n_test:], self.src_len, self.tgt_len)


SEQ2SEQ_TASKS = {"copy": CopySeqTask, "translation": TranslationTask}
