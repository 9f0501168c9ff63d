"""`gptscope align sft|rm|ppo|dpo|grpo|rate|label|results|chart`: from a base model to an
assistant."""

from __future__ import annotations

import argparse
import json
from typing import Any

# Trainer settings every align subcommand takes: (flag, TrainConfig field, type).
TRAIN_FLAGS = [("--max-steps", "max_steps", int), ("--lr", "lr", float),
               ("--batch-size", "batch_size", int), ("--warmup-steps", "warmup_steps", int),
               ("--eval-every", "eval_every", int), ("--log-every", "log_every", int),
               ("--ckpt-every", "ckpt_every", int), ("--seed", "seed", int),
               ("--threads", "threads", int), ("--device", "device", str)]


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder to write (or resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    tr = p.add_argument_group("training (defaults: the recipe in docs/alignment.md)")
    for flag, _, typ in TRAIN_FLAGS:
        tr.add_argument(flag, type=typ)
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = {f: getattr(args, f) for _, f, _ in TRAIN_FLAGS if getattr(args, f) is not None}
    if args.no_progress:
        given["progress"] = False
    return given


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {"resume": args.resume, "overwrite": args.overwrite, **_overrides(args)}


def _print(record: dict[str, Any]) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                      for k, v in record.items()}, indent=2))


def _sft(args: argparse.Namespace) -> int:
    from gptscope.align.sft import fine_tune, instruction_following
    from gptscope.train.data import STORIES_INSTRUCTIONS

    extra = {"packing": not args.no_packing}
    if args.n_instructions is not None:
        extra["n_instructions"] = args.n_instructions
    result = fine_tune(args.base, args.out, args.data, **extra, **_common(args))
    record = dict(result.last_eval)
    if args.data == STORIES_INSTRUCTIONS:
        record["instructions_followed"] = instruction_following(result.model)
    _print(record)
    return 0


def _rm(args: argparse.Namespace) -> int:
    from gptscope.align.dpo import read_preferences
    from gptscope.align.reward import train_reward_model

    labels = pairs = None
    if args.labels:
        from gptscope.align.rate import read_labels

        labels = read_labels(args.labels)
    if args.pairs:
        pairs = [(p + c, p + r) for p, c, r in read_preferences(args.pairs)]
    kind = "pairs" if pairs is not None else args.kind
    result = train_reward_model(args.base, args.out, kind, labels=labels, pairs=pairs,
                                max_sentences=args.max_sentences, **_common(args))
    _print(result.last_eval)
    return 0


def _ppo(args: argparse.Namespace) -> int:
    from gptscope.align.ppo import run_ppo
    from gptscope.align.ppo_config import PPOConfig

    given = {"kl_budget": args.kl_budget, "rollout_size": args.rollout_size,
             "max_new_tokens": args.max_new_tokens, "ppo_epochs": args.ppo_epochs,
             "clip": args.clip, "kl_coef": args.kl_coef, "prompt": args.prompt}
    cfg = PPOConfig.from_dict({k: v for k, v in given.items() if v is not None})
    result = run_ppo(args.policy, args.reward, args.out, cfg, **_common(args))
    _print({"step": result.step, **result.last_eval})
    return 0


