"""Lesson 6c: training at scale. Data parallelism by hand, with torch.distributed.

When one process is too slow, run several: each holds a full copy of the model, takes its
own slice (*shard*) of every global batch, and computes the gradient on it; the processes
then *all-reduce* their gradients (sum them, and every process receives the sum), divide by
their number, and take the same optimizer step. With a mean loss and shards of equal size
the average of the shard gradients is exactly the gradient of the whole batch, so the
training is the one-process training on the global batch, only split up: the learning
curve must come out the same up to float rounding. gptscope's trainer does this with
PyTorch's DDP under torchrun. DDP rests on two collectives: ``torch.distributed.broadcast``
copies rank 0's initial weights to every rank, once, and ``all_reduce`` sums the gradients,
every step. Here every rank builds its model from the same seed, so the copies start equal
without a broadcast, and you build the rest on ``all_reduce``: the shards, the averaged
gradients and the step. The checks run your functions in two real CPU processes joined by
the gloo backend (forked, so functions defined in a notebook work too; Linux or macOS).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.course.checks.data_parallel import run_ranks
from gptscope.course.checks.training import alternating_data
from gptscope.model.transformer import Transformer


def shard_indices(n: int, rank: int, world_size: int) -> Tensor:
    """The indices of a global batch of ``n`` examples that rank ``rank`` of ``world_size``
    trains on: an int64 tensor [n_rank].

    The contract: contiguous blocks in rank order (rank 0 the first examples), together
    covering 0 .. n - 1 exactly once. When n is not divisible by world_size, the first
    n % world_size ranks get one example more (sizes differ by at most one; with n <
    world_size the last ranks get an empty tensor). E.g. n = 10, world_size = 4: [0, 1, 2],
    [3, 4, 5], [6, 7], [8, 9].

    Why pin it: every rank computes its shard on its own, with no communication, so all
    must agree on one rule; a gap drops examples and an overlap counts some twice.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return torch.arange(start, start + base + (rank < extra), dtype=torch.int64)


def average_gradients(model: torch.nn.Module, world_size: int) -> None:
    """Replace every parameter's gradient by its mean over the ranks, in place.

    Runs on every rank of the default process group (``dist.init_process_group`` was
    called) at the same point; ``world_size`` is the number of ranks. For each parameter p
    of ``model`` (in ``model.parameters()`` order, the same on every rank) with a gradient,
    ``dist.all_reduce(p.grad)`` sums it over the ranks in place (gloo has no average
    operation), then divide by world_size. Parameters whose ``p.grad`` is None (frozen, or
    not reached by the loss) are skipped and stay None. The parameters themselves are not
    touched. Returns nothing.

    Why every rank in the same order: a collective completes only when every rank has
    called it, so a rank that skips one, or calls them in another order, waits forever.
    """
    for p in model.parameters():
        if p.grad is None:
            continue
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world_size)


def data_parallel_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       tokens: Tensor, rank: int, world_size: int,
                       shard: Callable[[int, int, int], Tensor] = shard_indices,
                       average: Callable[[torch.nn.Module, int], None] = average_gradients
                       ) -> float:
    """One data-parallel training step on rank ``rank``; returns this rank's loss (a float).

    tokens [batch, seq] int64 is the *global* batch, the same on every rank. Take this
    rank's rows, ``tokens[shard(batch, rank, world_size)]``; zero the gradients; compute the
    next-token loss on them (cross-entropy, mean over the shard's positions: logits
    [b, seq, vocab] at positions 0 .. seq - 2 against tokens 1 .. seq - 1, as in lesson 6's
    train_step); backward; ``average(model, world_size)``; ``optimizer.step()``. Use the
    ``shard`` and ``average`` you are given. Return ``loss.item()`` of this rank's shard.

    With batch divisible by world_size, the mean of the ranks' losses is the loss of the
    whole batch and the averaged gradient its gradient: every rank takes exactly the step
    one process would take on all of it.
    """
    rows = tokens[shard(len(tokens), rank, world_size)]
    optimizer.zero_grad()
    logits = model(rows)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           rows[:, 1:].reshape(-1))
    loss.backward()
    average(model, world_size)
    optimizer.step()
    return loss.item()


def explore_data_parallel(steps: int = 20, world_size: int = 2, batch_size: int = 16,
                          lr: float = 3e-3) -> dict[str, Tensor]:
    """Given: train a tiny Transformer with ``world_size`` processes (your
    ``data_parallel_step``, ``shard_indices`` and ``average_gradients``) and with one
    process on the same global batches; print both loss curves and their largest gap.

    Every rank builds the model from the same seed (as a broadcast of rank 0's weights
    would leave it) and draws the same global batches of ``alternating_data``; each
    trains on its shard with AdamW. Returns {"ranks": the mean of the ranks' losses
    [steps], "one": one process's losses [steps]}.
    """
    cfg = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=12, n_ctx=16,
                      attn_only=True, seed=0)
    data = alternating_data(2000, seed=0)
    g = torch.Generator().manual_seed(1)
    batches = [data[torch.randint(0, len(data), (batch_size,), generator=g)]
               for _ in range(steps)]

    def train(rank: int, ranks: int) -> Tensor:
        model = Transformer(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        return torch.tensor([data_parallel_step(model, opt, b, rank, ranks)
                             for b in batches], dtype=torch.float64)

    curves = run_ranks(train, world_size)
    ranks = torch.stack(curves).mean(0)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    one = []
    for tokens in batches:  # one process, the whole global batch
        opt.zero_grad()
        loss = model(tokens, return_type="loss")
        loss.backward()
        opt.step()
        one.append(loss.item())
    one_t = torch.tensor(one, dtype=torch.float64)
    print(f"step   {world_size} ranks (mean)   1 process")
    for step in range(0, steps, max(1, steps // 10)):
        print(f"{step:4d}   {ranks[step].item():17.6f}   {one_t[step].item():9.6f}")
    print(f"largest difference over {steps} steps: {(ranks - one_t).abs().max().item():.2e} "
          "(float rounding: the sums run in another order)")
    return {"ranks": ranks, "one": one_t}
