"""The main job: `gptscope demo` trains two models, finds the circuit, writes a report that
renders in a real browser."""

import os
import shutil
from pathlib import Path

import pytest
from bounds import check, seed

from gptscope.cli import main
from gptscope.report import run_demo, write_report
from gptscope.viz import render_in_browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo") / "gptscope-demo", seed=seed(1337))


@pytest.mark.learned
def test_demo_finds_the_induction_circuit(demo):
    assert demo.induction_head[0] == 1 and demo.previous_token_head[0] == 0
    # measured over 30 runs: 0.906 to 0.924
    check("demo.induction_score", demo.induction_score, ">", 0.4)
    # measured over 30 runs: 0.818 to 0.957
    check("demo.previous_token_score", demo.previous_token_score, ">", 0.4)


@pytest.mark.learned
def test_demo_probe_reads_subject_number_beyond_the_embedding(demo):
    embed = demo.probe_accuracy["hook_embed"]
    best = max(demo.probe_accuracy.values())
    # measured over 30 runs: 0.905 to 0.963
    check("demo.best_probe_accuracy", best, ">", 0.8)
    # measured over 30 runs: 0.269 to 0.326
    check("demo.best_probe_over_embedding", best - embed, ">", 0.1)


def test_demo_report_renders_without_errors(demo, chromium, tmp_path):
    shot = tmp_path / "demo.png"
    result = render_in_browser(demo.report, screenshot=shot, window_size=(1200, 4000))
    assert result.errors == []
    assert result.rendered >= 8  # charts, heat maps, patterns, tables
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("GPTSCOPE_ARTIFACTS"):
        shutil.copy(shot, Path(os.environ["GPTSCOPE_ARTIFACTS"]) / "demo.png")
    html = demo.report.read_text()
    for section in ("induction bump", "previous-token score", "Logit lens",
                    "Activation patching", "Probing"):
        assert section in html


def test_report_command_for_a_run_folder(demo, capsys):
    run = demo.report.parent / "induction"
    assert main(["report", str(run)]) == 0
    assert "report:" in capsys.readouterr().out
    html = (run / "report.html").read_text()
    assert "induction score" in html and "loss" in html


def test_report_on_a_hugging_face_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf")
    path = write_report(tmp_path / "hf", tmp_path / "hf.html")
    assert "Heads" in path.read_text()


def test_report_refuses_a_model_object_without_out():
    with pytest.raises(ValueError, match="out="):
        write_report(object())
