"""``load_pretrained``: open a Hugging Face GPT-2 or BERT folder as a gptscope Transformer.

Loading keeps memory near one copy of the weights: the model is built on the meta device
(no storage), each checkpoint tensor is read on its own with plain file reads (no memory
map whose touched pages would stay resident beside the copies), converted, and then put
into the model with ``load_state_dict(assign=True)``, which adopts the tensors instead of
copying them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from gptscope.io import convert_bert, convert_gpt2
from gptscope.utils.files import read_json_object

FAMILIES: dict[str, ModuleType] = {"gpt2": convert_gpt2, "bert": convert_bert}
CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
# Short hub names that now live under an organisation; both cache folders are tried.
HUB_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
}
DOWNLOAD_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json",
                     "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                     "vocab.txt", "special_tokens_map.json"]
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
               "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
               "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


def supported() -> str:
    """A readable list of the model types and architectures ``load_pretrained`` opens."""
    return "; ".join(f"model_type {k!r}: {', '.join(m.ARCHITECTURES)}" for k, m in
                     FAMILIES.items())


# -- finding the folder ---------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/..."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def find_in_cache(name: str) -> Path | None:
    """The cached snapshot folder of hub model ``name`` (one with a config.json), or None."""
    cache = hub_cache_dir()
    for repo in dict.fromkeys([name, HUB_ALIASES.get(name, name)]):
        root = cache / ("models--" + repo.replace("/", "--"))
        snap = _ref_snapshot(root)
        if snap is not None and (snap / CONFIG).is_file():
            return snap
        snaps = [p for p in (root / "snapshots").glob("*") if (p / CONFIG).is_file()]
        if snaps:
            return max(snaps, key=lambda p: p.stat().st_mtime)
    return None


def _ref_snapshot(root: Path) -> Path | None:
    """The snapshot folder that ``root/refs/main`` names, if it names one inside ``root``.

    The ref holds a commit hash; anything else (a path such as ``../..``, binary junk) is
    ignored, so a damaged cache falls back to its newest snapshot instead of leading
    outside it.
    """
    ref = root / "refs" / "main"
    try:
        name = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None
    if not name or Path(name).name != name or name in (".", ".."):
        return None
    return root / "snapshots" / name


def _offline() -> bool:
    flags = (os.environ.get(k, "").strip().lower() for k in ("HF_HUB_OFFLINE",
                                                             "TRANSFORMERS_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


def resolve_folder(path_or_name: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """A local folder for ``path_or_name``: the path itself, a hub-cache snapshot, or, for
    a name only, a download (needs ``huggingface_hub`` and offline mode unset).

    Returns the folder and the hub name it came from (None for a path).
    """
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file():
        raise ValueError(f"{path} is a file; pass the model folder that holds {CONFIG}")
    name = str(path_or_name)
    # A hub name is "name" or "org/name"; anything else was meant as a path.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ValueError(f"model folder {path} does not exist; pass a folder holding {CONFIG} "
                         f"and {SAFETENSORS} (or {PICKLE})")
    cached = find_in_cache(name)
    if cached is not None:
        return cached, name
    hint = (f"{name!r} is neither a folder nor in the Hugging Face cache at {hub_cache_dir()}"
            f"; pass a local folder holding {CONFIG} and {SAFETENSORS}")
    if _offline():
        raise ValueError(hint + " (offline mode is set, so nothing is downloaded)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(hint + ", or pip install huggingface_hub to download it") from None
    try:
        folder = snapshot_download(HUB_ALIASES.get(name, name), allow_patterns=DOWNLOAD_PATTERNS)
    except Exception as e:  # network, auth, unknown repo: all reported the same way
        raise ValueError(f"{hint}. Downloading it failed: {e}") from e
    return Path(folder), name


# -- reading tensors ------------------------------------------------------------------------


class SafetensorsFile:
    """A safetensors file read one tensor at a time with ordinary reads.

    The header (8-byte little-endian length, then JSON) is validated up front, so a
    truncated or corrupt file fails before anything is allocated.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            size = file.stat().st_size
            with open(file, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if size < 8 or not 2 <= n <= size - 8:
                    raise ValueError(f"header length {n} does not fit a {size}-byte file")
                header = json.loads(f.read(n))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise self._corrupt(e) from e
        if not isinstance(header, dict):
            raise self._corrupt("header is not a JSON object")
        header.pop("__metadata__", None)
        self.start = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            try:
                dtype = SAFETENSORS_DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as e:
                raise self._corrupt(f"bad header entry for {name}: {e!r}") from e
            nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            if end - begin != nbytes or begin < 0 or self.start + end > size:
                raise self._corrupt(f"tensor {name} lies outside the file or has the wrong size")
            self.entries[name] = (dtype, shape, begin, end)

    def _corrupt(self, why: object) -> ValueError:
        return ValueError(f"{self.file} is corrupt or truncated ({why}); re-save or "
                          "re-download it")

    def names(self) -> list[str]:
        return list(self.entries)

    def read(self, name: str) -> Tensor:
        dtype, shape, begin, end = self.entries[name]
        buf = torch.empty(end - begin, dtype=torch.uint8)
        with open(self.file, "rb") as f:
            f.seek(self.start + begin)
            if f.readinto(buf.numpy()) != end - begin:
                raise self._corrupt(f"tensor {name} is cut short")
        return buf.view(dtype).reshape(shape)


class PickleFile:
    """A ``pytorch_model.bin`` opened with ``weights_only=True``: tensors only, no code."""

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            try:  # a memory map keeps only the tensors being converted resident
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
                state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"{file} could not be read as a weights-only PyTorch checkpoint ({e}); it "
                "is corrupt, or holds more than tensors (gptscope never unpickles code)"
            ) from e
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in
                                                  state.values()):
            raise ValueError(f"{file} is not a state dict of tensors")
        self.state = state

    def names(self) -> list[str]:
        return list(self.state)

    def read(self, name: str) -> Tensor:
        return self.state.pop(name)


