"""Wrong and right answers to lesson 6c's exercises (shards, all-reduced gradients, one
data-parallel step), run by the checks in two gloo processes.

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from gptscope.course.checks import data_parallel as dpc

# -- shard_indices ----------------------------------------------------------------------------


def shard_strided(n, rank, world_size):
    return torch.arange(rank, n, world_size)


def shard_drops_remainder(n, rank, world_size):
    q = n // world_size
    return torch.arange(rank * q, (rank + 1) * q)


def shard_last_takes_rest(n, rank, world_size):
    q = n // world_size
    return torch.arange(rank * q, n if rank == world_size - 1 else (rank + 1) * q)


def shard_ceil_blocks(n, rank, world_size):
    size = -(-n // world_size)
    return torch.arange(min(n, rank * size), min(n, (rank + 1) * size))


def shard_overlaps(n, rank, world_size):
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return torch.arange(start, min(n, start + base + (rank < extra) + 1))


def shard_tensor_split(n, rank, world_size):
    return torch.tensor_split(torch.arange(n), world_size)[rank]


def shard_numpy(n, rank, world_size):
    return torch.from_numpy(np.array_split(np.arange(n), world_size)[rank]).long()


def shard_by_sizes(n, rank, world_size):
    sizes = [n // world_size + (r < n % world_size) for r in range(world_size)]
    start = sum(sizes[:rank])
    return torch.tensor(list(range(start, start + sizes[rank])), dtype=torch.int64)


# -- average_gradients ------------------------------------------------------------------------


def average_sums_only(model, world_size):
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def average_parameters(model, world_size):
    with torch.no_grad():
        for p in model.parameters():
            dist.all_reduce(p)
            p /= world_size


def average_forgets_none(model, world_size):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world_size


def average_fills_zeros(model, world_size):
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world_size


def average_a_copy(model, world_size):
    for p in model.parameters():
        if p.grad is not None:
            g = p.grad.clone()
            dist.all_reduce(g)
            g /= world_size


def average_divides_only(model, world_size):
    for p in model.parameters():
        if p.grad is not None:
            p.grad /= world_size


def average_on_rank_zero(model, world_size):
    if dist.get_rank() == 0:
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world_size


def average_rebinds(model, world_size):
    for p in model.parameters():
        if p.grad is not None:
            summed = p.grad.clone()
            dist.all_reduce(summed)
            p.grad = summed / world_size


def average_one_buffer(model, world_size):
    # Coalesced: one all_reduce of all the gradients flattened together, as DDP's buckets.
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    for g, piece in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(piece.view_as(g))


# -- data_parallel_step -----------------------------------------------------------------------


def _dp(model, optimizer, tokens, rank, world_size, shard, average, *, sync=True,
        rows="own", zero=True, shift=True, after_step=False):
    if rows == "own":
        batch = tokens[shard(len(tokens), rank, world_size)]
    elif rows == "first":
        batch = tokens[shard(len(tokens), 0, world_size)]
    else:
        batch = tokens
    if zero:
        optimizer.zero_grad()
    logits = model(batch)
    if shift:
        logits, target = logits[:, :-1], batch[:, 1:]
    else:
        target = batch
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    loss.backward()
    if sync and not after_step:
        average(model, world_size)
    optimizer.step()
    if sync and after_step:
        average(model, world_size)
    return loss.item()


def step_no_average(*a):
    return _dp(*a, sync=False)


def step_average_after_step(*a):
    return _dp(*a, after_step=True)


def step_no_zero_grad(*a):
    return _dp(*a, zero=False)


def step_no_shift(*a):
    return _dp(*a, shift=False)


def step_rank_zero_shard(*a):
    return _dp(*a, rows="first")


def step_whole_batch(*a):
    return _dp(*a, rows="all")


def step_library_loss(model, optimizer, tokens, rank, world_size, shard, average):
    optimizer.zero_grad(set_to_none=False)
    loss = model(tokens[shard(tokens.shape[0], rank, world_size)], return_type="loss")
    loss.backward()
    average(model, world_size)
    optimizer.step()
    return loss.detach()  # a 0-dim tensor is accepted as well as a float


def step_log_softmax(model, optimizer, tokens, rank, world_size, shard, average):
    rows = tokens.index_select(0, shard(len(tokens), rank, world_size))
    for p in model.parameters():
        p.grad = None
    logp = model(rows).log_softmax(-1)[:, :-1]
    loss = -logp.gather(-1, rows[:, 1:, None]).mean()
    loss.backward()
    average(model, world_size)
    optimizer.step()
    return float(loss.detach())


MUTANTS: dict[str, list] = {
    "shard_indices": [
        (shard_strided, "strided"), (shard_drops_remainder, "examples are dropped"),
        (shard_last_takes_rest, "the last rank took all the leftover"),
        (shard_ceil_blocks, "blocks of ceil(n / world_size)"),
        (shard_overlaps, "neighbouring ranks overlap"),
    ],
    "average_gradients": [
        (average_sums_only, "summed over the ranks, not averaged"),
        (average_parameters, "the parameters changed"),
        (average_forgets_none, "`if p.grad is not None`"),
        (average_fills_zeros, "rather than filling in zeros"),
        (average_a_copy, "the gradients did not change"),
        (average_divides_only, "never all-reduced"),
        (average_on_rank_zero, "never joined"),
    ],
    "data_parallel_step": [
        (step_no_average, "drifted apart"), (step_average_after_step, "drifted apart"),
        (step_no_zero_grad, "gradients accumulate"), (step_no_shift, "the *same* tokens"),
        (step_rank_zero_shard, "rank 0's shard"), (step_whole_batch, "on the whole batch"),
    ],
}

RIGHT_ANSWERS: dict[str, list] = {
    "shard_indices": [shard_tensor_split, shard_numpy, shard_by_sizes],
    "average_gradients": [average_rebinds, average_one_buffer],
    "data_parallel_step": [step_library_loss, step_log_softmax],
}

assert dpc.WORLD_SIZE == 2  # the mutants above are told apart with two ranks
