"""``gptscope report RUN``: one HTML page for any run folder or Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptscope.report import alignment, sections
from gptscope.viz import Report


def sample_tokens(model: Any, n: int = 24) -> torch.Tensor:
    """A sequence to show: repeated random tokens, so induction and previous-token heads
    both have something to do. ``[2 * n // 2]``."""
    half = max(2, min(n, model.cfg.n_ctx) // 2)
    g = torch.Generator().manual_seed(0)
    first = torch.randperm(model.cfg.d_vocab, generator=g)[:half]
    return torch.cat([first, first])


def build_report(run: str | Path | Any, title: str | None = None) -> Report:
    """A report for a run folder, a Hugging Face folder, or a model object.

    For a folder, the newest good weights are used (`open_run`: an unfinished run's newest
    checkpoint) and the report's subtitle says which: ``report.subtitle``.
    """
    from gptscope.train.runs import open_run, read_metrics

    subtitle = None
    if isinstance(run, (str, Path)):
        model, weights = open_run(run)
        subtitle = f"weights: {weights.describe()}"
    else:
        model = run
    model.eval()
    name = Path(run).name if isinstance(run, (str, Path)) else "model"
    report = Report(title or f"gptscope report: {name}", subtitle)
    c = model.cfg
    report.add_heading("Model")
    report.add_table([[k, str(v)] for k, v in c.to_dict().items() if k != "extra"],
                     ["field", "value"])
    if isinstance(run, (str, Path)):
        records = read_metrics(run)
        if records:
            report.add_heading("Training")
            sections.add_loss_curves(report, records, "loss")
            sections.add_accuracy_curves(report, records, "accuracy")
        # A tuned run (init_from set) is compared with its base, on the same inputs.
        alignment.add_tuning_section(report, run, model)
    if c.n_layers == 0:
        return report
    tokens = sample_tokens(model)
    if c.causal:
        report.add_heading("Heads")
        scores = sections.add_head_scores(report, model)
        heads = _top_heads(scores)
        sections.add_attention(report, model, tokens, heads,
                               caption="the strongest previous-token and induction heads on "
                                       "a repeated random sequence")
        report.add_heading("Logit lens")
        sections.add_logit_lens(report, model, tokens)
    return report


def _top_heads(scores: dict[str, torch.Tensor], per_kind: int = 2) -> list[tuple[int, int]]:
    heads: list[tuple[int, int]] = []
    for kind in ("previous_token", "induction"):
        s = scores[kind]
        for flat in s.flatten().argsort(descending=True)[:per_kind].tolist():
            pair = divmod(flat, s.shape[1])
            if pair not in heads:
                heads.append(pair)
    return heads


def write_report(run: str | Path | Any, out: str | Path | None = None) -> Path:
    """Build the report and save it; default ``RUN/report.html``."""
    if out is None:
        if not isinstance(run, (str, Path)):
            raise ValueError("pass out= when reporting on a model object")
        out = Path(run) / "report.html"
    return build_report(run).save(out)
