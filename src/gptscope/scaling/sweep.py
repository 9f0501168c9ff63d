"""Running a scaling sweep: every point an ordinary run folder, resumable, one at a time or
several processes at once, with a bar across the whole sweep.

A sweep folder holds ``sweep.json`` (the grid, the gptscope sweep version, the corpus's
token count), ``points/NAME/`` (one run folder per point, written by the trainer) and
``done/NAME.json`` (a point's result, written atomically once its run has finished: the
marker that it is not to be trained again). A killed sweep rerun with the same folder
skips the finished points and resumes the unfinished one from its last checkpoint. Each
point is also a command of its own (``gptscope scaling point SWEEP NAME``), which is what
``--jobs N`` runs in N processes and what an engine for many machines runs on each.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptscope.config import ModelConfig
from gptscope.io.run_lock import WriterLock
from gptscope.scaling.grid import (
    SEARCH_FACTORS,
    SWEEP_VERSION,
    Point,
    SweepSpec,
    data_spec,
    model_config,
    steps_for,
    train_config,
)
from gptscope.train.mfu import flops_per_token
from gptscope.utils.atomic import write_text
from gptscope.utils.files import read_json_object
from gptscope.utils.progress import progress

SWEEP_FILE = "sweep.json"


@dataclass
class Sweep:
    """An opened sweep folder: its grid, and how many training tokens its corpus has."""

    folder: Path
    spec: SweepSpec
    available: int  # tokens in the corpus's training split
    d_vocab: int

    @classmethod
    def create(cls, folder: str | Path, spec: SweepSpec) -> Sweep:
        """Start ``folder`` for ``spec``, or reopen it when it already holds the same grid."""
        folder = Path(folder)
        if (folder / SWEEP_FILE).is_file():
            sweep = cls.open(folder)
            if sweep.spec.to_dict() != spec.to_dict():
                changed = sorted(k for k, v in spec.to_dict().items()
                                 if sweep.spec.to_dict().get(k) != v)
                raise ValueError(f"{folder} holds a sweep over another grid (differs in "
                                 f"{', '.join(changed)}); rerun it as it was, or choose a "
                                 "new --out")
            return sweep
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"{folder} is not empty and holds no {SWEEP_FILE}; choose a new "
                             "--out for the sweep")
        sweep = cls.plan(folder, spec)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / SWEEP_FILE, json.dumps(
            {"kind": "gptscope-sweep", "version": SWEEP_VERSION, "spec": spec.to_dict(),
             "train_tokens": sweep.available, "d_vocab": sweep.d_vocab}, indent=2))
        return sweep

    @classmethod
    def plan(cls, folder: str | Path, spec: SweepSpec) -> Sweep:
        """The sweep ``spec`` would be, in memory only (its corpus tokenized to count)."""
        from gptscope.train.data import build_data

        data = build_data(data_spec(spec), ModelConfig(n_ctx=spec.window))
        available = spec.task_tokens if spec.task is not None else len(data.train)
        return cls(Path(folder), spec, available, data.vocab_size)

    @classmethod
    def open(cls, folder: str | Path) -> Sweep:
        folder = Path(folder)
        if not (folder / SWEEP_FILE).is_file():
            raise ValueError(f"{folder} holds no {SWEEP_FILE}, so it is not a sweep folder; "
                             "make one with gptscope scaling sweep --out FOLDER")
        data = read_json_object(folder / SWEEP_FILE, "rerun gptscope scaling sweep")
        if data.get("kind") != "gptscope-sweep" or data.get("version") != SWEEP_VERSION:
            raise ValueError(
                f"{folder / SWEEP_FILE} is a sweep of version {data.get('version')!r} and this "
                f"gptscope reads version {SWEEP_VERSION}; rerun the sweep into a new folder")
        return cls(folder, SweepSpec.from_dict(data["spec"]), int(data["train_tokens"]),
                   int(data["d_vocab"]))

    # -- points ---------------------------------------------------------------------------

    def point(self, name: str) -> Point:
        for point in self.spec.points + self.search_points:
            if point.name == name:
                return point
        raise ValueError(f"{self.folder} has no point {name!r}; its points are named like "
                         f"{self.spec.points[0].name!r} (see {SWEEP_FILE})")

    @property
    def search_points(self) -> list[Point]:
        """The learning-rate search of lr_rule="search": each width and depth at the
        smallest data fraction and first seed, once per factor (seed slot holds it)."""
        if self.spec.lr_rule != "search":
            return []
        smallest, seed = min(self.spec.data_fractions), self.spec.seeds[0]
        return [Point(w, d, smallest, seed) for w in self.spec.widths
                for d in self.spec.depths]

    def run_dir(self, point: Point, factor: float | None = None) -> Path:
        if factor is not None:
            return self.folder / "search" / f"{point.name}-x{factor:g}"
        return self.folder / "points" / point.name

    def result_file(self, point: Point, factor: float | None = None) -> Path:
        name = point.name if factor is None else f"search-{point.name}-x{factor:g}"
        return self.folder / "done" / f"{name}.json"

    def result(self, point: Point, factor: float | None = None) -> dict[str, Any] | None:
        file = self.result_file(point, factor)
        return read_json_object(file, "delete it to rerun the point") if file.is_file() else None

    def lr_factor(self, point: Point) -> float:
        """1 under the fan-in rule; under "search", the factor that did best at this width
        and depth (every search run must have finished)."""
        if self.spec.lr_rule != "search":
            return 1.0
        probe = Point(point.width, point.depth, min(self.spec.data_fractions),
                      self.spec.seeds[0])
        losses = {}
        for factor in SEARCH_FACTORS:
            done = self.result(probe, factor)
            if done is None:
                raise ValueError(f"the learning-rate search for {probe.name} has not finished "
                                 "(run the sweep: it searches before training the grid)")
            losses[factor] = done["val_loss"] if math.isfinite(done["val_loss"]) else math.inf
        return min(losses, key=losses.get)

    def model_config(self, point: Point) -> ModelConfig:
        return model_config(self.spec, point, self.d_vocab)

    def flops(self, point: Point) -> float:
        """Training FLOPs of the point: FLOPs per token (PaLM's count) times tokens seen."""
        tokens = steps_for(self.spec, point, self.available) * self.spec.batch_size \
            * self.spec.window
        return flops_per_token(self.model_config(point), self.spec.window) * tokens

    def pending(self) -> list[tuple[Point, float | None]]:
        """(point, search factor or None) not yet finished, search runs first."""
        todo = [(p, f) for p in self.search_points for f in SEARCH_FACTORS]
        todo += [(p, None) for p in self.spec.points]
        return [(p, f) for p, f in todo if self.result(p, f) is None]


def train_point(sweep: Sweep, point: Point, factor: float | None = None) -> dict[str, Any]:
    """Train one point (resuming its run folder if a killed sweep left it half done) and
    write its result file; returns the result. A diverged run is recorded with a NaN loss,
    so the sweep goes on and the fits leave it out by name."""
    from gptscope.train.trainer import Trainer, TrainingDiverged

    cfg = sweep.model_config(point)
    lr_factor = factor if factor is not None else sweep.lr_factor(point)
    train_cfg = train_config(sweep.spec, point, sweep.available, lr_factor)
    run = sweep.run_dir(point, factor)
    start = time.perf_counter()
    try:
        Trainer(cfg, train_cfg, run, resume=run.exists()).fit()
        diverged = False
    except TrainingDiverged:
        diverged = True
    summary = _summary(run)
    tokens = train_cfg.max_steps * train_cfg.batch_size * cfg.n_ctx
    result = {
        "name": point.name, "width": point.width, "depth": point.depth,
        "fraction": point.fraction, "seed": point.seed, "lr_factor": lr_factor,
        "lr": train_cfg.lr, "n_params": cfg.n_params, "tokens": tokens,
        "flops": sweep.flops(point),
        "val_loss": math.nan if diverged else summary["val_loss"],
        "mfu": summary["mfu"], "seconds": time.perf_counter() - start,
        "run": str(run.relative_to(sweep.folder)),
    }
    write_text(sweep.result_file(point, factor), json.dumps(result, indent=2))
    return result


def _summary(run: Path) -> dict[str, float]:
    """The run's final validation loss and its mean logged MFU."""
    from gptscope.train.runs import read_metrics

    records = read_metrics(run)
    evals = [r["val_loss"] for r in records if "val_loss" in r]
    mfus = [r["mfu"] for r in records if "mfu" in r]
    return {"val_loss": evals[-1] if evals else math.nan,
            "mfu": sum(mfus) / len(mfus) if mfus else math.nan}


def results(sweep: Sweep) -> list[dict[str, Any]]:
    """The finished grid points' results, in grid order (search runs left out)."""
    return [r for r in (sweep.result(p) for p in sweep.spec.points) if r is not None]


def run_sweep(folder: str | Path, spec: SweepSpec, jobs: int = 1,
              budget_s: float | None = None, show_progress: bool = True,
              executor: str = "local") -> list[dict]:
    """Train every unfinished point of ``spec`` into ``folder``; the grid's results.

    ``jobs`` > 1 trains that many points at once, each in its own process (one thread
    each). ``budget_s`` refuses a grid whose estimated time (`estimate_seconds`) exceeds it.
    ``executor`` "slurm" submits each point to Slurm through submitit, "ray" to a Ray
    cluster (see `gptscope.scaling.executors`); the budget then counts one machine's time.
    """
    from gptscope.scaling.executors import check_executor

    check_executor(executor)
    if len(spec.points) < 2:
        raise ValueError(f"the grid has {len(spec.points)} point; a sweep needs two or more "
                         "(add widths or data fractions) to fit anything")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    sweep = Sweep.create(folder, spec)
    with WriterLock(sweep.folder, "scaling sweep"):
        todo = sweep.pending()
        estimates = estimate_seconds(sweep, [p for p, _ in todo], jobs)
        if budget_s is not None and estimates["total"] > budget_s:
            raise ValueError(
                f"the grid's {len(todo)} unfinished runs need about "
                f"{_duration(estimates['total'])} here, over the budget of "
                f"{_duration(budget_s)}; raise --budget, drop the largest widths or data "
                "fractions from --grid, or use --preset tiny")
        _train_all(sweep, todo, jobs, estimates, show_progress, executor)
    return results(sweep)


def _train_all(sweep: Sweep, todo: list[tuple[Point, float | None]], jobs: int,
               estimates: dict[str, float], show_progress: bool, executor: str) -> None:
    from gptscope.scaling.executors import run_elsewhere

    bar = progress(total=len(todo), desc="sweep", disable=not show_progress)
    start, left = time.perf_counter(), estimates["total"]
    spent_estimate = 0.0

    def on_done(point: Point, factor: float | None) -> None:
        nonlocal spent_estimate
        spent_estimate += estimates[point.name] / jobs
        # The ETA scales what is left by how the estimate has fared so far.
        pace = (time.perf_counter() - start) / max(spent_estimate, 1e-9)
        done = sweep.result(point, factor) or {}
        bar.update(1, point=point.name, val_loss=f"{done.get('val_loss', math.nan):.3f}",
                   eta=f"{max(left - spent_estimate, 0) * pace / 60:.1f}m")

    try:
        search = [(p, f) for p, f in todo if f is not None]
        grid = [(p, f) for p, f in todo if f is None]
        for phase in (search, grid):  # the grid's learning rates come from the search
            if jobs == 1 and executor == "local":
                for point, factor in phase:
                    train_point(sweep, point, factor)
                    on_done(point, factor)
            elif phase:
                run_elsewhere(sweep.folder, phase, jobs, executor, on_done)
    finally:
        bar.close()


def seconds_per_step(cfg: ModelConfig, batch_size: int, repeats: int = 3) -> float:
    """Median seconds of a training step (forward, backward, AdamW) of a fresh ``cfg``
    model on random tokens, after one warm-up step."""
    import torch

    from gptscope.model.transformer import Transformer

    model = Transformer(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, cfg.d_vocab, (batch_size, cfg.n_ctx + 1))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def estimate_seconds(sweep: Sweep, points: Iterable[Point], jobs: int = 1,
                     step_times: dict[tuple[int, int], float] | None = None
                     ) -> dict[str, float]:
    """Estimated seconds per point name (timed steps of each shape, times its steps, plus
    its evaluation) and "total" (the sum over ``jobs`` processes). ``step_times`` keeps the
    timed step of each (width, depth) across calls, so each shape is timed once."""
    import torch

    spec, out = sweep.spec, {"total": 0.0}
    per_shape = {} if step_times is None else step_times
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the points train
    try:
        for point in points:
            shape = (point.width, point.depth)
            if shape not in per_shape:
                per_shape[shape] = seconds_per_step(sweep.model_config(point), spec.batch_size)
            steps = steps_for(spec, point, sweep.available) + spec.eval_steps / 3
            out[point.name] = steps * per_shape[shape] + 1.0  # +1 s: opening, saving
            out["total"] += out[point.name] / jobs
    finally:
        torch.set_num_threads(threads)
    return out


def fit_to_budget(spec: SweepSpec, budget_s: float, jobs: int = 1
                  ) -> tuple[SweepSpec, list[str]]:
    """``spec`` cut down until its estimated time fits ``budget_s``: each cut drops the
    largest width or the largest data fraction, whichever saves more, keeping at least two
    of each. Returns the grid and what was dropped; refuses when even that is too long."""
    sweep, dropped, step_times = Sweep.plan(".", spec), [], {}
    while True:
        estimate = estimate_seconds(sweep, sweep.spec.points, jobs, step_times)["total"]
        if estimate <= budget_s:
            return sweep.spec, dropped
        cuts = {}
        for axis in ("widths", "data_fractions"):
            values = getattr(sweep.spec, axis)
            if len(values) > 2:
                cuts[axis] = SweepSpec.from_dict(sweep.spec.to_dict()
                                                 | {axis: sorted(values)[:-1]})
        if not cuts:
            raise ValueError(
                f"even {len(sweep.spec.points)} points ({sweep.spec.widths} wide, data "
                f"{sweep.spec.data_fractions}) need about {_duration(estimate)}, over the "
                f"budget of {_duration(budget_s)}; raise --budget or try --preset tiny")
        # A cut grid has the same corpus: reuse its token count instead of re-tokenizing.
        saved = {axis: estimate - estimate_seconds(
                     Sweep(sweep.folder, cut, sweep.available, sweep.d_vocab), cut.points,
                     jobs, step_times)["total"]
                 for axis, cut in cuts.items()}
        axis = max(saved, key=saved.get)
        dropped.append(f"{axis[:-1]} {max(getattr(sweep.spec, axis))}")
        sweep = Sweep(sweep.folder, cuts[axis], sweep.available, sweep.d_vocab)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def parse_duration(text: str) -> float:
    """'20m' -> 1200.0 seconds; also '90s', '1.5h' and plain seconds ('300')."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    number, scale = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        seconds = float(number) * scale
    except ValueError:
        raise ValueError(f"--budget {text!r} is not a duration; write e.g. 20m, 90s or "
                         "1.5h") from None
    if not seconds > 0:
        raise ValueError(f"--budget must be positive, got {text!r}")
    return seconds
