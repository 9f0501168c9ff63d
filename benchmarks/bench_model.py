"""Forward, run_with_cache and KV-cache generation: gptscope vs transformers vs TransformerLens.

Same shapes and the same weights in one process, timed in turn; prints medians and ratios.
    python benchmarks/bench_model.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import counting_faults, interleaved, keep_freed_memory, machine, table  # noqa: E402

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


def forward_models():
    """nanoGPT's shakespeare_char shape: ours and its HF and TL twins, and a batch of tokens."""
    cfg = gs.ModelConfig(n_layers=6, d_model=384, n_heads=6, d_vocab=65, n_ctx=256,
                         tie_embeddings=True, seed=0)
    ours = gs.Transformer(cfg).eval()
    tokens = torch.randint(0, cfg.d_vocab, (16, 256), generator=torch.Generator().manual_seed(0))
    return ours, hf_twin(ours), tl_twin(ours), tokens


def bench_forward(repeats: int, models) -> list[list[str]]:
    ours, hf, tl, tokens = models
    with torch.no_grad():
        diff = (ours(tokens) - hf(tokens).logits).abs().max().item()
        # Each library's calls sit together in a round, so one library's large cache is not
        # freed just before another allocates its own (page faults would land on the other).
        faults: dict[str, list[int]] = {"ours": [], "ours_cache": [], "tl_cache": []}
        cache = lambda: ours.run_with_cache(tokens)  # noqa: E731
        t = interleaved({
            "ours": counting_faults(lambda: ours(tokens), faults["ours"]),
            "ours_cache": counting_faults(cache, faults["ours_cache"]),
            "hf": lambda: hf(tokens).logits,
            "tl": lambda: tl(tokens),
            "tl_cache": counting_faults(lambda: tl.run_with_cache(tokens), faults["tl_cache"]),
        }, repeats=repeats)
    f = {k: statistics.median(v) for k, v in faults.items()}
    n = tokens.numel()
    return [
        ["forward tokens/s (6L, 384, ctx 256, batch 16)", f"{n / t['ours']:,.0f}",
         f"{n / t['hf']:,.0f}", f"{n / t['tl']:,.0f}",
         f"{t['hf'] / t['ours']:.2f}x HF (target >= 1.2x)"],
        ["run_with_cache, every hook: seconds", f"{t['ours_cache']:.3f}", "",
         f"{t['tl_cache']:.3f}",
         f"{t['ours_cache'] / t['ours']:.2f}x own forward (target <= 1.5x); "
         f"{t['tl_cache'] / t['ours_cache']:.2f}x faster than TL (target >= 1.5x)"],
        ["page faults per call (median): forward / run_with_cache", f"{f['ours']:,.0f} / "
         f"{f['ours_cache']:,.0f}", "", f"- / {f['tl_cache']:,.0f}",
         "fresh 4 KiB pages the allocator had handed back to the OS"],
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
    weights_only = matrix_vector_pass(ours)
    with torch.no_grad():
        same = torch.equal(ours.generate(prompt, new_tokens, temperature=0),
                           hf.generate(prompt, **kwargs))
        t = interleaved({
            "ours": lambda: ours.generate(prompt, new_tokens, temperature=0),
            "hf": lambda: hf.generate(prompt, **kwargs),
            "floor": lambda: [weights_only() for _ in range(new_tokens)],
        }, repeats=max(3, repeats // 2))
    return [[f"greedy generation tokens/s (GPT-2 small, batch 1, {new_tokens} new)",
             f"{new_tokens / t['ours']:.1f}", f"{new_tokens / t['hf']:.1f}", "",
             f"{t['hf'] / t['ours']:.2f}x HF (target >= 1.5x); same tokens: {same}"],
            ["  the matrix-vector products alone, each weight read once per token",
             f"{new_tokens / t['floor']:.1f}", "", "",
             f"{t['hf'] / t['floor']:.2f}x HF: the ceiling for this weight layout"]]


def bench_cache_kept_memory(repeats: int, models) -> list[list[str]]:
    """The all-hooks cache again once the allocator keeps freed memory: the cost of the hooks
    and of keeping every activation, without the page faults. Runs last: it cannot be undone."""
    if not keep_freed_memory():
        return [["run_with_cache, allocator keeping freed memory", "needs glibc", "", "", ""]]
    ours, _, tl, tokens = models
    with torch.no_grad():
        t = interleaved({
            "ours": lambda: ours(tokens),
            "ours_cache": lambda: ours.run_with_cache(tokens),
            "tl_cache": lambda: tl.run_with_cache(tokens),
        }, repeats=repeats)
    return [["  same, allocator keeping freed memory (mallopt): seconds",
             f"{t['ours_cache']:.3f}", "", f"{t['tl_cache']:.3f}",
             f"{t['ours_cache'] / t['ours']:.2f}x own forward; "
             f"{t['tl_cache'] / t['ours_cache']:.2f}x faster than TL"]]


def matrix_vector_pass(model: gs.Transformer):
    """One token's weight-bound work and nothing else: every weight matrix times a vector,
    in the layout and order the model's forward uses (fused QKV, W_O, W_in, W_out, then the
    tied unembedding). Batch-1 generation streams all of them from memory for each token."""
    import torch.nn.functional as F

    mats = []
    with torch.no_grad():
        for block in model.blocks:
            a = block.attn
            qkv, _ = a._fused_qkv()  # the [d_model, 3 * head * d_head] matrix forward uses
            mats += [qkv.t(), a.W_O.reshape(-1, a.W_O.shape[-1]).t(),
                     block.mlp.W_in.t(), block.mlp.W_out.t()]
        mats.append(model.W_E)
    vecs = {w.shape[1]: torch.randn(1, 1, w.shape[1]) for w in mats}

    def run() -> None:
        for w in mats:
            F.linear(vecs[w.shape[1]], w)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    print(f"machine: {machine()}")
    models = forward_models()
    rows = (bench_forward(args.repeats, models) + bench_generate(args.repeats)
            + bench_cache_kept_memory(args.repeats, models))
    print(table(rows, ["measure", "gptscope", "transformers", "TransformerLens", "ratio"]))


if __name__ == "__main__":
    main()
