r"""The issue's SAE acceptance, small: an SAE on the MLP output of a 1-layer char model trained
here on the stories corpus recovers >= 80% of the CE loss with L0 <= 30 and <= 10% dead
features.

The full-size version (1-layer, 128 wide; about 1 CPU-minute to train, 1-1.5 CPU-minutes per
SAE; run folder RUN)::

    gptscope train --preset stories --n-layers 1 --max-steps 1500 --threads 1 --out RUN
    gptscope sae train RUN --hook blocks.0.hook_mlp_out --kind topk --k 16 --expansion 8 \
        --steps 2000
    gptscope sae train RUN --hook blocks.0.hook_mlp_out --kind relu --expansion 8 --steps 2000

measured: topk: ce_loss_recovered 0.998, L0 16, dead_fraction 0.042, explained_variance
0.981; relu: ce_loss_recovered 0.971, L0 8.7, dead_fraction 0.0, explained_variance 0.860.
Here the model is 64 wide and trained for 400 steps (~5 s), the SAEs for 300 steps (~1-2 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bounds import THREADS, check, seed

from gptscope.cli import main
from gptscope.sae import load_sae
from gptscope.sae.experiment import train_sae_on_run

HOOK = "blocks.0.hook_mlp_out"
pytestmark = pytest.mark.learned


@pytest.fixture(scope="module")
def stories_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 64-wide char model trained on the stories corpus for 400 steps."""
    out = tmp_path_factory.mktemp("stories") / "run"
    rc = main(["train", "--preset", "stories", "--n-layers", "1", "--d-model", "64",
               "--n-heads", "2", "--n-ctx", "64", "--max-steps", "400", "--warmup-steps", "20",
               "--lr", "3e-3", "--eval-every", "400", "--eval-steps", "2", "--log-every", "100",
               "--seed", str(seed(1337)), "--threads", str(THREADS), "--no-progress",
               "--out", str(out)])
    assert rc == 0
    return out


@pytest.mark.parametrize(
    ("kind", "expansion", "options"),
    [("topk", 2, {"k": 8}), ("relu", 4, {})],
    ids=["topk", "relu"],
)
def test_sae_on_stories_mlp_out_meets_acceptance(
    stories_run: Path, kind: str, expansion: int, options: dict
) -> None:
    _, m = train_sae_on_run(stories_run, HOOK, kind=kind, expansion=expansion, steps=300,
                            batch_size=256, lr=3e-3, token_batches=16, seed=seed(0),
                            **options)
    # zero-ablating the MLP must hurt, or "recovered" means nothing
    # measured over 60 runs: 1.25 to 1.6
    check("sae_stories.zero_ablation_harm", m["ce_zero_ablation"] - m["ce_clean"], ">", 0.5)
    # measured over 30 runs: relu 0.863 to 0.923; topk 0.963 to 0.969
    check(f"sae_stories.{kind}_ce_loss_recovered", m["ce_loss_recovered"], ">=", 0.8)
    # measured over 30 runs: relu 14.7 to 17.3; topk 8 to 8
    check(f"sae_stories.{kind}_l0", m["l0"], "<=", 30)
    # measured over 30 runs: relu 0 to 0.0391; topk 0.0156 to 0.0703
    check(f"sae_stories.{kind}_dead_fraction", m["dead_fraction"], "<=", 0.10)
    # measured over 30 runs: relu 0.858 to 0.872; topk 0.949 to 0.955
    check(f"sae_stories.{kind}_explained_variance", m["explained_variance"], ">=", 0.8)


def test_sae_train_cli_writes_sae_and_dashboard(
    stories_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sae"
    rc = main(["sae", "train", str(stories_run), "--hook", HOOK, "--kind", "topk", "--k", "4",
               "--expansion", "2", "--steps", "20", "--batch-size", "128", "--threads", "1",
               "--out", str(out)])
    assert rc == 0
    assert (out / "sae.safetensors").is_file()
    assert (out / "sae_config.json").is_file()
    page = (out / "features.html").read_text()
    assert f"SAE features at {HOOK}" in page
    assert "top activating examples" in page
    sae = load_sae(out)
    assert sae.cfg.kind == "topk" and sae.cfg.hook_name == HOOK and sae.cfg.d_sae == 128
    printed = capsys.readouterr().out
    metrics = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
    assert metrics["l0"] <= 4
    assert 0.0 <= metrics["dead_fraction"] <= 1.0
    assert "ce_loss_recovered" in metrics
    assert f"saved {out}" in printed


def test_sae_train_cli_passes_each_kinds_coefficient(
    stories_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gptscope.sae.experiment as experiment

    seen: list[dict] = []
    real = experiment.train_sae_on_run

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **{**kwargs, "steps": 2})

    monkeypatch.setattr(experiment, "train_sae_on_run", spy)
    for kind, flag, value, key in [("jumprelu", "--l0", "30", "l0_coefficient"),
                                   ("relu", "--l1", "0.25", "l1_coefficient"),
                                   ("topk", "--k", "3", "k")]:
        rc = main(["sae", "train", str(stories_run), "--hook", HOOK, "--kind", kind, flag, value,
                   "--expansion", "2", "--batch-size", "64", "--threads", "1",
                   "--out", str(tmp_path / kind)])
        assert rc == 0 and load_sae(tmp_path / kind).cfg.kind == kind
        assert seen[-1][key] == float(value) and seen[-1]["batch_size"] == 64


def test_sae_train_cli_names_a_coefficient_the_kind_lacks(
    stories_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["sae", "train", str(stories_run), "--hook", HOOK, "--kind", "jumprelu",
               "--l1", "0.5", "--steps", "2", "--out", str(tmp_path / "sae")])
    assert rc != 0
    assert "l1_coefficient does not apply to a 'jumprelu' SAE; its coefficients: " \
        "l0_coefficient" in capsys.readouterr().err
    assert not (tmp_path / "sae").exists()
