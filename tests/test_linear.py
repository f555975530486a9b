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
