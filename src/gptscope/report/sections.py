"""Report sections: each reads a model (and maybe its metrics) and adds figures to a Report."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gptscope import interp
from gptscope.model.hooks import act_name
from gptscope.viz import AttentionPatterns, BarChart, Heatmap, LineChart, LogitLensTable, Report


def token_strings(model: Any, tokens: Tensor) -> list[str]:
    """Readable labels for a 1-D token sequence (the tokenizer's pieces, else the ids)."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return [str(int(t)) for t in tokens]
    return [tok.decode([int(t)]) for t in tokens]


def loss_series(records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Every finite numeric field whose name ends in "loss", against the step."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.endswith("loss") and isinstance(value, (int, float)) and math.isfinite(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(r["step"]))
                ys.append(float(value))
    return series


def steepest_drop(xs: list[float], ys: list[float]) -> float | None:
    """The step where the curve falls fastest between evaluations (the induction bump)."""
    if len(xs) < 3:
        return None
    drops = [(ys[i] - ys[i + 1]) / max(xs[i + 1] - xs[i], 1e-9) for i in range(len(xs) - 1)]
    best = max(range(len(drops)), key=drops.__getitem__)
    return (xs[best] + xs[best + 1]) / 2


def add_loss_curves(report: Report, records: list[dict], title: str,
                    bump_key: str | None = None) -> float | None:
    """Loss curves; with ``bump_key`` the steepest drop of that curve is marked."""
    series = loss_series(records)
    if not series:
        return None
    chart = LineChart(series, x_label="step", y_label="loss (nats)", title=title)
    bump = None
    if bump_key and bump_key in series:
        bump = steepest_drop(*series[bump_key])
        if bump is not None:
            chart.annotate(bump, "induction bump")
    report.add(chart)
    return bump


ACCURACY_SUFFIXES = ("_accuracy", "_exact_match")


def accuracy_series(records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Every finite numeric field ending in "_accuracy" or "_exact_match", against the step."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        for key, value in r.items():
            if (key.endswith(ACCURACY_SUFFIXES) and isinstance(value, (int, float))
                    and not isinstance(value, bool) and math.isfinite(value) and "step" in r):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(r["step"]))
                ys.append(float(value))
    return series


def first_crossing(xs: list[float], ys: list[float], threshold: float) -> float | None:
    """The first step where the curve exceeds ``threshold`` (None if it never does)."""
    for x, y in zip(xs, ys, strict=True):
        if y > threshold:
            return x
    return None


def generalisation_step(series: dict[str, tuple[list[float], list[float]]],
                        threshold: float = 0.9) -> tuple[str, float, float | None] | None:
    """``(held-out key, step it first exceeds threshold, step train first did)`` or None.

    The held-out curve is ``val_exact_match`` (else ``val_token_accuracy``, else any
    ``val_*`` / ``test_*`` one); its train twin is the same name with ``train_``. Grokking
    shows as a first held-out step long after the train one.
    """
    held = [k for k in ("val_exact_match", "val_token_accuracy") if k in series]
    held += sorted(k for k in series if k.startswith(("val_", "test_")) and k not in held)
    if not held:
        return None
    key = held[0]
    step = first_crossing(*series[key], threshold)
    if step is None:
        return None
    twin = "train_" + key.split("_", 1)[1]
    train_step = first_crossing(*series[twin], threshold) if twin in series else None
    return key, step, train_step


def add_accuracy_curves(report: Report, records: list[dict], title: str = "accuracy",
                        threshold: float = 0.9) -> float | None:
    """Accuracy / exact-match curves (metrics ending in "_accuracy" or "_exact_match").

    Marks the first step where the held-out metric exceeds ``threshold`` (and where the
    train one did, when that was earlier): the gap between the two is delayed
    generalisation (grokking). Returns the held-out step, or None.
    """
    series = accuracy_series(records)
    for key in [k for k in series if k.endswith("_token_accuracy")]:
        twin = key.removesuffix("_token_accuracy") + "_exact_match"
        if twin in series and series[twin] == series[key]:
            del series[key]  # one-token answers: the same curve twice
    if not series:
        return None
    chart = LineChart(series, x_label="step", y_label="accuracy", title=title)
    found = generalisation_step(series, threshold)
    if found is None:
        report.add(chart)
        return None
    key, step, train_step = found
    if train_step is not None and train_step < step:
        chart.annotate(train_step, f"train > {threshold:g}")
    chart.annotate(step, f"{key.split('_', 1)[0]} > {threshold:g}")
    caption = f"{key} first exceeds {threshold:g} at step {step:g}"
    if train_step is not None and train_step < step:
        caption += (f", {step - train_step:g} steps after the train curve did at step "
                    f"{train_step:g}")
    report.add(chart, caption=caption)
    return step


def add_head_scores(report: Report, model: Any, tokens: Tensor | None = None) -> dict[str, Tensor]:
    """Previous-token, duplicate-token and induction scores of every head, as heat maps."""
    scores = {}
    rows = [f"layer {i}" for i in range(model.cfg.n_layers)]
    cols = [f"head {h}" for h in range(model.cfg.n_heads)]
    for kind in ("previous_token", "duplicate_token", "induction"):
        scores[kind] = interp.head_scores(model, kind, tokens=tokens,
                                          seq_len=min(20, model.cfg.n_ctx // 2))
        report.add(Heatmap(scores[kind], rows, cols, title=f"{kind.replace('_', '-')} score",
                           vmin=0.0, vmax=1.0))
    return scores


def add_attention(report: Report, model: Any, tokens: Tensor, heads: list[tuple[int, int]],
                  caption: str | None = None) -> None:
    """Attention patterns of chosen (layer, head) pairs on one sequence ``[pos]``."""
    names = sorted({act_name("pattern", layer) for layer, _ in heads})
    cache = model.activations(tokens[None], names)
    patterns = torch.stack([cache[act_name("pattern", layer)][0, head]
                            for layer, head in heads])
    report.add(AttentionPatterns(patterns, token_strings(model, tokens),
                                 head_names=[f"L{layer}H{head}" for layer, head in heads]),
               caption=caption)


def add_logit_lens(report: Report, model: Any, tokens: Tensor, max_pos: int = 24) -> Any:
    """The logit lens on one sequence: top prediction after each layer at each position."""
    tokens = tokens[:max_pos]
    lens = interp.logit_lens(model, tokens[None], k=3)
    tops = lens.top_tokens[:, 0, :, 0]  # [layer, pos]
    top_strings = [[token_strings(model, row[p : p + 1])[0] for p in range(len(row))]
                   for row in tops]
    target = lens.target_probs[:, 0] if lens.target_probs is not None else None
    report.add(LogitLensTable(lens.labels, token_strings(model, tokens), top_strings,
                              lens.top_probs[:, 0, :, 0], target_probs=target))
    return lens


def add_patching(report: Report, model: Any, clean: Tensor, corrupted: Tensor, answer: int,
                 wrong: int, pos: int, caption: str) -> Tensor:
    """Activation patching of the residual stream, by layer and position."""
    with torch.no_grad():
        clean_logits, corrupted_logits = model(clean), model(corrupted)
    metric = interp.logit_diff_metric(clean_logits, corrupted_logits, answer, wrong, pos=pos)
    result = interp.activation_patching(model, clean, corrupted, metric, kind="resid_pre")
    report.add(Heatmap(result, [f"layer {i}" for i in range(result.shape[0])],
                       token_strings(model, clean[0]), title="patching: resid_pre",
                       x_label="position", y_label="layer"), caption=caption)
    return result


def add_probe_results(report: Report, results: dict[str, Any], label: str) -> None:
    """Probe accuracy per layer, beside the majority baseline and the control task."""
    names = list(results)
    rows = [[n, f"{r.accuracy:.3f}", f"{r.baseline:.3f}", f"{r.control_accuracy:.3f}",
             f"{r.selectivity:+.3f}"] for n, r in results.items()]
    report.add(BarChart(names, [results[n].accuracy for n in names],
                        title=f"probe accuracy for '{label}' by layer"))
    report.add_table(rows, ["hook", "accuracy", "majority baseline", "control task",
                            "selectivity"])
