"""Reading activations: ``model.activations`` (stops after the deepest hook, no
unembedding) against the way SAE training and steering read them before, a full
``run_with_cache`` with logits. Same model, same tokens, one process, timed in turn.

1. The activation harvest of SAE training (``train_sae_on_model``) at ``blocks.0.hook_mlp_out``
   of the stories preset's shape (4 layers, 128 wide, char vocabulary) and of GPT-2 small's
   (12 layers, 768 wide, 50,257 tokens): one token batch, and a whole 300-step training run.
2. Building a CAA steering vector (``SteeringVector.from_pairs``, 32 pairs) at
   ``blocks.2.hook_resid_pre`` of the stories shape.

    python benchmarks/bench_activations.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved, machine, table  # noqa: E402

import gptscope as gs  # noqa: E402
from gptscope.sae.training import train_sae_on_model  # noqa: E402

SAE_HOOK, STEER_HOOK = "blocks.0.hook_mlp_out", "blocks.2.hook_resid_pre"


class FullForward:
    """The model, reading activations the old way: run_with_cache with logits."""

    def __init__(self, model: gs.Transformer) -> None:
        self.model = model

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def activations(self, tokens, names, **kwargs):
        with torch.no_grad():
            _, cache = self.model.run_with_cache(tokens, names_filter=names, **kwargs)
        return dict(cache.items())


def stories_shape() -> gs.Transformer:
    return gs.Transformer(gs.ModelConfig(n_layers=4, n_heads=4, d_model=128, n_ctx=128,
                                         d_vocab=40, seed=0)).eval()


def gpt2_shape() -> gs.Transformer:
    return gs.Transformer(gs.ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257,
                                         n_ctx=128, act_fn="gelu_new", seed=0)).eval()


def tokens(model: gs.Transformer, batch: int, n_pos: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, model.cfg.d_vocab, (batch, n_pos),
                         generator=torch.Generator().manual_seed(seed))


def harvest_rows(repeats: int) -> list[list[str]]:
    rows = []
    for label, model, batch in (("stories shape, 16 x 128", stories_shape(), 16),
                                ("GPT-2 small shape, 4 x 128", gpt2_shape(), 4)):
        toks = tokens(model, batch, 128)
        old = FullForward(model)
        t = interleaved({"new": lambda m=model, x=toks: m.activations(x, SAE_HOOK),
                         "old": lambda m=old, x=toks: m.activations(x, SAE_HOOK)}, repeats)
        rows.append([f"SAE harvest, one batch, {label}", f"{t['new'] * 1e3:.1f} ms",
                     f"{t['old'] * 1e3:.1f} ms", f"{t['old'] / t['new']:.2f}x"])
    return rows


def sae_training_row(repeats: int) -> list[str]:
    model = stories_shape()
    batches = [tokens(model, 16, 128, seed=i) for i in range(8)]

    def train(m) -> None:
        sae = gs.sae.SAE(128, 1024, kind="topk", k=16)
        train_sae_on_model(sae, m, SAE_HOOK, batches, steps=300, batch_size=1024,
                           buffer_size=16384, seed=0, show_progress=False)

    old = FullForward(model)
    t = interleaved({"new": lambda: train(model), "old": lambda: train(old)},
                    max(1, repeats // 3), warmup=0)
    return ["SAE training, 300 steps, stories shape (train_sae_on_model)",
            f"{t['new']:.2f} s", f"{t['old']:.2f} s", f"{t['old'] / t['new']:.2f}x"]


def steering_row(repeats: int) -> list[str]:
    model = stories_shape()
    pairs = [(tokens(model, 1, 24, seed=2 * i), tokens(model, 1, 24, seed=2 * i + 1))
             for i in range(32)]
    old = FullForward(model)
    build = gs.steering.SteeringVector.from_pairs
    t = interleaved({"new": lambda: build(model, pairs, STEER_HOOK),
                     "old": lambda: build(old, pairs, STEER_HOOK)}, repeats)
    return ["CAA vector from 32 pairs, stories shape (from_pairs)", f"{t['new'] * 1e3:.1f} ms",
            f"{t['old'] * 1e3:.1f} ms", f"{t['old'] / t['new']:.2f}x"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    rows = harvest_rows(args.repeats) + [sae_training_row(args.repeats),
                                         steering_row(args.repeats)]
    print(table(rows, ["what", "activations()", "run_with_cache + logits", "speed-up"]))


if __name__ == "__main__":
    main()