def _dpo(args: argparse.Namespace) -> int:
    from gptscope.align.dpo import read_preferences, run_dpo

    pairs = read_preferences(args.pairs) if args.pairs else None
    result = run_dpo(args.policy, args.out, pairs=pairs, reward_run=args.reward,
                     n_pairs=args.n_pairs, beta=args.beta, kind=args.kind, group=args.group,
                     sft_weight=args.sft_weight, rounds=args.rounds, **_common(args))
    _print({"step": result.step, **result.last_eval})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("align", help="fine-tune, reward-model, RLHF (PPO), DPO, rate",
                              description="From a base model to an assistant: supervised "
                              "fine-tuning, reward models, PPO, DPO, blind rating. See "
                              "docs/alignment.md.")
    sub = p.add_subparsers(dest="align_command", metavar="SUBCOMMAND", required=True)

    s = sub.add_parser("sft", help="supervised fine-tuning on chat turns (response tokens only)")
    s.add_argument("base", help="the base run folder (with its tokenizer)")
    s.add_argument("--data", default="stories-instructions",
                   help="a JSONL file of {prompt, response}, or stories-instructions (default: "
                   "generated from the stories grammar)")
    s.add_argument("--n-instructions", type=int, help="how many stories instructions (4000)")
    s.add_argument("--no-packing", action="store_true", help="one turn per row")
    _run_flags(s)
    s.set_defaults(func=_sft)

    r = sub.add_parser("rm", help="train a reward model (scalar head on the last token)")
    r.add_argument("base", help="the run whose weights the reward model starts from")
    r.add_argument("--kind", choices=["labels", "pairs"], default="labels",
                   help="absolute sentiment labels (soft 0.5 for neutral) or Bradley-Terry "
                   "pairs, from the stories corpus")
    r.add_argument("--labels", help="your own labels: a labelling page's JSON export")
    r.add_argument("--pairs", help="your own comparisons: a JSONL preference file")
    r.add_argument("--max-sentences", type=int, default=2,
                   help="stories texts hold 1 to this many sentences (2)")
    _run_flags(r)
    r.set_defaults(func=_rm)

    o = sub.add_parser("ppo", help="RLHF with PPO against a reward model")
    o.add_argument("policy", help="the run to tune (its weights are also the KL reference)")
    o.add_argument("--reward", required=True, help="a reward-model run (gptscope align rm)")
    o.add_argument("--kl-budget", type=float, help="stop at this KL per completion (10 nats)")
    o.add_argument("--rollout-size", type=int, help="completions per rollout (64)")
    o.add_argument("--max-new-tokens", type=int, help="completion length cap (64)")
    o.add_argument("--ppo-epochs", type=int, help="passes over each rollout (2)")
    o.add_argument("--clip", type=float, help="PPO's clip range (0.2)")
    o.add_argument("--kl-coef", type=float, help="KL penalty in the reward (0: only watched)")
    o.add_argument("--prompt", help="what completions continue (default: a newline, i.e. "
                   "unconditional samples)")
    _run_flags(o)
    o.set_defaults(func=_ppo)

    d = sub.add_parser("dpo", help="direct preference optimisation (or IPO) from pairs")
    d.add_argument("policy", help="the run to tune (its weights are the frozen reference)")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="a JSONL preference file {prompt, chosen, rejected}")
    src.add_argument("--reward", help="rank the policy's own samples with this reward model")
    d.add_argument("--n-pairs", type=int, default=2048, help="pairs to rank (with --reward)")
    d.add_argument("--beta", type=float, default=0.1, help="DPO's beta (0.1)")
    d.add_argument("--kind", choices=["sigmoid", "ipo"], default="sigmoid")
    d.add_argument("--group", type=int, default=8, help="with --reward: rank the best of "
                   "this many samples against the worst (8)")
    d.add_argument("--sft-weight", type=float, default=0.0, help="add this times the chosen "
                   "completions' cross-entropy (RPO; 1.0 keeps the words intact)")
    d.add_argument("--rounds", type=int, default=1, help="with --reward: online DPO, the run "
                   "split into this many rounds, each ranking fresh samples of the policy (1)")
    _run_flags(d)
    d.set_defaults(func=_dpo)
    g = sub.add_parser("grpo", help="GRPO with verifiable rewards on a synthetic task run")
    g.add_argument("base", help="a task run (e.g. gptscope train --preset addition)")
    g.add_argument("--group-size", type=int, help="completions per prompt (8)")
    g.add_argument("--prompts-per-rollout", type=int, help="prompts per rollout (16)")
    g.add_argument("--epochs", type=int, help="passes over each rollout (1)")
    g.add_argument("--clip", type=float, help="the ratio's clip range (0.2)")
    g.add_argument("--kl-coef", type=float, help="k3 KL to the base in the loss (0)")
    g.add_argument("--temperature", type=float, help="sampling temperature (1.0)")
    g.add_argument("--reward", choices=["exact", "per_token"],
                   help="1 for an exactly right answer (default), or the share of right tokens")
    _run_flags(g)
    g.set_defaults(func=_grpo)
    _register_pages(sub)


def _grpo(args: argparse.Namespace) -> int:
    from gptscope.align.grpo import GRPOConfig, run_grpo

    given = {"group_size": args.group_size, "prompts_per_rollout": args.prompts_per_rollout,
             "epochs": args.epochs, "clip": args.clip, "kl_coef": args.kl_coef,
             "temperature": args.temperature, "reward": args.reward}
    cfg = GRPOConfig.from_dict({k: v for k, v in given.items() if v is not None})
    result = run_grpo(args.base, args.out, cfg, **_common(args))
    _print({"step": result.step, **result.last_eval})
    return 0


