"""Training throughput: gptscope vs Hugging Face GPT2LMHeadModel, same shape, one process.

    python benchmarks/bench_train.py                 # 6 layers, 6 heads, 384 wide, ctx 256
    python benchmarks/bench_train.py --threads 2 --steps 8 --profile

One training step = forward, cross-entropy, backward, AdamW step (fp32, CPU by default).
A third peer is a plain nanoGPT-style model written in a few lines of PyTorch (no hooks, one
fused QKV projection, SDPA): the yardstick the issue set, showing what plain PyTorch reaches.
Steps of the models alternate, so a machine that gets busier or quieter mid-run affects
both alike; medians are reported. MFU = achieved FLOP/s over the measured peak of large
fp32 matmuls, with FLOPs per token 6N + 12 L d T (PaLM, appendix B; see gptscope.train.mfu).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from gptscope import ModelConfig, Transformer
from gptscope.train import TrainConfig, flops_per_token, make_optimizer, peak_flops


def ours(cfg: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return Transformer(cfg)


def hf(cfg: ModelConfig) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hcfg = GPT2Config(n_layer=cfg.n_layers, n_head=cfg.n_heads, n_embd=cfg.d_model,
                      n_positions=cfg.n_ctx, vocab_size=cfg.d_vocab, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)
    return GPT2LMHeadModel(hcfg)


class _PlainBlock(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.out = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.up, self.down = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2)
                   for y in self.qkv(self.ln1(x)).split(d, dim=-1))
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(z.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class PlainGPT(torch.nn.Module):
    """The same architecture as ours and HF's, written as plainly as PyTorch allows."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.pos = torch.nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = torch.nn.ModuleList(
            _PlainBlock(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers)
        )
        self.ln_f = torch.nn.LayerNorm(cfg.d_model)
        self.head = torch.nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def plain(cfg: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return PlainGPT(cfg)


class _Named(torch.nn.Module):
    """A peer's parameter names mapped to ours' convention (matrices decay, vectors do not)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def named_parameters(self, *args, **kwargs):
        for name, p in self.model.named_parameters():
            yield (name.rsplit(".", 1)[0] + ".W_" if p.dim() >= 2 else name), p


def step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, is_hf: bool,
         bf16: bool) -> None:
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    with autocast:
        logits = model(x).logits if is_hf else model(x)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)  # time the work, not the launch


# --gpt2-small: the GPU measurement of the training issue (nanoGPT's GPT-2 124M run shape;
# the vocabulary padded to a multiple of 64 as nanoGPT does).
GPT2_SMALL = {"layers": 12, "heads": 12, "width": 768, "ctx": 1024, "vocab": 50304, "batch": 16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=65)
    shape = ", ".join(f"{k} {v}" for k, v in GPT2_SMALL.items())
    ap.add_argument("--gpt2-small", action="store_true", help=f"GPT-2-small shape: {shape}")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on for CUDA, off elsewhere, like the trainer)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile each model (default: on for CUDA, off elsewhere)")
    ap.add_argument("--peers", default="transformers,plain",
                    help="comma list of transformers, plain; empty for gptscope alone")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table for ours")
    args = ap.parse_args()
    if args.gpt2_small:
        for key, value in GPT2_SMALL.items():
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    bf16 = cuda if args.bf16 is None else args.bf16
    use_compile = cuda if args.compile is None else args.compile
    cfg = ModelConfig(n_layers=args.layers, n_heads=args.heads, d_model=args.width,
                      n_ctx=args.ctx, d_vocab=args.vocab, dropout=0.0)
    x = torch.randint(0, args.vocab, (args.batch, args.ctx),
                      generator=torch.Generator().manual_seed(0)).to(device)
    makers = {"gptscope": (ours, False), "transformers": (hf, True), "plain": (plain, False)}
    wanted = {"gptscope", *filter(None, args.peers.split(","))}
    if not wanted <= set(makers):
        raise SystemExit(f"unknown peer(s) {sorted(wanted - set(makers))}; "
                         "choose from transformers, plain")
    runs = {}
    for name, (make, is_hf) in makers.items():
        if name in wanted:
            model = make(cfg).to(device)
            # One optimizer for all (fused AdamW, decay on matrices), so ratios are the models'.
            opt = make_optimizer(model if name == "gptscope" else _Named(model),
                                 TrainConfig(lr=1e-4))
            runs[name] = (torch.compile(model) if use_compile else model, opt, is_hf)
    for _ in range(args.warmup):
        for model, opt, is_hf in runs.values():
            step(model, opt, x, is_hf, bf16)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, (model, opt, is_hf) in runs.items():
            t0 = time.perf_counter()
            step(model, opt, x, is_hf, bf16)
            times[name].append(time.perf_counter() - t0)
    peak = peak_flops(device)
    fpt = flops_per_token(cfg)
    tokens = args.batch * args.ctx
    print(f"shape: {args.layers} layers, {args.heads} heads, d_model {args.width}, ctx "
          f"{args.ctx}, batch {args.batch}, vocab {args.vocab}; {device}, "
          f"{'bf16 autocast' if bf16 else 'fp32'}, compile {'on' if use_compile else 'off'}, "
          f"threads {torch.get_num_threads()}")
    what = ("datasheet bf16 peak or measured 8192^3 bf16 matmuls" if cuda
            else "measured peak, best of 5 2048^3 fp32 matmuls")
    print(f"peak: {peak / 1e12:.3f} TFLOP/s ({what})")
    print(f"FLOPs per token (6N + 12LdT): {fpt / 1e6:.1f} M")
    tps = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        tps[name] = tokens / med
        print(f"{name:13s} step {med * 1e3:8.1f} ms  {tps[name]:9,.0f} tokens/s  "
              f"MFU {tps[name] * fpt / peak:6.1%}   (steps: "
              + " ".join(f"{t * 1e3:.0f}" for t in ts) + " ms)")
    ratios = [f"gptscope / {name}: {tps['gptscope'] / tps[name]:.2f}x"
              for name in tps if name != "gptscope"]
    if ratios:
        print("ratio " + "; ".join(ratios))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        model, opt, _ = runs["gptscope"]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(model, opt, x, False, bf16)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
