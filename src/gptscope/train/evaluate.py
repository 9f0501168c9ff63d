"""Evaluate a finished run folder: its validation loss and task metric, as a dict."""

from __future__ import annotations

from pathlib import Path

from gptscope.train.config import TrainConfig


def evaluate_run(run: str | Path, eval_steps: int | None = None,
                 device: str = "cpu") -> dict[str, float]:
    """Load ``run`` (model + train_config.json) and score it on the data it was trained on.

    Same examples as the trainer's evaluations (same seed), so the numbers are comparable
    with the last ``metrics.jsonl`` record.
    """
    from gptscope.io.checkpoint import load
    from gptscope.train.trainer import Trainer

    run = Path(run)
    cfg_file = run / "train_config.json"
    if not cfg_file.exists():
        raise ValueError(f"{cfg_file} is missing; eval needs a folder written by gptscope train")
    train_cfg = TrainConfig.from_json(cfg_file)
    changes = {"device": device, "progress": False, "wandb": False, "tensorboard": False,
               "compile": False}
    if eval_steps is not None:
        changes["eval_steps"] = eval_steps
    train_cfg = train_cfg.replace(**changes)
    model = load(run, device=device)
    # Reuse the trainer's data and evaluation code without its side effects on the folder.
    evaluator = Trainer.__new__(Trainer)
    evaluator.cfg = train_cfg
    evaluator.model = model
    evaluator.device = model.device
    evaluator.bf16 = False
    from gptscope.train.data import build_data

    evaluator.data = build_data(train_cfg.data, model.cfg, model.tokenizer)
    return {"step": _last_step(run), **evaluator.evaluate()}


def _last_step(run: Path) -> int:
    import json

    last = 0
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                last = max(last, int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError):
                continue
    return last
