"""Normalization: layer_norm, group_norm, instance_norm, batch_norm and their modules.

Values and gradients of every backend against the numpy reference (hypothesis), float64
gradcheck on numpy and rust, running statistics after several steps against a hand
computation, train vs eval, edge shapes, large means, bad arguments, buffers, and
PyTorch as an oracle when it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.testing import assert_close, check_against_numpy
from ferrograd.testing.strategies import float_arrays, sides

from conftest import dtype_backend_ok

RED = dict(kind="reduction", grad_kind="reduction")


def _spread(x: np.ndarray) -> np.ndarray:
    """x plus a small ramp so that no normalized group is constant (a constant group has
    variance 0 and rstd = 1/sqrt(eps): any rounding is then amplified 300 times)."""
    ramp = (np.arange(x.size) % 5).reshape(x.shape) * 0.5
    return (x + ramp).astype(x.dtype)


def _group_var_ok(x, axes_groups) -> bool:
    return bool(np.all(np.var(x.astype(np.float64), axis=axes_groups) > 1e-2)) if x.size else True


def _t(a, backend, **kw):
    return fg.tensor(np.asarray(a), backend=backend, **kw)


# ------------------------------------------------------------- values vs numpy
@given(data=st.data())
def test_layer_norm_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    lead = data.draw(st.lists(sides(5), min_size=0, max_size=2).map(tuple), label="lead")
    norm = data.draw(st.lists(sides(6), min_size=1, max_size=2).map(tuple), label="normalized")
    x = _spread(data.draw(float_arrays(lead + norm, dtype), label="x"))
    k = len(norm)
    assume(int(np.prod(norm)) == 1 or _group_var_ok(x.reshape(-1, int(np.prod(norm))), 1))
    affine = data.draw(st.sampled_from(["both", "weight", "bias", "none"]), label="affine")
    w = data.draw(float_arrays(norm, dtype, max_magnitude=2.0), label="w")
    b = data.draw(float_arrays(norm, dtype, max_magnitude=2.0), label="b")
    arrays = [x] + ([w] if affine in ("both", "weight") else []) + ([b] if affine in ("both", "bias") else [])

    def fn(t, *p):
        wt = p[0] if affine in ("both", "weight") else None
        bt = p[-1] if affine in ("both", "bias") else None
        return F.layer_norm(t, norm, wt, bt, eps=1e-5)

    y, _ = check_against_numpy(fn, arrays, backend, **RED)
    assert y.shape == x.shape


@given(data=st.data())
def test_group_norm_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    n, g, cg = data.draw(sides(4), label="n"), data.draw(sides(4), label="groups"), data.draw(sides(3), label="c/g")
    spatial = data.draw(st.lists(sides(5), min_size=0, max_size=2).map(tuple), label="spatial")
    shape = (n, g * cg) + spatial
    x = _spread(data.draw(float_arrays(shape, dtype), label="x"))
    assume(cg * int(np.prod(spatial)) == 1 or _group_var_ok(x.reshape(n, g, -1), 2))
    w = data.draw(float_arrays((g * cg,), dtype, max_magnitude=2.0), label="w")
    b = data.draw(float_arrays((g * cg,), dtype, max_magnitude=2.0), label="b")
    affine = data.draw(st.booleans(), label="affine")
    if affine:
        check_against_numpy(lambda t, wt, bt: F.group_norm(t, g, wt, bt), [x, w, b], backend, **RED)
    else:
        check_against_numpy(lambda t: F.group_norm(t, g), [x], backend, **RED)


@given(data=st.data())
def test_instance_norm_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    n, c = data.draw(sides(3), label="n"), data.draw(sides(4), label="c")
    h, w_ = data.draw(sides(5, min_side=2), label="h"), data.draw(sides(5), label="w")
    x = _spread(data.draw(float_arrays((n, c, h, w_), dtype), label="x"))
    assume(_group_var_ok(x.reshape(n, c, -1), 2))
    w = data.draw(float_arrays((c,), dtype, max_magnitude=2.0), label="weight")
    b = data.draw(float_arrays((c,), dtype, max_magnitude=2.0), label="bias")
    check_against_numpy(lambda t, wt, bt: F.instance_norm(t, weight=wt, bias=bt), [x, w, b],
                        backend, **RED)


@given(data=st.data())
def test_batch_norm_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    n, c = data.draw(sides(4), label="n"), data.draw(sides(4), label="c")
    spatial = data.draw(st.lists(sides(5), min_size=0, max_size=2).map(tuple), label="spatial")
    assume(n * int(np.prod(spatial)) > 1)
    shape = (n, c) + spatial
    x = _spread(data.draw(float_arrays(shape, dtype), label="x"))
    assume(_group_var_ok(np.moveaxis(x, 1, 0).reshape(c, -1), 1))
    w = data.draw(float_arrays((c,), dtype, max_magnitude=2.0), label="w")
    b = data.draw(float_arrays((c,), dtype, max_magnitude=2.0), label="b")
    training = data.draw(st.booleans(), label="training")
    rm0 = data.draw(float_arrays((c,), dtype, max_magnitude=1.0), label="running_mean")
    rv0 = data.draw(float_arrays((c,), dtype, max_magnitude=2.0, center=3.0), label="running_var")
    finals = {}

    def fn(t, wt, bt):
        rm = fg.tensor(rm0, backend=t.backend)
        rv = fg.tensor(rv0, backend=t.backend)
        y = F.batch_norm(t, rm, rv, wt, bt, training=training, momentum=0.3)
        finals[t.backend.name] = (rm.numpy().copy(), rv.numpy().copy())
        return y

    check_against_numpy(fn, [x, w, b], backend, **RED)
    for got, want in zip(finals[backend], finals["numpy"]):
        assert_close(got, want, dtype, "reduction", msg="running statistics vs numpy")
    if not training:
        assert np.array_equal(finals["numpy"][0], rm0)


# --------------------------------------------------------------- sizes that take
# the other code paths: long rows (register caches, float4 loads), odd lengths
# (scalar paths), BatchNorm1d's (N, C) layout
@pytest.mark.parametrize("case", [
    ("ln", (64, 4096)), ("ln", (8, 1000)), ("ln", (3, 20000)), ("ln", (2, 3, 96)),
    ("gn", (4, 64, 7, 7)), ("gn", (2, 32, 16, 16)), ("in", (2, 6, 9, 9)),
    ("bn", (8, 16, 12, 12)), ("bn", (5, 3, 7, 7)), ("bn", (64, 40)), ("bn_eval", (6, 8, 5, 4)),
])
def test_norm_sizes_match_numpy(backend, case):
    name, shape = case
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    c = shape[-1] if name == "ln" else shape[1]
    w = rng.standard_normal(c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rv = (rng.random(c) + 0.5).astype(np.float32)
    fns = {
        "ln": lambda t, wt, bt: F.layer_norm(t, shape[-1], wt, bt),
        "gn": lambda t, wt, bt: F.group_norm(t, 8 if shape[1] % 8 == 0 else 1, wt, bt),
        "in": lambda t, wt, bt: F.instance_norm(t, weight=wt, bias=bt),
        "bn": lambda t, wt, bt: F.batch_norm(t, None, None, wt, bt, training=True),
        "bn_eval": lambda t, wt, bt: F.batch_norm(t, fg.tensor(b, backend=t.backend),
                                                  fg.tensor(rv, backend=t.backend), wt, bt),
    }
    check_against_numpy(fns[name], [x, w, b], backend, **RED)


def test_large_means_are_stable(backend):
    """Mean 1e4, spread 1, float32: sum-of-squares formulas lose every digit here."""
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((4, 8, 6, 6))).astype(np.float32)
    x64 = x.astype(np.float64)
    for fn, axes in ((lambda t: F.layer_norm(t, (8, 6, 6)), (1, 2, 3)),
                     (lambda t: F.group_norm(t, 4), None),
                     (lambda t: F.batch_norm(t, None, None, training=True), (0, 2, 3))):
        y = fn(fg.tensor(x, backend=backend)).numpy()
        if axes is None:
            g = x64.reshape(4, 4, -1)
            ref = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-5)).reshape(x.shape)
        else:
            ref = (x64 - x64.mean(axes, keepdims=True)) / np.sqrt(x64.var(axes, keepdims=True) + 1e-5)
        # float32 inputs of 1e4 are exact to 1e-3, i.e. 1e-3 of the unit spread
        assert np.max(np.abs(y - ref)) < 5e-3, fn


# -------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("layer", ["layer_norm", "layer_norm_2d", "group_norm", "instance_norm",
                                   "batch_norm_train", "batch_norm_eval", "batch_norm_1d"])
def test_norm_gradcheck(cpu_backend, layer):
    rng = np.random.default_rng(1)
    shape = {"layer_norm": (3, 5), "layer_norm_2d": (2, 3, 4), "batch_norm_1d": (5, 3)}.get(layer, (2, 4, 3, 2))
    x = rng.standard_normal(shape) * 2 + 1
    c = shape[-1] if layer == "layer_norm" else (shape[-2:] if layer == "layer_norm_2d" else shape[1])
    w = rng.standard_normal(c) + 1
    b = rng.standard_normal(c)
    rv = fg.tensor(rng.random(shape[1]) + 0.5, backend=cpu_backend)
    rm = fg.tensor(rng.standard_normal(shape[1]), backend=cpu_backend)
    fns = {
        "layer_norm": lambda t, wt, bt: F.layer_norm(t, 5, wt, bt),
        "layer_norm_2d": lambda t, wt, bt: F.layer_norm(t, (3, 4), wt, bt),
        "group_norm": lambda t, wt, bt: F.group_norm(t, 2, wt, bt),
        "instance_norm": lambda t, wt, bt: F.instance_norm(t, weight=wt, bias=bt),
        "batch_norm_train": lambda t, wt, bt: F.batch_norm(t, None, None, wt, bt, training=True),
        "batch_norm_eval": lambda t, wt, bt: F.batch_norm(t, rm, rv, wt, bt, training=False),
        "batch_norm_1d": lambda t, wt, bt: F.batch_norm(t, None, None, wt, bt, training=True),
    }
    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (x, w, b)]
    assert fg.gradcheck(fns[layer], ts)
    # without affine parameters
    fn = fns[layer]
    assert fg.gradcheck(lambda t: fn(t, None, None), [ts[0]])


# ------------------------------------------------------------ running statistics
def test_batch_norm_running_stats_after_several_steps(backend):
    rng = np.random.default_rng(2)
    m = nn.BatchNorm2d(3, momentum=0.2).to(backend)
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(4):
        x = (rng.standard_normal((4, 3, 5, 2)) * (step + 1) + step).astype(np.float32)
        y = m(fg.tensor(x, backend=backend)).numpy()
        mean = x.astype(np.float64).mean(axis=(0, 2, 3))
        var = x.astype(np.float64).var(axis=(0, 2, 3))
        count = 4 * 5 * 2
        rm = 0.8 * rm + 0.2 * mean
        rv = 0.8 * rv + 0.2 * var * count / (count - 1)  # unbiased in the running estimate
        ref = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        assert np.max(np.abs(y - ref)) < 1e-4  # normalized with the biased variance
    sd = m.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert np.allclose(sd["running_mean"].numpy(), rm, rtol=1e-5, atol=1e-6)
    assert np.allclose(sd["running_var"].numpy(), rv, rtol=1e-5, atol=1e-6)
    assert sd["num_batches_tracked"].numpy().item() == 4
    # eval: the running statistics normalize, and nothing is updated
    m.eval()
    x = rng.standard_normal((2, 3, 5, 2)).astype(np.float32)
    y = m(fg.tensor(x, backend=backend)).numpy()
    ref = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    assert np.max(np.abs(y - ref)) < 1e-4
    assert np.allclose(m.running_mean.numpy(), rm, rtol=1e-5, atol=1e-6)
    assert m.num_batches_tracked.numpy().item() == 4


def test_batch_norm_momentum_none_is_a_cumulative_average(backend):
    rng = np.random.default_rng(5)
    m = nn.BatchNorm1d(4, momentum=None).to(backend)
    means, vars_ = [], []
    for _ in range(3):
        x = (rng.standard_normal((6, 4)) * 2 + 1).astype(np.float32)
        m(fg.tensor(x, backend=backend))
        means.append(x.astype(np.float64).mean(0))
        vars_.append(x.astype(np.float64).var(0, ddof=1))
    assert np.allclose(m.running_mean.numpy(), np.mean(means, 0), rtol=1e-5, atol=1e-6)
    assert np.allclose(m.running_var.numpy(), np.mean(vars_, 0), rtol=1e-5, atol=1e-6)


def test_batch_norm_without_running_stats_uses_batch_stats_in_eval(backend):
    m = nn.BatchNorm1d(3, affine=False, track_running_stats=False).to(backend).eval()
    assert list(m.state_dict()) == []
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    y = m(fg.tensor(x, backend=backend)).numpy()
    ref = (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-5)
    assert np.max(np.abs(y - ref)) < 1e-4


def test_batch_norm_train_vs_eval_gradients(cpu_backend):
    """In eval the statistics are constants: gx = gy * weight * rstd."""
    rng = np.random.default_rng(4)
    m = nn.BatchNorm2d(2, dtype=np.float64).to(cpu_backend)
    m.running_var.data[...] = [4.0, 0.25]
    m.eval()
    x = fg.tensor(rng.standard_normal((3, 2, 2, 2)), backend=cpu_backend, requires_grad=True)
    m(x).sum().backward()
    expected = np.broadcast_to((1 / np.sqrt(np.array([4.0, 0.25]) + 1e-5))[None, :, None, None], x.shape)
    assert np.allclose(x.grad.numpy(), expected)
    m.train()
    x.grad = None
    m(x).sum().backward()  # the sum of a batch-normalized output does not depend on x
    assert np.max(np.abs(x.grad.numpy())) < 1e-10


def test_instance_norm_module_defaults_and_running_stats(backend):
    m = nn.InstanceNorm2d(3)
    assert m.weight is None and m.running_mean is None and list(m.state_dict()) == []
    m = nn.InstanceNorm2d(3, affine=True, track_running_stats=True, momentum=0.5).to(backend)
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, 3, 4, 4)) + 2).astype(np.float32)
    y = m(fg.tensor(x, backend=backend)).numpy()
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean((2, 3), keepdims=True)) / np.sqrt(x64.var((2, 3), keepdims=True) + 1e-5)
    assert np.max(np.abs(y - ref)) < 1e-4
    rm = 0.5 * x64.mean((2, 3)).mean(0)
    rv = 0.5 + 0.5 * x64.var((2, 3), ddof=1).mean(0)
    assert np.allclose(m.running_mean.numpy(), rm, rtol=1e-5, atol=1e-5)
    assert np.allclose(m.running_var.numpy(), rv, rtol=1e-4, atol=1e-5)
    m.eval()  # eval with tracked statistics normalizes with them
    y = m(fg.tensor(x[0], backend=backend)).numpy()  # (C, H, W) input
    ref = (x64[0] - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
    assert y.shape == (3, 4, 4) and np.max(np.abs(y - ref)) < 1e-4


# ------------------------------------------------------------------- edge shapes
def test_edge_shapes(backend):
    rng = np.random.default_rng(7)
    # batch 1 with spatial extent: fine for BatchNorm2d in training
    bn = nn.BatchNorm2d(3).to(backend)
    y = bn(fg.tensor(rng.standard_normal((1, 3, 2, 2)).astype(np.float32), backend=backend))
    assert y.shape == (1, 3, 2, 2)
    # 1x1 spatial with a batch: fine
    y = bn(fg.tensor(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), backend=backend))
    assert np.allclose(y.numpy().mean(0), 0, atol=1e-5)
    # one value per channel in training: PyTorch's error; in eval it is fine
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(fg.tensor(np.ones((1, 3, 1, 1), np.float32), backend=backend))
    bn1 = nn.BatchNorm1d(3).to(backend)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn1(fg.tensor(np.ones((1, 3), np.float32), backend=backend))
    bn1.eval()
    assert bn1(fg.tensor(np.ones((1, 3), np.float32), backend=backend)).shape == (1, 3)
    # instance norm needs more than one spatial element in training
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        nn.InstanceNorm2d(3).to(backend)(fg.tensor(np.ones((2, 3, 1, 1), np.float32), backend=backend))
    # layer norm over one element gives the bias; group norm with one channel per group
    ln = nn.LayerNorm(1).to(backend)
    assert np.all(ln(fg.tensor(rng.standard_normal((4, 1)).astype(np.float32), backend=backend)).numpy() == 0)
    gn = nn.GroupNorm(4, 4).to(backend)
    y = gn(fg.tensor(rng.standard_normal((1, 4, 3)).astype(np.float32), backend=backend)).numpy()
    assert np.allclose(y.mean(-1), 0, atol=1e-5)
    # a group of one element normalizes to 0 (variance 0, as PyTorch)
    y = F.group_norm(fg.tensor(rng.standard_normal((2, 4)).astype(np.float32), backend=backend), 4)
    assert np.all(y.numpy() == 0)


def test_channels_not_divisible_by_groups_raise(backend):
    with pytest.raises(ValueError, match="num_groups.*divisor.*6"):
        nn.GroupNorm(4, 6)
    x = fg.tensor(np.ones((2, 6, 3), np.float32), backend=backend)
    with pytest.raises(ValueError, match="num_groups.*divisor"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups"):
        F.group_norm(x, 0)


# ----------------------------------------------------------------- bad arguments
def test_bad_arguments_raise_clear_errors(backend):
    x = fg.tensor(np.ones((2, 3, 4, 4), np.float32), backend=backend)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(x, (5,))
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(x, ())
    with pytest.raises(ValueError, match="weight.*shape"):
        F.layer_norm(x, (4,), weight=fg.tensor(np.ones(3, np.float32), backend=backend))
    if backend != "cuda":  # the cuda backend refuses float64 already when the tensor is made
        with pytest.raises(TypeError, match="weight.*dtype"):
            F.layer_norm(x, (4,), weight=fg.tensor(np.ones(4, np.float64), backend=backend))
    with pytest.raises(ValueError, match="eps"):
        F.layer_norm(x, (4,), eps=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        F.batch_norm(x, None, None, training=True, momentum=1.5)
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="running_mean.*shape"):
        F.batch_norm(x, fg.tensor(np.zeros(4, np.float32), backend=backend),
                     fg.tensor(np.ones(4, np.float32), backend=backend), training=True)
    with pytest.raises(ValueError, match="4D input"):
        nn.BatchNorm2d(3).to(backend)(fg.tensor(np.ones((2, 3, 4), np.float32), backend=backend))
    with pytest.raises(ValueError, match="2D or 3D"):
        nn.BatchNorm1d(3).to(backend)(x)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(5).to(backend)(x)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=-0.1)
    with pytest.raises(ValueError, match="input"):
        F.group_norm(fg.tensor(np.ones(3, np.float32), backend=backend), 1)
    with pytest.raises(TypeError, match="float"):
        F.layer_norm(fg.tensor(np.ones((2, 3), np.int64), backend=backend), 3)


def test_kernels_validate_their_arguments(backend):
    """The contract's kernels are callable directly and check their inputs too."""
    be = fg.get_backend(backend)
    x = be.from_numpy(np.ones((2, 6, 3), np.float32))
    with pytest.raises(ValueError, match="num_groups"):
        be.group_norm_forward(x, None, None, 4, 1e-5)
    with pytest.raises(ValueError, match="normalized_ndim"):
        be.layer_norm_forward(x, None, None, 4, 1e-5)
    with pytest.raises(ValueError, match="weight"):
        be.batch_norm_forward(x, be.from_numpy(np.ones(5, np.float32)), None, None, None, True, 0.1, 1e-5)


