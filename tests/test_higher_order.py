"""backward(create_graph=True): the gradients are graph tensors; second derivatives of
elementwise ops, Hessian-vector products by reverse over reverse equal forward over
reverse (fg.autograd.jvp of the gradient) and finite differences; torch oracle; ops
without a differentiable backward are named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.autograd import jvp

from conftest import require_backend


def f_mlp(x, w, b):
    h = F.tanh(x @ w + b)
    return (h * h).sum() + (F.exp(x * 0.3) / (x * x + 1.0)).mean() + (F.sigmoid(x) ** 3.0).sum()


def grad_of(f, x, *rest):
    """d f / d x as a graph tensor (create_graph)."""
    y = f(x, *rest)
    y.backward(create_graph=True)
    g = x.grad
    x.grad = None
    return g


def hvp_reverse(f, xv, vv, backend, rest):
    x = fg.tensor(xv, backend=backend, requires_grad=True)
    g = grad_of(f, x, *rest)
    assert g.requires_grad
    (g * fg.tensor(vv, backend=backend)).sum().backward()
    return x.grad.numpy()


def hvp_forward_over_reverse(f, xv, vv, backend, rest):
    x = fg.tensor(xv, backend=backend, requires_grad=True)
    _, hv = jvp(lambda t: grad_of(f, t, *rest), (x,), (fg.tensor(vv, backend=backend),))
    return hv.numpy()


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), k=st.integers(1, 5), m=st.integers(1, 4))
def test_hvp_reverse_over_reverse_equals_forward_over_reverse(cpu_backend, seed, n, k, m):
    rng = np.random.default_rng(seed)
    xv, vv = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    rest = (fg.tensor(rng.standard_normal((k, m)), backend=cpu_backend),
            fg.tensor(rng.standard_normal(m), backend=cpu_backend))
    a = hvp_reverse(f_mlp, xv, vv, cpu_backend, rest)
    b = hvp_forward_over_reverse(f_mlp, xv, vv, cpu_backend, rest)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    # and both against central differences of the first-order gradient
    h = 1e-6

    def g_at(xx):
        x = fg.tensor(xx, backend=cpu_backend, requires_grad=True)
        f_mlp(x, *rest).backward()
        return x.grad.numpy()

    fd = (g_at(xv + h * vv) - g_at(xv - h * vv)) / (2 * h)
    np.testing.assert_allclose(a, fd, rtol=1e-5, atol=1e-6)


def test_hessian_of_weights_through_matmul_and_linear(cpu_backend):
    rng = np.random.default_rng(3)
    x = fg.tensor(rng.standard_normal((5, 3)), backend=cpu_backend)
    wv, vv = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))

    def loss(w):
        return (F.swish(F.linear(x, w, None), 1.3) ** 2.0).sum() + (F.relu(w) * w).sum()

    w = fg.tensor(wv, backend=cpu_backend, requires_grad=True)
    loss(w).backward(create_graph=True)
    g, w.grad = w.grad, None
    (g * fg.tensor(vv, backend=cpu_backend)).sum().backward()
    a = w.grad.numpy()

    def g_at(ww):
        t = fg.tensor(ww, backend=cpu_backend, requires_grad=True)
        loss(t).backward()
        return t.grad.numpy()

    fd = (g_at(wv + 1e-6 * vv) - g_at(wv - 1e-6 * vv)) / 2e-6
    np.testing.assert_allclose(a, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, f, d2", [
    ("pow", lambda x: x ** 3.0, lambda x: 6 * x),
    ("exp", F.exp, np.exp),
    ("log", F.log, lambda x: -1 / x ** 2),
    ("div", lambda x: 1.0 / x, lambda x: 2 / x ** 3),
    ("sub_neg", lambda x: -(x - x * x), lambda x: 2 + 0 * x),
    ("sigmoid", F.sigmoid, lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    ("tanh", F.tanh, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.1) * x, lambda x: np.where(x > 0, 2.0, 0.2)),
    ("sqrt", F.sqrt, lambda x: -0.25 * x ** -1.5),
    ("rsqrt", F.rsqrt, lambda x: 0.75 * x ** -2.5),
    ("sin", F.sin, lambda x: -np.sin(x)),
    ("cos", F.cos, lambda x: -np.cos(x)),
    ("abs", lambda x: F.abs(x - 1.0) * x, lambda x: 2 * np.sign(x - 1.0)),
    ("clamp", lambda x: F.clamp(x * x, 0.5, 3.0), lambda x: np.where((x * x >= 0.5) & (x * x <= 3), 2.0, 0.0)),
    ("maximum", lambda x: F.maximum(x * x, x), lambda x: np.where(x * x > x, 2.0, 0.0)),
])
def test_second_derivatives_of_elementwise_ops(cpu_backend, name, f, d2):
    xv = np.array([0.4, 1.3, 2.2])
    x = fg.tensor(xv, backend=cpu_backend, requires_grad=True)
    f(x).sum().backward(create_graph=True)
    g, x.grad = x.grad, None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), d2(xv), rtol=1e-10)


def test_first_order_values_match_the_kernel_path(cpu_backend):
    rng = np.random.default_rng(6)
    av, bv = rng.random((3, 4)) + 0.5, rng.standard_normal((4,))
    out = {}
    for cg in (False, True):
        a = fg.tensor(av, backend=cpu_backend, requires_grad=True)
        b = fg.tensor(bv, backend=cpu_backend, requires_grad=True)
        y = ((a ** b) * F.log(a) - a / (b * b + 1.0) + F.transpose(a, 0, 1).reshape(12).sum()).mean(dim=0)
        y.sum().backward(create_graph=cg)
        out[cg] = (a.grad.numpy(), b.grad.numpy())
    for u, v in zip(out[False], out[True]):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_matches_torch_hvp():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    xv, vv, wv, bv = (rng.standard_normal(s) for s in [(3, 4), (3, 4), (4, 2), (2,)])

    def tf(x):
        h = torch.tanh(x @ torch.from_numpy(wv) + torch.from_numpy(bv))
        return (h * h).sum() + (torch.exp(x * 0.3) / (x * x + 1.0)).mean() + (torch.sigmoid(x) ** 3).sum()

    _, thv = torch.autograd.functional.hvp(tf, torch.from_numpy(xv), torch.from_numpy(vv))
    ours = hvp_reverse(f_mlp, xv, vv, "numpy", (fg.tensor(wv), fg.tensor(bv)))
    np.testing.assert_allclose(ours, thv.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
def test_cuda_hvp_matches_numpy():
    require_backend("cuda")
    rng = np.random.default_rng(1)
    xv, vv, wv, bv = (rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (3, 4), (4, 2), (2,)])
    res = {}
    for be in ("numpy", "cuda"):
        rest = (fg.tensor(wv, backend=be), fg.tensor(bv, backend=be))
        res[be] = (hvp_reverse(f_mlp, xv, vv, be, rest), hvp_forward_over_reverse(f_mlp, xv, vv, be, rest))
    for a, b in zip(res["cuda"], res["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_ops_without_a_differentiable_backward_are_named():
    x = fg.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(NotImplementedError, match="Softmax has no differentiable backward"):
        F.softmax(x, dim=1).sum().backward(create_graph=True)
    # the plain backward of the same graph still works
    y = fg.tensor(np.ones((2, 3)), requires_grad=True)
    F.softmax(y, dim=1).sum().backward()
    assert np.allclose(y.grad.numpy(), 0.0)


def test_create_graph_retains_the_graph_by_default():
    x = fg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x * x).sum()
    y.backward(create_graph=True)
    y.backward(create_graph=True)  # retain_graph defaulted to True
    np.testing.assert_allclose(x.grad.numpy(), 2 * 3 * x.numpy() ** 2)
    y.backward(retain_graph=False, create_graph=True)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