def weight_files(folder: Path) -> list[SafetensorsFile | PickleFile]:
    """The checkpoint files of a folder; safetensors preferred over pytorch_model.bin."""
    for single, index, kind in ((SAFETENSORS, SAFETENSORS_INDEX, SafetensorsFile),
                                (PICKLE, PICKLE_INDEX, PickleFile)):
        if (folder / single).is_file():
            return [kind(folder / single)]
        if (folder / index).is_file():
            return [kind(file) for file in shard_files(folder, index)]
    raise ValueError(f"{folder} holds no weights: expected {SAFETENSORS} (or {PICKLE}, or a "
                     f"sharded {SAFETENSORS_INDEX}) next to {CONFIG}")


def shard_files(folder: Path, index: str) -> list[Path]:
    """The shard files named by the ``weight_map`` of the index file ``folder/index``.

    Every entry must name a file inside ``folder``: the index is data from the download,
    and an entry such as ``../elsewhere/x.safetensors`` must not make gptscope open other
    files. The file itself may be a symlink: the Hugging Face cache links each snapshot
    file to ``../../blobs/<hash>``, and links were made by whoever made the folder.
    """
    file = folder / index
    fix = "re-download the model"
    weight_map = read_json_object(file, fix).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) for s in
                                                   weight_map.values()):
        raise ValueError(f"{file} is not a valid shard index: 'weight_map' must be a JSON "
                         f"object of tensor name -> shard file name; {fix}")
    root = folder.resolve()
    shards = []
    for entry in sorted(set(weight_map.values())):
        shard = folder / entry
        if shard.name in ("", ".", "..") or not shard.parent.resolve().is_relative_to(root):
            raise ValueError(f"{file} lists shard {entry!r}, which lies outside the model "
                             f"folder {folder}; shards must be files inside it ({fix})")
        if not shard.is_file():
            raise ValueError(f"{folder / entry} is missing (listed in {index}); {fix}")
        shards.append(shard)
    return shards


def read_hf_config(folder: Path) -> dict:
    """``config.json`` as a dict, with errors that name the file."""
    file = folder / CONFIG
    if not file.is_file():
        raise ValueError(f"{file} is missing; a Hugging Face model folder holds {CONFIG} and "
                         f"{SAFETENSORS}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON ({e}); the file is corrupt") from e
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object")
    return data


def pick_family(hf: dict, file: Path) -> tuple[ModuleType, str]:
    """The converter module and architecture name for a config.json dict."""
    model_type = hf.get("model_type")
    family = FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"{file}: model_type {model_type!r} is not supported; gptscope loads {supported()}"
        )
    archs = hf.get("architectures") or [family.ARCHITECTURES[0]]
    known = [a for a in archs if a in family.ARCHITECTURES]
    if not known:
        raise ValueError(f"{file}: architectures {archs} are not supported; gptscope loads "
                         f"{supported()}")
    return family, known[0]


def _normalize(name: str, family: ModuleType) -> str:
    for prefix in family.PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    normalize = getattr(family, "normalize_name", None)
    return normalize(name) if normalize else name


