"""Checks for lesson 6's training: one optimisation step, and a whole (replayed) loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gptscope.config import ModelConfig
from gptscope.course.checks._common import Mismatch, call, run_check
from gptscope.course.result import CheckResult
from gptscope.model.transformer import Transformer


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
LOOP_ARGS = {"steps": 150, "batch_size": 32, "lr": 3e-3, "seed": 0}
REPLAYED_STEPS = 10  # the losses compared with the replay; the rest only feeds the bar
LOSS_RTOL = 1e-3  # another correct order of operations drifts far less over 10 steps


def replay(data: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int,
           optimizer: str = "adamw", fresh_optimizer: bool = False, same_rows: bool = False
           ) -> list[float]:
    """The reference train_loop's first ``steps`` losses on a fresh tiny model, or those of
    one mistake (another optimizer, a new optimizer each step, one batch drawn once)."""
    model = _tiny_model(seed=0)
    kinds = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

    def make() -> torch.optim.Optimizer:
        return kinds[optimizer](model.parameters(), lr=lr)

    opt, g = make(), torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(data), (batch_size,), generator=g)
    losses = []
    for step in range(steps):
        if fresh_optimizer:
            opt = make()
        if step and not same_rows:
            rows = torch.randint(0, len(data), (batch_size,), generator=g)
        losses.append(_ref_step(model, opt, data[rows]))
    return losses


def _as_losses(losses: Any, steps: int) -> list[float]:
    if losses is None:
        raise Mismatch("train_loop returned None; return the list of the training losses")
    losses = list(losses)
    if len(losses) != steps:
        raise Mismatch(f"returned {len(losses)} losses for {steps} steps: return one per step")
    if any(isinstance(x, torch.Tensor) for x in losses):
        raise Mismatch("the losses are tensors: return floats (train_step's loss.item()); a "
                       "list of tensors also keeps every step's graph alive")
    if not all(isinstance(x, (float, int)) and not isinstance(x, bool) for x in losses):
        raise Mismatch("return the losses as a list of floats")
    return [float(x) for x in losses]


def _same(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=LOSS_RTOL) for x, y in zip(a, b))


def _replay_mismatch(got: list[float], train: torch.Tensor) -> Mismatch | None:
    """None if the first losses are the replay's; else the mistake they reproduce."""
    k, args = REPLAYED_STEPS, LOOP_ARGS
    want = replay(train, k, args["batch_size"], args["lr"], args["seed"])
    if _same(got[:k], want):
        return None
    shown = f"your first losses {[round(x, 4) for x in got[:3]]}, the replay's " \
            f"{[round(x, 4) for x in want[:3]]}"
    if not math.isclose(got[0], want[0], rel_tol=LOSS_RTOL):
        return Mismatch("the first batch differs from the replay's: before the loop make g = "
                        "torch.Generator().manual_seed(seed), then each step rows = "
                        "torch.randint(0, n, (batch_size,), generator=g)", [shown])
    mistakes = {
        "a new optimizer every step restarts AdamW's moments: make one before the loop":
            {"fresh_optimizer": True},
        "the same rows every step: draw new rows from the one generator at each step":
            {"same_rows": True},
        "the lr argument is ignored: pass lr=lr to AdamW": {"lr": 1e-3},
        "not AdamW: use torch.optim.AdamW(model.parameters(), lr=lr)": {"optimizer": "sgd"},
    }
    for message, change in mistakes.items():
        if _same(got[:k], replay(train, **{**args, "steps": k, **change})):
            return Mismatch(message, [shown])
    step = next(i for i, (x, y) in enumerate(zip(got, want))
                if not math.isclose(x, y, rel_tol=LOSS_RTOL))
    return Mismatch(f"the loss at step {step} differs from the replay's ({got[step]:.4f} vs "
                    f"{want[step]:.4f}): one AdamW and one generator, both made before the "
                    "loop, and train_step at every step", [shown])


def check_train_loop(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        train = alternating_data(2000, seed=0)
        test = alternating_data(200, seed=1)
        baseline = bigram_loss(train, test, 12)
        model = _tiny_model(seed=0)
        start = time.perf_counter()
        args = LOOP_ARGS
        raw = call(fn, model, train, args["steps"], args["batch_size"], args["lr"],
                   args["seed"])
        took = time.perf_counter() - start
        losses = _as_losses(raw, args["steps"])
        if took > LOOP_BUDGET_S:
            raise Mismatch(f"{args['steps']} steps took {took:.0f}s (budget "
                           f"{LOOP_BUDGET_S:.0f}s)")
        if _params_close(model, _tiny_model(seed=0), atol=0.0):
            raise Mismatch("the model you were given did not change: train it in place "
                           "(train_step on it, not on a copy)")
        mismatch = _replay_mismatch(losses, train)
        if mismatch:
            raise mismatch
        with torch.no_grad():
            test_loss = model(test, return_type="loss").item()
        if test_loss >= baseline:
            raise Mismatch(f"held-out loss {test_loss:.3f} does not beat the bigram baseline "
                           f"{baseline:.3f}; is the model learning (zero_grad, step, lr)?")
        return [f"the first {REPLAYED_STEPS} losses match the replay",
                f"held-out loss {test_loss:.3f} < bigram {baseline:.3f} in {took:.1f}s"]
    return run_check("train_loop", body)
