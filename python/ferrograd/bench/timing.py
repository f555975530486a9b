"""Timers: wall clock for CPU implementations, CUDA events for GPU ones. Each measurement
is one call; the reported figure is the median of the repeats, after warm-up calls.

The implementations of one row are timed in turns, one call of each per round
(``measure_interleaved``, each timed call after a lead-in of the same implementation's
calls), not one implementation after the other: on a shared machine a
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


#: untimed calls of an implementation before each of its timed calls last at least this
#: long (seconds): see :func:`measure_interleaved`
LEAD_IN_S = 0.01


def measure_interleaved(runs: Dict[str, Callable[[], object]], warmup: int,
                        repeats: int, lead_in_s: float = LEAD_IN_S) -> Dict[str, List[float]]:
    """Times of ``repeats`` calls of each implementation's ``run``, taken in rounds (one
    timed call of each implementation per round, in a rotating order) after ``warmup``
    rounds. With more than one implementation, each timed call follows untimed calls of
    the same implementation lasting at least ``lead_in_s`` (one call at least): after a
    call, OpenMP and OpenBLAS workers busy-wait for milliseconds (libgomp's default spin,
    measured ~3-5 ms for torch on the 2-core VM), and on two cores a spinning worker of
    the previous implementation takes half the machine from a short timed call (torch's
    4M-element relu then cost rust's next relu ~1.5x its time). After the lead-in, the
    only busy threads are the timed implementation's own, as in a program that uses it
    alone."""
    timers = {impl: make_timer(impl) for impl in runs}
    order = list(runs)
    for _ in range(warmup):
        for impl in order:
            timers[impl](runs[impl])
    times: Dict[str, List[float]] = {impl: [] for impl in order}
    for r in range(repeats):
        k = r % len(order)
        for impl in order[k:] + order[:k]:  # nobody always runs right after the same one
            # untimed calls first (the lead-in): the previous implementation's workers stop
            # spinning and the caches hold this one's data
            if len(order) > 1:
                t0 = time.perf_counter()
                runs[impl]()
                while time.perf_counter() - t0 < lead_in_s:
                    runs[impl]()
            times[impl].append(timers[impl](runs[impl]))
    return times


def median(times: List[float]) -> float:
    return statistics.median(times)
