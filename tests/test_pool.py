"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d.

Values, indices and gradients of every backend against the numpy reference over drawn
geometries (kernel, stride larger than the kernel, padding up to half the kernel,
dilation, ceil_mode); float64 gradcheck on numpy and rust; PyTorch as an oracle where it
is installed; edge shapes; NaN; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.backends import _pool
from ferrograd.testing import assert_close, check_against_numpy
from ferrograd.testing.strategies import float_arrays

from conftest import dtype_backend_ok


@st.composite
def pool_geometry(draw, dilation=True, max_side=8):
    """(input shape, kernel, stride, padding, dilation, ceil_mode) that PyTorch accepts."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))  # strides beyond the kernel too
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil = draw(st.booleans())
    shape = (draw(st.sampled_from([1, 2])), draw(st.integers(1, 3)),
             draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    for i in range(2):
        assume(_pool.pool_output_size(shape[2 + i], k[i], s[i], p[i], d[i], ceil) >= 1)
    return shape, k, s, p, d, ceil


def distinct_values(shape, dtype, seed):
    """Values at least 0.1 apart (no ties in a max: gradcheck's eps cannot cross them)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.1 - 0.05 * n).astype(dtype)


# ------------------------------------------------------------------ vs numpy
@given(geom=pool_geometry(), data=st.data())
def test_max_pool2d_matches_numpy(backend, dtype, geom, data):
    dtype_backend_ok(backend, dtype)
    shape, k, s, p, d, ceil = geom
    x = data.draw(float_arrays(shape, dtype, max_magnitude=100.0), label="x")
    fn = lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil)  # noqa: E731
    check_against_numpy(fn, [x], backend)
    y, idx = F.max_pool2d(fg.tensor(x, backend=backend), k, s, p, d, ceil_mode=ceil,
                          return_indices=True)
    y0, idx0 = F.max_pool2d(fg.tensor(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    assert idx.dtype == np.int64 and idx.shape == y.shape
    assert np.array_equal(idx.numpy(), idx0.numpy())


@given(geom=pool_geometry(dilation=False), cip=st.booleans(),
       div=st.sampled_from([None, None, 1, 3, -2]), data=st.data())
def test_avg_pool2d_matches_numpy(backend, dtype, geom, cip, div, data):
    dtype_backend_ok(backend, dtype)
    shape, k, s, p, _, ceil = geom
    x = data.draw(float_arrays(shape, dtype, max_magnitude=100.0), label="x")
    fn = lambda t: F.avg_pool2d(t, k, s, p, ceil, cip, div)  # noqa: E731
    check_against_numpy(fn, [x], backend, kind="reduction")


@pytest.mark.parametrize("kind", ["avg", "max"])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
       out=st.tuples(st.integers(1, 11), st.one_of(st.none(), st.integers(1, 11))), data=st.data())
def test_adaptive_pool2d_matches_numpy(backend, dtype, kind, shape, out, data):
    dtype_backend_ok(backend, dtype)
    x = data.draw(float_arrays(shape, dtype, max_magnitude=100.0), label="x")
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    y, _ = check_against_numpy(lambda t: fn(t, out), [x], backend, kind="reduction")
    assert y.shape == shape[:2] + (out[0], shape[3] if out[1] is None else out[1])
    if kind == "max":
        _, i = F.adaptive_max_pool2d(fg.tensor(x, backend=backend), out, return_indices=True)
        _, i0 = F.adaptive_max_pool2d(fg.tensor(x), out, return_indices=True)
        assert np.array_equal(i.numpy(), i0.numpy())


# ------------------------------------------------------------------ gradcheck
@given(geom=pool_geometry(max_side=6), seed=st.integers(0, 2**16))
def test_max_pool2d_gradcheck(cpu_backend, geom, seed):
    shape, k, s, p, d, ceil = geom
    t = fg.tensor(distinct_values(shape, np.float64, seed), backend=cpu_backend, requires_grad=True)
    # a dilated window can lie wholly in the padding: its -inf output has no numerical
    # derivative (test_max_pool2d_window_in_padding checks those)
    assume(np.isfinite(F.max_pool2d(t, k, s, p, d, ceil_mode=ceil).numpy()).all())
    assert fg.gradcheck(lambda a: F.max_pool2d(a, k, s, p, d, ceil_mode=ceil), [t])


def test_max_pool2d_window_in_padding(backend):
    """A dilated window whose taps all fall in the padding gives -inf and passes no
    gradient, as in PyTorch (input 1x1, kernel (1, 2), padding (0, 1), dilation (1, 2))."""
    t = fg.tensor(np.array([[[[3.0]]]], np.float32), backend=backend, requires_grad=True)
    y = F.max_pool2d(t, (1, 2), 1, (0, 1), (1, 2))
    assert y.numpy().ravel().tolist() == [-np.inf]
    y.backward(fg.tensor(np.ones(y.shape, np.float32), backend=backend))
    assert t.grad.numpy().ravel().tolist() == [0.0]


@given(geom=pool_geometry(dilation=False, max_side=6), cip=st.booleans(),
       div=st.sampled_from([None, 2]), seed=st.integers(0, 2**16))
def test_avg_pool2d_gradcheck(cpu_backend, geom, cip, div, seed):
    shape, k, s, p, _, ceil = geom
    x = np.random.default_rng(seed).standard_normal(shape)
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda a: F.avg_pool2d(a, k, s, p, ceil, cip, div), [t])


