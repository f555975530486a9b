"""The benchmark's interleaved timer: rounds, rotation and the lead-in before each timed call."""

from __future__ import annotations

import time

from ferrograd.bench.timing import measure_epochs, measure_interleaved


def test_lead_in_runs_each_implementation_before_its_timed_call():
    calls = []

    def make(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    runs = {"a": make("a", 0.001), "b": make("b", 0.0)}
    times = measure_interleaved(runs, warmup=1, repeats=7, lead_in_s=0.005, per_round=3)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    assert all(t >= 0.001 for t in times["a"])
    # 3 rounds (3 + 3 + 1 timed calls), each after a lead-in of at least 5 ms: a (1 ms per
    # call) makes at least 5 untimed calls per round, b (instant) at least 1; plus warm-up
    assert calls.count("a") >= 1 + 3 * 5 + 7
    assert calls.count("b") >= 1 + 3 * 1 + 7
    assert calls[:2] == ["a", "b"]
    # rotation: the second round starts with b, so b's lead-in and timed calls follow a's
    # first-round calls directly
    first_b = calls.index("b", 2)
    assert "b" not in calls[2:first_b] and calls[first_b - 1] == "a"


def test_single_implementation_has_no_lead_in():
    calls = []
    times = measure_interleaved({"a": lambda: calls.append(1)}, warmup=2, repeats=3, lead_in_s=1.0)
    assert len(times["a"]) == 3 and len(calls) == 5


def test_epochs_make_fresh_callables():
    made = []

    def make(impl):
        made.append(impl)
        return lambda: None

    times = measure_epochs(make, ["a", "b"], warmup=1, repeats=7, epochs=3)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}  # 3 + 3 + 1
    assert made == ["a", "b"] * 3


def test_fast_implementations_get_more_repeats_and_slow_ones_do_not():
    made = []

    def make(impl):
        made.append(impl)
        return (lambda: time.sleep(0.003)) if impl == "slow" else (lambda: None)

    times = measure_epochs(make, ["fast", "slow"], warmup=0, repeats=4, epochs=2,
                           fast_repeats=10, fast_s=0.002)
    assert {k: len(v) for k, v in times.items()} == {"fast": 10, "slow": 4}
    assert made == ["fast", "slow"] * 2  # the probe's callables serve the first epoch


def test_interleaved_rounds_skip_an_implementation_with_no_calls_left():
    calls = []
    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = measure_interleaved(runs, warmup=0, repeats={"a": 6, "b": 2}, lead_in_s=0.0, per_round=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 2}
    # three rounds; b's only round is the first (each timed call follows one lead-in call)
    assert calls.count("b") == 1 + 2 and calls[-3:] == ["a"] * 3
