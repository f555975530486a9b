"""add, sub, mul, div, pow, neg, exp, log with broadcasting: values and gradients on every
backend against numpy, gradcheck on numpy and rust."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import check_against_numpy
from ferrograd.testing.strategies import broadcastable_shapes, float_arrays, shapes

from conftest import dtype_backend_ok

BINARY = {
    "add": (lambda a, b: a + b, {}),
    "sub": (lambda a, b: a - b, {}),
    "mul": (lambda a, b: a * b, {}),
    "div": (lambda a, b: a / b, {"b": dict(min_distance=0.5)}),
    "pow": (lambda a, b: a ** b, {"a": dict(positive=True, min_distance=0.1, max_magnitude=5.0),
                                  "b": dict(max_magnitude=3.0)}),
}


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting_matches_numpy(backend, dtype, op, data):
    dtype_backend_ok(backend, dtype)
    fn, bounds = BINARY[op]
    sa, sb, out = data.draw(broadcastable_shapes(max_dims=4, max_side=5), label="shapes")
    a = data.draw(float_arrays(sa, dtype, **bounds.get("a", {})), label="a")
    b = data.draw(float_arrays(sb, dtype, **bounds.get("b", {})), label="b")
    y, (ga, gb) = check_against_numpy(fn, [a, b], backend, grad_kind="reduction")
    assert y.shape == out and ga.shape == sa and gb.shape == sb


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data())
def test_binary_gradcheck(cpu_backend, op, data):
    fn, bounds = BINARY[op]
    sa, sb, _ = data.draw(broadcastable_shapes(max_dims=3, max_side=3), label="shapes")
    a = data.draw(float_arrays(sa, np.float64, **bounds.get("a", {})), label="a")
    b = data.draw(float_arrays(sb, np.float64, **bounds.get("b", {})), label="b")
    ta = fg.tensor(a, backend=cpu_backend, requires_grad=True)
    tb = fg.tensor(b, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(fn, [ta, tb])


UNARY = {
    "neg": (F.neg, {}),
    "exp": (F.exp, dict(max_magnitude=20.0)),
    "log": (F.log, dict(positive=True, min_distance=1e-2, max_magnitude=100.0)),
}


@pytest.mark.parametrize("op", sorted(UNARY))
@given(data=st.data())
def test_unary_matches_numpy(backend, dtype, op, data):
    dtype_backend_ok(backend, dtype)
    fn, bounds = UNARY[op]
    x = data.draw(float_arrays(shapes(0, 4), dtype, **bounds), label="x")
    check_against_numpy(fn, [x], backend)


@pytest.mark.parametrize("op", sorted(UNARY))
@given(data=st.data())
def test_unary_gradcheck(cpu_backend, op, data):
    fn, bounds = UNARY[op]
    bounds = dict(bounds, max_magnitude=min(bounds.get("max_magnitude", 5.0), 5.0))
    x = data.draw(float_arrays(shapes(1, 3, max_side=4), np.float64, **bounds), label="x")
    assert fg.gradcheck(fn, [fg.tensor(x, backend=cpu_backend, requires_grad=True)])


def test_scalars_and_reflected_operators(backend):
    x = fg.tensor(np.array([1.0, 2.0, 4.0], dtype=np.float32), backend=backend, requires_grad=True)
    y = (2 - x) * 3 + 1 / x - x ** 2 + (-x)
    y.sum().backward()
    v = np.array([1.0, 2.0, 4.0])
    assert np.allclose(y.numpy(), (2 - v) * 3 + 1 / v - v ** 2 - v)
    assert np.allclose(x.grad.numpy(), -3 - 1 / v ** 2 - 2 * v - 1)
    assert y.dtype == np.float32


def test_log_and_pow_special_values(backend):
    x = fg.tensor(np.array([0.0, -1.0, 1.0], dtype=np.float32), backend=backend)
    lg = F.log(x).numpy()
    assert lg[0] == -np.inf and np.isnan(lg[1]) and lg[2] == 0.0
    p = (x ** fg.tensor(np.array([0.5, 0.5, 2.0], dtype=np.float32), backend=backend)).numpy()
    assert p[0] == 0.0 and np.isnan(p[1]) and p[2] == 1.0


@pytest.mark.parametrize("op", ["add", "sub"])
@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (3, 4)), ((3, 4), (4,)), ((1, 4), (3, 4)), ((3, 4), ())])
def test_sum_backward_passes_gy_through_without_a_copy(cpu_backend, op, shape_a, shape_b):
    """For a + b (and a - b's a) an operand of gy's shape gets gy itself on the CPU
    backends (the engine never writes into gradients); broadcast operands get gy summed
    to their shape, and b of a - b gets its negation."""
    be = fg.get_backend(cpu_backend)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    gy = rng.standard_normal(np.broadcast_shapes(shape_a, shape_b)).astype(np.float32)
    ga, gb = be.binary_backward(op, a, b, gy)
    sign = 1.0 if op == "add" else -1.0
    axes_a = tuple(i for i in range(gy.ndim) if i >= gy.ndim - a.ndim and a.shape[i - gy.ndim + a.ndim] == 1
                   ) + tuple(range(gy.ndim - a.ndim))
    np.testing.assert_allclose(ga, gy.sum(axis=axes_a, keepdims=True).reshape(a.shape), rtol=1e-6)
    want_b = gy.sum(axis=tuple(range(gy.ndim - b.ndim)))
    want_b = want_b.sum(axis=tuple(i for i in range(b.ndim) if b.shape[i] == 1), keepdims=True)
    np.testing.assert_allclose(gb, sign * want_b.reshape(b.shape), rtol=1e-5, atol=1e-6)
    assert (ga is gy) == (a.shape == gy.shape)
    assert (gb is gy) == (op == "add" and b.shape == gy.shape)
    assert ga.dtype == gb.dtype == np.float32 and ga.flags.c_contiguous and gb.flags.c_contiguous
