"""Comparisons, logic, predicates, any/all, where and masked_fill: bool tensors on every
backend, against NumPy's elementwise semantics (PyTorch's for these ops), gradients of
where/masked_fill, PyTorch's errors."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
from ferrograd.testing.strategies import broadcastable_shapes, float_arrays

from conftest import dtype_backend_ok

OPS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
       "gt": np.greater, "ge": np.greater_equal}
DUNDER = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
          "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


@pytest.mark.parametrize("op", sorted(OPS))
@given(data=st.data())
def test_comparisons_broadcast_to_bool_tensors(backend, dtype, op, data):
    dtype_backend_ok(backend, dtype)
    sa, sb, out = data.draw(broadcastable_shapes(max_dims=3, max_side=4), label="shapes")
    a = data.draw(float_arrays(sa, dtype, max_magnitude=2.0), label="a").round()
    b = data.draw(float_arrays(sb, dtype, max_magnitude=2.0), label="b").round()
    ta, tb = fg.tensor(a, backend=backend), fg.tensor(b, backend=backend)
    y = DUNDER[op](ta, tb)
    assert y.dtype == np.bool_ and y.shape == out
    np.testing.assert_array_equal(y.numpy(), OPS[op](a, b))
    np.testing.assert_array_equal(getattr(fg, op)(ta, 1.0).numpy(), OPS[op](a, 1.0))


def test_nan_compares_false_but_for_ne_and_predicates(backend):
    x = fg.tensor(np.array([np.nan, np.inf, -np.inf, 1.0], np.float32), backend=backend)
    assert (x == x).numpy().tolist() == [False, True, True, True]
    assert (x != x).numpy().tolist() == [True, False, False, False]
    assert x.isnan().numpy().tolist() == [True, False, False, False]
    assert fg.isinf(x).numpy().tolist() == [False, True, True, False]
    assert x.isfinite().numpy().tolist() == [False, False, False, True]


def test_logic_and_reductions(backend):
    a = fg.tensor(np.array([[True, False], [True, True]]), backend=backend)
    b = fg.tensor(np.array([False, True]), backend=backend)
    assert (a & b).numpy().tolist() == [[False, False], [False, True]]
    assert (a | b).numpy().tolist() == [[True, True], [True, True]]
    assert (a ^ b).numpy().tolist() == [[True, True], [True, False]]
    assert (~a).numpy().tolist() == [[False, True], [False, False]]
    assert fg.logical_not(b).numpy().tolist() == [True, False]
    assert a.all(dim=1).numpy().tolist() == [False, True] and bool(a.any())
    assert fg.all(a, dim=0, keepdim=True).shape == (1, 2) and not bool(a.all())
    assert bool(fg.tensor([2.0], backend=backend) > 1)
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(a)


def test_where_and_masked_fill_values_and_gradients(backend):
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    yv = rng.standard_normal((4,)).astype(np.float32)
    x = fg.tensor(xv, backend=backend, requires_grad=True)
    y = fg.tensor(yv, backend=backend, requires_grad=True)
    cond = x > 0
    w = fg.where(cond, x, y)
    np.testing.assert_array_equal(w.numpy(), np.where(xv > 0, xv, yv))
    w.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (xv > 0).astype(np.float32))
    np.testing.assert_array_equal(y.grad.numpy(), (xv <= 0).sum(axis=0).astype(np.float32))
    # causal masking as a GPT block writes it
    scores = fg.tensor(xv[:, :3].copy(), backend=backend, requires_grad=True)
    mask = fg.tensor(np.triu(np.ones((3, 3), bool), 1), backend=backend)
    m = scores.masked_fill(mask, float("-inf"))
    assert np.array_equal(m.numpy(), np.where(np.triu(np.ones((3, 3), bool), 1), -np.inf, xv[:, :3]))
    (m.softmax(-1) * fg.tensor(np.arange(3, dtype=np.float32), backend=backend)).sum().backward()
    assert np.all(scores.grad.numpy()[np.triu(np.ones((3, 3), bool), 1)] == 0)
    assert np.array_equal(fg.where(cond, x, 0.0).numpy(), np.where(xv > 0, xv, 0))


def test_where_gradcheck_and_jvp(cpu_backend):
    rng = np.random.default_rng(1)
    x = fg.tensor(rng.standard_normal((3, 4)), backend=cpu_backend, requires_grad=True)
    y = fg.tensor(rng.standard_normal((3, 1)), backend=cpu_backend, requires_grad=True)
    cond = fg.tensor(rng.random((3, 4)) > 0.5, backend=cpu_backend)
    assert fg.gradcheck(lambda a, b: fg.where(cond, a * a, b), [x, y])
    out, t = fg.autograd.jvp(lambda a, b: fg.where(cond, a, b), (x, y), (x, y))
    np.testing.assert_allclose(t.numpy(), np.where(cond.numpy(), x.numpy(), y.numpy()))


def test_bad_logic_arguments_raise(backend):
    x = fg.tensor(np.zeros((2, 3), np.float32), backend=backend)
    assert (x == "a") is False and (x != None) is True  # noqa: E711 - Python's fallback, as torch
    with pytest.raises(TypeError):
        x < "a"
    with pytest.raises(TypeError, match="other"):
        fg.eq(x, "a")
    with pytest.raises(ValueError, match="other"):
        x < fg.zeros(4, backend=backend)
    with pytest.raises(TypeError, match="bool"):
        x & x
    with pytest.raises(TypeError, match="condition"):
        fg.where(x, x, x)
    with pytest.raises(ValueError, match="mask"):
        x.masked_fill(fg.tensor(np.ones(4, bool), backend=backend), 0.0)
    with pytest.raises(TypeError, match="mask"):
        x.masked_fill(x, 0.0)
    with pytest.raises(TypeError, match="value"):
        x.masked_fill(x > 0, "0")
    with pytest.raises(TypeError, match="input"):
        fg.isnan(x > 0)
    with pytest.raises(TypeError, match="requires_grad"):
        fg.tensor([True], requires_grad=True)


def test_tensors_stay_hashable_and_comparable_to_none():
    a, b = fg.tensor([1.0]), fg.tensor([1.0])
    assert len({a, b}) == 2 and {a: 1}[a] == 1 and a is not None
    assert (a == None) is False  # noqa: E711 - as PyTorch


def test_logic_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    tt, ft = torch.tensor(x, requires_grad=True), fg.tensor(x, requires_grad=True)
    torch.where(tt > 0, tt * 2, tt.masked_fill(tt < -0.5, 1.0)).sum().backward()
    fg.where(ft > 0, ft * 2, ft.masked_fill(ft < -0.5, 1.0)).sum().backward()
    np.testing.assert_array_equal(ft.grad.numpy(), tt.grad.numpy())
