"""Random Hugging Face models saved to temporary folders: the parity tests' fixtures.

Nothing here downloads: every model is built from a config with random weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)

GPT2_SHAPES = [
    dict(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32),
    dict(n_layer=3, n_embd=96, n_head=6, vocab_size=500, n_positions=48),
]
BERT_SHAPES = [
    dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=120,
         intermediate_size=128, max_position_embeddings=32, type_vocab_size=2),
    dict(num_hidden_layers=3, hidden_size=96, num_attention_heads=6, vocab_size=300,
         intermediate_size=200, max_position_embeddings=40, type_vocab_size=3),
]


def make_gpt2(seed: int = 0, cls_name: str = "GPT2LMHeadModel", **shape):
    """A random GPT-2 of ``shape`` in eval mode (so dropout is off)."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**shape, bos_token_id=0, eos_token_id=0)
    return getattr(transformers, cls_name)(config).eval()


def make_bert(seed: int = 0, cls_name: str = "BertModel", **shape):
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(transformers.BertConfig(**shape)).eval()
    with torch.no_grad():  # random LayerNorm/bias values, so folds and maps are exercised
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def randomize_norms(model) -> None:
    """HF initialises LayerNorms to w=1, b=0; perturb them so the parity means something."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or "ln_f" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)


def save_bin(model, folder: Path) -> Path:
    """A folder with config.json + pytorch_model.bin only (the pre-safetensors layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder
