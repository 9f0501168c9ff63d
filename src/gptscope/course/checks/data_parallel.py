"""Checks for lesson 6c: data parallelism by hand, run in real processes.

``run_ranks`` forks ``world_size`` CPU processes joined in a gloo process group (a file
store in a temporary folder), runs a function of (rank, world_size) in each and returns
what each returned. Fork, not spawn: a learner's functions may live in a notebook's
``__main__``, which a spawned child could not import. A child that hangs or dies cannot
hang the check: collectives time out, and the parent waits for a bounded time, then
terminates the children.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._common import (
    Mismatch,
    call,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.checks.training import _tiny_model
from gptscope.course.result import CheckResult
from gptscope.utils.atomic import atomic_path

WORLD_SIZE = 2
COLLECTIVE_TIMEOUT_S = 3.0  # a rank waiting on a collective its peers never join gives up
GROUP_TIMEOUT_S = 20.0  # the whole group, learner's work included, then it is terminated
HUNG = ("a rank waited for the others in a collective they never joined: every rank must "
        "make the same broadcast / all_reduce calls, in the same order (no `if rank == 0:` "
        "around them)")


def _child(target: Callable[[int, int], Any], rank: int, world_size: int, folder: str
           ) -> None:
    """One rank: join the group, run target, write ("ok", result) or why not to its result
    file (read back with torch.load(weights_only=True): nothing is unpickled)."""
    torch.set_num_threads(1)  # 2 ranks on a small machine; also no OpenMP pool after fork
    try:
        dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                                world_size=world_size,
                                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        # Every rank finishes connecting before any runs the learner's code: otherwise a
        # rank whose code makes no collective can tear the group down while a slower rank
        # is still connecting, and that rank's "connection closed" reads as a hang.
        dist.barrier()
        out: tuple[str, Any] = ("ok", target(rank, world_size))
    except NotImplementedError:
        out = ("todo", "")
    except Mismatch as m:
        out = ("mismatch", m.message)
    except Exception as e:  # the learner's bug, reported by the parent
        frames = traceback.extract_tb(e.__traceback__)
        where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" \
            if frames else ""
        out = ("raised", f"{type(e).__name__}: {e}{where}")
    try:
        with atomic_path(_result_file(folder, rank)) as tmp:
            torch.save(out, tmp)
    except Exception as e:  # only the check's own targets return data; be safe anyway
        with atomic_path(_result_file(folder, rank)) as tmp:
            torch.save(("mismatch", f"rank {rank} returned what cannot be sent back "
                                    f"({type(e).__name__})"), tmp)
    if dist.is_initialized():
        dist.destroy_process_group()


def _result_file(folder: str, rank: int) -> str:
    return os.path.join(folder, f"rank{rank}.pt")


def _read(folder: str, rank: int) -> tuple[str, Any]:
    """A rank's result; a value outside what weights_only loads (tensors, numbers, strings,
    lists, dicts, None) is refused, not unpickled."""
    try:
        return torch.load(_result_file(folder, rank), weights_only=True)
    except Exception as e:
        return ("mismatch", f"rank {rank} returned what cannot be read back "
                            f"({type(e).__name__}): return tensors, numbers or lists of them")


def _collect(folder: str, procs: list[Any], deadline: float) -> dict[int, tuple[str, Any]]:
    """What the ranks wrote, until all have, the deadline passes, or those still silent have
    died (a crash, os._exit): then there is nothing left to wait for."""
    got: dict[int, tuple[str, Any]] = {}
    while len(got) < len(procs) and time.monotonic() < deadline:
        for rank in range(len(procs)):
            if rank not in got and os.path.exists(_result_file(folder, rank)):
                got[rank] = _read(folder, rank)
        silent = [r for r in range(len(procs)) if r not in got]
        if silent and all(procs[r].exitcode is not None for r in silent):
            # Dead; one last look, since a file is written just before a normal exit.
            got.update({r: _read(folder, r) for r in silent
                        if os.path.exists(_result_file(folder, r))})
            break
        time.sleep(0.02)
    return got


def run_ranks(target: Callable[[int, int], Any], world_size: int = WORLD_SIZE,
              timeout: float = GROUP_TIMEOUT_S) -> list[Any]:
    """``[target(0, world_size), ..., target(world_size - 1, world_size)]``, each run in its
    own forked process inside a gloo process group (torch.distributed's default group).

    A rank's NotImplementedError is raised again here; a Mismatch, an exception of the
    learner's code, or no answer within ``timeout`` seconds become a Mismatch saying so.
    """
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="gptscope-dp-") as folder:
        procs = [ctx.Process(target=_child, args=(target, r, world_size, folder),
                             daemon=True) for r in range(world_size)]
        for p in procs:
            p.start()
        got = _collect(folder, procs, time.monotonic() + timeout)
        died = {r: p.exitcode for r, p in enumerate(procs)
                if r not in got and p.exitcode is not None}
        for p in procs:
            p.join(timeout=2.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
    return _results(got, died, world_size, timeout)


def _is_hang(message: str) -> bool:
    """Whether a rank's error is gloo giving up on peers that never joined a collective."""
    low = message.lower()
    return any(k in low for k in ("timed out", "timeout", "connection closed", "connection reset"))


def _results(got: dict[int, tuple[str, Any]], died: dict[int, int], world_size: int,
             timeout: float) -> list[Any]:
    """The ranks' results in order, or the first problem as an exception: a rank's own
    error or death before another rank's hang, which it may have caused."""
    kinds = {r: got.get(r, ("lost", None)) for r in range(world_size)}
    if any(kind == "todo" for kind, _ in kinds.values()):
        raise NotImplementedError
    for rank, (kind, value) in kinds.items():
        if kind == "mismatch":
            raise Mismatch(value if world_size == 1 else f"rank {rank}: {value}")
        if kind == "raised" and not _is_hang(value):
            raise Mismatch(f"your code raised {value} on rank {rank}")
    if died:
        raise Mismatch(f"rank(s) {sorted(died)} died without answering (exit code "
                       f"{sorted(died.values())}): does your code exit the process or crash "
                       "Python?")
    if any(kind == "raised" for kind, _ in kinds.values()):
        raise Mismatch(HUNG)
    missing = [r for r in range(world_size) if r not in got]
    if missing:
        raise Mismatch(f"rank(s) {missing} gave no answer within {timeout:.0f}s: an endless "
                       "loop, or a collective that some rank never joined")
    return [got[r][1] for r in range(world_size)]


# -- the references ---------------------------------------------------------------------------

def reference_shard(n: int, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous block of ``range(n)``; the first n % world_size ranks get
    one example more. [n_rank] int64."""
    return torch.tensor_split(torch.arange(n), world_size)[rank]


def reference_average(model: torch.nn.Module, world_size: int) -> None:
    """Average every existing p.grad over the ranks, in place."""
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world_size


# -- shard_indices ----------------------------------------------------------------------------

SHARD_CASES = [(10, 4), (7, 2), (8, 4), (3, 4), (12, 3), (5, 1)]


def _shard_variants(n: int, rank: int, world_size: int) -> list[tuple[str, Callable]]:
    q = n // world_size
    ceil = -(-n // world_size)
    right = reference_shard(n, rank, world_size)
    return [
        ("strided: rank r took r, r + world_size, ...; the contract is a contiguous block "
         "(rank 0 the first examples)", lambda: torch.arange(rank, n, world_size)),
        ("examples are dropped when n is not divisible by world_size: give the first "
         "n % world_size ranks one example more", lambda: torch.arange(rank * q, (rank + 1) * q)),
        ("the last rank took all the leftover examples: give the first n % world_size ranks "
         "one each instead, so sizes differ by at most one",
         lambda: torch.arange(rank * q, n if rank == world_size - 1 else (rank + 1) * q)),
        ("blocks of ceil(n / world_size) leave the last ranks short: sizes must differ by at "
         "most one (the first n % world_size ranks get one more)",
         lambda: torch.arange(min(n, rank * ceil), min(n, (rank + 1) * ceil))),
        ("neighbouring ranks overlap: each block ends where the next begins (range's end is "
         "exclusive)", lambda: torch.arange(int(right[0]) if len(right) else n,
                                            min(n, (int(right[-1]) + 2) if len(right) else n))),
    ]


def check_shard_indices(fn: Callable[..., Any]) -> CheckResult:
    # One case per rank, so that run_cases can rule a mistake out on the rank that tells
    # it apart (two mistakes often agree on rank 0 and differ only on the last rank).
    cases = [(n, rank, ws) for n, ws in SHARD_CASES for rank in range(ws)]

    def one_case(case: tuple[int, int, int]) -> str:
        n, rank, world_size = case
        got = call(fn, n, rank, world_size)
        compare(got, reference_shard(n, rank, world_size),
                f"n={n}, rank {rank} of world_size {world_size}",
                _shard_variants(n, rank, world_size), what="your indices", atol=0, rtol=0)
        return f"n={n}, rank {rank} of {world_size}"
    return run_check("shard_indices", lambda: run_cases(cases, one_case))


# -- average_gradients ------------------------------------------------------------------------

class _GradModel(torch.nn.Module):
    """Four parameters: two with gradients, one the loss never reached (grad None) and one
    frozen (requires_grad False, grad None)."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        # Parameters differ across ranks here (they would not in training) so that
        # averaging them instead of the gradients shows.
        self.w = torch.nn.Parameter(randn(3, 4, seed=10 + rank))
        self.b = torch.nn.Parameter(randn(4, seed=20 + rank))
        self.unused = torch.nn.Parameter(randn(2, seed=30 + rank))
        self.frozen = torch.nn.Parameter(randn(2, seed=40 + rank), requires_grad=False)


def _rank_grads(rank: int) -> dict[str, Tensor]:
    return {"w": randn(3, 4, seed=100 + rank), "b": randn(4, seed=200 + rank, scale=3.0)}


def _average_on_rank(fn: Callable[..., Any], rank: int, world_size: int) -> dict[str, Any]:
    model = _GradModel(rank)
    for name, grad in _rank_grads(rank).items():
        getattr(model, name).grad = grad.clone()
    try:
        fn(model, world_size)
    except NotImplementedError:
        raise
    except Exception as e:
        if "NoneType" in str(e) or "None" in str(e):
            raise Mismatch(f"your code raised {type(e).__name__} on a parameter whose .grad "
                           "is None (the loss never reached it, or it is frozen): skip "
                           "those, `if p.grad is not None`") from e
        raise
    grads = {n: None if p.grad is None else p.grad.detach().clone()
             for n, p in model.named_parameters()}
    return {"grads": grads, "params": {n: p.detach().clone()
                                       for n, p in model.named_parameters()}}


def _average_verdict(rank: int, out: dict[str, Any], world_size: int) -> None:
    start = dict(_GradModel(rank).named_parameters())
    if any(not torch.equal(out["params"][n], start[n]) for n in start):
        raise Mismatch("the parameters changed: average p.grad, not p; the parameters "
                       "change only in optimizer.step()")
    for name in ("unused", "frozen"):
        if out["grads"][name] is not None:
            raise Mismatch(f"parameter {name!r} had .grad None and now has a gradient: skip "
                           "parameters without one rather than filling in zeros (a zero "
                           "gradient still moves AdamW's moments and weight decay)")
    every = [_rank_grads(r) for r in range(world_size)]
    for name in ("w", "b"):
        total = sum(g[name].double() for g in every)
        local = every[rank][name].double()
        compare(out["grads"][name], total / world_size, f"rank {rank}, {name}.grad", [
            ("the gradients are summed over the ranks, not averaged: divide by world_size "
             "after the all_reduce", lambda t=total: t),
            ("the gradients did not change: all_reduce works in place on the tensor you "
             "pass, so pass p.grad itself, not a copy", lambda g=local: g),
            ("the local gradient was divided by world_size but never all-reduced: call "
             "dist.all_reduce(p.grad) first", lambda g=local: g / world_size),
        ], what=f"{name}.grad", atol=1e-6)


def check_average_gradients(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        outs = run_ranks(lambda rank, ws: _average_on_rank(fn, rank, ws))
        for rank, out in enumerate(outs):
            _average_verdict(rank, out, WORLD_SIZE)
        return [f"{WORLD_SIZE} processes: every rank holds the mean gradient; grads that "
                "were None stay None"]
    return run_check("average_gradients", body)


# -- data_parallel_step -----------------------------------------------------------------------

STEP_SHAPE = (3, 8, 10)  # steps, global batch, sequence length
STEP_LR = 0.5  # SGD, so a gradient's scale shows in the parameters (Adam would hide it)


def step_data() -> Tensor:
    """[steps, batch, seq] token ids, the same on every rank."""
    return torch.randint(0, 12, STEP_SHAPE, generator=torch.Generator().manual_seed(0))


def _loss(model: torch.nn.Module, tokens: Tensor, shift: bool = True) -> Tensor:
    logits = model(tokens)
    if not shift:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1))


def flat_params(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def simulate(data: Tensor, world_size: int, average: bool = True, shard: str = "own",
             zero_grad: bool = True, shift: bool = True) -> tuple[Tensor, Tensor]:
    """Data parallelism replayed in one process, one model copy per rank, or one mistake:
    no averaging, ``shard`` "own" / "first" (every rank rank 0's) / "all" (the whole batch),
    no zero_grad, no shift. Returns (losses [steps, world_size], params [world_size, P])."""
    models = [_tiny_model(seed=0) for _ in range(world_size)]
    opts = [torch.optim.SGD(m.parameters(), lr=STEP_LR) for m in models]
    losses = []
    for tokens in data:
        row = []
        for rank, (model, opt) in enumerate(zip(models, opts)):
            which = {"own": rank, "first": 0}.get(shard)
            rows = tokens if which is None else tokens[reference_shard(len(tokens), which,
                                                                       world_size)]
            if zero_grad:
                opt.zero_grad()
            loss = _loss(model, rows, shift)
            loss.backward()
            row.append(loss.item())
        if average:
            for ps in zip(*(m.parameters() for m in models)):
                mean = torch.stack([p.grad for p in ps]).mean(0)
                for p in ps:
                    p.grad = mean.clone()
        for opt in opts:
            opt.step()
        losses.append(row)
    return torch.tensor(losses, dtype=torch.float64), torch.stack([flat_params(m)
                                                                   for m in models])


def _as_loss(value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise Mismatch(f"returned a tensor of shape {list(value.shape)}: return this "
                           "rank's loss as a float (loss.item())")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (float, int)):
        raise Mismatch(f"returned {type(value).__name__}: return this rank's loss as a float "
                       "(loss.item())")
    return float(value)


def _step_on_rank(fn: Callable[..., Any], rank: int, world_size: int) -> dict[str, Tensor]:
    model = _tiny_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=STEP_LR)
    losses = []
    for tokens in step_data():
        losses.append(_as_loss(call(fn, model, opt, tokens.clone(), rank, world_size,
                                    reference_shard, reference_average)))
    return {"losses": torch.tensor(losses, dtype=torch.float64), "params": flat_params(model)}


PARAM_ATOL = 1e-5  # float32 sums in another order over 3 SGD steps stay far below this


@lru_cache(maxsize=16)
def _replay(world_size: int, **mistake: Any) -> tuple[Tensor, Tensor]:
    """``simulate`` on the check's data, computed once per mistake (the checks of many
    wrong answers in one session ask for the same replays)."""
    return simulate(step_data(), world_size, **mistake)


def _step_verdict(outs: list[dict[str, Tensor]]) -> list[str]:
    ws = len(outs)
    one_loss, one_params = _replay(1)
    if not torch.allclose(outs[0]["params"], outs[1]["params"], atol=PARAM_ATOL):
        drift = _replay(ws, average=False)[1]
        if all(torch.allclose(o["params"], drift[r], atol=PARAM_ATOL)
               for r, o in enumerate(outs)):
            raise Mismatch("the ranks' parameters drifted apart: each stepped on its own "
                           "shard's gradient; call average(model, world_size) after "
                           "backward() and before optimizer.step()")
        raise Mismatch("after the steps the ranks' parameters differ: every rank must end "
                       "each step with the same parameters")
    if torch.equal(outs[0]["params"], flat_params(_tiny_model(seed=0))):
        raise Mismatch("the parameters did not change: backward(), then average, then "
                       "optimizer.step() on the model you were given")
    variants = [
        ("gradients accumulate across steps: optimizer.zero_grad() before backward()",
         lambda: _replay(ws, zero_grad=False)[1][0]),
        ("the loss compares logits with the *same* tokens; logits at position t predict "
         "token t + 1 (logits[:, :-1] vs tokens[:, 1:])",
         lambda: _replay(ws, shift=False)[1][0]),
        ("every rank trained on rank 0's shard: take tokens[shard(len(tokens), rank, "
         "world_size)] with this rank", lambda: _replay(ws, shard="first")[1][0]),
    ]
    compare(outs[0]["params"], one_params[0], "parameters after 3 SGD steps", variants,
            what="the parameters", atol=PARAM_ATOL)
    per_rank = _replay(ws)[0]
    for rank, out in enumerate(outs):
        compare(out["losses"], per_rank[:, rank], f"rank {rank}'s losses", [
            ("each rank computed the loss on the whole batch: use only its shard, "
             "tokens[shard(len(tokens), rank, world_size)] (same result, world_size times "
             "the work)", lambda: one_loss[:, 0])], what="the returned losses", rtol=1e-4)
    curve = torch.stack([o["losses"] for o in outs]).mean(0)
    compare(curve, one_loss[:, 0], "the ranks' mean loss vs one process", what="the curve",
            rtol=1e-4)
    return ["the parameters equal one process's on the whole batch after 3 steps",
            "each rank's losses are its shard's; their mean is one process's curve"]


def check_data_parallel_step(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        return _step_verdict(run_ranks(lambda rank, ws: _step_on_rank(fn, rank, ws)))
    return run_check("data_parallel_step", body)
