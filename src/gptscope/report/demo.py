"""The demo (``make demo`` / ``gptscope demo``): train two small models, look inside both.

1. A 2-layer attention-only model on repeated random tokens. Its loss on the repeated half
   drops suddenly when induction heads form (the "induction bump"); the report shows the
   heads the detectors find, their attention patterns, the logit lens and a patching map.
2. A small character model on the generated stories corpus; a linear probe reads the
   grammatical number of the sentence's subject from each layer's residual stream.

Everything runs offline on a CPU in a few minutes and ends in one HTML file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptscope import interp
from gptscope.report import sections
from gptscope.train import get_preset, train
from gptscope.train.runs import read_metrics
from gptscope.viz import Report

PROBE_LABEL = "subject_number"


@dataclass
class DemoResult:
    report: Path
    induction_score: float
    induction_head: tuple[int, int]
    previous_token_score: float
    previous_token_head: tuple[int, int]
    probe_accuracy: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        best = max(self.probe_accuracy.items(), key=lambda kv: kv[1], default=("-", 0.0))
        return "\n".join([
            f"induction head      L{self.induction_head[0]}H{self.induction_head[1]} "
            f"score {self.induction_score:.2f}",
            f"previous-token head L{self.previous_token_head[0]}H{self.previous_token_head[1]}"
            f" score {self.previous_token_score:.2f}",
            f"probe for {PROBE_LABEL} at verbs: best {best[1]:.1%} at {best[0]}",
            f"report: {self.report}  ({self.seconds:.0f} s)",
        ])


def _train(name: str, out: Path, max_steps: int | None, seed: int | None,
           **model_changes: Any) -> Any:
    preset = get_preset(name)
    model_cfg = preset.model.replace(**model_changes) if model_changes else preset.model
    train_cfg = preset.train if seed is None else preset.train.replace(seed=seed)
    if max_steps is not None:
        train_cfg = train_cfg.replace(max_steps=max_steps)
    # The demo owns its run folders: each demo starts them afresh.
    return train(model_cfg, train_cfg, out, overwrite=True).model


def _best(scores: torch.Tensor) -> tuple[tuple[int, int], float]:
    flat = int(scores.flatten().argmax())
    return divmod(flat, scores.shape[1]), float(scores.flatten()[flat])


def _induction_section(report: Report, model: Any, run: Path) -> tuple:
    report.add_heading("1. Induction heads in a 2-layer attention-only model")
    report.add_text(
        "The model sees random tokens, then the same tokens again. It can only predict the "
        "second half by finding where the current token appeared before and copying what "
        "followed: an induction head in layer 1, helped by a previous-token head in layer 0."
    )
    records = read_metrics(run)
    keys = sections.loss_series(records)
    bump_key = next((k for k in ("test_loss", "val_loss") if k in keys), None)
    sections.add_loss_curves(report, records, "loss on the repeated half", bump_key=bump_key)
    scores = sections.add_head_scores(report, model)
    ind_head, ind = _best(scores["induction"])
    prev_head, prev = _best(scores["previous_token"])
    n_symbols = model.cfg.d_vocab - 1  # the task's BOS is the last id
    first = torch.randperm(n_symbols, generator=torch.Generator().manual_seed(0))[:12]
    tokens = torch.cat([torch.tensor([n_symbols]), first, first])  # BOS, 12 tokens, again
    sections.add_attention(report, model, tokens, [prev_head, ind_head],
                           caption="left: the previous-token head attends one step back; right:"
                                   " the induction head attends to the token after the earlier "
                                   "copy of the current one")
    report.add_heading("Logit lens", level=3)
    sections.add_logit_lens(report, model, tokens)
    report.add_heading("Activation patching", level=3)
    half = (len(tokens) - 1) // 2
    clean = tokens[None].clone()
    corrupted = clean.clone()
    answer = int(clean[0, half])  # the token after the earlier copy of position 2*half - 1
    wrong = int((answer + 1) % (model.cfg.d_vocab - 1))
    corrupted[0, half] = wrong
    sections.add_patching(report, model, clean, corrupted, answer, wrong, pos=2 * half - 1,
                          caption="restoring the clean residual stream, one layer and "
                                  "position at a time, into the corrupted run (1 = clean "
                                  "answer back): only the first copy's position matters, "
                                  "because the induction head in layer 1 reads the answer "
                                  "from there")
    return ind_head, ind, prev_head, prev


def _verb_number_labels(model: Any, n_stories: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Stories as tokens ``[batch, pos]`` and, at the characters of each sentence's verb,
    the subject's number (0 plural, 1 singular; -1 elsewhere). The verb must agree with a
    subject that came before it, so a model that learned agreement carries the number
    there."""
    from gptscope.data import generate_stories, label_tokens

    rows, labels = [], []
    for story in generate_stories(n_stories, seed=123):
        ids = model.tokenizer.encode(story.text)[: model.cfg.n_ctx]
        number = label_tokens(story, PROBE_LABEL)[: len(ids)]
        role = label_tokens(story, "role")[: len(ids)]
        rows.append(torch.tensor(ids))
        labels.append([("plural", "singular").index(x) if r == "verb" and x else -1
                       for x, r in zip(number, role)])
    n = min(len(r) for r in rows)
    return torch.stack([r[:n] for r in rows]), torch.tensor([lab[:n] for lab in labels])


def _stories_section(report: Report, model: Any, run: Path) -> dict[str, float]:
    report.add_heading("2. A character model on generated stories")
    sections.add_loss_curves(report, read_metrics(run), "loss")
    tokens, labels = _verb_number_labels(model)
    results = interp.probe_layers(model, tokens, labels, control="shuffle")
    report.add_heading("Logit lens on a story", level=3)
    sections.add_logit_lens(report, model, tokens[0])
    report.add_heading("Probing for the subject's number at the verb", level=3)
    report.add_text("A logistic probe per layer reads, at the characters of each verb, whether "
                    "the sentence's subject was singular or plural (\"the dog runs\" / \"the "
                    "dogs run\"). The embedding sees only the current character; a layer that "
                    "beats it has carried the number forward from the subject. The control "
                    "task shuffles the labels, so it shows the accuracy of chance.")
    sections.add_probe_results(report, results, PROBE_LABEL)
    return {name: r.accuracy for name, r in results.items()}


def run_demo(out: str | Path = "gptscope-demo", fast: bool = False,
             seed: int | None = None) -> DemoResult:
    """Train both models into ``out`` and write ``out/report.html``.

    fast=True trains for fewer steps (for tests); the full demo takes about a CPU minute.
    seed: the training seed of both models (None: the presets' own).
    """
    start = time.time()
    out = Path(out)
    induction = _train("induction-2l", out / "induction", 300 if fast else None, seed)
    stories = _train("stories", out / "stories", 150 if fast else 1200, seed,
                     n_layers=2, d_model=64, n_ctx=96)
    report = Report("gptscope demo", subtitle="two small models, trained here, looked inside")
    ind_head, ind, prev_head, prev = _induction_section(report, induction, out / "induction")
    probe = _stories_section(report, stories, out / "stories")
    path = report.save(out / "report.html")
    return DemoResult(path, ind, ind_head, prev, prev_head, probe, time.time() - start)
