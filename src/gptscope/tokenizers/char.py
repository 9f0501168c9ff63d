"""The simplest tokenizer: one id per character.

The vocabulary is the sorted set of characters seen in a training text, so
id ``i`` is simply the ``i``-th smallest character. Optional special tokens
get the ids after the characters. Good for tiny models on tiny alphabets
(e.g. arithmetic or Shakespeare); useless for text it has never seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .base import (
    AllowedSpecial,
    Tokenizer,
    as_id_list,
    check_special_tokens,
    resolve_allowed_special,
    split_special,
)


class CharTokenizer(Tokenizer):
    """Character-level tokenizer over a fixed alphabet.

    ``chars`` must be distinct single characters; the id of ``chars[i]`` is ``i``.
    ``special_tokens`` are extra strings encoded as one id each, with ids
    ``len(chars), len(chars) + 1, ...`` in the order given.
    """

    def __init__(
        self,
        chars: Iterable[str],
        special_tokens: Iterable[str] = (),
        eos_token: str | None = None,
    ) -> None:
        self.chars: list[str] = list(chars)
        for c in self.chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer chars must be single characters, got {c!r}")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer chars contain duplicates; pass each character once")
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.chars)}
        specials = list(special_tokens)
        self.special_tokens = {s: len(self.chars) + i for i, s in enumerate(specials)}
        if len(self.special_tokens) != len(specials):
            raise ValueError(f"duplicate special tokens in {specials!r}")
        check_special_tokens(self.special_tokens)
        if eos_token is not None and eos_token not in self.special_tokens:
            raise ValueError(
                f"eos_token {eos_token!r} is not among the special tokens {specials!r}; "
                "add it to special_tokens"
            )
        self.eos_token = eos_token
        # id -> string, chars first then specials
        self.itos: list[str] = self.chars + specials

    @classmethod
    def train(
        cls, text: str, special_tokens: Iterable[str] = (), eos_token: str | None = None
    ) -> CharTokenizer:
        """Build the alphabet from the distinct characters of ``text`` (sorted).

        ``text`` is read as plain characters: if it contains special-token strings,
        their characters join the alphabet too, which keeps ``allowed_special="none"``
        able to encode them as text.
        """
        if not text:
            raise ValueError("CharTokenizer.train needs a non-empty text to take characters from")
        return cls(sorted(set(text)), special_tokens=special_tokens, eos_token=eos_token)

    from_text = train

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Map each character to its id; allowed special tokens map to one id each.

        Raises ``ValueError`` for a character that is not in the alphabet.
        """
        allowed = resolve_allowed_special(self.special_tokens, allowed_special)
        ids: list[int] = []
        stoi = self.stoi
        for piece, is_special in split_special(text, allowed):
            if is_special:
                ids.append(self.special_tokens[piece])
                continue
            try:
                ids.extend([stoi[c] for c in piece])
            except KeyError as exc:
                c = exc.args[0]
                raise ValueError(
                    f"character {c!r} (U+{ord(c):04X}) is not in this CharTokenizer's alphabet: "
                    "it was built from a corpus without it; rebuild it with "
                    "CharTokenizer.train on text that contains every character you will encode"
                ) from None
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Join the strings of ``ids``; raises ``ValueError`` on an id out of range."""
        itos = self.itos
        n = len(itos)
        out = []
        for i in as_id_list(ids):
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range for vocab_size {n}")
            out.append(itos[i])
        return "".join(out)

    def _add_specials(self, ids: dict[str, int]) -> CharTokenizer:
        # Specials take ids after the characters in order, so appending keeps every id.
        return CharTokenizer(self.chars, [*self.special_tokens, *ids], self.eos_token)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "char",
            "chars": "".join(self.chars),
            "special_tokens": list(self.special_tokens),
            "eos_token": self.eos_token,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        if data.get("type") != "char":
            raise ValueError(
                f"expected a dict with type 'char', got type {data.get('type')!r}; "
                "use load_tokenizer to pick the right class"
            )
        chars = data.get("chars")
        if not isinstance(chars, str):
            raise ValueError("char tokenizer data needs 'chars' as one string of characters")
        return cls(
            chars, special_tokens=data.get("special_tokens", ()), eos_token=data.get("eos_token")
        )
