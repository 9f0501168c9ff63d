"""BERT family (BertModel, BertForMaskedLM; MiniLM is BERT-shaped) <-> gptscope.

BERT is a post-LN encoder: LayerNorm after each residual add, a LayerNorm on the summed
word + position + segment embeddings, and no final LayerNorm. Its linear layers are
``nn.Linear`` (weights ``[out, in]``). The mapping (``bert.`` prefix stripped)::

    embeddings.word_embeddings        -> embed.W_E
    embeddings.position_embeddings    -> pos_embed.W_pos
    embeddings.token_type_embeddings  -> token_type_embed.weight
    embeddings.LayerNorm              -> embed_ln
    encoder.layer.{l}.attention.self.query/key/value [head*d_head, d_model]
                                      -> blocks.{l}.attn.W_Q/W_K/W_V [head, d_model, d_head]
    attention.output.dense            -> attn.W_O [head, d_head, d_model], b_O
    attention.output.LayerNorm        -> ln1  (applied to resid_mid)
    intermediate.dense, output.dense  -> mlp.W_in/b_in, mlp.W_out/b_out
    output.LayerNorm                  -> ln2  (applied to resid_post)
    cls.predictions.transform.*       -> mlm_head.W/b, mlm_head.ln  (BertForMaskedLM)
    cls.predictions.bias              -> unembed.b_U; the decoder is tied to W_E

A BertModel has no unembedding: its gptscope twin keeps the tied ``W_E`` as ``W_U`` (an
approximation of no trained head; compare hidden states, not logits, with such models).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.io.hf_config import hf_value

MODEL_TYPE = "bert"
ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining")
PREFIXES = ("bert.",)
IGNORED_PREFIXES = ("pooler.", "cls.seq_relationship.")
IGNORED_NAMES = ("embeddings.position_ids",)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new",
               "relu": "relu", "silu": "silu", "swish": "silu"}
MLM_KEY = "cls.predictions.transform.dense.weight"

Converter = Callable[[Tensor], dict[str, Tensor]]
Spec = dict[str, tuple[tuple[int, ...], Converter]]


def normalize_name(name: str) -> str:
    """Old TensorFlow-era checkpoints call LayerNorm's weight ``gamma`` and bias ``beta``."""
    if name.endswith(".gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name


def config_from_hf(hf: dict, names: set[str]) -> ModelConfig:
    """A ModelConfig from a BERT ``config.json`` dict; an MLM head when the file has one."""
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ValueError(
            f"BERT hidden_act {act!r} is not supported; gptscope maps {sorted(ACTIVATIONS)}"
        )
    kind = hf.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"BERT position_embedding_type {kind!r} is not supported; only 'absolute' is"
        )
    mlm = MLM_KEY in names
    return ModelConfig(
        n_layers=hf_value(hf, "num_hidden_layers", 12, int),
        d_model=hf_value(hf, "hidden_size", 768, int),
        n_heads=hf_value(hf, "num_attention_heads", 12, int),
        d_vocab=hf_value(hf, "vocab_size", 30522, int),
        n_ctx=hf_value(hf, "max_position_embeddings", 512, int),
        d_mlp=hf_value(hf, "intermediate_size", 3072, int),
        act_fn=ACTIVATIONS[act],
        eps=hf_value(hf, "layer_norm_eps", 1e-12, float),
        causal=False,
        norm_position="post",
        embed_norm=True,
        final_norm=False,
        n_token_types=hf_value(hf, "type_vocab_size", 2, int),
        tie_embeddings=hf_value(hf, "tie_word_embeddings", True, bool) or not mlm,
        unembed_bias=mlm,
        mlm_head=mlm,
        init_range=hf_value(hf, "initializer_range", 0.02, float),
    )