@pytest.mark.parametrize("kind", ["avg", "max"])
@given(hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       out=st.tuples(st.integers(1, 8), st.integers(1, 8)), seed=st.integers(0, 2**16))
def test_adaptive_pool2d_gradcheck(cpu_backend, kind, hw, out, seed):
    x = distinct_values((1, 2) + hw, np.float64, seed)
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    assert fg.gradcheck(lambda a: fn(a, out), [t])


# ------------------------------------------------------------------ vs PyTorch
@given(geom=pool_geometry(), cip=st.booleans(), div=st.sampled_from([None, 3]),
       out=st.tuples(st.integers(1, 10), st.integers(1, 10)), seed=st.integers(0, 2**16))
def test_pools_match_torch(cpu_backend, geom, cip, div, out, seed):
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    shape, k, s, p, d, ceil = geom
    x = np.random.default_rng(seed).standard_normal(shape)
    gy_seed = np.random.default_rng(seed + 1)

    def both(fg_fn, torch_fn, check_indices=False):
        xt = fg.tensor(x, backend=cpu_backend, requires_grad=True)
        res = fg_fn(xt)
        y, idx = res if isinstance(res, tuple) else (res, None)
        tx = torch.tensor(x, requires_grad=True)
        tres = torch_fn(tx)
        ty, tidx = tres if isinstance(tres, tuple) else (tres, None)
        assert_close(y.numpy(), ty.detach().numpy(), kind="reduction")
        if check_indices:
            assert np.array_equal(idx.numpy(), tidx.numpy())
        g = gy_seed.standard_normal(y.shape)
        y.backward(fg.tensor(g, backend=cpu_backend))
        ty.backward(torch.tensor(g))
        assert_close(xt.grad.numpy(), tx.grad.numpy(), kind="reduction")

    # PyTorch leaves indices undefined for windows without a valid element (-1 here)
    rows, cols = _pool.pool_axes(shape, k, s, p, d, ceil)
    empty = any(not any(0 <= st_ + j * a.step < a.size for j in range(int(c)))
                for a in (rows, cols) for st_, c in zip(a.start, a.count))
    if not empty:
        both(lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil, return_indices=True),
             lambda t: TF.max_pool2d(t, k, s, p, d, ceil_mode=ceil, return_indices=True), True)
    both(lambda t: F.avg_pool2d(t, k, s, p, ceil, cip, div),
         lambda t: TF.avg_pool2d(t, k, s, p, ceil, cip, div))
    both(lambda t: F.adaptive_avg_pool2d(t, out), lambda t: TF.adaptive_avg_pool2d(t, out))
    both(lambda t: F.adaptive_max_pool2d(t, out, return_indices=True),
         lambda t: TF.adaptive_max_pool2d(t, out, return_indices=True), True)


# ------------------------------------------------------------------ semantics, edges
def test_max_pool2d_2x2_values_indices_and_routing(backend):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    xt = fg.tensor(x, backend=backend, requires_grad=True)
    y, idx = F.max_pool2d(xt, 2, return_indices=True)
    assert np.array_equal(y.numpy(), [[[[5, 7], [13, 15]]]])
    assert np.array_equal(idx.numpy(), [[[[5, 7], [13, 15]]]])
    y.backward(fg.tensor(np.array([[[[1, 2], [3, 4]]]], np.float32), backend=backend))
    expected = np.zeros(16, np.float32)
    expected[[5, 7, 13, 15]] = [1, 2, 3, 4]
    assert np.array_equal(xt.grad.numpy().ravel(), expected)


def test_overlapping_windows_accumulate_gradients(backend):
    # 3x3 windows, stride 1, one large value in the middle: it is the max of all 4 windows
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 2] = 5.0
    x[0, 0, 2, 1] = 4.0
    xt = fg.tensor(x, backend=backend, requires_grad=True)
    F.max_pool2d(xt, 3, stride=1).sum().backward()
    g = xt.grad.numpy()[0, 0]
    assert g[1, 2] == 4.0 and g.sum() == 4.0


