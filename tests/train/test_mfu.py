import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gptscope import ModelConfig, Transformer
from gptscope.train import (
    flops_per_token,
    forward_flops_per_token,
    matmul_params,
    measure_matmul_peak,
)

# Shapes where a count that assumes GPT-2's layout goes wrong.
ODD_SHAPES = {
    "d_head != d_model / n_heads": dict(n_layers=2, n_heads=3, d_model=48, d_head=20,
                                        d_mlp=100, n_ctx=16, d_vocab=37),
    "attention-only with a norm": dict(n_layers=1, n_heads=2, d_model=32, attn_only=True,
                                       normalization="layer", n_ctx=16, d_vocab=11),
    "tied embeddings": dict(n_layers=2, n_heads=2, d_model=32, tie_embeddings=True,
                            n_ctx=16, d_vocab=11),
    "no layers": dict(n_layers=0, n_heads=2, d_model=32, n_ctx=16, d_vocab=11),
}

# The same shapes counted by hand: N = layers x (4 H Q d_model + 2 d_model d_mlp) + d_model
# d_vocab; forward 2N + 4 L H Q T.
HAND_N = {
    "d_head != d_model / n_heads": 2 * (4 * 3 * 20 * 48 + 2 * 48 * 100) + 48 * 37,
    "attention-only with a norm": 1 * (4 * 2 * 16 * 32) + 32 * 11,
    "tied embeddings": 2 * (4 * 2 * 16 * 32 + 2 * 32 * 128) + 32 * 11,
    "no layers": 32 * 11,
}
HAND_ATTN = {  # 4 L H Q T, forward
    "d_head != d_model / n_heads": 4 * 2 * 3 * 20 * 16,
    "attention-only with a norm": 4 * 1 * 2 * 16 * 16,
    "tied embeddings": 4 * 2 * 2 * 16 * 16,
    "no layers": 0,
}


def test_flops_per_token_palm_formula():
    cfg = ModelConfig(n_layers=6, n_heads=6, d_model=384, n_ctx=256, d_vocab=65)
    n = 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 65  # blocks + unembedding
    assert flops_per_token(cfg) == 6 * n + 12 * 6 * 384 * 256
    assert flops_per_token(cfg, seq_len=64) == 6 * n + 12 * 6 * 384 * 64
    assert flops_per_token(cfg, attention=False) == 6 * n  # Kaplan's C = 6 N D
    assert forward_flops_per_token(cfg) * 3 == flops_per_token(cfg)


@pytest.mark.parametrize("name", ODD_SHAPES)
def test_flop_count_matches_a_hand_count_on_odd_shapes(name):
    cfg = ModelConfig(**ODD_SHAPES[name])
    assert matmul_params(cfg) == HAND_N[name]
    assert forward_flops_per_token(cfg) == 2 * HAND_N[name] + HAND_ATTN[name]
    assert flops_per_token(cfg) == 3 * (2 * HAND_N[name] + HAND_ATTN[name])


@pytest.mark.parametrize("name", ODD_SHAPES)
def test_flop_count_matches_torchs_flop_counter(name):
    """torch's own FlopCounterMode counts every matmul the model runs, forward and back.

    A hook on the pattern sends attention through the written-out matmuls: the counter has
    no formula for the fused CPU attention kernel.
    """
    cfg = ModelConfig(**ODD_SHAPES[name])
    model = Transformer(cfg)
    tokens = torch.randint(0, cfg.d_vocab, (3, cfg.n_ctx))
    with model.hooks([(lambda n: n.endswith("hook_pattern"), lambda x, hook: x)]):
        with FlopCounterMode(display=False) as forward:
            model(tokens)
        with FlopCounterMode(display=False) as both:
            model(tokens).sum().backward()
    assert forward.get_total_flops() / tokens.numel() == forward_flops_per_token(cfg)
    assert both.get_total_flops() / tokens.numel() == flops_per_token(cfg)


def test_flop_count_rejects_an_empty_window():
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        forward_flops_per_token(ModelConfig(n_layers=1, d_model=32, n_heads=2), seq_len=0)


def test_measured_peak_is_cached_and_plausible():
    a = measure_matmul_peak("cpu", torch.float32, size=256, repeats=2)
    assert 1e7 < a < 1e14
    assert measure_matmul_peak("cpu", torch.float32, size=256, repeats=2) == a
