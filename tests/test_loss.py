"""MSE and cross-entropy (from logits) with every reduction: values (logits up to |x| =
100 and beyond), gradients against numpy, gradcheck, the loss modules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import check_against_numpy
from ferrograd.testing.strategies import class_targets, float_arrays, shapes, sides

from conftest import dtype_backend_ok

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_matches_numpy(backend, dtype, reduction, data):
    dtype_backend_ok(backend, dtype)
    shape = data.draw(shapes(1, 3), label="shape")
    x = data.draw(float_arrays(shape, dtype), label="x")
    t = data.draw(float_arrays(shape, dtype), label="target")
    fn = lambda a, b: F.mse_loss(a, b, reduction=reduction)  # noqa: E731
    check_against_numpy(fn, [x, t], backend, kind="reduction", scale=float(((x - t) ** 2).sum()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_cross_entropy_matches_numpy(backend, dtype, reduction, data):
    dtype_backend_ok(backend, dtype)
    n, c = data.draw(sides(7), label="n"), data.draw(sides(7), label="c")
    x = data.draw(float_arrays((n, c), dtype, max_magnitude=100.0), label="logits")
    y = data.draw(class_targets(n, c), label="target")
    fn = lambda a: F.cross_entropy(a, y, reduction=reduction)  # noqa: E731
    check_against_numpy(fn, [x], backend, kind="reduction", scale=float(np.abs(x).sum() + 1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_gradcheck(cpu_backend, reduction):
    rng = np.random.default_rng(3)
    x = fg.tensor(rng.standard_normal((4, 5)), backend=cpu_backend, requires_grad=True)
    t = fg.tensor(rng.standard_normal((4, 5)), backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, t])
    y = np.array([0, 4, 2, 2])
    assert fg.gradcheck(lambda a: F.cross_entropy(a, y, reduction=reduction), [x])


def test_cross_entropy_of_huge_logits_is_finite(backend):
    x = np.array([[1e4, -1e4], [0.0, 0.0], [-3e38, 3e38]], dtype=np.float32)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    loss = F.cross_entropy(t, np.array([1, 0, 1]), reduction="none")
    v = loss.numpy()
    assert np.all(np.isfinite(v)) and v[0] == 2e4 and abs(v[1] - np.log(2)) < 1e-6 and v[2] == 0
    loss.sum().backward()
    assert np.all(np.isfinite(t.grad.numpy()))


def test_loss_modules(backend):
    x = fg.tensor(np.array([[2.0, 0.0], [0.0, 2.0]], dtype=np.float32), backend=backend)
    ce = fg.nn.CrossEntropyLoss()(x, np.array([0, 1])).item()
    assert abs(ce - np.log(1 + np.exp(-2.0))) < 1e-6
    mse = fg.nn.MSELoss(reduction="sum")(x, fg.tensor(np.zeros((2, 2), np.float32), backend=backend)).item()
    assert mse == 8.0


def test_bad_targets(backend):
    x = fg.tensor(np.zeros((2, 3), np.float32), backend=backend)
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(x, np.array([0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.array([0, 1]), reduction="avg")
