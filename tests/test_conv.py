"""Convolution: conv2d / nn.Conv2d with the naive, im2col, Winograd and FFT algorithms.

Every algorithm on every backend against the numpy naive reference computed in float64,
within a tolerance scaled by the reduction size (C/g * KH * KW terms) over drawn
geometries (batch, channels, groups incl. depthwise, odd sizes, kernels as large as the
padded input, stride, padding, dilation); float64 gradcheck on numpy and rust; PyTorch
as an oracle; the "auto" rule; edge shapes; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.backends import _conv
from ferrograd.testing import assert_close, run_op

from conftest import dtype_backend_ok

ALGOS = ["naive", "im2col", "winograd", "fft", "auto"]


@st.composite
def conv_geometry(draw, winograd=False, max_extra=5):
    """(x shape, w shape, stride, padding, dilation, groups) that PyTorch accepts."""
    g = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if winograd:
        k, s, d = (3, 3), (1, 1), (1, 1)
    else:
        k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    hw = []
    for i in range(2):
        ek = d[i] * (k[i] - 1) + 1
        lo = max(1, ek - 2 * p[i])  # lo: the kernel as large as the padded input
        hw.append(draw(st.integers(lo, lo + max_extra)))
    n = draw(st.integers(1, 2))
    return (n, g * cg, hw[0], hw[1]), (g * og, cg) + k, s, p, d, g


def _inputs(xs, ws, dtype, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, xs).astype(dtype)
    w = rng.uniform(-2, 2, ws).astype(dtype)
    b = rng.uniform(-2, 2, ws[0]).astype(dtype)
    return (x, w, b) if bias else (x, w)


def _scale(x, w):
    """A bound on the magnitude of the sums: K = C/g * KH * KW terms of |x| |w|."""
    k = w.shape[1] * w.shape[2] * w.shape[3]
    return float(k * np.abs(x).max() * np.abs(w).max()) + 1.0


def _check_algo(backend, dtype, algo, xs, ws, s, p, d, g, seed=0, bias=True):
    arrays = _inputs(xs, ws, dtype, seed, bias)
    fn = lambda *t: F.conv2d(*t, stride=s, padding=p, dilation=d, groups=g, algo=algo)  # noqa: E731
    y, gs = run_op(fn, arrays, backend)
    ref = lambda *t: F.conv2d(*t, stride=s, padding=p, dilation=d, groups=g, algo="naive")  # noqa: E731
    y0, g0 = run_op(ref, [a.astype(np.float64) for a in arrays], "numpy")
    x, w = arrays[0], arrays[1]
    n_out = y0.shape[0] * y0.shape[2] * y0.shape[3]
    msg = f"{backend} {algo} x{xs} w{ws} s{s} p{p} d{d} g{g}"
    assert y.dtype == dtype and y.shape == y0.shape
    assert_close(y, y0, dtype, "reduction", scale=_scale(x, w), msg=msg + " forward")
    # gx sums O/g * KH * KW terms; gw and gb sum N * OH * OW terms of |gy| (<~4) |x|
    assert_close(gs[0], g0[0], dtype, "reduction",
                 scale=4.0 * ws[0] * ws[2] * ws[3] * float(np.abs(w).max()) + 1, msg=msg + " gx")
    assert_close(gs[1], g0[1], dtype, "reduction", scale=4.0 * n_out * 2.0 + 1, msg=msg + " gw")
    if bias:
        assert_close(gs[2], g0[2], dtype, "reduction", scale=4.0 * n_out + 1, msg=msg + " gb")


# ------------------------------------------------------------------ vs the reference
@pytest.mark.parametrize("algo", ["naive", "im2col", "fft", "auto"])
@given(geom=conv_geometry(), seed=st.integers(0, 2**16), bias=st.booleans())
def test_conv2d_algorithms_match_reference(backend, dtype, algo, geom, seed, bias):
    dtype_backend_ok(backend, dtype)
    _check_algo(backend, dtype, algo, *geom, seed=seed, bias=bias)


@given(geom=conv_geometry(winograd=True, max_extra=7), seed=st.integers(0, 2**16))
def test_conv2d_winograd_matches_reference(backend, dtype, geom, seed):
    dtype_backend_ok(backend, dtype)
    _check_algo(backend, dtype, "winograd", *geom, seed=seed)


@pytest.mark.parametrize("kernel", ["winograd2", "winograd4", "fft", "naive"])
@given(geom=conv_geometry(winograd=True, max_extra=9), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_rust_kernels_match_reference(kernel, geom, seed, dtype):
    """Each Rust kernel called directly (the API's "winograd" picks the tile by size and
    channels; here both tiles meet every drawn shape), forward and all gradients, against
    the numpy reference in float64; F(4,3) in float32 within the reduction tolerance."""
    from ferrograd import _core
    xs, ws, s, p, d, g = geom
    x, w, b = _inputs(xs, ws, dtype, seed)
    y = _core.conv2d_forward(x, w, b, s, p, d, g, kernel)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    y0 = _conv.naive_forward(x64, w64, b64, s, p, d, g, y.shape[2:])
    gy = np.random.default_rng(seed + 1).uniform(-1, 1, y.shape).astype(dtype)
    gx, gw, gb = _core.conv2d_backward(x, w, gy, s, p, d, g, True, kernel)
    gx0, gw0 = _conv.naive_backward(x64, w64, gy.astype(np.float64), s, p, d, g, y.shape[2:])
    msg = f"{kernel} x{xs} w{ws} p{p} g{g}"
    assert y.dtype == dtype and gx.dtype == dtype
    assert_close(y, y0, dtype, "reduction", scale=_scale(x, w), msg=msg + " forward")
    assert_close(gx, gx0, dtype, "reduction",
                 scale=ws[0] * 9 * float(np.abs(w).max()) + 1, msg=msg + " gx")
    assert_close(gw, gw0, dtype, "reduction", scale=2.0 * gy[:, :1].size + 1, msg=msg + " gw")
    assert_close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), dtype, "reduction",
                 scale=gy[:, :1].size + 1, msg=msg + " gb")


def test_rust_f43_and_fft_gradcheck():
    """float64 gradcheck of the rust F(4x4, 3x3) path ("winograd" at 24x24 outputs) and
    of the rust FFT path with stride and dilation, through the autograd API."""
    rng = np.random.default_rng(7)
    for algo, xs, ws, kw in [("winograd", (1, 2, 24, 25), (2, 1, 3, 3), dict(padding=1, groups=2)),
                             ("fft", (2, 2, 7, 6), (3, 2, 3, 2), dict(stride=2, dilation=(1, 2)))]:
        ts = [fg.tensor(rng.uniform(-1, 1, shape), backend="rust", requires_grad=True)
              for shape in (xs, ws, ws[:1])]
        assert fg.gradcheck(lambda *t: F.conv2d(*t, algo=algo, **kw), ts), algo


# ------------------------------------------------------------------ gradcheck
@pytest.mark.parametrize("algo", ["naive", "im2col", "winograd", "fft"])
@given(geom=conv_geometry(max_extra=2), seed=st.integers(0, 2**16))
def test_conv2d_gradcheck(cpu_backend, algo, geom, seed):
    xs, ws, s, p, d, g = geom
    if algo == "winograd":
        ws, s, d = ws[:2] + (3, 3), (1, 1), (1, 1)
        xs = xs[:2] + (max(xs[2], 3 - 2 * p[0]), max(xs[3], 3 - 2 * p[1]))
    x, w, b = _inputs(xs, ws, np.float64, seed)
    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (x, w, b)]
    assert fg.gradcheck(lambda *t: F.conv2d(*t, stride=s, padding=p, dilation=d, groups=g,
                                            algo=algo), ts)


# ------------------------------------------------------------------ vs PyTorch
@given(geom=conv_geometry(), seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(cpu_backend, geom, seed):
    torch = pytest.importorskip("torch")
    xs, ws, s, p, d, g = geom
    x, w, b = _inputs(xs, ws, np.float64, seed)
    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (x, w, b)]
    y = F.conv2d(*ts, stride=s, padding=p, dilation=d, groups=g)
    tt = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ty = torch.nn.functional.conv2d(*tt, stride=s, padding=p, dilation=d, groups=g)
    assert_close(y.numpy(), ty.detach().numpy(), kind="reduction")
    gy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    y.backward(fg.tensor(gy, backend=cpu_backend))
    ty.backward(torch.tensor(gy))
    for a, ta, name in zip(ts, tt, ("input", "weight", "bias")):
        assert_close(a.grad.numpy(), ta.grad.numpy(), kind="reduction", msg=name)


def test_conv2d_module_loads_torch_weights(backend):
    torch = pytest.importorskip("torch")
    fg.manual_seed(0)
    tm = torch.nn.Conv2d(6, 9, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3)
    m = fg.nn.Conv2d(6, 9, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3,
                     backend=backend)
    assert m.weight.shape == tuple(tm.weight.shape) and m.bias.shape == tuple(tm.bias.shape)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    bound = 1 / np.sqrt(2 * 3 * 2)
    assert np.abs(m.weight.numpy()).max() <= bound and np.abs(m.bias.numpy()).max() <= bound
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 6, 9, 8)).astype(np.float32)
    y = m(fg.tensor(x, backend=backend))
    assert_close(y.numpy(), tm(torch.tensor(x)).detach().numpy(), np.float32, "reduction")


# ------------------------------------------------------------------ semantics, edges
def test_conv2d_known_values(backend):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    w = np.array([[[[1, 0], [0, -1]]]], np.float32)  # x[i, j] - x[i+1, j+1] = -5
    for algo in ("naive", "im2col", "fft", "auto"):
        y = F.conv2d(fg.tensor(x, backend=backend), fg.tensor(w, backend=backend), algo=algo)
        assert_close(y.numpy(), np.full((1, 1, 3, 3), -5, np.float32), kind="reduction", msg=algo)


def test_conv2d_unbatched_same_and_valid_padding(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 5)).astype(np.float32)
    y = F.conv2d(fg.tensor(x, backend=backend), fg.tensor(w, backend=backend), padding="same")
    y4 = F.conv2d(fg.tensor(x[None], backend=backend), fg.tensor(w, backend=backend),
                  padding=(1, 2))
    assert y.shape == (3, 7, 5)
    assert_close(y.numpy(), y4.numpy()[0], kind="reduction")
    yv = F.conv2d(fg.tensor(x, backend=backend), fg.tensor(w, backend=backend), padding="valid")
    assert yv.shape == (3, 5, 1)


@pytest.mark.parametrize("algo", ALGOS)
def test_conv2d_empty_batch(backend, algo):
    x = fg.tensor(np.zeros((0, 2, 5, 5), np.float32), backend=backend, requires_grad=True)
    w = fg.tensor(np.ones((4, 2, 3, 3), np.float32), backend=backend, requires_grad=True)
    y = F.conv2d(x, w, algo=algo)
    assert y.shape == (0, 4, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert np.array_equal(w.grad.numpy(), np.zeros((4, 2, 3, 3), np.float32))


def test_auto_rule():
    r = lambda xs, ws, s=(1, 1), d=(1, 1), g=1: _conv.resolve_algo(  # noqa: E731
        "auto", xs, ws, s, (0, 0), d, g)
    assert r((1, 64, 56, 56), (64, 64, 3, 3)) == "im2col"        # measured: beats winograd
    assert r((1, 64, 56, 56), (64, 64, 3, 3), s=(2, 2)) == "im2col"
    assert r((1, 64, 56, 56), (64, 1, 3, 3), g=64) == "im2col"   # depthwise
    assert r((1, 64, 56, 56), (64, 64, 1, 1)) == "im2col"
    assert r((1, 8, 64, 64), (8, 8, 11, 11)) == "fft"
    assert r((1, 8, 64, 64), (8, 8, 9, 9)) == "im2col"
    assert r((1, 3, 224, 224), (64, 3, 7, 7), s=(2, 2)) == "im2col"


def test_rust_auto_rule():
    """The rust backend's own choice (measured crossovers, _conv.resolve_rust_algo)."""
    def r(ws, out, s=(1, 1), d=(1, 1), g=1, backward=False, algo="auto"):
        return _conv.resolve_rust_algo(algo, ws, s, d, g, out, backward)
    assert r((64, 64, 3, 3), (56, 56)) == "winograd4"           # the benchmark row
    assert r((64, 64, 3, 3), (56, 56), backward=True) == "winograd4"
    assert r((64, 64, 3, 3), (14, 14)) == "winograd2"
    assert r((16, 16, 3, 3), (14, 14)) == "winograd4"
    assert r((64, 64, 3, 3), (7, 7)) == "winograd2"
    assert r((8, 8, 3, 3), (56, 56)) == "winograd4"
    assert r((2, 2, 3, 3), (56, 56)) == "im2col"                 # too few channels
    assert r((64, 1, 3, 3), (56, 56), g=64) == "im2col"          # depthwise
    assert r((64, 64, 3, 3), (28, 28), s=(2, 2)) == "im2col"
    assert r((64, 64, 1, 1), (56, 56)) == "im2col"
    assert r((16, 16, 11, 11), (64, 64)) == "fft"
    assert r((16, 16, 7, 7), (64, 64)) == "fft"
    assert r((64, 64, 7, 7), (64, 64)) == "im2col"
    assert r((64, 64, 7, 7), (64, 64), backward=True) == "fft"
    assert r((16, 16, 5, 5), (64, 64)) == "fft"
    assert r((32, 32, 5, 5), (64, 64)) == "im2col"
    assert r((32, 32, 5, 5), (64, 64), backward=True) == "im2col"
    assert r((16, 16, 3, 3), (64, 64), d=(2, 2)) == "im2col"
    assert r((64, 3, 7, 7), (112, 112), s=(2, 2)) == "im2col"    # strided stem
    assert r((4, 4, 3, 3), (30, 30), algo="winograd") == "winograd4"
    assert r((4, 4, 3, 3), (5, 5), algo="winograd") == "winograd2"
    assert r((4, 4, 3, 3), (5, 5), algo="naive") == "naive"