def test_nan_propagates_and_padding_never_wins(backend):
    x = np.full((1, 1, 3, 3), -7.0, np.float32)
    x[0, 0, 1, 1] = np.nan
    y = F.max_pool2d(fg.tensor(x, backend=backend), 3, stride=1, padding=1).numpy()
    assert np.isnan(y).all()
    y = F.max_pool2d(fg.tensor(np.full((1, 1, 3, 3), -7.0, np.float32), backend=backend), 3,
                     stride=1, padding=1).numpy()
    assert (y == -7.0).all()
    y = F.adaptive_max_pool2d(fg.tensor(x, backend=backend), 2).numpy()
    assert np.isnan(y).all()


@pytest.mark.parametrize("case", [
    dict(shape=(1, 1, 1, 1), k=1, s=1, p=0),       # 1x1 spatial, batch 1
    dict(shape=(1, 3, 5, 7), k=(5, 7), s=1, p=0),  # kernel equal to the input
    dict(shape=(2, 2, 7, 7), k=2, s=5, p=1),       # stride larger than the kernel
    dict(shape=(1, 2, 2, 2), k=3, s=2, p=1),       # kernel larger than the input, padded
])
def test_edge_shapes(backend, case):
    x = distinct_values(case["shape"], np.float32, 3)
    k, s, p = case["k"], case["s"], case["p"]
    for ceil in (False, True):
        check_against_numpy(lambda t: F.max_pool2d(t, k, s, p, ceil_mode=ceil), [x], backend)
        check_against_numpy(lambda t: F.avg_pool2d(t, k, s, p, ceil), [x], backend,
                            kind="reduction")


def test_kernel_equal_to_input_is_global_pooling(backend):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32)
    t = fg.tensor(x, backend=backend)
    assert_close(F.max_pool2d(t, (5, 4)).numpy(), x.max(axis=(2, 3), keepdims=True))
    assert_close(F.avg_pool2d(t, (5, 4)).numpy(), x.mean(axis=(2, 3), keepdims=True),
                 kind="reduction")
    assert_close(F.adaptive_avg_pool2d(t, 1).numpy(), x.mean(axis=(2, 3), keepdims=True),
                 kind="reduction")


@pytest.mark.parametrize("side", [40, 48])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_large_windows_global_pooling(backend, kind, side):
    # 40x40 windows take the warp-per-output path on cuda, 48x48 the block-per-output one
    x = np.random.default_rng(1).standard_normal((2, 3, side, side)).astype(np.float32)
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    check_against_numpy(lambda t: fn(t, 1), [x], backend, kind="reduction")
    check_against_numpy(lambda t: fn(t, (2, 3)), [x], backend, kind="reduction")


def test_adaptive_output_larger_than_input(backend):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    y = F.adaptive_avg_pool2d(t, (4, 6))
    assert y.shape == (1, 1, 4, 6)
    # each input repeats in a 2x2 block
    assert np.array_equal(y.numpy()[0, 0], np.kron(x[0, 0], np.ones((2, 2), np.float32)))
    y.sum().backward()
    assert np.array_equal(t.grad.numpy(), np.full_like(x, 4.0))


def test_three_d_input_and_no_grad_forward(backend):
    x = distinct_values((3, 6, 5), np.float32, 5)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    y, idx = F.max_pool2d(t, 2, ceil_mode=True, return_indices=True)
    assert y.shape == (3, 3, 3) and idx.shape == (3, 3, 3)
    with fg.no_grad():
        y2 = F.max_pool2d(t, 2, ceil_mode=True)
        y3, idx3 = F.max_pool2d(t, 2, ceil_mode=True, return_indices=True)
    assert not y2.requires_grad
    assert np.array_equal(y2.numpy(), y.numpy()) and np.array_equal(idx3.numpy(), idx.numpy())
    assert F.adaptive_avg_pool2d(t, 1).shape == (3, 1, 1)


def test_modules(backend):
    x = fg.tensor(distinct_values((2, 3, 8, 8), np.float32, 7), backend=backend)
    nn = fg.nn
    assert nn.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    y, i = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)(x)
    assert y.shape == i.shape == (2, 3, 4, 4)
    assert nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x).shape == (2, 3, 8, 8)
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
    assert nn.AdaptiveMaxPool2d((2, None))(x).shape == (2, 3, 2, 8)
    assert list(nn.MaxPool2d(2).parameters()) == []


def test_avg_pool2d_count_include_pad_and_divisor(backend):
    x = np.ones((1, 1, 2, 2), np.float32)
    t = fg.tensor(x, backend=backend)
    # window (i, j) of 2x2 ones padded by 1 covers 1, 2 or 4 ones, always divided by 4
    covered = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32)
    assert np.array_equal(F.avg_pool2d(t, 2, 1, 1).numpy()[0, 0], covered / 4)
    assert np.array_equal(F.avg_pool2d(t, 2, 1, 1, count_include_pad=False).numpy(),
                          np.ones((1, 1, 3, 3), np.float32))
    assert np.array_equal(F.avg_pool2d(t, 2, 1, 1, divisor_override=1).numpy()[0, 0, 1, 1], 4.0)


