"""Dropout, DropConnect, DropBlock2d and the Philox stream behind their masks.

Philox4x32-10 against Random123's known answers on every backend; the same seed gives the
same mask, bit for bit, on numpy, rust and cuda; masks do not depend on the tensor's size
(element i reads counter i // 4); mask statistics within a binomial bound; gradients
against numpy and float64 gradcheck; train vs eval; bad arguments."""

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

# Random123 kat_vectors, philox4x32_10: (ctr, key, expected)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr, key, expected", KAT)
def test_philox_known_answers(backend, ctr, key, expected):
    # ctr = (lo32(block), hi32(block), lo32(offset), hi32(offset)); key = (lo32(seed), hi32(seed))
    be = fg.get_backend(backend)
    block = ctr[0] | ctr[1] << 32
    offset = ctr[2] | ctr[3] << 32
    seed = key[0] | key[1] << 32
    words = be.to_numpy(be.philox_words(seed, offset, block, 3))
    assert words.dtype == np.uint32 and words.shape == (3, 4)
    assert tuple(int(w) for w in words[0]) == expected
    # the next blocks are the next counters (block index + 1, wrapping mod 2^64)
    nxt = fg.get_backend("numpy").philox_words(seed, offset, (block + 1) % 2**64, 2)
    assert np.array_equal(words[1:], nxt)


def _dropped(backend, x, p, seed, grad=False):
    """dropout(x, p) on ``backend`` right after fg.manual_seed(seed): (y, x.grad or None)."""
    fg.manual_seed(seed)
    t = fg.tensor(x, backend=backend, requires_grad=grad)
    y = F.dropout(t, p)
    if grad:
        y.backward(fg.tensor(np.full(x.shape, 3.0, x.dtype), backend=backend))
        return y.numpy(), t.grad.numpy()
    return y.numpy(), None


@given(shape=shapes(0, 4, max_side=9), p=st.sampled_from([0.0, 0.1, 0.5, 0.77, 0.999, 1.0]),
       seed=st.integers(0, 2**64 - 1), data=st.data())
def test_same_seed_same_mask_on_every_backend(backend, dtype, shape, p, seed, data):
    dtype_backend_ok(backend, dtype)
    x = data.draw(float_arrays(shape, dtype, max_magnitude=10.0), label="x")
    y, g = _dropped(backend, x, p, seed, grad=True)
    y0, g0 = _dropped("numpy", x, p, seed, grad=True)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(y, y0), "masks differ from numpy's for the same seed"
    assert np.array_equal(g, g0)


def test_masks_do_not_depend_on_size_or_threads(backend):
    # element i reads counter i // 4 whatever the tensor's size, chunking or launch
    big, _ = _dropped(backend, np.ones(3 * (1 << 15) + 7, np.float32), 0.5, 11)
    for n in (1, 5, (1 << 15) + 3):
        small, _ = _dropped(backend, np.ones(n, np.float32), 0.5, 11)
        assert np.array_equal(small, big[:n])
    # a 2-D tensor reads the stream in C order
    two_d, _ = _dropped(backend, np.ones((37, 41), np.float32), 0.5, 11)
    assert np.array_equal(two_d.ravel(), big[:37 * 41])


def test_manual_seed_resets_and_calls_advance(backend):
    x = fg.tensor(np.ones(1000, np.float32), backend=backend)
    fg.manual_seed(5)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    assert not np.array_equal(a, b), "two calls must take two offsets"
    fg.manual_seed(5)
    assert np.array_equal(F.dropout(x, 0.5).numpy(), a)
    assert np.array_equal(F.dropout(x, 0.5).numpy(), b)
    fg.manual_seed(6)
    assert not np.array_equal(F.dropout(x, 0.5).numpy(), a)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_statistics(backend, p):
    n = 1 << 18
    y, _ = _dropped(backend, np.ones(n, np.float32), p, 1234)
    scale = np.float32(1 / (1 - p))
    assert np.all((y == 0) | (y == scale))
    kept = np.count_nonzero(y) / n
    bound = 5 * math.sqrt(p * (1 - p) / n)  # five binomial standard deviations
    assert abs(kept - (1 - p)) < bound, f"kept fraction {kept}, expected {1 - p} +- {bound}"
    # the mean of the output is the mean of the input (inverted dropout)
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)


