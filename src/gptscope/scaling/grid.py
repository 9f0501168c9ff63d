"""What a scaling sweep trains: the grid, and the model and training settings of each point.

A point is one (width, depth, data fraction, seed). Its model has ``d_head`` fixed and as
many heads as fit the width (so a width of 45 gets 3 heads of 16: ``d_head`` need not
divide ``d_model``), an MLP of four times the width, and weights drawn with a standard
deviation of ``init_scale / sqrt(width)``. Its learning rate follows the initialisation
(``lr_scale / sqrt(width)``, the curriculum's rule for Adam) unless a per-width search
picked another. It trains for one epoch by default: as many steps as it takes to see its
fraction of the training tokens once, so the tokens seen, D, double when the fraction does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gptscope.config import ModelConfig
from gptscope.train.config import CORPORA, DataSpec, TrainConfig
from gptscope.utils.fields import JSONConfig, checked, validate_fields

SWEEP_VERSION = 1
LR_RULES = ("fan-in", "search")
SEARCH_FACTORS = (0.5, 1.0, 2.0)  # the learning-rate multipliers a per-width search tries


@dataclass
class SweepSpec(JSONConfig):
    """A grid over width (``d_model``), depth, data fraction and seed, on one corpus."""

    widths: list[int] = field(default_factory=lambda: [32, 45, 64])
    depths: list[int] = field(default_factory=lambda: [2])
    data_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    corpus: str = checked("shakespeare", choices=CORPORA)
    # A task from gptscope.data.TASKS instead of the corpus (fresh examples: never repeated),
    # and the tokens that count as all of its data (fraction 1).
    task: str | None = None
    task_tokens: int = checked(2_000_000, ge=1)
    n_stories: int = checked(3000, ge=1)
    d_head: int = checked(16, ge=1)
    n_ctx: int = checked(64, ge=2)
    batch_size: int = checked(32, ge=1)
    epochs: float = checked(1.0, gt=0)
    dropout: float = checked(0.0, ge=0, lt=1)
    lr_rule: str = checked("fan-in", choices=LR_RULES)
    lr_scale: float = checked(0.024, gt=0, hint="the lr is lr_scale / sqrt(width)")
    init_scale: float = checked(0.55, gt=0, hint="weights start N(0, init_scale / sqrt(width))")
    eval_steps: int = checked(20, ge=1)

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("widths", "depths", "data_fractions", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"SweepSpec.{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"SweepSpec.{name}={values} repeats a value; list each once")
        if min(self.widths) < 1 or min(self.depths) < 0:
            raise ValueError(f"widths must be >= 1 and depths >= 0, got widths={self.widths}, "
                             f"depths={self.depths}")
        if self.task is not None:
            from gptscope.data import TASKS

            if self.task not in TASKS:
                raise ValueError(f"SweepSpec.task={self.task!r} is not a task; choose one of "
                                 f"{', '.join(sorted(TASKS))}")
        if not all(0 < f <= 1 for f in self.data_fractions):
            raise ValueError(f"data_fractions={self.data_fractions} must lie in (0, 1]: the "
                             "share of the training split each point sees")

    @property
    def window(self) -> int:
        """Tokens per training sequence: the task's length, or ``n_ctx`` for a corpus."""
        if self.task is None:
            return self.n_ctx
        from gptscope.data import make_task

        return make_task(self.task).seq_len

    @property
    def data_name(self) -> str:
        return self.task or self.corpus

    @property
    def points(self) -> list[Point]:
        return [Point(w, d, f, s) for w in self.widths for d in self.depths
                for f in self.data_fractions for s in self.seeds]


@dataclass(frozen=True)
class Point:
    width: int
    depth: int
    fraction: float
    seed: int

    @property
    def name(self) -> str:
        return f"w{self.width}-l{self.depth}-f{self.fraction:g}-s{self.seed}"

    @property
    def shape(self) -> tuple[int, int, float]:
        """The point without its seed: what the seeds repeat."""
        return (self.width, self.depth, self.fraction)


def model_config(spec: SweepSpec, point: Point, d_vocab: int) -> ModelConfig:
    heads = max(1, round(point.width / spec.d_head))
    return ModelConfig(n_layers=point.depth, n_heads=heads, d_model=point.width,
                       d_head=spec.d_head, d_mlp=4 * point.width, n_ctx=spec.window,
                       d_vocab=d_vocab, dropout=spec.dropout, seed=point.seed,
                       init_range=spec.init_scale / math.sqrt(point.width))


