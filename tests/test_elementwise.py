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


# ----------------------------------------------- maximum, minimum, clamp; abs, sqrt, ...
MORE_UNARY = {
    "abs": (F.abs, dict(max_magnitude=5.0, min_distance=1e-2)),
    "sqrt": (F.sqrt, dict(positive=True, min_distance=1e-2, max_magnitude=100.0)),
    "rsqrt": (F.rsqrt, dict(positive=True, min_distance=1e-1, max_magnitude=100.0)),
    "sin": (F.sin, dict(max_magnitude=10.0)),
    "cos": (F.cos, dict(max_magnitude=10.0)),
}


@pytest.mark.parametrize("op", sorted(MORE_UNARY))
@given(data=st.data())
def test_more_unary_ops_match_numpy_and_gradcheck(backend, dtype, op, data):
    dtype_backend_ok(backend, dtype)
    fn, bounds = MORE_UNARY[op]
    x = data.draw(float_arrays(shapes(0, 4), dtype, **bounds), label="x")
    check_against_numpy(fn, [x], backend)
    if backend != "cuda" and dtype == np.float64 and x.size <= 64:
        assert fg.gradcheck(fn, [fg.tensor(x, backend=backend, requires_grad=True)])


def _apart_or_equal(a, b):
    """No pair closer than gradcheck's step without being equal: maximum and minimum are
    kinked there (at exact ties the central difference gives 1/2, their rule)."""
    d = np.abs(np.subtract(a, b, dtype=np.float64))
    return bool(np.all((d == 0) | (d > 1e-3)))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_match_numpy_and_gradcheck(backend, dtype, op, data):
    dtype_backend_ok(backend, dtype)
    fn = getattr(F, op)
    sa, sb, out = data.draw(broadcastable_shapes(max_dims=4, max_side=5), label="shapes")
    a = data.draw(float_arrays(sa, dtype, max_magnitude=3.0), label="a")
    b = data.draw(float_arrays(sb, dtype, max_magnitude=3.0), label="b")
    y, (ga, gb) = check_against_numpy(fn, [a, b], backend, grad_kind="reduction")
    assert y.shape == out and ga.shape == sa and gb.shape == sb
    if backend != "cuda" and dtype == np.float64 and _apart_or_equal(*np.broadcast_arrays(a, b)):
        ta = fg.tensor(a, backend=backend, requires_grad=True)
        tb = fg.tensor(b, backend=backend, requires_grad=True)
        assert fg.gradcheck(fn, [ta, tb])


@given(data=st.data())
def test_clamp_with_tensor_and_number_bounds_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    shape = data.draw(shapes(0, 3, max_side=4), label="shape")
    x = data.draw(float_arrays(shape, dtype, max_magnitude=3.0), label="x")
    lo = data.draw(float_arrays(shape[-1:] if shape else (), dtype, max_magnitude=1.0), label="lo")
    hi = float(data.draw(st.floats(0.0, 2.0), label="hi"))
    check_against_numpy(lambda t, m: F.clamp(t, min=m, max=hi), [x, lo], backend,
                        grad_kind="reduction")
    check_against_numpy(lambda t: t.clamp(-0.5), [x], backend)
    check_against_numpy(lambda t: t.clamp(max=0.25), [x], backend)


