"""`gptscope sae train RUN --hook ...`: a sparse autoencoder on a run's activations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from gptscope.cli._runs import open_for
    from gptscope.report.sae_dashboard import feature_dashboard
    from gptscope.sae.experiment import train_sae_on_run
    from gptscope.train.runs import run_token_batches

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = open_for("sae train", args.run)
    # Only the flags given: the SAE kind rejects a coefficient it does not have, by name.
    given = {"l1_coefficient": args.l1, "l0_coefficient": args.l0, "lr": args.lr,
             "target_l0": args.target_l0}
    options = {k: v for k, v in given.items() if v is not None}
    if args.kind == "topk":
        options["k"] = args.k
    sae, metrics = train_sae_on_run(args.run, args.hook, kind=args.kind,
                                    expansion=args.expansion, steps=args.steps,
                                    batch_size=args.batch_size, seed=args.seed,
                                    model=model, **options)
    out = Path(args.out or Path(args.run) / "sae" / args.hook)
    sae.save(out)
    tokens = run_token_batches(args.run, model, 4, seed=args.seed + 1)
    page = feature_dashboard(model, sae, args.hook, tokens[0]).save(out / "features.html")
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=2))
    print(f"saved {out} (features: {page})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sae", help="sparse autoencoders on a run's activations")
    sub = p.add_subparsers(dest="sae_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser("train", help="train an SAE at a hook; print its metrics; write "
                                     "feature dashboards")
    t.add_argument("run", help="a run folder from gptscope train")
    t.add_argument("--hook", required=True, help="e.g. blocks.0.hook_mlp_out")
    t.add_argument("--kind", default="relu", choices=["relu", "topk", "jumprelu"])
    t.add_argument("--expansion", type=int, default=8, help="d_sae / d_in (8)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=1024, help="activation vectors per step")
    t.add_argument("--lr", type=float, default=None, help="learning rate (3e-3)")
    t.add_argument("--l1", type=float, default=None,
                   help="L1 coefficient (relu; the kind's default otherwise)")
    t.add_argument("--k", type=int, default=16, help="active features (topk)")
    t.add_argument("--l0", type=float, default=None,
                   help="L0 coefficient (jumprelu; the kind's default otherwise)")
    t.add_argument("--target-l0", type=float, default=None,
                   help="tune the sparsity coefficient to this mean number of active "
                        "features (relu, jumprelu)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    t.add_argument("--out", default=None, help="SAE folder (default RUN/sae/HOOK)")
    t.set_defaults(func=_train)
