"""Training SAEs: :class:`SAETrainer` runs one :class:`SAETrainConfig` on activations from a
tensor, an iterable of batches, or a model; :func:`train_sae` is the one-line entry.

The loop is plain Adam with the tricks that matter at small scale (the recipe is in
``docs/sae.md``): activations normalised to mean norm ``sqrt(d_in)`` so one set of
coefficients serves every model and layer, ``b_dec`` started at the geometric median
(Anthropic), unit-norm decoder rows with the radial gradient removed, a sparsity warm-up
and a final learning-rate decay (Anthropic's April 2024 update), optional dead-feature
resampling, and optional tuning of the sparsity coefficient towards a target L0.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptscope.sae.base import SAE, fired_features, mean_active_count
from gptscope.sae.batches import Batches, make_generator
from gptscope.sae.buffer import ActivationBuffer
from gptscope.sae.metrics import evaluate_sae
from gptscope.sae.resample import RecentRows, resample_dead_features
from gptscope.sae.train_config import SAETrainConfig, split_training_options
from gptscope.train.schedule import scheduled_lr
from gptscope.utils.progress import progress

MIN_DEFAULT_STEPS = 1000
DEFAULT_LR, DEFAULT_LR_WIDTH = 3e-3, 256
SPARSITY_WARMUP_FRACTION = 0.05
LR_DECAY_FRACTION = 0.2
# The end-of-run check (SAETrainResult.evaluation) reads this many training rows: a quick
# look, not a held-out evaluation (use metrics.evaluate_sae on held-out data for that).
EVALUATION_ROWS = 1024


@dataclass
class SAETrainResult:
    """What SAE training returns.

    Attributes:
        history: per logged step, lists keyed by ``step``, ``loss``, each loss part
            (``mse``, ``l1``/``l0``/``aux``, in normalised units), ``l0_norm`` (mean active
            features per input), ``explained_variance`` (of the batch), ``dead_fraction``
            (features that did not fire during the last ``log_every`` steps), ``lr``, and,
            with ``target_l0``, the tuned coefficient under its own name.
        steps: optimiser steps taken.
        n_samples: activation vectors seen.
        resampled: ``(step, number of features resampled)`` for every resampling.
        seconds: wall-clock training time.
        input_scale: the factor activations were multiplied by (folded back into the SAE).
        coefficients: the loss coefficients at the end (tuned ones included).
        evaluation: :func:`~gptscope.sae.metrics.evaluate_sae` of the trained SAE on up to
            ``EVALUATION_ROWS`` training activations (a quick check, not held-out).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    n_samples: int = 0
    resampled: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    input_scale: float = 1.0
    coefficients: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last logged values (empty if nothing was logged)."""
        return {k: v[-1] for k, v in self.history.items() if v}


def default_steps(batches: Batches) -> int | None:
    """The length when none is given: one pass over the data, and at least
    ``MIN_DEFAULT_STEPS`` (small data is then seen several times); one pass of a stream of
    unknown length."""
    per_epoch = batches.steps_per_epoch()
    return None if per_epoch is None else max(MIN_DEFAULT_STEPS, per_epoch)


def default_lr(d_sae: int) -> float:
    """The learning rate when none is given: ``DEFAULT_LR`` up to ``DEFAULT_LR_WIDTH``
    features, then falling as ``1 / sqrt(d_sae)``."""
    return DEFAULT_LR * min(1.0, math.sqrt(DEFAULT_LR_WIDTH / d_sae))


@torch.no_grad()
def geometric_median(x: torch.Tensor, iters: int = 30, eps: float = 1e-6) -> torch.Tensor:
    """Geometric median of the rows of ``x`` ``[n, d]`` by Weiszfeld's algorithm -> ``[d]``.

    Less pulled by outliers than the mean, which is why Anthropic start ``b_dec`` here.
    """
    median = x.mean(dim=0)
    for _ in range(iters):
        weights = 1.0 / (x - median).norm(dim=-1).clamp_min(eps)
        new = (weights[:, None] * x).sum(dim=0) / weights.sum()
        if (new - median).norm() <= eps * (1 + median.norm()):
            return new
        median = new
    return median


class SparsityTuner:
    """Moves a sparsity coefficient until the batches' L0 reaches ``target``.

    Integral control in log space: each step multiplies the coefficient by
    ``(l0 / target) ** gain``, so it grows while too many features fire and shrinks while
    too few do, by a few percent per step at most.
    """

    def __init__(self, target: float, gain: float = 0.02, max_factor: float = 1.1) -> None:
        self.target, self.gain, self.max_factor = target, gain, max_factor

    def update(self, coefficient: float, l0: float) -> float:
        ratio = ((l0 + 1e-3) / self.target) ** self.gain
        return coefficient * min(max(ratio, 1 / self.max_factor), self.max_factor)


class SAETrainer:
    """Trains ``sae`` in place on ``activations`` with ``cfg``; :meth:`fit` runs it.

    ``activations``: a tensor ``[n, d_in]`` (shuffled each epoch, cut into ``batch_size``
    batches) or a re-iterable of ``[b, d_in]`` batches used as given (a list, a DataLoader,
    an :class:`ActivationBuffer`; a one-shot iterator serves a single pass).
    """

    def __init__(
        self, sae: SAE, activations: torch.Tensor | Iterable[torch.Tensor],
        cfg: SAETrainConfig,
    ) -> None:
        if not isinstance(sae, SAE):
            raise ValueError(f"sae must be a gptscope SAE, got {type(sae).__name__}; build "
                             "one with gptscope.sae.SAE(d_in, d_sae, kind=...)")
        self.sae, self.cfg = sae, cfg
        self.generator = make_generator(cfg.seed)
        self.data = Batches(activations, sae.cfg.d_in, cfg.batch_size, self.generator)
        self.coefficients = type(sae).resolve_coefficients(cfg.coefficients)
        self.tuner = self._tuner()
        self.total = self._total_steps()
        self.sparsity_warmup = self._resolved(cfg.sparsity_warmup_steps,
                                              SPARSITY_WARMUP_FRACTION)
        self.lr_decay = self._resolved(cfg.lr_decay_steps, LR_DECAY_FRACTION)
        if self.lr_decay and self.total is None:
            raise ValueError("lr_decay_steps needs a known number of steps: pass steps=..., a "
                             "tensor, or an iterable with len() (or lr_decay_steps=0)")
        self.lr = cfg.lr if cfg.lr is not None else default_lr(sae.cfg.d_sae)
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=self.lr, betas=cfg.betas)
        self.result = SAETrainResult()
        self.recent = RecentRows(cfg.resample_pool_size)
        self.scale = 1.0
        self.step_count = 0
        self._first_rows = torch.empty(0, sae.cfg.d_in)
        device = sae.W_dec.device
        self.fired_since_resample = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=device)
        self.fired_since_log = torch.zeros_like(self.fired_since_resample)
        self._sums: dict[str, float] = {}
        self._n_summed = 0

    # ------------------------------------------------------------------ setup
    def _tuner(self) -> SparsityTuner | None:
        if self.cfg.target_l0 is None:
            return None
        name = type(self.sae).sparsity_coefficient
        if name is None:
            raise ValueError(f"target_l0 does not apply to a {self.sae.cfg.kind!r} SAE, whose "
                             "sparsity is set by the SAE itself (e.g. k); leave it out")
        return SparsityTuner(self.cfg.target_l0)

    def _total_steps(self) -> int | None:
        if self.cfg.steps is not None:
            return self.cfg.steps
        if self.cfg.epochs is not None:
            if self.cfg.epochs > 1 and not self.data.reiterable:
                raise ValueError("epochs > 1 needs data that can be iterated again (a tensor, "
                                 "list or ActivationBuffer), not a one-shot iterator/generator")
            per_epoch = self.data.steps_per_epoch()
            return None if per_epoch is None else per_epoch * self.cfg.epochs
        return default_steps(self.data)

    def _resolved(self, steps: int | None, fraction: float) -> int:
        """``steps``, or when None that fraction of the total (0 if the total is unknown)."""
        if steps is not None:
            return steps
        return round(fraction * self.total) if self.total is not None else 0

    @torch.no_grad()
    def _start(self, first: torch.Tensor) -> None:
        """Normalise and centre from a pool of the first data, before step 0."""
        pool = self.data.sample(self.cfg.resample_pool_size)
        pool = (pool if pool is not None else first).to(first.device, first.dtype)
        self._first_rows = pool[:EVALUATION_ROWS]
        if self.cfg.normalize_activations:
            self.scale = math.sqrt(self.sae.cfg.d_in) / float(pool.norm(dim=-1).mean().clamp_min(
                1e-12))
        if self.sae.cfg.input_scale is not None:  # trained before: parameters in raw units
            self.sae.scale_input_space_(self.scale)
        if self.cfg.init_b_dec is not None:
            pool = pool * self.scale
            center = geometric_median(pool) if self.cfg.init_b_dec == "geometric_median" \
                else pool.mean(dim=0)
            self.sae.b_dec.copy_(center)

    def _finish(self) -> None:
        """Fold the normalisation back into the SAE so it reads raw activations."""
        self.sae.scale_input_space_(1 / self.scale)
        self.sae.cfg.input_scale = self.scale
        self.result.input_scale = self.scale
        self.result.coefficients = dict(self.coefficients)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> SAETrainResult:
        """Train for the configured length; the SAE is left in eval mode, reading raw
        activations."""
        cfg, sae = self.cfg, self.sae
        epochs = cfg.epochs if cfg.steps is None and cfg.epochs is not None else None
        steps = None if epochs is not None else self.total
        bar = progress(total=self.total, desc=f"train {sae.cfg.kind} SAE",
                       disable=not cfg.show_progress)
        start = time.perf_counter()
        sae.train()
        try:
            for x in self.data.stream(epochs, steps):
                x = x.to(sae.W_dec.device, sae.W_dec.dtype, non_blocking=True)
                if self.step_count == 0:
                    self._start(x)
                self.step(x * self.scale if self.scale != 1.0 else x)
                bar.update(1)
                if self._resample_due():
                    self.resample()
                if self.step_count % cfg.log_every == 0 or self.step_count == steps:
                    self.log(bar)
        finally:
            bar.close()
            sae.eval()
            if self.step_count:
                self._finish()
        if self.step_count == 0:
            raise ValueError("train_sae got no batches: the activations were empty")
        if self._n_summed:  # the tail of an epoch-based run that did not end on log_every
            self.log()
        self.result.steps = self.step_count
        self.result.seconds = time.perf_counter() - start
        self.result.evaluation = self.evaluate()
        return self.result

    def step(self, x: torch.Tensor) -> None:
        """One optimiser step on a normalised batch ``x`` ``[b, d_in]``."""
        sae, step = self.sae, self.step_count
        if self.cfg.resample_dead_every is not None and self.data.tensor is None:
            self.recent.add(x)
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ramp = min(1.0, (step + 1) / self.sparsity_warmup) if self.sparsity_warmup else 1.0
        out = sae.training_forward(x, **{k: v * ramp for k, v in self.coefficients.items()})
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if sae.cfg.normalize_decoder:
            sae.remove_parallel_grad_()
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        if sae.cfg.normalize_decoder:
            sae.normalize_decoder_()
        self._record(x, out)
        self.step_count += 1
        self.result.n_samples += len(x)

    @torch.no_grad()
    def _record(self, x: torch.Tensor, out: Any) -> None:
        """Add one step's metrics to the running sums (and tune the coefficient)."""
        fired = out.fired if out.fired is not None else fired_features(out.acts)
        self.fired_since_resample |= fired
        self.fired_since_log |= fired
        parts = {"loss": out.loss, **out.losses, "l0_norm": mean_active_count(out.acts)}
        resid = (x - out.x_hat).pow(2).sum()
        parts["explained_variance"] = 1 - resid / (x - x.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
        values = {k: float(v) for k, v in parts.items()}
        if self.tuner is not None and self.step_count >= self.sparsity_warmup:
            name = type(self.sae).sparsity_coefficient
            self.coefficients[name] = self.tuner.update(self.coefficients[name],
                                                        values["l0_norm"])
            values[name] = self.coefficients[name]
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n_summed += 1

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (warm-up, flat, linear decay to 0)."""
        return scheduled_lr(step, lr=self.lr, final_lr=0.0,
                            warmup_steps=self.cfg.lr_warmup_steps,
                            total_steps=self.total or 0, decay_steps=self.lr_decay,
                            schedule="linear" if self.lr_decay else "constant")

    def _resample_due(self) -> bool:
        """Every ``resample_dead_every`` steps, but not in the final learning-rate decay (or
        the last half-interval): fresh features need steps to learn before the end."""
        every, step = self.cfg.resample_dead_every, self.step_count
        if not every or step % every:
            return False
        return self.total is None or step <= self.total - max(self.lr_decay, every // 2)

    def resample(self) -> None:
        """Resample the features that did not fire since the last resampling."""
        pool = self.data.sample(self.cfg.resample_pool_size)
        pool = self.recent.pool() if pool is None else pool * self.scale
        n = resample_dead_features(self.sae, pool, ~self.fired_since_resample, self.optimizer,
                                   generator=self.generator)
        self.sae.train()
        self.result.resampled.append((self.step_count, n))
        self.fired_since_resample.zero_()

    def log(self, bar: Any = None) -> None:
        """Record the mean metrics since the last log in the history."""
        metrics = {"step": float(self.step_count),
                   **{k: v / self._n_summed for k, v in self._sums.items()}}
        metrics["dead_fraction"] = 1.0 - float(self.fired_since_log.float().mean())
        metrics["lr"] = self.lr_at(self.step_count - 1)
        for k, v in metrics.items():
            self.result.history.setdefault(k, []).append(float(v))
        if bar is not None:
            bar.update(0, loss=f"{metrics['loss']:.4g}", l0=f"{metrics['l0_norm']:.3g}")
        self._sums, self._n_summed = {}, 0
        self.fired_since_log.zero_()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor | None = None) -> dict[str, float]:
        """:func:`~gptscope.sae.metrics.evaluate_sae` on raw activations ``x`` ``[n, d_in]``
        (default: the sample of training rows the run was normalised from)."""
        x = self._first_rows if x is None else x
        return evaluate_sae(self.sae, x.to(self.sae.W_dec.device, self.sae.W_dec.dtype))


def _config(overrides: dict[str, Any], sae: SAE) -> SAETrainConfig:
    """A config from ``train_sae``'s keyword arguments: config fields, ``cfg=``, and the SAE
    kind's own coefficient names (``l1_coefficient=...``) gathered into ``coefficients``."""
    base = overrides.pop("cfg", None) or SAETrainConfig()
    if not isinstance(base, SAETrainConfig):
        raise ValueError(f"cfg must be an SAETrainConfig, got {type(base).__name__}")
    training, unknown = split_training_options(overrides)
    if unknown:
        fields = sorted(f.name for f in dataclasses.fields(SAETrainConfig))
        raise ValueError(f"unknown train_sae option(s) {sorted(unknown)}; options are the "
                         f"fields of SAETrainConfig ({', '.join(fields)}) and the SAE kind's "
                         f"coefficients ({', '.join(type(sae).coefficient_defaults) or 'none'})")
    coefficients = dict(training.pop("coefficients", base.coefficients))
    coefficients.update({k: training.pop(k) for k in list(training)
                         if k.endswith("_coefficient")})
    return dataclasses.replace(base, coefficients=coefficients, **training)


def train_sae(
    sae: SAE, activations: torch.Tensor | Iterable[torch.Tensor], **overrides: Any
) -> SAETrainResult:
    """Train ``sae`` in place on ``activations`` and return its :class:`SAETrainResult`.

    ``overrides`` are :class:`SAETrainConfig` fields (``steps=2000``, ``target_l0=8``, ...),
    a whole ``cfg=SAETrainConfig(...)``, or the SAE kind's own coefficients by name
    (``l1_coefficient=3.0`` for ReLU). With none, the defaults' recipe applies.
    """
    return SAETrainer(sae, activations, _config(dict(overrides), sae)).fit()


def train_sae_on_model(
    sae: SAE,
    model: Any,
    hook_name: str,
    token_batches: Iterable[torch.Tensor],
    *,
    buffer_size: int = 65536,
    max_memory_bytes: int = 512 * 2**20,
    spill_dir: str | Path | None = None,
    **overrides: Any,
) -> SAETrainResult:
    """Train ``sae`` on activations at ``hook_name`` of ``model``, streamed through a
    shuffling :class:`ActivationBuffer`.

    Args:
        sae: SAE with ``d_in`` equal to the hook's width.
        model: a ``gptscope.Transformer`` (anything with ``activations``).
        hook_name: e.g. ``"blocks.0.hook_mlp_out"``.
        token_batches: re-iterable of LongTensor ``[batch, pos]`` (one-shot is fine for a
            single pass).
        buffer_size, max_memory_bytes, spill_dir: see :class:`ActivationBuffer`.
        **overrides: as for :func:`train_sae`; ``batch_size`` and ``seed`` also size and
            seed the buffer.

    Returns:
        The :class:`SAETrainResult`; ``sae.cfg.hook_name`` is set to ``hook_name``.
    """
    cfg = _config(dict(overrides), sae)
    buffer = ActivationBuffer.from_model(
        model, hook_name, token_batches, buffer_size=buffer_size, batch_size=cfg.batch_size,
        max_memory_bytes=max_memory_bytes, spill_dir=spill_dir, d_in=sae.cfg.d_in,
        seed=cfg.seed,
    )
    sae.cfg.hook_name = hook_name
    with buffer:
        return SAETrainer(sae, buffer, cfg).fit()