def hf_specs(cfg: ModelConfig) -> tuple[Spec, set[str]]:
    """Every Hugging Face tensor name -> (its shape, a converter to gptscope tensors).

    Returns the specs and the names that may be absent.
    """
    d, H, dh, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_vocab

    def same(ours: str) -> Converter:
        return lambda t: {ours: t}

    def heads_in(ours: str) -> Converter:  # [head*d_head, d_model] -> [head, d_model, d_head]
        return lambda t: {ours: t.view(H, dh, d).transpose(1, 2).contiguous()}

    def transposed(ours: str) -> Converter:
        return lambda t: {ours: t.t().contiguous()}

    spec: Spec = {
        "embeddings.word_embeddings.weight": ((V, d), same("embed.W_E")),
        "embeddings.position_embeddings.weight": ((cfg.n_ctx, d), same("pos_embed.W_pos")),
        "embeddings.token_type_embeddings.weight": (
            (cfg.n_token_types, d), same("token_type_embed.weight")),
        "embeddings.LayerNorm.weight": ((d,), same("embed_ln.w")),
        "embeddings.LayerNorm.bias": ((d,), same("embed_ln.b")),
    }
    for i in range(cfg.n_layers):
        h, b = f"encoder.layer.{i}.", f"blocks.{i}."
        for hf_name, x in (("query", "Q"), ("key", "K"), ("value", "V")):
            spec[f"{h}attention.self.{hf_name}.weight"] = ((H * dh, d), heads_in(f"{b}attn.W_{x}"))
            spec[f"{h}attention.self.{hf_name}.bias"] = (
                (H * dh,), lambda t, k=f"{b}attn.b_{x}": {k: t.view(H, dh)})
        spec[h + "attention.output.dense.weight"] = (
            (d, H * dh), lambda t, k=b + "attn.W_O": {k: t.t().reshape(H, dh, d).contiguous()})
        spec[h + "attention.output.dense.bias"] = ((d,), same(b + "attn.b_O"))
        spec[h + "attention.output.LayerNorm.weight"] = ((d,), same(b + "ln1.w"))
        spec[h + "attention.output.LayerNorm.bias"] = ((d,), same(b + "ln1.b"))
        spec[h + "intermediate.dense.weight"] = ((cfg.d_mlp, d), transposed(b + "mlp.W_in"))
        spec[h + "intermediate.dense.bias"] = ((cfg.d_mlp,), same(b + "mlp.b_in"))
        spec[h + "output.dense.weight"] = ((d, cfg.d_mlp), transposed(b + "mlp.W_out"))
        spec[h + "output.dense.bias"] = ((d,), same(b + "mlp.b_out"))
        spec[h + "output.LayerNorm.weight"] = ((d,), same(b + "ln2.w"))
        spec[h + "output.LayerNorm.bias"] = ((d,), same(b + "ln2.b"))
    optional: set[str] = set()
    if cfg.mlm_head:
        p = "cls.predictions."
        spec[p + "transform.dense.weight"] = ((d, d), transposed("mlm_head.W"))
        spec[p + "transform.dense.bias"] = ((d,), same("mlm_head.b"))
        spec[p + "transform.LayerNorm.weight"] = ((d,), same("mlm_head.ln.w"))
        spec[p + "transform.LayerNorm.bias"] = ((d,), same("mlm_head.ln.b"))
        spec[p + "bias"] = ((V,), same("unembed.b_U"))
        # The decoder's bias is the same tensor as cls.predictions.bias.
        spec[p + "decoder.bias"] = ((V,), lambda t: {})
        optional.add(p + "decoder.bias")
        if cfg.tie_embeddings:
            spec[p + "decoder.weight"] = ((V, d), lambda t: {})
            optional.add(p + "decoder.weight")
        else:
            spec[p + "decoder.weight"] = ((V, d), transposed("unembed.W_U"))
    return spec, optional


def ignored(name: str) -> bool:
    """Parts gptscope does not model: the pooler, the next-sentence head, saved buffers."""
    return name.startswith(IGNORED_PREFIXES) or name in IGNORED_NAMES


# -- export ---------------------------------------------------------------------------------


