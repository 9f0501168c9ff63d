"""BERT's WordPiece tokenizer, for reading BERT-family tokenizer files.

Three steps, matching Hugging Face ``tokenizers``' ``BertWordPieceTokenizer``:

1. *Normalize*: drop control characters, turn any whitespace into a space, put
   spaces around CJK ideographs, strip accents (NFD, then drop combining
   marks) and lowercase, character by character.
2. *Pre-split* on whitespace, and make each punctuation character a word.
3. *WordPiece*: split each word greedily, longest vocabulary match first; pieces
   after the first carry the ``##`` prefix. A word that cannot be covered
   becomes the single ``[UNK]`` token.

Encoding is lossy (case, accents, spacing), so ``decode`` only approximates the
input. ``encode`` does not add ``[CLS]``/``[SEP]``; add them yourself.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gptscope.utils.files import read_text

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

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# CJK ideograph blocks that get spaces around them. `tokenizers` starts the
# fifth block at U+2B920 (original BERT: U+2B820); we follow `tokenizers`.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# Unicode White_Space (Rust's char::is_whitespace, which `tokenizers` uses).
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def _is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c).startswith("P")


class WordPieceTokenizer(Tokenizer):
    """WordPiece with BERT normalization.

    Args:
        vocab: token -> id (or a list of tokens, id = position, as in ``vocab.txt``).
        unk_token: token used for words that cannot be split; must be in ``vocab``.
        special_tokens: strings matched in the raw text first (default: the BERT
            specials ``[PAD] [UNK] [CLS] [SEP] [MASK]`` found in ``vocab``).
        lowercase, strip_accents, clean_text, handle_chinese_chars: normalization
            switches as in ``BertNormalizer`` (``strip_accents=None`` follows ``lowercase``).
    """

    def __init__(
        self,
        vocab: Mapping[str, int] | Sequence[str],
        unk_token: str = "[UNK]",
        special_tokens: Mapping[str, int] | None = None,
        prefix: str = "##",
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
    ) -> None:
        if isinstance(vocab, Mapping):
            self.vocab: dict[str, int] = {str(t): int(i) for t, i in vocab.items()}
        else:
            self.vocab = {t: i for i, t in enumerate(vocab)}
        if unk_token not in self.vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocab; add it to vocab.txt")
        self.unk_token = unk_token
        self.prefix = prefix
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        if special_tokens is None:
            special_tokens = {t: self.vocab[t] for t in BERT_SPECIALS if t in self.vocab}
        self.special_tokens = dict(special_tokens)
        check_special_tokens(self.special_tokens)
        self.eos_token = None
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        for t, i in self.special_tokens.items():
            self._id_to_token.setdefault(i, t)
        self._vocab_size = max(self._id_to_token) + 1
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    # ------------------------------------------------------------ the three steps

    def normalize(self, text: str) -> str:
        """Step 1: BERT normalization of raw text."""
        if self.clean_text:
            # Drop control/format/private-use characters (as `tokenizers` does,
            # unassigned ones are kept), then map every whitespace to " ".
            text = "".join(
                " " if c in _WHITE_SPACE else c
                for c in text
                if c in "\t\n\r"
                or not (c == "\ufffd" or unicodedata.category(c) in _DROPPED_CATEGORIES)
            )
        if self.handle_chinese_chars:
            text = "".join(f" {c} " if _is_cjk(c) else c for c in text)
        if self.strip_accents:
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        if self.lowercase:
            # per character, like `tokenizers` (no final-sigma rule of str.lower)
            text = "".join(c.lower() for c in text)
        return text

    @staticmethod
    def pre_split(text: str) -> list[str]:
        """Step 2: split on whitespace; every punctuation character is its own word."""
        words: list[str] = []
        current: list[str] = []
        for c in text:
            if c in _WHITE_SPACE or _is_punct(c):
                if current:
                    words.append("".join(current))
                    current = []
                if c not in _WHITE_SPACE:
                    words.append(c)
            else:
                current.append(c)
        if current:
            words.append("".join(current))
        return words

    def wordpiece(self, word: str) -> list[int]:
        """Step 3: greedy longest-match-first split of one word into ids."""
        unk = [self.vocab[self.unk_token]]
        if len(word) > self.max_input_chars_per_word:
            return unk
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return unk  # some part of the word matches nothing
            start = end
        return ids

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Text -> ids (no ``[CLS]``/``[SEP]`` added)."""
        allowed = resolve_allowed_special(self.special_tokens, allowed_special)
        ids: list[int] = []
        for piece, is_special in split_special(text, allowed):
            if is_special:
                ids.append(self.special_tokens[piece])
                continue
            for word in self.pre_split(self.normalize(piece)):
                toks = self._cache.get(word)
                if toks is None:
                    toks = self._cache[word] = self.wordpiece(word)
                ids.extend(toks)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text: ``##`` pieces are glued to the previous token, others
        separated by spaces. Approximate, since normalization lost information."""
        out: list[str] = []
        for i in as_id_list(ids):
            tok = self._id_to_token.get(i)
            if tok is None:
                raise ValueError(f"token id {i!r} is not in this tokenizer")
            if out and tok.startswith(self.prefix):
                out[-1] += tok[len(self.prefix) :]
            else:
                out.append(tok)
        return " ".join(out)

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        """Hugging Face ``tokenizers`` JSON (BertNormalizer, BertPreTokenizer, WordPiece)."""
        added = hf_added_tokens(self.special_tokens)
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {
                "type": "BertNormalizer",
                "clean_text": self.clean_text,
                "handle_chinese_chars": self.handle_chinese_chars,
                "strip_accents": self.strip_accents,
                "lowercase": self.lowercase,
            },
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": None,
            "decoder": {"type": "WordPiece", "prefix": self.prefix, "cleanup": True},
            "model": {
                "type": "WordPiece",
                "unk_token": self.unk_token,
                "continuing_subword_prefix": self.prefix,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordPieceTokenizer:
        """Read a Hugging Face ``tokenizer.json`` dict with a WordPiece model."""
        model = data.get("model") or {}
        if model.get("type") != "WordPiece":
            raise ValueError(
                f"expected a WordPiece model, got {model.get('type')!r}; use load_tokenizer"
            )
        pre = data.get("pre_tokenizer") or {}
        if pre.get("type") != "BertPreTokenizer":
            raise ValueError(
                f"unsupported WordPiece pre-tokenizer {pre.get('type')!r}; "
                "gptscope reads BertPreTokenizer only"
            )
        norm = data.get("normalizer")
        opts: dict[str, Any] = {
            "lowercase": False,
            "strip_accents": False,
            "clean_text": False,
            "handle_chinese_chars": False,
        }
        if norm is not None:
            if norm.get("type") != "BertNormalizer":
                raise ValueError(
                    f"unsupported WordPiece normalizer {norm.get('type')!r}; "
                    "gptscope reads BertNormalizer or none"
                )
            opts = {k: norm.get(k, True) for k in ("clean_text", "handle_chinese_chars")}
            opts["lowercase"] = norm.get("lowercase", True)
            opts["strip_accents"] = norm.get("strip_accents")
        specials = {t["content"]: int(t["id"]) for t in data.get("added_tokens") or []}
        return cls(
            model.get("vocab") or {},
            unk_token=model.get("unk_token", "[UNK]"),
            special_tokens=specials,
            prefix=model.get("continuing_subword_prefix", "##"),
            max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
            **opts,
        )

    @classmethod
    def from_vocab_txt(cls, path: str | os.PathLike[str], **options: Any) -> WordPieceTokenizer:
        """Read BERT's ``vocab.txt`` (one token per line, id = line number)."""
        text = read_text(path, "expected BERT's vocab.txt (one token per line, UTF-8)")
        tokens = text.split("\n")  # read_text already turned \r\n into \n
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens, **options)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    @classmethod
    def from_hf(cls, path: str | os.PathLike[str]) -> WordPieceTokenizer:
        """Open ``tokenizer.json``, ``vocab.txt``, or a folder holding either."""
        p = Path(path)
        if p.is_dir():
            if (p / "tokenizer.json").is_file():
                p = p / "tokenizer.json"
            elif (p / "vocab.txt").is_file():
                p = p / "vocab.txt"
            else:
                raise ValueError(f"{p} holds neither tokenizer.json nor vocab.txt")
        if p.suffix == ".txt":
            return cls.from_vocab_txt(p)
        return tokenizer_from_file(p, cls.from_dict)
