"""Over-optimisation made visible: the learned reward against the exact judge, by KL.

The reward model is learned and imperfect; the stories' lexical judge is exact. Both score
a sample on one scale, the one the reward model was trained on: its p(positive), and the
judge's share of positive sentiment words (1 positive, 0 negative, 0.5 for a sentence with
none). While tuning helps, the two rise together; where the policy starts to exploit the
reward model, its p(positive) keeps rising and the judge's score does not (and where the
reward model stops tracking real gains, the judge runs ahead of it). Each is
plotted against sqrt(KL to the starting model) per completion (the curriculum expects
sqrt(KL) to grow roughly linearly with training), for PPO and DPO runs on one chart, and
the point where they part is marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptscope.train.runs import read_metrics

PART_GAP = 0.15  # the reward model's p(positive) and the judge's score this far apart ...
PART_WINDOW = 3  # ... the same way at this many points in a row: the two have parted


@dataclass(frozen=True)
class Curve:
    """One run's measurements, in step order: sqrt(KL) per completion, the reward model's
    mean p(positive), the judge's mean score and its positive fraction."""

    name: str
    steps: list[int]
    sqrt_kl: list[float]
    reward_p: list[float]
    judge: list[float]
    positive: list[float]

    def _parted_at(self) -> int | None:
        """Index of the first of ``PART_WINDOW`` points in a row where the reward model and
        the judge differ by more than ``PART_GAP`` the same way (None: they never part)."""
        run, side = 0, 0
        for i, (p, j) in enumerate(zip(self.reward_p, self.judge, strict=True)):
            now = (p - j > PART_GAP) - (j - p > PART_GAP)
            run = run + 1 if now and now == side else int(bool(now))
            side = now
            if run == PART_WINDOW:
                return i - PART_WINDOW + 1
        return None

    @property
    def parting(self) -> float | None:
        """sqrt(KL) where the two part (None: they never do in this run)."""
        i = self._parted_at()
        return None if i is None else self.sqrt_kl[i]

    @property
    def parting_side(self) -> str:
        """Which one ran ahead where they part: "reward model" (the policy exploits its
        errors: over-optimisation), "judge" (the reward model stops tracking real gains), or
        "" when they never part."""
        i = self._parted_at()
        if i is None:
            return ""
        return "reward model" if self.reward_p[i] > self.judge[i] else "judge"


def curve_of_run(run: str | Path, name: str | None = None) -> Curve:
    """The curve of a PPO run (one point per logged rollout) or a DPO run (one per
    evaluation): every metrics record with a KL, a judge and a reward p(positive)."""
    needed = {"kl_k1", "judge_score", "judge_positive", "reward_model_p"}
    points = [r for r in read_metrics(run) if needed <= set(r)
              and math.isfinite(r["reward_model_p"])]
    if not points:
        raise ValueError(f"{run} has no records with {', '.join(sorted(needed))}; chart a "
                         "PPO run, or a DPO run ranked by a reward model (gptscope align dpo "
                         "--reward RM)")
    return Curve(name or Path(run).name, [r["step"] for r in points],
                 [math.sqrt(max(r["kl_k1"], 0.0)) for r in points],
                 [r["reward_model_p"] for r in points], [r["judge_score"] for r in points],
                 [r["judge_positive"] for r in points])


def overoptimisation_chart(curves: list[Curve]) -> Any:
    """One LineChart: each run's reward-model p(positive) and judge's score against
    sqrt(KL), with each parting point marked."""
    from gptscope.viz.curves import LineChart

    series: dict[str, Any] = {}
    marks = []
    for c in curves:
        series[f"{c.name}: reward model p(positive)"] = (c.sqrt_kl, c.reward_p)
        series[f"{c.name}: judge's score"] = (c.sqrt_kl, c.judge)
        if c.parting is not None:
            marks.append((c.parting, f"{c.name} parts ({c.parting_side} ahead)"))
    return LineChart(series, x_label="sqrt(KL to the start, nats per completion)",
                     y_label="how positive (0-1)", title="Learned reward vs exact judge",
                     annotations=marks)


def kept_samples(run: str | Path, n: int = 4, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``[(milestone folder name, n samples)]`` for each policy a PPO run kept at rising
    KL (``kl_checkpoints/kl_<x>``), in KL order."""
    from gptscope.align.measure import sample_texts
    from gptscope.align.ppo import KL_DIR
    from gptscope.io.checkpoint import load

    root = Path(run) / KL_DIR
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.iterdir() if p.name.startswith("kl_")),
                     key=lambda p: float(p.name.removeprefix("kl_")))
    tokenizer = read_run_tokenizer(run)
    out = []
    for folder in folders:
        model = load(folder)
        model.tokenizer = model.tokenizer or tokenizer
        out.append((folder.name, sample_texts(model, n, seed=seed)))
    return out


def read_run_tokenizer(run: str | Path) -> Any:
    from gptscope.tokenizers import load_tokenizer

    return load_tokenizer(Path(run) / "tokenizer.json")


def write_overoptimisation_page(runs: list[str | Path], out: str | Path,
                                samples: int = 4) -> Path:
    """An offline page: the chart of ``runs`` and samples from each kept checkpoint."""
    from gptscope.viz.report import Report

    curves = [curve_of_run(r) for r in runs]
    report = Report("Over-optimisation: learned reward vs exact judge")
    report.add_text(__doc__.split("\n\n", 1)[1])
    report.add(overoptimisation_chart(curves))
    rows = [[c.name, "never" if c.parting is None else f"sqrt(KL) {c.parting:.2f} "
             f"(KL {c.parting ** 2:.1f} nats), {c.parting_side} ahead", f"{c.judge[-1]:.2f}",
             f"{c.reward_p[-1]:.2f}", f"{c.positive[-1]:.2f}", f"{c.sqrt_kl[-1] ** 2:.1f}"]
            for c in curves]
    report.add_table(rows, ["run", "parts at", "last judge's score", "last reward p",
                            "last positive fraction", "last KL"])
    for run in runs:
        kept = kept_samples(run, samples)
        if kept:
            report.add_heading(f"Samples at rising KL: {Path(run).name}", 3)
            report.add_table([[name, " | ".join(s.strip() for s in texts)]
                              for name, texts in kept], ["kept at", "samples"])
    return report.save(out)
