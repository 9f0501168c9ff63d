"""Training loops for SAEs: on a tensor, on an iterable of batches, or streamed from a model.

The loop is plain Adam with the tricks that matter at small scale:

* ``b_dec`` starts at the geometric median of the data (Anthropic), so the pre-encoder bias
  centres inputs from step 0;
* unit-norm decoder rows (when ``sae.cfg.normalize_decoder``): the gradient component along
  each row is removed before the step and rows are renormalised after it;
* optional linear warm-up of the sparsity coefficient and linear learning-rate decay at
  the end (Anthropic's April 2024 update: sparsity warm-up over the first 5% of steps,
  learning-rate decay over the last 20%);
* optional dead-feature resampling (Anthropic, "Towards Monosemanticity"), see
  :func:`resample_dead_features`.

Streaming from a model uses :class:`ActivationBuffer`, a shuffling buffer that mixes
activations from many token batches (adjacent positions of one sequence are highly
correlated; training on them in order hurts) and spills to a memory-mapped file on disk
when it would not fit in the memory budget.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptscope.sae.base import BaseSAE, fired_features, mean_active_count
from gptscope.utils.progress import progress

# ---------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """What :func:`train_sae` returns.

    Attributes:
        history: per logged step, lists keyed by ``step``, ``loss``, each loss part
            (``mse``, ``l1``/``l0``/``aux``), ``l0_norm`` (mean active features per input),
            ``explained_variance`` (of the batch), ``dead_fraction`` (features that did not
            fire during the last ``log_every`` steps) and ``lr``.
        steps: optimiser steps taken.
        n_samples: activation vectors seen.
        resampled: ``(step, number of features resampled)`` for every resampling.
        seconds: wall-clock training time.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    n_samples: int = 0
    resampled: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        """The last logged values (empty if nothing was logged)."""
        return {k: v[-1] for k, v in self.history.items() if v}

    def _log(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append(float(v))


# ---------------------------------------------------------------------------- helpers


def _check_activation_batch(x: Any, d_in: int, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{what} must be a torch.Tensor of shape [n, {d_in}], got {type(x).__name__}; "
            "convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {x.dtype}; use x.float()")
    if x.ndim < 2 or x.shape[-1] != d_in:
        raise ValueError(
            f"{what} must have shape [n, d_in={d_in}] (or [..., {d_in}]), got "
            f"{tuple(x.shape)}; the SAE was built for d_in={d_in}"
        )
    return x.reshape(-1, d_in)


def _make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    return generator


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


@torch.no_grad()
def resample_dead_features(
    sae: BaseSAE,
    inputs: torch.Tensor,
    dead: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    encoder_scale: float = 0.2,
    generator: torch.Generator | None = None,
) -> int:
    """Re-initialise dead features towards inputs the SAE reconstructs badly.

    Anthropic's procedure ("Towards Monosemanticity", 2023): sample inputs with probability
    proportional to the square of their reconstruction loss; point each dead feature's
    decoder row at one such (normalised) input, set its encoder column to the same direction
    scaled to ``encoder_scale`` times the mean encoder norm of the living features, zero its
    encoder bias, and reset Adam's moments for the touched entries so stale statistics do
    not undo the reset.

    Args:
        sae: the SAE to modify in place.
        inputs: ``[n, d_in]`` activations to draw new directions from.
        dead: ``[d_sae]`` bool mask of features to resample.
        optimizer: the Adam(-like) optimiser whose state to reset, if any.
        encoder_scale: encoder norm of new features relative to living ones (paper: 0.2).
        generator: RNG for sampling inputs.

    Returns:
        The number of features resampled.
    """
    d_sae = sae.cfg.d_sae
    if dead.shape != (d_sae,) or dead.dtype != torch.bool:
        raise ValueError(f"dead must be a bool mask of shape [{d_sae}], got {dead.dtype} "
                         f"{tuple(dead.shape)}")
    inputs = _check_activation_batch(inputs, sae.cfg.d_in, "inputs")
    idx = dead.nonzero().flatten()
    if len(idx) == 0 or len(inputs) == 0:
        return 0
    device = sae.W_dec.device
    inputs = inputs.to(device, sae.W_dec.dtype)
    x_hat = sae(inputs)
    loss = (x_hat - inputs).pow(2).sum(dim=-1)
    probs = loss.pow(2)
    if not torch.isfinite(probs).all() or probs.sum() <= 0:
        probs = torch.ones_like(probs)
    picks = torch.multinomial(probs.cpu(), len(idx), replacement=True, generator=generator)
    directions = inputs[picks.to(device)]
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    alive = ~dead
    enc_norms = sae.W_enc.norm(dim=0)
    alive_norm = enc_norms[alive].mean() if alive.any() else torch.tensor(1.0, device=device)

    sae.W_dec[idx] = directions
    sae.W_enc[:, idx] = directions.T * (alive_norm * encoder_scale)
    sae.b_enc[idx] = 0.0
    sae.steps_since_fired[idx] = 0
    if hasattr(sae, "log_threshold"):  # JumpReLU: start the feature from a fresh threshold
        sae.log_threshold[idx] = math.log(sae.cfg.threshold_init)  # type: ignore[attr-defined]

    if optimizer is not None:
        touched = [
            (sae.W_dec, (idx,)),
            (sae.W_enc, (slice(None), idx)),
            (sae.b_enc, (idx,)),
        ]
        if hasattr(sae, "log_threshold"):
            touched.append((sae.log_threshold, (idx,)))  # type: ignore[attr-defined]
        for param, where in touched:
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][where] = 0.0
    return len(idx)