def export_problems(cfg: ModelConfig) -> list[str]:
    """What keeps ``cfg`` from being a BertModel / BertForMaskedLM (empty when it fits)."""
    wants = {
        "causal": (cfg.causal, False),
        "norm_position": (cfg.norm_position, "post"),
        "normalization": (cfg.normalization, "layer"),
        "positional": (cfg.positional, "learned"),
        "embed_norm": (cfg.embed_norm, True),
        "attn_only": (cfg.attn_only, False),
    }
    problems = [f"{k}={got!r} (needs {want!r})" for k, (got, want) in wants.items() if got != want]
    if cfg.n_heads * cfg.d_head != cfg.d_model:
        problems.append(f"n_heads*d_head={cfg.n_heads * cfg.d_head} != d_model={cfg.d_model}")
    if not cfg.mlm_head and (not cfg.tie_embeddings or cfg.unembed_bias):
        problems.append("an unembedding of its own without mlm_head (a BertModel has none)")
    return problems


def to_hf(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """gptscope state dict -> BertModel (or BertForMaskedLM with ``mlm_head``) tensors."""
    d, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    dtype = state["embed.W_E"].dtype
    pre = "bert." if cfg.mlm_head else ""

    def get(name: str, shape: tuple[int, ...]) -> Tensor:
        return state[name] if name in state else torch.zeros(shape, dtype=dtype)

    types = state.get("token_type_embed.weight", torch.zeros(1, d, dtype=dtype))
    out = {
        pre + "embeddings.word_embeddings.weight": state["embed.W_E"],
        pre + "embeddings.position_embeddings.weight": state["pos_embed.W_pos"],
        pre + "embeddings.token_type_embeddings.weight": types,
        pre + "embeddings.LayerNorm.weight": state["embed_ln.w"],
        pre + "embeddings.LayerNorm.bias": state["embed_ln.b"],
    }
    for i in range(cfg.n_layers):
        h, b = f"{pre}encoder.layer.{i}.", f"blocks.{i}."
        for hf_name, x in (("query", "Q"), ("key", "K"), ("value", "V")):
            w = state[f"{b}attn.W_{x}"]  # [head, d_model, d_head]
            out[f"{h}attention.self.{hf_name}.weight"] = w.transpose(1, 2).reshape(H * dh, d)
            out[f"{h}attention.self.{hf_name}.bias"] = get(f"{b}attn.b_{x}", (H, dh)).reshape(-1)
        out[h + "attention.output.dense.weight"] = state[b + "attn.W_O"].reshape(H * dh, d).t()
        out[h + "attention.output.dense.bias"] = get(b + "attn.b_O", (d,))
        out[h + "attention.output.LayerNorm.weight"] = state[b + "ln1.w"]
        out[h + "attention.output.LayerNorm.bias"] = state[b + "ln1.b"]
        out[h + "intermediate.dense.weight"] = state[b + "mlp.W_in"].t()
        out[h + "intermediate.dense.bias"] = get(b + "mlp.b_in", (cfg.d_mlp,))
        out[h + "output.dense.weight"] = state[b + "mlp.W_out"].t()
        out[h + "output.dense.bias"] = get(b + "mlp.b_out", (d,))
        out[h + "output.LayerNorm.weight"] = state[b + "ln2.w"]
        out[h + "output.LayerNorm.bias"] = state[b + "ln2.b"]
    if cfg.mlm_head:
        p = "cls.predictions."
        out[p + "transform.dense.weight"] = state["mlm_head.W"].t()
        out[p + "transform.dense.bias"] = state["mlm_head.b"]
        out[p + "transform.LayerNorm.weight"] = state["mlm_head.ln.w"]
        out[p + "transform.LayerNorm.bias"] = state["mlm_head.ln.b"]
        out[p + "bias"] = get("unembed.b_U", (cfg.d_vocab,))
        if not cfg.tie_embeddings:
            out[p + "decoder.weight"] = state["unembed.W_U"].t()
    return out


def hf_config(cfg: ModelConfig, eos_token_id: int | None) -> dict:
    """The ``config.json`` of a BertModel (BertForMaskedLM with ``mlm_head``)."""
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["BertForMaskedLM" if cfg.mlm_head else "BertModel"],
        "vocab_size": cfg.d_vocab,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_mlp,
        "hidden_act": cfg.act_fn,
        "max_position_embeddings": cfg.n_ctx,
        "type_vocab_size": max(cfg.n_token_types, 1),
        "layer_norm_eps": cfg.eps,
        "initializer_range": cfg.init_range,
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": 0,
    }
