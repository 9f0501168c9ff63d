"""Byte-level BPE: the teaching helpers, training against a naive reference,
encoding/decoding, special tokens, files and errors."""

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptscope.tokenizers import (
    GPT2_PATTERN,
    BPETokenizer,
    Tokenizer,
    get_pair_counts,
    load_tokenizer,
    merge_pair,
)
from gptscope.tokenizers.bpe import bytes_to_unicode, learn_merges
from gptscope.tokenizers.pretokenize import make_splitter


def make_text(n_words: int, seed: int = 0) -> str:
    """Seeded English-ish text with punctuation, numbers, contractions and some Unicode."""
    rng = random.Random(seed)
    syllables = "th e an re in on at st er ou ch sh a o i u qu ing ed s ly ment".split()
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)]
    words += ["it's", "don't", "we'll", "café", "naïve", "日本", "😀", "42", "3.14"]
    out = []
    for i in range(n_words):
        out.append(rng.choice(words))
        if i % 11 == 10:
            out.append(rng.choice([".", ",", "!", "?", "\n", "\n\n", "  "]))
    return " ".join(out)


TEXT = make_text(6000)
TOK = BPETokenizer.train(TEXT, 400, special_tokens=["<|endoftext|>", "<pad>"])


# ------------------------------------------------------------------ teaching helpers


