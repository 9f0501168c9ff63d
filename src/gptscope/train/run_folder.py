"""What a training run may do with its ``--out`` folder: start it, resume it, or replace it.

- One writer: the run holds the folder's `WriterLock` for its whole life.
- A fresh run needs an empty (or new) folder; ``overwrite`` first removes what an earlier
  run wrote there (the files below; anything else is left alone).
- A resumed run must be the same run: the data and model settings it is given are compared
  with the ones saved in the folder, and any difference is refused with a diff. Only how
  long it trains, how it logs, evaluates and checkpoints, and where it runs may change.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from gptscope.config import ModelConfig
from gptscope.io.run_lock import LOCK_NAME, WriterLock
from gptscope.train.config import TrainConfig
from gptscope.utils.atomic import remove_leftovers

MODEL_FILE, TRAIN_FILE = "config.json", "train_config.json"
# Everything `gptscope train` writes into a run folder (``overwrite`` removes these), the
# alignment trainers' own files included (a stale kl_checkpoints/ would tell a new PPO run
# that it had already passed its KL milestones).
RUN_FILES = (MODEL_FILE, TRAIN_FILE, "tokenizer.json", "metrics.jsonl", "model.safetensors",
             "checkpoints", "tensorboard", "report.html", "kl_checkpoints",
             "reward_head.safetensors", "reward_config.json", "ppo_config.json",
             "dpo_config.json", "dpo_rounds", "grpo_config.json")
# TrainConfig fields a resumed run may change; every other field, and every ModelConfig
# field but the free-form ``extra``, must match the run's saved configs.
MAY_CHANGE_ON_RESUME = ("max_steps", "eval_every", "eval_steps", "log_every", "ckpt_every",
                        "keep_last", "progress", "wandb", "tensorboard", "device", "threads",
                        "compile")


def claim(out_dir: Path, resume: bool, overwrite: bool) -> WriterLock:
    """Lock ``out_dir`` for this process and check that this run may write it.

    Raises `RunFolderBusy` (a ValueError) naming the other writer, or ValueError when a
    fresh run would write into a folder that already holds something.
    """
    if resume and overwrite:
        raise ValueError("pass either --resume (continue the run in --out) or --overwrite "
                         "(replace it), not both")
    lock = WriterLock(out_dir, "train").acquire()
    try:
        check_contents(out_dir, resume, overwrite)
        if overwrite:
            for name in RUN_FILES:
                path = out_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        # Temporary files of a killed writer: safe to remove now that this process holds
        # the lock, so nobody else can be in the middle of writing them.
        remove_leftovers(out_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _entries(out_dir: Path) -> list[str]:
    if not out_dir.is_dir():
        return []
    return sorted(p.name for p in out_dir.iterdir()
                  if p.name != LOCK_NAME and not p.name.endswith(".tmp"))


def check_contents(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a fresh run into a non-empty folder, and a resume of a folder that holds
    something other than a training run."""
    entries = _entries(out_dir)
    if not entries or overwrite:
        return
    shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
    is_run = (out_dir / TRAIN_FILE).is_file()
    if resume:
        if is_run or set(entries) <= set(RUN_FILES):
            return  # a run (perhaps killed before it wrote its configs)
        raise ValueError(f"cannot --resume {out_dir}: it holds {shown} but no {TRAIN_FILE}, "
                         "so it is not a gptscope training run; choose another --out")
    if is_run:
        raise ValueError(f"{out_dir} already holds a training run ({shown}); pass --resume "
                         "to continue it, --overwrite to replace it, or choose a new --out")
    raise ValueError(f"{out_dir} is not empty ({shown}) and is not a training run; choose a "
                     "new --out, or pass --overwrite to train there anyway (it replaces only "
                     "the files gptscope train writes)")


def _flat(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "extra":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _shown(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "(absent)"


def config_changes(saved: dict[str, Any], given: dict[str, Any], prefix: str,
                   may_change: tuple[str, ...] = ()) -> list[str]:
    """``["train.data.task: 'reverse' -> 'copy'", ...]`` for fields outside ``may_change``.

    Nested dicts (the data spec, task arguments) are compared field by field; the
    free-form ``extra`` (provenance) never counts.
    """
    old, new = _flat(saved, prefix), _flat(given, prefix)
    allowed = {prefix + name for name in may_change} | {prefix + "extra"}
    return [f"{key}: {_shown(old, key)} -> {_shown(new, key)}"
            for key in sorted(set(old) | set(new))
            if key not in allowed and (key in old, old.get(key)) != (key in new, new.get(key))]


def _refuse(out_dir: Path, changes: list[str], may_change: str) -> None:
    if changes:
        listed = "\n  ".join(changes)
        raise ValueError(
            f"--resume would change the run in {out_dir} (saved -> given):\n  {listed}\n"
            f"{may_change} Drop those flags to continue the run as it was, or train a "
            "different run into a new --out")


def check_same_training(out_dir: Path, train_cfg: TrainConfig) -> None:
    """On resume: refuse training settings that differ from the run's saved
    train_config.json (with a diff); warn once when a change makes the result differ from
    an uninterrupted run. Checked before any data is built."""
    train_file = out_dir / TRAIN_FILE
    if not train_file.is_file():
        return  # nothing saved yet: the run starts from step 0
    saved = TrainConfig.from_json(train_file)
    _refuse(out_dir, config_changes(saved.to_dict(), train_cfg.to_dict(), "train.",
                                    MAY_CHANGE_ON_RESUME),
            f"Only {', '.join(MAY_CHANGE_ON_RESUME)} may change when resuming.")
    for name in ("threads", "device"):
        old, new = getattr(saved, name), getattr(train_cfg, name)
        if old != new:
            warnings.warn(f"resuming with {name}={new!r} where the run so far used {old!r}: "
                          "the weights will differ in the last bits from an uninterrupted "
                          "run (resume is bitwise only on the same machine and thread count)",
                          stacklevel=3)


def check_same_model(out_dir: Path, model_cfg: ModelConfig) -> None:
    """On resume: refuse a model that differs from the run's saved config.json."""
    model_file = out_dir / MODEL_FILE
    if (out_dir / TRAIN_FILE).is_file() and model_file.is_file():
        saved = ModelConfig.from_json(model_file)
        _refuse(out_dir, config_changes(saved.to_dict(), model_cfg.to_dict(), "model."),
                "The model cannot change when resuming.")
