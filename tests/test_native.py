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


def _assert_native_matches_engine(native, model, xv, target, ref, tol):
    """The native loss and parameter gradients equal the Python engine's (``ref`` is the
    engine's loss, already backpropagated into the model); returns the native loss."""
    lv, grads = native.grads(xv, target)
    np.testing.assert_allclose(lv, float(ref.numpy()), **tol)
    params = list(model.parameters())
    assert len(grads) == len(params)
    for g, p in zip(grads, params):
        assert g.dtype == p.dtype and g.shape == p.shape
        np.testing.assert_allclose(g, p.grad.numpy(), **tol)
    return lv


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
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    lv = _assert_native_matches_engine(native, model, xv, target, ref, tol)
    params = list(model.parameters())
    # an SGD step in Rust equals fg.optim.SGD on the engine's gradients
    expected = [p.numpy() - 0.1 * p.grad.numpy() for p in params]
    before = native.step(xv, target, lr=0.1)
    np.testing.assert_allclose(before, lv, rtol=1e-6)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.numpy(), e, **tol)


def random_cnn(draw, dtype, seed):
    """conv (+ act) (+ pool) blocks, then Flatten and Linear; returns (model, input shape)."""
    fg.manual_seed(seed)
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(4, 9)), draw(st.integers(4, 9))
    layers, shape = [], (c, h, w)
    for _ in range(draw(st.integers(1, 2))):
        groups = draw(st.sampled_from([g for g in (1, 2) if shape[0] % g == 0]))
        out = groups * draw(st.integers(1, 3))
        k = draw(st.integers(1, 3))
        pad = draw(st.integers(0, k // 2))
        stride, dil = draw(st.integers(1, 2)), draw(st.integers(1, 2 if k > 1 else 1))
        ek = dil * (k - 1) + 1
        if ek > min(shape[1:]) + 2 * pad:
            break
        layers.append(nn.Conv2d(shape[0], out, k, stride=stride, padding=pad, dilation=dil,
                                groups=groups, bias=draw(st.booleans())))
        oh = (shape[1] + 2 * pad - ek) // stride + 1
        ow = (shape[2] + 2 * pad - ek) // stride + 1
        shape = (out, oh, ow)
        act = draw(st.integers(-1, len(ACTS) - 1))
        if act >= 0:
            layers.append(ACTS[act]())
        pool = draw(st.sampled_from(["none", "max", "avg"]))
        if pool != "none" and min(shape[1:]) >= 2:
            ceil = draw(st.booleans())
            pk = draw(st.integers(1, 2))
            pp = draw(st.integers(0, pk // 2))
            if pool == "max":
                m = nn.MaxPool2d(pk, stride=draw(st.integers(1, 2)), padding=pp, ceil_mode=ceil)
            else:
                m = nn.AvgPool2d(pk, stride=draw(st.integers(1, 2)), padding=pp, ceil_mode=ceil,
                                 count_include_pad=draw(st.booleans()),
                                 divisor_override=draw(st.sampled_from([None, 3])))
            layers.append(m)
            probe = fg.tensor(np.zeros((1,) + shape, np.float32), backend="rust")
            shape = tuple(m(probe).shape[1:])
    layers.append(nn.Flatten())
    feats = int(np.prod(shape))
    layers.append(nn.Linear(feats, draw(st.integers(1, 4)), bias=draw(st.booleans())))
    model = nn.Sequential(*layers)
    if dtype == np.float64:
        for p in model.parameters():
            p.data = np.require(p.data, np.float64, requirements="C")
    return model.to("rust"), (n, c, h, w)


@given(data=st.data(), loss=st.sampled_from(["mse", "cross_entropy"]),
       reduction=st.sampled_from(["mean", "sum"]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_native_cnn_equals_python_engine(data, loss, reduction, dtype, seed):
    model, xshape = random_cnn(data.draw, dtype, seed)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal(xshape).astype(dtype)
    out = model(fg.tensor(xv, backend="rust"))
    if loss == "mse":
        target = rng.standard_normal(out.shape).astype(dtype)
        ref = F.mse_loss(out, fg.tensor(target, backend="rust"), reduction=reduction)
    else:
        target = rng.integers(0, out.shape[1], xshape[0])
        ref = F.cross_entropy(out, target, reduction=reduction)
    ref.backward()
    native = NativeSequential(model, loss, reduction)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    _assert_native_matches_engine(native, model, xv, target, ref, tol)
    params = list(model.parameters())
    expected = [p.numpy() - 0.05 * p.grad.numpy() for p in params]
    native.step(xv, target, lr=0.05)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.numpy(), e, **tol)


# ------------------------------------------------------------ norms, dropout, recurrent
def _to_dtype(model, dtype):
    """Parameters and float buffers in ``dtype`` (float64 for the tight comparisons)."""
    if dtype == np.float64:
        for p in model.parameters():
            p.data = np.require(p.data, np.float64, requirements="C")
        for m in model.modules():
            for name in ("running_mean", "running_var"):
                t = getattr(m, name, None)
                if t is not None:
                    t.data = np.require(t.data, np.float64, requirements="C")
    return model


def _buffers(model):
    return [b.numpy().copy() for b in model.buffers()]


def _engine_forward(model, x):
    """The model's forward on the Python engine under NativeSequential's rule: a layer
    that returns a tuple (LSTM, GRU) passes on its first element (the output)."""
    for m in model.children():
        x = m(x)
        if isinstance(x, tuple):
            x = x[0]
    return x


def _compare_with_engine(model, xv, target, loss, reduction, dtype):
    """The Python engine's loss, gradients, running statistics and random-stream position
    after one forward/backward, against NativeSequential's from the same starting state."""
    bufs0, stream0 = _buffers(model), fg.get_rng_state()
    out = _engine_forward(model, fg.tensor(xv, backend="rust"))
    ref = (F.mse_loss(out, fg.tensor(target, backend="rust"), reduction=reduction) if loss == "mse"
           else F.cross_entropy(out, target, reduction=reduction))
    ref.backward()
    bufs1, stream1 = _buffers(model), fg.get_rng_state()
    for b, v in zip(model.buffers(), bufs0):  # back to the starting state
        b.data = np.ascontiguousarray(v)
    fg.set_rng_state(stream0)
    native = NativeSequential(model, loss, reduction)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    _assert_native_matches_engine(native, model, xv, target, ref, tol)
    for b, v in zip(_buffers(model), bufs1):
        np.testing.assert_allclose(b, v, **tol)
    assert fg.get_rng_state() == stream1
    return native


NORMS = ["bn1d", "bn1d_3d", "bn2d", "ln", "ln_2dims", "gn", "in2d"]


def random_norm_model(draw, kind, dtype, seed):
    """A small model around one normalization layer (with dropout and an activation
    drawn too); returns (model, input shape)."""
    fg.manual_seed(seed)
    n, c = draw(st.integers(2, 4)), draw(st.sampled_from([2, 4]))
    affine = draw(st.booleans())
    track = draw(st.booleans())
    momentum = draw(st.sampled_from([0.1, 0.5, None]))
    if kind in ("bn1d", "ln"):
        shape = (n, 3)
        first = [nn.Linear(3, c)]
        norm = (nn.BatchNorm1d(c, affine=affine, track_running_stats=track, momentum=momentum)
                if kind == "bn1d" else nn.LayerNorm(c, elementwise_affine=affine,
                                                    bias=draw(st.booleans())))
        tail = [nn.Linear(c, 3)]
    elif kind in ("bn1d_3d", "ln_2dims"):
        shape = (n, c, 3)
        first = []
        norm = (nn.BatchNorm1d(c, affine=affine, track_running_stats=track, momentum=momentum)
                if kind == "bn1d_3d" else nn.LayerNorm((c, 3), elementwise_affine=affine))
        tail = [nn.Linear(3, 2), nn.Flatten(), nn.Linear(2 * c, 3)]
    else:
        shape = (n, 2, 4, 3)
        first = [nn.Conv2d(2, c, 3, padding=1)]
        norm = {"bn2d": lambda: nn.BatchNorm2d(c, affine=affine, track_running_stats=track,
                                               momentum=momentum),
                "gn": lambda: nn.GroupNorm(draw(st.sampled_from([1, 2])), c, affine=affine),
                "in2d": lambda: nn.InstanceNorm2d(c, affine=affine, track_running_stats=track,
                                                  momentum=momentum if momentum else 0.1)}[kind]()
        tail = [nn.Flatten(), nn.Linear(c * 12, 3)]
    act = ACTS[draw(st.integers(0, len(ACTS) - 1))]()
    middle = [norm, act]
    if draw(st.booleans()):
        middle.append(nn.Dropout(draw(st.sampled_from([0.0, 0.3, 1.0]))))
    model = nn.Sequential(*first, *middle, *tail)
    return _to_dtype(model, dtype).to("rust"), shape


@given(data=st.data(), kind=st.sampled_from(NORMS), train=st.booleans(),
       loss=st.sampled_from(["mse", "cross_entropy"]), reduction=st.sampled_from(["mean", "sum"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_native_norm_and_dropout_equal_python_engine(data, kind, train, loss, reduction, dtype,
                                                      seed):
    model, xshape = random_norm_model(data.draw, kind, dtype, seed)
    model.train(train)
    rng = np.random.default_rng(seed)
    xv = (rng.standard_normal(xshape) * 2 + 0.5).astype(dtype)
    target = (rng.standard_normal((xshape[0], 3)).astype(dtype) if loss == "mse"
              else rng.integers(0, 3, xshape[0]))
    _compare_with_engine(model, xv, target, loss, reduction, dtype)


def test_running_statistics_follow_the_engine_over_steps():
    """Three SGD steps in train mode, then eval: the native runner and the Python engine
    (with fg.optim.SGD) keep the same parameters, running statistics and counters."""
    def make():
        fg.manual_seed(3)
        return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=None), nn.ReLU(),
                             nn.Dropout(0.25), nn.Flatten(), nn.Linear(3 * 4 * 4, 2),
                             nn.BatchNorm1d(2)).to("rust")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 1, 6, 6)).astype(np.float32) for _ in range(3)]
    ys = [rng.integers(0, 2, 5) for _ in range(3)]
    engine, native_model = make(), make()
    opt = fg.optim.SGD(engine.parameters(), lr=0.1)
    native = NativeSequential(native_model, "cross_entropy")
    fg.manual_seed(11)
    for x, y in zip(xs, ys):
        opt.zero_grad()
        F.cross_entropy(engine(fg.tensor(x, backend="rust")), y).backward()
        opt.step()
    fg.manual_seed(11)
    for x, y in zip(xs, ys):
        native.step(x, y, lr=0.1)
    for a, b in zip(list(engine.parameters()) + list(engine.buffers()),
                    list(native_model.parameters()) + list(native_model.buffers())):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
    assert int(native_model[1].num_batches_tracked.numpy()) == 3
    engine.eval()
    native_model.eval()
    ref = float(F.cross_entropy(engine(fg.tensor(xs[0], backend="rust")), ys[0]).numpy())
    assert abs(native.grads(xs[0], ys[0])[0] - ref) < 1e-5


def test_dropout_mask_and_gradient():
    """In training the gradient through Dropout is the forward's mask times 1 / (1 - p);
    about p of the elements drop; eval is the identity."""
    fg.manual_seed(0)
    lin = nn.Linear(200, 300).to("rust")
    model = nn.Sequential(lin, nn.Dropout(0.4))
    native = NativeSequential(model, "mse", "sum")
    x = np.random.default_rng(0).standard_normal((1, 200)).astype(np.float64)
    for p in model.parameters():
        p.data = np.require(p.data, np.float64, requirements="C")
    target = np.zeros((1, 300))
    _, (gw, gb) = native.grads(x, target)
    y = lin(fg.tensor(x, backend="rust")).numpy()[0]
    m2 = gb / (2 * y)  # d/db sum((m y)^2) = 2 m^2 y, m = 0 (dropped) or 1 / (1 - p) (kept)
    kept = m2 != 0
    np.testing.assert_allclose(m2[kept], (1 / 0.6) ** 2, rtol=1e-9)
    assert abs((~kept).mean() - 0.4) < 0.1
    np.testing.assert_allclose(gw, np.outer(gb, x[0]), rtol=1e-9, atol=1e-12)
    model.eval()
    _, (gw, gb) = native.grads(x, target)
    np.testing.assert_allclose(gb, 2 * y, rtol=1e-9)


RNNS = [nn.LSTM, nn.GRU]


@given(data=st.data(), train=st.booleans(), loss=st.sampled_from(["mse", "cross_entropy"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_native_rnn_equals_python_engine(data, train, loss, dtype, seed):
    draw = data.draw
    fg.manual_seed(seed)
    n, t, i, h = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    layers, bidir = draw(st.integers(1, 2)), draw(st.booleans())
    batch_first = draw(st.booleans())
    rnn = draw(st.sampled_from(RNNS))(i, h, num_layers=layers, bias=draw(st.booleans()),
                                      batch_first=batch_first, bidirectional=bidir,
                                      dropout=draw(st.sampled_from([0.0, 0.5])))
    width = h * (2 if bidir else 1)
    if not batch_first:  # (T, N, width) -> per-step head (T, N, 3), an mse target
        tail = [nn.Linear(width, 3)]
    elif draw(st.booleans()):  # (N, T, width) -> per-step head, then the steps flattened
        tail = [nn.Linear(width, 2), nn.Flatten(), nn.Linear(2 * t, 3)]
    else:
        tail = [nn.Flatten(), nn.Linear(width * t, 3)]
    model = _to_dtype(nn.Sequential(rnn, nn.Tanh(), *tail), dtype).to("rust")
    model.train(train)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((n, t, i) if batch_first else (t, n, i)).astype(dtype)
    out_shape = _engine_forward(model, fg.tensor(xv, backend="rust")).shape
    if len(out_shape) != 2 and loss == "cross_entropy":
        loss = "mse"
    target = (rng.standard_normal(out_shape).astype(dtype) if loss == "mse"
              else rng.integers(0, 3, n))
    for prm in model.parameters():
        prm.grad = None
    _compare_with_engine(model, xv, target, loss, "mean", dtype)


@given(data=st.data(), train=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_native_transformer_equals_python_engine(data, train, dtype, seed):
    draw = data.draw
    fg.manual_seed(seed)
    n, length, heads = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 2]))
    e = heads * draw(st.integers(1, 3))
    batch_first = draw(st.booleans())
    layer = nn.TransformerEncoderLayer(e, heads, dim_feedforward=draw(st.integers(1, 6)),
                                       dropout=draw(st.sampled_from([0.0, 0.2])),
                                       activation=draw(st.sampled_from(["relu", "gelu"])),
                                       batch_first=batch_first, norm_first=draw(st.booleans()),
                                       bias=draw(st.booleans()))
    if draw(st.booleans()):
        layer = nn.TransformerEncoder(layer, draw(st.integers(1, 2)),
                                      norm=nn.LayerNorm(e) if draw(st.booleans()) else None)
    head = [nn.Flatten(), nn.Linear(length * e, 3)] if batch_first else [nn.Linear(e, 3)]
    model = _to_dtype(nn.Sequential(nn.Linear(2, e), layer, *head), dtype).to("rust")
    model.train(train)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((n, length, 2) if batch_first else (length, n, 2)).astype(dtype)
    loss = "cross_entropy" if batch_first else "mse"
    target = (rng.integers(0, 3, n) if batch_first
              else rng.standard_normal((length, n, 3)).astype(dtype))
    _compare_with_engine(model, xv, target, loss, "mean", dtype)


@given(size=st.sampled_from([1, 2, 3, (2, None), (None, 1)]), h=st.integers(3, 7), w=st.integers(3, 7),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_native_adaptive_avg_pool_equals_python_engine(size, h, w, dtype, seed):
    fg.manual_seed(seed)
    probe = nn.AdaptiveAvgPool2d(size)(fg.tensor(np.zeros((1, 2, h, w), np.float32), backend="rust"))
    model = _to_dtype(nn.Sequential(nn.Conv2d(1, 2, 1), nn.AdaptiveAvgPool2d(size), nn.Flatten(),
                                    nn.Linear(int(np.prod(probe.shape[1:])), 3)), dtype).to("rust")
    xv = np.random.default_rng(seed).standard_normal((2, 1, h, w)).astype(dtype)
    _compare_with_engine(model, xv, np.array([0, 2]), "cross_entropy", "sum", dtype)


def test_transformer_trains():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1,
                                                                      batch_first=True),
                          nn.Flatten(), nn.Linear(4 * 8, 2)).to("rust")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4, 1)).astype(np.float32)
    y = (x[:, :2, 0].sum(axis=1) > x[:, 2:, 0].sum(axis=1)).astype(np.int64)
    native = NativeSequential(model, "cross_entropy")
    first = native.step(x, y, lr=0.1)
    for _ in range(60):
        last = native.step(x, y, lr=0.1)
    assert last < 0.5 * first


def test_lstm_model_trains():
    fg.manual_seed(0)
    model = nn.Sequential(nn.LSTM(2, 8, batch_first=True), nn.Flatten(), nn.LayerNorm(5 * 8),
                          nn.Linear(5 * 8, 2)).to("rust")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    native = NativeSequential(model, "cross_entropy")
    first = native.step(x, y, lr=0.3)
    for _ in range(60):
        last = native.step(x, y, lr=0.3)
    assert last < 0.5 * first


def test_flatten_module():
    x = fg.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), backend="rust", requires_grad=True)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Flatten(-2)(x).shape == (2, 12)
    nn.Flatten()(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3, 4), np.float32))
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    with pytest.raises(TypeError, match="start_dim"):
        nn.Flatten(1.5)
    with pytest.raises(ValueError, match="start_dim"):
        nn.Flatten(2, 1)(x)


