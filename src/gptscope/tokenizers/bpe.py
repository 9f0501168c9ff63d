"""Byte-level BPE (byte pair encoding), the tokenizer family of GPT-2.

How it works
------------
*Base vocabulary.* Text is UTF-8 bytes, so the 256 possible bytes are the first
256 tokens; any string can be encoded, no "unknown" token is ever needed.

*Training* learns a list of *merges*. Start with every word of the training
text as a sequence of byte ids. Count how often each adjacent pair of ids
occurs (weighted by how often the word occurs). The most frequent pair, say
``(116, 104)`` for ``"t" "h"``, becomes a new token with the next free id, and
every occurrence of that pair is replaced by the new id (:func:`merge_pair`).
Repeat until the vocabulary is as large as asked. Words come from a regex
pre-split (:mod:`.pretokenize`) so merges never cross word boundaries.

*Encoding* a word replays the merges: among the adjacent pairs of the word,
merge the one that was learned first (lowest rank); repeat until no adjacent
pair is a known merge. *Decoding* concatenates the bytes of each token and
decodes UTF-8 once at the end, so a character split over two tokens is fine.

Speed notes
-----------
Training does not recount all pairs after each merge. It keeps the pair counts
and, for each pair, the set of words it occurs in; a merge only revisits those
words and updates counts by the difference. The most frequent pair comes from a
heap whose out-of-date entries are skipped when popped. Encoding caches the
result per distinct word, and text has few distinct words.

File format
-----------
:meth:`BPETokenizer.save` writes a Hugging Face ``tokenizers`` ``tokenizer.json``
(model ``BPE``, pre-tokenizer and decoder ``ByteLevel``). Token strings in that
file use GPT-2's byte-to-character table (:func:`bytes_to_unicode`): e.g. the
space byte is written ``"Ġ"``. :meth:`BPETokenizer.from_hf` reads such files and
GPT-2's classic ``vocab.json`` + ``merges.txt``.
"""

from __future__ import annotations

import heapq
import os
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import chain, pairwise
from pathlib import Path
from typing import Any

from .base import (
    AllowedSpecial,
    Tokenizer,
    as_id_list,
    check_special_tokens,
    hf_added_tokens,
    resolve_allowed_special,
    split_special,
    tokenizer_from_file,
)
from .pretokenize import GPT2_PATTERN, make_splitter

Pair = tuple[int, int]

# Encoding results kept per distinct word; cleared when it grows past this.
_CACHE_LIMIT = 200_000


# ---------------------------------------------------------------- teaching-size helpers


