"""The report section of a tuned run (``init_from`` set): what tuning changed inside the
model, measured against the base run on the same inputs (`gptscope.align.inside`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gptscope.align.inside import (
    POINT_HEADER,
    AlignmentDiff,
    base_of,
    compare_models,
    is_stories_run,
)
from gptscope.viz import BarChart, LineChart, Report

HEADING = "What tuning changed"
X_LABEL = "residual stream after k blocks (0 = embeddings)"


def add_tuning_section(report: Report, run: str | Path, model: Any) -> AlignmentDiff | None:
    """For a run that started from another (``train_config.json`` ``init_from``): compare
    ``model`` (the run's weights) with the base run's. Says why when it cannot; None then,
    and for runs without a base (no section at all)."""
    from gptscope.train.runs import open_run

    base_run = base_of(run)
    if base_run is None:
        return None
    report.add_heading(HEADING)
    if not base_run.is_dir():
        report.add_text(f"This run started from `{base_run}` (`init_from`), which is not there "
                        "any more, so it cannot be compared with its base.")
        return None
    try:
        base, weights = open_run(base_run)
        stories = is_stories_run(base_run) and getattr(base, "tokenizer", None) is not None
        diff = compare_models(base, model, sentiment=stories)
    except ValueError as e:
        report.add_text(f"This run cannot be compared with its base `{base_run}`: {e}")
        return None
    report.add_text(f"Base: `{weights.describe()}`. Both models read the same inputs.")
    add_alignment_diff(report, diff)
    if not stories:
        report.add_text("The base did not train on the stories corpus, so the sentiment "
                        "measures (probe, logit lens, steering vector) are left out.")
    return diff


def add_alignment_diff(report: Report, diff: AlignmentDiff) -> None:
    """Charts of an `AlignmentDiff`: weight changes by component and, with the sentiment
    measures, probe accuracy, logit-lens sentiment and the steering-vector cosine per point
    along the residual stream, then a table of every number."""
    report.add(BarChart(list(diff.weight_change), list(diff.weight_change.values()),
                        title="relative weight change by component",
                        x_label="||W_tuned - W_base|| / ||W_base||"),
               caption="every parameter of a component at once; with a grown vocabulary only "
                       "the old ids' rows. Per block: " + ", ".join(
                           f"L{i} {v:.3g}" for i, v in enumerate(diff.block_change)))
    if not diff.sentiment:
        return
    xs = list(range(len(diff.labels)))
    flat = lambda v: (xs, [v] * len(xs))  # noqa: E731
    report.add(LineChart({"base": (xs, diff.probe_base), "tuned": (xs, diff.probe_tuned),
                          "majority class": flat(diff.probe_chance)}, X_LABEL,
                         "held-out accuracy", title="sentiment probe along the residual stream"),
               caption=f"a linear probe per point, the same recipe and split for both, on "
                       f"{diff.n_probe_examples} tokens of held-out stories (each token after "
                       "a sentence's first sentiment word, labelled with that sentence's "
                       "sentiment): where the sentiment is readable, and whether it moved")
    report.add(LineChart({"base": (xs, diff.lens_base), "tuned": (xs, diff.lens_tuned)},
                         X_LABEL, "positive - negative (nats)",
                         title="logit-lens sentiment at the sentiment slot"),
               caption=f"logsumexp of the positive words' first-token logits minus the "
                       f"negative words', each point read through ln_final and the "
                       f"unembedding, at the last position of {diff.n_prompts} neutral "
                       "prompts that end before the verb or the adjective; higher leans "
                       "positive")
    _add_cosine(report, diff, xs)
    report.add_table(diff.point_rows(), list(POINT_HEADER))


def _add_cosine(report: Report, diff: AlignmentDiff, xs: list[int]) -> None:
    if all(math.isnan(c) for c in diff.cosine):
        report.add_text("On the neutral prompts the tuned model's residual stream equals the "
                        "base's at every point: there is no change, so no direction to "
                        "compare with the sentiment steering vector (cosine undefined).")
        return
    series = {"cos(tuning's change, sentiment vector)": (xs, diff.cosine),
              "|cos| with a random direction (expected)": (xs, [diff.random_cos] * len(xs))}
    if not all(math.isnan(c) for c in diff.activation_cos):
        series["|cos| with a random activation difference"] = (xs, diff.activation_cos)
    report.add(LineChart(series, X_LABEL, "cosine",
                         title="is the tuning a learned steering vector?"),
               caption="the tuned minus the base residual stream, averaged over the neutral "
                       "prompts and their positions, against the base's sentiment steering "
                       "vector (positive minus negative contrast pairs) at the same point; "
                       "1 would be exactly adding that vector. The references are the mean "
                       "|cos| of a random direction in d_model dimensions and of the "
                       "difference of two random base activations there")
