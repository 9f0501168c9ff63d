"""Model FLOPs utilisation (MFU): achieved training FLOP/s over the machine's peak.

The convention, stated once (the scaling lab and the course use these functions):
FLOPs per trained token follow the PaLM paper (Chowdhery et al. 2022, appendix B),
``6 N + 12 L H Q T``, where N is the number of matmul parameters, L layers, H heads, Q the
head size and T the sequence length. A forward pass costs a third of that, ``2 N + 4 L H Q
T``: one multiply and one add per weight per token (2N), and per layer and head the scores
``q . k`` and the weighted sum of values, each Q multiply-adds for each of T positions. The
backward pass costs twice the forward (gradients for the inputs and for the weights). We
take N as the block matrices plus the unembedding (a real matmul, tied to the embedding or
not; the embedding lookups are not); biases, norms and the softmax are left out, as in
Kaplan et al. 2020 and PaLM. The attention term is not halved for the causal mask: the
kernels compute the masked half too. Kaplan's ``C = 6 N D`` is this count without the
attention term (``attention=False``), with N excluding the unembedding (``N_kaplan``).

Peak: on CUDA, the datasheet dense bf16 number of the GPU (a small table); on CPU, or a GPU
missing from the table, a measured best-of-several large matmul, cached per process.
"""

from __future__ import annotations

import time

import torch

from gptscope.config import ModelConfig

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, FLOP/s.
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM ("NVIDIA H100 80GB HBM3"); the PCIe and NVL names match above
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,  # fp16 (V100 has no bf16)
    "T4": 65e12,  # fp16
}

_MEASURED: dict[tuple[str, str], float] = {}


def matmul_params(cfg: ModelConfig) -> int:
    """N of the FLOP count: the blocks' weight matrices plus the unembedding."""
    return cfg.n_params + cfg.d_model * cfg.d_vocab


def forward_flops_per_token(cfg: ModelConfig, seq_len: int | None = None,
                            attention: bool = True) -> float:
    """Forward-pass FLOPs per token, ``2 N + 4 L H Q T`` (``2 N`` with attention=False).

    T is ``seq_len`` (default ``cfg.n_ctx``): the mean over a full window of the context
    each position attends over is T / 2 for a causal model, but the kernels do all T.
    """
    t = cfg.n_ctx if seq_len is None else seq_len
    if t < 1:
        raise ValueError(f"seq_len must be >= 1, got {t}; pass the training window length")
    attn = 4.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * t if attention else 0.0
    return 2.0 * matmul_params(cfg) + attn


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None,
                    attention: bool = True) -> float:
    """Training FLOPs per token, ``6 N + 12 L H Q T`` (PaLM, appendix B): forward + backward."""
    return 3.0 * forward_flops_per_token(cfg, seq_len, attention)


def measure_matmul_peak(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int = 2048,
    repeats: int = 5,
) -> float:
    """Best FLOP/s of ``repeats`` ``[size, size] @ [size, size]`` matmuls (cached).

    The best, not the mean: the peak is what the hardware can do, not what a noisy
    laptop happened to do once.
    """
    device = torch.device(device)
    key = (str(device), str(dtype))
    if key in _MEASURED:
        return _MEASURED[key]
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        (a @ b).sum().item()  # .item() waits for the result on any device
        times.append(time.perf_counter() - t0)
    best = min(times[1:])  # the first run warms caches and thread pools
    _MEASURED[key] = 2.0 * size**3 / best
    return _MEASURED[key]


def peak_flops(device: str | torch.device = "cpu") -> float:
    """Peak FLOP/s for MFU: datasheet bf16 on known GPUs, else measured (see module doc)."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_BF16_PEAK.items():
            if key in name:
                return value
        return measure_matmul_peak(device, torch.bfloat16, size=8192)
    return measure_matmul_peak(device)