def test_p_zero_one_eval_and_nan(backend):
    x = fg.tensor(np.array([1.0, -2.0, np.nan, 4.0], np.float32), backend=backend, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    y = F.dropout(x, 1.0)
    v = y.numpy()
    assert np.array_equal(v[[0, 1, 3]], [0, 0, 0]) and np.isnan(v[2])  # 0 * NaN, as in PyTorch
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), np.zeros(4, np.float32))
    m = fg.nn.Dropout(0.5)
    m.eval()
    assert m(x) is x
    m.train()
    assert m(fg.tensor(np.ones(64, np.float32), backend=backend)).numpy().min() == 0.0


@given(shape=shapes(1, 3, max_side=6), p=st.sampled_from([0.2, 0.5]), seed=st.integers(0, 2**32))
def test_dropout_gradcheck(cpu_backend, shape, p, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)

    def fn(a):
        fg.manual_seed(seed)  # every evaluation draws the same mask
        return F.dropout(a, p)

    assert fg.gradcheck(fn, [t])


def test_dropout_matches_numpy_with_gradients(backend):
    x = np.random.default_rng(0).standard_normal((7, 9, 5)).astype(np.float32)

    def fn(t):
        fg.manual_seed(42)
        return F.dropout(t, 0.3)

    check_against_numpy(fn, [x], backend)


# ------------------------------------------------------------------ DropConnect
def test_dropconnect_train_and_eval(backend):
    fg.manual_seed(0)
    layer = fg.nn.DropConnect(6, 4, p=0.5).to(backend)
    x = fg.tensor(np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32), backend=backend,
                  requires_grad=True)
    w, b = layer.weight.numpy().copy(), layer.bias.numpy().copy()
    fg.manual_seed(9)
    y = layer(x)
    fg.manual_seed(9)  # the mask the layer drew: dropout of ones with the same offset
    m = F.dropout(fg.tensor(np.ones_like(w), backend=backend), 0.5).numpy()
    assert set(np.unique(m)) <= {0.0, 2.0}
    assert_close(y.numpy(), x.numpy() @ (w * m).T + b, kind="reduction")
    y.sum().backward()
    # dropped weights get no gradient
    assert np.all(layer.weight.grad.numpy()[m == 0] == 0)
    layer.eval()
    assert_close(layer(x).numpy(), x.numpy() @ w.T + b, kind="reduction")
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]


def test_dropconnect_gradcheck(cpu_backend):
    rng = np.random.default_rng(3)
    x = fg.tensor(rng.standard_normal((4, 5)), backend=cpu_backend, requires_grad=True)
    w = fg.tensor(rng.standard_normal((3, 5)), backend=cpu_backend, requires_grad=True)
    b = fg.tensor(rng.standard_normal(3), backend=cpu_backend, requires_grad=True)

    def fn(x_, w_, b_):
        fg.manual_seed(8)  # DropConnect's forward: linear with dropped weights
        return F.linear(x_, F.dropout(w_, 0.4), b_)

    assert fg.gradcheck(fn, [x, w, b])


def test_dropconnect_same_on_every_backend(backend):
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)

    def run(be):
        fg.manual_seed(3)
        layer = fg.nn.DropConnect(8, 3, p=0.4).to(be)
        return layer(fg.tensor(x, backend=be)).numpy()

    assert_close(run(backend), run("numpy"), kind="reduction")


