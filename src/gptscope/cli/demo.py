"""`gptscope demo` (what `make demo` runs) and `gptscope report RUN`."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    from gptscope.report import run_demo

    print(f"gptscope demo: training two small models on CPU, then writing {args.out}/report.html")
    result = run_demo(args.out, fast=args.fast)
    print(result.summary())
    return 0


def _report(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from gptscope.report import build_report

    report = build_report(args.run)
    print(f"gptscope report: {report.subtitle}", file=sys.stderr)
    path = report.save(args.out or Path(args.run) / "report.html")
    print(f"report: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="train two small models and write an HTML report")
    p.add_argument("--out", default="gptscope-demo", help="output folder (gptscope-demo)")
    p.add_argument("--fast", action="store_true", help="fewer training steps (a smoke test)")
    p.set_defaults(func=_demo)
    p = subparsers.add_parser("report", help="write an HTML report for a run or HF folder")
    p.add_argument("run", help="a run folder (gptscope train --out) or a Hugging Face folder")
    p.add_argument("--out", default=None, help="the HTML file (default RUN/report.html)")
    p.set_defaults(func=_report)
