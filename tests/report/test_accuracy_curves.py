"""The run report plots accuracy curves and marks when held-out accuracy takes off."""

from __future__ import annotations

import json

import torch

from gptscope.config import ModelConfig
from gptscope.io.checkpoint import save
from gptscope.model.transformer import Transformer
from gptscope.report import sections
from gptscope.report.build import build_report

torch.set_num_threads(1)


def _records() -> list[dict]:
    # A hand-made grokking run: train accuracy saturates at step 200, test only at 700.
    records = []
    for step in range(100, 1001, 100):
        train = min(1.0, step / 200)
        test = 0.05 if step < 600 else (0.5 if step == 600 else 0.99)
        records.append({"step": step, "loss": 1.0 / step, "val_loss": 2.0,
                        "train_exact_match": train, "val_exact_match": test,
                        "train_token_accuracy": train, "val_token_accuracy": test})
        records.append({"step": step + 1, "loss": 1.0 / step, "lr": 1e-3})  # no accuracy
    return records


def test_accuracy_series_and_grokking_step() -> None:
    series = sections.accuracy_series(_records())
    assert set(series) == {"train_exact_match", "val_exact_match", "train_token_accuracy",
                           "val_token_accuracy"}
    assert len(series["val_exact_match"][0]) == 10
    assert sections.generalisation_step(series, 0.9) == ("val_exact_match", 700.0, 200.0)
    assert sections.generalisation_step({"train_accuracy": ([1.0], [1.0])}) is None


def test_report_of_a_task_run_has_the_accuracy_chart(tmp_path) -> None:
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=12, n_ctx=8,
                      act_fn="relu", normalization=None)
    save(Transformer(cfg), tmp_path)
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for r in _records():
            f.write(json.dumps(r) + "\n")
        f.write('{"step": 1001, "loss"')  # a line cut short by a killed run
    html = build_report(tmp_path).html()
    assert "accuracy" in html
    assert "val_exact_match" in html and "train_exact_match" in html
    assert "val &gt; 0.9" in html or "val > 0.9" in html
    assert "first exceeds 0.9 at step 700" in html
    assert "500 steps after the train curve" in html


def test_report_without_accuracy_metrics_has_no_accuracy_chart(tmp_path) -> None:
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=12, n_ctx=8)
    save(Transformer(cfg), tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 2.0}\n'
                                            '{"step": 20, "loss": 1.5}\n')
    html = build_report(tmp_path).html()
    assert "_exact_match" not in html


def test_identical_token_accuracy_curves_are_shown_once() -> None:
    from gptscope.viz import Report

    report = Report("r")
    records = [{"step": s, "val_exact_match": s / 10, "val_token_accuracy": s / 10}
               for s in range(1, 11)]
    assert sections.add_accuracy_curves(report, records) == 10.0
    html = report.html()
    assert "val_exact_match" in html and "val_token_accuracy" not in html
