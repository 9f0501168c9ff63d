"""Training: configs, presets, the trainer, checkpoints and data-parallel scale-out."""

from gptscope.train.checkpoint import list_checkpoints
from gptscope.train.config import DataSpec, TrainConfig
from gptscope.train.mfu import (
    flops_per_token,
    forward_flops_per_token,
    matmul_params,
    measure_matmul_peak,
    peak_flops,
)
from gptscope.train.optim import make_optimizer, param_groups
from gptscope.train.presets import Preset, describe_presets, get_preset, list_presets
from gptscope.train.schedule import lr_at
from gptscope.train.trainer import Trainer, TrainingDiverged, TrainResult, train

__all__ = [
    "DataSpec",
    "Preset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "describe_presets",
    "flops_per_token",
    "forward_flops_per_token",
    "matmul_params",
    "get_preset",
    "list_checkpoints",
    "list_presets",
    "lr_at",
    "make_optimizer",
    "measure_matmul_peak",
    "param_groups",
    "peak_flops",
    "train",
]
