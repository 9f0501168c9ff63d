"""Checks for lessons 6 and 7: the whole GPT, sampling, BPE, training, parameter counts."""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gptscope.config import ModelConfig, gelu_new
from gptscope.course.checks._common import (
    Mismatch,
    as_tensor,
    call,
    compare,
    module_as_function,
    randn,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model import functional as gf
from gptscope.model.transformer import Transformer
from gptscope.tokenizers.bpe import merge_pair

# -- gpt_forward ------------------------------------------------------------------------------


def gpt_config(seed: int = 0, n_layers: int = 2) -> ModelConfig:
    return ModelConfig(n_layers=n_layers, d_model=16, n_heads=2, d_vocab=13, n_ctx=10,
                       seed=seed)


def reference_gpt(cfg: ModelConfig) -> Transformer:
    """A small GPT whose LayerNorm and bias weights are random too (not 1s and 0s)."""
    model = Transformer(cfg)
    g = torch.Generator().manual_seed(100 + (cfg.seed or 0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf.startswith("b"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.normal_(0, 0.3, generator=g)
    return model.eval()


def _gpt_variant(tokens, p, cfg, pos=True, causal=True, final_ln=True, pre_ln=True):
    n = tokens.shape[1]
    x = p["embed.W_E"][tokens]
    if pos:
        x = x + p["pos_embed.W_pos"][:n]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."

        def ln(h, name, b=b):
            return gf.layer_norm(h, p[b + name + ".w"], p[b + name + ".b"], cfg.eps)

        def attn(h, b=b):
            return gf.multihead_attention(h, *(p[b + "attn." + k] for k in (
                "W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")), causal=causal)

        def mlp(h, b=b):
            return gelu_new(h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]) @ \
                p[b + "mlp.W_out"] + p[b + "mlp.b_out"]

        if pre_ln:
            x = x + attn(ln(x, "ln1"))
            x = x + mlp(ln(x, "ln2"))
        else:
            x = ln(x + attn(x), "ln1")
            x = ln(x + mlp(x), "ln2")
    if final_ln:
        x = gf.layer_norm(x, p["ln_final.w"], p["ln_final.b"], cfg.eps)
    return x @ p["unembed.W_U"]


def check_gpt_forward(fn: Callable[..., Any]) -> CheckResult:
    fn = module_as_function(fn)

    def body() -> list[str]:
        cases = []
        for i, (n_layers, batch, pos) in enumerate([(1, 2, 5), (2, 3, 10), (2, 1, 1)]):
            cfg = gpt_config(seed=i, n_layers=n_layers)
            model = reference_gpt(cfg)
            params = {k: v.detach().clone() for k, v in model.state_dict().items()}
            tokens = torch.randint(0, cfg.d_vocab, (batch, pos),
                                   generator=torch.Generator().manual_seed(i))
            with torch.no_grad():
                want = model(tokens)
                got = call(fn, tokens.clone(), params, cfg)
            case = f"n_layers={n_layers}, batch={batch}, pos={pos} (reference model's weights)"
            compare(got, want, case, {
                "positional embeddings missing: add W_pos[:pos] to the token embeddings":
                    lambda: _gpt_variant(tokens, params, cfg, pos=False),
                "no causal mask: a GPT must not look at later tokens":
                    lambda: _gpt_variant(tokens, params, cfg, causal=False) if pos > 1 else None,
                "ln_final missing before the unembedding":
                    lambda: _gpt_variant(tokens, params, cfg, final_ln=False),
                "post-LN blocks; GPT-2 normalises each sublayer's input (pre-LN)":
                    lambda: _gpt_variant(tokens, params, cfg, pre_ln=False),
                "returned probabilities; return the logits (no softmax)":
                    lambda: want.softmax(-1),
            }, atol=1e-4)
            cases.append(case)
        return cases
    return run_check("gpt_forward", body)


# -- sample_next ------------------------------------------------------------------------------

def filtered_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, k_extra: int = 0, top_p_inclusive: bool = False,
                   multiply: bool = False) -> torch.Tensor:
    """The distribution ``sample_next`` draws from (and wrong variants, for diagnosis)."""
    logits = logits.double() * temperature if multiply else logits.double() / temperature
    if top_k is not None and top_k + k_extra < logits.shape[-1]:
        kth = logits.topk(top_k + k_extra, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sl, order = logits.sort(dim=-1, descending=True)
        probs = sl.softmax(-1)
        before = probs.cumsum(-1) - probs
        drop_sorted = probs.cumsum(-1) >= top_p if top_p_inclusive else before >= top_p
        if top_p_inclusive:
            drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(-1)


N_DRAWS = 20_000
TV_TOLERANCE = 0.03


SAMPLING_CASES = [
    ("temperature 1", dict(temperature=1.0)),
    ("temperature 2", dict(temperature=2.0)),
    ("temperature 0.5", dict(temperature=0.5)),
    ("top_k=3", dict(temperature=1.0, top_k=3)),
    ("top_k=1", dict(temperature=1.0, top_k=1)),
    ("top_p=0.6", dict(temperature=1.0, top_p=0.6)),
    ("top_p=0.9, temperature 0.7", dict(temperature=0.7, top_p=0.9)),
]


def check_sample_next(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = [_check_greedy(fn)]
        base = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
        for case, kw in SAMPLING_CASES:
            logits = base.repeat(N_DRAWS, 1)
            gen = torch.Generator().manual_seed(0)
            ids = as_tensor(call(fn, logits.clone(), generator=gen, **kw), "sample_next")
            if ids.shape != (N_DRAWS,):
                raise Mismatch(f"{case}: returned shape {tuple(ids.shape)}, expected "
                               f"({N_DRAWS},): one token id per row", [f"case: {case}"])
            emp = torch.bincount(ids.long().flatten(), minlength=base.numel()).double() / N_DRAWS
            want = filtered_probs(base, **kw)
            tv = 0.5 * (emp - want).abs().sum().item()
            if tv > TV_TOLERANCE:
                raise _sampling_mismatch(case, kw, base, emp, want, tv)
            cases.append(f"{case} (total variation {tv:.3f})")
        return cases
    return run_check("sample_next", body)


def _check_greedy(fn: Callable[..., Any]) -> str:
    logits = randn(4, 10, seed=7, scale=2.0)
    got = as_tensor(call(fn, logits.clone(), 0.0), "sample_next")
    if got.shape != (4,) or not torch.equal(got.long(), logits.argmax(-1)):
        raise Mismatch("temperature 0 must be greedy: return logits.argmax(-1), one id per "
                       "row, without sampling", ["case: temperature 0"])
    if got.dtype != torch.long:
        raise Mismatch(f"return int64 token ids, got {got.dtype}")
    return "temperature 0 is greedy"


def _sampling_mismatch(case: str, kw: dict, base: torch.Tensor, emp: torch.Tensor,
                       want: torch.Tensor, tv: float) -> Mismatch:
    """The mistake whose distribution the sampled frequencies ``emp`` match, named."""
    for message, dist in _sampling_mistakes(kw, base).items():
        if dist is not None and 0.5 * (emp - dist).abs().sum().item() <= TV_TOLERANCE:
            return Mismatch(message, [f"case: {case}"])
    outside = (want == 0) & (emp > 0)
    if outside.any():
        return Mismatch(f"{case}: sampled tokens that should have been removed "
                        f"(ids {outside.nonzero().flatten().tolist()})", [f"case: {case}"])
    return Mismatch(f"{case}: the sampled frequencies differ from the reference "
                    f"distribution (total variation {tv:.3f})", [f"case: {case}"])


def _sampling_mistakes(kw: dict, base: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Common sampling mistakes and the distribution each would give (None: not testable
    in this case)."""
    top_k, top_p, temperature = kw.get("top_k"), kw.get("top_p"), kw["temperature"]
    return {
        "top-k keeps k+1 tokens; keep exactly the k largest":
            filtered_probs(base, **kw, k_extra=1) if top_k else None,
        "temperature multiplies the logits instead of dividing them":
            filtered_probs(base, **kw, multiply=True) if temperature != 1 else None,
        "temperature ignored: divide the logits by it":
            filtered_probs(base, 1.0, top_k, top_p) if temperature != 1 else None,
        "top-p drops the token that crosses p; keep it (drop a token only when the "
        "mass *before* it reaches p)": filtered_probs(base, **kw, top_p_inclusive=True)
        if top_p else None,
        "top-k ignored": filtered_probs(base, temperature, None, top_p) if top_k else None,
        "top-p ignored": filtered_probs(base, temperature, top_k, None) if top_p else None,
        "always returns the most likely token; sample with torch.multinomial":
            torch.nn.functional.one_hot(torch.tensor(0), base.numel()).double(),
        "samples uniformly; draw from softmax(logits / temperature)":
            torch.full((base.numel(),), 1 / base.numel(), dtype=torch.float64),
    }


# -- bpe_merge --------------------------------------------------------------------------------

def check_bpe_merge(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        specs = [([1, 2, 3, 1, 2], (1, 2), 9), ([5, 5, 5], (5, 5), 9), ([5, 5, 5, 5], (5, 5), 7),
                 ([], (1, 2), 3), ([1], (1, 2), 3), ([1, 2], (1, 2), 4),
                 ([2, 1, 2, 1, 1, 2], (1, 2), 8), ([3, 4, 3], (4, 3), 6)]
        for ids, pair, new in specs:
            want = merge_pair(ids, pair, new)
            before = list(ids)
            got = call(fn, ids, pair, new)
            case = f"bpe_merge({before}, {pair}, {new})"
            if ids != before:
                raise Mismatch("your function changed the input list; build a new one",
                               [f"case: {case}"])
            if got is None:
                raise Mismatch("returned None; did you forget the `return`?")
            got = list(got)
            if got == want:
                cases.append(f"{case} == {want}")
                continue
            if got == _merge_first_only(ids, pair, new):
                raise Mismatch("only the first occurrence was merged; replace every one",
                               [f"case: {case}: expected {want}, got {got}"])
            if got == _merge_overlapping(ids, pair, new):
                raise Mismatch("overlapping occurrences were merged: after a merge, continue "
                               "after *both* ids ([5, 5, 5] -> [9, 5])",
                               [f"case: {case}: expected {want}, got {got}"])
            raise Mismatch(f"{case}: expected {want}, got {got}")
        return cases
    return run_check("bpe_merge", body)


def _merge_first_only(ids, pair, new):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new] + list(ids[i + 2:])
    return list(ids)


def _merge_overlapping(ids, pair, new):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
    return out


# -- train_step / train_loop ------------------------------------------------------------------

def _tiny_model(seed: int = 0, n_layers: int = 1) -> Transformer:
    cfg = ModelConfig(n_layers=n_layers, d_model=32, n_heads=2, d_vocab=12, n_ctx=16,
                      attn_only=True, seed=seed)
    return Transformer(cfg)


def _ref_step(model, opt, tokens, shift=True, zero_grad=True):
    logits = model(tokens)
    if shift:
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                               tokens[:, 1:].reshape(-1))
    else:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
    if zero_grad:
        opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _params_close(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-6) -> bool:
    return all(torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters()))


def check_train_step(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        data = torch.randint(0, 12, (3, 4, 10), generator=torch.Generator().manual_seed(0))
        runs = {}
        for label, kw in [("learner", None), ("ref", {}), ("no shift", {"shift": False}),
                          ("no zero_grad", {"zero_grad": False})]:
            model = _tiny_model()
            opt = torch.optim.SGD(model.parameters(), lr=0.5)
            losses = []
            for tokens in data:
                if kw is None:
                    loss = call(fn, model, opt, tokens)
                    if isinstance(loss, torch.Tensor):
                        if loss.numel() != 1:
                            raise Mismatch("return the loss as a float (loss.item())")
                        loss = loss.item()
                    if not isinstance(loss, float):
                        raise Mismatch(f"return the loss as a float, got {type(loss).__name__}")
                else:
                    loss = _ref_step(model, opt, tokens, **kw)
                losses.append(loss)
            runs[label] = (model, losses)
        model, losses = runs["learner"]
        ref_model, ref_losses = runs["ref"]
        if _params_close(model, ref_model) and all(
                math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for a, b in zip(losses,
                                                                              ref_losses)):
            return ["3 SGD steps: parameters and losses match the reference"]
        if _params_close(model, runs["no shift"][0]):
            raise Mismatch("the loss compares logits with the *same* tokens; logits at "
                           "position t predict token t + 1 (logits[:, :-1] vs tokens[:, 1:])")
        if _params_close(model, runs["no zero_grad"][0]):
            raise Mismatch("gradients accumulate across steps: call optimizer.zero_grad() "
                           "before loss.backward()")
        if _params_close(model, _tiny_model()):
            raise Mismatch("the parameters did not change: call loss.backward() and "
                           "optimizer.step()")
        if _params_close(model, ref_model):
            raise Mismatch(f"parameters match but the returned losses {losses} differ from "
                           f"{ref_losses}; return the loss computed before the step")
        raise Mismatch("after 3 steps the parameters differ from the reference's")
    return run_check("train_step", body)


def alternating_data(n: int, seq: int = 16, vocab: int = 12, seed: int = 0) -> torch.Tensor:
    """Rows a b a b ... with a != b random per row: the next token is the one two back, which
    a bigram model cannot know but one attention layer can look up."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab, (n,), generator=g)
    b = (a + torch.randint(1, vocab, (n,), generator=g)) % vocab
    row = torch.stack([a, b], 1).repeat(1, seq // 2)
    return row


def bigram_loss(train: torch.Tensor, test: torch.Tensor, vocab: int) -> float:
    """Held-out loss of the best bigram model (counts from train, add-one smoothing)."""
    counts = torch.ones(vocab, vocab)
    counts.index_put_((train[:, :-1].flatten(), train[:, 1:].flatten()),
                      torch.ones(train[:, 1:].numel()), accumulate=True)
    logp = (counts / counts.sum(1, keepdim=True)).log()
    return -logp[test[:, :-1].flatten(), test[:, 1:].flatten()].mean().item()


LOOP_BUDGET_S = 90.0


def check_train_loop(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        train = alternating_data(2000, seed=0)
        test = alternating_data(200, seed=1)
        baseline = bigram_loss(train, test, 12)
        model = _tiny_model(seed=0)
        start = time.perf_counter()
        losses = call(fn, model, train, 150, 32, 3e-3, 0)
        took = time.perf_counter() - start
        with torch.no_grad():
            test_loss = model(test, return_type="loss").item()
        if took > LOOP_BUDGET_S:
            raise Mismatch(f"150 steps took {took:.0f}s (budget {LOOP_BUDGET_S:.0f}s)")
        if losses is None or len(list(losses)) != 150:
            raise Mismatch("return the list of the 150 training losses")
        if test_loss >= baseline:
            raise Mismatch(f"held-out loss {test_loss:.3f} does not beat the bigram baseline "
                           f"{baseline:.3f}; is the model learning (zero_grad, step, lr)?")
        return [f"held-out loss {test_loss:.3f} < bigram {baseline:.3f} in {took:.1f}s"]
    return run_check("train_loop", body)


# -- lesson 7: count_params -------------------------------------------------------------------

def check_count_params(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases = []
        cfgs = [
            ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=100, n_ctx=32),
            ModelConfig(n_layers=12, d_model=768, n_heads=12, d_vocab=50257, n_ctx=1024),
            ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=100, n_ctx=64,
                        attn_only=True, positional="sinusoidal", normalization=None),
            ModelConfig(n_layers=3, d_model=48, n_heads=3, d_vocab=70, n_ctx=20,
                        tie_embeddings=True),
        ]
        for cfg in cfgs:
            with torch.device("meta"):
                want = sum(p.numel() for p in Transformer(cfg, device="meta").parameters())
            got = call(fn, cfg)
            case = (f"n_layers={cfg.n_layers}, d_model={cfg.d_model}, d_vocab={cfg.d_vocab}, "
                    f"attn_only={cfg.attn_only}, positional={cfg.positional}, "
                    f"normalization={cfg.normalization}, tied={cfg.tie_embeddings}")
            try:
                got = int(got)
            except (TypeError, ValueError) as e:
                raise Mismatch(f"return an int, got {type(got).__name__}") from e
            if got == want:
                cases.append(f"{case}: {want:,}")
                continue
            diff = want - got
            d = cfg.d_model
            hints = {
                cfg.d_model * cfg.d_vocab: "the unembedding W_U (or, when tied, you counted it "
                "twice)",
                cfg.n_ctx * d: "the learned position embeddings W_pos",
                cfg.n_layers * (3 * cfg.n_heads * cfg.d_head + d): "the attention biases",
                cfg.n_layers * (cfg.d_mlp + d): "the MLP biases",
            }
            if cfg.normalization:
                n_ln = cfg.n_layers * (1 if cfg.attn_only else 2) + 1
                hints[n_ln * 2 * d] = "the LayerNorm weights and biases"
            for amount, what in hints.items():
                if abs(diff) == amount:
                    verb = "missed" if diff > 0 else "counted extra"
                    raise Mismatch(f"off by {abs(diff):,}: you {verb} {what}", [f"case: {case}"])
            raise Mismatch(f"{case}: counted {got:,}, the model has {want:,}")
        return cases
    return run_check("count_params", body)
