"""`gptscope train`, `gptscope sample` and `gptscope eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Flags that override ModelConfig / TrainConfig fields: (flag, field, type).
MODEL_FLAGS = [("--n-layers", "n_layers", int), ("--d-model", "d_model", int),
               ("--n-heads", "n_heads", int), ("--n-ctx", "n_ctx", int),
               ("--d-mlp", "d_mlp", int), ("--dropout", "dropout", float)]
TRAIN_FLAGS = [("--max-steps", "max_steps", int), ("--lr", "lr", float),
               ("--min-lr", "min_lr", float), ("--warmup-steps", "warmup_steps", int),
               ("--batch-size", "batch_size", int), ("--grad-accum", "grad_accum", int),
               ("--weight-decay", "weight_decay", float), ("--grad-clip", "grad_clip", float),
               ("--eval-every", "eval_every", int), ("--eval-steps", "eval_steps", int),
               ("--log-every", "log_every", int), ("--ckpt-every", "ckpt_every", int),
               ("--keep-last", "keep_last", int), ("--seed", "seed", int),
               ("--device", "device", str), ("--threads", "threads", int),
               ("--schedule", "schedule", str)]


# A vision transformer's data are images, which the text/task DataSpec does not describe:
# this preset runs gptscope.vision.train_vit_digits (the same Trainer, its own data object).
VISION_PRESET = "vit-digits"


def _kv(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (numbers, bools), else text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(subparsers: argparse._SubParsersAction) -> None:
    from gptscope.train.presets import describe_presets

    p = subparsers.add_parser(
        "train", help="train a model (a preset, a task or a text file)",
        description="Train a GPT into a run folder (config.json, model.safetensors, "
        "tokenizer.json, metrics.jsonl, checkpoints/). Data-parallel under torchrun: "
        "torchrun --nproc_per_node N -m gptscope train ...",
        epilog="presets:\n" + describe_presets() + f"\n  {VISION_PRESET:17s} a vision "
        "transformer on the bundled 8x8 digits (docs/vision.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", help="start from a named preset (listed below)")
    p.add_argument("--out", required=True, help="run folder to write (or resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest valid checkpoint; flags "
                   "that would change its data or model are refused")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (removes the files gptscope train wrote "
                   "there; others stay)")
    src = p.add_argument_group("data (replaces the preset's)")
    src.add_argument("--task", help="a synthetic task: reverse, copy, sort, addition, "
                     "modular_addition, induction, brackets")
    src.add_argument("--task-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                     help="task parameter, e.g. --task-arg n_items=6 (repeatable)")
    src.add_argument("--data", help="a UTF-8 text file to train on")
    src.add_argument("--corpus", choices=["shakespeare", "stories"], help="a bundled corpus")
    src.add_argument("--tokenizer", choices=["char", "bpe"], help="for text (default char)")
    src.add_argument("--vocab-size", type=int, help="BPE vocabulary size")
    src.add_argument("--full-batch", action="store_true", help="whole train split each step")
    model = p.add_argument_group("model overrides")
    for flag, _, typ in MODEL_FLAGS:
        model.add_argument(flag, type=typ)
    model.add_argument("--attn-only", action="store_true", default=None)
    tr = p.add_argument_group("training overrides")
    for flag, _, typ in TRAIN_FLAGS:
        tr.add_argument(flag, type=typ)
    tr.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on for CUDA, off for CPU)")
    tr.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile (default: on for CUDA, off for CPU)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--wandb", action="store_true", help="also log to wandb (if installed)")
    tr.add_argument("--tensorboard", action="store_true", help="also log to tensorboard")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser("sample", help="generate text from a trained run",
                              description="Stream a continuation of --prompt to stdout.")
    s.add_argument("run", help="run folder (or any folder gs.save wrote)")
    s.add_argument("--prompt", default="", help="text, or space-separated token ids for "
                   "models without a tokenizer")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=run_sample)

    e = subparsers.add_parser("eval", help="evaluate a trained run; prints JSON",
                              description="Validation loss and the task's metric of a run.")
    e.add_argument("run", help="run folder written by gptscope train")
    e.add_argument("--eval-steps", type=int, help="batches to score (default: the run's)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--task", help="an evaluation task instead: a built-in name "
                   "(stories-agreement, stories-agreement-shifted, stories-sentiment, or a "
                   "synthetic task: copy, reverse, sort, addition, modular_addition, "
                   "induction, brackets, zipf_lookup) or a JSONL file of samples "
                   "(see docs/evals.md)")
    e.add_argument("--n", type=int, default=200, help="samples of a built-in task")
    e.add_argument("--out", help="folder for the task's log (samples.jsonl, summary.json, "
                   "index.html)")
    e.add_argument("--batch-size", type=int, default=16, help="changes speed, not scores")
    e.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    e.set_defaults(func=run_eval)


def _data_spec(args: argparse.Namespace, base: Any) -> Any:
    from gptscope.train.config import DataSpec

    given = [x for x in (args.task, args.data, args.corpus) if x is not None]
    if len(given) > 1:
        raise ValueError("pass only one of --task, --data and --corpus")
    if given:
        spec = DataSpec(task=args.task, task_kwargs=dict(args.task_arg), text=args.data,
                        corpus=args.corpus)
    elif base is not None:
        spec = base
        if args.task_arg:
            spec = DataSpec(**{**spec.__dict__,
                               "task_kwargs": {**spec.task_kwargs, **dict(args.task_arg)}})
    else:
        raise ValueError("say what to train on: --preset NAME, --task NAME, --data FILE or "
                         "--corpus shakespeare")
    changes = {}
    if args.tokenizer:
        changes["tokenizer"] = args.tokenizer
    if args.vocab_size:
        changes["bpe_vocab_size"] = args.vocab_size
    if args.full_batch:
        changes["full_batch"] = True
    return DataSpec(**{**spec.__dict__, **changes}) if changes else spec


def build_configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """The (ModelConfig, TrainConfig) a `gptscope train` command line describes."""
    from gptscope.config import ModelConfig
    from gptscope.train.config import TrainConfig
    from gptscope.train.presets import get_preset

    out = Path(args.out)
    if args.resume and (out / "train_config.json").exists() and args.preset is None:
        # Resuming: the run's own configs, so a resume cannot silently change the run.
        model_cfg = ModelConfig.from_json(out / "config.json")
        train_cfg = TrainConfig.from_json(out / "train_config.json")
        base_data = train_cfg.data
    elif args.preset:
        preset = get_preset(args.preset)
        model_cfg, train_cfg, base_data = preset.model, preset.train, preset.train.data
    else:
        model_cfg, train_cfg, base_data = ModelConfig(n_layers=2, d_model=64, n_heads=4,
                                                      n_ctx=64), TrainConfig(), None
    data = _data_spec(args, base_data)
    model_changes = {f: getattr(args, f) for _, f, _ in MODEL_FLAGS if getattr(args, f) is not None}
    if args.attn_only:
        model_changes["attn_only"] = True
    if model_changes:
        model_cfg = model_cfg.replace(**model_changes)
    train_changes = {f: getattr(args, f) for _, f, _ in TRAIN_FLAGS if getattr(args, f) is not None}
    for name in ("bf16", "compile"):
        if getattr(args, name) is not None:
            train_changes[name] = getattr(args, name)
    if args.no_progress:
        train_changes["progress"] = False
    if args.wandb:
        train_changes["wandb"] = True
    if args.tensorboard:
        train_changes["tensorboard"] = True
    # Through from_dict, so the new values are validated.
    train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), **train_changes,
                                       "data": data.__dict__})
    return model_cfg, train_cfg


def run_vit_digits(args: argparse.Namespace) -> int:
    """``--preset vit-digits``: model and training flags override
    `gptscope.vision.vit_digits_config` and `vit_digits_train_config`."""
    from gptscope.train.config import TrainConfig
    from gptscope.vision import train_vit_digits, vit_digits_config, vit_digits_train_config

    data_flags = [f"--{name.replace('_', '-')}" for name in ("task", "data", "corpus",
                                                            "tokenizer", "vocab_size", "n_ctx")
                  if getattr(args, name) is not None] + (["--full-batch"] if args.full_batch
                                                          else [])
    if data_flags or args.task_arg or args.attn_only:
        raise ValueError(f"--preset {VISION_PRESET} trains on the bundled digits with one "
                         "position per patch; drop " + ", ".join(
                             data_flags + ["--task-arg"] * bool(args.task_arg)
                             + ["--attn-only"] * bool(args.attn_only)))
    model_cfg = vit_digits_config()
    changes = {f: getattr(args, f) for _, f, _ in MODEL_FLAGS if getattr(args, f) is not None}
    if changes:
        model_cfg = model_cfg.replace(**changes)
    train_cfg = vit_digits_train_config()
    overrides = {f: getattr(args, f) for _, f, _ in TRAIN_FLAGS if getattr(args, f) is not None}
    overrides["progress"] = not args.no_progress
    train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), **overrides})
    result = train_vit_digits(args.out, model_cfg, train_cfg, overwrite=args.overwrite,
                              resume=args.resume)
    print(json.dumps({"step": result.step, **result.last_eval}))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from gptscope.train import train
    from gptscope.train.distributed import teardown

    if args.preset == VISION_PRESET:
        return run_vit_digits(args)
    model_cfg, train_cfg = build_configs(args)
    try:
        result = train(model_cfg, train_cfg, args.out, resume=args.resume,
                       overwrite=args.overwrite)
    finally:
        teardown()
    if result.out_dir and train_cfg.progress:
        print(f"saved {result.out_dir} (step {result.step})", file=sys.stderr)
    return 0


def _prompt(model: Any, text: str) -> Any:
    if model.tokenizer is not None:
        if not text:
            return [0]  # an empty prompt: start from token 0 (a newline for char corpora)
        return text
    try:
        ids = [int(t) for t in text.split()]
    except ValueError as e:
        raise ValueError("this model has no tokenizer: give the prompt as space-separated "
                         "token ids, e.g. --prompt '3 1 4 10'") from e
    if not ids:
        raise ValueError("give a prompt of token ids, e.g. --prompt '3 1 4 10'")
    return ids


def run_sample(args: argparse.Namespace) -> int:
    from gptscope.cli._runs import open_for

    model = open_for("sample", args.run, device=args.device)
    prompt = _prompt(model, args.prompt)
    if isinstance(prompt, str):
        sys.stdout.write(prompt)
    elif model.tokenizer is not None:
        sys.stdout.write(model.tokenizer.decode(prompt))
    else:
        sys.stdout.write(" ".join(map(str, prompt)))
    as_text = isinstance(prompt, str)
    stream = model.stream(prompt, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed)
    for piece in stream:
        if as_text:
            sys.stdout.write(piece)
        elif model.tokenizer is not None:
            sys.stdout.write(model.tokenizer.decode([piece]))
        else:
            sys.stdout.write(f" {piece}")
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.task is not None:
        return _run_task(args)
    from gptscope.train.evaluate import evaluate_run

    scores = evaluate_run(args.run, eval_steps=args.eval_steps, device=args.device)
    print(f"gptscope eval: using {scores['weights']}", file=sys.stderr)
    print(json.dumps(scores, indent=2))
    return 0


def _run_task(args: argparse.Namespace) -> int:
    from gptscope.evals.files import task_from_name_or_file
    from gptscope.evals.task import run_eval as run_task
    from gptscope.train.runs import open_run
    from gptscope.zoo import resolve

    model, weights = open_run(args.run, device=args.device)
    print(f"gptscope eval: using {weights.describe()}", file=sys.stderr)
    task = task_from_name_or_file(args.task, args.n, resolve(args.run))
    result = run_task(model, task, out=args.out, batch_size=args.batch_size, seed=args.seed)
    print(json.dumps(result.summary, indent=2))
    return 0
