"""TrainConfig and DataSpec: every training choice, typed, validated, JSON round-trip.

Presets are instances of these classes built in code (see ``presets.py``); nothing is ever
exec'd from a file, unlike nanoGPT's ``configurator.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDULES = ("cosine", "constant", "linear")
TOKENIZERS = ("char", "bpe")
CORPORA = ("shakespeare", "stories")


@dataclass
class DataSpec:
    """What to train on: a synthetic task, a text file, or a bundled corpus.

    Exactly one of ``task`` (a name from ``gptscope.data.TASKS`` plus ``task_kwargs``),
    ``text`` (a UTF-8 file path) or ``corpus`` ("shakespeare" or "stories").
    Text is tokenized with a tokenizer trained on it: ``tokenizer`` "char" or "bpe"
    (``bpe_vocab_size`` ids). ``full_batch`` trains a task on its whole train split each
    step (modular addition, as in the grokking papers).
    """

    task: str | None = None
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    corpus: str | None = None
    tokenizer: str = "char"
    bpe_vocab_size: int = 512
    val_fraction: float = 0.1
    n_stories: int = 3000  # corpus="stories": how many generated stories
    full_batch: bool = False

    def __post_init__(self) -> None:
        given = [k for k in ("task", "text", "corpus") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"data needs exactly one of task, text or corpus; got {given or 'none'}. "
                "Pass e.g. --task reverse, --data input.txt or --corpus shakespeare"
            )
        if self.corpus is not None and self.corpus not in CORPORA:
            raise ValueError(f"unknown corpus {self.corpus!r}; choose one of {CORPORA}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}; choose one of {TOKENIZERS}")
        if self.bpe_vocab_size < 257:
            raise ValueError(f"bpe_vocab_size must be > 256 (bytes + merges), "
                             f"got {self.bpe_vocab_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.full_batch and self.task is None:
            raise ValueError("full_batch needs a task (text corpora are sampled in windows)")

    @property
    def is_task(self) -> bool:
        return self.task is not None


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpointing of one run.

    Batch: one optimizer step sees ``batch_size * grad_accum`` sequences (the global batch),
    however many processes share it. ``None`` for ``min_lr`` means lr / 10; for
    ``ckpt_every`` it means ``eval_every``; for ``bf16`` and ``compile`` it means on for
    CUDA, off for CPU. ``grad_clip`` 0 turns clipping off; ``eval_every`` 0 turns periodic
    evaluation off (one evaluation still runs at the end).
    """

    data: DataSpec = field(default_factory=lambda: DataSpec(task="reverse"))
    lr: float = 1e-3
    min_lr: float | None = None
    schedule: str = "cosine"
    warmup_steps: int = 100
    max_steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.1
    decay_embeddings: bool = True  # nanoGPT decays W_E/W_pos too; minGPT does not
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_steps: int = 10
    log_every: int = 10
    ckpt_every: int | None = None
    keep_last: int = 2
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads; None = torch's default (all cores)
    bf16: bool | None = None
    compile: bool | None = None
    progress: bool = True
    wandb: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataSpec(**self.data)
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives a list
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        for name in ("max_steps", "batch_size", "grad_accum", "eval_steps", "log_every",
                     "keep_last"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("warmup_steps", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ckpt_every is not None and self.ckpt_every < 0:
            raise ValueError(f"ckpt_every must be >= 0 (0 = only at the end), "
                             f"got {self.ckpt_every}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0 (grad_clip 0 = off)")

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

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("data"), dict):
            dknown = {f.name for f in dataclasses.fields(DataSpec)}
            dunknown = sorted(set(data["data"]) - dknown)
            if dunknown:
                raise ValueError(f"unknown DataSpec fields {dunknown}; known: {sorted(dknown)}")
            data["data"] = DataSpec(**data["data"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TrainConfig:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"train config is not valid JSON ({e}); re-save it") from e

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
