import torch

from gptscope import ModelConfig
from gptscope.train import flops_per_token, measure_matmul_peak


def test_flops_per_token_palm_formula():
    cfg = ModelConfig(n_layers=6, n_heads=6, d_model=384, n_ctx=256, d_vocab=65)
    n = 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 65  # blocks + unembedding
    assert flops_per_token(cfg) == 6 * n + 12 * 6 * 384 * 256
    assert flops_per_token(cfg, seq_len=64) == 6 * n + 12 * 6 * 384 * 64


def test_measured_peak_is_cached_and_plausible():
    a = measure_matmul_peak("cpu", torch.float32, size=256, repeats=2)
    assert 1e7 < a < 1e14
    assert measure_matmul_peak("cpu", torch.float32, size=256, repeats=2) == a
