"""Activations: values and gradients on every backend against the numpy reference,
float64 gradcheck on numpy and rust, and the behaviour at large |x|, at kinks and for NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import assert_close, check_against_numpy
from ferrograd.testing.strategies import float_arrays, shapes

from conftest import dtype_backend_ok

# name -> (function of a Tensor, largest |x| drawn, distance kept from a kink at 0)
ACTIVATIONS = {
    "relu": (F.relu, 100.0, 1e-3),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.2), 100.0, 1e-3),
    "sigmoid": (F.sigmoid, 100.0, 0.0),
    "tanh": (F.tanh, 100.0, 0.0),
    "gelu": (F.gelu, 100.0, 0.0),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), 100.0, 0.0),
    "silu": (F.silu, 100.0, 0.0),
    "swish": (lambda t: F.swish(t, beta=1.7), 100.0, 0.0),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(data=st.data())
def test_activation_matches_numpy(backend, dtype, name, data):
    dtype_backend_ok(backend, dtype)
    fn, mag, gap = ACTIVATIONS[name]
    x = data.draw(float_arrays(shapes(0, 4), dtype, max_magnitude=mag, min_distance=gap), label="x")
    y, (gx,) = check_against_numpy(fn, [x], backend)
    assert y.shape == x.shape and gx.shape == x.shape


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(data=st.data())
def test_activation_gradcheck(cpu_backend, name, data):
    fn, _, gap = ACTIVATIONS[name]
    x = data.draw(float_arrays(shapes(1, 3, max_side=4), np.float64, max_magnitude=6.0,
                               min_distance=max(gap, 1e-3) if gap else 0.0), label="x")
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda a: fn(a), [t])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_activations_are_finite_and_exact_at_the_ends(backend, dtype):
    dtype_backend_ok(backend, dtype)
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], dtype=dtype)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    s = F.sigmoid(t)
    s.sum().backward()
    sv = s.numpy()
    assert np.all(np.isfinite(sv)) and np.all(np.isfinite(t.grad.numpy()))
    assert sv[0] == 0.0 and sv[-1] == 1.0 and sv[3] == 0.5
    th = F.tanh(fg.tensor(x, backend=backend)).numpy()
    assert th[0] == -1.0 and th[-1] == 1.0 and th[3] == 0.0
    g = F.gelu(fg.tensor(x, backend=backend)).numpy()
    assert g[-1] == x[-1] and abs(g[0]) == 0.0


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu", "swish"])
@pytest.mark.parametrize("big", [1e12, 1e20, 3e38])
def test_huge_inputs_give_the_limits(backend, name, big):
    """Where x*x or x**3 overflows float32, x*Phi(x)-like activations still give x and 0,
    their gradients 1 and 0 (PyTorch's tanh GELU gives NaN gradients there; the limits
    are the defined values). Flushed exponentials must not leave stray values either:
    -big times a 1e-38 left in place of 0 would be of order one."""
    fn = ACTIVATIONS[name][0]
    x = np.array([big, -big], dtype=np.float32)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    assert np.array_equal(y.numpy(), np.array([big, 0.0], dtype=np.float32))
    assert np.array_equal(t.grad.numpy(), np.array([1.0, 0.0], dtype=np.float32))


@pytest.mark.parametrize("slope", [0.2, 0.0, -0.3])
def test_relu_and_leaky_relu_save_a_packed_sign_mask(backend, slope):
    """Recorded relu / leaky_relu keep one bit per element (x > 0, packed little-endian)
    for backward, not a tensor; the gradient is 1 where x > 0 and the slope elsewhere
    (also for a negative slope, which maps x < 0 to y > 0)."""
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0, -0.0, np.nan, 3.0, 1e-30], dtype=np.float32)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    y = F.leaky_relu(t, slope)
    (mask,) = y.grad_fn.ctx.saved_arrays
    got = fg.get_backend(backend).to_numpy(mask)
    assert got.dtype == np.uint8 and got.shape == (2,)
    assert np.array_equal(got, np.packbits(x > 0, bitorder="little"))
    assert fg.autograd.saved_bytes(y) == 2
    y.sum().backward()
    assert np.array_equal(t.grad.numpy(), np.where(x > 0, 1.0, slope).astype(np.float32))
    r = F.relu(fg.tensor(x, backend=backend, requires_grad=True))
    assert np.array_equal(fg.get_backend(backend).to_numpy(r.grad_fn.ctx.saved_arrays[0]), got)


def test_relu_makes_no_mask_without_autograd(backend, monkeypatch):
    """Under no_grad (or for a tensor that needs no gradient) the plain forward runs."""
    be = fg.get_backend(backend)
    called = []
    monkeypatch.setattr(type(be), "relu_forward_mask", lambda self, x: called.append(x))
    x = fg.tensor(np.array([-1.0, 2.0], dtype=np.float32), backend=backend, requires_grad=True)
    with fg.no_grad():
        assert np.array_equal(F.relu(x).numpy(), [0.0, 2.0])
    assert np.array_equal(F.relu(x.detach()).numpy(), [0.0, 2.0])
    assert called == []


# sizes around the byte, the nibble pairs of a CUDA warp, the Rust parallel chunk (32768)
MASK_SIZES = [0, 1, 3, 7, 8, 9, 31, 33, 64, 129, 1000, 32768 + 5, 3 * 32768 + 13]


@pytest.mark.parametrize("n", MASK_SIZES)
@pytest.mark.parametrize("slope", [None, 0.01, -0.5])
def test_mask_kernels_match_the_kernels_that_read_x(backend, dtype, n, slope):
    """``*_forward_mask`` gives the forward's output and numpy's packbits(x > 0,
    bitorder="little"); ``*_backward_mask`` gives what ``*_backward`` gives from x, for
    every size (partial bytes included) and for zeros, -0.0, NaN and infinities."""
    dtype_backend_ok(backend, dtype)
    be = fg.get_backend(backend)
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf], dtype=dtype)
    x[::7] = np.resize(special, x[::7].shape)
    g[::5] = np.resize(special[::-1], g[::5].shape)
    ref = fg.get_backend("numpy")
    if slope is None:
        fwd, bwd, fwd_mask, bwd_mask, params = "relu_forward", "relu_backward", "relu_forward_mask", "relu_backward_mask", ()
    else:
        fwd, bwd, fwd_mask, bwd_mask = ("leaky_relu_forward", "leaky_relu_backward",
                                        "leaky_relu_forward_mask", "leaky_relu_backward_mask")
        params = (slope,)
    y, mask = getattr(be, fwd_mask)(be.from_numpy(x), *params)
    assert np.array_equal(be.to_numpy(mask), np.packbits(x > 0, bitorder="little"))
    _assert_same_bits(be.to_numpy(y), getattr(ref, fwd)(x, *params))
    gx = be.to_numpy(getattr(be, bwd_mask)(mask, be.from_numpy(g), *params))
    _assert_same_bits(gx, getattr(ref, bwd)(x, g, *params))


def _assert_same_bits(a, b):
    """Equal values, NaN where the other has NaN, and the same sign on zeros."""
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def test_mask_of_a_strided_input_follows_row_major_order(backend):
    x = np.arange(-12, 12, dtype=np.float32).reshape(4, 6).T  # not C-contiguous
    be = fg.get_backend(backend)
    y, mask = be.relu_forward_mask(be.from_numpy(np.ascontiguousarray(x)) if backend == "cuda" else x)
    assert np.array_equal(be.to_numpy(mask), np.packbits(x > 0, axis=None, bitorder="little"))
    assert np.array_equal(be.to_numpy(y), np.maximum(x, 0))


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros(3, dtype=np.uint8), ValueError, "mask: expected 2 bytes"),
    (np.zeros(2, dtype=np.int32), TypeError, "mask: expected a 1-D uint8"),
    (np.zeros((1, 2), dtype=np.uint8), TypeError, "mask: expected a 1-D uint8"),
])
def test_a_bad_mask_is_a_clear_error(backend, bad, error, words):
    be = fg.get_backend(backend)
    gy = be.from_numpy(np.ones(9, dtype=np.float32))
    mask = be.from_numpy(bad) if backend != "cuda" else _cuda_array(be, bad)
    with pytest.raises(error, match=words):
        be.relu_backward_mask(mask, gy)
    with pytest.raises(error, match=words):
        be.leaky_relu_backward_mask(mask, gy, 0.1)


def test_mask_kernels_reject_a_non_float_input(backend):
    """x of the forward and gy of the backward must be float arrays; the error names them."""
    be = fg.get_backend(backend)
    ints = be.from_numpy(np.arange(9, dtype=np.int64))
    mask = be.relu_forward_mask(be.from_numpy(np.ones(9, dtype=np.float32)))[1]
    for call in (lambda: be.relu_forward_mask(ints), lambda: be.leaky_relu_forward_mask(ints, 0.1)):
        with pytest.raises(TypeError, match="x"):
            call()
    for call in (lambda: be.relu_backward_mask(mask, ints), lambda: be.leaky_relu_backward_mask(mask, ints, 0.1)):
        with pytest.raises(TypeError, match="gy"):
            call()


def _cuda_array(be, a):
    """A GPUArray of any dtype (the backend's from_numpy takes float and int64 only)."""
    import pycuda.gpuarray as gpuarray

    return gpuarray.to_gpu(np.ascontiguousarray(a))


def test_relu_subgradient_at_zero_is_zero(backend):
    t = fg.tensor(np.zeros(3, dtype=np.float32), backend=backend, requires_grad=True)
    F.relu(t).sum().backward()
    assert np.array_equal(t.grad.numpy(), np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_nan_propagates(backend, name):
    fn = ACTIVATIONS[name][0]
    x = np.array([np.nan, 1.0, -1.0], dtype=np.float32)
    y = fn(fg.tensor(x, backend=backend)).numpy()
    assert np.isnan(y[0]) and np.all(np.isfinite(y[1:]))


def test_gelu_values_match_the_definitions(backend):
    x = np.linspace(-5, 5, 41)
    if backend == "cuda":
        x = x.astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    approx = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert_close(F.gelu(fg.tensor(x, backend=backend)).numpy(), exact.astype(x.dtype))
    assert_close(F.gelu(fg.tensor(x, backend=backend), approximate="tanh").numpy(),
                 approx.astype(x.dtype))


@pytest.mark.parametrize("channels", [1, 3])
def test_prelu_learns_its_alphas(backend, channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = np.full(channels, 0.25, dtype=np.float32)
    y, (gx, gw) = check_against_numpy(F.prelu, [x, w], backend, grad_kind="reduction")
    assert gw.shape == (channels,)


def test_prelu_gradcheck(cpu_backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2))
    x[np.abs(x) < 1e-3] = 0.5
    xt = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    wt = fg.tensor(np.array([0.1, 0.2, 0.3, 0.4]), backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(F.prelu, [xt, wt])


def test_prelu_module_and_bad_weight(backend):
    m = fg.nn.PReLU(num_parameters=3, init=0.1).to(backend)
    x = fg.tensor(-np.ones((2, 3, 4), dtype=np.float32), backend=backend)
    assert np.allclose(m(x).numpy(), -0.1)
    with pytest.raises(ValueError, match="weight"):
        F.prelu(fg.tensor(np.ones((2, 4), dtype=np.float32), backend=backend),
                fg.tensor(np.ones(3, dtype=np.float32), backend=backend))


@pytest.mark.parametrize("cls, fn", [
    ("ReLU", F.relu), ("Sigmoid", F.sigmoid), ("Tanh", F.tanh), ("GELU", F.gelu), ("SiLU", F.silu),
])
def test_modules_call_their_function(backend, cls, fn):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    m = getattr(fg.nn, cls)()
    assert_close(m(fg.tensor(x, backend=backend)).numpy(), fn(fg.tensor(x, backend=backend)).numpy())


@pytest.mark.cuda
def test_cuda_launches_are_prepared_once_per_kernel_and_argument_types():
    """the cuda runtime's _launch packs arguments with a prepared struct format: the activation
    kernels get one prepared launcher, reused by later calls, and give the same values."""
    from conftest import require_backend

    be = fg.get_backend(require_backend("cuda"))
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    y = F.sigmoid(fg.tensor(x, backend="cuda")).numpy()
    keys = [k for k in be._launchers if k[:2] == ("activation", "sigmoid_forward")]
    assert len(keys) == 1 and be._launchers[keys[0]] is not None
    launcher = be._launchers[keys[0]]
    y2 = F.sigmoid(fg.tensor(x, backend="cuda")).numpy()
    assert be._launchers[keys[0]] is launcher
    assert_close(y, (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32))
    assert np.array_equal(y, y2)


@pytest.mark.parametrize("kernel", ["sigmoid_backward", "tanh_backward"])
def test_output_based_backward_kernels_reject_bad_input(backend, kernel):
    """sigmoid and tanh backward take the forward's output y: a gy of another shape is a
    ValueError naming gy, on every backend; the rust binding names y in dtype errors."""
    be = fg.get_backend(backend)
    y = be.from_numpy(np.full((2, 3), 0.5, dtype=np.float32))
    gy = be.from_numpy(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="gy"):
        getattr(be, kernel)(y, gy)
    if backend == "rust":
        import ferrograd._core as core

        with pytest.raises(TypeError, match=r"^y: expected a float32 or float64"):
            getattr(core, kernel)(np.ones(3, dtype=np.int64), np.ones(3, dtype=np.float32))
        with pytest.raises(ValueError, match=r"^gy: expected the shape of y"):
            getattr(core, kernel)(np.ones(3, dtype=np.float32), np.ones(4, dtype=np.float32))