def test_winograd_needs_3x3_stride1():
    x = fg.tensor(np.zeros((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="algo: 'winograd' needs a 3x3 kernel"):
        F.conv2d(x, fg.tensor(np.zeros((1, 1, 5, 5), np.float32)), algo="winograd")
    with pytest.raises(ValueError, match="algo: 'winograd'"):
        F.conv2d(x, fg.tensor(np.zeros((1, 1, 3, 3), np.float32)), stride=2, algo="winograd")


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(groups=2), ValueError, r"groups: in_channels \(3\) must be divisible by groups \(2\)"),
    (dict(padding=-1), ValueError, "padding: expected values >= 0"),
    (dict(stride=0), ValueError, "stride: expected values >= 1"),
    (dict(dilation=(1, 0)), ValueError, "dilation: expected values >= 1"),
    (dict(groups=0), ValueError, "groups: expected a positive int"),
    (dict(stride=1.5), TypeError, "stride: expected an int"),
    (dict(algo="gemm"), ValueError, "algo: expected one of"),
    (dict(padding="full"), ValueError, "padding: expected an int, a pair of ints, 'valid' or 'same'"),
    (dict(padding="same", stride=2), ValueError, "padding: 'same' is not supported for strided"),
])
def test_conv2d_bad_arguments(backend, kwargs, exc, match):
    x = fg.tensor(np.zeros((1, 3, 5, 5), np.float32), backend=backend)
    w = fg.tensor(np.zeros((4, 3, 3, 3), np.float32), backend=backend)
    with pytest.raises(exc, match=match):
        F.conv2d(x, w, **kwargs)


