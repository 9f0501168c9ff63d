"""Parity with Hugging Face `tokenizers` on files made here (no downloads).

Both directions: files written by `tokenizers` read by gptscope, and files
written by gptscope read by `tokenizers`; ids must be identical."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptscope.tokenizers import BPETokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402


def make_text(n_words: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    pieces = "the of and to in is it's don't we'll I'd you've they're café naïve über".split()
    pieces += ["日本語", "中文", "Ελλάδα", "москва", "😀", "👍🏽", "2024", "3.14", "1,000", "½"]
    syll = "th e an re in on at st er ou ch sh a o i u ing ed s".split()
    pieces += ["".join(rng.choices(syll, k=rng.randint(1, 3))) for _ in range(300)]
    out = []
    for i in range(n_words):
        out.append(rng.choice(pieces))
        if i % 9 == 8:
            out.append(rng.choice([".", ",", "!", "\n", "\n\n", "   ", "\t", "?!", "--"]))
    return " ".join(out)


TEXT = make_text(5000)

PROBES = [
    "",
    "Hello world!",
    "it's 'S ''s they'LL we're",
    "  leading, trailing  ",
    "whitespace\truns\n\n\n   \t x\r\n",
    "numbers 12345 007 3.14159 1,000,000 ½ ٣٤ Ⅻ",
    "Unicode: café naïve Ελλάδα москва 日本語 中文 한국어",
    "emoji 😀👍🏽👨‍👩‍👧🇫🇷 and combining e\u0301",
    "odd space\u00a0\u2003\u3000\u2028\x85 end",
    "controls \x00\x07\x1c\x1f",
    "code:\n    def f(x):\n        return x ** 2  # square\n",
    "<|endoftext|>between<|endoftext|><|endoftext|>",
    TEXT[:4000],
]


def hf_train(tmp_path, add_prefix_space: bool = False):
    """Train a ByteLevel BPE with `tokenizers` itself and save it in both layouts."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT.splitlines(keepends=True), trainer=trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    tok.model.save(str(tmp_path))  # vocab.json + merges.txt
    return tok


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    return d, hf_train(d)


@pytest.fixture(scope="module")
def ours_and_hf(tmp_path_factory):
    """Our trained tokenizer, and `tokenizers` opening the file we saved."""
    ours = BPETokenizer.train(TEXT, 600, special_tokens=["<|endoftext|>"])
    path = ours.save(tmp_path_factory.mktemp("ours"))
    return ours, tokenizers.Tokenizer.from_file(str(path))


def test_reads_hf_tokenizer_json(hf_dir) -> None:
    d, hf = hf_dir
    ours = load_tokenizer(d / "tokenizer.json")
    assert isinstance(ours, BPETokenizer)
    assert ours.vocab_size == hf.get_vocab_size()
    assert ours.special_tokens == {"<|endoftext|>": hf.token_to_id("<|endoftext|>")}
    assert ours.eos_token_id == hf.token_to_id("<|endoftext|>")
    assert len(ours.merges) > 300
    for s in PROBES:
        assert ours.encode(s) == hf.encode(s).ids, s[:60]
        assert ours.decode(ours.encode(s)) == s


def test_reads_both_merge_spellings(hf_dir, tmp_path) -> None:
    d, hf = hf_dir
    data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    as_pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]
    as_strings = [" ".join(m) for m in as_pairs]
    for variant in (as_pairs, as_strings):
        data["model"]["merges"] = variant
        path = tmp_path / "tokenizer.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        ours = BPETokenizer.from_hf(path)
        theirs = tokenizers.Tokenizer.from_file(str(path))
        for s in PROBES:
            assert ours.encode(s) == theirs.encode(s).ids == hf.encode(s).ids


def test_reads_vocab_json_and_merges_txt(hf_dir, tmp_path) -> None:
    d, _ = hf_dir
    assert (d / "merges.txt").read_text(encoding="utf-8").startswith("#version")
    folder = tmp_path / "gpt2-style"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((d / name).read_bytes())
    theirs = tokenizers.Tokenizer(
        models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    )
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ours = load_tokenizer(folder)
    assert ours.encode("x") == BPETokenizer.from_hf(folder / "vocab.json").encode("x")
    # <|endoftext|> is in vocab.json but made by no merge: it becomes a special token
    assert ours.eos_token_id == theirs.token_to_id("<|endoftext|>")
    for s in PROBES:
        if "<|endoftext|>" not in s:
            assert ours.encode(s) == theirs.encode(s).ids, s[:60]


def test_prefix_space_and_ignore_merges_options(tmp_path) -> None:
    hf_train(tmp_path, add_prefix_space=True)
    path = tmp_path / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for ignore in (False, True):
        data["model"]["ignore_merges"] = ignore
        path.write_text(json.dumps(data), encoding="utf-8")
        ours = BPETokenizer.from_hf(path)
        theirs = tokenizers.Tokenizer.from_file(str(path))
        assert ours.add_prefix_space and ours.ignore_merges == ignore
        for s in PROBES:
            assert ours.encode(s) == theirs.encode(s).ids, (ignore, s[:60])


def test_hf_opens_our_files(ours_and_hf) -> None:
    ours, theirs = ours_and_hf
    assert theirs.get_vocab_size() == ours.vocab_size
    assert theirs.token_to_id("<|endoftext|>") == ours.eos_token_id
    for s in PROBES:
        ids = ours.encode(s)
        assert ids == theirs.encode(s).ids, s[:60]
        assert theirs.decode(ids, skip_special_tokens=False) == s


def test_hf_opens_our_custom_pattern_file(tmp_path) -> None:
    ours = BPETokenizer.train(TEXT, 500, pattern=r" ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+")
    theirs = tokenizers.Tokenizer.from_file(str(ours.save(tmp_path)))
    for s in PROBES:
        assert ours.encode(s) == theirs.encode(s).ids, s[:60]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parity_property(ours_and_hf, s: str) -> None:
    ours, theirs = ours_and_hf
    assert ours.encode(s) == theirs.encode(s).ids


def test_unsupported_model_type_is_value_error(tmp_path) -> None:
    wp = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wp.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="'WordPiece'.*BPE"):
        BPETokenizer.from_hf(tmp_path)
    uni = tokenizers.Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0))
    uni.save(str(tmp_path / "unigram.json"))
    with pytest.raises(ValueError, match="'Unigram'.*BPE"):
        load_tokenizer(tmp_path / "unigram.json")
    nopre = tokenizers.Tokenizer(models.BPE({"a": 0}, []))
    nopre.save(str(tmp_path / "bpe.json"))
    with pytest.raises(ValueError, match="pre_tokenizer"):
        load_tokenizer(tmp_path / "bpe.json")
