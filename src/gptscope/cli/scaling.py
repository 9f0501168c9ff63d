"""`gptscope scaling sweep|point|report|digits|trends`: scaling laws measured on your own
sweeps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _spec(args: argparse.Namespace):  # -> SweepSpec
    from gptscope.scaling.grid import SweepSpec, get_sweep_preset, parse_grid

    spec = get_sweep_preset(args.preset)
    if args.grid:
        spec = parse_grid(args.grid, spec)
    changes = {k: v for k, v in (("dropout", args.dropout), ("lr_rule", args.lr_rule),
                                 ("corpus", args.corpus), ("epochs", args.epochs),
                                 ("task", args.task))
               if v is not None}
    return SweepSpec.from_dict(spec.to_dict() | changes)


def _sweep(args: argparse.Namespace) -> int:
    from gptscope.scaling.sweep import fit_to_budget, parse_duration, run_sweep

    budget = parse_duration(args.budget) if args.budget else None
    spec = _spec(args)
    if budget is not None and args.grid is None:
        # A preset's grid is cut to the budget (a grid the user wrote is refused instead);
        # rerun on a sweep cut that way, the command continues the same cut grid.
        saved = _saved_spec(Path(args.out))
        axes = ("widths", "data_fractions")
        if saved is not None and spec.to_dict() | {a: getattr(saved, a) for a in axes} \
                == saved.to_dict():
            spec = saved
        elif saved is None:
            spec, dropped = fit_to_budget(spec, budget, args.jobs)
            if dropped:
                print(f"to fit {args.budget}: dropped {', '.join(dropped)}")
    rows = run_sweep(args.out, spec, jobs=args.jobs, budget_s=budget,
                     executor=args.executor)
    print(f"{len(rows)} points finished in {args.out}; "
          f"gptscope scaling report {args.out} draws the fits")
    return 0


def _saved_spec(folder: Path):  # -> SweepSpec | None
    from gptscope.scaling.sweep import SWEEP_FILE, Sweep

    return Sweep.open(folder).spec if (folder / SWEEP_FILE).is_file() else None


def _point(args: argparse.Namespace) -> int:
    from gptscope.scaling.sweep import Sweep, train_point

    sweep = Sweep.open(args.sweep)
    result = train_point(sweep, sweep.point(args.name), args.search_factor)
    print(json.dumps(result))
    return 0


def _report(args: argparse.Namespace) -> int:
    from gptscope.report.scaling import scaling_report

    folder = Path(args.sweep)
    # a folder gets its report inside; a shipped name or saved .json, beside it
    default = folder / "report.html" if folder.is_dir() else Path(f"{folder.stem}-report.html")
    out = Path(args.out) if args.out else default
    summary = scaling_report(args.sweep, out, compare=args.compare, n_boot=args.n_boot)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


def _digits(args: argparse.Namespace) -> int:
    from gptscope.report.scaling import fit_summary
    from gptscope.scaling.analysis import analyse
    from gptscope.scaling.digits import AXES, DigitsSpec, parse_axis, run_digits

    changes = {a: parse_axis(a, getattr(args, a)) for a in AXES if getattr(args, a)}
    changes |= {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                  ("lr_scale", args.lr_scale)) if v is not None}
    spec = DigitsSpec.from_dict(changes)
    rows = run_digits(args.out, spec)
    summary = fit_summary(analyse(rows, n_boot=args.n_boot, data_key="images_seen"))
    print(json.dumps(summary, indent=2))
    print(f"{len(rows)} points in {args.out} (D: images seen, {spec.epochs} epoch(s) of each "
          f"point's share of the training split); gptscope scaling report {args.out} "
          "draws them")
    return 0


def _trends(args: argparse.Namespace) -> int:
    from gptscope.scaling.trends import era_doubling_times

    for era, row in era_doubling_times(n_boot=args.n_boot).items():
        print(f"{era:>18}: doubles every {row['months']:.1f} months "
              f"(95% interval {row['low']:.1f}-{row['high']:.1f}; {row['n']} systems, "
              f"{row['from']:.0f}-{row['to']:.0f})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from gptscope.scaling.executors import EXECUTORS
    from gptscope.scaling.grid import LR_RULES, PRESETS
    from gptscope.train.config import CORPORA

    p = subparsers.add_parser("scaling", help="scaling laws: sweeps, fits, compute trends")
    sub = p.add_subparsers(dest="scaling_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser("sweep", help="train a grid of tiny models (resumable: rerun the same "
                                     "command to continue)")
    s.add_argument("--out", required=True, help="the sweep folder")
    s.add_argument("--preset", default="cpu-20m", choices=sorted(PRESETS),
                   help="the grid to start from (cpu-20m: ~20 min on 2 cores)")
    s.add_argument("--grid", default=None, help="override the preset's axes, e.g. "
                   "'width=32,45,64 depth=2 data=0.25,0.5,1 seed=0,1'")
    s.add_argument("--dropout", type=float, default=None, help="e.g. 0.2 (the curriculum's "
                   "second experiment)")
    s.add_argument("--lr-rule", default=None, choices=LR_RULES,
                   help="fan-in: lr = lr_scale / sqrt(width); search: try x0.5, x1, x2 per "
                        "width at the smallest data fraction, keep the best")
    s.add_argument("--corpus", default=None, choices=CORPORA)
    s.add_argument("--task", default=None, help="a synthetic task instead of the corpus, e.g. "
                   "zipf_lookup (facts asked with Zipf frequency: it scales cleanly)")
    s.add_argument("--epochs", type=float, default=None, help="passes over each point's data "
                   "(1)")
    s.add_argument("--jobs", type=int, default=1, help="points trained at once, one process "
                   "and one thread each")
    s.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local (this machine, --jobs processes); slurm (one submitit job per "
                        "point); submitit-local (the submitit path, run here); ray (one "
                        "task per point on RAY_ADDRESS's cluster, else on --jobs CPUs here)")
    s.add_argument("--budget", default=None, help="e.g. 20m: the preset's grid shrinks to fit "
                   "it; a --grid estimated to take longer is refused")
    s.set_defaults(func=_sweep)
    o = sub.add_parser("point", help="train one point of a sweep (what --jobs and cluster "
                                     "engines run)")
    o.add_argument("sweep")
    o.add_argument("name", help="e.g. w64-l2-f0.5-s0")
    o.add_argument("--search-factor", type=float, default=None,
                   help="a learning-rate search run at this factor")
    o.set_defaults(func=_point)
    r = sub.add_parser("report", help="fit the sweep and write its offline HTML report")
    r.add_argument("sweep", help="a sweep or digits folder, a saved sweep's .json, or a "
                   "shipped sweep: cpu-20m, shakespeare-20m, shakespeare-20m-dropout")
    r.add_argument("--compare", default=None, help="a second sweep to draw beside it (e.g. "
                   "the same grid with --dropout 0.2)")
    r.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples (200)")
    r.add_argument("--out", default=None, help="HTML file (default SWEEP/report.html, or "
                   "NAME-report.html for a shipped or saved sweep)")
    r.set_defaults(func=_report)
    d = sub.add_parser("digits", help="the curriculum's version: small CNNs on the bundled "
                                      "8x8 digits (resumable: rerun to continue)")
    d.add_argument("--out", required=True, help="the folder for digits.json and done/")
    d.add_argument("--widths", nargs="+", help="channels, e.g. 4 6 8 11 16 (x sqrt 2)")
    d.add_argument("--fractions", nargs="+", help="shares of the training split, e.g. 1/16 "
                   "1/8 1/4 1/2 1")
    d.add_argument("--seeds", nargs="+", help="e.g. 0 1 2")
    d.add_argument("--epochs", type=int, default=None, help="passes over each point's "
                   "images (4)")
    d.add_argument("--batch-size", type=int, default=None, help="images per step (8)")
    d.add_argument("--lr-scale", type=float, default=None, help="each layer's Adam lr is "
                   "lr_scale / sqrt(fan_in) (0.1)")
    d.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples (200)")
    d.set_defaults(func=_digits)
    t = sub.add_parser("trends", help="doubling time of training compute per era, from the "
                                      "bundled table of notable systems")
    t.add_argument("--n-boot", type=int, default=1000)
    t.set_defaults(func=_trends)
