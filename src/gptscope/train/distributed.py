"""Data-parallel training with torchrun (DDP): detection, setup and small collectives.

One machine, N processes (CPU cores use the gloo backend, GPUs NCCL)::

    torchrun --nproc_per_node 4 -m gptscope train --preset shakespeare-char --out runs/s

Several machines: start the same command on every node with torchrun's rendezvous flags,
e.g. on 2 nodes of 8 GPUs (run on each node; NODE_RANK 0 on the first, 1 on the second)::

    torchrun --nnodes 2 --nproc_per_node 8 --node_rank $NODE_RANK \\
        --rdzv_backend c10d --rdzv_endpoint HOST_OF_NODE_0:29500 --rdzv_id my-run \\
        -m gptscope train --preset shakespeare-char --out /shared/runs/s

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; gptscope reads them. The global batch
(batch_size x grad_accum sequences) stays the same whatever the number of processes: each
rank takes 1/WORLD_SIZE of it, so results match a single-process run up to float rounding.
Only rank 0 writes files and logs; ``--out`` must be on a file system every node can read
for ``--resume`` to work after a restart (or use ``--max-restarts`` with torchrun).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job: ``rank`` of ``world_size``; ``local_rank`` on
    its node (the GPU index)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Read torchrun's environment; a plain ``python`` run is rank 0 of 1."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as e:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e}); launch with "
                         "torchrun, which sets them") from e


def setup(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (no-op otherwise)."""
    info = env_dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place; returned for chaining)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (a no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        box = torch.tensor([value], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            box = box.cuda()
        dist.broadcast(box, src=0)
        return int(box.item())
    return value
