"""CharTokenizer: ids are positions in the sorted alphabet of the training text."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptscope.tokenizers import CharTokenizer, load_tokenizer

CORPUS = "hello world\nthe quick brown fox, 12+34=46!"


def test_ids_follow_sorted_alphabet() -> None:
    tok = CharTokenizer.train(CORPUS)
    alphabet = sorted(set(CORPUS))
    assert tok.vocab_size == len(alphabet)
    assert tok.encode("hello") == [alphabet.index(c) for c in "hello"]
    assert tok.decode(tok.encode(CORPUS)) == CORPUS
    assert CharTokenizer.from_text(CORPUS).chars == tok.chars


def test_unknown_character_error_names_it() -> None:
    tok = CharTokenizer.train(CORPUS)
    with pytest.raises(ValueError, match=r"'Z'.*corpus without it"):
        tok.encode("hello Z")


def test_special_tokens_and_eos() -> None:
    text = CORPUS + "<>s"  # so that "<eos>" can also be spelled with plain characters
    tok = CharTokenizer.train(text, special_tokens=["<eos>", "<pad>"], eos_token="<eos>")
    n = len(set(text))
    assert tok.special_tokens == {"<eos>": n, "<pad>": n + 1}
    assert tok.eos_token_id == n
    assert tok.encode("hi<eos>") == tok.encode("hi") + [n]
    # "<eos>" spelled out with ordinary characters when specials are not allowed
    assert len(tok.encode("<eos>", allowed_special="none")) == 5
    assert tok.decode([n, n + 1]) == "<eos><pad>"
    assert CharTokenizer.train(CORPUS).eos_token_id is None


def test_save_load_roundtrip(tmp_path) -> None:
    tok = CharTokenizer.train(CORPUS, special_tokens=["<|endoftext|>"])
    path = tok.save(tmp_path)
    assert path == tmp_path / "tokenizer.json"
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "char"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer)
    assert again.encode(CORPUS + "<|endoftext|>") == tok.encode(CORPUS + "<|endoftext|>")
    assert again.eos_token_id == tok.eos_token_id == tok.vocab_size - 1
    assert CharTokenizer.from_dict(tok.to_dict()).chars == tok.chars


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer.train("")
    with pytest.raises(ValueError, match="duplicates"):
        CharTokenizer(["a", "a"])
    tok = CharTokenizer.train("ab")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([2])
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("ab", allowed_special="some")


@given(st.text(alphabet=sorted(set(CORPUS))))
def test_roundtrip_over_alphabet(s: str) -> None:
    tok = CharTokenizer.train(CORPUS)
    ids = tok.encode(s)
    assert len(ids) == len(s)
    assert tok.decode(ids) == s
