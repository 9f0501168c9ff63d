"""WordPiece (BERT) parity with `tokenizers`' BertWordPieceTokenizer on files made here."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptscope.tokenizers import WordPieceTokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers")


def make_text(n_words: int, seed: int = 2) -> str:
    rng = random.Random(seed)
    pieces = "The of AND to in is it's don't Café naïve Über résumé ÉCOLE".split()
    pieces += ["日本語", "中文", "Ελλάδα", "Москва", "😀", "2024", "3.14", "e-mail", "(x)", "½"]
    syll = "th e an re in on at st er ou ch sh a o i u ing ed s".split()
    pieces += ["".join(rng.choices(syll, k=rng.randint(1, 4))) for _ in range(300)]
    ends = ["", "", ",", ".", "\n"]
    return " ".join(rng.choice(pieces) + rng.choice(ends) for _ in range(n_words))


TEXT = make_text(4000)
PROBES = [
    "",
    "Hello, World! It's a TEST.",
    "Café naïve ÜBER résumé ÉCOLE façade",
    "日本語と中文の文字, Ελλάδα, Москва",
    "emoji 😀 and ½ and e\u0301 combining",
    "tabs\tnew\nlines\r\n  and\u00a0nbsp\u3000ideo",
    "control\x00\x07chars\ufffd and \x1c sep",
    "a" * 150 + " supercalifragilistic unknownwordzzzq",
    "[CLS] hello [SEP] [MASK] [PAD]",
    "ΣΊΣΥΦΟΣ final sigma",
    TEXT[:3000],
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tokenizers import BertWordPieceTokenizer

    d = tmp_path_factory.mktemp("bert")
    hf = BertWordPieceTokenizer(lowercase=True)
    hf.train_from_iterator(TEXT.splitlines(), vocab_size=400, show_progress=False)
    hf.save_model(str(d))  # vocab.txt
    hf.save(str(d / "tokenizer.json"))
    return d, hf


def test_vocab_txt_parity(files) -> None:
    d, _ = files
    from tokenizers import BertWordPieceTokenizer

    theirs = BertWordPieceTokenizer(str(d / "vocab.txt"), lowercase=True)
    ours = load_tokenizer(d / "vocab.txt")
    assert isinstance(ours, WordPieceTokenizer)
    assert ours.special_tokens["[CLS]"] == theirs.token_to_id("[CLS]")
    for s in PROBES:
        assert ours.encode(s) == theirs.encode(s, add_special_tokens=False).ids, s[:60]


def test_tokenizer_json_parity_both_ways(files, tmp_path) -> None:
    d, hf = files
    ours = load_tokenizer(d / "tokenizer.json")
    assert isinstance(ours, WordPieceTokenizer)
    ours_saved = tokenizers.Tokenizer.from_file(str(ours.save(tmp_path)))
    for s in PROBES:
        expected = hf.encode(s, add_special_tokens=False).ids
        assert ours.encode(s) == expected, s[:60]
        assert ours_saved.encode(s, add_special_tokens=False).ids == expected, s[:60]


# `tokenizers` classifies marks and punctuation with old (about Unicode 8)
# tables, so characters added to Unicode since then can be split differently.
# The property draws from long-established blocks (plus odd controls/spaces).
OLD_BLOCKS = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x590, 0x5FF), (0x620, 0x6FF), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FA5),
    (0xAC00, 0xD7A3), (0x1F300, 0x1F64F),
]  # fmt: skip
assigned = st.one_of(
    *(st.characters(min_codepoint=lo, max_codepoint=hi) for lo, hi in OLD_BLOCKS),
    st.sampled_from(list("\t\n\r\x00\x0b\x1c\x85\ufffd\u200b\ue000")),
)


@settings(max_examples=200, deadline=None)
@given(st.text(assigned, max_size=40))
def test_parity_property(files, s: str) -> None:
    d, hf = files
    ours = WordPieceTokenizer.from_hf(d)
    assert ours.encode(s) == hf.encode(s, add_special_tokens=False).ids


def test_greedy_longest_match_and_decode() -> None:
    vocab = ["[UNK]", "un", "##aff", "##able", "unaff", "##a", "##ble", "a", "b"]
    tok = WordPieceTokenizer(vocab)
    assert tok.encode("unaffable") == [4, 3]  # "unaff" beats "un", then "##able"
    assert tok.encode("unaffableX") == [0]  # an uncoverable word is one [UNK]
    assert tok.decode(tok.encode("Unaffable, a b")) == "unaffable [UNK] a b"
    with pytest.raises(ValueError, match="unk_token"):
        WordPieceTokenizer(["a"])


def test_bad_wordpiece_files_name_the_file(tmp_path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[PAD]\n[UNK]\nhello\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"vocab\.txt is not UTF-8 text \(byte 0xff at "
                                         r"offset 18\)"):
        load_tokenizer(vocab)
    vocab.write_text("[PAD]\r\n[UNK]\r\nhello\r\n", encoding="utf-8")
    assert WordPieceTokenizer.from_vocab_txt(vocab).vocab == {"[PAD]": 0, "[UNK]": 1, "hello": 2}
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "WordPiece", "vocab": {}}, "normalizer": "Bert", '
                   '"pre_tokenizer": {"type": "BertPreTokenizer"}}')
    with pytest.raises(ValueError, match=r"tokenizer\.json does not have the structure"):
        WordPieceTokenizer.from_hf(bad)