def _register_pages(sub: argparse._SubParsersAction) -> None:
    """`rate`, `label` and `results`: the offline pages and what they export."""
    r = sub.add_parser("rate", help="a blind-rating page of samples from two runs",
                       description="Write an offline page that shows shuffled, unlabelled "
                       "pairs of samples from RUN_A and RUN_B; rate them, export the JSON, "
                       "then `gptscope align results FILE`.")
    r.add_argument("run_a")
    r.add_argument("run_b")
    _page_flags(r, 20)
    r.set_defaults(func=_rate)
    lab = sub.add_parser("label", help="a labelling page of a run's samples (for align rm)")
    lab.add_argument("run")
    _page_flags(lab, 40)
    lab.set_defaults(func=_label)
    res = sub.add_parser("results", help="read a rating or labelling page's JSON export")
    res.add_argument("file")
    res.add_argument("--pairs", help="also write the ratings as a preference JSONL file "
                     "(for align dpo --pairs / align rm --pairs)")
    res.set_defaults(func=_results)
    c = sub.add_parser("chart", help="reward model vs exact judge against sqrt(KL), for PPO "
                       "and DPO runs on one chart, with samples of the kept checkpoints")
    c.add_argument("runs", nargs="+", help="PPO runs and DPO runs ranked by a reward model")
    c.add_argument("--out", required=True, help="the HTML page to write")
    c.add_argument("--samples", type=int, default=4, help="samples per kept checkpoint")
    c.set_defaults(func=_chart)


def _chart(args: argparse.Namespace) -> int:
    from gptscope.align.overopt import curve_of_run, write_overoptimisation_page

    page = write_overoptimisation_page(args.runs, args.out, args.samples)
    for run in args.runs:
        c = curve_of_run(run)
        where = "do not part" if c.parting is None else f"part at KL {c.parting ** 2:.1f}"
        print(f"{c.name}: reward model and judge {where}; last judge {c.judge[-1]:.2f} at "
              f"KL {c.sqrt_kl[-1] ** 2:.1f}")
    print(f"wrote {page}")
    return 0


def _page_flags(p: argparse.ArgumentParser, n: int) -> None:
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--n", type=int, default=n, help=f"samples per run ({n})")
    p.add_argument("--prompt", default="\n", help="what the samples continue (a newline)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def _samples(run: str, args: argparse.Namespace) -> list[str]:
    from gptscope.align.measure import sample_texts
    from gptscope.cli._runs import open_for

    model = open_for(f"align {args.align_command}", run)
    return sample_texts(model, args.n, args.prompt, args.max_new_tokens, args.seed)


def _rate(args: argparse.Namespace) -> int:
    from gptscope.align.rate import write_rating_page

    a, b = _samples(args.run_a, args), _samples(args.run_b, args)
    items = [(args.prompt, x, y) for x, y in zip(a, b, strict=True)]
    page = write_rating_page(items, args.out, name_a=f"A ({args.run_a})",
                             name_b=f"B ({args.run_b})", seed=args.seed)
    print(f"wrote {page}: open it, rate the {len(items)} pairs, export the JSON, then "
          "gptscope align results FILE")
    return 0


def _label(args: argparse.Namespace) -> int:
    from gptscope.align.rate import write_labelling_page

    page = write_labelling_page(_samples(args.run, args), args.out, seed=args.seed)
    print(f"wrote {page}: label the samples, export the JSON, then gptscope align rm BASE "
          "--labels FILE --out RM")
    return 0


def _results(args: argparse.Namespace) -> int:
    from gptscope.align.rate import (
        ratings_to_preferences,
        read_labels,
        read_ratings,
        write_preferences,
    )
    from gptscope.utils.files import read_json_object

    kind = read_json_object(args.file, "a rating or labelling page's JSON export").get("kind")
    if kind == "labels":
        labels = read_labels(args.file)
        print(f"{len(labels)} labelled texts; train a reward model on them with "
              f"gptscope align rm BASE --labels {args.file} --out RM")
        return 0
    print(read_ratings(args.file).describe())
    if args.pairs:
        pairs = ratings_to_preferences(args.file)
        write_preferences(pairs, args.pairs)
        print(f"wrote {len(pairs)} preference pairs to {args.pairs}")
    return 0
