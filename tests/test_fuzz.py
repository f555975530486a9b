"""The fuzz test: generated bad and edge-case calls across the public API, each run on
every CPU backend in a memory-capped worker process (``ferrograd.testing.fuzz``).

A case fails when the worker crashes (an abort, a segfault), hangs, raises anything but
ValueError/TypeError/MemoryError/NotImplementedError (a Rust panic included), or when the
backends disagree: different exception classes, one raising while the other succeeds, or
results apart beyond tolerance or with NaN/±inf in different places. Forward outputs,
in-place state (running statistics, optimizer parameters) and gradients are compared.

Profiles: HYPOTHESIS_PROFILE=ci runs a fixed 400 cases (CI), dev 200 random ones,
thorough 3000. The long run is ``python -m ferrograd.testing.fuzz --examples 10000``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrograd.testing.fuzz import Worker, describe, verdict
from ferrograd.testing.fuzz_cases import HypothesisDraw, draw_case

EXAMPLES = {"ci": 400, "dev": 200, "thorough": 3000}.get(os.environ.get("HYPOTHESIS_PROFILE", "dev"), 200)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_generated_calls_never_crash_and_agree(worker, data):
    case = draw_case(HypothesisDraw(data))
    why = verdict(case, worker.run(case))
    assert why is None, f"{describe(case)}\n{why}"


def test_harness_reports_a_crash(worker):
    """The harness itself: a worker killed by a signal is a failure, not a lost run."""
    case = {"op": "_abort", "args": [], "kwargs": {}, "backward": False}
    kind, detail = worker.run(case)
    assert kind == "crash" and "status -6" in detail
    # and the next case gets a fresh worker
    ok = {"op": "relu", "args": [("value", 1.0)], "kwargs": {}, "backward": False}
    assert worker.run(ok)[0] == "answer"
