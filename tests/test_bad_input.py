"""Bad input: each case raises a clear exception naming the argument, or gives the
documented result (empty tensors, NaN)."""

from __future__ import annotations

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.functional as F


def t(a, backend, **kw):
    return fg.tensor(np.asarray(a), backend=backend, **kw)


def test_matmul_shape_mismatch(backend):
    a = t(np.ones((2, 3), np.float32), backend)
    b = t(np.ones((4, 5), np.float32), backend)
    with pytest.raises(ValueError, match=r"inner dimensions|\(2, 3\)|\(4, 5\)"):
        F.matmul(a, b)


def test_linear_shape_mismatch(backend):
    layer = fg.nn.Linear(4, 2).to(backend)
    with pytest.raises(ValueError, match="in_features|weight|input"):
        layer(t(np.ones((3, 5), np.float32), backend))
    with pytest.raises(ValueError, match="bias"):
        F.linear(t(np.ones((3, 4), np.float32), backend), t(np.ones((2, 4), np.float32), backend),
                 t(np.ones(3, np.float32), backend))


def test_broadcast_mismatch(backend):
    with pytest.raises(ValueError, match="broadcast"):
        t(np.ones((2, 3), np.float32), backend) + t(np.ones((4,), np.float32), backend)


def test_wrong_dtype(backend):
    with pytest.raises(TypeError, match="dtype"):
        fg.tensor(np.array(["a", "b"]), backend=backend)
    with pytest.raises(TypeError, match="float32|float64|dtype"):
        t(np.ones(2, np.float32), backend) + t(np.ones(2, np.float64), backend)
    with pytest.raises(TypeError, match="float"):
        F.relu(fg.tensor(np.array([1, 2], np.int64), backend=backend))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend.*'tpu'"):
        fg.tensor(np.ones(2), backend="tpu")
    with pytest.raises(ValueError, match="backend"):
        fg.nn.Linear(2, 2).to("gpu")


def test_cuda_unavailable_says_why():
    try:
        fg.get_backend("cuda")
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, RuntimeError)
        assert "cuda" in str(exc).lower() and len(str(exc)) > 20
    else:
        pytest.skip("cuda is available here")


def test_mixed_backends_raise(backend):
    other = "rust" if backend == "numpy" else "numpy"
    with pytest.raises(ValueError, match="backend"):
        t(np.ones(2, np.float32), backend) + t(np.ones(2, np.float32), other)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_empty_tensors(backend, shape):
    x = t(np.ones(shape, np.float32), backend, requires_grad=True)
    y = F.gelu(x) * 2 + 1
    assert y.shape == shape
    s = y.sum()
    assert s.item() == 0.0
    s.backward()
    assert x.grad.shape == shape
    assert np.isnan(F.mean(t(np.ones(shape, np.float32), backend)).item())


def test_empty_matmul_and_linear(backend):
    a = t(np.ones((0, 3), np.float32), backend)
    b = t(np.ones((3, 2), np.float32), backend)
    assert F.matmul(a, b).shape == (0, 2)
    z = F.matmul(t(np.ones((2, 0), np.float32), backend), t(np.ones((0, 3), np.float32), backend))
    assert z.shape == (2, 3) and np.all(z.numpy() == 0)


def test_nan_inputs_propagate(backend):
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], np.float32)
    sm = F.softmax(t(x, backend), dim=-1).numpy()
    assert np.all(np.isnan(sm[0])) and np.all(np.isfinite(sm[1]))
    s = F.sum(t(x, backend), dim=1).numpy()
    assert np.isnan(s[0]) and s[1] == 3.0
    y = F.linear(t(x, backend), t(np.eye(3, dtype=np.float32), backend)).numpy()
    assert np.isnan(y[0, 0]) and np.all(np.isfinite(y[1]))


def test_bad_arguments_name_themselves(backend):
    x = t(np.ones((2, 3), np.float32), backend)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, negative_slope="a")
    with pytest.raises((ValueError, IndexError), match="dim"):
        F.softmax(x, dim=5)
    with pytest.raises(ValueError, match="shape"):
        F.reshape(x, (4, 2))


def test_backward_shape_mismatch(backend):
    x = t(np.ones(3, np.float32), backend, requires_grad=True)
    y = x * 2
    with pytest.raises((ValueError, RuntimeError), match="shape"):
        y.backward(t(np.ones(4, np.float32), backend))
