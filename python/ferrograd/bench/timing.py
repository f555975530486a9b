"""Timers: wall clock for CPU implementations, CUDA events for GPU ones. Each measurement
is one call; the reported figure is the median of the repeats, after warm-up calls.

The implementations of one row are timed in turns, one call of each per round
(``measure_interleaved``), not one implementation after the other: on a shared machine a
core can be taken away for stretches of tens of milliseconds (seen on the 2-core
development VM: runs of consecutive calls at exactly half speed), and taking turns spreads
such stretches over every implementation of the row instead of landing on one of them."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List


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


def measure_interleaved(runs: Dict[str, Callable[[], object]], warmup: int,
                        repeats: int) -> Dict[str, List[float]]:
    """Times of ``repeats`` calls of each implementation's ``run``, taken in rounds (one
    timed call of each implementation per round, in a rotating order, each preceded by an
    untimed one) after ``warmup`` rounds."""
    timers = {impl: make_timer(impl) for impl in runs}
    order = list(runs)
    for _ in range(warmup):
        for impl in order:
            timers[impl](runs[impl])
    times: Dict[str, List[float]] = {impl: [] for impl in order}
    for r in range(repeats):
        k = r % len(order)
        for impl in order[k:] + order[:k]:  # nobody always runs right after the same one
            # one untimed call first: the previous implementation's threads may still be
            # spinning (OpenMP and OpenBLAS workers busy-wait for a while after a call)
            # and the caches hold its data; the timed call then sees this one's steady state
            if len(order) > 1:
                runs[impl]()
            times[impl].append(timers[impl](runs[impl]))
    return times


def median(times: List[float]) -> float:
    return statistics.median(times)