def _converted(files: list, family: ModuleType, specs: dict, optional: set[str],
               device: torch.device, dtype: torch.dtype) -> Iterator[tuple[str, Tensor]]:
    """Read, check and convert each tensor in turn; yield gptscope (name, tensor) pairs."""
    seen: set[str] = set()
    unexpected: list[str] = []
    for f in files:
        for raw in f.names():
            name = _normalize(raw, family)
            if name not in specs:
                if not family.ignored(name):
                    unexpected.append(raw)
                continue
            shape, convert = specs[name]
            tensor = f.read(raw)
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{f.file}: tensor {raw} has shape {tuple(tensor.shape)} but config.json "
                    f"implies {shape}; the weights do not belong to this config.json"
                )
            seen.add(name)
            for ours, value in convert(tensor).items():
                yield ours, value.to(device=device, dtype=dtype)
            del tensor
    missing = sorted(set(specs) - seen - optional)
    if missing or unexpected:
        names = ", ".join(f.file.name for f in files)
        raise ValueError(
            f"{names} does not match config.json: missing tensors {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected tensors {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}"
        )


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPE_NAMES:
        return DTYPE_NAMES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype must be a floating torch.dtype or one of {sorted(DTYPE_NAMES)}, "
                     f"got {dtype!r}")


def attach_tokenizer(model: torch.nn.Module, folder: Path) -> None:
    """Set ``model.tokenizer`` when gptscope's tokenizers can read the folder's files."""
    from gptscope.tokenizers import load_tokenizer

    try:
        model.tokenizer = load_tokenizer(folder)
    except (ValueError, KeyError, TypeError):
        # A tokenizer file of a kind gptscope does not read (it reads byte-level BPE and
        # WordPiece), or none: the model still loads, without a tokenizer.
        model.tokenizer = None


def load_pretrained(
    path_or_name: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    fold_ln: bool = False,
    center_writing_weights: bool = False,
    center_unembed: bool = False,
    fold_value_biases: bool = False,
) -> torch.nn.Module:
    """Open a Hugging Face GPT-2 or BERT model as a gptscope ``Transformer``.

    path_or_name: a local folder with ``config.json`` + ``model.safetensors`` (or
    ``pytorch_model.bin``, read with ``weights_only=True``), or a hub name such as
    ``"gpt2"`` found in the local Hugging Face cache (downloaded only when not cached,
    ``huggingface_hub`` is installed and offline mode is not set).
    dtype: the weights' dtype; None means float32.
    fold_ln / center_writing_weights / center_unembed / fold_value_biases: TransformerLens's
    weight processing (see ``gptscope.io.processing``; TransformerLens turns all four on by
    default, gptscope none); log-probabilities are unchanged.

    GPT-2 gives a causal LM whose logits match ``GPT2LMHeadModel``. BERT gives an encoder:
    ``model(tokens, stop_at_layer=cfg.n_layers, attention_mask=..., token_type_ids=...)``
    returns ``last_hidden_state``; with a BertForMaskedLM checkpoint the logits are the
    MLM head's. Pad BERT inputs on the right, as its tokenizers do: with an
    ``attention_mask`` gptscope numbers positions by counting real tokens, which equals
    BERT's 0, 1, 2, ... for right padding. The tokenizer in the folder is attached as
    ``model.tokenizer`` when gptscope's tokenizers can read it (GPT-2's byte-level BPE,
    BERT's WordPiece), else ``model.tokenizer`` is None. ``cfg.extra`` records the source
    folder, architecture and hub name.
    """
    from gptscope.io.processing import process_weights
    from gptscope.model.transformer import Transformer

    folder, name = resolve_folder(path_or_name)
    hf = read_hf_config(folder)
    family, arch = pick_family(hf, folder / CONFIG)
    files = weight_files(folder)
    names = {_normalize(n, family) for f in files for n in f.names()}
    cfg = family.config_from_hf(hf, names)
    cfg.extra.update({"hf_model_type": family.MODEL_TYPE, "hf_architecture": arch,
                      "source": str(folder.resolve())})
    if name is not None:
        cfg.extra["hf_name"] = name
    specs, optional = family.hf_specs(cfg)
    device, dtype = torch.device(device), _dtype(dtype)
    state = dict(_converted(files, family, specs, optional, device, dtype))
    del files
    model = Transformer(cfg, device="meta")
    expected = model.state_dict()
    if set(state) != set(expected):  # a converter bug, not bad input
        raise RuntimeError(f"conversion gave {sorted(set(state) ^ set(expected))[:6]}")
    model.load_state_dict(state, strict=True, assign=True)
    model.rebuild_buffers(device)
    model = process_weights(model, fold_ln=fold_ln, center_writing_weights=center_writing_weights,
                            center_unembed=center_unembed,
                            fold_value_biases=fold_value_biases, inplace=True)
    attach_tokenizer(model, folder)
    return model.eval()
