"""The curriculum's own scaling study: small CNNs on the bundled 8x8 digits.

A family of CNNs indexed by width w (channels): two 3x3 convolutions, each followed by a
ReLU and a 2x2 max-pool, then a linear head, ``[batch, 1, 8, 8] -> [batch, 10]``. Every
weight starts N(0, init_scale / sqrt(fan_in)) and Adam trains each layer at
lr_scale / sqrt(fan_in) (the curriculum's rule: the learning rate follows the
initialisation), so one lr_scale serves every width. A grid varies the width by x sqrt(2)
(N about x2), the data by x2 and the seed; a point trains on the first ``fraction`` of a
fixed training split (80% of the images) for ``epochs`` passes and is scored by
cross-entropy on the fixed held-out 20%. D is the images *seen* (``images_seen`` =
epochs x the images of its fraction), C its training FLOPs (`flops_per_image` x D).

Results are ``OUT/done/NAME.json`` (written atomically; a rerun skips them) beside
``OUT/digits.json`` (the settings every point shares), and `results` returns rows that
`gptscope.scaling.analysis.analyse` fits as they are (with ``data_key="images_seen"``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gptscope.data.images import digits_split
from gptscope.io.run_lock import WriterLock
from gptscope.scaling.grid import Point
from gptscope.utils.atomic import write_text
from gptscope.utils.fields import JSONConfig, checked, validate_fields
from gptscope.utils.files import read_json_object
from gptscope.utils.progress import progress

DIGITS_VERSION = 1
SETTINGS_FILE = "digits.json"
DEPTH = 2  # convolutions per model: the grid varies the width only
N_CLASSES = 10
AXES = ("widths", "fractions", "seeds")


@dataclass
class DigitsSpec(JSONConfig):
    """The grid (widths x fractions x seeds) and the settings every point shares."""

    # The defaults (120 runs, about a minute on one core) gave the cleanest frontier of the
    # settings tried in docs/scaling.md: one epoch or batches of 16 leave the small-data
    # runs short of optimizer steps, and the frontier bends there.
    widths: list[int] = field(default_factory=lambda: [4, 6, 8, 11, 16, 23, 32, 45])
    fractions: list[float] = field(default_factory=lambda: [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = checked(8, ge=1)
    epochs: int = checked(4, ge=1, hint="passes over each point's images (D counts them all)")
    lr_scale: float = checked(0.1, gt=0, hint="each layer's Adam lr is lr_scale / sqrt(fan_in)")
    init_scale: float = checked(1.0, gt=0, hint="weights start N(0, init_scale / sqrt(fan_in))")

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in AXES:
            check_axis(name, getattr(self, name))

    @property
    def points(self) -> list[Point]:
        return [Point(w, DEPTH, f, s) for w in self.widths for f in self.fractions
                for s in self.seeds]

    def settings(self) -> dict[str, Any]:
        """What a point's result depends on besides its own (width, fraction, seed)."""
        return {k: v for k, v in self.to_dict().items() if k not in AXES}


def check_axis(name: str, values: list) -> None:
    """Refuse an empty axis, a repeated value, or a value outside the axis's range; the
    error names the command's argument (``--widths`` for ``widths``)."""
    flag = f"--{name}"
    if not values:
        raise ValueError(f"{flag} is empty; give at least one value, e.g. {flag} "
                         f"{_EXAMPLES[name]}")
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} {_show(values)} repeats a value; list each once")
    if name == "fractions":
        bad, rule = [v for v in values if not 0 < v <= 1], "must lie in (0, 1] (the share " \
            "of the training split)"
    else:
        low = 1 if name == "widths" else 0
        bad, rule = [v for v in values if v < low], f"must be >= {low}"
    if bad:
        raise ValueError(f"{flag} {_show(values)}: {_show(bad[:1])} {rule}; e.g. {flag} "
                         f"{_EXAMPLES[name]}")


_EXAMPLES = {"widths": "4 6 8 11 16", "fractions": "1/16 1/8 1/4 1/2 1", "seeds": "0 1 2"}


