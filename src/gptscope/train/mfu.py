"""Model FLOPs utilisation (MFU): achieved training FLOP/s over the machine's peak.

FLOPs per trained token follow the PaLM paper (Chowdhery et al. 2022, appendix B):
``6 N + 12 L H Q T``, where N is the number of matmul parameters, L layers, H heads, Q the
head size and T the sequence length. 6N counts the forward (2N) and backward (4N) matmuls
with the weights; 12 L H Q T counts the attention score and value matmuls. We take N as the
block matrices plus the unembedding (it is a real matmul; the embedding lookups are not).

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


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token, ``6 N + 12 L H Q T`` (PaLM, appendix B)."""
    t = cfg.n_ctx if seq_len is None else seq_len
    n = cfg.n_params + cfg.d_model * cfg.d_vocab
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.d_head * t


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
