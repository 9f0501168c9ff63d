"""TrainConfig and DataSpec: every training choice, typed, validated, JSON round-trip.

Presets are instances of these classes built in code (see ``presets.py``); nothing is ever
exec'd from a file, unlike nanoGPT's ``configurator.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gptscope.utils.fields import JSONConfig, checked, known_fields, validate_fields

SCHEDULES = ("cosine", "constant", "linear")
TOKENIZERS = ("char", "bpe")
CORPORA = ("shakespeare", "stories")


@dataclass
class DataSpec:
    """What to train on: a synthetic task, a text file, a bundled corpus, or chat turns.

    Exactly one of ``task`` (a name from ``gptscope.data.TASKS`` plus ``task_kwargs``),
    ``text`` (a UTF-8 file path), ``corpus`` ("shakespeare" or "stories") or ``chat``
    (a JSONL file of prompt/response pairs, or "stories-instructions": ``n_instructions``
    generated from the stories grammar; see ``gptscope.data.chat``). Text is tokenized with
    a tokenizer trained on it: ``tokenizer`` "char" or "bpe" (``bpe_vocab_size`` ids),
    unless the run starts from another run's weights (``TrainConfig.init_from``), whose
    tokenizer it keeps. Chat data always keeps the base run's tokenizer (plus the role
    tokens) and scores response tokens only; ``packing`` puts several turns in one row.
    ``full_batch`` trains a task on its whole train split each step (modular addition, as
    in the grokking papers). ``train_tokens`` keeps only the start of a text's training
    split (the scaling sweeps' data fractions).
    """

    task: str | None = None
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    corpus: str | None = checked(None, choices=(*CORPORA, None))
    tokenizer: str = checked("char", choices=TOKENIZERS)
    bpe_vocab_size: int = checked(512, gt=256, hint="a BPE vocabulary holds the 256 bytes "
                                                    "plus at least one merge")
    val_fraction: float = checked(0.1, gt=0, lt=1)
    # Text: train on only the first this many tokens of the training split (None: all of
    # it), so runs on less data keep the same tokenizer and validation set.
    train_tokens: int | None = checked(None, ge=2)
    n_stories: int = checked(3000, ge=1)  # corpus="stories": how many generated stories
    chat: str | None = None
    n_instructions: int = checked(4000, ge=2)  # chat="stories-instructions": how many
    packing: bool = True
    full_batch: bool = False

    def __post_init__(self) -> None:
        validate_fields(self)
        given = [k for k in ("task", "text", "corpus", "chat") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"data needs exactly one of task, text, corpus or chat; got {given or 'none'}."
                " Pass e.g. --task reverse, --data input.txt or --corpus shakespeare"
            )
        if self.train_tokens is not None and (self.task is not None or self.chat is not None):
            raise ValueError("train_tokens limits a text corpus; a task or chat data has no "
                             "token stream to cut: drop train_tokens")
        if self.full_batch and self.task is None:
            raise ValueError("full_batch needs a task (text corpora are sampled in windows)")

    @property
    def is_task(self) -> bool:
        return self.task is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        """A DataSpec from a dict of fields (ValueError naming any unknown one)."""
        return cls(**known_fields(cls, data))


@dataclass
class TrainConfig(JSONConfig):
    """Optimisation, schedule, logging and checkpointing of one run.

    Batch: one optimizer step sees ``batch_size * grad_accum`` sequences (the global batch),
    however many processes share it. ``None`` for ``min_lr`` means lr / 10; for
    ``ckpt_every`` it means ``eval_every``; for ``bf16`` and ``compile`` it means on for
    CUDA, off for CPU. ``grad_clip`` 0 turns clipping off; ``eval_every`` 0 turns periodic
    evaluation off (one evaluation still runs at the end).
    """

    data: DataSpec = field(default_factory=lambda: DataSpec(task="reverse"))
    # A run folder whose weights, model and tokenizer this run starts from (fine-tuning).
    init_from: str | None = None
    lr: float = checked(1e-3, ge=0, hint="0 leaves the weights as they are (a dry run)")
    min_lr: float | None = checked(None, ge=0)
    schedule: str = checked("cosine", choices=SCHEDULES)
    warmup_steps: int = checked(100, ge=0)
    max_steps: int = checked(1000, ge=1)
    batch_size: int = checked(32, ge=1)
    grad_accum: int = checked(1, ge=1)
    weight_decay: float = checked(0.1, ge=0)
    decay_embeddings: bool = True  # nanoGPT decays W_E/W_pos too; minGPT does not
    betas: tuple[float, float] = checked((0.9, 0.95), ge=0, lt=1)
    eps: float = checked(1e-8, gt=0)
    grad_clip: float = checked(1.0, ge=0, hint="0 turns clipping off")
    eval_every: int = checked(100, ge=0, hint="0 turns periodic evaluation off")
    eval_steps: int = checked(10, ge=1)
    log_every: int = checked(10, ge=1)
    ckpt_every: int | None = checked(None, ge=0, hint="0 saves only at the end")
    keep_last: int = checked(2, ge=1)
    seed: int = 1337
    device: str = "auto"
    # torch intra-op threads; None = torch's default (all cores)
    threads: int | None = checked(None, ge=1, hint="None uses torch's default (all cores)")
    bf16: bool | None = None
    compile: bool | None = None
    progress: bool = True
    wandb: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataSpec.from_dict(self.data)
        validate_fields(self)
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives a list
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr must be in [0, lr={self.lr}], got "
                             f"{self.min_lr!r}; lower it or leave it None (lr / 10)")

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step, over all processes and micro-steps."""
        return self.batch_size * self.grad_accum

    @property
    def checkpoint_every(self) -> int:
        return self.eval_every if self.ckpt_every is None else self.ckpt_every

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
