"""The tape autograd engine: gradient accumulation, shared subgraphs, broadcasting,
no_grad, retain_graph, and user functions through gradcheck."""

from __future__ import annotations

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.functional as F


def test_tensor_used_twice_accumulates(backend):
    x = fg.tensor(np.array([1.0, 2.0, 3.0], np.float32), backend=backend, requires_grad=True)
    y = x * x + x  # x appears three times
    y.sum().backward()
    assert np.allclose(x.grad.numpy(), 2 * np.array([1, 2, 3]) + 1)


def test_diamond_graph(backend):
    x = fg.tensor(np.array([0.5, -1.0], np.float32), backend=backend, requires_grad=True)
    a = F.sigmoid(x)
    b = F.tanh(a) * 2
    c = F.exp(a)
    (b + c).sum().backward()
    s = 1 / (1 + np.exp(-np.array([0.5, -1.0])))
    expected = (2 * (1 - np.tanh(s) ** 2) + np.exp(s)) * s * (1 - s)
    assert np.allclose(x.grad.numpy(), expected, rtol=1e-5)


def test_grads_accumulate_across_backward_calls(backend):
    x = fg.tensor(np.ones(2, np.float32), backend=backend, requires_grad=True)
    (x * 3).sum().backward()
    (x * 4).sum().backward()
    assert np.allclose(x.grad.numpy(), 7)


def test_broadcasting_gradients_reduce_to_input_shapes(backend):
    a = fg.tensor(np.ones((4, 1, 3), np.float32), backend=backend, requires_grad=True)
    b = fg.tensor(np.ones((5, 1), np.float32), backend=backend, requires_grad=True)
    c = fg.tensor(np.float32(2.0), backend=backend, requires_grad=True)
    ((a + b) * c).sum().backward()
    assert a.grad.shape == (4, 1, 3) and np.allclose(a.grad.numpy(), 10)
    assert b.grad.shape == (5, 1) and np.allclose(b.grad.numpy(), 24)
    assert c.grad.shape == () and np.allclose(c.grad.numpy(), 120)


def test_no_grad_records_nothing(backend):
    x = fg.tensor(np.ones(3, np.float32), backend=backend, requires_grad=True)
    with fg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    z = x * 2
    assert z.requires_grad


def test_second_backward_without_retain_graph_fails_clearly(backend):
    x = fg.tensor(np.ones(3, np.float32), backend=backend, requires_grad=True)
    y = F.sigmoid(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    x.grad = None
    y2 = F.sigmoid(x).sum()
    y2.backward(retain_graph=True)
    y2.backward()
    s = 1 / (1 + np.exp(-1.0))
    assert np.allclose(x.grad.numpy(), 2 * s * (1 - s))


def test_backward_of_non_scalar_needs_a_gradient(backend):
    x = fg.tensor(np.ones(3, np.float32), backend=backend, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar|grad"):
        (x * 2).backward()


def test_detach_and_leaf_flags(backend):
    x = fg.tensor(np.ones(2, np.float32), backend=backend, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    d = y.detach()
    assert not d.requires_grad and d.is_leaf


def test_gradcheck_on_a_user_function_and_catches_a_wrong_gradient():
    a = fg.tensor(np.random.default_rng(0).random((3, 4)), requires_grad=True)
    assert fg.gradcheck(lambda t: (F.silu(t) * F.tanh(t)).sum(), [a])

    class WrongSquare(fg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_arrays
            return gy * x  # should be 2 * x

    with pytest.raises(fg.autograd.GradcheckError):
        fg.gradcheck(lambda t: WrongSquare.apply(t).sum(), [a])
    assert fg.gradcheck(lambda t: WrongSquare.apply(t).sum(), [a], raise_exception=False) is False


def test_gradcheck_needs_float64():
    a = fg.tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises((TypeError, ValueError), match="float64"):
        fg.gradcheck(lambda t: t.sum(), [a])


def test_to_moves_data_and_gradients_flow_back(backend):
    x = fg.tensor(np.array([1.0, -2.0], np.float32), requires_grad=True)  # numpy
    y = F.relu(x.to(backend)) * 3
    y.sum().backward()
    assert x.grad.device == "numpy" and np.allclose(x.grad.numpy(), [3, 0])
