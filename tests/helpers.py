"""Small helpers shared by test modules (tests/conftest.py puts this folder on sys.path)."""

import torch

import gptscope as gs


def random_model(**cfg) -> gs.Transformer:
    """A tiny model whose biases and norm weights are random too, not 0 and 1, so a bias or
    norm weight applied in the wrong place changes the output."""
    model = gs.Transformer(gs.ModelConfig(**cfg))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()
