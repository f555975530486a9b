"""Same seed, same bits: short training runs repeated in fresh processes (and, for the
Rust kernels, under 1 and 2 rayon threads) give identical losses and parameters.

The long version (10,000 steps, with resident memory tracked) is
``python -m ferrograd.testing.soak``; see its docstring.
"""

import pytest

import ferrograd as fg
from ferrograd.testing.soak import run_in_process

ENGINES = [e for e in ("numpy", "rust", "native")
           if e == "numpy" or "rust" in fg.available_backends()]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("algo", ["auto", "winograd", "im2col", "fft", "naive"])
def test_training_repeats_bit_for_bit_across_processes_and_thread_counts(engine, algo):
    if engine == "numpy" and algo != "auto":
        pytest.skip("the numpy backend has one code path per algo and no threads")
    threads = [None, None] if engine == "numpy" else [None, 1, 2]
    runs = [run_in_process(engine, 40, seed=3, algo=algo, threads=t) for t in threads]
    digests = {r["digest"] for r in runs}
    assert len(digests) == 1, [(t, r["loss"]) for t, r in zip(threads, runs)]


def test_a_different_seed_gives_a_different_run():
    # the digest covers the data the seed draws: otherwise the test above could not fail
    a = run_in_process("numpy", 5, seed=3, algo="auto")
    b = run_in_process("numpy", 5, seed=4, algo="auto")
    assert a["digest"] != b["digest"]
