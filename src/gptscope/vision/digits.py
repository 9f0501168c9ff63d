"""A vision transformer trained on the bundled 8x8 digits through the ordinary `Trainer`.

`DigitImages` is a data object of the protocol in `gptscope.train.data`'s docstring: a
batch is ``(images [batch, 1, 8, 8], labels [batch])``, its loss the cross-entropy of the
class logits (read at the class token, position 0) and its evaluation the held-out loss
and accuracy. So the run gets the trainer's checkpoints, resume, metrics.jsonl and a
normal run folder that ``gs.load`` opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptscope.config import ModelConfig
from gptscope.data.images import digits_split
from gptscope.train.config import TrainConfig
from gptscope.train.trainer import Trainer, TrainResult

N_CLASSES = 10


class DigitImages:
    """The trainer's data object for image classification.

    x_train, x_test: [n, C, H, W] floats; y_train, y_test: [n] class ids. ``vocab_size``
    is the number of classes (the model's d_vocab) and ``seq_len`` its positions, the class
    token plus the patches, so the trainer's config fitting and FLOP count apply as they are.
    """

    tokenizer = None

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 patch_size: int, n_classes: int = N_CLASSES) -> None:
        if x_train.dim() != 4 or x_test.shape[1:] != x_train.shape[1:]:
            raise ValueError(f"x_train and x_test must be images [n, C, H, W] of one shape, "
                             f"got {tuple(x_train.shape)} and {tuple(x_test.shape)}")
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.vocab_size = n_classes
        _, _, height, width = x_train.shape
        self.seq_len = 1 + (height // patch_size) * (width // patch_size)

    def train_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` training images and labels drawn with replacement."""
        rows = torch.randint(0, len(self.y_train), (n,), generator=generator)
        return self.x_train[rows], self.y_train[rows]

    def eval_sets(self, n: int, generator: torch.Generator) -> dict[str, Any]:
        return {"val": (self.x_test, self.y_test)}

    def count(self, batch: tuple[Tensor, Tensor]) -> int:
        return len(batch[1])  # the loss is a mean over images

    def loss_sum(self, net: nn.Module, micro: tuple[Tensor, Tensor], autocast: Any) -> Tensor:
        """Summed cross-entropy of the class logits, read at position 0 (the class token)."""
        images, labels = micro
        with autocast():
            logits = net(images)[:, 0]  # net may be DDP or compiled: call it, not .classify
        return F.cross_entropy(logits.float(), labels, reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out ``val_loss`` and ``val_accuracy`` over every test image."""
        was_training = model.training
        model.eval()
        logits = model.classify(self.x_test.to(model.device)).float().cpu()
        model.train(was_training)
        return {"val_loss": float(F.cross_entropy(logits, self.y_test)),
                "val_accuracy": float((logits.argmax(-1) == self.y_test).float().mean())}


def vit_digits_config(d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                      patch_size: int = 2, seed: int | None = None) -> ModelConfig:
    """A small ViT for [batch, 1, 8, 8] digits: patches of ``patch_size``, non-causal,
    learned positions over the class token and the patches, 10 classes."""
    n_patches = (8 // patch_size) ** 2
    return ModelConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_vocab=N_CLASSES,
                       n_ctx=1 + n_patches, image_shape=(1, 8, 8), patch_size=patch_size,
                       causal=False, act_fn="gelu", seed=seed)


def vit_digits_train_config(max_steps: int = 1500, **changes: Any) -> TrainConfig:
    """The measured setting of docs/vision.md: AdamW, lr 2e-3 with warmup and cosine decay,
    batches of 64, one thread, evaluation on the held-out images every 250 steps."""
    fields: dict[str, Any] = {
        "lr": 2e-3, "min_lr": 1e-4, "warmup_steps": 50, "max_steps": max_steps,
        "batch_size": 64, "weight_decay": 0.05, "betas": (0.9, 0.99), "grad_clip": 1.0,
        "eval_every": 250, "log_every": 50, "threads": 1, "device": "cpu", "progress": False}
    fields.update(changes)
    return TrainConfig(**fields)


def train_vit_digits(out_dir: str | Path, model_cfg: ModelConfig | None = None,
                     train_cfg: TrainConfig | None = None, overwrite: bool = False,
                     resume: bool = False) -> TrainResult:
    """Train a ViT on the bundled digits into the run folder ``out_dir``.

    Returns the trainer's result; ``result.evaluation`` holds ``val_accuracy`` on the 20%
    held out (`digits_split`). ``gs.load(out_dir)`` opens the trained model.
    """
    model_cfg = model_cfg or vit_digits_config()
    if not model_cfg.is_vision:
        raise ValueError("train_vit_digits needs a vision config (see vit_digits_config)")
    x_train, y_train, x_test, y_test, _ = digits_split()
    data = DigitImages(x_train, y_train, x_test, y_test, model_cfg.patch_size)
    trainer = Trainer(model_cfg, train_cfg or vit_digits_train_config(), out_dir,
                      resume=resume, overwrite=overwrite, data=data)
    return trainer.fit()
