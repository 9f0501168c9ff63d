"""The settings of an alignment run that the trainer's own config does not hold (a reward
model's kind, PPO's KL budget), kept in the run folder so a resume cannot change them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptscope.utils.atomic import write_text


def check_options(out: str | Path, name: str, options: dict[str, Any], resume: bool) -> None:
    """On resume, refuse ``options`` that differ from the ones the run saved in ``name``."""
    from gptscope.train.run_folder import config_changes
    from gptscope.utils.files import read_json_object

    file = Path(out) / name
    if not resume or not file.is_file():
        return
    saved = read_json_object(file, f"{name} is written by gptscope align; do not edit it")
    changes = config_changes(saved, json.loads(json.dumps(options)), "")
    if changes:
        listed = "\n  ".join(changes)
        raise ValueError(f"--resume would change the run in {out} (saved -> given):\n  "
                         f"{listed}\nDrop those flags to continue the run as it was, or start "
                         "a new --out")


def write_options(out: str | Path, name: str, options: dict[str, Any]) -> None:
    """Save ``options`` (call while the trainer holds the folder's lock)."""
    write_text(Path(out) / name, json.dumps(options, indent=2, sort_keys=True) + "\n")


def base_data_spec(base_run: str | Path) -> dict[str, Any]:
    """The data the base run trained on, as a dict (an align run records it as its
    TrainConfig.data, so `run_token_batches` gives text the model knows)."""
    from gptscope.train.config import TrainConfig

    file = Path(base_run) / "train_config.json"
    if file.is_file():
        return TrainConfig.from_json(file).data.__dict__
    return {"corpus": "stories"}


def align_train_config(base_run: str | Path, defaults: dict[str, Any],
                       overrides: dict[str, Any], data: dict[str, Any] | None = None) -> Any:
    """The TrainConfig of an alignment run from ``base_run``: the trainer's defaults, then
    this lab's ``defaults``, then the caller's ``overrides`` (validated). A given ``lr``
    without ``min_lr`` drops the lab's ``min_lr`` (lr / 10 then, as in any run)."""
    from gptscope.train.config import TrainConfig

    defaults = dict(defaults)
    if "lr" in overrides and "min_lr" not in overrides:
        defaults.pop("min_lr", None)
    return TrainConfig.from_dict({**TrainConfig().to_dict(), **defaults, **overrides,
                                  "data": data if data is not None else base_data_spec(base_run),
                                  "init_from": str(base_run)})
