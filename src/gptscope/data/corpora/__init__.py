"""Public-domain texts bundled with gptscope (see SOURCE.md in this folder)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shakespeare_path() -> Path:
    """Path of the bundled Shakespeare corpus (nine plays, about 1.1 MB of ASCII text)."""
    path = _HERE / "shakespeare.txt"
    if not path.is_file():
        raise ValueError(
            f"bundled corpus {path} is missing; reinstall gptscope or rebuild it with "
            f"scripts/build_shakespeare_corpus.py"
        )
    return path


def load_shakespeare() -> str:
    """The bundled Shakespeare corpus as one string, ``\\n`` line endings."""
    return shakespeare_path().read_text(encoding="ascii")
