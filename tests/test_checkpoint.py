"""fg.autograd.checkpoint and fg.autograd.saved_bytes: identical gradients with and
without checkpointing (numpy, rust, cuda; torch oracle), the memory reduction on a deep
stack, dropout masks reproduced in the recomputation, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.autograd import checkpoint, saved_bytes

from conftest import require_backend


def stack(depth, width, backend, seed=0):
    fg.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers).to(backend)


def same(a, b, backend):
    """Bitwise on the CPU backends (same kernels, same order); cuda kernels may reduce
    with atomics, so there a float32 rounding difference is allowed."""
    if backend == "cuda":
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:
        assert np.array_equal(a, b)


def grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


def run(model, x, segments):
    """Loss of the model with its layers split into checkpointed segments (0: none)."""
    layers = list(model.children())
    h = x
    if segments == 0:
        h = model(h)
    else:
        per = max(1, len(layers) // segments)
        for i in range(0, len(layers), per):
            block = nn.Sequential(*layers[i:i + per])
            h = checkpoint(block, h)
    return (h * h).sum(), h


@pytest.mark.parametrize("backend_name", ["numpy", "rust", pytest.param("cuda", marks=pytest.mark.cuda)])
@given(depth=st.integers(1, 4), width=st.integers(1, 6), batch=st.integers(1, 5),
       segments=st.integers(1, 4), seed=st.integers(0, 2**16), x_grad=st.booleans())
def test_checkpoint_gives_identical_gradients(backend_name, depth, width, batch, segments, seed, x_grad):
    backend = require_backend(backend_name)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((batch, width)).astype(np.float32)
    model = stack(depth, width, backend, seed=seed)
    x = fg.tensor(xv, backend=backend, requires_grad=x_grad)
    loss, out = run(model, x, 0)
    loss.backward()
    ref_out, ref = out.numpy(), grads(model)
    ref_x = x.grad.numpy().copy() if x_grad else None
    model.zero_grad()
    x2 = fg.tensor(xv, backend=backend, requires_grad=x_grad)
    loss2, out2 = run(model, x2, segments)
    assert out2.requires_grad
    loss2.backward()
    # the same kernels in the same order: bitwise-identical results
    same(out2.numpy(), ref_out, backend)
    for a, b in zip(grads(model), ref):
        same(a, b, backend)
    if x_grad:
        same(x2.grad.numpy(), ref_x, backend)
    else:
        assert x2.grad is None


def test_saved_bytes_reduction_on_a_deep_stack(cpu_backend):
    depth, width, batch = 32, 16, 64
    model = stack(depth, width, cpu_backend)
    x = fg.tensor(np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32),
                  backend=cpu_backend, requires_grad=True)
    loss_plain, _ = run(model, x, 0)
    plain = saved_bytes(loss_plain)
    loss_ck, _ = run(model, x, 8)  # 8 segments of 4 Linear+Tanh pairs each
    ck = saved_bytes(loss_ck)
    act = batch * width * 4
    # plain: every Linear keeps its input and weight, every Tanh its output (shared with the
    # next Linear's input); the loss keeps h twice (one array)
    assert plain >= depth * act
    # checkpointed: one input per segment plus the loss's saved output
    assert ck <= 8 * act + 2 * act
    assert ck * 4 < plain
    # backward frees what was saved
    loss_ck.backward()
    assert saved_bytes(loss_ck) == 0


def test_saved_bytes_counts_distinct_arrays():
    x = fg.tensor(np.ones((4, 5), np.float64), requires_grad=True)
    y = x * x  # mul saves x twice: one array
    assert saved_bytes(y) == 4 * 5 * 8
    assert saved_bytes(x) == 0  # a leaf keeps nothing
    z = fg.tensor(np.ones(3))
    assert saved_bytes(z * 2.0) == 0  # nothing recorded
    with pytest.raises(TypeError, match="saved_bytes"):
        saved_bytes(np.ones(3))


def test_parameters_get_gradients_when_the_input_needs_none(backend):
    model = stack(2, 3, backend)
    x = fg.tensor(np.ones((2, 3), np.float32), backend=backend)
    model(x).sum().backward()
    ref = grads(model)
    model.zero_grad()
    out = checkpoint(model, x)
    assert out.requires_grad
    out.sum().backward()
    for a, b in zip(grads(model), ref):
        same(a, b, backend)


def test_nothing_recorded_without_grad(backend):
    x = fg.tensor(np.ones((2, 3), np.float32), backend=backend)
    out = checkpoint(lambda t: F.relu(t) * 2.0, x)
    assert not out.requires_grad
    with fg.no_grad():
        y = checkpoint(lambda t: t * 3.0, fg.tensor(np.ones(2), requires_grad=True))
    assert not y.requires_grad


def test_several_outputs_and_non_tensor_arguments(cpu_backend):
    rng = np.random.default_rng(3)
    av, bv = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))

    def fn(a, scale, b, *, power):
        return (a * b) * scale, (a + b) ** power

    def loss(outs):
        return (outs[0] * outs[0]).sum() + outs[1].sum()

    a = fg.tensor(av, backend=cpu_backend, requires_grad=True)
    b = fg.tensor(bv, backend=cpu_backend, requires_grad=True)
    loss(fn(a, 1.5, b, power=2)).backward()
    a2 = fg.tensor(av, backend=cpu_backend, requires_grad=True)
    b2 = fg.tensor(bv, backend=cpu_backend, requires_grad=True)
    outs = checkpoint(fn, a2, 1.5, b2, power=2)
    assert isinstance(outs, tuple) and len(outs) == 2
    loss(outs).backward()
    assert np.array_equal(a2.grad.numpy(), a.grad.numpy())
    assert np.array_equal(b2.grad.numpy(), b.grad.numpy())
    # only one output used: the other gets no gradient, no error
    a3 = fg.tensor(av, backend=cpu_backend, requires_grad=True)
    b3 = fg.tensor(bv, backend=cpu_backend)
    checkpoint(fn, a3, 1.5, b3, power=2)[1].sum().backward()
    assert np.allclose(a3.grad.numpy(), 2 * (av + bv))
    assert b3.grad is None


def test_dropout_masks_are_replayed(backend):
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((6, 8)).astype(np.float32)

    def fn(t):
        return F.dropout(F.tanh(t), p=0.5, training=True)

    fg.manual_seed(11)
    x = fg.tensor(xv, backend=backend, requires_grad=True)
    fn(x).sum().backward()
    fg.manual_seed(11)
    x2 = fg.tensor(xv, backend=backend, requires_grad=True)
    out = checkpoint(fn, x2)
    fg.manual_seed(11)
    ref_out = fn(fg.tensor(xv, backend=backend)).numpy()
    same(out.numpy(), ref_out, backend)
    # another random call between forward and backward does not change the replayed mask
    F.dropout(fg.tensor(xv, backend=backend), p=0.5, training=True)
    out.sum().backward()
    same(x2.grad.numpy(), x.grad.numpy(), backend)


def test_nested_checkpoints_and_float64_gradcheck(cpu_backend):
    rng = np.random.default_rng(7)
    x = fg.tensor(rng.standard_normal((2, 3)), backend=cpu_backend, requires_grad=True)
    w = fg.tensor(rng.standard_normal((3, 3)), backend=cpu_backend, requires_grad=True)

    def inner(t):
        return F.tanh(t @ w)

    def outer(t):
        return checkpoint(inner, checkpoint(inner, t)) * t

    assert fg.gradcheck(lambda a, b: checkpoint(outer, a), (x, w))


def test_backward_twice_needs_retain_graph():
    x = fg.tensor(np.ones(3), requires_grad=True)
    y = checkpoint(lambda t: (t * t).exp(), x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert np.allclose(x.grad.numpy(), 2 * 2 * np.e)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_matches_torch_checkpoint():
    torch = pytest.importorskip("torch")
    from torch.utils.checkpoint import checkpoint as tcheckpoint

    rng = np.random.default_rng(2)
    xv, wv = rng.standard_normal((4, 5)), rng.standard_normal((5, 5))

    def fn_t(t, w):
        return torch.nn.functional.gelu(t @ w).sigmoid()

    tx = torch.tensor(xv, requires_grad=True)
    tw = torch.tensor(wv, requires_grad=True)
    (tcheckpoint(fn_t, tx, tw, use_reentrant=False) ** 2).sum().backward()

    x = fg.tensor(xv, requires_grad=True)
    w = fg.tensor(wv, requires_grad=True)
    (checkpoint(lambda t, m: F.sigmoid(F.gelu(t @ m)), x, w) ** 2).sum().backward()
    assert np.allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_input():
    x = fg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="fn: expected a callable"):
        checkpoint(3, x)
    with pytest.raises(TypeError, match="must return a Tensor"):
        checkpoint(lambda t: 1.0, x)
    with pytest.raises(ValueError, match="keyword argument 'b'"):
        checkpoint(lambda t, b: t * b, x, b=fg.tensor(np.ones(3), requires_grad=True))
    with pytest.raises(ValueError, match="one backend"):
        checkpoint(lambda a, b: a, x, fg.tensor(np.ones(3), backend="rust"))
