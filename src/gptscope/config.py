"""ModelConfig: every shape and choice of a gptscope Transformer, validated, JSON round-trip.

Configs arrive as hand-edited JSON, so every field is checked as data (``"no"`` is not a
bool, ``1e8`` is not an int) by the validator all gptscope configs share,
`gptscope.utils.fields`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gptscope.utils.fields import checked, known_fields, validate_fields
from gptscope.utils.files import read_text


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


# The MLP activations by the name ``act_fn`` gives; adding one is adding it here.
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_new": gelu_new, "silu": F.silu}
ACT_FNS = tuple(ACTIVATIONS)
NORMALIZATIONS = ("layer", "rms", None)
POSITIONALS = ("learned", "sinusoidal", "rotary", None)
NORM_POSITIONS = ("pre", "post")
# Far beyond any context gptscope can attend over (2**20 positions is 2**40 attention scores
# per head and layer), yet small enough that a typo such as n_ctx=1e8 fails here instead of
# allocating a [n_ctx, d_model] learned W_pos of tens of GB.
MAX_N_CTX = 2**20
# Fields a saved config.json may omit: the rest change what a loaded model computes, and a
# default filled in for a missing one (act_fn="gelu_new" for a relu model) would silently
# change its outputs. seed and init_range only shape a fresh initialisation; extra is notes.
# image_shape and patch_size came later: a file without them is a token model, their default.
OPTIONAL_IN_FILES = frozenset({"extra", "seed", "init_range", "image_shape", "patch_size",
                               "cross_attention"})

@dataclass
class ModelConfig:
    """Shapes and switches of a Transformer.

    One class covers GPT-2 (the defaults), attention-only toy models (``attn_only=True``),
    BERT-style encoders (``causal=False, norm_position="post", embed_norm=True``) and
    rotary or sinusoidal positions.
    """

    n_layers: int = checked(2, ge=0)
    d_model: int = checked(128, ge=1)
    n_heads: int = checked(4, ge=1)
    d_vocab: int = checked(256, ge=1)
    n_ctx: int = checked(128, ge=1, le=MAX_N_CTX, hint="n_ctx is the longest sequence the model "
                         f"reads; gptscope caps it at 2**20 = {MAX_N_CTX:,} positions")
    d_head: int | None = checked(None, ge=1)  # default d_model // n_heads
    d_mlp: int | None = checked(None, ge=1)  # default 4 * d_model
    act_fn: str = checked("gelu_new", choices=ACT_FNS)
    normalization: str | None = checked("layer", choices=NORMALIZATIONS)
    positional: str | None = checked("learned", choices=POSITIONALS)
    attn_only: bool = False
    causal: bool = True
    tie_embeddings: bool = False
    dropout: float = checked(0.0, ge=0, lt=1)
    init_range: float = checked(0.02, gt=0)
    seed: int | None = None
    # Less common switches, needed to express real models exactly.
    norm_position: str = checked("pre", choices=NORM_POSITIONS)  # "post": BERT's LN after adds
    embed_norm: bool = False  # LayerNorm on the embeddings (BERT)
    final_norm: bool = True  # ln_final before the unembedding (pre-LN models)
    n_token_types: int = checked(0, ge=0)  # BERT's segment embeddings
    eps: float = checked(1e-5, gt=0)
    rotary_dim: int | None = checked(None, ge=1)  # default d_head
    rotary_base: float = checked(10000.0, gt=0)
    attn_bias: bool = True
    mlp_bias: bool = True
    unembed_bias: bool = False
    mlm_head: bool = False  # BERT's masked-LM transform (dense, act, LayerNorm) before W_U
    # An encoder-decoder's decoder (gptscope.model.encoder_decoder): each block also attends
    # to the encoder's output. A file without the field predates it: False, its default.
    cross_attention: bool = False
    # A vision transformer (gptscope.model.vision): the input is images [batch, C, H, W]
    # cut into patch_size x patch_size patches; d_vocab is then the number of classes.
    image_shape: tuple[int, int, int] | None = checked(None, ge=1)  # (channels, height, width)
    patch_size: int | None = checked(None, ge=1)
    extra: dict = field(default_factory=dict)  # free-form provenance, e.g. the source architecture

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    f"pick n_heads dividing d_model (e.g. {_divisors(self.d_model)}) "
                    "or set d_head explicitly"
                )
            self.d_head = self.d_model // self.n_heads
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.positional == "rotary":
            if self.rotary_dim is None:
                self.rotary_dim = self.d_head
            if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.d_head:
                raise ValueError(
                    f"ModelConfig.rotary_dim={self.rotary_dim} must be even and in "
                    f"(0, d_head={self.d_head}]; use an even value up to d_head"
                )
        if self.norm_position == "post" and self.normalization is None:
            raise ValueError("ModelConfig.norm_position='post' needs a normalization "
                             "('layer' or 'rms'); set one or use norm_position='pre'")
        _check_vision(self)
        if self.cross_attention and self.norm_position == "post":
            raise ValueError("ModelConfig.cross_attention=True is built for pre-LN blocks; set "
                             "norm_position='pre' (the Annotated Transformer's layout)")

    @property
    def is_vision(self) -> bool:
        """True for a vision transformer: images in, class logits out."""
        return self.image_shape is not None

    @property
    def n_patches(self) -> int:
        """Patches per image of a vision transformer (raster order), 0 for a token model."""
        if self.image_shape is None:
            return 0
        _, height, width = self.image_shape
        return (height // self.patch_size) * (width // self.patch_size)

    @property
    def n_params(self) -> int:
        """Parameters in the blocks (embeddings excluded), as in scaling-law papers."""
        attn = 4 * self.n_heads * self.d_head * self.d_model
        attn *= 2 if self.cross_attention else 1  # the cross-attention's own Q, K, V, O
        mlp = 0 if self.attn_only else 2 * self.d_model * self.d_mlp
        return self.n_layers * (attn + mlp)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A config from a dict of fields; fields left out take their defaults."""
        return cls(**known_fields(cls, data))

    @classmethod
    def from_saved(cls, data: Any, source: str | Path) -> ModelConfig:
        """A config read back from a saved file; ``source`` names the file in errors.

        Unlike ``from_dict``, every field but ``OPTIONAL_IN_FILES`` must be present:
        ``to_json`` writes them all, and a default filled in for a missing one would
        silently change what the loaded model computes.
        """
        try:
            known_fields(cls, data)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.name not in OPTIONAL_IN_FILES]
        if missing:
            raise ValueError(
                f"{source} lacks the fields {missing}. A saved model config must state every "
                "field that changes the computation: a default filled in (e.g. "
                "act_fn='gelu_new' for a relu model) would silently change its outputs. Add "
                "them, or re-save the model with gs.save"
            )
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ModelConfig:
        """Parse JSON text or a ``config.json`` file, as written by ``to_json``.

        Both are saved configs, so every field but ``OPTIONAL_IN_FILES`` is required.
        """
        text = str(text_or_path)
        if text.lstrip().startswith("{"):
            source = "the model config text"
        else:
            source = str(text_or_path)
            text = read_text(text_or_path, "a config file is JSON text; re-save it with gs.save")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not valid JSON ({e}); re-save it with gs.save") from e
        return cls.from_saved(data, source)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (derived fields recomputed unless given)."""
        data = self.to_dict()
        for derived in ("d_head", "d_mlp", "rotary_dim"):
            if derived not in changes and _derived_default(self, derived):
                data[derived] = None
        data.update(changes)
        return ModelConfig.from_dict(data)


def _check_vision(cfg: ModelConfig) -> None:
    """A vision config cuts whole patches, sees every patch (no causal mask) and holds one
    learned position per patch plus the class token."""
    if (cfg.image_shape is None) != (cfg.patch_size is None):
        raise ValueError(f"ModelConfig.image_shape={cfg.image_shape} and patch_size="
                         f"{cfg.patch_size}: a vision transformer needs both, a token model "
                         "neither; set both (e.g. image_shape=(1, 8, 8), patch_size=2)")
    if cfg.image_shape is None:
        return
    cfg.image_shape = tuple(cfg.image_shape)  # a JSON list comes back as the tuple it was
    _, height, width = cfg.image_shape
    p = cfg.patch_size
    if height % p or width % p:
        raise ValueError(f"ModelConfig.image_shape={cfg.image_shape}: height {height} and "
                         f"width {width} must be divisible by patch_size={p}; pick a patch "
                         f"size dividing both (e.g. {_divisors(math.gcd(height, width))})")
    problems = {"causal": (cfg.causal, False), "positional": (cfg.positional, "learned"),
                "tie_embeddings": (cfg.tie_embeddings, False),
                "n_token_types": (cfg.n_token_types, 0),
                "n_ctx": (cfg.n_ctx, 1 + cfg.n_patches)}
    for name, (value, want) in problems.items():
        if value != want:
            raise ValueError(
                f"ModelConfig.{name}={value!r} does not fit a vision transformer (image_shape="
                f"{cfg.image_shape}, patch_size={p}: {cfg.n_patches} patches and the class "
                f"token); set {name}={want!r}")


def _derived_default(cfg: ModelConfig, name: str) -> bool:
    if name == "d_head":
        return cfg.d_head == cfg.d_model // cfg.n_heads
    if name == "d_mlp":
        return cfg.d_mlp == 4 * cfg.d_model
    return cfg.rotary_dim in (None, cfg.d_head)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, min(n, 64) + 1) if n % d == 0)