class _Batches:
    """Yields training batches ``[b, d_in]`` from a tensor or an iterable of batches."""

    def __init__(
        self,
        data: torch.Tensor | Iterable[torch.Tensor],
        d_in: int,
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.d_in, self.batch_size, self.generator = d_in, batch_size, generator
        if isinstance(data, torch.Tensor):
            self.tensor: torch.Tensor | None = _check_activation_batch(data, d_in, "activations")
            self.iterable: Iterable[torch.Tensor] | None = None
        else:
            if not isinstance(data, Iterable):
                raise ValueError(
                    f"activations must be a tensor [n, {d_in}] or an iterable of [b, {d_in}] "
                    f"batches, got {type(data).__name__}"
                )
            self.tensor, self.iterable = None, data

    @property
    def reiterable(self) -> bool:
        return self.tensor is not None or iter(self.iterable) is not self.iterable  # type: ignore[arg-type]

    def steps_per_epoch(self) -> int | None:
        if self.tensor is not None:
            return math.ceil(len(self.tensor) / self.batch_size)
        try:
            return len(self.iterable)  # type: ignore[arg-type]
        except TypeError:
            return None

    def epoch(self) -> Iterator[torch.Tensor]:
        if self.tensor is not None:
            perm = torch.randperm(len(self.tensor), generator=self.generator)
            for i in range(0, len(perm), self.batch_size):
                yield self.tensor[perm[i : i + self.batch_size].to(self.tensor.device)]
        else:
            for i, batch in enumerate(self.iterable):  # type: ignore[union-attr]
                yield _check_activation_batch(batch, self.d_in, f"batch {i}")

    def sample(self, n: int) -> torch.Tensor | None:
        """Up to ``n`` random rows, when the data is a tensor (else None)."""
        if self.tensor is None:
            return None
        idx = torch.randperm(len(self.tensor), generator=self.generator)[:n]
        return self.tensor[idx.to(self.tensor.device)]


# ---------------------------------------------------------------------------- train_sae


def train_sae(
    sae: BaseSAE,
    activations: torch.Tensor | Iterable[torch.Tensor],
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 4096,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    l1_coefficient: float | None = None,
    l0_coefficient: float | None = None,
    sparsity_warmup_steps: int = 0,
    lr_warmup_steps: int = 0,
    lr_decay_steps: int = 0,
    init_b_dec: str | None = "geometric_median",
    resample_dead_every: int | None = None,
    resample_pool_size: int = 16384,
    max_grad_norm: float | None = None,
    log_every: int = 100,
    show_progress: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``sae`` in place on activations and return its metrics history.

    Args:
        sae: any SAE from :func:`gptscope.sae.SAE`; trained on its current device.
        activations: a tensor ``[n, d_in]`` (shuffled each epoch, cut into ``batch_size``
            batches), or an iterable of ``[b, d_in]`` batches used as given (``batch_size``
            then only sizes the pool for ``init_b_dec``). For several epochs or for more
            ``steps`` than one pass gives, the iterable must be re-iterable (a list, a
            DataLoader, an :class:`ActivationBuffer`), not a one-shot iterator.
        steps: number of optimiser steps. Give ``steps`` or ``epochs`` (not both).
        epochs: number of passes over ``activations``.
        batch_size: rows per step when ``activations`` is a tensor.
        lr, betas: Adam settings.
        l1_coefficient: sparsity weight for ``kind="relu"`` (default 1e-3).
        l0_coefficient: sparsity weight for ``kind="jumprelu"`` (default 1e-3).
        sparsity_warmup_steps: ramp the sparsity coefficient linearly from 0 over this many
            steps (lets features form before they are pushed to be sparse).
        lr_warmup_steps: ramp the learning rate linearly from 0 over this many steps.
        lr_decay_steps: decay the learning rate linearly to 0 over the final this-many steps
            (needs a known total: ``steps``, a tensor, or an iterable with ``len``).
        init_b_dec: ``"geometric_median"``, ``"mean"`` or ``None`` (keep ``b_dec``), computed
            on up to ``resample_pool_size`` rows of the first data seen.
        resample_dead_every: every this many steps, features that did not fire since the
            last check are resampled (:func:`resample_dead_features`); ``None`` disables.
        resample_pool_size: inputs considered when resampling (random rows of a tensor, or
            the most recent batches of an iterable).
        max_grad_norm: clip the global gradient norm to this, if given.
        log_every: record metrics every this many steps (and at the last step).
        show_progress: show a progress bar (tqdm if installed, else a stderr line).
        seed / generator: make shuffling and resampling reproducible (not both).
        callback: called as ``callback(step, metrics)`` whenever metrics are logged.

    Returns:
        A :class:`TrainResult`; the SAE itself is modified in place and left in eval mode.
    """
    if not isinstance(sae, BaseSAE):
        raise ValueError(
            f"sae must be a gptscope SAE, got {type(sae).__name__}; "
            "build one with gptscope.sae.SAE(d_in, d_sae, kind=...)"
        )
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps=... or epochs=... to train_sae")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    if resample_dead_every is not None and resample_dead_every < 1:
        raise ValueError(f"resample_dead_every must be None or >= 1, got {resample_dead_every}")
    if init_b_dec not in (None, "mean", "geometric_median"):
        raise ValueError(
            f"init_b_dec must be 'geometric_median', 'mean' or None, got {init_b_dec!r}"
        )
    if seed is not None and generator is not None:
        raise ValueError("pass seed=... or generator=..., not both")
    if generator is None:
        generator = _make_generator(seed)

    coefficients = _coefficients(sae, l1_coefficient=l1_coefficient, l0_coefficient=l0_coefficient)
    data = _Batches(activations, sae.cfg.d_in, batch_size, generator)
    per_epoch = data.steps_per_epoch()
    if steps is not None:
        total: int | None = steps
    else:
        total = per_epoch * epochs if per_epoch is not None else None  # type: ignore[operator]
        if epochs > 1 and not data.reiterable:  # type: ignore[operator]
            raise ValueError(
                "epochs > 1 needs data that can be iterated again (a tensor, list or "
                "ActivationBuffer), not a one-shot iterator/generator"
            )
    if lr_decay_steps and total is None:
        raise ValueError(
            "lr_decay_steps needs a known number of steps: pass steps=..., a tensor, or an "
            "iterable with len()"
        )

    device = sae.W_dec.device
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=betas)

    def lr_at(step: int) -> float:
        scale = 1.0
        if lr_warmup_steps:
            scale = min(scale, (step + 1) / lr_warmup_steps)
        if lr_decay_steps and total is not None:
            scale = min(scale, max(0.0, (total - step) / lr_decay_steps))
        return lr * scale

    result = TrainResult()
    recent: deque[torch.Tensor] = deque()
    recent_rows = 0
    fired_since_resample = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=device)
    fired_since_log = torch.zeros_like(fired_since_resample)
    sums: dict[str, float] = {}
    n_summed = 0
    bar = progress(total=total, desc=f"train {sae.cfg.kind} SAE", disable=not show_progress)
    start = time.perf_counter()
    step = 0
    sae.train()

    def batch_stream() -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            got_any = False
            for batch in data.epoch():
                got_any = True
                yield batch
            epoch += 1
            if epochs is not None and epoch >= epochs:
                return
            if not got_any or not data.reiterable:
                return  # a one-shot iterator ran dry before `steps`: stop early

    try:
        for x in batch_stream():
            if steps is not None and step >= steps:
                break
            x = x.to(device, sae.W_dec.dtype, non_blocking=True)
            if step == 0 and init_b_dec is not None:
                pool = data.sample(resample_pool_size)
                _init_b_dec(sae, pool if pool is not None else x, init_b_dec)
            if resample_dead_every is not None and data.tensor is None:
                # Keep recent batches as the pool resampling draws from.
                recent.append(x.detach())
                recent_rows += len(x)
                while recent_rows - len(recent[0]) >= resample_pool_size:
                    recent_rows -= len(recent.popleft())

            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            ramp = min(1.0, (step + 1) / sparsity_warmup_steps) if sparsity_warmup_steps else 1.0
            out = sae.training_forward(x, **{k: v * ramp for k, v in coefficients.items()})
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if sae.cfg.normalize_decoder:
                sae.remove_parallel_grad_()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), max_grad_norm)
            optimizer.step()
            if sae.cfg.normalize_decoder:
                sae.normalize_decoder_()

            with torch.no_grad():
                fired = out.fired if out.fired is not None else fired_features(out.acts)
                fired_since_resample |= fired
                fired_since_log |= fired
                parts = {"loss": out.loss.detach()}
                parts.update({k: v.detach() for k, v in out.losses.items()})
                parts["l0_norm"] = mean_active_count(out.acts)
                resid = (x - out.x_hat).pow(2).sum()
                total_var = (x - x.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
                parts["explained_variance"] = 1 - resid / total_var
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_summed += 1
            step += 1
            result.n_samples += len(x)
            bar.update(1)

            if resample_dead_every is not None and step % resample_dead_every == 0:
                pool = data.sample(resample_pool_size)
                if pool is None:
                    pool = torch.cat(list(recent))
                n = resample_dead_features(
                    sae, pool, ~fired_since_resample, optimizer, generator=generator
                )
                sae.train()
                result.resampled.append((step, n))
                fired_since_resample.zero_()

            last = steps is not None and step >= steps
            if step % log_every == 0 or last:
                metrics = {"step": float(step), **{k: v / n_summed for k, v in sums.items()}}
                metrics["dead_fraction"] = 1.0 - float(fired_since_log.float().mean())
                metrics["lr"] = lr_at(step - 1)
                result._log(metrics)
                bar.update(0, loss=f"{metrics['loss']:.4g}", l0=f"{metrics['l0_norm']:.3g}")
                if callback is not None:
                    callback(step, metrics)
                sums, n_summed = {}, 0
                fired_since_log.zero_()
    finally:
        bar.close()
        sae.eval()

    if n_summed:  # log the tail of an epoch-based run that did not end on log_every
        metrics = {"step": float(step), **{k: v / n_summed for k, v in sums.items()}}
        metrics["dead_fraction"] = 1.0 - float(fired_since_log.float().mean())
        metrics["lr"] = lr_at(step - 1)
        result._log(metrics)
    if step == 0:
        raise ValueError("train_sae got no batches: the activations were empty")
    result.steps = step
    result.seconds = time.perf_counter() - start
    return result


def _coefficients(
    sae: BaseSAE, *, l1_coefficient: float | None, l0_coefficient: float | None
) -> dict[str, float]:
    given = {"l1_coefficient": l1_coefficient, "l0_coefficient": l0_coefficient}
    accepted = type(sae).coefficient_defaults
    out = dict(accepted)
    for name, value in given.items():
        if value is None:
            continue
        if name not in accepted:
            valid = ", ".join(accepted) or "none (sparsity is set by the SAE itself, e.g. k)"
            raise ValueError(
                f"{name} does not apply to a {sae.cfg.kind!r} SAE; its coefficients: {valid}"
            )
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        out[name] = float(value)
    return out


@torch.no_grad()
def _init_b_dec(sae: BaseSAE, x: torch.Tensor, method: str) -> None:
    x = x.to(sae.b_dec.device, sae.b_dec.dtype)
    center = geometric_median(x) if method == "geometric_median" else x.mean(dim=0)
    sae.b_dec.copy_(center)


# ---------------------------------------------------------------------------- buffer


class ActivationBuffer:
    """Shuffling buffer of activation vectors ``[d_in]`` drawn from a stream of batches.

    It holds up to ``buffer_size`` vectors. Iterating makes one pass over ``source``: fill
    every free slot, yield a random half of the stored vectors in ``[batch_size, d_in]``
    batches, refill the freed slots, and so on; when the source runs dry the rest is
    drained. Every vector from the source is yielded exactly once per pass, in an order
    mixed across roughly ``buffer_size`` neighbours.

    Storage is float32. When ``buffer_size * d_in * 4`` bytes exceeds ``max_memory_bytes``,
    it lives in a numpy memmap file in a temporary folder (under ``spill_dir`` if given),
    deleted by :meth:`close` (also on garbage collection, or use ``with``).

    Args:
        source: re-iterable of activation tensors ``[..., d_in]`` (rows are flattened).
        buffer_size: vectors held at once; bigger mixes better.
        batch_size: rows per yielded batch (the last batch of a pass may be smaller).
        max_memory_bytes: in-RAM budget before spilling to disk.
        spill_dir: parent folder for the memmap file (default: the system temp dir).
        d_in: expected width, checked on the first batch (inferred if None).
        seed / generator: shuffling RNG.
        drop_last: skip the final smaller batch of each pass.
    """

    def __init__(
        self,
        source: Iterable[torch.Tensor],
        *,
        buffer_size: int = 65536,
        batch_size: int = 4096,
        max_memory_bytes: int = 512 * 2**20,
        spill_dir: str | Path | None = None,
        d_in: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(
                f"buffer_size and batch_size must be >= 1, got {buffer_size} and {batch_size}"
            )
        if seed is not None and generator is not None:
            raise ValueError("pass seed=... or generator=..., not both")
        self.source = source
        self.buffer_size, self.batch_size = buffer_size, batch_size
        self.max_memory_bytes, self.spill_dir = max_memory_bytes, spill_dir
        self.d_in = d_in
        self.drop_last = drop_last
        self.generator = generator if generator is not None else _make_generator(seed)
        self._store: torch.Tensor | np.memmap | None = None
        self._tmpdir: str | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def from_model(
        cls,
        model: Any,
        hook_name: str,
        token_batches: Iterable[torch.Tensor],
        **kwargs: Any,
    ) -> ActivationBuffer:
        """Buffer of activations at ``hook_name`` of ``model`` for each token batch
        ``[batch, pos]``; each batch contributes ``batch * pos`` vectors."""
        return cls(_ModelActivations(model, hook_name, token_batches), **kwargs)

    @property
    def spilled(self) -> bool:
        """True when the storage is a memmap file on disk."""
        return isinstance(self._store, np.memmap)

    @property
    def path(self) -> Path | None:
        """The memmap file, when spilled."""
        return Path(self._tmpdir) / "activations.f32" if self._tmpdir else None

    def _allocate(self, d_in: int) -> None:
        n_bytes = self.buffer_size * d_in * 4
        if n_bytes > self.max_memory_bytes:
            self._tmpdir = tempfile.mkdtemp(prefix="gptscope-acts-", dir=self.spill_dir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
            self._store = np.memmap(
                self.path, dtype=np.float32, mode="w+", shape=(self.buffer_size, d_in)
            )
        else:
            self._store = torch.empty(self.buffer_size, d_in, dtype=torch.float32)

    def _write(self, slots: torch.Tensor, rows: torch.Tensor) -> None:
        if isinstance(self._store, np.memmap):
            self._store[slots.numpy()] = rows.numpy()
        else:
            self._store.index_copy_(0, slots, rows)  # type: ignore[union-attr]

    def _read(self, slots: torch.Tensor) -> torch.Tensor:
        if isinstance(self._store, np.memmap):
            # Sorted reads walk the file forwards; order inside a batch does not matter.
            slots = slots.sort().values
            return torch.from_numpy(np.ascontiguousarray(self._store[slots.numpy()]))
        return self._store.index_select(0, slots)  # type: ignore[union-attr]

    def _rows(self, batch: Any, i: int) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point() or batch.ndim < 1:
            raise ValueError(
                f"ActivationBuffer source item {i} must be a float tensor [..., d_in], got "
                f"{getattr(batch, 'dtype', type(batch).__name__)}"
            )
        if self.d_in is None:
            self.d_in = batch.shape[-1]
        if batch.shape[-1] != self.d_in:
            raise ValueError(
                f"ActivationBuffer source item {i} has width {batch.shape[-1]}, expected "
                f"d_in={self.d_in}; check the hook name and the SAE's d_in"
            )
        return batch.detach().reshape(-1, self.d_in).to("cpu", torch.float32)

    def __iter__(self) -> Iterator[torch.Tensor]:
        source = iter(self.source)
        pending = torch.empty(0)
        free = torch.arange(self.buffer_size)
        occupied = torch.empty(0, dtype=torch.long)
        exhausted = False
        i = 0
        while True:
            while not exhausted and len(free) > 0:
                if len(pending) == 0:
                    try:
                        pending = self._rows(next(source), i)
                    except StopIteration:
                        exhausted = True
                        break
                    i += 1
                    if self._store is None:
                        self._allocate(pending.shape[-1])
                    continue
                n = min(len(free), len(pending))
                slots, free = free[:n], free[n:]
                self._write(slots, pending[:n])
                pending = pending[n:]
                occupied = torch.cat([occupied, slots])
            if len(occupied) == 0:
                return
            occupied = occupied[torch.randperm(len(occupied), generator=self.generator)]
            if exhausted:
                n_out = len(occupied)  # drain: every vector leaves exactly once
            else:
                half = (len(occupied) // 2) // self.batch_size * self.batch_size
                n_out = min(len(occupied), max(self.batch_size, half))
            out, occupied = occupied[:n_out], occupied[n_out:]
            for j in range(0, n_out, self.batch_size):
                idx = out[j : j + self.batch_size]
                if len(idx) < self.batch_size and self.drop_last:
                    continue
                yield self._read(idx)
            free = torch.cat([free, out])

    def close(self) -> None:
        """Release the storage and delete the spill file, if any."""
        self._store = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._tmpdir = None

    def __enter__(self) -> ActivationBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ModelActivations:
    """Re-iterable: activations at one hook for each token batch ``[batch, pos]``."""

    def __init__(self, model: Any, hook_name: str, token_batches: Iterable[torch.Tensor]) -> None:
        self.model, self.hook_name, self.token_batches = model, hook_name, token_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            for i, tokens in enumerate(self.token_batches):
                if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
                    raise ValueError(
                        f"token batch {i} must be a LongTensor [batch, pos], got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}"
                    )
                yield self.model.activations(tokens, self.hook_name)[self.hook_name]
        finally:
            self.model.train(was_training)


def train_sae_on_model(
    sae: BaseSAE,
    model: Any,
    hook_name: str,
    token_batches: Iterable[torch.Tensor],
    *,
    buffer_size: int = 65536,
    batch_size: int = 4096,
    max_memory_bytes: int = 512 * 2**20,
    spill_dir: str | Path | None = None,
    seed: int | None = None,
    **train_kwargs: Any,
) -> TrainResult:
    """Train ``sae`` on activations at ``hook_name`` of ``model``, streamed through a
    shuffling :class:`ActivationBuffer`.

    Args:
        sae: SAE with ``d_in`` equal to the hook's width.
        model: a ``gptscope.Transformer`` (anything with ``activations``).
        hook_name: e.g. ``"blocks.0.hook_mlp_out"``.
        token_batches: re-iterable of LongTensor ``[batch, pos]`` (one-shot is fine for a
            single pass).
        buffer_size, batch_size, max_memory_bytes, spill_dir: see :class:`ActivationBuffer`.
        seed: seeds both the buffer's shuffling and training.
        **train_kwargs: passed to :func:`train_sae` (``steps`` or ``epochs``, ``lr``, ...).

    Returns:
        The :class:`TrainResult`; ``sae.cfg.hook_name`` is set to ``hook_name``.
    """
    buffer = ActivationBuffer.from_model(
        model,
        hook_name,
        token_batches,
        buffer_size=buffer_size,
        batch_size=batch_size,
        max_memory_bytes=max_memory_bytes,
        spill_dir=spill_dir,
        d_in=sae.cfg.d_in,
        seed=seed,
    )
    sae.cfg.hook_name = hook_name
    with buffer:
        return train_sae(sae, buffer, batch_size=batch_size, seed=seed, **train_kwargs)
