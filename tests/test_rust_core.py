"""The Rust extension itself: a panic becomes a Python exception, non-contiguous inputs
give the right answer, bad input to a raw kernel is a clear error, the GIL is released."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ferrograd as fg

_core = pytest.importorskip("ferrograd._core", reason="the Rust extension is always built by pip install")


def test_panic_becomes_runtime_error_not_abort():
    with pytest.raises(RuntimeError, match="panicked"):
        _core._debug_panic()
    # the interpreter and the extension still work afterwards
    assert _core.relu_forward(np.array([-1.0, 1.0]))[1] == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_and_fortran_inputs_are_read_in_logical_order(dtype):
    a = np.arange(24, dtype=dtype).reshape(4, 6) - 10
    for view in (a[:, ::2], a.T, np.asfortranarray(a), a[::-1]):
        assert np.array_equal(_core.relu_forward(view), np.maximum(view, 0))
        assert np.array_equal(_core.softmax_forward(view), _core.softmax_forward(np.ascontiguousarray(view)))
    # higher ranks: a head split (N, L, H, D) -> (N, H, L, D), reversed and sliced axes
    b = np.arange(2 * 5 * 3 * 4, dtype=dtype).reshape(2, 5, 3, 4) - 50
    for view in (b.transpose(0, 2, 1, 3), b[:, ::-2, :, 1:], b.transpose(3, 1, 0, 2)[::-1]):
        assert np.array_equal(_core.relu_forward(view), np.maximum(view, 0))


def test_output_dtype_follows_input():
    for dtype in (np.float32, np.float64):
        assert _core.sigmoid_forward(np.zeros(3, dtype)).dtype == dtype


def test_raw_kernels_validate():
    with pytest.raises(TypeError, match="gy"):
        _core.relu_backward(np.ones(3, np.float32), np.ones(3, np.float64))
    with pytest.raises(ValueError, match="gy"):
        _core.relu_backward(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="x: expected a float32 or float64"):
        _core.relu_forward(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="x"):
        _core.relu_forward([1.0, 2.0])
    with pytest.raises(ValueError, match="op"):
        _core.binary_forward("mod", np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="target"):
        _core.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 7]), "mean")
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.matmul(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        p = np.ones((4, 4)).T
        _core.sgd_step(p, np.ones((4, 4)), None, 0.1, 0.0, 0.0, 0.0, False, True)


def test_kernels_release_the_gil():
    """While one thread runs a long kernel, another Python thread keeps running."""
    x = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    ticks = []
    done = threading.Event()

    def work():
        for _ in range(20):
            _core.matmul(x, x)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    while not done.is_set():
        ticks.append(1)
        done.wait(0.001)
    th.join()
    # with the GIL held through each matmul, the loop above could only tick between calls
    assert len(ticks) > 20


def test_cpu_feature_check_names_what_is_missing(monkeypatch, tmp_path):
    import ferrograd._cpu as cpu

    # this machine runs the extension, so nothing is missing here
    assert cpu.missing_x86_features() is None
    # a CPU without FMA gets a message naming it, instead of an illegal instruction
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor : 0\nflags : fpu sse2 avx avx2\n")
    real_open = open
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        fake if path == "/proc/cpuinfo" else path, *a, **k))
    msg = cpu.missing_x86_features()
    assert msg is not None and "fma" in msg and "avx2" not in msg.split("lacks")[1].split(":")[0]


def test_large_freed_buffers_are_reused_and_can_be_released():
    """The rust backend keeps large freed buffers for the next request of their size
    (fg.backends.rust): a repeated op gets back the block it freed last, a lowered limit
    frees what is over it, and a bad limit is a clear error."""
    rust = fg.backends.rust
    x = np.ones(1 << 20, dtype=np.float32)  # 4 MiB outputs
    try:
        rust.set_cache_limit(64 << 20)
        first = _core.relu_forward(x)
        address = first.ctypes.data
        del first
        assert rust.cache_info()["cached_bytes"] >= 4 << 20
        hits = rust.cache_info()["hits"]
        again = _core.relu_forward(x)
        assert again.ctypes.data == address and rust.cache_info()["hits"] > hits
        assert np.array_equal(again, x)
        del again
        rust.empty_cache()
        assert rust.cache_info()["cached_bytes"] == 0 and rust.cache_info()["limit_bytes"] == 64 << 20
        rust.set_cache_limit(0)
        del x
        y = _core.relu_forward(np.ones(1 << 20, dtype=np.float32))
        del y
        assert rust.cache_info()["cached_blocks"] == 0
        for bad in (-1, 1.5, True, "1"):
            with pytest.raises(ValueError, match="limit_bytes: expected a non-negative int"):
                rust.set_cache_limit(bad)
    finally:
        rust.set_cache_limit(256 << 20)
