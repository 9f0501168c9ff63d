"""Batches for training: one shape for tasks and text alike.

A batch is ``(inputs, targets, mask)``, each ``[batch, pos]``: the logits at position t
(computed from ``inputs``) are scored against ``targets[:, t]`` where ``mask[:, t]`` is
True. For tasks the mask is the task's loss mask (only answer tokens count); for text it
is all True (ordinary next-token loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.train.config import DataSpec
from gptscope.utils.files import read_text

Batch = tuple[Tensor, Tensor, Tensor]


def _from_task(tokens: Tensor, mask: Tensor) -> Batch:
    """Task (tokens, loss_mask) -> (inputs, targets, mask): targets are tokens shifted."""
    targets = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)
    return tokens, targets, mask


@dataclass
class TaskData:
    """A synthetic task from ``gptscope.data`` (its train split for training, test for eval)."""

    task: Any
    full_batch: bool = False
    tokenizer: Any = None

    @property
    def vocab_size(self) -> int:
        return self.task.vocab_size

    @property
    def seq_len(self) -> int:
        return self.task.seq_len

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        """``n`` training examples (all of them, in a fixed order, when full_batch)."""
        if self.full_batch:
            return _from_task(*self.task.full_dataset()["train"])
        return _from_task(*self.task.batch(n, "train", generator))

    def full_batch_size(self) -> int:
        return len(self.task.full_dataset()["train"][0])

    def eval_sets(self, n: int, generator: torch.Generator) -> dict[str, Batch]:
        """``{"val": test-split batch, "train": train-split batch}`` for evaluation."""
        if self.full_batch:
            full = self.task.full_dataset()
            return {"val": _from_task(*full["test"]), "train": _from_task(*full["train"])}
        return {"val": _from_task(*self.task.batch(n, "test", generator)),
                "train": _from_task(*self.task.batch(n, "train", generator))}


@dataclass
class TextData:
    """A token array split into train/val, sampled as random windows of ``block_size``."""

    train: Any  # gptscope.data.TokenFile
    val: Any
    tokenizer: Any
    block_size: int

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def seq_len(self) -> int:
        return self.block_size

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        x, y = self.train.get_batch(n, self.block_size, generator)
        return x, y, torch.ones_like(x, dtype=torch.bool)

    def eval_sets(self, n: int, generator: torch.Generator) -> dict[str, Batch]:
        x, y = self.val.get_batch(n, self.block_size, generator)
        return {"val": (x, y, torch.ones_like(x, dtype=torch.bool))}


def corpus_text(spec: DataSpec) -> str:
    """The raw text of ``spec.text`` (a file) or ``spec.corpus`` (bundled)."""
    if spec.text is not None:
        path = Path(spec.text)
        if not path.is_file():
            raise ValueError(f"text file {path} does not exist; pass --data PATH to a UTF-8 file")
        return read_text(path, "gptscope trains on UTF-8 text files")
    if spec.corpus == "shakespeare":
        from gptscope.data import load_shakespeare

        return load_shakespeare()
    from gptscope.data import stories_text

    return stories_text(spec.n_stories, seed=0)


def build_data(spec: DataSpec, model_cfg: ModelConfig, tokenizer: Any = None) -> Any:
    """Make the `TaskData` or `TextData` for ``spec``.

    ``tokenizer``: reuse this one (a resumed run's ``tokenizer.json``) instead of training a
    new one, so the ids cannot change under a checkpoint.
    """
    if spec.is_task:
        from gptscope.data import make_task

        task = make_task(spec.task, **spec.task_kwargs)
        if spec.full_batch and not hasattr(task, "full_dataset"):
            raise ValueError(f"task {spec.task!r} has no finite dataset; drop full_batch")
        return TaskData(task, spec.full_batch)
    from gptscope.data import TokenFile

    text = corpus_text(spec)
    if tokenizer is None:
        if spec.tokenizer == "char":
            from gptscope.tokenizers import CharTokenizer

            tokenizer = CharTokenizer.train(text)
        else:
            from gptscope.tokenizers import BPETokenizer

            tokenizer = BPETokenizer.train(text, spec.bpe_vocab_size)
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    # Kept in memory (the corpora here are a few MB); TokenFile gives split and get_batch.
    tokens = TokenFile(Path("<memory>"), ids, {"vocab_size": tokenizer.vocab_size})
    train, val = tokens.split(spec.val_fraction)
    return TextData(train, val, tokenizer, model_cfg.n_ctx)


def fit_model_config(model_cfg: ModelConfig, data: Any) -> ModelConfig:
    """Set ``d_vocab`` from the data; refuse a context shorter than the task's examples."""
    if data.seq_len > model_cfg.n_ctx:
        raise ValueError(
            f"the data's sequences are {data.seq_len} tokens but n_ctx is {model_cfg.n_ctx}; "
            f"raise n_ctx (--n-ctx {data.seq_len}) or make the task shorter"
        )
    if model_cfg.d_vocab != data.vocab_size:
        model_cfg = model_cfg.replace(d_vocab=data.vocab_size)
    return model_cfg
