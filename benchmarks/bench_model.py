"""Forward, run_with_cache and KV-cache generation: gptscope vs transformers vs TransformerLens.

Same shapes and the same weights in one process, timed in turn; prints medians and ratios.
    python benchmarks/bench_model.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved, machine, table  # noqa: E402

import gptscope as gs  # noqa: E402


def hf_twin(model: gs.Transformer):
    """The same weights as a transformers GPT2LMHeadModel (through gptscope's HF export)."""
    from transformers import GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as d:
        gs.save(model, d, format="hf")
        return GPT2LMHeadModel.from_pretrained(d, attn_implementation="sdpa").eval()


def tl_twin(model: gs.Transformer):
    """The same weights as a TransformerLens 3.x HookedTransformer (names are shared)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    c = model.cfg
    tl = HookedTransformer(HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head,
        d_mlp=c.d_mlp, d_vocab=c.d_vocab, n_ctx=c.n_ctx, act_fn=c.act_fn,
        normalization_type="LN", default_prepend_bos=False,
    ))
    state = dict(model.state_dict())
    state["unembed.W_U"] = model.W_U.detach().clone()
    state["unembed.b_U"] = torch.zeros(c.d_vocab)
    tl.load_state_dict(state, strict=False)
    return tl.eval()


def bench_forward(repeats: int) -> list[list[str]]:
    cfg = gs.ModelConfig(n_layers=6, d_model=384, n_heads=6, d_vocab=65, n_ctx=256,
                         tie_embeddings=True, seed=0)
    ours = gs.Transformer(cfg).eval()
    hf, tl = hf_twin(ours), tl_twin(ours)
    tokens = torch.randint(0, cfg.d_vocab, (16, 256), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(tokens) - hf(tokens).logits).abs().max().item()
        # Each library's calls sit together in a round, so one library's large cache is not
        # freed just before another allocates its own (page faults would land on the other).
        t = interleaved({
            "ours": lambda: ours(tokens),
            "ours_cache": lambda: ours.run_with_cache(tokens),
            "hf": lambda: hf(tokens).logits,
            "tl": lambda: tl(tokens),
            "tl_cache": lambda: tl.run_with_cache(tokens),
        }, repeats=repeats)
    n = tokens.numel()
    return [
        ["forward tokens/s (6L, 384, ctx 256, batch 16)", f"{n / t['ours']:,.0f}",
         f"{n / t['hf']:,.0f}", f"{n / t['tl']:,.0f}",
         f"{t['hf'] / t['ours']:.2f}x HF (target >= 1.2x)"],
        ["run_with_cache, every hook: seconds", f"{t['ours_cache']:.3f}", "",
         f"{t['tl_cache']:.3f}",
         f"{t['ours_cache'] / t['ours']:.2f}x own forward (target <= 1.5x); "
         f"{t['tl_cache'] / t['ours_cache']:.2f}x faster than TL (target >= 1.5x)"],
        ["max |logits - HF logits|", f"{diff:.1e}", "", "", ""],
    ]


def bench_generate(repeats: int, new_tokens: int = 64) -> list[list[str]]:
    cfg = gs.ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257, n_ctx=1024,
                         tie_embeddings=True, seed=0)
    ours = gs.Transformer(cfg).eval()
    hf = hf_twin(ours)
    prompt = torch.randint(0, cfg.d_vocab, (1, 16), generator=torch.Generator().manual_seed(0))
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=0, use_cache=True)
    with torch.no_grad():
        same = torch.equal(ours.generate(prompt, new_tokens, temperature=0),
                           hf.generate(prompt, **kwargs))
        t = interleaved({
            "ours": lambda: ours.generate(prompt, new_tokens, temperature=0),
            "hf": lambda: hf.generate(prompt, **kwargs),
        }, repeats=max(3, repeats // 2))
    return [[f"greedy generation tokens/s (GPT-2 small, batch 1, {new_tokens} new)",
             f"{new_tokens / t['ours']:.1f}", f"{new_tokens / t['hf']:.1f}", "",
             f"{t['hf'] / t['ours']:.2f}x HF (target >= 1.5x); same tokens: {same}"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    print(f"machine: {machine()}")
    rows = bench_forward(args.repeats) + bench_generate(args.repeats)
    print(table(rows, ["measure", "gptscope", "transformers", "TransformerLens", "ratio"]))


if __name__ == "__main__":
    main()
