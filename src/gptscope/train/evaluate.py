"""Evaluate a run folder's weights: validation loss and the task's metric, as a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptscope.train.config import TrainConfig


def evaluate_run(run: str | Path, eval_steps: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Load ``run``'s newest good weights (`open_run`) and score them on the data the run
    trained on (its train_config.json).

    Same examples as the trainer's evaluations (same seed), so the numbers are comparable
    with the ``metrics.jsonl`` record of the same step. The result names the weights:
    ``step``, ``finished`` and ``weights`` (`RunWeights.describe`: the folder read and why).
    """
    from gptscope.train.data import build_data
    from gptscope.train.runs import open_run
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
    model, weights = open_run(run, device=device)
    # Reuse the trainer's data and evaluation code without its side effects on the folder.
    evaluator = Trainer.__new__(Trainer)
    evaluator.cfg = train_cfg
    evaluator.model = model
    evaluator.device = model.device
    evaluator.bf16 = False
    evaluator.data = build_data(train_cfg.data, model.cfg, model.tokenizer)
    return {"step": weights.step, "finished": weights.finished, "weights": weights.describe(),
            **evaluator.evaluate()}
