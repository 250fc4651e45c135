"""Timers and the peak-memory probe used by every benchmark row.

Time: `time_call` runs a callable `warmup` times, then up to `repeats` times (at least `min_repeats`, and
no more once `max_seconds` of measured time have passed) and returns the median and the minimum in ms.
CUDA work is synchronised around every call.

Memory: `peak_memory` returns the peak of bytes *allocated by PyTorch during one call*, above what was
allocated before it (parameters and inputs are not counted; everything the step creates, keeps for backward
and frees is). On CPU it replays the allocation and free events that `torch.profiler` records with
``profile_memory=True`` (the CPU analogue of ``torch.cuda.max_memory_allocated``; memory that a library
allocates outside PyTorch's allocator, e.g. oneDNN scratch space, is not seen). On CUDA it uses
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from .console import quiet_profiler


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], None], *, device: str = "cpu", warmup: int = 1, repeats: int = 5,
              min_repeats: int = 1, max_seconds: float = 30.0) -> dict:
    """Median and minimum wall time of fn() in milliseconds, how many timed calls were made, and their times."""
    if repeats < 1 or min_repeats < 1:
        raise ValueError(f"repeats/min_repeats: expected >= 1, got {repeats}/{min_repeats}")
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < min_repeats or spent < max_seconds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        dt = time.perf_counter() - t0
        times.append(dt * 1e3)
        spent += dt
    return summarize(times)


def summarize(times: list[float]) -> dict:
    """Median and minimum (ms) of timed calls, their number, and the calls themselves."""
    return {"median_ms": statistics.median(times), "min_ms": min(times), "n": len(times), "times_ms": list(times)}


def peak_memory(fn: Callable[[], None], device: str = "cpu") -> int:
    """Peak bytes allocated by PyTorch during one fn() call, above the allocation level before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()  # quiet_profiler: kineto's two log lines per probe stay off the console (console.py)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())  # stable: ties keep the recorded order
    cur = peak = 0
    for e in events:
        cur += e.nbytes()  # > 0 for an allocation, < 0 for a free
        peak = max(peak, cur)
    return int(peak)
