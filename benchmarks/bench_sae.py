"""SAE training-step throughput: gptscope vs SAELens, same kind, size and activations (CPU).

A "step" is forward + loss + backward + Adam update (+ our decoder-norm projection when the
SAE keeps unit-norm rows). Ours is timed through ``train_sae`` (so its per-step logging
is included); SAELens's training SAE through ``training_forward_pass`` in a plain loop.
SAELens is imported lazily; without it only our numbers are printed.

    python benchmarks/bench_sae.py [--d-in 256] [--d-sae 2048] [--batch 1024] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gptscope.sae import SAE, train_sae


def _interleaved_medians(
    runs: dict[str, Callable[[], None]], steps: int, repeats: int
) -> dict[str, float]:
    """Median ms per step of each run. Runs alternate within every repeat, so a change in
    machine load hits both sides alike instead of whichever happened to run second."""
    for run in runs.values():
        run()  # warm-up: allocator, thread pools
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def ours_runner(kind: str, x: torch.Tensor, d_sae: int, k: int, steps: int) -> Callable[[], None]:
    torch.manual_seed(0)
    sae = SAE(x.shape[1], d_sae, kind=kind, **({"k": k} if kind == "topk" else {}))
    batch = len(x) // steps

    def run() -> None:
        train_sae(sae, x[: batch * steps], steps=steps, batch_size=batch, lr=1e-4,
                  init_b_dec=None, log_every=10**9, show_progress=False, seed=0)

    return run


def saelens_runner(
    kind: str, x: torch.Tensor, d_sae: int, k: int, steps: int
) -> Callable[[], None] | None:
    try:
        import sae_lens
        from sae_lens.saes.sae import TrainStepInput
    except ImportError:
        return None
    d_in = x.shape[1]
    if kind == "relu":
        sae = sae_lens.StandardTrainingSAE(
            sae_lens.StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=1e-3)
        )
        coefficients = {"l1": 1e-3}
    elif kind == "topk":
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
        coefficients = {}
    else:
        sae = sae_lens.JumpReLUTrainingSAE(
            sae_lens.JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae)
        )
        coefficients = {"l0": 1e-3}
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
    batch = len(x) // steps
    dead = torch.zeros(d_sae, dtype=torch.bool)

    def run() -> None:
        perm = torch.randperm(len(x))
        for i in range(steps):
            step_in = TrainStepInput(
                sae_in=x[perm[i * batch : (i + 1) * batch]], coefficients=coefficients,
                dead_neuron_mask=dead, n_training_steps=i, is_logging_step=False,
            )
            out = sae.training_forward_pass(step_in)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--kinds", default="relu,topk,jumprelu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x = torch.randn(args.batch * args.steps, args.d_in, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; d_in={args.d_in} "
          f"d_sae={args.d_sae} batch={args.batch} steps={args.steps} repeats={args.repeats}")
    try:
        import sae_lens

        print(f"sae_lens {sae_lens.__version__}")
    except ImportError:
        print("note: sae_lens is not installed; printing gptscope numbers only "
              "(pip install sae-lens in a separate venv to compare)")
    print(f"{'kind':<10}{'gptscope ms/step':>18}{'sae_lens ms/step':>18}{'ratio':>8}")
    for kind in args.kinds.split(","):
        runs = {"ours": ours_runner(kind, x, args.d_sae, args.k, args.steps)}
        theirs_run = saelens_runner(kind, x, args.d_sae, args.k, args.steps)
        if theirs_run is not None:
            runs["theirs"] = theirs_run
        medians = _interleaved_medians(runs, args.steps, args.repeats)
        ours, theirs = medians["ours"], medians.get("theirs")
        theirs_s = f"{theirs:18.2f}" if theirs is not None else f"{'n/a':>18}"
        ratio = f"{ours / theirs:8.2f}" if theirs else f"{'':>8}"
        print(f"{kind:<10}{ours:18.2f}{theirs_s}{ratio}")
    print("ratio = gptscope / sae_lens time per step (below 1 means gptscope is faster)")


if __name__ == "__main__":
    main()
