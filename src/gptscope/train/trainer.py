"""The training loop: AdamW, warmup + cosine, clipping, accumulation, eval, checkpoints, DDP.

    from gptscope.train import Trainer, get_preset
    preset = get_preset("reverse")
    result = Trainer(preset.model, preset.train, "runs/reverse").fit()

One optimizer step sees the global batch (``batch_size * grad_accum`` sequences). Every rank
draws the same global batch from the same seeded generator and keeps its 1/world share, so
the data, and therefore the run, does not depend on how many processes share the work. The
loss of each micro-batch is its summed token losses divided by the number of scored tokens in
the whole global batch; summed over micro-steps and ranks, that is exactly the global mean.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gptscope.config import ModelConfig
from gptscope.io.run_lock import WriterLock
from gptscope.model.transformer import Transformer
from gptscope.train import distributed, run_folder
from gptscope.train.checkpoint import (
    list_checkpoints,
    load_latest,
    remove_checkpoint_leftovers,
    save_checkpoint,
)
from gptscope.train.config import TrainConfig
from gptscope.train.data import Batch, build_data, fit_model_config
from gptscope.train.evaluate import evaluate, scored_loss_sum
from gptscope.train.init import base_config, load_base_weights, open_base
from gptscope.train.mfu import flops_per_token, peak_flops
from gptscope.train.optim import make_optimizer
from gptscope.train.runs import METRICS, read_metrics
from gptscope.train.schedule import lr_at
from gptscope.utils.atomic import write_text
from gptscope.utils.progress import progress


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    model: Transformer
    step: int
    out_dir: Path
    last_eval: dict[str, float]


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r} ({e}); use auto, cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return device


class _Loggers:
    """metrics.jsonl always; tensorboard and wandb only when asked for (imported lazily)."""

    def __init__(self, out_dir: Path, cfg: TrainConfig, enabled: bool, config: dict) -> None:
        self.file = out_dir / METRICS
        self.enabled = enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError("tensorboard logging needs the tensorboard package "
                                 "(pip install tensorboard), or drop --tensorboard") from e
            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        if cfg.wandb:
            try:
                import wandb
            except ImportError as e:
                raise ValueError("wandb logging needs wandb (pip install wandb), "
                                 "or drop --wandb") from e
            self.wandb = wandb.init(project="gptscope", name=out_dir.name, config=config)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, record["step"])
        if self.wandb is not None:
            self.wandb.log(numbers, step=record["step"])

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``: a resumed run writes them again."""
        if not self.enabled or not self.file.exists():
            return
        kept = [r for r in read_metrics(self.file.parent) if r.get("step", 0) <= step]
        write_text(self.file, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class Trainer:
    """Train a `Transformer` described by ``model_cfg`` with ``train_cfg`` into ``out_dir``.

    The trainer holds ``out_dir``'s writer lock from construction until ``fit`` returns (or
    ``close``). A fresh run needs an empty or new ``out_dir``; ``overwrite=True`` replaces
    the run there. ``resume=True`` continues the run in ``out_dir`` from its newest valid
    checkpoint (a fresh start when there is none), refusing settings that would change it.
    Launched by torchrun, it trains data-parallel. With ``train_cfg.init_from`` (a run
    folder) the model starts from that run's weights, shape and tokenizer (fine-tuning);
    ``model_cfg`` may then be None. ``data`` replaces ``build_data(train_cfg.data)`` with
    an object of the same protocol that may also define how it is trained on (the hooks
    of ``gptscope.train.data``'s docstring); the alignment trainers use it.
    """

    def __init__(
        self,
        model_cfg: ModelConfig | None,
        train_cfg: TrainConfig,
        out_dir: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        data: Any = None,
    ) -> None:
        self.cfg = train_cfg
        self._given_data = data
        self.out_dir = Path(out_dir)
        self.device = resolve_device(train_cfg.device)
        if train_cfg.threads is not None:
            # On a busy 2-core machine, 1 thread can be 10x faster than 2 fighting for cores.
            torch.set_num_threads(train_cfg.threads)
        self.dist = distributed.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if train_cfg.global_batch % self.dist.world_size:
            raise ValueError(
                f"the global batch (batch_size x grad_accum = {train_cfg.global_batch}) must "
                f"divide among {self.dist.world_size} processes; change --batch-size"
            )
        cuda = self.device.type == "cuda"
        self.bf16 = cuda if train_cfg.bf16 is None else train_cfg.bf16
        self.use_compile = cuda if train_cfg.compile is None else train_cfg.compile
        self.is_main = self.dist.is_main
        self._lock: WriterLock | None = None
        # The folder is claimed before anything in it is read or written.
        self._on_main(lambda: self._claim(resume, overwrite))
        try:
            if resume:
                self._on_main(lambda: run_folder.check_same_training(self.out_dir, train_cfg))
            self._build(model_cfg, resume)
        except BaseException:
            self.close()
            raise

    def _claim(self, resume: bool, overwrite: bool) -> None:
        self._lock = run_folder.claim(self.out_dir, resume, overwrite)
        remove_checkpoint_leftovers(self.out_dir)

    def _on_main(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main process only; if it raises, every process raises."""
        error = None
        if self.is_main:
            try:
                fn()
            except ValueError as e:
                error = e
        if distributed.broadcast_int(int(error is not None)):
            raise error if error is not None else ValueError(
                f"the main process refused {self.out_dir}; its error message says why")

    def _build(self, model_cfg: ModelConfig | None, resume: bool) -> None:
        """Data, model, optimizer and loggers; restore the newest checkpoint on resume."""
        train_cfg = self.cfg
        tokenizer = base = None
        if train_cfg.init_from is not None:
            base = open_base(train_cfg.init_from)
            model_cfg, tokenizer = base_config(model_cfg, base.cfg), base.tokenizer
        elif model_cfg is None:
            raise ValueError("Trainer needs a model config, or TrainConfig.init_from (a run "
                             "to fine-tune)")
        if resume and (self.out_dir / "tokenizer.json").exists():
            from gptscope.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(self.out_dir / "tokenizer.json")
        self.data = self._given_data if self._given_data is not None else \
            build_data(train_cfg.data, model_cfg, tokenizer)
        self.model_cfg = fit_model_config(model_cfg, self.data)
        if resume:
            self._on_main(lambda: run_folder.check_same_model(self.out_dir, self.model_cfg))

        # Same seed on every rank: identical initial weights and identical data draws.
        # Dropout masks differ per rank (seed + rank) as in nanoGPT.
        self._seed_all(train_cfg.seed)
        self.model = Transformer(self.model_cfg).to(self.device)
        if base is not None:
            load_base_weights(self.model, base)
        self.model.tokenizer = self.data.tokenizer
        if hasattr(self.data, "bind"):
            self.model = self.data.bind(self.model)
        self.optimizer = make_optimizer(self.model, train_cfg)
        self.data_gen = torch.Generator().manual_seed(train_cfg.seed)
        self._seed_all(train_cfg.seed + self.dist.rank)

        self.step = 0
        self.tokens_seen = 0
        self.loggers = _Loggers(self.out_dir, train_cfg, self.is_main,
                                {"model": self.model_cfg.to_dict(), "train": train_cfg.to_dict()})
        if resume:
            self._resume()
        if self.is_main:
            write_text(self.out_dir / "config.json", self.model_cfg.to_json() + "\n")
            write_text(self.out_dir / "train_config.json", train_cfg.to_json() + "\n")
            if self.data.tokenizer is not None:
                self.data.tokenizer.save(self.out_dir / "tokenizer.json")

        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if self.use_compile:
            self.net = torch.compile(self.net)
        self.flops_per_token = flops_per_token(self.model_cfg, self.data.seq_len)
        self._peak: float | None = None

    def close(self) -> None:
        """Release the run folder (``fit`` does this when it returns or fails)."""
        if self._lock is not None:
            self._lock.release()

    @staticmethod
    def _seed_all(seed: int) -> None:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def _resume(self) -> None:
        state = load_latest(self.out_dir, self.model, self.optimizer, self.data_gen,
                            self.dist.rank, self.dist.world_size)
        if state is None:
            if self.is_main:
                print(f"no checkpoint in {self.out_dir}; starting from step 0", file=sys.stderr)
            return
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        if self.is_main:
            self.loggers.truncate_after(self.step)
            print(f"resumed from step {self.step}", file=sys.stderr)

    # -- one optimizer step ----------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _global_batch(self) -> Batch:
        n = self.cfg.global_batch
        if getattr(self.data, "full_batch", False):
            n = self.data.full_batch_size()
        batch = self.data.train_batch(n, self.data_gen)
        if len(batch[0]) % self.dist.world_size:
            raise ValueError(f"{len(batch[0])} training examples do not split evenly over "
                             f"{self.dist.world_size} processes")
        return batch

    def _loss_sum(self, micro: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The summed loss of one micro-batch: next-token cross-entropy at the scored
        positions, unless the data says how it is trained on (``loss_sum``)."""
        if hasattr(self.data, "loss_sum"):
            return self.data.loss_sum(self.net, micro, self._autocast)
        x, y, m = micro
        with self._autocast():
            logits = self.net(x)
        return scored_loss_sum(logits, y, m)

    def train_step(self) -> tuple[float, float, int]:
        """One optimizer step; returns (mean loss, grad norm, tokens in the global batch)."""
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._global_batch()
        count = getattr(self.data, "count", None)
        n_scored = count(batch) if count is not None else int(batch[-1].sum())
        share = len(batch[0]) // self.dist.world_size
        lo = self.dist.rank * share
        rows = slice(lo, lo + share)
        local = [t[rows] for t in batch]
        n_micro = max(1, math.ceil(share / self.cfg.batch_size))
        chunks = list(zip(*(t.tensor_split(n_micro) for t in local), strict=True))
        # DDP averages gradients over ranks; multiply by world so the sum is the global mean.
        scale = self.dist.world_size / max(n_scored, 1)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for i, micro in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = contextlib.nullcontext()
            if self.dist.enabled and not last:
                sync = self.net.no_sync()  # all-reduce gradients once, after the last micro
            micro = tuple(t.to(self.device, non_blocking=True) for t in micro)
            with sync:
                loss_sum = self._loss_sum(micro)
                (loss_sum * scale).backward()
            total += loss_sum.detach()
        distributed.all_reduce_sum(total)
        loss = total.item() / max(n_scored, 1)
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self._diverged_message(loss))
        if self.cfg.grad_clip > 0:
            norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        else:
            norm = float(torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in self.model.parameters() if p.grad is not None])))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss, norm, int(batch[0].numel())

    def _diverged_message(self, loss: float) -> str:
        kept = list_checkpoints(self.out_dir)
        where = f"the last good checkpoint is {kept[-1][1]}" if kept else "no checkpoint exists"
        return (f"loss became {loss} at step {self.step + 1}: training diverged and stopped; "
                f"{where}. Lower --lr (now {self.cfg.lr}) or raise --warmup-steps, then "
                "--resume (or start a new --out)")

    # -- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss (+ the task's metric on test and train examples); see
        ``gptscope.train.evaluate.evaluate``. Data with its own ``evaluate`` scores itself."""
        if hasattr(self.data, "evaluate"):
            return self.data.evaluate(self.model)
        return evaluate(self.model, self.data, self.cfg, self._autocast)

    # -- the loop --------------------------------------------------------------------------

    def _peak_flops(self) -> float:
        if self._peak is None:
            self._peak = peak_flops(self.device)
        return self._peak

    def _checkpoint(self) -> None:
        state = {"tokens_seen": self.tokens_seen, "world_size": self.dist.world_size}
        save_checkpoint(self.out_dir, self.step, self.model, self.optimizer, self.data_gen,
                        state, self.cfg.keep_last, self.dist)

    def _after_step(self, loss: float, norm: float, tokens: int, seconds: float,
                    bar: Any) -> dict[str, float] | None:
        """Log, evaluate and checkpoint as the config asks; return the evaluation, if any."""
        cfg, s = self.cfg, self.step
        self.tokens_seen += tokens
        self._window[0] += tokens
        self._window[1] += seconds
        record: dict[str, Any] = {}
        if s % cfg.log_every == 0 or s == cfg.max_steps:
            tps = self._window[0] / max(self._window[1], 1e-9)
            mfu = tps * self.flops_per_token / (self._peak_flops() * self.dist.world_size)
            record.update(loss=loss, lr=lr_at(s - 1, cfg), grad_norm=norm,
                          tokens_per_s=tps, mfu=mfu, tokens=self.tokens_seen)
            if hasattr(self.data, "metrics"):
                record.update(self.data.metrics())
            self._window = [0, 0.0]
            bar.update(0, loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}", mfu=f"{mfu:.1%}")
        evaluation = None
        if (cfg.eval_every and s % cfg.eval_every == 0) or s == cfg.max_steps:
            evaluation = self.evaluate()
            record.update(evaluation)
            bar.write(f"step {s}: " + " ".join(f"{k} {v:.4f}" for k, v in evaluation.items()))
        if record:
            self.loggers.log({"step": s, **record})
        ckpt = cfg.checkpoint_every
        if (ckpt and s % ckpt == 0) or s == cfg.max_steps:
            self._checkpoint()
        return evaluation

    def _data_says_stop(self) -> bool:
        """The data's ``after_step`` may end the run early (PPO at its KL budget, which may
        also set the weights the run ends with); the step is checkpointed and the saved
        config's max_steps becomes it, so the run reads as finished."""
        hook = getattr(self.data, "after_step", None)
        if hook is None or not hook(self.model, self.step):
            return False
        ckpt = self.cfg.checkpoint_every
        if not ((ckpt and self.step % ckpt == 0) or self.step == self.cfg.max_steps):
            self._checkpoint()  # not already written by _after_step
        self.loggers.log({"step": self.step, "event": "stopped early by the data",
                          "reason": getattr(self.data, "stop_reason", "")})
        # The run ends here: its config says so, so its weights read as finished.
        self.cfg = self.cfg.replace(max_steps=self.step)
        if self.is_main:
            write_text(self.out_dir / "train_config.json", self.cfg.to_json() + "\n")
        return True

    def fit(self) -> TrainResult:
        """Train to ``max_steps``; save checkpoints, metrics and the final model (with its
        step), then release the run folder."""
        from gptscope.io.checkpoint import save

        if self.is_main and self._lock is not None:
            self._lock.acquire()  # again, when fit runs a second time
        bar = progress(total=self.cfg.max_steps, desc="train", initial=self.step,
                       disable=not (self.is_main and self.cfg.progress))
        last_eval: dict[str, float] = {}
        self._window: list[float] = [0, 0.0]  # tokens and seconds since the last log line
        if hasattr(self.data, "start"):
            self.data.start(self.step)
        try:
            while self.step < self.cfg.max_steps:
                t0 = time.perf_counter()
                loss, norm, tokens = self.train_step()
                evaluation = self._after_step(loss, norm, tokens, time.perf_counter() - t0, bar)
                last_eval = evaluation if evaluation is not None else last_eval
                bar.update(1)
                if self._data_says_stop():
                    break
            if self.is_main:
                getattr(self.data, "save_model", save)(self.model, self.out_dir,
                                                       step=self.step)
            distributed.barrier()
        except TrainingDiverged:
            if self.is_main:
                self.loggers.log({"step": self.step + 1, "event": "diverged"})
            raise
        finally:
            bar.close()
            self.loggers.close()
            self.close()
        return TrainResult(self.model.eval(), self.step, self.out_dir, last_eval)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Build a `Trainer` and run it: ``train(preset.model, preset.train, "runs/x")``."""
    return Trainer(model_cfg, train_cfg, out_dir, resume=resume, overwrite=overwrite).fit()
