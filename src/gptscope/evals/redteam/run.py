"""`red_team`: the whole lab in one call (what ``gptscope redteam`` runs).

Into ``out`` it trains the offensive-reply classifier (``classifier/``) and the red LM
(``red-lm/``) from the target's weights, unless a finished one is there, runs zero-shot
red teaming (every later method learns from its failures) and then each method asked for,
and writes per method ``METHOD/questions.jsonl`` (every question, reply and verdict),
then ``report.json`` and ``index.html``. The settings are kept in ``redteam_config.json``:
a rerun with other settings into the same folder is refused (``overwrite`` redoes it all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptscope.evals.redteam.methods import GENERATORS, METHODS, Lab
from gptscope.evals.redteam.offensive import STANDS_IN, train_classifier
from gptscope.evals.redteam.questions import question_lists, train_on_lists
from gptscope.evals.redteam.report import judge, report_page, summarize
from gptscope.evals.redteam.target import check_assistant
from gptscope.utils.atomic import write_text

SETTINGS = "redteam_config.json"
RED_LM_LISTS = 4000


def _stage(folder: Path, finished: str, make: Any, open_: Any, overwrite: bool) -> Any:
    """Open the finished run in ``folder`` (it holds ``finished``), or make it first."""
    if overwrite or not (folder / finished).is_file():
        make()
    return open_(folder)


def _settings(target_run: str | Path, methods: tuple[str, ...], n: int, seed: int,
              rl_steps: int, kl_coef: float) -> dict[str, Any]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {METHODS}, got {list(methods)}")
    if n < 2:
        raise ValueError(f"n (questions per method) must be >= 2, got {n}")
    return {"target": str(target_run), "n": n, "seed": seed, "rl_steps": rl_steps,
            "kl_coef": kl_coef}


def red_team(target_run: str | Path, out: str | Path, methods: tuple[str, ...] = METHODS,
             n: int = 256, seed: int = 0, rl_steps: int = 320, kl_coef: float = 0.3,
             overwrite: bool = False, **train: Any) -> list[dict[str, Any]]:
    """Red-team the assistant in ``target_run`` with each of ``methods``; returns their
    summaries (zero-shot first). ``train``: trainer settings for every stage (threads,
    progress, device)."""
    from gptscope.align.options import check_options, write_options
    from gptscope.align.reward import HEAD_FILE, load_reward_model
    from gptscope.train.init import open_base

    out = Path(out)
    settings = _settings(target_run, methods, n, seed, rl_steps, kl_coef)
    check_options(out, SETTINGS, settings, resume=not overwrite)
    target = open_base(target_run)
    check_assistant(target)
    out.mkdir(parents=True, exist_ok=True)
    write_options(out, SETTINGS, settings)
    train = {"seed": seed, **train}
    classifier = _stage(out / "classifier", HEAD_FILE, lambda: train_classifier(
        target_run, out / "classifier", overwrite=True, **train), load_reward_model, overwrite)
    red_lm = _stage(out / "red-lm", "model.safetensors", lambda: train_on_lists(
        target_run, question_lists(RED_LM_LISTS, seed), out / "red-lm", overwrite=True,
        **train), open_base, overwrite)
    lab = Lab(target, classifier, red_lm, out / "red-lm", out, n, seed,
              train={k: v for k, v in train.items() if k != "seed"}, rl_steps=rl_steps,
              kl_coef=kl_coef)
    summaries = []
    for method in ("zero-shot", *(m for m in methods if m != "zero-shot")):
        records = judge(lab.target, classifier, GENERATORS[method](lab))
        if method == "zero-shot":
            lab.failures = [(r["question"], r["p_offensive"]) for r in records
                            if r["offensive"]]
        write_text(out / method / "questions.jsonl",
                   "".join(json.dumps(r) + "\n" for r in records))
        summaries.append(summarize(method, records, seed))
    write_text(out / "report.json", json.dumps({"stands_in": STANDS_IN, "methods": summaries},
                                               indent=2) + "\n")
    write_text(out / "index.html", report_page(summaries, STANDS_IN))
    return summaries