def get_pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count adjacent pairs: ``[1, 2, 1, 2]`` -> ``{(1, 2): 2, (2, 1): 1}``.

    If ``counts`` is given it is updated in place (and returned), which lets
    one add up the pairs of many sequences.
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

    Occurrences do not overlap: ``merge_pair([5, 5, 5], (5, 5), 9) == [9, 5]``.
    """
    a, b = pair
    out: list[int] = []
    i = 0
    n = len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value (0..255) to a printable character.

    Printable Latin-1 bytes stand for themselves; the others (control bytes,
    space, ...) are given the characters ``chr(256)``, ``chr(257)``, ... in byte
    order. This is why GPT-2 vocabularies show ``"Ġ"`` (``chr(288)``) for a space.
    """
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def token_to_str(token: bytes) -> str:
    """Bytes of a token -> its string in Hugging Face / GPT-2 files."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(s: str) -> bytes | None:
    """Inverse of :func:`token_to_str`; None if ``s`` has a character outside the table."""
    inverse = _unicode_to_bytes()
    try:
        return bytes(inverse[c] for c in s)
    except KeyError:
        return None


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


# ---------------------------------------------------------------- training


def learn_merges(
    words: list[list[int]],
    freqs: list[int],
    num_merges: int,
    first_id: int = 256,
    show_progress: bool = False,
) -> list[Pair]:
    """Learn up to ``num_merges`` merges from distinct ``words`` with counts ``freqs``.

    ``words[i]`` is a list of token ids (bytes at first) and is rewritten in
    place as merges apply. Merge ``k`` creates id ``first_id + k``. Ties in
    frequency go to the smallest pair ``(a, b)``, so results are deterministic.
    Stops early if no pair occurs any more.
    """
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words having it
    for wi, (w, f) in enumerate(zip(words, freqs, strict=True)):
        for p in pairwise(w):
            pair_counts[p] += f
            where[p].add(wi)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    report_every = max(1, num_merges // 20)
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale heap entry: this pair's count changed since it was pushed
        new_id = first_id + len(merges)
        merges.append(pair)
        changed: set[Pair] = set()
        for wi in where.pop(pair):
            w = words[wi]
            new = merge_pair(w, pair, new_id)
            if len(new) == len(w):
                continue  # word lost this pair in an earlier merge; the set is lazy
            f = freqs[wi]
            # Update counts by the difference between the old and new word.
            for p in pairwise(w):
                pair_counts[p] -= f
                changed.add(p)
            for p in pairwise(new):
                pair_counts[p] += f
                where[p].add(wi)
                changed.add(p)
            words[wi] = new
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
        if show_progress and len(merges) % report_every == 0:
            print(f"bpe: {len(merges)}/{num_merges} merges", file=sys.stderr)
    return merges


# ---------------------------------------------------------------- the tokenizer


class BPETokenizer(Tokenizer):
    """Byte-level BPE tokenizer (GPT-2 style).

    Args:
        vocab: id -> bytes of that token. Must contain all 256 single bytes.
        merges: pairs of ids in the order learned (rank 0 first); the merged
            token of ``(a, b)`` is the vocab entry whose bytes are
            ``vocab[a] + vocab[b]``.
        special_tokens: string -> id, for ids not in ``vocab``. These strings are
            cut out of the text before pre-splitting and never merged.
        pattern: pre-split regex (None: no pre-split, the whole text is one word).
        eos_token: which special token ends a document (default: guessed from
            common names such as ``<|endoftext|>``). Hugging Face files have no
            place for it, so after save/load only the guess remains.
        add_prefix_space: prepend a space to text that does not start with one
            (a Hugging Face ByteLevel option; off for GPT-2).
        ignore_merges: a word that is itself in the vocab is one token
            (Hugging Face option used by some newer models).
    """

    def __init__(
        self,
        vocab: Mapping[int, bytes],
        merges: Sequence[Pair],
        special_tokens: Mapping[str, int] | None = None,
        pattern: str | None = GPT2_PATTERN,
        eos_token: str | None = None,
        add_prefix_space: bool = False,
        ignore_merges: bool = False,
    ) -> None:
        self.vocab: dict[int, bytes] = dict(sorted(vocab.items()))
        self._bytes_to_id: dict[bytes, int] = {}
        for i, b in self.vocab.items():
            self._bytes_to_id.setdefault(b, i)
        missing = [b for b in range(256) if bytes([b]) not in self._bytes_to_id]
        if missing:
            raise ValueError(
                f"a byte-level BPE vocab must contain all 256 single bytes; missing {len(missing)} "
                f"(first: byte {missing[0]}); train with the full byte alphabet"
            )
        self._byte_ids = [self._bytes_to_id[bytes([b])] for b in range(256)]

        self.merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self._ranks: dict[Pair, int] = {}
        self._merge_to: dict[Pair, int] = {}
        for rank, (a, b) in enumerate(self.merges):
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge #{rank} ({a}, {b}) uses an id that is not in the vocab")
            merged = self._bytes_to_id.get(self.vocab[a] + self.vocab[b])
            if merged is None:
                raise ValueError(
                    f"merge #{rank} ({a}, {b}) makes {self.vocab[a] + self.vocab[b]!r}, "
                    "which is not in the vocab; every merge result needs a vocab entry"
                )
            self._ranks.setdefault((a, b), rank)
            self._merge_to.setdefault((a, b), merged)

        self.special_tokens = dict(special_tokens or {})
        check_special_tokens(self.special_tokens)
        clash = [s for s, i in self.special_tokens.items() if i in self.vocab]
        if clash:
            raise ValueError(
                f"special tokens {clash!r} reuse ids of ordinary tokens; give them unused ids"
            )
        if eos_token is not None and eos_token not in self.special_tokens:
            raise ValueError(
                f"eos_token {eos_token!r} is not a special token; add it to special_tokens"
            )
        self.eos_token = eos_token
        self.pattern = pattern
        self.add_prefix_space = add_prefix_space
        self.ignore_merges = ignore_merges
        self._split: Callable[[str], list[str]] = (
            make_splitter(pattern) if pattern is not None else _no_split
        )
        self._decode_table: dict[int, bytes] = dict(self.vocab)
        for s, i in self.special_tokens.items():
            self._decode_table[i] = s.encode("utf-8")
        self._vocab_size = max(self._decode_table) + 1
        self._cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] | None = None,
        pattern: str = GPT2_PATTERN,
        show_progress: bool = False,
        eos_token: str | None = None,
    ) -> BPETokenizer:
        """Learn a tokenizer with ``vocab_size`` ids (256 bytes + merges + specials).

        Special-token strings found in ``text`` are cut out and not learned from.
        Special tokens get the last ids. If the text runs out of pairs before
        reaching ``vocab_size`` a warning is issued and the vocab is smaller.
        """
        specials = list(dict.fromkeys(special_tokens or ()))
        if not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
        num_merges = vocab_size - 256 - len(specials)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: byte-level BPE needs 256 byte tokens "
                f"plus {len(specials)} special tokens; use vocab_size >= {256 + len(specials)}"
            )
        split = make_splitter(pattern)
        word_counts: Counter[str] = Counter()
        for piece, is_special in split_special(text, set(specials)):
            if not is_special:
                word_counts.update(split(piece))
        try:
            words = [list(w.encode("utf-8")) for w in word_counts]
        except UnicodeEncodeError as exc:
            raise ValueError(_surrogate_message(exc)) from None
        merges = learn_merges(words, list(word_counts.values()), num_merges, 256, show_progress)
        if len(merges) < num_merges:
            warnings.warn(
                f"training text only supports {len(merges)} merges, not {num_merges}; "
                f"vocab_size is {256 + len(merges) + len(specials)} (use more text)",
                stacklevel=2,
            )
        vocab = {b: bytes([b]) for b in range(256)}
        for i, (a, b) in enumerate(merges):
            vocab[256 + i] = vocab[a] + vocab[b]
        first_special = 256 + len(merges)
        special_ids = {s: first_special + i for i, s in enumerate(specials)}
        return cls(vocab, merges, special_ids, pattern=pattern, eos_token=eos_token)

    # ------------------------------------------------------------ encode / decode

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Text -> ids. Special tokens in ``allowed_special`` are matched first
        (longest first); the rest is pre-split into words and each word is BPE-merged."""
        allowed = resolve_allowed_special(self.special_tokens, allowed_special)
        ids: list[int] = []
        for piece, is_special in split_special(text, allowed):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                if self.add_prefix_space and not piece.startswith(" "):
                    piece = " " + piece
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as plain text."""
        words = self._split(text)
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()  # keep memory bounded on endless streams of new words
        try:
            parts = [cache[w] for w in words]  # fast path: every word seen before
        except KeyError:
            for w in words:
                if w not in cache:
                    cache[w] = self._encode_word(w)
            parts = [cache[w] for w in words]
        return list(chain.from_iterable(parts))

    def _encode_word(self, word: str) -> list[int]:
        try:
            raw = word.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(_surrogate_message(exc)) from None
        if self.ignore_merges and raw in self._bytes_to_id:
            return [self._bytes_to_id[raw]]
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in raw]
        ranks = self._ranks
        missing = len(ranks)  # larger than any rank
        while len(ids) >= 2:
            best = min(pairwise(ids), key=lambda p: ranks.get(p, missing))
            if best not in ranks:
                break
            ids = merge_pair(ids, best, self._merge_to[best])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text. Bytes are joined first and decoded once, so tokens that
        split a multi-byte character are fine; invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Ids -> raw bytes (special tokens as their UTF-8 text)."""
        table = self._decode_table
        ids = as_id_list(ids)
        try:
            return b"".join([table[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in table)
            raise ValueError(
                f"token id {bad!r} is not in this tokenizer (vocab_size {self.vocab_size})"
            ) from None

    # ------------------------------------------------------------ files

    def _add_specials(self, ids: dict[str, int]) -> BPETokenizer:
        return BPETokenizer(self.vocab, self.merges, {**self.special_tokens, **ids},
                            self.pattern, self.eos_token, self.add_prefix_space,
                            self.ignore_merges)

    def to_dict(self) -> dict[str, Any]:
        """Hugging Face ``tokenizers`` JSON (model BPE, ByteLevel pre-tokenizer/decoder)."""
        byte_level: dict[str, Any] = {
            "type": "ByteLevel",
            "add_prefix_space": self.add_prefix_space,
            "trim_offsets": True,
            "use_regex": self.pattern == GPT2_PATTERN,
        }
        if self.pattern is None or self.pattern == GPT2_PATTERN:
            pre_tokenizer: dict[str, Any] = byte_level
        else:
            split = {
                "type": "Split",
                "pattern": {"Regex": self.pattern},
                "behavior": "Isolated",
                "invert": False,
            }
            pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, byte_level]}
        model: dict[str, Any] = {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {token_to_str(b): i for i, b in self.vocab.items()},
            # "a b" strings: readable by every tokenizers version, and safe because
            # byte-level token strings never contain a space.
            "merges": [
                f"{token_to_str(self.vocab[a])} {token_to_str(self.vocab[b])}"
                for a, b in self.merges
            ],
        }
        if self.ignore_merges:  # only newer tokenizers versions know this key
            model["ignore_merges"] = True
        added = hf_added_tokens(self.special_tokens)
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": None,
            "decoder": {**byte_level, "use_regex": True},
            "model": model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        """Read a Hugging Face ``tokenizer.json`` dict (byte-level BPE only)."""
        from .hf import bpe_args_from_tokenizer_json

        return cls(**bpe_args_from_tokenizer_json(data))

    @classmethod
    def from_hf(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Open Hugging Face files: a ``tokenizer.json``, or a folder holding one, or
        a folder (or ``vocab.json`` path) with GPT-2's ``vocab.json`` + ``merges.txt``.

        Gives the same ids as the ``tokenizers`` library on the same files. All
        ``added_tokens`` of a ``tokenizer.json`` become special tokens (matched in
        the raw text before pre-splitting); their lstrip/rstrip flags are ignored.
        """
        from .hf import bpe_args_from_vocab_merges

        p = Path(path)
        if p.is_dir():
            if (p / "tokenizer.json").is_file():
                p = p / "tokenizer.json"
            elif (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
                return cls(**bpe_args_from_vocab_merges(p / "vocab.json", p / "merges.txt"))
            else:
                raise ValueError(
                    f"{p} holds neither tokenizer.json nor vocab.json + merges.txt; "
                    "point at a folder with one of them"
                )
        if p.name == "vocab.json":
            return cls(**bpe_args_from_vocab_merges(p, p.with_name("merges.txt")))
        if not p.is_file():
            raise ValueError(f"tokenizer file {p} does not exist")
        return tokenizer_from_file(p, cls.from_dict)


def _no_split(text: str) -> list[str]:
    return [text] if text else []


def _surrogate_message(exc: UnicodeEncodeError) -> str:
    bad = exc.object[exc.start]
    return (
        f"text contains {bad!r} (U+{ord(bad):04X}), a lone surrogate that is not valid "
        "Unicode and cannot be UTF-8 encoded; clean the text, e.g. "
        "text.encode('utf-8', 'replace').decode('utf-8')"
    )
