"""Alignment: PPO rollouts (sampling with log-probs) against Hugging Face's generate.

A rollout is a batch of sampled completions plus the log-prob of every sampled token. Ours
is `gptscope.align.rollout.sample_rollout` and `sequence_token_logprobs` (KV-cache
sampling, then one forward pass for the log-probs); Hugging Face's is `generate` with
``do_sample=True, output_scores=True`` and `compute_transition_scores` on the same
weights, batch and lengths (every row runs to the full length, no stop token). Timed in
turn in one process; prints medians and ratios.

    python benchmarks/bench_align.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_model import hf_twin  # noqa: E402
from common import interleaved, machine, table  # noqa: E402

import gptscope as gs  # noqa: E402
from gptscope.align.rollout import sample_rollout, sequence_token_logprobs  # noqa: E402


def ours_rollout(model: gs.Transformer, prompt: list[int], batch: int, new: int):
    def run() -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        rollout = sample_rollout(model, prompt, batch, new, gen)
        with torch.no_grad():
            logp, _ = sequence_token_logprobs(model, rollout.tokens)
        return logp
    return run


def hf_rollout(hf, prompt: list[int], batch: int, new: int):
    ids = torch.tensor([prompt] * batch)
    kwargs = dict(max_new_tokens=new, min_new_tokens=new, do_sample=True, top_k=0,
                  output_scores=True, return_dict_in_generate=True, pad_token_id=0)

    def run() -> torch.Tensor:
        torch.manual_seed(0)
        with torch.no_grad():
            out = hf.generate(ids, **kwargs)
            return hf.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    return run


def bench_rollouts(repeats: int, name: str, cfg: gs.ModelConfig, batch: int, new: int
                   ) -> list[str]:
    ours = gs.Transformer(cfg).eval()
    hf = hf_twin(ours)
    prompt = [1]
    t = interleaved({"ours": ours_rollout(ours, prompt, batch, new),
                     "hf": hf_rollout(hf, prompt, batch, new)}, repeats=repeats)
    tokens = batch * new
    return [f"rollout tokens/s with log-probs ({name}, batch {batch}, {new} new)",
            f"{tokens / t['ours']:,.0f}", f"{tokens / t['hf']:,.0f}",
            f"{t['hf'] / t['ours']:.2f}x HF (target >= 1.5x)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    print(f"machine: {machine()}")
    stories = gs.ModelConfig(n_layers=4, d_model=128, n_heads=4, d_vocab=32, n_ctx=128,
                             seed=0)
    gpt2 = gs.ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257, n_ctx=1024,
                          tie_embeddings=True, seed=0)
    rows = [bench_rollouts(args.repeats, "the stories model", stories, 64, 64),
            bench_rollouts(max(2, args.repeats // 2), "GPT-2 small", gpt2, 16, 32)]
    print(table(rows, ["measure", "gptscope", "transformers", "ratio"]))


if __name__ == "__main__":
    main()
