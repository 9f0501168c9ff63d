"""Reading Hugging Face tokenizer files into :class:`~.bpe.BPETokenizer` arguments.

Two layouts are understood:

* ``tokenizer.json`` from the ``tokenizers`` library, with a ``BPE`` model and
  a byte-level pre-tokenizer (``ByteLevel``, or ``Split(regex)`` followed by
  ``ByteLevel(use_regex=false)`` as in newer GPT-style models);
* GPT-2's classic ``vocab.json`` (token -> id) and ``merges.txt`` (one merge
  ``"a b"`` per line after a ``#version`` header).

Token strings in both are written with GPT-2's byte-to-character table, so
they are turned back into bytes with :func:`~.bpe.str_to_token`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptscope.utils.files import read_json_object, read_text

from .bpe import str_to_token  # bpe imports this module lazily, so no cycle
from .pretokenize import GPT2_PATTERN

SUPPORTED = "BPE with a ByteLevel pre-tokenizer (GPT-2 style)"


def _bad(what: str) -> ValueError:
    return ValueError(f"unsupported tokenizer.json: {what}; gptscope reads {SUPPORTED}")


def _parse_pre_tokenizer(pre: Any) -> tuple[str | None, bool]:
    """Return (pre-split pattern or None, add_prefix_space) for a pre_tokenizer dict."""
    if not isinstance(pre, dict):
        raise _bad("no pre_tokenizer (a byte-level BPE needs ByteLevel)")
    kind = pre.get("type")
    if kind == "ByteLevel":
        pattern = GPT2_PATTERN if pre.get("use_regex", True) else None
        return pattern, bool(pre.get("add_prefix_space", False))
    if kind == "Sequence":
        parts = pre.get("pretokenizers") or []
        if (
            len(parts) == 2
            and parts[0].get("type") == "Split"
            and parts[1].get("type") == "ByteLevel"
            and not parts[1].get("use_regex", True)
        ):
            split = parts[0]
            regex = (split.get("pattern") or {}).get("Regex")
            if regex is None or split.get("behavior") != "Isolated" or split.get("invert"):
                raise _bad(f"Split pre-tokenizer {split!r} (only Regex + Isolated is read)")
            return regex, bool(parts[1].get("add_prefix_space", False))
        if len(parts) == 1:
            return _parse_pre_tokenizer(parts[0])
        kinds = [p.get("type") for p in parts]
        raise _bad(f"pre-tokenizer Sequence {kinds!r}")
    raise _bad(f"pre-tokenizer {kind!r}")


def bpe_args_from_tokenizer_json(data: dict[str, Any]) -> dict[str, Any]:
    """Check a ``tokenizer.json`` dict and return ``BPETokenizer(**kwargs)`` arguments."""
    model = data.get("model")
    if not isinstance(model, dict):
        raise _bad("no 'model' entry")
    mtype = model.get("type")
    if mtype is None and "merges" in model:
        mtype = "BPE"  # very old files omit the type
    if mtype != "BPE":
        raise _bad(f"model type {mtype!r}")
    if data.get("normalizer") is not None:
        raise _bad(f"normalizer {data['normalizer'].get('type')!r} (only none)")
    if model.get("dropout") not in (None, 0, 0.0):
        raise _bad("BPE dropout (random merges at encode time)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise _bad(f"{key}={model[key]!r} (not used by byte-level BPE)")
    pattern, add_prefix_space = _parse_pre_tokenizer(data.get("pre_tokenizer"))

    specials = {t["content"]: int(t["id"]) for t in data.get("added_tokens") or []}
    vocab_str: dict[str, int] = model.get("vocab") or {}
    merges_raw = model.get("merges") or []
    merges_str: list[tuple[str, str]] = []
    for m in merges_raw:
        parts = m.split(" ") if isinstance(m, str) else list(m)
        if len(parts) != 2:
            raise ValueError(f"merge {m!r} in tokenizer.json is not two tokens")
        merges_str.append((parts[0], parts[1]))
    return _build_args(vocab_str, merges_str, specials, pattern, add_prefix_space) | {
        "ignore_merges": bool(model.get("ignore_merges", False))
    }


def bpe_args_from_vocab_merges(vocab_path: Path, merges_path: Path) -> dict[str, Any]:
    """Read GPT-2's ``vocab.json`` + ``merges.txt`` into ``BPETokenizer`` arguments.

    Entries of ``vocab.json`` that are longer than one byte yet made by no merge
    (GPT-2's ``<|endoftext|>``) cannot come out of BPE; they become special tokens.
    """
    if not merges_path.is_file():
        raise ValueError(f"{vocab_path} needs {merges_path.name} next to it; it is missing")
    vocab_str = read_json_object(vocab_path, "expected GPT-2's vocab.json (token -> id)")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab_str.values()):
        raise ValueError(f"{vocab_path} must map each token to an integer id; "
                         "expected GPT-2's vocab.json (token -> id)")
    merges_str: list[tuple[str, str]] = []
    text = read_text(merges_path, "expected GPT-2's merges.txt (one 'a b' merge per line)")
    for lineno, line in enumerate(text.split("\n"), 1):  # read_text made \r\n into \n
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_path}:{lineno}: expected 'a b', got {line!r}")
        merges_str.append((parts[0], parts[1]))
    made = {a + b for a, b in merges_str}
    specials = {
        t: i
        for t, i in vocab_str.items()
        if t not in made and (len(t) > 1 or str_to_token(t) is None)
    }
    return _build_args(vocab_str, merges_str, specials, GPT2_PATTERN, False)


def _build_args(
    vocab_str: dict[str, int],
    merges_str: list[tuple[str, str]],
    specials: dict[str, int],
    pattern: str | None,
    add_prefix_space: bool,
) -> dict[str, Any]:
    vocab: dict[int, bytes] = {}
    special_ids = set(specials.values())
    for tok, i in vocab_str.items():
        if tok in specials or i in special_ids:
            continue
        b = str_to_token(tok)
        # A vocab entry outside the byte alphabet can never be produced by
        # byte-level BPE; keep it decodable as its own text.
        vocab[int(i)] = b if b is not None else tok.encode("utf-8")
    merges = []
    for a, b in merges_str:
        if a not in vocab_str or b not in vocab_str:
            raise ValueError(f"merge {a!r} {b!r} uses a token missing from the vocab")
        merges.append((int(vocab_str[a]), int(vocab_str[b])))
    return {
        "vocab": vocab,
        "merges": merges,
        "special_tokens": specials,
        "pattern": pattern,
        "add_prefix_space": add_prefix_space,
    }
