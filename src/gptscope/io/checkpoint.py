"""gptscope run folders: ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``).

Safetensors holds only tensors, so loading a checkpoint can never run code. Pickle-based
files (``.pt``, ``.bin``, ``.ckpt``) are refused: unpickling executes whatever the file
says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from gptscope.config import ModelConfig
from gptscope.utils.atomic import write_text, write_with
from gptscope.utils.files import read_json

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
STEP_KEY = "gptscope_step"  # in model.safetensors' metadata: the training step of the weights


def save(model: nn.Module, path: str | Path, format: str = "gptscope",
         step: int | None = None) -> Path:
    """Write ``model`` to the folder ``path`` and return it.

    format "gptscope": config.json + model.safetensors (+ tokenizer.json when the model
    has a tokenizer). format "hf": a Hugging Face folder that ``transformers`` opens.
    ``step``: the training step these weights are from, kept in the weights file's metadata
    (`read_step`), so every command can say which weights it read.
    """
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise ValueError(f"step must be an int >= 0 or None, got {step!r}")
    path = Path(path)
    if format == "hf":
        from gptscope.io.hf_export import save_hf

        return save_hf(model, path)
    if format != "gptscope":
        raise ValueError(f"unknown format {format!r}; use 'gptscope' or 'hf'")
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError("save expects a gptscope Transformer (a module with a ModelConfig .cfg)")
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt"} if step is None else {"format": "pt", STEP_KEY: str(step)}
    write_with(path / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata=meta))
    write_text(path / CONFIG, cfg.to_json() + "\n")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        # Tokenizer.save writes atomically itself; its path must end in .json (a temp
        # name ending in .tmp would be taken for a folder).
        tokenizer.save(path / TOKENIZER)
    return path


def read_config(path: Path) -> ModelConfig:
    """The ModelConfig of gptscope folder ``path``, with errors that name its config.json."""
    file = path / CONFIG
    if not file.exists():
        raise ValueError(f"{file} is missing; a gptscope folder holds {CONFIG} and {WEIGHTS}")
    data = read_json(file, "the file is corrupt; re-save the model with gs.save")
    # A saved config must state every field that changes the computation (from_saved).
    return ModelConfig.from_saved(data, file)


def read_safetensors(file: Path, device: str = "cpu") -> dict[str, Any]:
    """Load every tensor of a safetensors file, with errors that name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.exists():
        raise ValueError(f"{file} is missing")
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{file} is corrupt or truncated ({e}); re-save or re-download it") from e


def read_step(folder: str | Path) -> int | None:
    """The training step saved with ``folder/model.safetensors``; None when the file was
    saved without one (``gs.save`` without ``step``, a Hugging Face folder, older runs)."""
    from safetensors import SafetensorError, safe_open

    file = Path(folder) / WEIGHTS
    if not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            value = (f.metadata() or {}).get(STEP_KEY)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{file} is corrupt or truncated ({e}); re-save or re-download it") from e
    try:
        return int(value) if value is not None else None
    except ValueError as e:
        raise ValueError(f"{file}: metadata {STEP_KEY}={value!r} is not a step number") from e


def refuse_pickles(path: Path) -> None:
    if not path.is_dir():
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not (path / WEIGHTS).exists():
        raise ValueError(
            f"{path} holds only pickle checkpoints ({', '.join(pickles)}). gptscope never "
            "unpickles files, because loading a pickle can run arbitrary code. Convert it "
            "once, in a trusted environment, to safetensors (safetensors.torch.save_file)."
        )


def is_hf_folder(path: Path) -> bool:
    """A Hugging Face folder's config.json names a ``model_type``; gptscope's does not."""
    try:
        data = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "model_type" in data


def load(path: str | Path, device: str = "cpu") -> nn.Module:
    """Load a model saved by ``save`` (or a Hugging Face folder, via ``load_pretrained``),
    or a shipped model by name (``gs.zoo.names()``) when no such folder exists."""
    from gptscope.model.transformer import Transformer
    from gptscope.zoo import resolve

    path = resolve(path)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        refuse_pickles(path.parent)
        raise ValueError(f"{path} is a pickle file; gptscope loads safetensors folders only")
    if not path.is_dir():
        from gptscope.zoo import names

        raise ValueError(f"{path} is not a folder; pass the folder that gs.save wrote, or "
                         f"the name of a shipped model ({', '.join(names())})")
    if is_hf_folder(path):
        from gptscope.io.hf_import import load_pretrained

        return load_pretrained(path, device=device)
    refuse_pickles(path)
    cfg = read_config(path)
    state = read_safetensors(path / WEIGHTS, device=device)
    model = Transformer(cfg, device="meta")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path / WEIGHTS} does not match {path / CONFIG}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"{path / WEIGHTS}: tensor {name} has shape {tuple(tensor.shape)} but the "
                f"config implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, assign=True)
    model.rebuild_buffers(device)
    if (path / TOKENIZER).exists():
        from gptscope.tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(path / TOKENIZER)
    return model.eval()