def test_pytorch_rules_for_ties_bounds_and_kinks(backend):
    """The values and gradients PyTorch gives (written out: torch is optional here)."""
    def grads(fn, *arrays):
        ts = [fg.tensor(np.array(a, np.float32), backend=backend, requires_grad=True) for a in arrays]
        y = fn(*ts)
        y.sum().backward()
        return y.numpy(), [t.grad.numpy() for t in ts]

    y, (ga, gb) = grads(F.maximum, [1.0, 2.0, 3.0, np.nan], [2.0, 2.0, 1.0, 0.0])
    assert np.array_equal(y[:3], [2, 2, 3]) and np.isnan(y[3])
    assert ga.tolist() == [0, 0.5, 1, 1] and gb.tolist() == [1, 0.5, 0, 1]
    y, (ga, gb) = grads(F.minimum, [1.0, 2.0, 3.0], [2.0, 2.0, 1.0])
    assert y.tolist() == [1, 2, 1] and ga.tolist() == [1, 0.5, 0] and gb.tolist() == [0, 0.5, 1]
    # clamp with number bounds: the gradient only strictly inside (PyTorch 2.15 gives 0 at
    # the bounds); NaN stays NaN with gradient 0
    y, (gx,) = grads(lambda x: F.clamp(x, -1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0, np.nan])
    assert y[:5].tolist() == [-1, -1, 0, 1, 1] and np.isnan(y[5])
    assert gx.tolist() == [0, 0, 1, 0, 0, 0]
    # with a tensor bound: maximum's rule, a tie splits the gradient with the bound
    y, (gx, glo) = grads(lambda x, lo: x.clamp(min=lo), [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert gx.tolist() == [0, 0.5, 1] and glo.tolist() == [1, 0.5, 0]
    # abs' is sign (0 at 0); sqrt' and rsqrt' are inf at 0
    _, (g,) = grads(F.abs, [-2.0, 0.0, 3.0])
    assert g.tolist() == [-1, 0, 1]
    _, (g,) = grads(F.sqrt, [0.0, 4.0])
    assert g[0] == np.inf and g[1] == 0.25
    y, (g,) = grads(F.rsqrt, [0.0, 4.0])
    assert y[0] == np.inf and g[0] == -np.inf and y[1] == 0.5 and g[1] == -1 / 16
    assert np.isnan(F.sqrt(fg.tensor(np.float32([-1.0]), backend=backend)).numpy()[0])


def test_math_ops_are_tensor_methods_and_top_level_functions(backend):
    x = fg.tensor(np.array([-1.5, 0.25, 2.0], np.float32), backend=backend)
    assert np.array_equal(abs(x).numpy(), [1.5, 0.25, 2.0])
    assert np.array_equal(x.abs().numpy(), fg.abs(x).numpy())
    assert np.array_equal(x.clip(0, 1).numpy(), fg.clamp(x, 0, 1).numpy())
    assert np.array_equal(x.clamp_min(0).numpy(), [0, 0.25, 2]) and np.array_equal(x.clamp_max(0).numpy(), [-1.5, 0, 0])
    assert np.allclose(x.abs().sqrt().numpy(), np.sqrt([1.5, 0.25, 2.0]))
    assert np.allclose(x.sin().numpy(), np.sin(x.numpy())) and np.allclose(x.cos().numpy(), np.cos(x.numpy()))
    assert np.array_equal(x.maximum(fg.zeros(3, backend=backend)).numpy(), [0, 0.25, 2])
    assert np.array_equal(fg.minimum(x, fg.zeros(1, backend=backend)).numpy(), [-1.5, 0, 0])


def test_bad_math_arguments_raise(backend):
    x = fg.tensor(np.ones(3, np.float32), backend=backend)
    with pytest.raises(ValueError, match="min and max"):
        F.clamp(x)
    with pytest.raises(TypeError, match="other"):
        F.maximum(x, 1.0)  # torch.maximum takes tensors only
    with pytest.raises(TypeError, match="min"):
        F.clamp(x, min="0")
    with pytest.raises(ValueError, match="other"):
        F.minimum(x, fg.tensor(np.ones(2, np.float32), backend=backend))
    with pytest.raises(TypeError, match="input"):
        F.clamp(np.ones(3), 0.0)
    with pytest.raises(TypeError, match="input"):
        F.sqrt([1.0])


def test_math_ops_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5,)).astype(np.float32)
    a[0, :] = b  # ties
    for name in ["maximum", "minimum"]:
        ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
        getattr(torch, name)(ta, tb).sum().backward()
        fa, fb = (fg.tensor(v, requires_grad=True) for v in (a, b))
        getattr(F, name)(fa, fb).sum().backward()
        np.testing.assert_allclose(fa.grad.numpy(), ta.grad.numpy(), rtol=1e-6)
        np.testing.assert_allclose(fb.grad.numpy(), tb.grad.numpy(), rtol=1e-6)
    x = np.concatenate([a.ravel(), [-1.0, 1.0, 0.0]]).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    torch.clamp(tx, -1.0, 1.0).abs().sum().backward()
    fx = fg.tensor(x, requires_grad=True)
    F.clamp(fx, -1.0, 1.0).abs().sum().backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy())
    lo = np.array([-1.0, 1.0, 0.5, 2.0], np.float32)
    xs = np.array([-1.0, 1.0, np.nan, 3.0], np.float32)
    tx, tl = torch.tensor(xs, requires_grad=True), torch.tensor(lo, requires_grad=True)
    torch.clamp(tx, min=tl).sum().backward()
    fx, fl = fg.tensor(xs, requires_grad=True), fg.tensor(lo, requires_grad=True)
    F.clamp(fx, min=fl).sum().backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy())
    np.testing.assert_allclose(fl.grad.numpy(), tl.grad.numpy())
