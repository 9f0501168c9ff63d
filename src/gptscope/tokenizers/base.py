"""What every gptscope tokenizer has in common, plus small shared helpers.

A tokenizer turns text into a list of integer ids (``encode``) and back
(``decode``). Ids run from ``0`` to ``vocab_size - 1``. Special tokens (such as
``<|endoftext|>``) are whole strings with their own ids that are never split.
"""

from __future__ import annotations

import functools
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from gptscope.utils.atomic import write_text
from gptscope.utils.files import read_json_object

AllowedSpecial = Literal["all", "none"] | Collection[str]

# Names that mean "end of text" in common tokenizers, tried in this order when
# no eos token was named explicitly.
_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[EOS]")


class Tokenizer(ABC):
    """Base class: ``encode``, ``decode``, ``vocab_size``, special tokens, save/load.

    Subclasses set ``self.special_tokens`` (string -> id) and may set
    ``self.eos_token`` to name which special token ends a document.
    """

    special_tokens: dict[str, int]
    eos_token: str | None = None

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids; every id returned by ``encode`` is ``< vocab_size``."""

    @abstractmethod
    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Text -> list of ids. ``allowed_special`` says which special-token strings
        in ``text`` become their special id ("all", "none", or a set of strings);
        the others are encoded as ordinary text."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """List of ids -> text."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``from_dict`` inverts it."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer from ``to_dict()`` output."""

    @property
    def eos_token_id(self) -> int | None:
        """Id of the end-of-text special token, or None if there is none."""
        if self.eos_token is not None:
            return self.special_tokens.get(self.eos_token)
        for name in _EOS_NAMES:
            if name in self.special_tokens:
                return self.special_tokens[name]
        return None

    def with_special_tokens(self, tokens: Sequence[str]) -> Tokenizer:
        """A copy that also has ``tokens`` as special tokens, with the next free ids; the
        ones it already has keep theirs. Every existing id keeps its meaning, so a model
        trained with this tokenizer only needs rows for the new ids (chat role markers)."""
        new = [t for t in dict.fromkeys(tokens) if t not in self.special_tokens]
        if not new:
            return self
        check_special_tokens({t: i for i, t in enumerate(new)})
        return self._add_specials({t: self.vocab_size + i for i, t in enumerate(new)})

    def _add_specials(self, ids: dict[str, int]) -> Tokenizer:
        raise ValueError(f"a {type(self).__name__} cannot take new special tokens; use a "
                         "char or BPE tokenizer")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` atomically and return its path.

        ``path`` is either a file name ending in ``.json`` or a directory (created
        if needed) that will hold ``tokenizer.json``.
        """
        p = Path(path)
        if p.suffix != ".json":
            p.mkdir(parents=True, exist_ok=True)
            p = p / "tokenizer.json"
        write_text(p, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))
        return p

    def __len__(self) -> int:
        return self.vocab_size


def as_id_list(ids: Sequence[int] | Any) -> list[int]:
    """Accept a list/tuple of ints, or a 1-D numpy array / torch tensor (via ``tolist``)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return ids if isinstance(ids, list) else list(ids)


T = TypeVar("T")
TOKENIZER_FILE_FIX = "expected a tokenizer.json (write one with tok.save(path))"


def tokenizer_from_file(path: Path, build: Callable[[dict[str, Any]], T]) -> T:
    """``build(data)`` for the JSON object in ``path``; every failure names the file.

    A hand-edited or foreign file fails inside ``build`` as a KeyError, TypeError or
    AttributeError (a list where an object belongs, a missing key); those come out as a
    ValueError that says which file, not as a bare traceback.
    """
    data = read_json_object(path, TOKENIZER_FILE_FIX)
    try:
        return build(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path} does not have the structure of a tokenizer.json "
                         f"({type(e).__name__}: {e}); {TOKENIZER_FILE_FIX}") from e


def resolve_allowed_special(
    special_tokens: dict[str, int], allowed_special: AllowedSpecial
) -> set[str]:
    """Turn the ``allowed_special`` argument into a set of special-token strings."""
    if isinstance(allowed_special, str):
        if allowed_special == "all":
            return set(special_tokens)
        if allowed_special == "none":
            return set()
        raise ValueError(
            f"allowed_special={allowed_special!r} is not understood; "
            "use 'all', 'none', or a set of special-token strings"
        )
    allowed = set(allowed_special)
    unknown = allowed - set(special_tokens)
    if unknown:
        raise ValueError(
            f"allowed_special names {sorted(unknown)!r}, which are not special tokens of this "
            f"tokenizer; its special tokens are {sorted(special_tokens)!r}"
        )
    return allowed


def split_special(text: str, allowed: set[str]) -> list[tuple[str, bool]]:
    """Cut ``text`` around occurrences of the ``allowed`` special tokens.

    Returns ``(piece, is_special)`` pairs whose pieces concatenate to ``text``.
    At each position the longest special token wins, so ``<|a|><|ab|>`` style
    overlaps resolve the same way as Hugging Face ``tokenizers``.
    """
    if not allowed or not text:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _special_regex(frozenset(allowed)).finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


@functools.lru_cache(maxsize=64)
def _special_regex(allowed: frozenset[str]) -> re.Pattern[str]:
    # Longest first: Python's re takes the first alternative that matches.
    return re.compile("|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True)))


def check_special_tokens(special_tokens: dict[str, int]) -> None:
    """Validate a special-token table: non-empty strings, distinct ids, no clash."""
    for tok, idx in special_tokens.items():
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"special token {tok!r} must be a non-empty string")
        if not isinstance(idx, int) or idx < 0:
            raise ValueError(f"special token {tok!r} has id {idx!r}; ids must be ints >= 0")
    if len(set(special_tokens.values())) != len(special_tokens):
        raise ValueError(f"special tokens share ids: {special_tokens!r}; give each its own id")


def hf_added_tokens(special_tokens: dict[str, int]) -> list[dict]:
    """The ``added_tokens`` list of a Hugging Face tokenizer.json for our special tokens."""
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
    return [{"id": i, "content": s, **flags}
            for s, i in sorted(special_tokens.items(), key=lambda kv: kv[1])]
