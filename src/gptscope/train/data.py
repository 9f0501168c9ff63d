"""Batches for training: one shape for tasks and text alike.

A batch is ``(inputs, targets, mask)``, each ``[batch, pos]``: the logits at position t
(computed from ``inputs``) are scored against ``targets[:, t]`` where ``mask[:, t]`` is
True. For tasks the mask is the task's loss mask (only answer tokens count); for text it
is all True (ordinary next-token loss).

What the trainer asks of a data object: ``vocab_size``, ``seq_len``, ``tokenizer``,
``train_batch(n, generator)`` (a tuple of tensors whose first dimension is the example)
and ``eval_sets``. A data object may also say how it is trained on, which is how the
alignment trainers (reward models, DPO, PPO) reuse this trainer's loop, checkpoints,
resume, metrics and progress bar: ``bind(model)`` returns the module to train (say, the
model with a reward head); ``count(batch)`` the number the summed loss is divided by;
``loss_sum(net, micro_batch, autocast)`` the summed loss of a micro-batch; ``evaluate(model)``
its evaluation record; ``start(step)`` is told where training starts (0, or the step
resumed from); ``metrics()`` extra numbers for each logged step; ``after_step(model,
step)`` True to stop early (after a checkpoint); ``save_model(model, folder, step=)`` the
final save.
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


@dataclass
class ChatData:
    """Chat turns packed into rows (``gptscope.data.chat.pack``): random training rows,
    the first validation rows for evaluation. Only response tokens are scored."""

    train: Batch
    val: Batch
    tokenizer: Any

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def seq_len(self) -> int:
        return self.train[0].shape[1]

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        rows = torch.randint(len(self.train[0]), (n,), generator=generator)
        return tuple(t[rows] for t in self.train)  # type: ignore[return-value]

    def eval_sets(self, n: int, generator: torch.Generator) -> dict[str, Batch]:
        return {"val": tuple(t[:n] for t in self.val)}  # type: ignore[dict-item]


STORIES_INSTRUCTIONS = "stories-instructions"


def chat_pairs(spec: DataSpec) -> list[tuple[str, str]]:
    """The (prompt, response) pairs of ``spec.chat``."""
    if spec.chat == STORIES_INSTRUCTIONS:
        from gptscope.data.instructions import generate_instructions

        return [(i.prompt, i.response) for i in generate_instructions(spec.n_instructions)]
    from gptscope.data.chat import read_pairs

    return read_pairs(spec.chat)


def build_chat_data(spec: DataSpec, n_ctx: int, tokenizer: Any) -> ChatData:
    """Split the pairs (the last ``val_fraction`` for validation), encode, pack."""
    from gptscope.data.chat import END, chat_tokenizer, encode_pair, pack

    if tokenizer is None:
        raise ValueError("chat data is tokenized with the base model's tokenizer: start the "
                         "run from one (--init-from RUN, a run folder with tokenizer.json)")
    tokenizer = chat_tokenizer(tokenizer)
    pairs = chat_pairs(spec)
    n_val = max(1, round(len(pairs) * spec.val_fraction))
    if n_val >= len(pairs):
        raise ValueError(f"{len(pairs)} chat pairs leave none for training after "
                         f"val_fraction={spec.val_fraction}; add pairs or lower it")
    encoded = [encode_pair(tokenizer, p, r) for p, r in pairs]
    pad = tokenizer.special_tokens[END]
    return ChatData(pack(encoded[:-n_val], n_ctx, pad, spec.packing),
                    pack(encoded[-n_val:], n_ctx, pad, spec.packing), tokenizer)


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
    """Make the `TaskData`, `TextData` or `ChatData` for ``spec``.

    ``tokenizer``: reuse this one (a resumed run's ``tokenizer.json``) instead of training a
    new one, so the ids cannot change under a checkpoint.
    """
    if spec.is_task:
        from gptscope.data import make_task

        task = make_task(spec.task, **spec.task_kwargs)
        if spec.full_batch and not hasattr(task, "full_dataset"):
            raise ValueError(f"task {spec.task!r} has no finite dataset; drop full_batch")
        return TaskData(task, spec.full_batch)
    if spec.chat is not None:
        return build_chat_data(spec, model_cfg.n_ctx, tokenizer)
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
    if spec.train_tokens is not None:
        if spec.train_tokens > len(train):
            raise ValueError(f"train_tokens={spec.train_tokens} but the training split holds "
                             f"{len(train)} tokens; lower it or leave it None (all of them)")
        train = TokenFile(train.path, train.tokens[:spec.train_tokens], train.meta)
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
