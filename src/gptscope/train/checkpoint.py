"""Training checkpoints: everything needed to continue a run exactly, without pickle.

``checkpoints/step_000100/`` holds

- ``model.safetensors`` + ``config.json``: the weights (a folder ``gs.load`` opens),
- ``optimizer.safetensors``: AdamW moments and step counts; param groups in its metadata,
- ``rng_rank{r}.safetensors``: each rank's torch CPU/CUDA, numpy and Python RNG states and
  the data generator's state, all as integer tensors,
- ``state.json``: step, tokens seen, world size.

A checkpoint is written into ``checkpoints/.tmp_step_000100.<pid>`` (named by the writing
process, so two writers could never share it) and renamed into place in one ``os.replace``,
so a crash (even SIGKILL) leaves either the whole folder or none of it. Only the newest
``keep_last`` are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gptscope.io.checkpoint import read_safetensors
from gptscope.train import distributed
from gptscope.train.optim import load_optimizer_tensors, optimizer_tensors

CKPT_DIR = "checkpoints"
PREFIX = "step_"
TMP_PREFIX = ".tmp_"


class CheckpointMismatch(ValueError):
    """A readable checkpoint that belongs to a different configuration (not corruption)."""


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"{PREFIX}{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, folder)]`` of finished checkpoints, oldest first (temp folders skipped)."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit():
            found.append((int(p.name[len(PREFIX):]), p))
    return sorted(found)


# -- RNG states as tensors -----------------------------------------------------------------

def rng_tensors(data_generator: torch.Generator) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every RNG this process draws from, as tensors (+ small JSON metadata)."""
    tensors = {"torch_cpu": torch.get_rng_state(), "data": data_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
            "python": json.dumps([version, gauss_next])}
    return tensors, meta


def set_rng_tensors(
    tensors: dict[str, Tensor], meta: dict[str, str], data_generator: torch.Generator
) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    data_generator.set_state(tensors["data"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = json.loads(meta["numpy"])
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    version, gauss_next = json.loads(meta["python"])
    random.setstate((version, tuple(int(v) for v in tensors["python"].tolist()), gauss_next))


# -- save ----------------------------------------------------------------------------------

def _save_tensors(path: Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata=meta)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_generator: torch.Generator,
    state: dict[str, Any],
    keep_last: int,
    dist_info: distributed.DistInfo,
) -> Path:
    """Write ``checkpoints/step_{step}`` atomically; every rank must call it (RNG per rank)."""
    from gptscope.io.checkpoint import save as save_model

    final = step_dir(Path(run_dir), step)
    # Every rank writes into the main process's folder, so they agree on its name.
    tmp = final.parent / f"{TMP_PREFIX}{final.name}.{distributed.broadcast_int(os.getpid())}"
    if dist_info.is_main:
        tmp.mkdir(parents=True)
    distributed.barrier()
    rng, rng_meta = rng_tensors(data_generator)
    _save_tensors(tmp / f"rng_rank{dist_info.rank}.safetensors", rng, rng_meta)
    distributed.barrier()
    if dist_info.is_main:
        save_model(model, tmp, step=step)
        opt_tensors, opt_meta = optimizer_tensors(optimizer)
        _save_tensors(tmp / "optimizer.safetensors", opt_tensors, opt_meta)
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
        for f in tmp.iterdir():  # contents on disk before the rename makes them visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # re-saving a step after a resume: replace the old copy
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


def remove_checkpoint_leftovers(run_dir: str | Path) -> None:
    """Delete half-written checkpoint folders of killed runs. Only while holding the run
    folder's writer lock, so none of them can belong to a live writer."""
    root = Path(run_dir) / CKPT_DIR
    if root.is_dir():
        for p in root.glob(TMP_PREFIX + "*"):
            shutil.rmtree(p, ignore_errors=True)


# -- load ----------------------------------------------------------------------------------

def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / 'state.json'} is missing or corrupt ({e})") from e
    return state


def _check_fits(folder: Path, state: dict[str, Any], model: nn.Module, world_size: int) -> None:
    """A readable checkpoint of another configuration is a config error, not corruption:
    raise `CheckpointMismatch` instead of falling back to an older checkpoint."""
    from gptscope.io.checkpoint import read_config
    from gptscope.train.run_folder import config_changes

    saved = int(state.get("world_size", 1))
    if saved != world_size:
        raise CheckpointMismatch(
            f"{folder} was written by {saved} training process(es), this run has "
            f"{world_size}; resume with the same number (torchrun --nproc_per_node {saved})")
    try:
        saved_cfg = read_config(folder)
    except ValueError:
        return  # its config file is unreadable: corruption, found when reading the weights
    changes = config_changes(saved_cfg.to_dict(), model.cfg.to_dict(), "")
    if changes:
        raise CheckpointMismatch(
            f"{folder} holds a model with different settings ({'; '.join(changes)}, "
            "checkpoint -> this run). The checkpoint is fine: resume with the run's own "
            "settings (drop the model flags), or train the new model into another --out")


def _read(folder: Path, rank: int) -> dict[str, Any]:
    """Read every file of a checkpoint; ValueError naming the file if one is missing or
    corrupt."""
    from safetensors import safe_open

    files = {"model": folder / "model.safetensors", "opt": folder / "optimizer.safetensors",
             "rng": folder / f"rng_rank{rank}.safetensors"}
    out: dict[str, Any] = {}
    for key, file in files.items():
        out[key] = read_safetensors(file)
        if key != "model":
            with safe_open(str(file), framework="pt") as f:
                out[key + "_meta"] = f.metadata() or {}
    return out


def _restore(folder: Path, rank: int, model: nn.Module, optimizer: torch.optim.Optimizer,
             data_generator: torch.Generator) -> None:
    ckpt = _read(folder, rank)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # its own config matched, so its weights are damaged
        raise ValueError(f"{folder / 'model.safetensors'} does not match its config ({e})") from e
    load_optimizer_tensors(optimizer, ckpt["opt"], ckpt["opt_meta"])
    set_rng_tensors(ckpt["rng"], ckpt["rng_meta"], data_generator)


def load_latest(
    run_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any] | None:
    """Restore the newest readable checkpoint into the objects; return its state, or None
    when the run has no checkpoint.

    A checkpoint that fails to read (truncated by a full disk, say) is skipped with one
    warning and the one before it is used. A checkpoint of another configuration raises
    `CheckpointMismatch`; a run whose checkpoints are all unreadable raises ValueError. The
    folder is never changed here.
    """
    found = list_checkpoints(run_dir)
    problems = []
    for _step, folder in reversed(found):
        try:
            state = _read_state(folder)
            _check_fits(folder, state, model, world_size)
            _restore(folder, rank, model, optimizer, data_generator)
        except CheckpointMismatch:
            raise
        except ValueError as e:
            problems.append(str(e))
            if rank == 0:
                warnings.warn(f"checkpoint {folder.name} is unusable ({e}); trying the one "
                              "before it", stacklevel=2)
            continue
        return state
    if found:
        raise ValueError(
            f"none of the {len(found)} checkpoints in {Path(run_dir) / CKPT_DIR} could be read "
            f"({'; '.join(problems)}). Nothing was changed; restore them from a backup, or "
            "start this run again with --overwrite (or into a new --out)")
    return None