def test_conv2d_bad_shapes(backend):
    t = lambda *s: fg.tensor(np.zeros(s, np.float32), backend=backend)  # noqa: E731
    with pytest.raises(ValueError, match=r"weight: the \(dilated\) kernel 7x7 is larger than the padded input 6x6"):
        F.conv2d(t(1, 1, 4, 4), t(1, 1, 7, 7), padding=1)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4, 3, KH, KW\)"):
        F.conv2d(t(1, 3, 5, 5), t(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"groups: out_channels \(3\) must be divisible by groups \(2\)"):
        F.conv2d(t(1, 4, 5, 5), t(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"bias: expected shape \(4,\)"):
        F.conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), t(3))
    with pytest.raises(ValueError, match="input: expected a 3-D"):
        F.conv2d(t(3, 5, 5, 1, 1), t(4, 3, 3, 3))
    with pytest.raises(ValueError, match="weight: expected a 4-D"):
        F.conv2d(t(1, 3, 5, 5), t(4, 3, 3))
    if backend != "cuda":
        with pytest.raises(TypeError, match="weight: expected dtype float32 like input"):
            F.conv2d(t(1, 3, 5, 5), fg.tensor(np.zeros((4, 3, 3, 3)), backend=backend))


def test_conv2d_kernels_validate_directly(backend):
    be = fg.get_backend(backend)
    x = be.from_numpy(np.zeros((1, 3, 5, 5), np.float32))
    w = be.from_numpy(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(1, 4, 3, 3\)"):
        be.conv2d_backward(x, w, be.from_numpy(np.zeros((1, 4, 2, 2), np.float32)), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="groups: in_channels"):
        be.conv2d_forward(x, w, None, 1, 0, 1, 2)


def test_conv2d_module_bad_arguments():
    with pytest.raises(ValueError, match="groups: in_channels"):
        fg.nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        fg.nn.Conv2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="kernel_size: expected values >= 1"):
        fg.nn.Conv2d(3, 4, 0)


