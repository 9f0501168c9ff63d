"""``save_hf``: write a gptscope model as a Hugging Face folder ``transformers`` opens.

GPT-2-shaped models (causal, pre-LN, learned positions, LayerNorm, final LayerNorm)
become a ``GPT2LMHeadModel``; BERT-shaped ones (bidirectional, post-LN, embedding
LayerNorm) a ``BertModel``, or ``BertForMaskedLM`` when they carry an MLM head.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from gptscope.config import ModelConfig
from gptscope.io import convert_bert, convert_gpt2
from gptscope.utils.atomic import write_text, write_with

SUPPORTED = (
    "GPT2LMHeadModel: causal=True, norm_position='pre', normalization='layer', "
    "positional='learned', final_norm=True, attn_only=False, embed_norm=False, "
    "n_token_types=0, unembed_bias=False (or an all-zero b_U), n_heads*d_head=d_model; "
    "BertModel/BertForMaskedLM: causal=False, norm_position='post', normalization='layer', "
    "positional='learned', embed_norm=True, attn_only=False, n_heads*d_head=d_model"
)


def _family(model: nn.Module) -> tuple:
    cfg: ModelConfig = model.cfg
    family = convert_bert if not cfg.causal else convert_gpt2
    problems = family.export_problems(cfg)
    if cfg.is_vision:  # its W_E maps patches, not token ids: no BERT or GPT-2 holds it
        problems.insert(0, f"a vision front end (image_shape={cfg.image_shape})")
    if family is convert_gpt2 and cfg.unembed_bias and model.unembed.b_U.detach().abs().max() > 0:
        problems.append("a nonzero unembedding bias b_U (GPT-2's lm_head has none)")
    if problems:
        raise ValueError(
            f"this model cannot be written as a Hugging Face {family.ARCHITECTURES[0]}: "
            f"{'; '.join(problems)}. Hugging Face export supports {SUPPORTED}. Use "
            "gs.save(model, path) for gptscope's own format, which holds every shape"
        )
    return family, cfg


def _hf_tokenizer(tokenizer) -> dict | None:
    """The tokenizer as a Hugging Face ``tokenizer.json`` dict, when it has that form."""
    to_dict = getattr(tokenizer, "to_dict", None)
    if to_dict is None:
        return None
    data = to_dict()
    return data if isinstance(data, dict) and "model" in data else None


def save_hf(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` to folder ``path`` as config.json + model.safetensors (+ the
    tokenizer as tokenizer.json when it is a Hugging Face-style BPE); returns ``path``.

    Every file is written atomically. Raises ValueError, listing what export supports,
    for shapes Hugging Face's GPT-2 and BERT classes cannot express (rotary, RMSNorm,
    attention-only, no final norm, ...).
    """
    from safetensors.torch import save_file

    if not isinstance(getattr(model, "cfg", None), ModelConfig):
        raise ValueError("save_hf expects a gptscope Transformer (a module with a ModelConfig "
                         ".cfg)")
    family, cfg = _family(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors = {k: v.contiguous() for k, v in family.to_hf(state, cfg).items()}
    # Tensors that share memory (a transposed tied matrix) must be stored separately.
    seen: set[int] = set()
    for name, tensor in tensors.items():
        ptr = tensor.data_ptr()
        if ptr in seen:
            tensors[name] = tensor.clone()
        seen.add(ptr)
    tokenizer = getattr(model, "tokenizer", None)
    tok_json = _hf_tokenizer(tokenizer) if tokenizer is not None else None
    eos = getattr(tokenizer, "eos_token_id", None) if tok_json is not None else None
    hf_cfg = family.hf_config(cfg, eos if isinstance(eos, int) else None)
    hf_cfg["dtype"] = str(model.dtype).removeprefix("torch.")
    write_with(path / "model.safetensors",
               lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    write_text(path / "config.json", json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n")
    if tok_json is not None:
        write_text(path / "tokenizer.json", json.dumps(tok_json, ensure_ascii=False) + "\n")
        special = {"tokenizer_class": "PreTrainedTokenizerFast"}
        if eos is not None:
            token = next((s for s, i in tok_json["model"]["vocab"].items() if i == eos), None)
            token = token or next((t["content"] for t in tok_json.get("added_tokens", [])
                                   if t["id"] == eos), None)
            if token is not None:
                special.update(eos_token=token, bos_token=token)
        write_text(path / "tokenizer_config.json", json.dumps(special, indent=2) + "\n")
    return path
