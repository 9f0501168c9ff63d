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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import gptscope as gs
from gptscope.train.config import TrainConfig
from gptscope.utils.atomic import write_text

ZOO = Path(__file__).resolve().parents[1] / "src" / "gptscope" / "zoo" / "models"
# train_config.json ships too, so commands that read a run's data (gptscope sae train,
# gptscope report) work on a zoo name as on the run the recipe's command makes.
FILES = ("config.json", "model.safetensors", "tokenizer.json", "train_config.json")
SAE_FILES = ("sae_config.json", "sae.safetensors")
SAE_HOOK = "blocks.2.hook_resid_pre"
GROKKING_EARLY_STEP = 500  # memorised, not yet generalised: the checkpoint shipped beside
EARLY = f"checkpoints/step_{GROKKING_EARLY_STEP:06d}"


@dataclass(frozen=True)
class Recipe:
    """How one shipped folder is made: a preset trained with a seed (kind "model"), an SAE
    trained on a shipped model's activations (kind "sae", ``preset`` naming the model), or
    a shipped model fine-tuned into an assistant (kind "sft", ``preset`` naming the base)."""

    preset: str
    seed: int
    lessons: list[str]
    shows: str
    kind: str = "model"
    options: tuple[str, ...] = ()  # more of the command line, e.g. checkpoints to keep
    also: tuple[str, ...] = ()  # files of the run shipped beside the weights


RECIPES: dict[str, Recipe] = {
    "induction-2l": Recipe("induction-2l", 1337, ["09"], "a 2-layer attention-only model "
                           "with a previous-token head in layer 0 and induction heads in "
                           "layer 1"),
    "stories": Recipe("stories", 1337, ["08", "10", "11"], "a 4-layer character model of "
                      "the generated stories corpus, whose residual stream carries their "
                      "sentiment"),
    "modadd-grokked": Recipe("modadd-cpu", 1337, ["14"], "a 1-layer model of a + b mod 59 "
                             "that memorised its training pairs, then generalised (grokked); "
                             f"its step-{GROKKING_EARLY_STEP} checkpoint, memorised only, and "
                             "the run's metrics ship beside it",
                             options=("--keep-last", "3"),
                             also=("metrics.jsonl", *(f"{EARLY}/{f}" for f in (
                                 "config.json", "model.safetensors", "state.json")))),
    "stories-assistant": Recipe("stories", 1337, ["03c"], "the stories model fine-tuned "
                                "(gptscope align sft, the default 1500 steps) to follow the "
                                "generated instructions: the chatbot the red-teaming lab "
                                "attacks", kind="sft"),
    "stories-sae": Recipe("stories", 1337, ["12"], f"a top-k SAE (k 16, 1024 features) on "
                          f"the stories model's {SAE_HOOK}", kind="sae"),
}


def command(name: str) -> list[str]:
    r = RECIPES[name]
    if r.kind == "sft":
        return ["gptscope", "align", "sft", r.preset, "--seed", str(r.seed), "--threads", "1",
                "--out", name]
    if r.kind == "sae":
        return ["gptscope", "sae", "train", r.preset, "--hook", SAE_HOOK, "--kind", "topk",
                "--seed", str(r.seed), "--threads", "1", "--out", name]
    return ["gptscope", "train", "--preset", r.preset, "--seed", str(r.seed), "--threads",
            "1", *r.options, "--out", name]


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


def measure_grokking(name: str) -> dict[str, float]:
    """Exact match on the train and test pairs of the final and the early checkpoint."""
    from gptscope.data.tasks import make_task

    spec = TrainConfig.from_json(ZOO / name / "train_config.json").data
    task = make_task(spec.task, **spec.task_kwargs)
    out = {}
    for when, folder in (("final", ZOO / name), (f"step_{GROKKING_EARLY_STEP}",
                         grokking_early_checkpoint(name))):
        model = gs.load(folder)
        for split, (tokens, _) in task.full_dataset().items():
            with torch.no_grad():
                right = model(tokens[:, :3])[:, -1].argmax(-1) == tokens[:, 3]
            out[f"{when}_{split}_exact_match"] = round(float(right.float().mean()), 4)
    return out


def grokking_early_checkpoint(name: str = "modadd-grokked") -> Path:
    """The shipped step-500 checkpoint of the grokking run (memorised, not generalised)."""
    return ZOO / name / EARLY


def measure_sae(name: str) -> dict[str, float]:
    """Reconstruction of held-out stories activations: fraction of variance explained, L0."""
    from gptscope.data.stories import stories_text
    from gptscope.sae.base import load_sae
    from gptscope.sae.metrics import explained_variance

    model, sae = gs.load(ZOO / RECIPES[name].preset), load_sae(ZOO / name)
    ids = torch.tensor(model.tokenizer.encode(stories_text(60, seed=12345)))
    n = model.cfg.n_ctx
    windows = ids[: len(ids) // n * n].reshape(-1, n)
    acts = model.activations(windows, SAE_HOOK)[SAE_HOOK].flatten(0, 1)  # [tokens, d_model]
    with torch.no_grad():
        recon = sae(acts)
        feats = sae.encode(acts)
    return {"variance_explained": round(explained_variance(acts, recon), 4),
            "l0": round(float((feats > 0).float().sum(-1).mean()), 4)}


def measure_assistant(model: Any) -> dict[str, float]:
    """The fraction of 10 held-out instructions of each kind it follows (and of all 40)."""
    from gptscope.align.sft import instruction_following

    return {f"follows_{kind}": round(v, 4)
            for kind, v in instruction_following(model, n_per_kind=10).items()}


def measure_model(measure: Any) -> Any:
    """A measure of a loaded model, as one of a zoo name."""
    return lambda name: measure(gs.load(ZOO / name))


MEASURES = {"induction-2l": measure_model(measure_induction),
            "stories": measure_model(measure_stories),
            "stories-assistant": measure_model(measure_assistant),
            "modadd-grokked": measure_grokking, "stories-sae": measure_sae}


def _ship(name: str, run: Path) -> None:
    """Copy what ``name`` ships from ``run``, the folder its command wrote."""
    recipe, out = RECIPES[name], ZOO / name
    if recipe.kind in ("model", "sft"):
        seed = TrainConfig.from_json(run / "train_config.json").seed
        if seed != recipe.seed:
            raise ValueError(f"{run} was trained with seed {seed}, the recipe says "
                             f"{recipe.seed}")
    for file in (*(SAE_FILES if recipe.kind == "sae" else FILES), *recipe.also):
        if (run / file).exists():
            (out / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / file, out / file)


def build(name: str, runs: Path | None = None) -> dict[str, Any]:
    """Train ``name`` by its command (or take ``runs/name``, a folder that command made)
    and ship its files with a freshly measured recipe."""
    with tempfile.TemporaryDirectory() as tmp:
        if runs is None:
            subprocess.run(command(name), cwd=tmp, check=True)
        _ship(name, (runs or Path(tmp)) / name)
    r = RECIPES[name]
    recipe = {"name": name, "kind": r.kind, "preset": r.preset, "seed": r.seed,
              "command": " ".join(command(name)), "shows": r.shows, "lessons": r.lessons,
              "measured": MEASURES[name](name), "torch": torch.__version__,
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
