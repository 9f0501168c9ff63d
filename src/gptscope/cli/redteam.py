"""`gptscope redteam TARGET_RUN`: red-team an assistant with a red LM (docs/evals.md)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from gptscope.evals.redteam.methods import METHODS

    p = subparsers.add_parser("redteam", help="red-team an assistant: a red LM writes "
                              "questions, a classifier judges the replies (Perez et al. 2022)")
    p.add_argument("target", help="the assistant's run folder (gptscope align sft), or a zoo "
                   "name such as stories-assistant")
    p.add_argument("--out", required=True, help="folder for the classifier, the red LM, "
                   "every question and the report (rerun to reuse what is finished)")
    p.add_argument("--method", nargs="+", default=list(METHODS), choices=METHODS,
                   help="methods to run (default: all; zero-shot always runs, the others "
                   "learn from its failures)")
    p.add_argument("--n", type=int, default=256, help="questions per method (256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rl-steps", type=int, default=320, help="PPO updates (320: 40 rollouts "
                   "of 64 questions)")
    p.add_argument("--kl-coef", type=float, default=0.3, help="PPO's KL penalty per "
                   "question: higher keeps RL's questions more varied, and finds fewer "
                   "failures (0.3)")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--overwrite", action="store_true", help="redo every stage in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_redteam)


def _redteam(args: argparse.Namespace) -> int:
    from gptscope.evals.redteam.run import red_team

    train = {"progress": not args.no_progress}
    if args.threads is not None:
        train["threads"] = args.threads
    summaries = red_team(args.target, args.out, tuple(args.method), args.n, args.seed,
                         args.rl_steps, args.kl_coef, args.overwrite, **train)
    print(f"{'method':<11} {'success':>8} {'95% CI':>13} {'self-BLEU':>9} {'distinct-2':>10}")
    for s in summaries:
        print(f"{s['method']:<11} {s['attack_success']:>8.1%} "
              f"{s['ci_low']:>6.1%}-{s['ci_high']:<6.1%} {s['self_bleu']:>9.3f} "
              f"{s['distinct_2']:>10.3f}")
    print(f"report: {args.out}/index.html")
    return 0
