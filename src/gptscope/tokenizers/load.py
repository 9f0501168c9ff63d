"""``load_tokenizer``: open any tokenizer file gptscope understands."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Tokenizer, tokenizer_from_file
from .bpe import BPETokenizer
from .char import CharTokenizer
from .wordpiece import WordPieceTokenizer


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """Pick the class from the dict's shape: ``{"type": "char"}`` or a
    Hugging Face ``tokenizer.json`` dict (``{"model": {"type": "BPE"}}``)."""
    if not isinstance(data, dict):
        raise ValueError("a tokenizer description must be a JSON object")
    if data.get("type") == "char":
        return CharTokenizer.from_dict(data)
    if "model" in data:
        if isinstance(data["model"], dict) and data["model"].get("type") == "WordPiece":
            return WordPieceTokenizer.from_dict(data)
        return BPETokenizer.from_dict(data)
    raise ValueError(
        f"unknown tokenizer description (keys {sorted(data)[:6]!r}); expected gptscope's "
        "{'type': 'char', ...} or a Hugging Face tokenizer.json (BPE or WordPiece model)"
    )


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Open ``path``: a ``tokenizer.json`` file, a folder holding one, a folder
    with GPT-2's ``vocab.json`` + ``merges.txt``, or BERT's ``vocab.txt`` (file or
    folder). Returns the matching class."""
    p = Path(path)
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            p = p / "tokenizer.json"
        elif (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return BPETokenizer.from_hf(p)
        elif (p / "vocab.txt").is_file():
            return WordPieceTokenizer.from_vocab_txt(p / "vocab.txt")
        else:
            raise ValueError(
                f"{p} holds no tokenizer.json, vocab.json + merges.txt, or vocab.txt; "
                "save a tokenizer there first (tok.save(folder))"
            )
    if not p.is_file():
        raise ValueError(f"tokenizer file {p} does not exist")
    if p.name == "vocab.json":
        return BPETokenizer.from_hf(p)
    if p.suffix == ".txt":
        return WordPieceTokenizer.from_vocab_txt(p)
    return tokenizer_from_file(p, tokenizer_from_dict)
