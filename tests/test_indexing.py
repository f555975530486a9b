"""Basic indexing, narrow/split/chunk/unbind, cat/stack and the shape ops built on
reshape/permute/expand: values and gradients on every backend against NumPy's own
semantics (NumPy's basic indexing is PyTorch's for positive steps), gradcheck on the CPU
backends, PyTorch's errors."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg

from conftest import dtype_backend_ok


@st.composite
def basic_keys(draw, shape):
    """A basic index for ``shape``: ints (negative too), slices with positive steps,
    None and at most one Ellipsis (before indices of the trailing axes, or after those of
    the leading ones)."""
    m = draw(st.integers(0, len(shape)))
    front = draw(st.booleans())  # Ellipsis first: the m indices are for the last m axes
    axes = shape[len(shape) - m:] if front else shape[:m]
    key = []
    for n in axes:
        if draw(st.booleans()):
            key.append(None)
        kind = draw(st.sampled_from(["int", "slice"] if n else ["slice"]))
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        else:
            lo = draw(st.none() | st.integers(-n - 2, n + 2))
            hi = draw(st.none() | st.integers(-n - 2, n + 2))
            key.append(slice(lo, hi, draw(st.none() | st.integers(1, 3))))
    if draw(st.booleans()) or front:
        key.insert(0, Ellipsis) if front else key.append(Ellipsis)
    if draw(st.booleans()):
        key.append(None)
    return tuple(key) if len(key) != 1 or draw(st.booleans()) else key[0]


@given(data=st.data())
def test_basic_indexing_matches_numpy_with_gradient(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    shape = data.draw(st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple), label="shape")
    key = data.draw(basic_keys(shape), label="key")
    x = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    t = fg.tensor(x, backend=backend, requires_grad=True)
    y = t[key]
    want = x[key]
    assert y.shape == np.shape(want) and y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), want)
    gy = np.random.default_rng(0).standard_normal(np.shape(want)).astype(dtype)
    y.backward(fg.tensor(gy, backend=backend))
    g = np.zeros(shape, dtype)
    g[key] = gy
    np.testing.assert_array_equal(t.grad.numpy(), g)


@given(data=st.data())
def test_cat_stack_split_chunk_match_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    ndim = data.draw(st.integers(1, 3), label="ndim")
    base = data.draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim), label="base")
    dim = data.draw(st.integers(-ndim, ndim - 1), label="dim")
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4), label="sizes")
    rng = np.random.default_rng(len(sizes))
    parts = []
    for n in sizes:
        s = list(base)
        s[dim] = n
        parts.append(rng.standard_normal(s).astype(dtype))
    ts = [fg.tensor(p, backend=backend, requires_grad=True) for p in parts]
    y = fg.cat(ts, dim)
    np.testing.assert_array_equal(y.numpy(), np.concatenate(parts, axis=dim))
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(fg.tensor(gy, backend=backend))
    for t, g in zip(ts, np.split(gy, np.cumsum(sizes)[:-1], axis=dim)):
        np.testing.assert_array_equal(t.grad.numpy(), g)
    # split back into the same sizes, and into equal chunks
    pieces = fg.split(y.detach(), sizes, dim)
    assert [p.shape[dim] for p in pieces] == sizes
    total = y.shape[dim]
    step = data.draw(st.integers(1, max(total, 1)), label="split_size")
    got = [p.numpy() for p in y.detach().split(step, dim)]
    want = np.split(y.numpy(), range(step, total, step), axis=dim) if total else [y.numpy()]
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
    k = data.draw(st.integers(1, 5), label="chunks")
    c = y.detach().chunk(k, dim)
    each = -(-total // k) if total else 1
    assert [p.shape[dim] for p in c] == ([min(each, total - i) for i in range(0, total, each)] or [0])
    same = [fg.tensor(parts[0], backend=backend)] * 3
    np.testing.assert_array_equal(fg.stack(same, dim % (ndim + 1)).numpy(),
                                  np.stack([parts[0]] * 3, axis=dim % (ndim + 1)))


def test_gradcheck_through_index_cat_and_shape_ops(cpu_backend):
    rng = np.random.default_rng(1)
    a = fg.tensor(rng.standard_normal((3, 4)), backend=cpu_backend, requires_grad=True)
    b = fg.tensor(rng.standard_normal((3, 2)), backend=cpu_backend, requires_grad=True)

    def f(a, b):
        c = fg.cat([a[:, 1::2], b * b], dim=1)  # (3, 4)
        q, k = c.chunk(2, dim=1)
        return (q.unsqueeze(0).repeat(2, 1, 1).movedim(0, -1).squeeze() * k.unsqueeze(-1)).sum(
            dim=0) + fg.stack(list(a.unbind(1)), 0).narrow(0, 1, 2).mT[:2]
    assert fg.gradcheck(f, [a, b])
    assert fg.autograd.jvp(f, (a, b), (a, b))[1].shape == f(a, b).shape


def test_shape_ops_match_numpy(backend):
    x = np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4)
    t = fg.tensor(x, backend=backend)
    assert np.array_equal(t.squeeze().numpy(), x.squeeze())
    assert t.squeeze(0).shape == (2, 1, 3, 4) and t.squeeze((1, 2)).shape == (2, 3, 4)
    assert t.unsqueeze(-1).shape == (2, 1, 3, 4, 1) and t.unsqueeze(0).shape == (1, 2, 1, 3, 4)
    assert np.array_equal(t.movedim((0, 3), (3, 0)).numpy(), np.moveaxis(x, (0, 3), (3, 0)))
    assert np.array_equal(t.unflatten(3, (2, -1)).numpy(), x.reshape(2, 1, 3, 2, 2))
    assert np.array_equal(t.repeat(1, 2, 1, 1, 2).numpy(), np.tile(x, (1, 2, 1, 1, 2)))
    assert np.array_equal(t.expand(3, -1, 4, -1, -1).numpy(), np.broadcast_to(x, (3, 2, 4, 3, 4)))
    assert np.array_equal(t.mT.numpy(), np.swapaxes(x, -1, -2))
    assert t.expand_as(fg.zeros(2, 5, 3, 4)).shape == (2, 5, 3, 4) and t.contiguous() is t


def test_indexing_errors_are_pytorchs(backend):
    t = fg.tensor(np.zeros((2, 3), np.float32), backend=backend)
    with pytest.raises(IndexError, match="out of bounds"):
        t[2]
    with pytest.raises(IndexError, match="out of bounds"):
        t[:, -4]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., ...]
    with pytest.raises(ValueError, match="step"):
        t[::-1]
    with pytest.raises(NotImplementedError, match="integer-array"):
        t[[0, 1]]
    with pytest.raises(NotImplementedError, match="integer-array"):
        t[fg.tensor([0])]
    with pytest.raises(ValueError, match="non-empty"):
        fg.cat([])
    with pytest.raises(ValueError, match="except in dimension 0"):
        fg.cat([t, fg.zeros(2, 4, backend=backend)])
    with pytest.raises(TypeError, match=r"tensors\[1\]"):
        fg.cat([t, np.zeros((2, 3))])
    with pytest.raises(ValueError, match="add up"):
        t.split([1, 1], dim=1)
    with pytest.raises(ValueError, match="chunks"):
        t.chunk(0)
    with pytest.raises(IndexError, match="narrow"):
        t.narrow(1, 2, 2)
    with pytest.raises(ValueError, match="equal size"):
        fg.stack([t, t[:1]])
    with pytest.raises(ValueError, match="sizes"):
        t.repeat(2)
    s = fg.tensor(1.0, backend=backend)  # a 0-d tensor has no dimension to work along
    for call in (lambda: s.split(1), lambda: s.chunk(2), lambda: s.narrow(0, 0, 1),
                 lambda: fg.cat([s, s]), lambda: s.unbind()):
        with pytest.raises(ValueError, match="0-d"):
            call()
    assert fg.stack([s, s]).shape == (2,)


def test_indexing_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)
    for key in [(1,), (slice(None), 2), (Ellipsis, slice(1, None, 2)), (None, 0, slice(None, 3))]:
        tt = torch.tensor(x, requires_grad=True)
        tt[key].pow(2).sum().backward()
        ft = fg.tensor(x, requires_grad=True)
        (ft[key] * ft[key]).sum().backward()
        np.testing.assert_allclose(ft.grad.numpy(), tt.grad.numpy(), rtol=1e-6)
    pieces = [p.shape for p in fg.tensor(x).chunk(3, 1)]
    assert pieces == [tuple(p.shape) for p in torch.tensor(x).chunk(3, 1)]


def test_rust_strided_kernels_refuse_views_outside_the_buffer():
    """The extension checks the view itself (the Python layer computes valid ones): a bad
    call is a ValueError, not a panic or a read past the buffer."""
    from conftest import require_backend

    require_backend("rust")
    from ferrograd import _core

    x = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="reaches element"):
        _core.gather_strided(x, [3], [4], 2)
    with pytest.raises(ValueError, match="twice"):
        _core.copy_strided(x, np.ones(4, np.float32).reshape(2, 2), [1, 1], 0)
    with pytest.raises(ValueError, match="one per dimension"):
        _core.copy_strided(x, np.ones(3, np.float32), [1, 1], 0)