def test_small_cnn_trains():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).to("rust")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > x[:, 0, 4:].mean(axis=(1, 2))).astype(np.int64)
    native = NativeSequential(model, "cross_entropy")
    first = native.step(x, y, lr=0.2)
    for _ in range(60):
        last = native.step(x, y, lr=0.2)
    assert last < 0.5 * first


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
    with pytest.raises(TypeError, match=r"model\[1\]: MultiheadAttention is not supported by "
                                        "ferrograd.native"):
        NativeSequential(nn.Sequential(nn.Linear(3, 4), nn.MultiheadAttention(4, 2)))
    with pytest.raises(TypeError, match="model: PReLU is not supported"):
        NativeSequential(nn.PReLU())
    with pytest.raises(TypeError, match="TransformerEncoderLayer with a callable activation"):
        NativeSequential(nn.TransformerEncoderLayer(4, 2, activation=F.tanh))
    with pytest.raises(TypeError, match=r"model\[1\]: AdaptiveMaxPool2d is not supported"):
        NativeSequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveMaxPool2d(1)))
    with pytest.raises(TypeError, match="DropBlock2d is not supported"):
        NativeSequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.DropBlock2d(0.1, 2)))
    with pytest.raises(TypeError, match="LSTMCell is not supported"):
        NativeSequential(nn.LSTMCell(2, 3))
    with pytest.raises(TypeError, match="LayerNorm with more than 4 normalized dimensions"):
        NativeSequential(nn.LayerNorm((1, 1, 1, 1, 2)))
    with pytest.raises(TypeError, match="Conv2d with padding='same'"):
        NativeSequential(nn.Conv2d(1, 2, 3, padding="same"))
    with pytest.raises(TypeError, match="MaxPool2d with return_indices"):
        NativeSequential(nn.MaxPool2d(2, return_indices=True))


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
    with pytest.raises(ValueError, match="x: expected a 1-D"):
        native.grads(np.ones((1, 1, 1, 1, 3), np.float32), np.array([0]))
    with pytest.raises(ValueError, match=r"input: expected logits of shape \(N, C\)"):
        native.grads(np.ones(3, np.float32), np.array(0))  # as F.cross_entropy of (C,) logits
    with pytest.raises(ValueError, match="input: expected"):
        native.grads(np.ones((4, 5), np.float32), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="lr: expected a non-negative"):
        native.step(x, np.array([0, 1, 1, 0]), lr=-1.0)
    # a 4-D input to a Linear, a 2-D input to a Conv2d, kernels larger than the input
    with pytest.raises(ValueError, match="input: expected"):
        native.grads(np.ones((4, 3, 1, 1), np.float32), np.array([0, 1, 1, 0]))
    cnn = NativeSequential(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3, 2)).to("rust"))
    with pytest.raises(ValueError, match="input: expected a 4-D"):
        cnn.grads(np.ones((4, 2), np.float32), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="weight: "):
        cnn.grads(np.ones((1, 2, 2, 2), np.float32), np.array([0]))
    with pytest.raises(ValueError, match="(input|weight): "):  # 3 channels for a 2-channel conv
        cnn.grads(np.ones((1, 3, 3, 3), np.float32), np.array([0]))
    with pytest.raises(ValueError, match="input: expected"):  # 3x4 -> 1x2 -> 6 features != 3
        cnn.grads(np.ones((1, 2, 3, 4), np.float32), np.array([0]))
    pool = NativeSequential(nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(2, 2)).to("rust"))
    with pytest.raises(ValueError, match="empty output"):
        pool.grads(np.ones((1, 2, 3, 3), np.float32), np.array([0]))
    # norms and recurrent layers: wrong channels or rank, one value per channel, dtypes
    bn = NativeSequential(nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2)).to("rust"))
    with pytest.raises(ValueError, match="input: batch_norm1d expected"):
        bn.grads(np.ones((4, 2), np.float32), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.grads(np.ones((1, 3), np.float32), np.array([0]))
    for prm in bn.params:  # float64 parameters, float32 running statistics
        prm.data = prm.data.astype(np.float64)
    with pytest.raises(TypeError, match="buffers\\[0\\]: expected a writable float64"):
        bn.grads(np.ones((4, 3)), np.array([0, 1, 1, 0]))
    inorm = NativeSequential(nn.Sequential(nn.InstanceNorm2d(2), nn.Flatten(), nn.Linear(8, 2)).to("rust"))
    with pytest.raises(ValueError, match="instance_norm2d expected"):
        inorm.grads(np.ones((2, 2, 4), np.float32), np.array([0, 1]))
    ln = NativeSequential(nn.Sequential(nn.LayerNorm((2, 3)), nn.Flatten(), nn.Linear(6, 2)).to("rust"))
    with pytest.raises(ValueError, match="normalized_shape"):
        ln.grads(np.ones((2, 3, 2), np.float32), np.array([0, 1]))
    lstm = NativeSequential(nn.Sequential(nn.LSTM(3, 2), nn.Linear(2, 2)).to("rust"), "mse")
    with pytest.raises(ValueError, match="lstm expected a 3-D"):
        lstm.grads(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="weight_ih"):
        lstm.grads(np.ones((4, 1, 2), np.float32), np.ones((4, 1, 2), np.float32))
    enc = NativeSequential(nn.TransformerEncoderLayer(4, 2, 8).to("rust"), "mse")
    with pytest.raises(ValueError, match="transformer_encoder_layer expected a 3-D"):
        enc.grads(np.ones((3, 4), np.float32), np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="in_proj_weight|input"):
        enc.grads(np.ones((3, 1, 6), np.float32), np.ones((3, 1, 6), np.float32))
    with pytest.raises(ValueError, match="output_size"):
        NativeSequential(nn.AdaptiveAvgPool2d(0))


def test_bench_training_rows():
    """The benchmark's training-step rows run on rust and native, and a native row gets
    its ratio against torch-cpu."""
    from ferrograd.bench.__main__ import ALL
    from ferrograd.bench.report import add_ratios
    from ferrograd.bench.suite import default_suite, train_cases

    assert "native" in ALL
    cases = train_cases(quick=True)
    names = [c.name for c in cases]
    assert names == [f"{k} train step batch {b}" for k in ("mlp", "cnn", "lstm")
                     for b in (1, 8, 64)]
    assert set(names) <= {c.name for c in default_suite(quick=True)}
    for case in cases[:1] + cases[3:4] + cases[6:7]:
        assert case.impls == ("rust", "native", "torch-cpu")
        for impl in ("rust", "native"):
            case.make(impl)()
    rows = [{"case": "c", "impl": i, "median_s": t} for i, t in
            (("rust", 4.0), ("native", 1.0), ("torch-cpu", 2.0))]
    add_ratios(rows)
    assert rows[1]["speedup_vs_torch"] == 2.0 and rows[1]["speedup_vs_numpy"] is None


def test_bench_ratios_stay_within_a_group():
    """Rows of the same name in two groups (relu fwd at 4M and at 256M) are compared
    within their own group."""
    from ferrograd.bench.report import add_ratios

    rows = [{"group": g, "case": "relu fwd", "impl": i, "median_s": t}
            for g, i, t in (("4M", "cuda", 1.0), ("4M", "torch-cuda", 0.5),
                            ("256M", "cuda", 10.0), ("256M", "torch-cuda", 20.0))]
    add_ratios(rows)
    assert rows[0]["speedup_vs_torch"] == 0.5 and rows[2]["speedup_vs_torch"] == 2.0
