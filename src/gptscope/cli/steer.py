"""`gptscope steer RUN --pos ... --neg ... --hook ... --prompt ...`: ActAdd from the shell."""

from __future__ import annotations

import argparse


def _steer(args: argparse.Namespace) -> int:
    from gptscope.cli._runs import open_for
    from gptscope.steering import SteeringVector

    model = open_for("steer", args.run)
    vec = SteeringVector.from_contrast(model, args.pos, args.neg, args.hook,
                                       aligned=not args.last_position)
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
              top_k=args.top_k)
    for i in range(args.samples):
        seed = args.seed + i
        plain = model.generate(args.prompt, seed=seed, **kw)
        with vec.apply(model, coefficient=args.coefficient, positions=args.positions):
            steered = model.generate(args.prompt, seed=seed, **kw)
        print(f"--- sample {i + 1}, seed {seed}")
        print(f"unsteered: {plain!r}")
        print(f"steered:   {steered!r}")
    if args.save:
        vec.save(args.save)
        print(f"saved the vector to {args.save}")
    return 0


def _positions(value: str):
    return int(value) if value.lstrip("-").isdigit() else value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("steer", help="add an activation-difference vector while "
                                            "generating (ActAdd)")
    p.add_argument("run", help="a run folder or a Hugging Face folder")
    p.add_argument("--pos", required=True, help="the prompt to steer towards, e.g. 'Love'")
    p.add_argument("--neg", required=True, help="the prompt to steer away from, e.g. 'Hate'")
    p.add_argument("--hook", required=True, help="e.g. blocks.6.hook_resid_pre")
    p.add_argument("--coefficient", type=float, default=5.0)
    p.add_argument("--prompt", required=True)
    p.add_argument("--positions", type=_positions, default=0,
                   help="'all', 'prompt', or the first position to steer (0)")
    p.add_argument("--last-position", action="store_true",
                   help="use only the last position's difference, added at every position")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the vector (.safetensors)")
    p.set_defaults(func=_steer)
