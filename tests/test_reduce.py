"""sum and mean over any axes (keepdims), reshape, transpose, permute, expand: values and
gradients against numpy, gradcheck, and float32 accuracy of long sums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import check_against_numpy
from ferrograd.testing.strategies import float_arrays, shapes

from conftest import dtype_backend_ok


@st.composite
def array_and_axes(draw, dtype):
    shape = draw(shapes(1, 4))
    x = draw(float_arrays(shape, dtype))
    axes = draw(st.one_of(st.none(), st.lists(st.integers(-len(shape), len(shape) - 1),
                                              min_size=1, max_size=len(shape), unique_by=lambda a: a % len(shape))))
    return x, axes, draw(st.booleans())


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@given(data=st.data())
def test_sum_mean_match_numpy(backend, dtype, reduce, data):
    dtype_backend_ok(backend, dtype)
    x, axes, keepdims = data.draw(array_and_axes(dtype), label="x, axes, keepdims")
    dim = None if axes is None else tuple(axes)
    fn = lambda t: getattr(F, reduce)(t, dim=dim, keepdim=keepdims)  # noqa: E731
    y, _ = check_against_numpy(fn, [x], backend, kind="reduction", scale=float(np.abs(x).sum()))
    expected = getattr(np, reduce)(x, axis=dim, keepdims=keepdims)
    assert y.shape == np.shape(expected)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@given(data=st.data())
def test_sum_mean_gradcheck(cpu_backend, reduce, data):
    x, axes, keepdims = data.draw(array_and_axes(np.float64), label="x, axes, keepdims")
    dim = None if axes is None else tuple(axes)
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda a: getattr(F, reduce)(a, dim=dim, keepdim=keepdims), [t])


def test_float32_sum_of_many_elements_is_accurate(backend):
    x = np.full(3_000_001, 0.1, dtype=np.float32)
    s = F.sum(fg.tensor(x, backend=backend)).item()
    exact = float(np.float32(0.1)) * x.size
    assert abs(s - exact) / exact < 1e-5


@given(data=st.data())
def test_layout_ops_match_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    shape = data.draw(shapes(2, 4), label="shape")
    x = data.draw(float_arrays(shape, dtype), label="x")
    perm = data.draw(st.permutations(range(len(shape))), label="perm")

    def fn(t):
        p = F.permute(t, perm)
        r = F.reshape(p, (-1,))
        tr = F.transpose(t, 0, -1)
        return F.sigmoid(r).sum() * 0 + (F.flatten(tr) * r.sum()).sum() + (t * 1).sum()

    check_against_numpy(fn, [x], backend, kind="reduction", scale=float(np.abs(x).sum() ** 2 + 1))


def test_expand_backward_sums(backend):
    x = fg.tensor(np.arange(3, dtype=np.float32).reshape(3, 1), backend=backend, requires_grad=True)
    y = F.expand(x, (2, 3, 4))
    assert y.shape == (2, 3, 4)
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), np.full((3, 1), 8, dtype=np.float32))