# ------------------------------------------------------------------ DropBlock
def _dropblock(backend, x, p, b, seed, grad=False):
    fg.manual_seed(seed)
    t = fg.tensor(x, backend=backend, requires_grad=grad)
    y = F.dropblock2d(t, p, b)
    if grad:
        y.sum().backward()
        return y.numpy(), t.grad.numpy()
    return y.numpy(), None


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
       b=st.integers(1, 5), p=st.sampled_from([0.05, 0.2, 0.6, 1.0]), seed=st.integers(0, 2**32))
def test_dropblock_same_mask_on_every_backend(backend, shape, b, p, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    y, g = _dropblock(backend, x, p, b, seed, grad=True)
    y0, g0 = _dropblock("numpy", x, p, b, seed, grad=True)
    assert np.array_equal(y, y0) and np.array_equal(g, g0)


def test_dropblock_drops_whole_blocks_and_rescales(backend):
    b = 3
    x = np.ones((2, 4, 16, 16), np.float32)
    y, _ = _dropblock(backend, x, 0.3, b, 77)
    dropped = y == 0
    assert 0 < dropped.mean() < 1
    # every dropped element lies in a fully dropped b x b block
    n, c, h, w = x.shape
    covered = np.zeros_like(dropped)
    for i in range(h - b + 1):
        for j in range(w - b + 1):
            full = dropped[:, :, i:i + b, j:j + b].all(axis=(2, 3))
            covered[:, :, i:i + b, j:j + b] |= full[:, :, None, None]
    assert np.array_equal(covered, dropped)
    kept = np.count_nonzero(y)
    assert np.allclose(y[~dropped], x.size / kept) and abs(y.sum() - x.size) < 1e-2 * x.size


def test_dropblock_gradcheck_eval_and_errors(cpu_backend):
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6))
    t = fg.tensor(x, backend=cpu_backend, requires_grad=True)

    def fn(a):
        fg.manual_seed(1)
        return F.dropblock2d(a, 0.3, 3)

    assert fg.gradcheck(fn, [t])
    m = fg.nn.DropBlock2d(0.3, 3)
    m.eval()
    assert m(t) is t
    assert F.dropblock2d(t, 0.0, 3) is t
    y = F.dropblock2d(t, 0.5, 20)  # block_size larger than the input: min(b, H, W)
    assert y.shape == t.shape
    with pytest.raises(ValueError, match="4-D"):
        F.dropblock2d(fg.tensor(np.ones((2, 3, 4)), backend=cpu_backend), 0.1, 2)
    with pytest.raises(ValueError, match="block_size"):
        F.dropblock2d(t, 0.1, 0)
    with pytest.raises(ValueError, match="block_size"):
        fg.get_backend(cpu_backend).dropblock_mask((1, 1, 3, 3), np.float32, 0.1, 4, 0, 0)


# ------------------------------------------------------------------ bad input
def test_bad_arguments(backend):
    x = fg.tensor(np.ones(4, np.float32), backend=backend)
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p: expected a probability in \\[0, 1\\]"):
            F.dropout(x, p)
        with pytest.raises(ValueError, match="p"):
            fg.nn.Dropout(p)
    with pytest.raises(TypeError, match="p"):
        F.dropout(x, "0.5")
    with pytest.raises(TypeError, match="float"):
        F.dropout(fg.tensor(np.ones(3, np.int64), backend=backend), 0.5)
    be = fg.get_backend(backend)
    with pytest.raises(ValueError, match="p"):
        be.dropout_forward(be.from_numpy(np.ones(3, np.float32)), 2.0, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        be.dropout_forward(be.from_numpy(np.ones(3, np.float32)), 0.5, -1, 0)
    with pytest.raises(ValueError, match="seed"):
        fg.manual_seed(-3)


@pytest.mark.parametrize("shape", [(), (0,), (0, 3)])
def test_empty_and_zero_d(backend, shape):
    x = fg.tensor(np.full(shape, 2.0, np.float32), backend=backend, requires_grad=True)
    fg.manual_seed(0)
    y = F.dropout(x, 0.5)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape
    if shape == ():
        assert y.item() in (0.0, 4.0)
