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


def test_use_deterministic_algorithms_is_pytorchs_switch():
    assert fg.are_deterministic_algorithms_enabled() is False
    try:
        fg.use_deterministic_algorithms(True)
        assert fg.are_deterministic_algorithms_enabled() is True
        with pytest.raises(TypeError, match="mode"):
            fg.use_deterministic_algorithms("yes")
    finally:
        fg.use_deterministic_algorithms(False)


@pytest.mark.cuda
def test_cuda_attention_backward_is_bit_identical_in_deterministic_mode():
    """The d=64 flash backward sums dQ with float atomics; deterministic mode swaps in the
    row kernels, whose repeated calls must then agree bit for bit (and with numpy)."""
    import numpy as np

    import ferrograd.functional as F
    from conftest import require_backend

    require_backend("cuda")
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 200, 64)).astype(np.float32) for _ in range(3))

    def grads(backend):
        ts = [fg.tensor(a, backend=backend, requires_grad=True) for a in (q, k, v)]
        F.scaled_dot_product_attention(*ts, is_causal=True).sum().backward()
        return [t.grad.numpy() for t in ts]

    fg.use_deterministic_algorithms(True)
    try:
        runs = [grads("cuda") for _ in range(5)]
    finally:
        fg.use_deterministic_algorithms(False)
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert np.array_equal(a, b)
    for a, w in zip(runs[0], grads("numpy")):
        np.testing.assert_allclose(a, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
