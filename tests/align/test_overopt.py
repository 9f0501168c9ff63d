"""The over-optimisation chart: curves from a run's metrics, where the learned reward and
the exact judge part, and the page."""

from __future__ import annotations

import json

import pytest

from gptscope.align.overopt import (
    PART_GAP,
    curve_of_run,
    overoptimisation_chart,
    write_overoptimisation_page,
)


def _run(tmp_path, rows: list[tuple[float, float, float]]):
    """A run folder whose metrics have (KL, reward p, judge's score) per record."""
    run = tmp_path / "run"
    run.mkdir(parents=True)
    lines = [{"step": 10 * i, "kl_k1": kl, "reward_model_p": p, "judge_score": j,
              "judge_positive": j} for i, (kl, p, j) in enumerate(rows)]
    lines.insert(1, {"step": 5, "loss": 1.0})  # records without the measures are skipped
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def test_the_parting_point_is_the_first_of_three_gaps_in_a_row(tmp_path) -> None:
    gap = PART_GAP + 0.01
    rows = [(0.0, 0.5, 0.5), (1.0, 0.7, 0.7), (4.0, 0.7 + gap, 0.7), (9.0, 0.9, 0.9),
            (16.0, 0.9 + gap, 0.9), (25.0, 0.95 + gap, 0.95), (36.0, 0.8 + gap, 0.8)]
    curve = curve_of_run(_run(tmp_path, rows))
    assert curve.steps == [0, 10, 20, 30, 40, 50, 60]
    assert curve.sqrt_kl[:3] == [0.0, 1.0, 2.0]
    assert curve.parting == 4.0  # sqrt(16): the gap at KL 4 alone was not a parting
    assert curve.parting_side == "reward model"
    chart = overoptimisation_chart([curve])
    assert "run parts (reward model ahead)" in chart.html()
    # the judge running ahead three times in a row also parts them; mixed sides do not
    behind = curve_of_run(_run(tmp_path / "b", [(1.0, 0.5, 0.5 + gap), (4.0, 0.5, 0.5 + gap),
                                                (9.0, 0.5, 0.5 + gap)]))
    assert behind.parting == 1.0 and behind.parting_side == "judge"
    mixed = curve_of_run(_run(tmp_path / "m", [(1.0, 0.5, 0.5 + gap), (4.0, 0.5 + gap, 0.5),
                                               (9.0, 0.5, 0.5 + gap)]))
    assert mixed.parting is None and mixed.parting_side == ""


def test_curves_that_never_part_and_runs_without_measures(tmp_path) -> None:
    curve = curve_of_run(_run(tmp_path, [(0.0, 0.5, 0.5), (4.0, 0.8, 0.9)]))
    assert curve.parting is None
    page = write_overoptimisation_page([tmp_path / "run"], tmp_path / "page.html")
    assert "never" in page.read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    with pytest.raises(ValueError, match="has no records with"):
        curve_of_run(empty)
