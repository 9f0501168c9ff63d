"""Shared base for sparse autoencoders (SAEs): config, parameters, hooks, save/load.

An SAE maps an activation ``x`` of width ``d_in`` to a wide, sparse code ``acts`` of width
``d_sae`` and back::

    acts  = activation((x - b_dec) @ W_enc + b_enc)     # [batch, d_sae]
    x_hat = acts @ W_dec + b_dec                         # [batch, d_in]

Each variant (ReLU, top-k, JumpReLU) lives in its own module and only supplies the
``activation`` and its training loss; everything else is here. Rows of ``W_dec`` are the
learned feature directions, so they are kept at unit norm by default (see
:meth:`SAE.normalize_decoder_`).

Files: :meth:`SAE.save` writes a folder with ``sae.safetensors`` (weights) and
``sae_config.json`` (config). Nothing is ever pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gptscope.model.hooks import HookPoint
from gptscope.utils.atomic import write_text, write_with
from gptscope.utils.files import read_json

WEIGHTS_FILENAME = "sae.safetensors"
CONFIG_FILENAME = "sae_config.json"
_FORMAT_VERSION = 1

# kind -> SAE class; filled in by each variant module via ``register_sae``.
SAE_REGISTRY: dict[str, type[SAE]] = {}


@dataclass
class SAEConfig:
    """Settings shared by every SAE variant.

    Attributes:
        d_in: width of the activations the SAE reads (e.g. ``d_model``).
        d_sae: number of learned features (dictionary size), usually a multiple of ``d_in``.
        apply_b_dec_to_input: subtract ``b_dec`` from the input before encoding (Anthropic's
            "pre-encoder bias"), so the encoder sees activations centred on the decoder bias.
        normalize_decoder: keep each row of ``W_dec`` at unit norm during training. With it
            on, feature magnitudes live only in ``acts`` and a plain L1 penalty is fair.
        hook_name: the model hook the SAE was trained on; informational, saved with it.
        metadata: free-form JSON-serialisable notes (dataset, model name, ...).
        input_scale: set by training. Training multiplies activations by this factor (to a
            mean norm of ``sqrt(d_in)``, or 1 when normalisation is off) and folds it back
            into the weights afterwards, so the SAE reads raw activations; ``None`` means
            never trained, so thresholds and biases are still in training units.
    """

    d_in: int
    d_sae: int
    apply_b_dec_to_input: bool = True
    normalize_decoder: bool = True
    hook_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    input_scale: float | None = None

    kind: ClassVar[str] = "base"

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.input_scale is not None and not self.input_scale > 0:
            raise ValueError(f"input_scale must be None or > 0, got {self.input_scale!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict, including ``kind`` so :func:`load_sae` can dispatch."""
        out = dataclasses.asdict(self)
        out["kind"] = self.kind
        out["format_version"] = _FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error rather than silently dropped."""
        data = {k: v for k, v in data.items() if k not in ("kind", "format_version")}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} field(s) {unknown}; known fields are {sorted(known)}"
            )
        return cls(**data)


class TrainStepOutput(NamedTuple):
    """What :meth:`SAE.training_forward` returns for one batch.

    ``loss`` is the scalar to backpropagate; ``losses`` holds its named parts (detached
    floats are taken by the trainer); ``x_hat`` is ``[batch, d_in]``; ``acts`` ``[batch, d_sae]``;
    ``fired`` (bool ``[d_sae]``, optional) says which features fired in this batch, when the
    variant already computed it, so the trainer need not scan ``acts`` again.
    """

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    x_hat: torch.Tensor
    acts: torch.Tensor
    fired: torch.Tensor | None = None


def n_inputs(acts: torch.Tensor) -> int:
    """How many input vectors ``acts`` ``[..., d]`` holds (its leading dims multiplied; at
    least 1), the denominator of every per-input mean here."""
    return max(1, acts[..., 0].numel())


def sae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    acts: torch.Tensor,
    l1_coefficient: float,
    decoder_norms: torch.Tensor | None = None,
    acts_nonnegative: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The classic SAE objective: reconstruction error plus an L1 sparsity penalty.

    Args:
        x: input activations ``[batch, d_in]``.
        x_hat: reconstructions ``[batch, d_in]``.
        acts: feature activations ``[batch, d_sae]``.
        l1_coefficient: weight of the sparsity term.
        decoder_norms: optional ``[d_sae]`` norms of the decoder rows. When given, each
            feature's activation is weighted by its decoder norm, so the model cannot dodge
            the penalty by shrinking ``acts`` and growing ``W_dec`` (Anthropic's April 2024
            recipe). With unit-norm rows this is the plain L1.
        acts_nonnegative: promise that ``acts >= 0`` (true of every SAE kind here), so
            ``|acts| = acts`` and the absolute value (and its backward pass) is skipped.

    Returns:
        ``(loss, mse, l1)``, all scalars, where ``mse`` is the squared error summed over
        ``d_in`` and averaged over the batch, ``l1`` is the (weighted) L1 norm of ``acts``
        averaged over the batch, and ``loss = mse + l1_coefficient * l1``.
    """
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(x_hat.shape)}; pass the SAE's reconstruction of x as x_hat"
        )
    if acts.shape[:-1] != x.shape[:-1]:
        raise ValueError(
            f"acts {tuple(acts.shape)} and x {tuple(x.shape)} disagree on the batch dims; "
            "pass the feature activations of the same batch"
        )
    mse = (x_hat - x).pow(2).sum(dim=-1).mean()
    magnitudes = acts if acts_nonnegative else acts.abs()
    if decoder_norms is None:
        l1 = magnitudes.sum() / n_inputs(magnitudes)
    else:
        l1 = (magnitudes @ decoder_norms).mean()
    return mse + l1_coefficient * l1, mse, l1


