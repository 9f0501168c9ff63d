"""An evaluation task, Inspect-style: samples, a solver that answers them, a scorer that
marks each answer. `run_eval` writes what happened to a folder:

- ``samples.jsonl``: one record per sample (its id, input, target, the solver's output and
  the score), so any number in the summary can be traced to the samples behind it;
- ``summary.json``: the mean score with a seeded bootstrap 95% interval, and the settings;
- ``index.html``: the same as an offline page (summary on top, every sample below).

Named `EvalTask`, not Task, because `gptscope.data.tasks.Task` already names the synthetic
training tasks that built-in evaluations are made from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptscope.evals.calibration import (
    brier_score,
    classifier_confidence,
    expected_calibration_error,
    reliability_bins,
)
from gptscope.evals.samples import Sample
from gptscope.evals.scorers import Scorer, check_score
from gptscope.evals.solvers import Solver
from gptscope.evals.stats import bootstrap_ci
from gptscope.utils.atomic import write_text
from gptscope.viz.html import escape, page


@dataclass(frozen=True)
class EvalTask:
    """``samples`` to ask, the ``solver`` that answers, the ``scorer`` that marks."""

    name: str
    samples: list[Sample]
    solver: Solver
    scorer: Scorer

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError(f"task {self.name!r} has no samples: the dataset is empty")
        bad = [i for i, s in enumerate(self.samples) if not isinstance(s, Sample)]
        if bad:
            raise ValueError(f"task {self.name!r}: sample #{bad[0]} is a "
                             f"{type(self.samples[bad[0]]).__name__}, not a Sample; build "
                             "samples with Sample(...) or read_samples(path)")


@dataclass(frozen=True)
class EvalResult:
    """Per-sample ``records`` and the ``summary`` (mean, ci_low, ci_high, n, settings)."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]


def run_eval(model: Any, task: EvalTask, out: str | Path | None = None, batch_size: int = 16,
             seed: int = 0) -> EvalResult:
    """Answer and mark every sample of ``task`` with ``model`` (in eval mode, no gradients);
    write the log folder when ``out`` is given. The scores do not depend on batch_size."""
    was_training = model.training
    model.eval()
    try:
        outputs = task.solver(model, task.samples, batch_size, seed)
    finally:
        model.train(was_training)
    records = []
    for index, (sample, output) in enumerate(zip(task.samples, outputs, strict=True)):
        name = sample.named(index)
        records.append({"id": name, "input": _plain(sample.input),
                        "target": _plain(sample.target), **output,
                        "score": check_score(task.scorer(sample, output), name)})
    mean, low, high = bootstrap_ci([r["score"] for r in records], seed=seed)
    summary = {"task": task.name, "n": len(records), "mean": mean, "ci_low": low,
               "ci_high": high, "ci": 0.95, "seed": seed, **choice_calibration(records)}
    result = EvalResult(records, summary)
    if out is not None:
        write_log(result, out)
    return result


def _choice_beliefs(records: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A multiple-choice log's choice probabilities [n, n_choices] and the right choice's
    index [n]; None unless every record has both."""
    if not all("probs" in r and r["target"] in r["choices"] for r in records):
        return None
    return (torch.tensor([r["probs"] for r in records], dtype=torch.float64),
            torch.tensor([r["choices"].index(r["target"]) for r in records]))


def choice_calibration(records: list[dict[str, Any]]) -> dict[str, float]:
    """For multiple choice with targets: how well the model's probabilities over the choices
    (softmax of their log-likelihoods) match how often its pick is right: ECE with 10
    equal-width and equal-mass bins, and the Brier score. Empty for other tasks."""
    beliefs = _choice_beliefs(records)
    if beliefs is None:
        return {}
    probs, labels = beliefs
    confidence, correct = classifier_confidence(probs, labels)
    return {"ece": expected_calibration_error(confidence, correct),
            "ece_mass": expected_calibration_error(confidence, correct, scheme="mass"),
            "brier": brier_score(probs, labels)}


def reliability_chart(records: list[dict[str, Any]], n_bins: int = 10) -> str:
    """A reliability diagram (accuracy against mean confidence per equal-width bin, beside
    the diagonal a calibrated model lies on) of a multiple-choice log, as HTML; "" when the
    records have no choice probabilities."""
    from gptscope.viz.scatter import ScatterChart

    beliefs = _choice_beliefs(records)
    if beliefs is None:
        return ""
    bins = [b for b in reliability_bins(*classifier_confidence(*beliefs), n_bins) if b.count]
    points = ([b.confidence for b in bins], [b.accuracy for b in bins],
              [f"({b.lo:.1f}, {b.hi:.1f}]: {b.count} samples" for b in bins])
    return ScatterChart({"bins": points}, {"calibrated": ([0.0, 1.0], [0.0, 1.0])},
                        x_label="confidence", y_label="accuracy",
                        title="reliability diagram").html()


def _plain(value: Any) -> Any:
    """Token-id tuples as lists, as the JSON log holds them."""
    return list(value) if isinstance(value, tuple) else value


def write_log(result: EvalResult, out: str | Path) -> Path:
    """Write samples.jsonl, summary.json and index.html into ``out`` (each atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in result.records))
    write_text(out / "summary.json", json.dumps(result.summary, indent=2) + "\n")
    write_text(out / "index.html", log_page(result))
    return out


def log_page(result: EvalResult) -> str:
    """An offline page: the summary, then a row per sample (input, target, output, score)."""
    s = result.summary
    head = (f"<h1>{escape(s['task'])}</h1><p>mean score <b>{s['mean']:.3f}</b> "
            f"(95% bootstrap interval {s['ci_low']:.3f} to {s['ci_high']:.3f}) over "
            f"{s['n']} samples, seed {s['seed']}</p>")
    rows = "".join(
        f"<tr><td>{escape(r['id'])}</td><td>{escape(r['input'])}</td>"
        f"<td>{escape(r['target'] or '')}</td><td>{escape(r['output'])}</td>"
        f"<td>{r['score']:g}</td></tr>" for r in result.records)
    if "ece" in s:
        head += (f"<p>calibration of the choice probabilities: ECE {s['ece']:.3f} "
                 f"(equal-mass bins {s['ece_mass']:.3f}), Brier {s['brier']:.3f}</p>")
    head += reliability_chart(result.records)
    table = ("<table><thead><tr><th>id</th><th>input</th><th>target</th><th>output</th>"
             f"<th>score</th></tr></thead><tbody>{rows}</tbody></table>")
    return page(f"eval: {s['task']}", head + table)
