"""Token files: a text encoded once, stored as a flat memory-mapped array of token ids.

Layout: ``NAME`` holds the ids as little-endian ``uint16`` (vocabularies under 65,536) or
``uint32``; ``NAME.json`` beside it records dtype, length, vocab_size, the tokenizer and the
source. Both are written to a temporary file and renamed into place, so a crash never leaves a
half-written file under the final name. Opening checks the data file's size against the sidecar.

The tokenizer is any object with ``encode(str) -> list[int]`` and an int ``vocab_size``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gptscope.utils.atomic import write_chunks
from gptscope.utils.files import not_utf8

FORMAT_VERSION = 1
_CHUNK_CHARS = 1 << 20  # encode about 1 MB of text at a time


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSON metadata for token file ``path`` lives (``path`` + ``.json``)."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def _chunks_of_lines(lines: Iterable[str], chunk_chars: int) -> Iterator[str]:
    """Group lines into chunks of about ``chunk_chars``, each ending at a line break."""
    buf: list[str] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= chunk_chars:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


class TokenFile:
    """A read-only, memory-mapped token array (or a contiguous view of one).

    Build one with `TokenFile.write` / `TokenFile.from_text`, reopen it with `TokenFile.open`.
    """

    def __init__(self, path: Path, tokens: np.ndarray, meta: dict[str, Any]) -> None:
        self.path = path
        self.tokens = tokens  # [length], a memmap or a view of one: never copied
        self.meta = meta

    # --- building --------------------------------------------------------------------
    @classmethod
    def write(
        cls,
        path: str | os.PathLike[str],
        tokenizer: Tokenizer,
        *,
        source: str | os.PathLike[str] | None = None,
        text: str | None = None,
        tokenizer_info: dict[str, Any] | None = None,
        chunk_chars: int = _CHUNK_CHARS,
    ) -> TokenFile:
        """Encode a text file (``source``) or a string (``text``) to ``path`` and open it.

        The text is encoded in chunks of about ``chunk_chars`` characters that end at line
        breaks, so files larger than memory stream through. A tokenizer that merges tokens
        across a line break may therefore tokenize slightly differently from encoding the
        whole text at once; character-level tokenizers are unaffected.
        tokenizer_info: extra JSON-serialisable facts about the tokenizer for the sidecar.
        """
        if (source is None) == (text is None):
            raise ValueError("pass exactly one of source= (a text file path) or text= (a string)")
        vocab_size = _checked_vocab_size(tokenizer)
        if chunk_chars < 1:
            raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
        out = Path(path)
        if not out.parent.is_dir():
            raise ValueError(f"directory {out.parent} does not exist; create it first")
        dtype = _dtype_for(vocab_size)
        encoder = _Encoder(tokenizer, vocab_size, dtype, chunk_chars)
        side = sidecar_path(out)
        # The old sidecar describes the old tokens: it goes just before the new tokens land,
        # so a crash between the two files leaves no sidecar, never a wrong one.
        drop_sidecar = functools.partial(side.unlink, missing_ok=True)
        source_desc = _write_tokens(out, encoder, source, text, drop_sidecar)
        length = encoder.length
        meta = _sidecar(dtype, length, vocab_size, tokenizer, tokenizer_info, source_desc)
        write_chunks(side, [json.dumps(meta, indent=2).encode("utf-8")])
        return cls.open(out)

    @classmethod
    def from_text(
        cls, text: str, tokenizer: Tokenizer, path: str | os.PathLike[str], **kwargs: Any
    ) -> TokenFile:
        """Shorthand for ``TokenFile.write(path, tokenizer, text=text, ...)``."""
        return cls.write(path, tokenizer, text=text, **kwargs)

    # --- reading ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TokenFile:
        """Memory-map an existing token file; ValueError if it or its sidecar is bad."""
        p = Path(path)
        side = sidecar_path(p)
        if not p.is_file():
            raise ValueError(f"token file {p} does not exist; build it with TokenFile.write")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            dtype = np.dtype(meta["dtype"]).newbyteorder("<")
            length = int(meta["length"])
            int(meta["vocab_size"])
        except FileNotFoundError:
            raise ValueError(f"token file {p} has no sidecar {side}; rebuild it") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"sidecar {side} is corrupt ({e}); rebuild {p}") from None
        if dtype.kind != "u" or length < 0:
            raise ValueError(f"sidecar {side} has bad dtype/length; rebuild {p}")
        expected = length * dtype.itemsize
        actual = p.stat().st_size
        if actual != expected:
            raise ValueError(
                f"token file {p} is {actual} bytes but its sidecar says {length} tokens of "
                f"{dtype.name} ({expected} bytes): truncated or corrupt; rebuild it"
            )
        if length == 0:
            tokens: np.ndarray = np.zeros(0, dtype=dtype)  # mmap cannot map an empty file
        else:
            tokens = np.memmap(p, dtype=dtype, mode="r", shape=(length,))
        return cls(p, tokens, meta)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r}, tokens={len(self)}, vocab_size={self.vocab_size})"

    def split(self, val_fraction: float) -> tuple[TokenFile, TokenFile]:
        """``(train, val)``: the first ``1 - val_fraction`` and the rest. Views, not copies."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
        cut = len(self) - int(round(len(self) * val_fraction))
        if cut <= 0 or cut >= len(self):
            raise ValueError(
                f"val_fraction {val_fraction} of {len(self)} tokens leaves a split empty; "
                f"use more text or a fraction nearer 0.5"
            )
        return (
            TokenFile(self.path, self.tokens[:cut], self.meta),
            TokenFile(self.path, self.tokens[cut:], self.meta),
        )

    def _check_block(self, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if len(self) < block_size + 1:
            raise ValueError(
                f"{self.path} has {len(self)} tokens here, too few for block_size {block_size} "
                f"(needs block_size + 1); lower block_size or use more text"
            )

    def get_batch(
        self, batch_size: int, block_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: ``x`` and ``y = x`` shifted by one, LongTensors ``[batch, block]``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._check_block(block_size)
        starts = torch.randint(0, len(self) - block_size, (batch_size,), generator=generator)
        rows = np.stack([self.tokens[s : s + block_size + 1] for s in starts.tolist()])
        w = torch.from_numpy(rows.astype(np.int64))
        return w[:, :-1], w[:, 1:]

    def iter_batches(
        self, batch_size: int, block_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every non-overlapping window in order, for evaluation: ``(x, y)`` ``[<=batch, block]``.

        Window i covers tokens ``i*block .. (i+1)*block`` (targets one further); the tail too
        short for a full window is skipped. The last batch may hold fewer windows.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._check_block(block_size)
        n_windows = (len(self) - 1) // block_size
        for first in range(0, n_windows, batch_size):
            idx = range(first, min(first + batch_size, n_windows))
            rows = np.stack([self.tokens[i * block_size : i * block_size + block_size + 1]
                             for i in idx])
            w = torch.from_numpy(rows.astype(np.int64))
            yield w[:, :-1], w[:, 1:]


class _Encoder:
    """Token bytes of text lines, encoded in chunks that end at line breaks; counts the
    tokens it has yielded in ``length``."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, dtype: Any, chunk_chars: int
                 ) -> None:
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.dtype, self.chunk_chars = dtype, chunk_chars
        self.length = 0

    def __call__(self, lines: Iterable[str]) -> Iterator[bytes]:
        for chunk in _chunks_of_lines(lines, self.chunk_chars):
            ids = np.asarray(self.tokenizer.encode(chunk), dtype=np.int64)
            bad = ids[(ids < 0) | (ids >= self.vocab_size)]
            if bad.size:
                raise ValueError(
                    f"tokenizer produced id {int(bad[0])} outside [0, {self.vocab_size}); "
                    f"its vocab_size or encode is wrong"
                )
            self.length += int(ids.size)
            yield ids.astype(self.dtype).tobytes()


def _write_tokens(out: Path, encoder: _Encoder, source: str | os.PathLike[str] | None,
                  text: str | None, before_replace: Any) -> str:
    """Encode ``text`` or the file ``source`` into ``out`` atomically; returns what the
    tokens came from, for the sidecar."""
    if text is not None:
        write_chunks(out, encoder(text.splitlines(keepends=True)), before_replace)
        return "<string>"
    src = Path(source)  # type: ignore[arg-type]
    if not src.is_file():
        raise ValueError(f"source {src} is not a file")
    # newline="" keeps the file's own line endings in the encoded text.
    try:
        with open(src, encoding="utf-8", newline="") as f:
            write_chunks(out, encoder(f), before_replace)
    except UnicodeDecodeError:
        # The decoder's position is within a chunk; not_utf8 finds the file offset.
        raise not_utf8(src, "token files are built from UTF-8 text") from None
    return str(src)


def _checked_vocab_size(tokenizer: Tokenizer) -> int:
    """The tokenizer's vocab_size, once it is known to encode into ids a token file holds."""
    vocab_size = int(getattr(tokenizer, "vocab_size", 0))
    if vocab_size < 1 or not callable(getattr(tokenizer, "encode", None)):
        raise ValueError(
            "tokenizer must have encode(str) -> list[int] and a positive int vocab_size"
        )
    if vocab_size > 1 << 32:
        raise ValueError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
    return vocab_size


def _sidecar(dtype: np.dtype, length: int, vocab_size: int, tokenizer: Tokenizer,
             tokenizer_info: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The JSON sidecar that describes a token file's ids."""
    tok_type = type(tokenizer)
    return {
        "format": "gptscope-tokens",
        "version": FORMAT_VERSION,
        "dtype": dtype.name,
        "byteorder": "little",
        "length": length,
        "vocab_size": vocab_size,
        "tokenizer": {
            "class": f"{tok_type.__module__}.{tok_type.__qualname__}",
            **(tokenizer_info or {}),
        },
        "source": source,
    }