def test_conv2d_non_contiguous_inputs(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 2, 3)).astype(np.float32).transpose(2, 3, 0, 1)  # (2,3,5,6)
    w = rng.standard_normal((2, 3, 3, 4)).astype(np.float32).transpose(3, 1, 2, 0)  # (4,3,3,2)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    y = F.conv2d(fg.tensor(x, backend=backend), fg.tensor(w, backend=backend), padding=1)
    y0 = F.conv2d(fg.tensor(np.ascontiguousarray(x)), fg.tensor(np.ascontiguousarray(w)),
                  padding=1, algo="naive")
    assert_close(y.numpy(), y0.numpy(), kind="reduction")


def test_rust_kernels_raise_value_errors_not_panics():
    from ferrograd import _core
    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="groups"):
        _core.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        _core.conv2d_forward(x[:, :, :2, :2], w, None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="bias"):
        _core.conv2d_forward(x, w, np.zeros(3, np.float32), (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="grad_output"):
        _core.conv2d_backward(x, w, np.zeros((1, 4, 2, 2), np.float32), (1, 1), (0, 0), (1, 1), 1, True)
    with pytest.raises(TypeError, match="weight"):
        _core.conv2d_forward(x, w.astype(np.float64), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="algo: expected one of"):
        _core.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1, "winograd3")
    with pytest.raises(ValueError, match="algo: 'winograd' needs a 3x3 kernel with stride 1"):
        _core.conv2d_forward(x, w, None, (2, 2), (0, 0), (1, 1), 1, "winograd4")
    with pytest.raises(ValueError, match="algo: 'winograd' needs"):
        _core.conv2d_backward(x, w[:, :, :2], np.zeros((1, 4, 4, 3), np.float32), (1, 1), (0, 0),
                              (1, 1), 1, True, "winograd2")
    for kernel in ("naive", "winograd2", "winograd4", "fft"):
        with pytest.raises(ValueError, match="bias"):
            _core.conv2d_forward(x, w, np.zeros(3, np.float32), (1, 1), (0, 0), (1, 1), 1, kernel)


