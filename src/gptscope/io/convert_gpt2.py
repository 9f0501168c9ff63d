"""GPT-2 family (gpt2, distilgpt2, gpt2-medium/large/xl) <-> gptscope, both directions.

Hugging Face's GPT-2 stores its linear layers as ``Conv1D`` with weights ``[in, out]``
(the transpose of ``nn.Linear``), and fuses the query, key and value projections into one
``c_attn`` matrix ``[d_model, 3 * d_model]`` whose columns are ``[q | k | v]``, each
split into heads as ``(head, d_head)``. gptscope keeps TransformerLens's per-head shapes,
so the mapping is::

    wte.weight              [d_vocab, d_model]      -> embed.W_E
    wpe.weight              [n_ctx, d_model]        -> pos_embed.W_pos
    h.{l}.ln_1.weight/bias                          -> blocks.{l}.ln1.w/b
    h.{l}.attn.c_attn.weight [d_model, 3 d_model]   -> attn.W_Q/W_K/W_V [head, d_model, d_head]
    h.{l}.attn.c_attn.bias   [3 d_model]            -> attn.b_Q/b_K/b_V [head, d_head]
    h.{l}.attn.c_proj.weight [d_model, d_model]     -> attn.W_O [head, d_head, d_model]
    h.{l}.ln_2, mlp.c_fc, mlp.c_proj                -> ln2, mlp.W_in/b_in, mlp.W_out/b_out
    ln_f                                            -> ln_final
    lm_head.weight           [d_vocab, d_model]     -> unembed.W_U (only when untied)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.io.hf_config import hf_value

MODEL_TYPE = "gpt2"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
PREFIXES = ("transformer.",)
# Buffers older checkpoints saved next to the weights: the causal mask and its fill value.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu",
               "relu": "relu", "silu": "silu", "swish": "silu"}

Converter = Callable[[Tensor], dict[str, Tensor]]
Spec = dict[str, tuple[tuple[int, ...], Converter]]


def config_from_hf(hf: dict, names: set[str]) -> ModelConfig:
    """A ModelConfig from a GPT-2 ``config.json`` dict (``names``: the checkpoint's tensors)."""
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(
            f"GPT-2 activation_function {act!r} is not supported; gptscope maps "
            f"{sorted(ACTIVATIONS)}"
        )
    if hf.get("scale_attn_by_inverse_layer_idx"):
        raise ValueError("scale_attn_by_inverse_layer_idx=true is not supported by gptscope")
    if hf.get("scale_attn_weights") is False:
        raise ValueError("scale_attn_weights=false is not supported by gptscope")
    d_model = hf_value(hf, "n_embd", 768, int)
    return ModelConfig(
        n_layers=hf_value(hf, "n_layer", 12, int),
        d_model=d_model,
        n_heads=hf_value(hf, "n_head", 12, int),
        d_vocab=hf_value(hf, "vocab_size", 50257, int),
        n_ctx=hf_value(hf, "n_positions", hf_value(hf, "n_ctx", 1024, int), int),
        d_mlp=hf_value(hf, "n_inner", None, int, optional=True) or 4 * d_model,
        act_fn=ACTIVATIONS[act],
        eps=hf_value(hf, "layer_norm_epsilon", 1e-5, float),
        tie_embeddings=hf_value(hf, "tie_word_embeddings", True, bool),
        init_range=hf_value(hf, "initializer_range", 0.02, float),
    )


def hf_specs(cfg: ModelConfig) -> tuple[Spec, set[str]]:
    """Every Hugging Face tensor name -> (its shape, a converter to gptscope tensors).

    Returns the specs and the names that may be absent (``lm_head.weight`` when tied).
    """
    d, H, dh, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_vocab

    def same(ours: str) -> Converter:
        return lambda t: {ours: t}

    def qkv_weight(layer: int) -> Converter:
        def convert(t: Tensor) -> dict[str, Tensor]:
            # [d_model, (3, head, d_head)] -> three [head, d_model, d_head]
            parts = t.view(d, 3, H, dh).permute(1, 2, 0, 3)
            return {f"blocks.{layer}.attn.W_{x}": parts[i].contiguous()
                    for i, x in enumerate("QKV")}
        return convert

    def qkv_bias(layer: int) -> Converter:
        def convert(t: Tensor) -> dict[str, Tensor]:
            parts = t.view(3, H, dh)
            return {f"blocks.{layer}.attn.b_{x}": parts[i].clone() for i, x in enumerate("QKV")}
        return convert

    spec: Spec = {
        "wte.weight": ((V, d), same("embed.W_E")),
        "wpe.weight": ((cfg.n_ctx, d), same("pos_embed.W_pos")),
        "ln_f.weight": ((d,), same("ln_final.w")),
        "ln_f.bias": ((d,), same("ln_final.b")),
    }
    for i in range(cfg.n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        spec[h + "ln_1.weight"] = ((d,), same(b + "ln1.w"))
        spec[h + "ln_1.bias"] = ((d,), same(b + "ln1.b"))
        spec[h + "attn.c_attn.weight"] = ((d, 3 * d), qkv_weight(i))
        spec[h + "attn.c_attn.bias"] = ((3 * d,), qkv_bias(i))
        spec[h + "attn.c_proj.weight"] = (
            (d, d), lambda t, k=b + "attn.W_O": {k: t.view(H, dh, d)})
        spec[h + "attn.c_proj.bias"] = ((d,), same(b + "attn.b_O"))
        spec[h + "ln_2.weight"] = ((d,), same(b + "ln2.w"))
        spec[h + "ln_2.bias"] = ((d,), same(b + "ln2.b"))
        spec[h + "mlp.c_fc.weight"] = ((d, cfg.d_mlp), same(b + "mlp.W_in"))
        spec[h + "mlp.c_fc.bias"] = ((cfg.d_mlp,), same(b + "mlp.b_in"))
        spec[h + "mlp.c_proj.weight"] = ((cfg.d_mlp, d), same(b + "mlp.W_out"))
        spec[h + "mlp.c_proj.bias"] = ((d,), same(b + "mlp.b_out"))
    optional: set[str] = set()
    if cfg.tie_embeddings:
        # Tied: transformers ignores any stored lm_head.weight, and so do we.
        spec["lm_head.weight"] = ((V, d), lambda t: {})
        optional.add("lm_head.weight")
    else:
        spec["lm_head.weight"] = ((V, d), lambda t: {"unembed.W_U": t.t().contiguous()})
    return spec, optional


def ignored(name: str) -> bool:
    """Whether a checkpoint tensor is a saved buffer rather than a weight."""
    return name.endswith(IGNORED_SUFFIXES)


# -- export ---------------------------------------------------------------------------------


def export_problems(cfg: ModelConfig) -> list[str]:
    """What keeps ``cfg`` from being a GPT2LMHeadModel (empty when it fits)."""
    wants = {
        "causal": (cfg.causal, True),
        "norm_position": (cfg.norm_position, "pre"),
        "normalization": (cfg.normalization, "layer"),
        "positional": (cfg.positional, "learned"),
        "final_norm": (cfg.final_norm, True),
        "attn_only": (cfg.attn_only, False),
        "embed_norm": (cfg.embed_norm, False),
        "n_token_types": (cfg.n_token_types, 0),
        "mlm_head": (cfg.mlm_head, False),
    }
    problems = [f"{k}={got!r} (needs {want!r})" for k, (got, want) in wants.items() if got != want]
    if cfg.n_heads * cfg.d_head != cfg.d_model:
        problems.append(f"n_heads*d_head={cfg.n_heads * cfg.d_head} != d_model={cfg.d_model}")
    return problems


def to_hf(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """gptscope state dict -> GPT2LMHeadModel tensors (missing biases written as zeros)."""
    d, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head

    def get(name: str, shape: tuple[int, ...]) -> Tensor:
        if name in state:
            return state[name]
        return torch.zeros(shape, dtype=state["embed.W_E"].dtype)

    out = {
        "transformer.wte.weight": state["embed.W_E"],
        "transformer.wpe.weight": state["pos_embed.W_pos"],
        "transformer.ln_f.weight": state["ln_final.w"],
        "transformer.ln_f.bias": state["ln_final.b"],
    }
    for i in range(cfg.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        qkv = [state[f"{b}attn.W_{x}"] for x in "QKV"]  # [head, d_model, d_head] each
        out[h + "attn.c_attn.weight"] = torch.stack(qkv).permute(2, 0, 1, 3).reshape(d, 3 * d)
        out[h + "attn.c_attn.bias"] = torch.cat(
            [get(f"{b}attn.b_{x}", (H, dh)).reshape(-1) for x in "QKV"])
        out[h + "attn.c_proj.weight"] = state[b + "attn.W_O"].reshape(d, d)
        out[h + "attn.c_proj.bias"] = get(b + "attn.b_O", (d,))
        out[h + "ln_1.weight"], out[h + "ln_1.bias"] = state[b + "ln1.w"], state[b + "ln1.b"]
        out[h + "ln_2.weight"], out[h + "ln_2.bias"] = state[b + "ln2.w"], state[b + "ln2.b"]
        out[h + "mlp.c_fc.weight"] = state[b + "mlp.W_in"]
        out[h + "mlp.c_fc.bias"] = get(b + "mlp.b_in", (cfg.d_mlp,))
        out[h + "mlp.c_proj.weight"] = state[b + "mlp.W_out"]
        out[h + "mlp.c_proj.bias"] = get(b + "mlp.b_out", (d,))
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["unembed.W_U"].t()
    return out


def hf_config(cfg: ModelConfig, eos_token_id: int | None) -> dict:
    """The ``config.json`` of a GPT2LMHeadModel with ``cfg``'s shapes."""
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.d_vocab,
        "n_positions": cfg.n_ctx,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_mlp,
        "activation_function": cfg.act_fn,
        "layer_norm_epsilon": cfg.eps,
        "initializer_range": cfg.init_range,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings,
        "scale_attn_weights": True,
        "use_cache": True,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
    }