def data_spec(spec: SweepSpec, train_tokens: int | None = None) -> DataSpec:
    """The corpus cut to ``train_tokens``, or the task (whose examples are all fresh)."""
    if spec.task is not None:
        return DataSpec(task=spec.task)
    return DataSpec(corpus=spec.corpus, n_stories=spec.n_stories, train_tokens=train_tokens)


def steps_for(spec: SweepSpec, point: Point, available: int) -> int:
    """Optimizer steps for ``epochs`` passes over the point's share of ``available`` tokens."""
    tokens = spec.epochs * point.fraction * available
    return max(1, round(tokens / (spec.batch_size * spec.window)))


def train_config(spec: SweepSpec, point: Point, available: int,
                 lr_factor: float = 1.0) -> TrainConfig:
    """The point's training: one run folder's ``train_config.json``."""
    steps = steps_for(spec, point, available)
    lr = lr_factor * spec.lr_scale / math.sqrt(point.width)
    return TrainConfig(
        data=data_spec(spec, max(2, round(point.fraction * available))),
        lr=lr, min_lr=lr / 10, schedule="cosine", warmup_steps=min(100, steps // 10),
        max_steps=steps, batch_size=spec.batch_size, weight_decay=0.1,
        eval_every=0, eval_steps=spec.eval_steps, log_every=max(1, steps // 20),
        ckpt_every=max(1, min(steps, 500)), keep_last=1, seed=point.seed, threads=1,
        progress=False)


PRESETS: dict[str, SweepSpec] = {
    # The curriculum's study, sized for about 20 minutes on one core: widths x sqrt(2), data
    # x 2, two seeds, on facts asked with Zipf-distributed frequency (a task whose loss keeps
    # falling as a power law at 1e10-1e12 FLOPs; docs/scaling.md). Widths 16-91, not 32-128:
    # the same time buys a frontier of 14 shapes instead of 11, and width 128 at 1M tokens
    # is data-limited (its frontier point bent the fit: R^2 0.95 with it, 0.98 without).
    "cpu-20m": SweepSpec(widths=[16, 23, 32, 45, 64, 91], depths=[2],
                         data_fractions=[0.125, 0.25, 0.5, 1.0], seeds=[0, 1],
                         task="zipf_lookup", task_tokens=1_000_000, batch_size=32),
    # The same grid on character-level Shakespeare, one epoch. Batches of 8 windows: at 32
    # the runs on little data stop in the plateau before a char model learns to use its
    # context (0.22 nats worse at half the data, measured). It scales less cleanly.
    "shakespeare-20m": SweepSpec(widths=[32, 45, 64, 91, 128], depths=[2],
                                 data_fractions=[0.125, 0.25, 0.5, 1.0], seeds=[0, 1],
                                 batch_size=8),
    # A minute-long grid for trying the commands.
    "tiny": SweepSpec(widths=[16, 23, 32], depths=[1], data_fractions=[0.02, 0.04],
                      seeds=[0], n_ctx=32, batch_size=16, eval_steps=4),
}


def get_sweep_preset(name: str) -> SweepSpec:
    if name not in PRESETS:
        raise ValueError(f"unknown sweep preset {name!r}; choose one of {sorted(PRESETS)}")
    return SweepSpec.from_dict(PRESETS[name].to_dict())


def parse_grid(text: str, base: SweepSpec | None = None) -> SweepSpec:
    """``"width=32,45,64 depth=2 data=0.25,0.5,1 seed=0,1"`` over ``base`` (a preset)."""
    keys = {"width": ("widths", int), "depth": ("depths", int),
            "data": ("data_fractions", float), "seed": ("seeds", int)}
    changes: dict[str, list] = {}
    for part in text.split():
        key, sep, values = part.partition("=")
        if not sep or key not in keys:
            raise ValueError(f"--grid part {part!r} is not KEY=V1,V2,...; keys are "
                             f"{', '.join(keys)} (e.g. 'width=32,45,64 data=0.5,1')")
        name, kind = keys[key]
        try:
            changes[name] = [kind(v) for v in values.split(",") if v]
        except ValueError:
            raise ValueError(f"--grid {key}={values!r}: each value must be a "
                             f"{kind.__name__}") from None
    data = (base or SweepSpec()).to_dict() | changes
    return SweepSpec.from_dict(data)