def _show(values: list) -> str:
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def parse_axis(name: str, texts: list[str]) -> list:
    """The command line's ``--widths 4 6,8`` as [4, 6, 8] (spaces or commas); fractions
    may be written 1/16. Raises ValueError naming the argument, the value and the fix."""
    kind = float if name == "fractions" else int
    values = []
    for text in (t for chunk in texts for t in chunk.split(",") if t.strip()):
        try:
            value = float(Fraction(text.strip())) if kind is float else int(text)
        except (ValueError, ZeroDivisionError):
            what = "a number or a fraction like 1/16" if kind is float else "an integer"
            raise ValueError(f"--{name} {text!r} is not {what}; e.g. --{name} "
                             f"{_EXAMPLES[name]}") from None
        values.append(value)
    check_axis(name, values)
    return values


# -- data -------------------------------------------------------------------------------


def train_images(fraction: float) -> int:
    """How many training images a point of ``fraction`` trains on (the first ones)."""
    total = len(digits_split()[1])
    n = round(fraction * total)
    if n < 1:
        raise ValueError(f"--fractions {fraction:g} leaves no training image of {total}; "
                         f"use a fraction >= {1 / total:.2g}")
    return n


# -- the models and their FLOPs -----------------------------------------------------------


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions of ``width`` channels and a linear head.

    [batch, 1, 8, 8] -conv, ReLU, max-pool-> [batch, w, 4, 4] -conv, ReLU, max-pool->
    [batch, w, 2, 2] -flatten, linear-> logits [batch, 10].
    """

    def __init__(self, width: int, init_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.width = width
        self.layers = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * width, N_CLASSES))
        for layer in self.weight_layers():
            # 1/sqrt(fan_in) keeps each layer's outputs of the same size at every width.
            nn.init.normal_(layer.weight, std=init_scale / math.sqrt(fan_in(layer)),
                            generator=generator)
            nn.init.zeros_(layer.bias)

    def weight_layers(self) -> list[nn.Conv2d | nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d | nn.Linear)]

    def forward(self, x: Tensor) -> Tensor:
        """x [batch, 1, 8, 8] in [0, 1] -> logits [batch, 10]."""
        return self.layers(x)


def fan_in(layer: nn.Conv2d | nn.Linear) -> int:
    """Inputs feeding one output unit: in_channels x 3 x 3 for a conv, in_features for the
    head."""
    return layer.weight[0].numel()


def n_params(width: int) -> int:
    """Weights and biases of `DigitsCNN` (width): 9w^2 + 51w + 10."""
    return (9 + 1) * width + (9 * width + 1) * width + (4 * width + 1) * N_CLASSES


def layer_macs(width: int) -> list[int]:
    """Multiply-adds per image of each weight layer: conv 1 at 8x8 positions, conv 2 at 4x4
    (after the pool), the head once."""
    return [64 * 9 * width, 16 * 9 * width * width, 4 * width * N_CLASSES]


def forward_flops_per_image(width: int) -> int:
    """2 FLOPs per multiply-add of the convolutions and the head; biases, ReLUs, pools and
    the softmax are left out (they are O(activations), not O(weights x positions))."""
    return 2 * sum(layer_macs(width))


def flops_per_image(width: int) -> int:
    """Training FLOPs per image: the forward, plus a backward of twice the forward (the
    gradients with respect to each layer's input and to its weights), less the first
    convolution's input gradient, which autograd never computes (the image needs none).
    That is 3x the forward minus 2 x conv 1's multiply-adds: exactly what torch's
    FlopCounterMode counts for a training step (tests/scaling/test_digits.py)."""
    return 3 * forward_flops_per_image(width) - 2 * layer_macs(width)[0]


# -- training one point ---------------------------------------------------------------------


def adam(model: DigitsCNN, lr_scale: float) -> torch.optim.Adam:
    """Adam with each layer (weights and bias) at lr_scale / sqrt(fan_in): Adam's steps
    are about lr in size whatever the gradient, so the lr must shrink as the init does."""
    groups = [{"params": list(layer.parameters()), "lr": lr_scale / math.sqrt(fan_in(layer))}
              for layer in model.weight_layers()]
    # fused: one kernel for all the parameters; on tensors this small the per-tensor
    # launches of the default path cost more than the arithmetic.
    return torch.optim.Adam(groups, fused=True)


@torch.no_grad()
def evaluate(model: DigitsCNN, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy in nats, accuracy) of ``model`` on x [n, 1, 8, 8], y [n]."""
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    return float(loss), float((logits.argmax(-1) == y).float().mean())


@contextlib.contextmanager
def _plain_convolutions() -> Iterator[None]:
    """oneDNN off for the block: its convolutions pay a setup per call that 8x8 images
    never win back (the plain kernels train these models about twice as fast on a CPU).
    Set by hand: torch.backends.mkldnn.flags also sets TF32 and warns about it."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def train_point(spec: DigitsSpec, point: Point) -> dict[str, Any]:
    """Train one point and score it; returns its result row (nothing is written).

    Deterministic given the point: its seed draws the weights and the order of the images
    each epoch (batches of ``spec.batch_size``, the last one of an epoch smaller).
    """
    start = time.perf_counter()
    x_tr, y_tr, x_val, y_val, source = digits_split()
    n = train_images(point.fraction)
    g = torch.Generator().manual_seed(point.seed)
    model = DigitsCNN(point.width, spec.init_scale, generator=g)
    optimizer = adam(model, spec.lr_scale)
    with _plain_convolutions():
        for _ in range(spec.epochs):
            for batch in torch.randperm(n, generator=g).split(spec.batch_size):
                loss = nn.functional.cross_entropy(model(x_tr[batch]), y_tr[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        val_loss, accuracy = evaluate(model, x_val, y_val)
    seen = spec.epochs * n
    return {"name": point.name, "width": point.width, "depth": point.depth,
            "fraction": point.fraction, "seed": point.seed, "n_params": n_params(point.width),
            "images": n, "images_seen": seen, "flops": flops_per_image(point.width) * seen,
            "lr_scale": spec.lr_scale, "val_loss": val_loss if math.isfinite(val_loss)
            else math.nan, "val_accuracy": accuracy, "data": source,
            "seconds": time.perf_counter() - start}


# -- the folder: resumable results --------------------------------------------------------


def result_file(folder: str | Path, point: Point) -> Path:
    return Path(folder) / "done" / f"{point.name}.json"


def results(folder: str | Path, spec: DigitsSpec | None = None) -> list[dict[str, Any]]:
    """The finished points of ``spec``'s grid (default: every finished point), grid order."""
    folder = Path(folder)
    if spec is None:
        files = sorted((folder / "done").glob("*.json"))
    else:
        files = [f for f in map(functools.partial(result_file, folder), spec.points)
                 if f.is_file()]
    return [read_json_object(f, "delete it to retrain the point") for f in files]


def open_folder(folder: str | Path, spec: DigitsSpec) -> Path:
    """Start ``folder`` for ``spec``, or reopen it when its points share ``spec``'s settings
    (the grid's axes may differ: a rerun can add widths, fractions or seeds)."""
    folder = Path(folder)
    want = {"kind": "gptscope-digits", "version": DIGITS_VERSION, "data": digits_split()[4],
            "settings": spec.settings()}
    file = folder / SETTINGS_FILE
    if file.is_file():
        have = read_json_object(file, f"delete {folder} or choose a new --out")
        changed = sorted(k for k in ("kind", "version", "data") if have.get(k) != want[k])
        changed += sorted(k for k, v in want["settings"].items()
                          if have.get("settings", {}).get(k) != v)
        if changed:
            raise ValueError(f"{folder} holds digits runs that differ in {', '.join(changed)}"
                             f" (see {file}); rerun with its settings or choose a new --out")
    elif folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty and holds no {SETTINGS_FILE}; choose a new "
                         "--out for the digits sweep")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(file, json.dumps(want, indent=2))
    return folder


def run_digits(folder: str | Path, spec: DigitsSpec,
               show_progress: bool = True) -> list[dict[str, Any]]:
    """Train every point of ``spec`` that ``folder`` has not finished (one thread, one at a
    time), writing each result as it ends; returns the grid's results."""
    if len(spec.points) < 2:
        raise ValueError("the grid has 1 point; a sweep needs two or more to fit anything "
                         "(add --widths or --fractions)")
    folder = open_folder(folder, spec)
    with WriterLock(folder, "scaling digits"):
        todo = [p for p in spec.points if not result_file(folder, p).is_file()]
        bar = progress(total=len(todo), desc="digits", disable=not show_progress)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny convolutions: a second thread costs more than it gives
        try:
            for point in todo:
                row = train_point(spec, point)
                write_text(result_file(folder, point), json.dumps(row, indent=2))
                bar.update(1, point=point.name, val_loss=f"{row['val_loss']:.3f}")
        finally:
            torch.set_num_threads(threads)
            bar.close()
    return results(folder, spec)