# ------------------------------------------------------------- buffers, modules
def test_buffers_move_with_to_and_round_trip_state_dict(backend):
    m = nn.Sequential(nn.BatchNorm1d(4), nn.LayerNorm(4))
    m.to(backend)
    assert [n for n, _ in m.named_buffers()] == ["0.running_mean", "0.running_var", "0.num_batches_tracked"]
    assert all(b.device == backend for b in m.buffers())
    x = fg.tensor(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), backend=backend)
    m(x)
    sd = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    assert list(sd) == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                        "0.num_batches_tracked", "1.weight", "1.bias"]
    m2 = nn.Sequential(nn.BatchNorm1d(4), nn.LayerNorm(4)).to(backend)
    m2.load_state_dict(sd)
    m2(x)  # updating m2's buffers in place must not touch the dict it was loaded from
    assert np.array_equal(sd["0.running_mean"], m.state_dict()["0.running_mean"].numpy())
    assert m2[0].num_batches_tracked.numpy().item() == 2
    m.eval()
    m2.load_state_dict(sd)
    m2.eval()
    assert np.array_equal(m(x).numpy(), m2(x).numpy())


def test_register_buffer():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("a", fg.zeros(2))
            self.register_buffer("tmp", fg.ones(1), persistent=False)
            self.register_buffer("none", None)

    m = M()
    assert list(m.state_dict()) == ["a"]
    assert sorted(n for n, _ in m.named_buffers()) == ["a", "tmp"]
    m.a = fg.ones(2)  # re-assigning keeps it a buffer
    assert np.array_equal(m.state_dict()["a"].numpy(), [1, 1])
    with pytest.raises(KeyError, match="name"):
        m.register_buffer("x.y", fg.zeros(1))
    with pytest.raises(TypeError, match="tensor"):
        m.register_buffer("b", np.zeros(2))
    m.p = nn.Parameter(fg.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("p", fg.zeros(1))


def test_modules_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    pairs = [
        (nn.BatchNorm2d(4, momentum=0.3), torch.nn.BatchNorm2d(4, momentum=0.3), (3, 4, 5, 5)),
        (nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), (6, 4, 3)),
        (nn.LayerNorm((5, 5)), torch.nn.LayerNorm((5, 5)), (3, 4, 5, 5)),
        (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), (3, 4, 5, 5)),
        (nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
         torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True), (3, 4, 5, 5)),
    ]
    for m, tm, shape in pairs:
        for p in tm.parameters():
            with torch.no_grad():
                p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
        m.load_state_dict(tm.state_dict())
        for _ in range(3):
            x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
            tx = torch.from_numpy(x).requires_grad_(True)
            fx = fg.tensor(x, requires_grad=True)
            g = rng.standard_normal(shape).astype(np.float32)
            ty = tm(tx)
            ty.backward(torch.from_numpy(g))
            fy = m(fx)
            fy.backward(fg.tensor(g))
            assert np.allclose(fy.numpy(), ty.detach().numpy(), atol=1e-4), type(m).__name__
            assert np.allclose(fx.grad.numpy(), tx.grad.numpy(), atol=1e-4), type(m).__name__
        for k, v in tm.state_dict().items():
            assert np.allclose(m.state_dict()[k].numpy(), v.numpy(), atol=1e-5), (type(m).__name__, k)
        m.eval()
        tm.eval()
        x = rng.standard_normal(shape).astype(np.float32)
        assert np.allclose(m(fg.tensor(x)).numpy(), tm(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
