"""Benchmark gptscope's byte-level BPE against Hugging Face `tokenizers`.

Offline: the corpus is generated here (seeded English-like text), or read from
``src/gptscope/data/corpora/*.txt`` when such files exist. Trains a vocabulary
with both libraries, measures encoding throughput, checks that `tokenizers`
gives the same ids on the file we saved, and prints medians of a few repeats.

    python benchmarks/bench_bpe.py [--mb 1.0] [--vocab-size 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gptscope.tokenizers import BPETokenizer

CORPORA = Path(__file__).resolve().parents[1] / "src" / "gptscope" / "data" / "corpora"


def generated_text(n_bytes: int, seed: int = 0) -> str:
    """English-like text: Zipf-distributed made-up words, sentences, numbers, punctuation."""
    rng = random.Random(seed)
    onsets = "b c d f g h j k l m n p r s t v w y z br cr dr fr gr pr tr bl cl fl gl pl sl "
    onsets += "sh ch th wh st sp sc qu"
    vowels = "a e i o u ea ee oo ou ai ie"
    codas = " n r s t l m nd st ng ck ll ss rt nt"
    on, vo, co = onsets.split(), vowels.split(), codas.split(" ")
    lexicon = ["the", "of", "and", "to", "a", "in", "is", "it", "that", "was", "he", "for"]
    while len(lexicon) < 20_000:
        n = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        lexicon.append("".join(rng.choice(on) + rng.choice(vo) + rng.choice(co) for _ in range(n)))
    weights = [1.0 / (rank + 2) for rank in range(len(lexicon))]
    out: list[str] = []
    size = 0
    while size < n_bytes:
        words = rng.choices(lexicon, weights, k=rng.randint(6, 24))
        words[0] = words[0].capitalize()
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2030)))
        if rng.random() < 0.1:
            words[rng.randrange(len(words))] += rng.choice(("'s", "'ll", "'t", ","))
        sentence = " ".join(words) + rng.choice((".", ".", ".", "?", "!"))
        sentence += "\n\n" if rng.random() < 0.1 else " "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n_bytes]


def corpus(n_bytes: int) -> tuple[str, str]:
    files = sorted(CORPORA.glob("*.txt")) if CORPORA.is_dir() else []
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    if len(text.encode("utf-8")) >= n_bytes:
        return text[:n_bytes], f"{len(files)} corpus file(s) in {CORPORA}"
    return generated_text(n_bytes), "generated English-like text (seeded)"


CPU: dict[str, float] = {}  # step name -> median process CPU seconds (all threads)


def median_time(fn: Callable[[], object], repeats: int, name: str) -> tuple[float, object]:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, and its last result.

    The median CPU time is kept in ``CPU``: on a busy machine wall time includes
    waiting for a core, CPU time does not (but sums over threads)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    CPU[name] = statistics.median(cpus)
    return statistics.median(walls), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=1.0, help="corpus size in MB")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    text, source = corpus(int(args.mb * 1_000_000))
    mb = len(text.encode("utf-8")) / 1e6
    print(f"corpus: {mb:.2f} MB, {source}; vocab_size {args.vocab_size}; {args.repeats} repeats")

    t_ours, ours = median_time(
        lambda: BPETokenizer.train(text, args.vocab_size), args.repeats, "gptscope train"
    )
    assert isinstance(ours, BPETokenizer)
    rows = [("gptscope train", t_ours, None)]

    # Cold cache each time: a fresh tokenizer from the same file contents.
    spec = ours.to_dict()
    t_enc, ids = median_time(
        lambda: BPETokenizer.from_dict(spec).encode(text),
        args.repeats,
        "gptscope encode (cold cache)",
    )
    t_warm, _ = median_time(lambda: ours.encode(text), args.repeats, "gptscope encode (warm cache)")
    rows += [("gptscope encode (cold cache)", t_enc, mb / t_enc)]
    rows += [("gptscope encode (warm cache)", t_warm, mb / t_warm)]

    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        Tokenizer = None  # noqa: N806
        print("tokenizers is not installed: only gptscope numbers")

    if Tokenizer is not None:

        def hf_train() -> object:
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=args.vocab_size,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            tok.train_from_iterator([text], trainer=trainer)
            return tok

        t_hf, hf = median_time(hf_train, args.repeats, "tokenizers train")
        rows.insert(1, ("tokenizers train", t_hf, None))
        with tempfile.TemporaryDirectory() as d:
            theirs = Tokenizer.from_file(str(ours.save(d)))
        t_hf_enc, hf_ids = median_time(
            lambda: theirs.encode(text).ids, args.repeats, "tokenizers encode (one string)"
        )
        lines = text.splitlines(keepends=True)
        t_hf_batch, _ = median_time(
            lambda: theirs.encode_batch(lines), args.repeats, "tokenizers encode_batch (lines)"
        )
        rows += [("tokenizers encode (one string)", t_hf_enc, mb / t_hf_enc)]
        rows += [("tokenizers encode_batch (lines)", t_hf_batch, mb / t_hf_batch)]
        print(f"same ids from tokenizers on our saved file: {hf_ids == ids}")
        print(f"tokenizers vocab learned: {hf.get_vocab_size()}; ours: {ours.vocab_size}")

    print(f"\n{'step':34} {'wall s':>8} {'MB/s':>8} {'CPU s':>8}")
    for name, t, rate in rows:
        mbs = "" if rate is None else f"{rate:.2f}"
        print(f"{name:34} {t:8.3f} {mbs:>8} {CPU[name]:8.3f}")
    if Tokenizer is not None:
        print(f"\ntrain time ratio gptscope/tokenizers: {t_ours / t_hf:.1f}x")
        print(f"encode time ratio gptscope(cold)/tokenizers(one string): {t_enc / t_hf_enc:.1f}x")
    print(f"tokens: {len(ids)} ({len(ids) / mb / 1e6:.3f} per byte)")


if __name__ == "__main__":
    main()
