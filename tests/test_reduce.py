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


# ------------------------------------------------------------- var, std, norm
@pytest.mark.parametrize("dim, correction", [(None, 1), (1, 0), ((0, 2), 1), (-1, 2)])
def test_var_std_match_numpy(backend, dim, correction):
    x = np.random.default_rng(4).standard_normal((3, 4, 5)).astype(np.float32)
    axis = dim if dim is None or isinstance(dim, int) else tuple(dim)
    t = fg.tensor(x, backend=backend)
    np.testing.assert_allclose(t.var(dim, correction=correction).numpy(),
                               x.var(axis=axis, ddof=correction), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fg.std(t, dim, correction=correction, keepdim=True).numpy(),
                               x.std(axis=axis, ddof=correction, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_norm_matches_numpy_and_gradcheck(backend, p):
    x = np.random.default_rng(5).standard_normal((4, 6)) + 0.1
    t = fg.tensor(x.astype(np.float32), backend=backend)
    np.testing.assert_allclose(t.norm(p, dim=1).numpy(), np.linalg.norm(x, ord=p, axis=1), rtol=1e-5)
    np.testing.assert_allclose(fg.norm(t, p).numpy(), np.sum(np.abs(x) ** p) ** (1 / p), rtol=1e-5)
    if backend != "cuda":
        t64 = fg.tensor(x, backend=backend, requires_grad=True)
        assert fg.gradcheck(lambda a: fg.norm(a, p, dim=0, keepdim=True), [t64])
        assert fg.gradcheck(lambda a: a.var(1) + a.std(0).sum(), [t64])


def test_norm_of_a_zero_slice_has_zero_gradient_and_var_of_one_element_is_nan(backend):
    x = fg.tensor(np.array([[0.0, 0.0], [3.0, 4.0]], np.float32), backend=backend, requires_grad=True)
    n = x.norm(dim=1)
    assert n.numpy().tolist() == [0.0, 5.0]
    n.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0], [0.6, 0.8]], rtol=1e-6)  # PyTorch's 0
    assert np.isnan(fg.var(fg.tensor([1.0], backend=backend)).item())
    assert np.isinf(fg.tensor([1.0, 2.0], backend=backend).var(correction=2).item())
    with pytest.raises(ValueError, match="p"):
        x.norm(float("inf"))
    with pytest.raises(TypeError, match="correction"):
        x.var(correction="1")


def test_var_std_norm_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((3, 5)).astype(np.float32)
    x[0] = 0.0
    for f, tf in [(lambda a: a.var(1).sum(), lambda a: a.var(1).sum()),
                  (lambda a: a.std(0, correction=0).sum(), lambda a: a.std(0, correction=0).sum()),
                  (lambda a: a.norm(dim=1).sum(), lambda a: a.norm(dim=1).sum())]:
        ft, tt = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        f(ft).backward()
        tf(tt).backward()
        np.testing.assert_allclose(ft.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-6)
