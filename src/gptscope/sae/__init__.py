"""Sparse autoencoders (SAEs): find interpretable features in a model's activations.

Build one with :func:`SAE`, train it with :func:`train_sae` (on saved activations) or
:func:`train_sae_on_model` (streaming from a model), both an :class:`SAETrainer` running
one :class:`SAETrainConfig`; measure it with
:mod:`gptscope.sae.metrics`, and splice it into a model with ``model.attach(hook, sae)``.

Variants, one module each: ``relu`` (L1 penalty), ``topk`` (k active features), ``jumprelu``
(learned thresholds, L0 penalty).
"""

from gptscope.sae import metrics
from gptscope.sae.base import (
    SAE,
    SAE_REGISTRY,
    SAEConfig,
    TrainStepOutput,
    load_sae,
    sae_loss,
)
from gptscope.sae.buffer import ActivationBuffer
from gptscope.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from gptscope.sae.relu import ReLUSAE, ReLUSAEConfig
from gptscope.sae.resample import resample_dead_features
from gptscope.sae.topk import TopKSAE, TopKSAEConfig
from gptscope.sae.train_config import SAETrainConfig
from gptscope.sae.training import SAETrainer, SAETrainResult, train_sae, train_sae_on_model

__all__ = [
    "SAE",
    "SAE_REGISTRY",
    "ActivationBuffer",
    "JumpReLUSAE",
    "JumpReLUSAEConfig",
    "ReLUSAE",
    "ReLUSAEConfig",
    "SAEConfig",
    "TopKSAE",
    "TopKSAEConfig",
    "SAETrainConfig",
    "SAETrainResult",
    "SAETrainer",
    "TrainStepOutput",
    "load_sae",
    "metrics",
    "resample_dead_features",
    "sae_loss",
    "train_sae",
    "train_sae_on_model",
]
