"""Small trained models shipped with gptscope, so no lesson waits for training.

Each is an ordinary model folder (config.json, model.safetensors, tokenizer.json) made by
one of the trainer's presets with a fixed seed, plus ``recipe.json``: the preset, the seed,
the one command that remakes it, and what it was measured to do when it was made.

    >>> import gptscope as gs
    >>> model = gs.load("induction-2l")      # a zoo name works wherever a folder does
    >>> gs.zoo.recipe("induction-2l")["command"]
    'gptscope train --preset induction-2l --seed 1337 --threads 1 --out induction-2l'

A local folder of the same name wins over the zoo, so ``gs.load("stories")`` loads
``./stories`` when it exists. ``scripts/build_zoo.py`` remakes and re-measures them.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

RECIPE = "recipe.json"


def _root() -> Path:
    return Path(str(resources.files("gptscope.zoo").joinpath("models")))


def names() -> list[str]:
    """The shipped models' names."""
    root = _root()
    return sorted(p.name for p in root.iterdir() if (p / RECIPE).is_file())


def path(name: str) -> Path:
    """The folder of the shipped model ``name`` (a ValueError naming the others if none)."""
    folder = _root() / name
    if not (folder / RECIPE).is_file():
        raise ValueError(f"no shipped model {name!r}; the zoo has {', '.join(names())} "
                         "(gs.zoo.names())")
    return folder


def recipe(name: str) -> dict[str, Any]:
    """How ``name`` was made and what it was measured to do: preset, seed, command,
    measured numbers, the torch version and date it was trained with."""
    return json.loads((path(name) / RECIPE).read_text("utf-8"))


def resolve(name_or_path: str | Path) -> Path:
    """A folder for ``gs.load``: the path itself if it exists, else the shipped model of
    that name, else the path unchanged (so the caller's own error names it)."""
    given = Path(name_or_path)
    if given.exists() or str(name_or_path) not in names():
        return given
    return path(str(name_or_path))


__all__ = ["names", "path", "recipe", "resolve"]
