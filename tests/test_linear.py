"""matmul (1-D, 2-D, batched with broadcast batch dimensions) and Linear: values and
gradients against numpy, gradcheck, the nn.Linear module."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import check_against_numpy
from ferrograd.testing.strategies import float_arrays, matmul_shapes, sides

from conftest import dtype_backend_ok


@given(data=st.data())
def test_matmul_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    sa, sb, out = data.draw(matmul_shapes(), label="shapes")
    a = data.draw(float_arrays(sa, dtype), label="a")
    b = data.draw(float_arrays(sb, dtype), label="b")
    k = sa[-1]
    y, (ga, gb) = check_against_numpy(F.matmul, [a, b], backend, kind="gemm",
                                      scale=100.0 * k, grad_scale=1000.0 * k)
    assert y.shape == out == np.matmul(a, b).shape


@given(data=st.data())
def test_matmul_gradcheck(cpu_backend, data):
    sa, sb, _ = data.draw(matmul_shapes(max_side=4), label="shapes")
    a = data.draw(float_arrays(sa, np.float64), label="a")
    b = data.draw(float_arrays(sb, np.float64), label="b")
    ta = fg.tensor(a, backend=cpu_backend, requires_grad=True)
    tb = fg.tensor(b, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(F.matmul, [ta, tb])


@given(data=st.data())
def test_linear_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    n, fin, fout = data.draw(sides(9), label="n"), data.draw(sides(9), label="in"), data.draw(sides(9), label="out")
    x = data.draw(float_arrays((n, fin), dtype), label="x")
    w = data.draw(float_arrays((fout, fin), dtype), label="w")
    b = data.draw(float_arrays((fout,), dtype), label="b")
    scale = 100.0 * max(n, fin, fout)
    y, grads = check_against_numpy(F.linear, [x, w, b], backend, kind="gemm", scale=scale,
                                   grad_scale=10 * scale)
    assert y.shape == (n, fout)
    check_against_numpy(F.linear, [x, w], backend, kind="gemm", scale=scale, grad_scale=10 * scale)


def test_linear_gradcheck(cpu_backend):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    ts = [fg.tensor(v, backend=cpu_backend, requires_grad=True) for v in (x, w, b)]
    assert fg.gradcheck(F.linear, ts)
    # more than two dimensions: leading axes are batch axes, as in torch
    x3 = fg.tensor(rng.standard_normal((2, 4, 3)), backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(F.linear, [x3, ts[1], ts[2]])


def test_linear_module_matches_torch_layout(backend):
    fg.manual_seed(0)
    m = fg.nn.Linear(3, 2).to(backend)
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    assert list(sd) == ["weight", "bias"]
    assert sd["weight"].shape == (2, 3) and sd["bias"].shape == (2,)
    bound = 1 / np.sqrt(3)
    assert np.all(np.abs(sd["weight"]) <= bound) and np.all(np.abs(sd["bias"]) <= bound)
    x = np.ones((4, 3), dtype=np.float32)
    y = m(fg.tensor(x, backend=backend)).numpy()
    assert np.allclose(y, x @ sd["weight"].T + sd["bias"], atol=1e-6)
    m2 = fg.nn.Linear(3, 2, bias=False)
    assert [n for n, _ in m2.named_parameters()] == ["weight"]


def test_large_linear_matches_float64(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((257, 300)).astype(np.float32)
    w = rng.standard_normal((129, 300)).astype(np.float32)
    y = F.linear(fg.tensor(x, backend=backend), fg.tensor(w, backend=backend)).numpy()
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))


# The cuda backend picks among linear.cu's GEMM kernels by size and alignment (see
# CudaBackend._gemm_launch): these shapes reach each one, with every transpose.
_CUDA_GEMM_SHAPES = [
    (1536, 1536, 256),   # 144 tiles of 128: gemm128, float4 loads
    (1536, 1538, 258),   # rows not float4-sized: gemm128 without float4 loads
    (1537, 1541, 131),   # ragged edges in every dimension
    (64, 20000, 64),     # at most 64 rows: 64x128 tiles
    (50, 17001, 30),     # 64x128 tiles, ragged, not float4-sized
    (96, 200, 100),      # few tiles, short K: the 64x64 kernel
    (96, 200, 1000),     # few tiles: the 64x64 kernel with split K
    (64, 576, 20000),    # split K over a long K, 64x128 tiles (a conv weight gradient)
    (70, 130, 9001),     # split K, ragged, not float4-sized
    (300, 500, 5000),    # gemm128 with split K
]


@pytest.mark.cuda
@pytest.mark.parametrize("mnk", _CUDA_GEMM_SHAPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_cuda_gemm_kernels_match_float64(mnk, ta, tb):
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    m, n, k = mnk
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    got = be.matmul(be.from_numpy(a), be.from_numpy(b), ta, tb).get()
    assert got.shape == (m, n)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.sqrt(k) * 8)
    # batched: batch 2 with the same kernels, each batch its own result
    a2, b2 = np.stack([a, 2 * a]), np.stack([b, -b])
    got2 = be.matmul(be.from_numpy(a2), be.from_numpy(b2), ta, tb).get()
    np.testing.assert_allclose(got2[1], -2 * want, rtol=0, atol=4e-5 * np.sqrt(k) * 8)


@pytest.mark.cuda
def test_cuda_split_k_linear_adds_bias_once():
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 8192)).astype(np.float32)
    w = rng.standard_normal((16, 8192)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    got = be.linear_forward(be.from_numpy(x), be.from_numpy(w), be.from_numpy(b)).get()
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.sqrt(8192) * 8)


@pytest.mark.cuda
@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, False), (True, True)])
def test_cuda_tf32_matmul_only_when_allowed(ta, tb):
    """1 + 2^-12 is exact in float32 and rounds to 1 in TF32 (10-bit mantissa): the
    result shows which path ran. With TF32 allowed, random products stay within TF32's
    error."""
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    # (2100, 2060, 100): enough 128x256 tiles for gemm_wgmma_tf32_nt (Hopper) or
    # gemm_tf32w_* (B transposed), ragged in m, n and k
    shapes = [(256, 384, 64), (2100, 2060, 100)]
    plans = [be._gemm_plan(m, n, k, ta, tb, True)[0] for m, n, k in shapes]
    assert fg.backends.cuda.matmul.allow_tf32 is False
    for m, n, k in shapes:
        a = np.full((m, k), 1 + 2.0 ** -12, np.float32)
        b = np.full((n, k) if tb else (k, n), 1.0, np.float32)
        a_in = np.ascontiguousarray(a.T) if ta else a
        got = be.matmul(be.from_numpy(a_in), be.from_numpy(b), ta, tb).get()
        assert np.all(got == np.float32(k * (1 + 2.0 ** -12)))
    hopper = be._wgmma
    fg.backends.cuda.matmul.allow_tf32 = True
    try:
        # on Hopper, also with the warpgroup kernel switched off: the mma.sync kernels
        # that other GPUs run
        for wgmma in ([True, False] if hopper else [False]):
            be._wgmma = wgmma
            _check_tf32_paths(be, ta, tb, shapes, plans, wgmma)
    finally:
        be._wgmma = hopper
        fg.backends.cuda.matmul.allow_tf32 = False


def _check_tf32_paths(be, ta, tb, shapes, float32_plans, wgmma):
    """The plans and results of test_cuda_tf32_matmul_only_when_allowed with TF32 allowed."""
    kind = "nt"[ta] + "nt"[tb]
    small, wide = (be._gemm_plan(m, n, k, ta, tb, True)[0] for m, n, k in shapes)
    assert small is be._functions[("linear", f"gemm_tf32_{kind}", "PPPPiiiqqq")]
    want_wide = "gemm_wgmma_tf32_nt" if wgmma else f"gemm_tf32w_{kind}" if tb else f"gemm_tf32_{kind}"
    assert getattr(wide, "name", None) == want_wide or (
        want_wide == f"gemm_tf32_{kind}" and wide is small)
    assert all(p is not small and p is not wide for p in float32_plans)
    for m, n, k in shapes:
        a = np.full((m, k), 1 + 2.0 ** -12, np.float32)
        b = np.full((n, k) if tb else (k, n), 1.0, np.float32)
        a_in = np.ascontiguousarray(a.T) if ta else a
        got = be.matmul(be.from_numpy(a_in), be.from_numpy(b), ta, tb).get()
        assert np.all(got == np.float32(k))
    rng = np.random.default_rng(0)
    for (mm, nn, kk) in [(1000, 777, 300), (1536, 1536, 256), (2100, 2060, 100), (2304, 2048, 520)]:
        x = rng.standard_normal((kk, mm) if ta else (mm, kk)).astype(np.float32)
        y = rng.standard_normal((nn, kk) if tb else (kk, nn)).astype(np.float32)
        want = (x.T if ta else x).astype(np.float64) @ (y.T if tb else y).astype(np.float64)
        out = be.matmul(be.from_numpy(x), be.from_numpy(y), ta, tb).get()
        np.testing.assert_allclose(out, want, rtol=0, atol=2e-3 * np.sqrt(kk) * 4)
    # batched: 4 x 45 tiles of 128x256 (blockIdx.z walks the batch)
    bsz, mm, nn, kk = 4, 1100, 1030, 68
    x = rng.standard_normal((bsz, kk, mm) if ta else (bsz, mm, kk)).astype(np.float32)
    y = rng.standard_normal((bsz, nn, kk) if tb else (bsz, kk, nn)).astype(np.float32)
    want = (x.transpose(0, 2, 1) if ta else x).astype(np.float64) @ (
        y.transpose(0, 2, 1) if tb else y).astype(np.float64)
    out = be.matmul(be.from_numpy(x), be.from_numpy(y), ta, tb).get()
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-3 * np.sqrt(kk) * 4)
