"""ferrograd.native: the Rust tape's training step equals the Python engine (rust
backend) on random models: losses, gradients, SGD steps; unsupported modules are named;
bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.native import NativeSequential

ACTS = [nn.ReLU, lambda: nn.LeakyReLU(0.2), nn.Sigmoid, nn.Tanh, nn.GELU,
        lambda: nn.GELU(approximate="tanh"), nn.SiLU, lambda: nn.Swish(1.7)]


def random_model(draw_widths, acts, bias, dtype, seed):
    fg.manual_seed(seed)
    layers = []
    for i in range(len(draw_widths) - 1):
        layers.append(nn.Linear(draw_widths[i], draw_widths[i + 1], bias=bias[i]))
        if i < len(acts):
            layers.append(ACTS[acts[i]]())
    m = nn.Sequential(*layers)
    if dtype == np.float64:
        for p in m.parameters():
            p.data = np.require(p.data, np.float64, requirements="C")
    return m.to("rust")


@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
       acts=st.lists(st.integers(0, len(ACTS) - 1), min_size=0, max_size=4),
       bias=st.lists(st.booleans(), min_size=4, max_size=4),
       batch=st.integers(1, 7), loss=st.sampled_from(["mse", "cross_entropy"]),
       reduction=st.sampled_from(["mean", "sum"]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_native_equals_python_engine(widths, acts, bias, batch, loss, reduction, dtype, seed):
    model = random_model(widths, acts[:len(widths) - 1], bias, dtype, seed)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((batch, widths[0])).astype(dtype)
    if loss == "mse":
        target = rng.standard_normal((batch, widths[-1])).astype(dtype)
    else:
        target = rng.integers(0, widths[-1], batch)
    x = fg.tensor(xv, backend="rust")
    out = model(x)
    ref = (F.mse_loss(out, fg.tensor(target, backend="rust"), reduction=reduction) if loss == "mse"
           else F.cross_entropy(out, target, reduction=reduction))
    ref.backward()
    native = NativeSequential(model, loss, reduction)
    lv, grads = native.grads(xv, target)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lv, float(ref.numpy()), **tol)
    params = list(model.parameters())
    assert len(grads) == len(params)
    for g, p in zip(grads, params):
        assert g.dtype == p.dtype and g.shape == p.shape
        np.testing.assert_allclose(g, p.grad.numpy(), **tol)
    # an SGD step in Rust equals fg.optim.SGD on the engine's gradients
    expected = [p.numpy() - 0.1 * p.grad.numpy() for p in params]
    before = native.step(xv, target, lr=0.1)
    np.testing.assert_allclose(before, lv, rtol=1e-6)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.numpy(), e, **tol)


def test_training_reduces_the_loss():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).to("rust")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    native = NativeSequential(model, "cross_entropy")
    first = native.step(x, y, lr=0.5)
    for _ in range(100):
        last = native.step(x, y, lr=0.5)
    assert last < 0.5 * first
    # the model itself was updated: its own forward agrees with the native loss
    assert abs(float(F.cross_entropy(model(fg.tensor(x, backend="rust")), y).numpy())
               - native.grads(x, y)[0]) < 1e-5


def test_unsupported_modules_are_named():
    with pytest.raises(TypeError, match=r"model\[1\]: LayerNorm is not supported by ferrograd.native"):
        NativeSequential(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    with pytest.raises(TypeError, match="model: PReLU is not supported"):
        NativeSequential(nn.PReLU())
    with pytest.raises(TypeError, match="Dropout"):
        NativeSequential(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))


def test_bad_input():
    model = nn.Sequential(nn.Linear(3, 2)).to("rust")
    with pytest.raises(ValueError, match="loss: expected one of"):
        NativeSequential(model, loss="hinge")
    with pytest.raises(ValueError, match="reduction: expected one of"):
        NativeSequential(model, reduction="none")
    with pytest.raises(TypeError, match="model: expected an nn.Module"):
        NativeSequential(lambda x: x)
    native = NativeSequential(model, "cross_entropy")
    x = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match="target: expected integer class indices"):
        native.grads(x, np.zeros(4))
    with pytest.raises(ValueError, match="class indices in"):
        native.grads(x, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="target: expected shape"):
        native.grads(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="x: expected a 2-D"):
        native.grads(np.ones(3, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="input: expected"):
        native.grads(np.ones((4, 5), np.float32), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="lr: expected a non-negative"):
        native.step(x, np.array([0, 1, 1, 0]), lr=-1.0)
