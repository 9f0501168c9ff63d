"""The shipped models: each loads by name, is what its recipe's command makes, and does
what its recipe says (the numbers are recomputed here from the shipped weights)."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest

import gptscope as gs
from gptscope.train.presets import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import build_zoo  # noqa: E402

NAMES = gs.zoo.names()
MODELS = [n for n in NAMES if build_zoo.RECIPES[n].kind == "model"]


def test_every_recipe_is_shipped_and_small():
    assert NAMES == sorted(build_zoo.RECIPES)
    total = sum(f.stat().st_size for name in NAMES for f in gs.zoo.path(name).rglob("*")
                if f.is_file())
    # 12 MiB since the red-teaming lab's chatbot (stories-assistant, 3.2 MiB) shipped: it
    # takes six minutes to train, and the lab's README run has ten.
    assert total < 12 * 2**20, f"the zoo holds {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_is_its_recipes_preset(name):
    recipe = gs.zoo.recipe(name)
    model = gs.load(name)
    preset = get_preset(recipe["preset"]).model
    shipped = model.cfg.to_dict()
    # The preset leaves d_vocab (and the seed) to the data; everything else must agree, so
    # the recipe's command still remakes this model.
    for field, value in preset.to_dict().items():
        if field not in ("d_vocab", "seed", "d_head", "d_mlp", "rotary_dim"):
            assert shipped[field] == value, field
    assert recipe["command"].split() == build_zoo.command(name)
    assert f"--seed {recipe['seed']}" in recipe["command"]


@pytest.mark.parametrize("name", NAMES)
def test_recipe_numbers_are_what_the_weights_do(name):
    recipe = gs.zoo.recipe(name)
    measured = build_zoo.MEASURES[name](name)
    for key, value in recipe["measured"].items():
        # Another CPU's kernels round differently; the numbers are rounded to 4 places.
        assert math.isclose(measured[key], value, abs_tol=2e-3), (key, measured[key], value)


def test_induction_model_has_its_heads():
    measured = build_zoo.MEASURES["induction-2l"]("induction-2l")
    assert measured["best_layer1_induction_score"] > 0.8
    assert measured["best_layer0_previous_token_score"] > 0.6
    assert measured["held_out_token_accuracy"] > 0.9


def test_stories_model_knows_its_corpus():
    model = gs.load("stories")
    assert model.tokenizer is not None
    # A character model that has learned the stories' grammar; ln(vocab) is chance.
    loss = build_zoo.measure_stories(model)["held_out_loss_per_char"]
    assert loss < 0.6 < math.log(model.cfg.d_vocab)


def test_a_local_folder_wins_and_an_unknown_name_says_what_exists(tmp_path, monkeypatch):
    model = gs.load("induction-2l")
    gs.save(model, tmp_path / "stories")
    monkeypatch.chdir(tmp_path)
    assert gs.load("stories").cfg == model.cfg  # ./stories, not the shipped stories model
    with pytest.raises(ValueError, match="induction-2l"):
        gs.load("no-such-model")
    with pytest.raises(ValueError, match="no shipped model 'nope'.*stories"):
        gs.zoo.path("nope")


def test_shipped_models_carry_the_configs_their_command_writes():
    # train_config.json ships so that commands reading a run's data work on a zoo name.
    from gptscope.cli import build_parser
    from gptscope.cli.train import build_configs
    from gptscope.train.config import TrainConfig

    for name in MODELS:
        args = build_parser().parse_args(build_zoo.command(name)[1:])
        _, expected = build_configs(args)
        shipped = TrainConfig.from_json(gs.zoo.path(name) / "train_config.json")
        # whether a progress bar was drawn (--no-progress) changes nothing trained
        assert dataclasses.replace(shipped, progress=expected.progress) == expected


def test_grokking_model_memorised_first_then_generalised():
    measured = build_zoo.MEASURES["modadd-grokked"]("modadd-grokked")
    assert measured["step_500_train_exact_match"] == 1.0
    assert measured["step_500_test_exact_match"] < 0.6  # memorised, not yet general
    assert measured["final_test_exact_match"] > 0.95


def test_stories_sae_loads_by_name_and_reconstructs():
    from gptscope.sae.base import load_sae

    sae = load_sae("stories-sae")
    assert sae.cfg.d_in == gs.load("stories").cfg.d_model
    assert build_zoo.MEASURES["stories-sae"]("stories-sae")["variance_explained"] > 0.9
    recipe = gs.zoo.recipe("stories-sae")
    assert recipe["command"].split() == build_zoo.command("stories-sae")


def test_a_run_reading_command_accepts_a_zoo_name(tmp_path, monkeypatch):
    from gptscope.train.runs import open_run, run_token_batches

    monkeypatch.chdir(tmp_path)  # no ./stories here: the name means the shipped model
    model, weights = open_run("stories")
    batches = run_token_batches("stories", model, 2, batch_size=3)
    assert [b.shape[0] for b in batches] == [3, 3]
    assert weights.folder == gs.zoo.path("stories")
