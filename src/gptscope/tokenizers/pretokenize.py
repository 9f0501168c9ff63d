"""Pre-splitting text into "words" before BPE, the way GPT-2 does it.

BPE never merges across the boundaries drawn here, so a token can never
glue the end of one word to the start of the next, or letters to digits.
GPT-2 draws the boundaries with one regular expression, :data:`GPT2_PATTERN`:

* English contractions (``'s``, ``'t``, ``'re``, ``'ve``, ``'m``, ``'ll``, ``'d``),
* a run of letters, a run of numbers, or a run of other symbols, each
  optionally preceded by *one* ordinary space (so ``" the"`` is one word),
* runs of whitespace, leaving the last space of a run for the next word.

The pattern uses ``\\p{L}`` / ``\\p{N}`` classes that Python's built-in ``re``
lacks. When the third-party ``regex`` module is installed we use it; otherwise
:func:`split_gpt2` does the same job with a small hand-written scanner, so
gptscope does not need ``regex`` at run time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

try:  # optional: faster, and supports any pattern
    import regex as _regex
except ImportError:  # pragma: no cover - exercised by the fallback tests directly
    _regex = None

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# The Unicode White_Space property: exactly what `regex` matches with \s.
# (str.isspace() differs: it also accepts U+001C..U+001F.)
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)

_LETTER, _NUMBER, _SPACE, _OTHER = 0, 1, 2, 3
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
_class_cache: dict[str, int] = {}


def _char_class(c: str) -> int:
    """Classify one character as letter (\\p{L}), number (\\p{N}), \\s, or other."""
    k = _class_cache.get(c)
    if k is None:
        if c in _WHITE_SPACE:
            k = _SPACE
        elif c.isalpha():  # same set as general category L*
            k = _LETTER
        elif unicodedata.category(c)[0] == "N":  # isnumeric() would also take CJK numerals
            k = _NUMBER
        else:
            k = _OTHER
        _class_cache[c] = k
    return k


def split_gpt2(text: str) -> list[str]:
    """Split ``text`` exactly like ``regex.findall(GPT2_PATTERN, text)``, without ``regex``.

    Pure Python, one left-to-right pass. The concatenation of the returned
    pieces is always ``text``. Agreement with ``regex`` holds for every
    character assigned in Python's Unicode database (``unicodedata``); characters
    newer than that database are treated as "other" symbols.
    """
    cls = [_char_class(c) for c in text]
    out: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "'" and i + 1 < n:
            suffix = next((s for s in _CONTRACTIONS if text.startswith(s, i + 1)), None)
            if suffix is not None:
                out.append(text[i : i + 1 + len(suffix)])
                i += 1 + len(suffix)
                continue
        # " ?X+": an optional single ASCII space, then a run of one class.
        j = i + 1 if c == " " and i + 1 < n else i
        k = cls[j]
        if k != _SPACE:
            e = j + 1
            while e < n and cls[e] == k:
                e += 1
            out.append(text[i:e])
            i = e
            continue
        # Whitespace run starting at i.
        e = i + 1
        while e < n and cls[e] == _SPACE:
            e += 1
        if e < n and e - i >= 2:
            # `\s+(?!\S)` backs off one character so the last space can
            # prefix the next word.
            e -= 1
        out.append(text[i:e])
        i = e
    return out


def make_splitter(pattern: str = GPT2_PATTERN) -> Callable[[str], list[str]]:
    """Return a function ``text -> list of words`` for ``pattern``.

    Uses ``regex`` when installed. Without it, :data:`GPT2_PATTERN` falls back
    to :func:`split_gpt2`, and other patterns to the standard ``re`` module.
    For patterns other than GPT-2's, text between matches is kept as words of
    its own (Hugging Face's "isolated" split), so no character is ever lost.
    Raises ``ValueError`` if the pattern cannot be compiled.
    """
    if _regex is not None:
        try:
            compiled = _regex.compile(pattern)
        except _regex.error as exc:
            raise ValueError(f"cannot compile the pre-split pattern {pattern!r}: {exc}") from exc
        # GPT-2's pattern matches every character, so findall loses nothing.
        return compiled.findall if pattern == GPT2_PATTERN else _isolated(compiled)
    if pattern == GPT2_PATTERN:
        return split_gpt2
    try:
        return _isolated(re.compile(pattern))
    except re.error as exc:
        raise ValueError(
            f"cannot compile the pre-split pattern {pattern!r} with Python's re module ({exc}); "
            "install the 'regex' package (pip install regex) for \\p{...} classes"
        ) from exc


def _isolated(compiled: Any) -> Callable[[str], list[str]]:
    """Split into the matches *and* the text between them (nothing is dropped),
    like Hugging Face's ``Split(pattern, behavior="isolated")``."""

    def split(text: str) -> list[str]:
        out: list[str] = []
        pos = 0
        for m in compiled.finditer(text):
            if m.start() > pos:
                out.append(text[pos : m.start()])
            if m.end() > m.start():
                out.append(m.group())
            pos = max(pos, m.end())
        if pos < len(text):
            out.append(text[pos:])
        return out

    return split
