"""Timers: wall clock for CPU implementations, CUDA events for GPU ones. Each measurement
is one call; the reported figure is the median of the repeats, after warm-up calls.

The implementations of one row are timed in turns, a few calls of each per round
(``measure_interleaved``, after a lead-in of the same implementation's calls), not one
implementation after the other: on a shared machine a
core can be taken away for stretches of tens of milliseconds (seen on the 2-core
development VM: runs of consecutive calls at exactly half speed), and taking turns spreads
such stretches over every implementation of the row instead of landing on one of them."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Union


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


#: untimed calls of an implementation before its timed calls of a round last at least
#: this long (seconds): see :func:`measure_interleaved`
LEAD_IN_S = 0.05
#: timed calls of an implementation per round
PER_ROUND = 5


def measure_interleaved(runs: Dict[str, Callable[[], object]], warmup: int,
                        repeats: Union[int, Dict[str, int]], lead_in_s: float = LEAD_IN_S,
                        per_round: int = PER_ROUND) -> Dict[str, List[float]]:
    """Times of ``repeats`` calls of each implementation's ``run`` (an int, or a count
    per implementation) after ``warmup`` calls of each, taken in rounds: in each round
    every implementation with calls left (in a rotating order) makes up to ``per_round``
    timed calls in a row.

    With more than one implementation, an implementation's timed calls of a round follow
    untimed calls of its own lasting at least ``lead_in_s`` (one call at least). After a
    call, OpenMP workers busy-wait: torch's (libgomp's default spin) kept a core busy for
    more than 10 ms on the 2-core VM, so rust's 4M-element relu timed right after torch's
    took 0.29 ms against 0.22 ms alone; after a 20-50 ms lead-in it took its time alone.
    After the lead-in the only busy threads are the timed implementation's own, as in a
    program that uses it alone."""
    timers = {impl: make_timer(impl) for impl in runs}
    order = list(runs)
    want = repeats if isinstance(repeats, dict) else {impl: repeats for impl in order}
    for _ in range(warmup):
        for impl in order:
            timers[impl](runs[impl])
    times: Dict[str, List[float]] = {impl: [] for impl in order}
    rounds = max((-(-want[impl] // per_round) for impl in order), default=0)
    for r in range(rounds):
        k = r % len(order)
        for impl in order[k:] + order[:k]:  # nobody always runs right after the same one
            count = min(per_round, want[impl] - len(times[impl]))
            if count <= 0:
                continue
            if len(order) > 1:
                t0 = time.perf_counter()
                runs[impl]()
                while time.perf_counter() - t0 < lead_in_s:
                    runs[impl]()
            for _ in range(count):
                times[impl].append(timers[impl](runs[impl]))
    return times


#: each row is timed in this many epochs, each on freshly made inputs
EPOCHS = 3
#: a row whose calls all take less than this (seconds) is "fast": see FAST_REPEATS
FAST_S = 0.005


def measure_epochs(make: Callable[[str], Callable[[], object]], impls: List[str], warmup: int,
                   repeats: int, epochs: int = EPOCHS, fast_repeats: int = 0,
                   fast_s: float = FAST_S) -> Dict[str, List[float]]:
    """``repeats`` times per implementation, from ``epochs`` runs of
    :func:`measure_interleaved`, each on the callables (and so the inputs and outputs)
    that a fresh ``make(impl)`` builds. An implementation whose call takes less than
    ``fast_s`` (the fastest of three calls after a warm-up call) gets ``fast_repeats`` timed calls
    instead, if that is more; they are spread over more rounds.

    Why more calls for fast implementations: the machine's speed changes over tens of
    milliseconds (a neighbour's burst, another implementation's spinning workers), and
    with 15 calls in 3 rounds a sub-millisecond row's median rested on three short
    windows. On the 2-core VM the same build's 4M-element sigmoid forward came out at
    0.80x torch-cpu in one run and 1.25x and 1.49x in the next two; with 60 calls in 12
    rounds, three runs gave 1.27-1.35x. A slow call spans such stretches by itself.

    Where a large buffer lands in memory (which physical pages, hence which cache sets it
    competes for) changes a bandwidth-bound call's time by more than the implementations
    differ: on the 2-core VM a 4M-element relu took 0.30 ms against torch's 0.44 in one
    row and 0.48 against 0.27 in the next, the same in each of three runs, the kernels
    being alike. Fresh inputs per epoch spread those placements over every
    implementation."""
    want = {impl: repeats for impl in impls}
    first = None
    if fast_repeats > repeats:
        first = {impl: make(impl) for impl in impls}
        for impl in impls:
            if _probe(first[impl], make_timer(impl)) < fast_s:
                want[impl] = fast_repeats
    times: Dict[str, List[float]] = {impl: [] for impl in impls}
    epochs = max(1, epochs)
    previous = None
    for e in range(epochs):
        # each implementation's calls split evenly over the epochs
        count = {impl: want[impl] * (e + 1) // epochs - want[impl] * e // epochs for impl in impls}
        if not any(count.values()):
            continue
        # made while the previous epoch's inputs are still alive, so that the allocator
        # cannot hand back the same blocks
        runs, first = first or {impl: make(impl) for impl in impls}, None
        got = measure_interleaved(runs, warmup, count)
        previous = runs  # noqa: F841 (kept alive on purpose until the next epoch is made)
        for impl in impls:
            times[impl].extend(got[impl])
    return times


def _probe(run: Callable[[], object], timer, calls: int = 3) -> float:
    """The fastest of ``calls`` timed calls after an untimed one (a first backward through
    PyTorch's autograd took over 5 ms where the next took 1.4)."""
    run()
    return min(timer(run) for _ in range(calls))


def median(times: List[float]) -> float:
    return statistics.median(times)
