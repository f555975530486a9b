"""Timers: wall clock for CPU implementations, CUDA events for GPU ones. Each measurement
is one call; the reported figure is the median of the repeats, after warm-up calls."""

from __future__ import annotations

import statistics
import time
from typing import Callable, List


def _cpu_timer(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def make_timer(impl: str) -> Callable[[Callable[[], object]], float]:
    """A function timing one call of ``run`` in seconds for implementation ``impl``."""
    if impl == "torch-cuda":
        import torch

        def timer(run):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return timer
    if impl == "cuda":
        import pycuda.driver as drv

        def timer(run):
            start, end = drv.Event(), drv.Event()
            start.record()
            run()
            end.record()
            end.synchronize()
            return start.time_till(end) / 1e3
        return timer
    return _cpu_timer


def measure(run: Callable[[], object], impl: str, warmup: int, repeats: int) -> List[float]:
    timer = make_timer(impl)
    for _ in range(warmup):
        timer(run)
    return [timer(run) for _ in range(repeats)]


def median(times: List[float]) -> float:
    return statistics.median(times)
