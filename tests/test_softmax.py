"""softmax and log_softmax (last axis or any dim): values up to |x| = 100 and beyond,
gradients against numpy, gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.testing import check_against_numpy
from ferrograd.testing.strategies import float_arrays, shapes

from conftest import dtype_backend_ok


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_matches_numpy(backend, dtype, name, data):
    dtype_backend_ok(backend, dtype)
    shape = data.draw(shapes(1, 4), label="shape")
    x = data.draw(float_arrays(shape, dtype, max_magnitude=100.0), label="x")
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    fn = lambda t: getattr(F, name)(t, dim=dim)  # noqa: E731
    y, _ = check_against_numpy(fn, [x], backend, kind="reduction", grad_kind="reduction")
    if name == "softmax":
        assert np.allclose(y.sum(axis=dim), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_gradcheck(cpu_backend, name, data):
    x = data.draw(float_arrays(shapes(1, 3, max_side=4), np.float64, max_magnitude=5.0), label="x")
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda a: getattr(F, name)(a, dim=-1), [t])


def test_softmax_of_huge_logits_is_finite(backend):
    x = np.array([[1e30, 0.0, -1e30], [88.0, 89.0, 90.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    y = F.softmax(fg.tensor(x, backend=backend), dim=-1).numpy()
    assert np.all(np.isfinite(y))
    assert np.allclose(y[0], [1, 0, 0]) and np.allclose(y[2], 1 / 3)
    ly = F.log_softmax(fg.tensor(x, backend=backend), dim=-1).numpy()
    assert ly[0, 0] == 0.0 and ly[0, 2] == -np.float32(2e30)