def test_merge_pair_examples() -> None:
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([5, 5, 5], (5, 5), 9) == [9, 5]  # left to right, no overlap
    assert merge_pair([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge_pair([1], (1, 2), 9) == [1]
    assert merge_pair([], (1, 2), 9) == []


def test_get_pair_counts() -> None:
    assert get_pair_counts([1, 2, 1, 2]) == {(1, 2): 2, (2, 1): 1}
    total = get_pair_counts([1, 2])
    get_pair_counts([1, 2, 3], total)
    assert total == {(1, 2): 2, (2, 3): 1}
    assert get_pair_counts([7]) == {}


def test_bytes_to_unicode_matches_gpt2_and_tokenizers() -> None:
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    gpt2 = pytest.importorskip("transformers.models.gpt2.tokenization_gpt2")
    if hasattr(gpt2, "bytes_to_unicode"):
        assert table == gpt2.bytes_to_unicode()
    tokenizers = pytest.importorskip("tokenizers")
    assert set(table.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())


# ------------------------------------------------------------------ training


def naive_merges(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Textbook BPE: recount every pair after every merge (slow but obviously right).

    Ties go to the smallest pair, the rule BPETokenizer documents."""
    words = Counter(make_splitter(GPT2_PATTERN)(text))
    seqs = {w: tuple(w.encode("utf-8")) for w in words}
    merges = []
    for k in range(num_merges):
        counts: Counter = Counter()
        for w, f in words.items():
            s = seqs[w]
            for i in range(len(s) - 1):
                counts[s[i], s[i + 1]] += f
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for w, s in seqs.items():
            new, i = [], 0
            while i < len(s):
                if s[i : i + 2] == best:
                    new.append(256 + k)
                    i += 2
                else:
                    new.append(s[i])
                    i += 1
            seqs[w] = tuple(new)
    return merges


def test_training_matches_naive_reference() -> None:
    text = make_text(1500, seed=3)
    tok = BPETokenizer.train(text, 256 + 150)
    assert tok.merges == naive_merges(text, 150)
    assert tok.vocab_size == 256 + 150


def test_learn_merges_stops_when_pairs_run_out() -> None:
    words = [[1, 2, 3]]
    assert learn_merges(words, [5], 10) == [(1, 2), (256, 3)]
    assert words == [[257]]


def test_training_layout_and_specials() -> None:
    assert TOK.vocab_size == 400
    assert TOK.special_tokens == {"<|endoftext|>": 398, "<pad>": 399}
    assert TOK.eos_token_id == 398
    assert len(TOK.merges) == 400 - 256 - 2
    # every learned token is the concatenation of its two parts
    for k, (a, b) in enumerate(TOK.merges):
        assert TOK.vocab[256 + k] == TOK.vocab[a] + TOK.vocab[b]
    # special strings inside the training text are not learned from
    tok = BPETokenizer.train("<|endoftext|>" * 50 + "ab ab", 259, special_tokens=["<|endoftext|>"])
    learned = {tok.vocab[i] for i in range(256, 256 + len(tok.merges))}
    assert all(b"|" not in t and b"<" not in t for t in learned)


def test_too_few_merges_warns() -> None:
    with pytest.warns(UserWarning, match="merges"):
        tok = BPETokenizer.train("abab", 1000)
    assert tok.vocab_size < 1000


# ------------------------------------------------------------------ encode / decode


def test_encoding_compresses_and_roundtrips() -> None:
    ids = TOK.encode(TEXT)
    assert len(ids) < 0.6 * len(TEXT.encode("utf-8"))
    assert max(ids) < TOK.vocab_size
    assert TOK.decode(ids) == TEXT
    assert isinstance(TOK, Tokenizer)


def test_encoding_replays_merges_by_rank() -> None:
    # Hand-made vocab: merges "a"+"b" (rank 0), then "b"+"c" (rank 1).
    vocab = {b: bytes([b]) for b in range(256)}
    vocab[256], vocab[257], vocab[258] = b"ab", b"bc", b"abc"
    tok = BPETokenizer(vocab, [(97, 98), (98, 99), (256, 99)])
    assert tok.encode("abc") == [258]  # ab first, then ab+c
    assert tok.encode("bcab") == [257, 256]
    tok2 = BPETokenizer(vocab, [(98, 99), (97, 98)])
    assert tok2.encode("abc") == [97, 257]  # bc has the better rank now


def test_special_tokens_allowed_modes() -> None:
    text = "hi<|endoftext|>there<pad>"
    eot, pad = 398, 399
    all_ids = TOK.encode(text)
    assert all_ids == TOK.encode("hi") + [eot] + TOK.encode("there") + [pad]
    none_ids = TOK.encode(text, allowed_special="none")
    assert eot not in none_ids and pad not in none_ids
    assert TOK.decode(none_ids) == text
    some = TOK.encode(text, allowed_special={"<pad>"})
    assert eot not in some and some[-1] == pad
    assert TOK.decode(all_ids) == text
    with pytest.raises(ValueError, match="not special tokens"):
        TOK.encode(text, allowed_special={"<nope>"})


def test_decode_handles_split_multibyte_characters() -> None:
    ids = TOK.encode("é😀")  # tokens whose bytes may split characters
    raw = "é😀".encode()
    assert b"".join(TOK.vocab[i] for i in ids) == raw
    per_byte = list(raw)  # byte ids 0..255 are the bytes themselves
    assert TOK.decode(per_byte) == "é😀"
    assert TOK.decode(per_byte[:-1]) == "é\ufffd"  # incomplete char only at the end
    with pytest.raises(ValueError, match="not in this tokenizer"):
        TOK.decode([TOK.vocab_size])


def test_surrogates_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        TOK.encode("bad \udc80")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_roundtrip_property(s: str) -> None:
    assert TOK.decode(TOK.encode(s)) == s
    assert TOK.decode(TOK.encode(s, allowed_special="none")) == s


# ------------------------------------------------------------------ files and errors


def test_save_load_roundtrip(tmp_path) -> None:
    path = TOK.save(tmp_path / "tok")
    assert path.name == "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["model"]["type"] == "BPE" and data["pre_tokenizer"]["type"] == "ByteLevel"
    again = load_tokenizer(path)
    assert isinstance(again, BPETokenizer)
    assert again.merges == TOK.merges and again.special_tokens == TOK.special_tokens
    assert again.encode(TEXT[:3000]) == TOK.encode(TEXT[:3000])
    assert again.eos_token_id == TOK.eos_token_id
    assert BPETokenizer.from_dict(TOK.to_dict()).vocab == TOK.vocab
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]


def test_custom_pattern_roundtrips_through_file(tmp_path) -> None:
    tok = BPETokenizer.train(TEXT[:5000], 300, pattern=r"\w+|\s+|[^\w\s]+")
    again = load_tokenizer(tok.save(tmp_path))
    assert again.pattern == tok.pattern
    assert again.encode(TEXT[:2000]) == tok.encode(TEXT[:2000])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="vocab_size >= 258"):
        BPETokenizer.train("abc", 257, special_tokens=["<a>", "<b>"])
    with pytest.raises(ValueError, match="all 256 single bytes"):
        BPETokenizer({0: b"a"}, [])
    vocab = {b: bytes([b]) for b in range(256)}
    with pytest.raises(ValueError, match="not in the vocab"):
        BPETokenizer(vocab, [(97, 98)])
    with pytest.raises(ValueError, match="reuse ids"):
        BPETokenizer(vocab, [], special_tokens={"<s>": 5})
    with pytest.raises(ValueError, match="eos_token"):
        BPETokenizer(vocab, [], special_tokens={"<s>": 256}, eos_token="</s>")


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "x.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"type": "mystery"}', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer(tmp_path / "y.json")


def test_works_without_regex_module(monkeypatch) -> None:
    import gptscope.tokenizers.pretokenize as pretokenize

    sample = TEXT[:3000] + " 日本語 😀  \n\n x'll"
    merges_with_regex = BPETokenizer.train(TEXT[:3000], 300).merges
    monkeypatch.setattr(pretokenize, "_regex", None)
    tok = BPETokenizer.from_dict(TOK.to_dict())
    assert tok._split is pretokenize.split_gpt2  # really the fallback
    assert tok.encode(sample) == TOK.encode(sample)
    assert BPETokenizer.train(TEXT[:3000], 300).merges == merges_with_regex
    with pytest.raises(ValueError, match="install the 'regex' package"):
        BPETokenizer.train("abc", 260, pattern=r"\p{L}+")


def test_show_progress_reports_to_stderr(capsys) -> None:
    BPETokenizer.train(TEXT[:2000], 276, show_progress=True)
    captured = capsys.readouterr()
    assert "20/20 merges" in captured.err and captured.out == ""


def test_decode_accepts_arrays_and_tensors() -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    ids = TOK.encode("hello there")
    assert TOK.decode(np.array(ids)) == TOK.decode(torch.tensor(ids)) == "hello there"


@pytest.mark.parametrize("content, why", [
    (b"\x89PNG\r\n\x1a\n\x00\xff", r"is not UTF-8 text \(byte 0x89 at offset 0\)"),
    (b"[1, 2, 3]", r"holds a JSON list, not an object"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
     b'"pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 1}]}',
     r"does not have the structure of a tokenizer.json \(KeyError"),
])
def test_bad_tokenizer_files_name_the_file(tmp_path, content, why) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    for opener in (load_tokenizer, BPETokenizer.from_hf):
        with pytest.raises(ValueError, match=re.escape(str(path)) + " " + why):
            opener(path)


def test_bad_vocab_and_merges_name_the_file(tmp_path) -> None:
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 1, "ab": 2}', encoding="utf-8")
    (tmp_path / "merges.txt").write_bytes(b"#version: 0.2\na b\n\xc3(\n")
    with pytest.raises(ValueError, match=r"merges\.txt is not UTF-8 text \(byte 0xc3 at "
                                         r"offset 18\)"):
        BPETokenizer.from_hf(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    (tmp_path / "vocab.json").write_text('{"a": "zero"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.json must map each token to an integer id"):
        BPETokenizer.from_hf(tmp_path)