@pytest.mark.cuda
def test_cuda_conv_64bit_index_kernels_match(monkeypatch):
    """conv.cu's 64-bit-index kernels (used past 2^30 elements) give the int-index ones'
    results: forced here by lowering the switch-over size."""
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)

    def run():
        tx = fg.tensor(x, backend="cuda", requires_grad=True)
        tw = fg.tensor(w, backend="cuda", requires_grad=True)
        y = F.conv2d(tx, tw, None, stride=(2, 1), padding=1, groups=2)
        y.sum().backward()
        return y.numpy(), tx.grad.numpy(), tw.grad.numpy()

    small = run()
    monkeypatch.setattr(type(be), "_CONV_I32_LIMIT", 0)
    big = run()
    for a, b in zip(small, big):
        np.testing.assert_array_equal(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("ksize,stride,padding,dilation", [(1, 1, 0, 1), (1, 2, 0, 1), (3, 1, 1, 1),
                                                           (3, 2, 2, 2), (5, 1, 0, 1)])
def test_cuda_conv_batched_forward_matches_numpy(ksize, stride, padding, dilation):
    """groups == 1: the forward as one GEMM batched over images (1x1 kernels read x as it
    is, others per-image columns), then the bias; against the numpy backend."""
    from conftest import require_backend

    require_backend("cuda")
    rng = np.random.default_rng(ksize * 10 + stride)
    x = rng.standard_normal((3, 5, 13, 11)).astype(np.float32)
    w = rng.standard_normal((7, 5, ksize, ksize)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    args = dict(stride=stride, padding=padding, dilation=dilation)
    got = F.conv2d(*(fg.tensor(a, backend="cuda") for a in (x, w, b)), **args).numpy()
    want = F.conv2d(*(fg.tensor(a.astype(np.float64)) for a in (x, w, b)), **args).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.sqrt(5 * ksize * ksize) * 8)
