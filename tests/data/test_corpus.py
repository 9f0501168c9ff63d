"""TokenFile: write, reopen, batch, split, detect corruption; and the bundled Shakespeare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gptscope.data import TokenFile, load_shakespeare
from gptscope.data.corpora import shakespeare_path
from gptscope.data.corpus import sidecar_path


class CharStub:
    """A minimal character tokenizer: ids in order of first appearance in ``alphabet``."""

    def __init__(self, alphabet: str) -> None:
        self.stoi = {c: i for i, c in enumerate(dict.fromkeys(alphabet))}
        self.itos = {i: c for c, i in self.stoi.items()}
        self.vocab_size = len(self.stoi)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


class BigVocabStub:
    """Ids that need 32 bits."""

    vocab_size = 70_000

    def encode(self, text: str) -> list[int]:
        return [69_999 if c == "z" else ord(c) for c in text]


TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(300))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def tok() -> CharStub:
    return CharStub(TEXT)


def test_roundtrip_from_text_and_file(tmp_path, tok) -> None:
    a = TokenFile.from_text(TEXT, tok, tmp_path / "a.bin", chunk_chars=100)
    src = tmp_path / "src.txt"
    src.write_text(TEXT, encoding="utf-8")
    b = TokenFile.write(tmp_path / "b.bin", tok, source=src, chunk_chars=77)
    for f in (a, b):
        assert len(f) == len(TEXT)
        assert f.tokens.dtype == np.dtype("<u2")
        assert tok.decode(f.tokens) == TEXT
    meta = json.loads(sidecar_path(tmp_path / "b.bin").read_text())
    assert meta["length"] == len(TEXT) and meta["dtype"] == "uint16"
    assert meta["vocab_size"] == tok.vocab_size and meta["source"] == str(src)
    assert meta["tokenizer"]["class"].endswith("CharStub")
    reopened = TokenFile.open(tmp_path / "a.bin")
    assert isinstance(reopened.tokens, np.memmap)
    assert np.array_equal(reopened.tokens, a.tokens)
    # Only the finished files remain: temporaries were renamed away.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.bin", "a.bin.json", "b.bin", "b.bin.json", "src.txt"
    ]


def test_large_vocab_uses_uint32(tmp_path) -> None:
    f = TokenFile.from_text("abz\nz", BigVocabStub(), tmp_path / "big.bin")
    assert f.tokens.dtype == np.dtype("<u4")
    assert f.tokens.tolist() == [97, 98, 69_999, 10, 69_999]


def test_get_batch_windows(tmp_path, tok) -> None:
    f = TokenFile.from_text(TEXT, tok, tmp_path / "t.bin")
    x, y = f.get_batch(8, 32, gen())
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    whole = torch.tensor(tok.encode(TEXT))
    for row in x:
        # Every window is a real stretch of the text.
        starts = (whole == row[0]).nonzero().flatten().tolist()
        assert any(torch.equal(whole[s : s + 32], row) for s in starts)
    x2, _ = f.get_batch(8, 32, gen())
    assert torch.equal(x, x2)


def test_split_is_a_view(tmp_path, tok) -> None:
    f = TokenFile.from_text(TEXT, tok, tmp_path / "t.bin")
    train, val = f.split(0.1)
    assert len(train) + len(val) == len(f)
    assert len(val) == round(0.1 * len(f))
    assert np.shares_memory(train.tokens, f.tokens) and np.shares_memory(val.tokens, f.tokens)
    assert np.array_equal(np.concatenate([train.tokens, val.tokens]), f.tokens)
    with pytest.raises(ValueError, match="val_fraction"):
        f.split(1.0)


def test_iter_batches_covers_in_order(tmp_path, tok) -> None:
    f = TokenFile.from_text(TEXT[:1000], tok, tmp_path / "t.bin")
    xs, ys = zip(*f.iter_batches(batch_size=4, block_size=64), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (999 // 64, 64)
    assert torch.equal(x.flatten(), torch.from_numpy(f.tokens[: x.numel()].astype(np.int64)))
    assert torch.equal(y.flatten()[-1:], torch.tensor([int(f.tokens[x.numel()])]))


def test_truncated_file_is_reported(tmp_path, tok) -> None:
    path = tmp_path / "t.bin"
    TokenFile.from_text(TEXT, tok, path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="t.bin.*truncated or corrupt"):
        TokenFile.open(path)


def test_bad_sidecar_is_reported(tmp_path, tok) -> None:
    path = tmp_path / "t.bin"
    TokenFile.from_text(TEXT, tok, path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ValueError, match="t.bin.json.*corrupt"):
        TokenFile.open(path)
    sidecar_path(path).unlink()
    with pytest.raises(ValueError, match="no sidecar"):
        TokenFile.open(path)
    with pytest.raises(ValueError, match="does not exist"):
        TokenFile.open(tmp_path / "missing.bin")


def test_bad_inputs(tmp_path, tok) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TokenFile.write(tmp_path / "x.bin", tok)

    class Liar(CharStub):
        def encode(self, text: str) -> list[int]:
            return [self.vocab_size] * len(text)

    with pytest.raises(ValueError, match="outside"):
        TokenFile.from_text("abc", Liar("abc"), tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()  # a failed write leaves nothing behind
    assert list(tmp_path.iterdir()) == []
    f = TokenFile.from_text("abcabc", CharStub("abc"), tmp_path / "s.bin")
    with pytest.raises(ValueError, match="too few"):
        f.get_batch(2, 6, gen())


def test_empty_text(tmp_path, tok) -> None:
    f = TokenFile.from_text("", tok, tmp_path / "e.bin")
    assert len(f) == 0 and len(TokenFile.open(tmp_path / "e.bin")) == 0


def test_bundled_shakespeare() -> None:
    text = load_shakespeare()
    assert 1_000_000 < len(text) < 5_000_000
    assert text.isascii() and "\r" not in text and "\n\n\n" not in text
    assert "gutenberg" not in text.lower() and "*** " not in text
    assert "To be, or not to be" in text
    assert shakespeare_path().name == "shakespeare.txt"


def test_rewrite_replaces_data_and_sidecar(tmp_path, tok) -> None:
    path = tmp_path / "t.bin"
    TokenFile.from_text(TEXT, tok, path)
    f = TokenFile.from_text(TEXT[:50], tok, path)
    assert len(f) == 50 and len(TokenFile.open(path)) == 50
    assert json.loads(sidecar_path(path).read_text())["length"] == 50


def test_binary_source_names_the_file_and_offset(tmp_path) -> None:
    src = tmp_path / "data.bin"
    # Past the first 1 MB chunk, so the offset must be the file's, not the decoder chunk's.
    src.write_bytes(b"ab\n" * 400_000 + b"a\xffb")
    with pytest.raises(ValueError, match=r"data\.bin is not UTF-8 text \(byte 0xff at offset "
                                         r"1200001\); token files are built from UTF-8 text"):
        TokenFile.write(tmp_path / "t.bin", CharStub("ab\n"), source=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]  # nothing half-written
