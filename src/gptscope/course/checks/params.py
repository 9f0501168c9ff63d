"""Check for lesson 7: the parameter count of any ``Transformer`` config, from the config.

The cases are GPT-2 small and a few hand-picked shapes, then seeded random configs over
every option the docstring names; the truth is the model's own count, built on the meta
device. A wrong count is named by the switch it ignores (it equals the count of the same
config with that switch flipped) or by the part it leaves out or adds (it is off by exactly
that part's size).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

from gptscope.config import ModelConfig
from gptscope.course.checks._common import Ambiguous, Mismatch, call, run_check, verdict
from gptscope.course.result import CheckResult
from gptscope.model.transformer import Transformer

N_RANDOM = 200
MAX_FAILURES = 12  # enough cases to tell the mistakes apart; the rest would only take time

FIXED = [
    {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_vocab": 100, "n_ctx": 32},
    {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_vocab": 50257, "n_ctx": 1024},
    {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_vocab": 100, "n_ctx": 64,
     "attn_only": True, "positional": "sinusoidal", "normalization": None},
    {"n_layers": 3, "d_model": 48, "n_heads": 3, "d_vocab": 70, "n_ctx": 20,
     "tie_embeddings": True},
]


def random_configs(n: int = N_RANDOM, seed: int = 0) -> Iterator[ModelConfig]:
    """``n`` valid configs drawn over every option that changes the count."""
    rng = random.Random(seed)
    made = 0
    while made < n:
        d_model, n_heads = rng.choice([8, 12, 16, 24, 30]), rng.choice([1, 2, 3, 4])
        options = {
            "n_layers": rng.randint(0, 3), "d_model": d_model, "n_heads": n_heads,
            "d_vocab": rng.randint(5, 60), "n_ctx": rng.randint(4, 40),
            "d_head": rng.choice([None, rng.randint(2, 9)]),
            "d_mlp": rng.choice([None, rng.randint(3, 50)]),
            "normalization": rng.choice(["layer", "rms", None]),
            "positional": rng.choice(["learned", "sinusoidal", "rotary", None]),
            "attn_only": rng.random() < 0.3, "tie_embeddings": rng.random() < 0.3,
            "norm_position": rng.choice(["pre", "pre", "post"]),
            "embed_norm": rng.random() < 0.3, "final_norm": rng.random() < 0.8,
            "n_token_types": rng.choice([0, 0, 2]), "attn_bias": rng.random() < 0.7,
            "mlp_bias": rng.random() < 0.7, "unembed_bias": rng.random() < 0.3,
            "mlm_head": rng.random() < 0.2,
        }
        try:
            yield ModelConfig(**options)
        except ValueError:  # e.g. d_model not divisible by n_heads, post-norm without a norm
            continue
        made += 1


@functools.lru_cache(maxsize=4096)
def _counts(cfg_items: tuple) -> tuple[int, dict[str, int]]:
    """(the model's parameter count, the count of each part) for a config's fields."""
    cfg = ModelConfig(**dict(cfg_items))
    parts: dict[str, int] = {}
    for name, p in Transformer(cfg, device="meta").named_parameters():
        part = _part(name)
        parts[part] = parts.get(part, 0) + p.numel()
    return sum(parts.values()), parts


def model_count(cfg: ModelConfig) -> tuple[int, dict[str, int]]:
    fields = tuple((k, v) for k, v in dataclasses.asdict(cfg).items() if k != "extra")
    return _counts(fields)


PARTS = [  # (pattern on the parameter's name, the part, as the message names it)
    (r"^pos_embed\.", "the learned position embeddings W_pos"),
    (r"^token_type_embed\.", "BERT's token-type embeddings"),
    (r"^unembed\.W_U", "the unembedding W_U"),
    (r"^unembed\.b_U", "the unembedding bias b_U"),
    (r"attn\.b_", "the attention biases (b_Q, b_K, b_V of n_heads * d_head, b_O of d_model)"),
    (r"attn\.W_", "the attention weights"),
    (r"mlp\.b_", "the MLP biases (b_in, b_out)"),
    (r"mlp\.W_", "the MLP weights"),
    (r"^mlm_head\.(W|b)$", "the MLM head's dense layer"),
    (r"\.(w|b)$", "the norms (each LayerNorm a weight and a bias of d_model, an RMSNorm a "
     "weight only)"),
    (r"^embed\.W_E", "the token embedding W_E"),
]


def _part(name: str) -> str:
    return next(part for pattern, part in PARTS if re.search(pattern, name))


# A switch the answer may ignore, counting as if it held its default: (field, advice).
SWITCHES = [
    ("d_head", "the head size is cfg.d_head, which need not be d_model / n_heads"),
    ("d_mlp", "the MLP width is cfg.d_mlp, which need not be 4 * d_model"),
    ("attn_only", "attention-only blocks have no MLP and no ln2 (pre-norm)"),
    ("tie_embeddings", "with tied embeddings W_U is W_E: count it once"),
    ("positional", "only learned positions have parameters (W_pos)"),
    ("normalization", "an RMSNorm has a weight and no bias; no norm, nothing"),
    ("attn_bias", "the attention biases exist only when cfg.attn_bias"),
    ("mlp_bias", "the MLP biases exist only when cfg.mlp_bias"),
    ("unembed_bias", "b_U [d_vocab] exists only when cfg.unembed_bias"),
    ("embed_norm", "the embeddings' norm exists only when cfg.embed_norm"),
    ("final_norm", "ln_final exists only when cfg.final_norm (and pre-norm)"),
    ("mlm_head", "the MLM head (W [d, d], b [d], a norm) exists only when cfg.mlm_head"),
    ("n_token_types", "token-type embeddings are [n_token_types, d_model]"),
    ("norm_position", "post-norm models have no ln_final, and attention-only blocks then "
     "have ln2"),
]
DEFAULTS = ModelConfig()


def _ignored_switches(got: int, cfg: ModelConfig) -> list[str]:
    """The switches set away from their default whose default gives exactly ``got``."""
    found = []
    for field, advice in SWITCHES:
        default = getattr(DEFAULTS, field)
        if field in ("d_head", "d_mlp"):  # the defaults these derive from the shape
            default = cfg.d_model // cfg.n_heads if field == "d_head" else 4 * cfg.d_model
        if getattr(cfg, field) == default:
            continue
        try:
            other = dataclasses.replace(cfg, **{field: default})
        except ValueError:
            continue
        if model_count(other)[0] == got:
            found.append(f"your count ignores cfg.{field}: {advice}")
    return found


def _case_label(cfg: ModelConfig) -> str:
    defaults = ModelConfig()
    shown = [f"{k}={v!r}" for k, v in dataclasses.asdict(cfg).items()
             if k not in ("extra", "seed") and (k in ("n_layers", "d_model", "n_heads",
                                                      "d_vocab", "n_ctx")
                                                or v != getattr(defaults, k))]
    return "ModelConfig(" + ", ".join(shown) + ")"


def _count_case(fn: Callable[..., Any], cfg: ModelConfig) -> str:
    want, parts = model_count(cfg)
    case = _case_label(cfg)
    got = call(fn, cfg)
    if isinstance(got, bool) or not isinstance(got, int):
        raise Mismatch(f"return an int, got {type(got).__name__}", [f"case: {case}"])
    if got == want:
        return f"{case}: {want:,}"
    details = [f"case: {case}", f"counted {got:,}, the model has {want:,}"]
    # A switch is the more specific explanation; of the parts, the first in PARTS' order
    # (W_U before W_E: they have the same size, and W_U is the one people forget).
    named = _ignored_switches(got, cfg) or [
        f"you {'missed' if want > got else 'counted twice'} {part}"
        for _, part in PARTS if parts.get(part) and abs(want - got) == parts[part]][:1]
    if len(named) > 1:
        raise Ambiguous(named, details)
    if named:
        raise Mismatch(named[0], details, matched=named)
    raise Mismatch(f"{case}: counted {got:,}, the model has {want:,}", details)


def check_count_params(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        passed, failures = [], []
        configs = [ModelConfig(**kw) for kw in FIXED] + list(random_configs())
        for cfg in configs:
            try:
                passed.append(_count_case(fn, cfg))
            except Mismatch as failure:
                failures.append(failure)
                if len(failures) == MAX_FAILURES:
                    break
        if failures:
            raise verdict(failures)
        return passed[:len(FIXED)] + [f"and {len(passed) - len(FIXED)} random configs"]
    return run_check("count_params", body)
