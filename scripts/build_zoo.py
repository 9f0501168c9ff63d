"""Remake the shipped models (``gptscope.zoo``): train each with its recipe's one command,
measure what it does, and write it into ``src/gptscope/zoo/models/NAME/``.

    python scripts/build_zoo.py                    # every model
    python scripts/build_zoo.py induction-2l       # one

The measurements are recomputed from the shipped weights by ``tests/zoo/test_zoo.py``, so
the recipe's numbers are what the files do, not what a run once printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import gptscope as gs
from gptscope.utils.atomic import write_text

ZOO = Path(__file__).resolve().parents[1] / "src" / "gptscope" / "zoo" / "models"
FILES = ("config.json", "model.safetensors", "tokenizer.json")

# name: (preset, seed, the lessons that start from it, what it is for)
RECIPES: dict[str, tuple[str, int, list[str], str]] = {
    "induction-2l": ("induction-2l", 1337, ["09"], "a 2-layer attention-only model with a "
                     "previous-token head in layer 0 and induction heads in layer 1"),
    "stories": ("stories", 1337, ["08", "10", "11"], "a 4-layer character model of the "
                "generated stories corpus, whose residual stream carries their sentiment"),
}


def command(name: str) -> list[str]:
    preset, seed, _, _ = RECIPES[name]
    return ["gptscope", "train", "--preset", preset, "--seed", str(seed), "--threads", "1",
            "--out", name]


def measure_induction(model: Any) -> dict[str, float]:
    """Head scores on 16 repeated random sequences, and the task's held-out accuracy."""
    from gptscope.data.tasks import InductionTask
    from gptscope.interp.heads import head_scores, repeated_tokens

    tokens = repeated_tokens(64, 20, 16, seed=0, bos=64)  # [16, 41]: BOS is token 64
    induction = head_scores(model, "induction", tokens=tokens)
    previous = head_scores(model, "previous_token", tokens=tokens)
    task = InductionTask(half_len=20, n_symbols=64, min_len=8)
    batch, mask = task.batch(256, "test", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = model(batch)[:, :-1].argmax(-1)
    correct = (predicted == batch[:, 1:])[mask[:, :-1]].float().mean()
    return {"best_layer1_induction_score": round(float(induction[1].max()), 4),
            "best_layer0_previous_token_score": round(float(previous[0].max()), 4),
            "held_out_token_accuracy": round(float(correct), 4)}


def measure_stories(model: Any) -> dict[str, float]:
    """Loss per character on 200 stories the model never saw (another seed)."""
    from gptscope.data.stories import stories_text

    ids = torch.tensor(model.tokenizer.encode(stories_text(200, seed=12345)))
    n = model.cfg.n_ctx
    windows = ids[: len(ids) // n * n].reshape(-1, n)
    with torch.no_grad():
        loss = model(windows, return_type="loss")
    return {"held_out_loss_per_char": round(float(loss), 4)}


MEASURES = {"induction-2l": measure_induction, "stories": measure_stories}


def build(name: str, runs: Path | None = None) -> dict[str, Any]:
    """Train ``name`` by its command (or take ``runs/name``, a run that command made) and
    ship its files with a freshly measured recipe."""
    with tempfile.TemporaryDirectory() as tmp:
        if runs is None:
            subprocess.run(command(name), cwd=tmp, check=True)
        run = (runs or Path(tmp)) / name
        made_with = json.loads((run / "train_config.json").read_text())
        if made_with["seed"] != RECIPES[name][1]:
            raise ValueError(f"{run} was trained with seed {made_with['seed']}, the recipe "
                             f"says {RECIPES[name][1]}")
        out = ZOO / name
        out.mkdir(parents=True, exist_ok=True)
        for file in FILES:
            if (run / file).exists():
                shutil.copyfile(run / file, out / file)
    preset, seed, lessons, shows = RECIPES[name]
    recipe = {"name": name, "preset": preset, "seed": seed, "command": " ".join(command(name)),
              "shows": shows, "lessons": lessons,
              "measured": MEASURES[name](gs.load(ZOO / name)), "torch": torch.__version__,
              "made": datetime.date.today().isoformat()}
    write_text(ZOO / name / "recipe.json", json.dumps(recipe, indent=2) + "\n")
    return recipe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"of {', '.join(RECIPES)} (default: all)")
    parser.add_argument("--runs", type=Path, help="a folder holding runs NAME/ that the "
                        "recipes' commands made, to ship instead of training again")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown {unknown}; the zoo's recipes are {', '.join(RECIPES)}")
    for name in args.names or list(RECIPES):
        print(json.dumps(build(name, args.runs), indent=2))


if __name__ == "__main__":
    sys.exit(main())
