"""Shared helpers for the benchmarks: interleaved timing and a plain table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 7,
                warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn so load affects all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def counting_faults(fn: Callable[[], object], counts: list[int]) -> Callable[[], object]:
    """Wrap fn so each call appends the minor page faults it caused (Unix) to counts.

    A fault is a page of fresh memory the kernel maps and zeroes on first touch: what a
    call costs beyond its arithmetic when the allocator has handed freed memory back.
    """
    import resource

    def run() -> object:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        out = fn()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return out

    return run


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory mapped for reuse, for the rest of the process.

    The same as starting Python with MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ set
    (see the README). Returns False where the C library is not glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_trim_threshold, 2**31 - 1)
                and libc.mallopt(m_mmap_threshold, 32 * 2**20))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