# ------------------------------------------------------------------ bad input
def test_bad_arguments_raise_clear_errors(backend):
    t = fg.tensor(np.ones((1, 1, 4, 4), np.float32), backend=backend)
    with pytest.raises(ValueError, match="padding.*half"):
        F.max_pool2d(t, 2, padding=2)
    with pytest.raises(ValueError, match="padding.*half"):
        F.avg_pool2d(t, 3, padding=2)
    with pytest.raises(ValueError, match="kernel_size.*empty output"):
        F.max_pool2d(t, 6)
    with pytest.raises(ValueError, match="kernel_size.*empty output"):
        F.max_pool2d(t, 3, dilation=2)
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(t, 0)
    with pytest.raises(ValueError, match="stride"):
        F.avg_pool2d(t, 2, stride=0)
    with pytest.raises(TypeError, match="kernel_size"):
        F.max_pool2d(t, 2.5)
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(t, (2, 2, 2))
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(t, 2, divisor_override=0)
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(t, 0)
    with pytest.raises(ValueError, match="input.*3-D.*4-D"):
        F.max_pool2d(fg.tensor(np.ones((4, 4), np.float32), backend=backend), 2)
    with pytest.raises(ValueError, match="spatial"):
        F.adaptive_max_pool2d(fg.tensor(np.ones((1, 1, 0, 3), np.float32), backend=backend), 1)
    with pytest.raises(TypeError, match="float"):
        F.max_pool2d(fg.tensor(np.ones((1, 1, 2, 2), np.int64), backend=backend), 2)


def test_kernels_validate_when_called_directly(backend):
    be = fg.get_backend(backend)
    x = be.from_numpy(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="padding"):
        be.max_pool2d_forward(x, 2, None, 3, 1, False, True)
    with pytest.raises(ValueError, match="4-D"):
        be.avg_pool2d_forward(be.from_numpy(np.ones((4, 4), np.float32)), 2, 2, 0, False, True, None)
    y, idx = be.max_pool2d_forward(x, 2, 2, 0, 1, False, True)
    with pytest.raises(ValueError, match="gy|shape"):
        be.max_pool2d_backward(be.from_numpy(np.ones((1, 1, 3, 3), np.float32)), idx,
                               (1, 1, 4, 4), 2, 2, 0, 1, False)
    with pytest.raises(TypeError, match="indices"):
        be.adaptive_max_pool2d_backward(y, be.from_numpy(np.ones((1, 1, 2, 2), np.float32)),
                                        (1, 1, 4, 4))


def test_2x2_stride_2_even_input(backend):
    # the commonest layer (a dedicated fast path on cuda): ties, NaN, indices, divisors
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 3, size=(2, 3, 6, 8)).astype(np.float32)  # many ties
    x[0, 0, 2, 3] = np.nan
    y, i = F.max_pool2d(fg.tensor(x, backend=backend), 2, return_indices=True)
    y0, i0 = F.max_pool2d(fg.tensor(x), 2, return_indices=True)
    assert_close(y.numpy(), y0.numpy())
    assert np.array_equal(i.numpy(), i0.numpy())
    x[0, 0, 2, 3] = 1.5
    check_against_numpy(lambda t: F.max_pool2d(t, 2), [x + rng.random(x.shape).astype(np.float32)],
                        backend)
    for kw in ({}, {"divisor_override": 3}, {"count_include_pad": False}):
        check_against_numpy(lambda t: F.avg_pool2d(t, 2, **kw), [x], backend, kind="reduction")
    check_against_numpy(lambda t: F.adaptive_avg_pool2d(t, (3, 4)), [x], backend, kind="reduction")
    # odd sizes: the last row and column belong to no window (the rust 2x2 paths slice
    # them off; their gradient stays 0)
    odd = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    check_against_numpy(lambda t: F.max_pool2d(t, 2), [odd], backend)
    check_against_numpy(lambda t: F.avg_pool2d(t, 2), [odd], backend, kind="reduction")


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4)])
def test_empty_batch_or_channels(backend, shape):
    fns = [lambda t: F.max_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2, padding=1),
           lambda t: F.adaptive_avg_pool2d(t, 3), lambda t: F.adaptive_max_pool2d(t, 3)]
    for fn in fns:
        x = fg.tensor(np.ones(shape, np.float32), backend=backend, requires_grad=True)
        y = fn(x)
        assert y.shape[:2] == shape[:2] and y.size == 0
        y.sum().backward()
        assert x.grad.shape == shape
