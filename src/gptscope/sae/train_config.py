"""SAETrainConfig: every choice of one SAE training run, typed, validated, JSON round-trip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gptscope.utils.fields import JSONConfig, checked, validate_fields

INIT_B_DEC = ("geometric_median", "mean", None)


@dataclass
class SAETrainConfig(JSONConfig):
    """How to train an SAE; the defaults are a recipe that works with no other choice.

    Length: ``steps`` or ``epochs`` (not both); with neither, :func:`default_steps` picks
    one from the data size. Batches: ``batch_size`` rows per step (when the data is a
    tensor; an iterable's batches are used as given). ``lr`` None: ``3e-3 * sqrt(256 /
    d_sae)``, at most 3e-3 (wider SAEs want smaller steps; the rule is measured here, see
    docs/sae.md).

    The recipe (see docs/sae.md): activations are multiplied by one factor so their mean
    norm is ``sqrt(d_in)`` (``normalize_activations``; the factor is folded back into the
    SAE afterwards, so it reads raw activations), ``b_dec`` starts at their geometric
    median, the sparsity coefficient ramps up from 0 over the first
    ``sparsity_warmup_steps`` (None: 5% of the steps) and the learning rate decays linearly
    to 0 over the last ``lr_decay_steps`` (None: 20%), Anthropic's April 2024 update.

    ``coefficients`` override the SAE kind's own loss coefficients (its
    ``coefficient_defaults``, e.g. ``{"l1_coefficient": 3.0}`` for ReLU); ``target_l0``
    instead tunes the kind's sparsity coefficient during training until the mean number
    of active features per input is ``target_l0``. ``resample_dead_every`` resamples
    features that did not fire for that many steps (None: never); ``max_grad_norm`` clips
    the gradient (None: never); ``seed`` fixes shuffling and resampling.
    """

    steps: int | None = checked(None, ge=1)
    epochs: int | None = checked(None, ge=1)
    batch_size: int = checked(256, ge=1)
    lr: float | None = checked(None, gt=0, hint="None picks 3e-3 * sqrt(256 / d_sae), at most 3e-3")
    betas: tuple[float, float] = checked((0.9, 0.999), ge=0, lt=1)
    coefficients: dict[str, float] = field(default_factory=dict)
    target_l0: float | None = checked(None, gt=0, hint="the mean active features per input "
                                                       "you want, e.g. 8")
    normalize_activations: bool = True
    init_b_dec: str | None = checked("geometric_median", choices=INIT_B_DEC)
    sparsity_warmup_steps: int | None = checked(None, ge=0, hint="0 turns warm-up off")
    lr_warmup_steps: int = checked(0, ge=0)
    lr_decay_steps: int | None = checked(None, ge=0, hint="0 turns decay off")
    resample_dead_every: int | None = checked(None, ge=1, hint="None never resamples")
    resample_pool_size: int = checked(16384, ge=1)
    max_grad_norm: float | None = checked(None, gt=0)
    log_every: int = checked(100, ge=1)
    show_progress: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        validate_fields(self)
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives a list
        if self.steps is not None and self.epochs is not None:
            raise ValueError(
                f"give steps or epochs, not both (got steps={self.steps}, "
                f"epochs={self.epochs}); leave both out to pick a length from the data size"
            )


def split_training_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training, other)``: the options that are :class:`SAETrainConfig` fields or loss
    coefficients (any ``*_coefficient``, which the SAE kind then validates), and the rest."""
    fields = {f.name for f in dataclasses.fields(SAETrainConfig)}
    training = {k: v for k, v in options.items() if k in fields or k.endswith("_coefficient")}
    return training, {k: v for k, v in options.items() if k not in training}
