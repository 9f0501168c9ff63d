"""Benchmark interp against TransformerLens on a GPT-2-small-shaped model (random weights).

1. run_with_cache: bytes held by the cache and wall time, all hooks vs a names_filter
   (resid_post of every layer), gptscope vs TransformerLens, batch 1 and 4 x 128 tokens.
2. Patching: full activation patching (one forward per head) vs attribution patching (one
   forward + backward): time, and how well the cheap estimate agrees (Pearson r);
   TransformerLens's ``patching.get_act_patch_attn_head_out_all_pos`` timed alongside.

Run: python benchmarks/bench_interp.py [--threads N] [--repeats R] [--quick]
Both libraries run in this one process on the same weights, interleaved, so the ratios
are fair even on a busy machine; absolute times are not.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import gptscope as gs
import gptscope.interp as gi


def gpt2_small(n_ctx: int) -> gs.Transformer:
    cfg = gs.ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257, n_ctx=n_ctx,
                         act_fn="gelu_new", seed=0)
    return gs.Transformer(cfg).eval()


def as_tl(model: gs.Transformer):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    c = model.cfg
    tl = HookedTransformer(HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head,
        d_vocab=c.d_vocab, n_ctx=c.n_ctx, d_mlp=c.d_mlp, act_fn=c.act_fn,
        normalization_type="LN", positional_embedding_type="standard", device="cpu",
    ))
    tl.load_state_dict(model.state_dict(), strict=False)
    return tl.eval()


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall seconds over ``repeats`` runs (after one warm-up) and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def cache_bytes(cache) -> int:
    values = cache.values() if hasattr(cache, "values") else cache.cache_dict.values()
    return sum(t.numel() * t.element_size() for t in values)


def bench_cache(model, tl, repeats: int, batches: list[int], n_pos: int) -> list[tuple]:
    rows = []
    resid = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    for batch in batches:
        tokens = torch.randint(0, model.cfg.d_vocab, (batch, n_pos),
                               generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            for label, filt, tl_filt in (("all hooks", None, None),
                                         ("resid_post only", resid,
                                          lambda n: n.endswith("hook_resid_post"))):
                t_ours, (_, c_ours) = timed(
                    lambda f=filt, t=tokens: model.run_with_cache(t, names_filter=f), repeats)
                t_tl, (_, c_tl) = timed(
                    lambda f=tl_filt, t=tokens: tl.run_with_cache(t, names_filter=f), repeats)
                rows.append((f"{batch}x{n_pos} {label}", cache_bytes(c_ours), cache_bytes(c_tl),
                             t_ours, t_tl))
                del c_ours, c_tl
            t_plain, _ = timed(lambda t=tokens: model(t), repeats)
            t_tl_plain, _ = timed(lambda t=tokens: tl(t), repeats)
            rows.append((f"{batch}x{n_pos} no cache (forward)", 0, 0, t_plain, t_tl_plain))
    return rows


def bench_patching(model, tl, repeats: int, n_pos: int) -> dict:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.cfg.d_vocab, (2, n_pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, n_pos // 2] = torch.randint(0, model.cfg.d_vocab, (2,), generator=g)
    answer, wrong = clean[:, 1], clean[:, 2]
    with torch.no_grad():
        metric = gi.logit_diff_metric(model(clean), model(corrupted), answer, wrong)
    reps = max(1, repeats // 2)
    out = {}
    for kind in ("z", "resid_pre"):
        t_act, act = timed(lambda k=kind: gi.activation_patching(model, clean, corrupted,
                                                                 metric, kind=k), reps)
        t_attr, attr = timed(lambda k=kind: gi.attribution_patching(model, clean, corrupted,
                                                                    metric, kind=k), reps)
        r = torch.corrcoef(torch.stack([act.flatten(), attr.flatten()]))[0, 1].item()
        out[kind] = (tuple(act.shape), t_act, t_attr, r)
        out[kind + "_map"] = act
    try:
        from transformer_lens import patching

        with torch.no_grad():
            _, clean_cache = tl.run_with_cache(clean)
        t_tl, tl_map = timed(lambda: patching.get_act_patch_attn_head_out_all_pos(
            tl, corrupted, clean_cache, metric), reps)
        agree = (tl_map - out["z_map"]).abs().max().item()
        out["tl_head_out"] = (t_tl, agree)
    except Exception as e:  # an API drift in TL must not hide our own numbers
        out["tl_head_out"] = (float("nan"), f"skipped: {e}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 1 only, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    n_pos = 128
    model = gpt2_small(n_ctx=1024)
    tl = as_tl(model)
    tokens = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        assert torch.allclose(model(tokens), tl(tokens), atol=1e-3), "weights differ"
    batches = [1] if args.quick else [1, 4]
    repeats = 2 if args.quick else args.repeats

    print(f"GPT-2-small shape, random weights, {args.threads} threads, median of {repeats}")
    print("\n1. run_with_cache: cached MiB and wall ms (ratio = gptscope / TransformerLens)")
    header = f"{'case':34} {'ours MiB':>9} {'TL MiB':>9} {'ours ms':>9} {'TL ms':>9} {'time x':>7}"
    print(header)
    print("-" * len(header))
    for case, b_ours, b_tl, t_ours, t_tl in bench_cache(model, tl, repeats, batches, n_pos):
        print(f"{case:34} {b_ours / 2**20:9.1f} {b_tl / 2**20:9.1f} {t_ours * 1e3:9.1f} "
              f"{t_tl * 1e3:9.1f} {t_ours / t_tl:7.2f}")

    n_patch = 16
    print(f"\n2. patching, batch 2 x {n_patch} tokens, logit-diff metric (1 clean, 0 corrupted)")
    res = bench_patching(model, tl, repeats, n_patch)
    print(f"{'kind':10} {'map':>9} {'activation s':>13} {'attribution s':>14} {'speedup':>8} "
          f"{'pearson r':>10}")
    for kind in ("z", "resid_pre"):
        shape, t_act, t_attr, r = res[kind]
        print(f"{kind:10} {str(shape):>9} {t_act:13.2f} {t_attr:14.3f} {t_act / t_attr:8.1f} "
              f"{r:10.3f}")
    t_tl, agree = res["tl_head_out"]
    if isinstance(agree, str):
        print(f"TransformerLens head patching: {agree}")
    else:
        print(f"TransformerLens get_act_patch_attn_head_out_all_pos: {t_tl:.2f} s "
              f"(gptscope/TL time {res['z'][1] / t_tl:.2f}; max |difference| {agree:.2e})")


if __name__ == "__main__":
    main()