@torch.no_grad()
def fired_features(acts: torch.Tensor) -> torch.Tensor:
    """Bool ``[d_sae]``: which features are non-zero anywhere in ``acts`` ``[..., d_sae]``.

    Written as a max reduction because on CPU it is several times faster than
    ``(acts != 0).any(dim=0)``, which materialises a bool tensor the size of ``acts``; this
    runs every training step.

    Every SAE kind here outputs non-negative activations (ReLU, top-k of ReLU, JumpReLU
    with a positive threshold), so a feature fired exactly when its maximum is above 0.
    """
    flat = acts.reshape(-1, acts.shape[-1])
    return flat.amax(dim=0) > 0


@torch.no_grad()
def mean_active_count(acts: torch.Tensor) -> torch.Tensor:
    """Mean number of non-zero features per input (the L0 norm), a scalar, for ``acts``
    ``[..., d_sae]``.

    Like :func:`fired_features` it relies on activations being non-negative, so ``sign`` is 1
    exactly where a feature is active; on CPU ``acts.sign().sum()`` is several times faster
    than ``count_nonzero`` or a bool comparison (which branch or materialise a mask).
    """
    return acts.sign().sum() / n_inputs(acts)


class _BuiltByKind(type):
    """Calling ``SAE(d_in, d_sae, kind=...)`` builds that kind; a kind's own class (``TopKSAE``)
    is called with its config. So ``isinstance(x, SAE)`` holds for every SAE."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is SAE:
            return _build(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class SAE(nn.Module, metaclass=_BuiltByKind):
    """Every sparse autoencoder: parameters, hooks, encode/decode and file IO.

    ``SAE(d_in, d_sae, kind="relu", **options)`` builds one of a kind ("relu", "topk" or
    "jumprelu"), its options going to that kind's config (``k=32`` for top-k,
    ``threshold_init=0.5`` for JumpReLU)::

        sae = SAE(d_in=128, d_sae=1024, kind="topk", k=16)

    Subclasses set ``config_class`` and implement :meth:`activation` and
    :meth:`training_forward`. Hook points (identity modules that show up in the model's
    cache when the SAE is attached to it) are named ``hook_sae_input``, ``hook_sae_acts_pre``,
    ``hook_sae_acts_post``, ``hook_sae_recons`` and ``hook_sae_output``.
    """

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    # The loss coefficients training_forward accepts, with defaults suited to activations
    # normalised to mean norm sqrt(d_in) (what training does by default); the trainer
    # passes whatever a kind declares and names none itself.
    coefficient_defaults: ClassVar[dict[str, float]] = {}
    # Which of them sets sparsity (the one ``target_l0`` tunes); None if the kind has none.
    sparsity_coefficient: ClassVar[str | None] = None

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(cfg).__name__}; build it with gptscope.sae.SAE(d_in, d_sae, kind=...)"
            )
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        # Training bookkeeping, not part of the saved weights: steps since each feature last
        # fired (for dead-feature detection, AuxK and resampling).
        self.register_buffer(
            "steps_since_fired", torch.zeros(d_sae, dtype=torch.long), persistent=False
        )

        self.hook_sae_input = HookPoint()
        self.hook_sae_acts_pre = HookPoint()
        self.hook_sae_acts_post = HookPoint()
        self.hook_sae_recons = HookPoint()
        self.hook_sae_output = HookPoint()
        self._init_extra_parameters()
        self.reset_parameters()

    def _init_extra_parameters(self) -> None:
        """Create variant-specific parameters (e.g. JumpReLU thresholds); filled by
        :meth:`reset_parameters`."""

    # ------------------------------------------------------------------ init & constraints
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random unit-norm decoder rows, encoder tied to the decoder's transpose, zero biases.

        Starting with ``W_enc = W_dec.T`` makes every feature initially fire on inputs that
        point along its own decoder direction, which speeds up early training (a choice
        shared by Anthropic's and OpenAI's recipes).
        """
        with torch.no_grad():
            w = torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=generator)
            w /= w.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            self.W_dec.copy_(w)
            self.W_enc.copy_(w.T)
            self.b_enc.zero_()
            self.b_dec.zero_()
            self.steps_since_fired.zero_()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every row of ``W_dec`` (``[d_sae, d_in]``) to unit L2 norm, in place."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Drop the part of ``W_dec.grad`` that points along each row, in place.

        With unit-norm rows the radial gradient only changes the norm, which
        :meth:`normalize_decoder_` undoes after the step anyway; removing it first keeps Adam's
        moment estimates from being spent on a direction that has no effect.
        """
        if self.W_dec.grad is None:
            return
        w = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        parallel = (self.W_dec.grad * w).sum(dim=-1, keepdim=True)
        self.W_dec.grad.sub_(parallel * w)

    def decoder_norms(self) -> torch.Tensor:
        """L2 norms of the decoder rows, ``[d_sae]``."""
        return self.W_dec.norm(dim=-1)

    @classmethod
    def resolve_coefficients(cls, given: Mapping[str, float]) -> dict[str, float]:
        """This kind's loss coefficients: its defaults with ``given`` overriding them.

        A name the kind does not declare, or a negative value, is a ValueError listing the
        kind's coefficients.
        """
        out = dict(cls.coefficient_defaults)
        for name, value in given.items():
            if name not in out:
                valid = ", ".join(out) or "none (sparsity is set by the SAE itself, e.g. k)"
                raise ValueError(
                    f"{name} does not apply to a {cls.config_class.kind!r} SAE; its "
                    f"coefficients: {valid}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
            out[name] = float(value)
        return out

    @torch.no_grad()
    def scale_input_space_(self, factor: float) -> None:
        """Make the SAE read activations ``factor`` times larger, in place: afterwards
        ``encode(factor * x)`` is ``factor`` times the old ``encode(x)`` and ``forward``
        likewise. Every kind's activation commutes with a positive scale, so only the biases
        (and a kind's own per-feature parameters, via :meth:`_scale_extras_`) change; the
        decoder directions stay as they are."""
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor!r}")
        self.b_dec.mul_(factor)
        self.b_enc.mul_(factor)
        self._scale_extras_(factor)

    def _scale_extras_(self, factor: float) -> None:
        """Scale a kind's own parameters for :meth:`scale_input_space_` (none here)."""

    def per_feature_parameters(self) -> list[tuple[nn.Parameter, int]]:
        """``(parameter, feature axis)`` for every parameter with one slice per feature
        (what resampling resets)."""
        return [(self.W_dec, 0), (self.W_enc, 1), (self.b_enc, 0)]

    def restart_features_(self, idx: torch.Tensor) -> None:
        """Reset a kind's own per-feature parameters of features ``idx`` after resampling
        (the shared ones are reset by :func:`~gptscope.sae.resample.resample_dead_features`)."""

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"SAE input must be a torch.Tensor, got {type(x).__name__}; "
                "convert with torch.as_tensor(x, dtype=torch.float32)"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"SAE input must be floating point, got dtype {x.dtype}; "
                "pass activations (e.g. x.float()), not token ids"
            )
        if x.ndim == 0 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"SAE expects inputs of shape [..., d_in={self.cfg.d_in}], got "
                f"{tuple(x.shape)}; use activations from a hook of width {self.cfg.d_in} "
                "or build the SAE with a matching d_in"
            )

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Map pre-activations ``[..., d_sae]`` to sparse activations ``[..., d_sae]``."""
        raise NotImplementedError

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``[..., d_sae]`` for inputs ``[..., d_in]`` (no hooks, no checks)."""
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return _affine(x, self.W_enc, self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` for inputs ``[..., d_in]``."""
        self._check_input(x)
        x = self.hook_sae_input(x)
        pre = self.hook_sae_acts_pre(self.encode_pre(x))
        return self.hook_sae_acts_post(self.activation(pre))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` from feature activations ``[..., d_sae]``."""
        if acts.ndim == 0 or acts.shape[-1] != self.cfg.d_sae:
            raise ValueError(
                f"decode expects feature activations of shape [..., d_sae={self.cfg.d_sae}], "
                f"got {tuple(acts.shape)}; pass the output of encode()"
            )
        return self.hook_sae_recons(_affine(acts, self.W_dec, self.b_dec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``: ``[..., d_in] -> [..., d_in]`` (shape preserved, so the SAE can be
        spliced into a model at a hook point)."""
        return self.hook_sae_output(self.decode(self.encode(x)))

    # ------------------------------------------------------------------ training
    def training_forward(self, x: torch.Tensor, **coefficients: float) -> TrainStepOutput:
        """Loss and its parts for a batch ``[batch, d_in]``; see each variant for the terms."""
        raise NotImplementedError

    @torch.no_grad()
    def _update_firing_stats(self, acts: torch.Tensor) -> torch.Tensor:
        """Advance ``steps_since_fired`` by one batch; returns the bool ``[d_sae]`` fired mask."""
        fired = fired_features(acts)
        self.steps_since_fired.add_(1)
        self.steps_since_fired[fired] = 0
        return fired

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``sae.safetensors`` and ``sae_config.json`` into folder ``path``.

        Each file is written to a temporary name first and then moved into place, so a
        crash never leaves a half-written SAE behind. Returns the folder.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        write_with(folder / WEIGHTS_FILENAME, lambda tmp: save_file(tensors, str(tmp)))
        write_text(folder / CONFIG_FILENAME,
                   json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> SAE:
        """Load an SAE saved with :meth:`save`. Called on ``SAE`` it picks the variant
        from the config's ``kind``; called on a variant it also checks the kind matches."""
        sae = load_sae(path, device=device)
        if cls is not SAE and not isinstance(sae, cls):
            raise ValueError(
                f"{path} holds a {sae.cfg.kind!r} SAE, not a {cls.__name__}; "
                "use gptscope.sae.load_sae(path) to load whatever kind it is"
            )
        return sae

    def extra_repr(self) -> str:
        return f"kind={self.cfg.kind!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` for ``x`` ``[..., n]``, as one fused ``addmm`` on the flattened
    rows (it saves a full pass over the output, which is a fifth of an SAE step on CPU)."""
    rows = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight)
    return rows.reshape(*x.shape[:-1], weight.shape[-1])


def register_sae(cls: type[SAE]) -> type[SAE]:
    """Class decorator: make a variant constructible by ``SAE(kind=...)`` and loadable."""
    SAE_REGISTRY[cls.config_class.kind] = cls
    return cls


def _lookup_kind(kind: str) -> type[SAE]:
    if kind not in SAE_REGISTRY:
        raise ValueError(
            f"unknown SAE kind {kind!r}; choose one of {sorted(SAE_REGISTRY)}"
        )
    return SAE_REGISTRY[kind]


def load_sae(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SAE:
    """Load an SAE folder written by :meth:`SAE.save` (any kind), or a shipped SAE by
    name (``gs.zoo.names()``, e.g. "stories-sae") when no such folder exists."""
    from gptscope.zoo import resolve

    folder = resolve(path)
    cfg_path, weights_path = folder / CONFIG_FILENAME, folder / WEIGHTS_FILENAME
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise ValueError(
                f"{p} not found; load_sae expects a folder written by sae.save(folder) "
                f"containing {CONFIG_FILENAME} and {WEIGHTS_FILENAME}"
            )
    data = read_json(cfg_path, "it was not written by sae.save(); re-save the SAE")
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"{cfg_path} has no 'kind' field; it was not written by sae.save()")
    version = data.get("format_version", _FORMAT_VERSION)
    if version > _FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format_version {version}, newer than this gptscope understands "
            f"({_FORMAT_VERSION}); upgrade gptscope"
        )
    cls = _lookup_kind(data["kind"])
    sae = cls(cls.config_class.from_dict(data))
    state = load_file(str(weights_path), device=str(device))
    missing = sorted(set(sae.state_dict()) - set(state))
    extra = sorted(set(state) - set(sae.state_dict()))
    if missing or extra:
        raise ValueError(
            f"{weights_path} does not match a {data['kind']!r} SAE: missing {missing}, "
            f"unexpected {extra}; re-save it with this version of gptscope"
        )
    sae.load_state_dict(state)
    return sae.to(device)


def _build(d_in: int, d_sae: int, kind: str = "relu", **kwargs: Any) -> SAE:
    """An SAE of the given ``kind``, its other keyword arguments going to that kind's config."""
    cls = _lookup_kind(kind)
    config_class = cls.config_class
    known = {f.name for f in dataclasses.fields(config_class)} - {"d_in", "d_sae"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for a {kind!r} SAE; valid options are {sorted(known)}"
        )
    return cls(config_class(d_in=d_in, d_sae=d_sae, **kwargs))
