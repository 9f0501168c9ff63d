"""Token batches from a run folder's own data, for analyses that need text the model knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def run_token_batches(run: str | Path, model: Any, n_batches: int, batch_size: int = 32,
                      seed: int = 0) -> list[Tensor]:
    """``n_batches`` LongTensors ``[batch_size, pos]`` drawn from the data the run trained on
    (its ``train_config.json``), tokenized with the run's own tokenizer."""
    from gptscope.train.config import TrainConfig
    from gptscope.train.data import build_data

    cfg_file = Path(run) / "train_config.json"
    if not cfg_file.exists():
        raise ValueError(f"{cfg_file} is missing; pass a folder written by gptscope train")
    spec = TrainConfig.from_json(cfg_file).data
    data = build_data(spec, model.cfg, getattr(model, "tokenizer", None))
    g = torch.Generator().manual_seed(seed)
    return [data.train_batch(batch_size, g)[0] for _ in range(n_batches)]
