"""The benchmark's interleaved timer: rounds, rotation and the lead-in before each timed call."""

from __future__ import annotations

import time

from ferrograd.bench.timing import measure_interleaved


def test_lead_in_runs_each_implementation_before_its_timed_call():
    calls = []

    def make(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    runs = {"a": make("a", 0.001), "b": make("b", 0.0)}
    times = measure_interleaved(runs, warmup=1, repeats=4, lead_in_s=0.005)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert all(t >= 0.001 for t in times["a"])
    # each of the 4 rounds runs a lead-in of at least 5 ms before the timed call: a (1 ms
    # per call) at least 5 + 1 calls, b (instant) at least 1 + 1; plus the warm-up call
    assert calls.count("a") >= 1 + 4 * 6
    assert calls.count("b") >= 1 + 4 * 2
    assert calls[:2] == ["a", "b"]


def test_single_implementation_has_no_lead_in():
    calls = []
    times = measure_interleaved({"a": lambda: calls.append(1)}, warmup=2, repeats=3, lead_in_s=1.0)
    assert len(times["a"]) == 3 and len(calls) == 5
