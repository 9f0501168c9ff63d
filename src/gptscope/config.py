"""ModelConfig: every shape and choice of a gptscope Transformer, validated, JSON round-trip."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACT_FNS = ("relu", "gelu", "gelu_new", "silu")
NORMALIZATIONS = ("layer", "rms", None)
POSITIONALS = ("learned", "sinusoidal", "rotary", None)
NORM_POSITIONS = ("pre", "post")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"unknown {name} {value!r}; choose one of {shown}")


@dataclass
class ModelConfig:
    """Shapes and switches of a Transformer.

    One class covers GPT-2 (the defaults), attention-only toy models (``attn_only=True``),
    BERT-style encoders (``causal=False, norm_position="post", embed_norm=True``) and
    rotary or sinusoidal positions.
    """

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_vocab: int = 256
    n_ctx: int = 128
    d_head: int | None = None  # default d_model // n_heads
    d_mlp: int | None = None  # default 4 * d_model
    act_fn: str = "gelu_new"
    normalization: str | None = "layer"
    positional: str | None = "learned"
    attn_only: bool = False
    causal: bool = True
    tie_embeddings: bool = False
    dropout: float = 0.0
    init_range: float = 0.02
    seed: int | None = None
    # Less common switches, needed to express real models exactly.
    norm_position: str = "pre"  # "post" = BERT's LayerNorm after each residual add
    embed_norm: bool = False  # LayerNorm on the embeddings (BERT)
    final_norm: bool = True  # ln_final before the unembedding (pre-LN models)
    n_token_types: int = 0  # BERT's segment embeddings
    eps: float = 1e-5
    rotary_dim: int | None = None  # default d_head
    rotary_base: float = 10000.0
    attn_bias: bool = True
    mlp_bias: bool = True
    unembed_bias: bool = False
    mlm_head: bool = False  # BERT's masked-LM transform (dense, act, LayerNorm) before W_U
    extra: dict = field(default_factory=dict)  # free-form provenance, e.g. the source architecture

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_vocab", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {self.n_layers}")
        for name in ("d_model", "n_heads", "d_vocab", "n_ctx"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    f"pick n_heads dividing d_model (e.g. {_divisors(self.d_model)}) "
                    "or set d_head explicitly"
                )
            self.d_head = self.d_model // self.n_heads
        if self.d_head < 1:
            raise ValueError(f"d_head must be >= 1, got {self.d_head}")
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.d_mlp < 1:
            raise ValueError(f"d_mlp must be >= 1, got {self.d_mlp}")
        _choice("act_fn", self.act_fn, ACT_FNS)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("positional", self.positional, POSITIONALS)
        _choice("norm_position", self.norm_position, NORM_POSITIONS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init_range <= 0:
            raise ValueError(f"init_range must be > 0, got {self.init_range}")
        if self.positional == "rotary":
            if self.rotary_dim is None:
                self.rotary_dim = self.d_head
            if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.d_head:
                raise ValueError(
                    f"rotary_dim={self.rotary_dim} must be even and in (0, d_head={self.d_head}]"
                )
        if self.norm_position == "post" and self.normalization is None:
            raise ValueError("norm_position='post' needs a normalization ('layer' or 'rms')")

    @property
    def n_params(self) -> int:
        """Parameters in the blocks (embeddings excluded), as in scaling-law papers."""
        attn = 4 * self.n_heads * self.d_head * self.d_model
        mlp = 0 if self.attn_only else 2 * self.d_model * self.d_mlp
        return self.n_layers * (attn + mlp)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown ModelConfig fields {unknown}; known fields are {sorted(known)}"
            )
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ModelConfig:
        path = Path(text_or_path)
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"model config is not valid JSON ({e}); re-save it") from e
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (derived fields recomputed unless given)."""
        data = self.to_dict()
        for derived in ("d_head", "d_mlp", "rotary_dim"):
            if derived not in changes and _derived_default(self, derived):
                data[derived] = None
        data.update(changes)
        return ModelConfig.from_dict(data)


def _derived_default(cfg: ModelConfig, name: str) -> bool:
    if name == "d_head":
        return cfg.d_head == cfg.d_model // cfg.n_heads
    if name == "d_mlp":
        return cfg.d_mlp == 4 * cfg.d_model
    return cfg.rotary_dim in (None, cfg.d_head)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, min(n, 64) + 1) if n % d == 0)
