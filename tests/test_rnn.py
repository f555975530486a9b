"""Recurrent layers: LSTM, GRU, LSTMCell, GRUCell and F.lstm / F.gru.

Outputs, final states and every gradient (input, initial states, each parameter) of each
backend against the numpy reference (hypothesis over batch, sequence length, input and
hidden sizes including 1, layers, directions, bias, batch_first, initial states);
float64 gradcheck on numpy and rust; dropout between layers; unbatched inputs; bad
shapes and arguments; PyTorch as an oracle (weights loaded one to one) when installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.testing import assert_close
from ferrograd.testing.strategies import float_arrays

from conftest import dtype_backend_ok

GATES = {"lstm": 4, "gru": 3}


def _params(mode, layers, dirs, bias, i, h, dtype, rng):
    g = GATES[mode] * h
    out = []
    for layer in range(layers):
        fin = i if layer == 0 else dirs * h
        for _ in range(dirs):
            shapes = [(g, fin), (g, h)] + ([(g,), (g,)] if bias else [])
            out += [rng.uniform(-0.6, 0.6, s).astype(dtype) for s in shapes]
    return out


def _run(backend, mode, x, states, params, cfg, weights_out, training=False, grad=True):
    """F.lstm / F.gru on ``backend``; returns ([output, h_n(, c_n)], grads of x, the states
    and every parameter) for the loss sum_k <result_k, weights_out[k]>."""
    t = lambda a: fg.tensor(a, backend=backend, requires_grad=grad)  # noqa: E731
    xt, pt = t(x), [t(p) for p in params]
    st_t = [t(s) for s in states]
    hx = None if not st_t else (tuple(st_t) if mode == "lstm" else st_t[0])
    fn = F.lstm if mode == "lstm" else F.gru
    out, hn = fn(xt, hx, pt, training=training, **cfg)
    results = [out] + (list(hn) if mode == "lstm" else [hn])
    values = [r.numpy().copy() for r in results]
    grads = []
    if grad:
        loss = None
        for r, w in zip(results, weights_out):
            term = (r * fg.tensor(w, backend=backend)).sum()
            loss = term if loss is None else loss + term
        loss.backward()
        grads = [a.grad.numpy().copy() for a in [xt] + st_t + pt]
    return values, grads


def _case(data, mode, dtype, max_side=4):
    sizes = st.sampled_from([1, 1, 2, 3, 4][:max_side + 1])
    n, t, i, h = (data.draw(sizes, label=k) for k in ("batch", "seq", "input", "hidden"))
    layers = data.draw(st.integers(1, 2), label="layers")
    bidir = data.draw(st.booleans(), label="bidirectional")
    bias = data.draw(st.booleans(), label="bias")
    batch_first = data.draw(st.booleans(), label="batch_first")
    with_state = data.draw(st.booleans(), label="initial states")
    dirs = 2 if bidir else 1
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    x = data.draw(float_arrays((n, t, i) if batch_first else (t, n, i), dtype, max_magnitude=2.0),
                  label="x")
    states = [rng.uniform(-1, 1, (layers * dirs, n, h)).astype(dtype)
              for _ in range(2 if mode == "lstm" else 1)] if with_state else []
    params = _params(mode, layers, dirs, bias, i, h, dtype, rng)
    cfg = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir)
    out_shape = (n, t, dirs * h) if batch_first else (t, n, dirs * h)
    weights_out = [rng.standard_normal(out_shape).astype(dtype)] + [
        rng.standard_normal((layers * dirs, n, h)).astype(dtype)
        for _ in range(2 if mode == "lstm" else 1)]
    return x, states, params, cfg, weights_out, out_shape


# ------------------------------------------------------------- values vs numpy
@pytest.mark.parametrize("mode", ["lstm", "gru"])
@given(data=st.data())
def test_rnn_matches_numpy(backend, dtype, mode, data):
    dtype_backend_ok(backend, dtype)
    x, states, params, cfg, wo, out_shape = _case(data, mode, dtype)
    vals, grads = _run(backend, mode, x, states, params, cfg, wo)
    ref_vals, ref_grads = _run("numpy", mode, x, states, params, cfg, wo)
    assert vals[0].shape == out_shape
    for k, (v, e) in enumerate(zip(vals, ref_vals)):
        assert v.dtype == e.dtype == dtype
        assert_close(v, e, dtype, "reduction", msg=f"{backend} {mode} result {k} vs numpy")
    assert len(grads) == len(ref_grads) == 1 + len(states) + len(params)
    for k, (g, e) in enumerate(zip(grads, ref_grads)):
        assert g.shape == e.shape
        assert_close(g, e, dtype, "reduction", msg=f"{backend} {mode} gradient {k} vs numpy")


# -------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_gradcheck(cpu_backend, mode, bidirectional):
    rng = np.random.default_rng(3)
    layers, dirs, n, t, i, h = 2, 2 if bidirectional else 1, 2, 3, 3, 2
    params = _params(mode, layers, dirs, True, i, h, np.float64, rng)
    x = rng.standard_normal((n, t, i))
    states = [rng.standard_normal((layers * dirs, n, h)) for _ in range(GATES[mode] - 2)]
    wo = [fg.tensor(rng.standard_normal(s), backend=cpu_backend)
          for s in [(n, t, dirs * h)] + [(layers * dirs, n, h)] * (GATES[mode] - 2)]
    fn = F.lstm if mode == "lstm" else F.gru

    def loss(xt, *rest):
        st_t, pt = rest[:len(states)], rest[len(states):]
        hx = tuple(st_t) if mode == "lstm" else st_t[0]
        out, hn = fn(xt, hx, list(pt), num_layers=layers, batch_first=True,
                     bidirectional=bidirectional)
        results = [out] + (list(hn) if mode == "lstm" else [hn])
        total = None
        for r, w in zip(results, wo):
            term = (r * w).sum()
            total = term if total is None else total + term
        return total

    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in [x] + states + params]
    assert fg.gradcheck(loss, ts)


def test_rnn_gradcheck_seq_len_one_hidden_one(cpu_backend):
    rng = np.random.default_rng(5)
    for mode, fn in (("lstm", F.lstm), ("gru", F.gru)):
        params = _params(mode, 1, 1, False, 1, 1, np.float64, rng)
        ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True)
              for a in [rng.standard_normal((1, 2, 1))] + params]
        assert fg.gradcheck(lambda xt, *p, fn=fn: fn(xt, None, list(p), bias=False)[0].sum(), ts)


# -------------------------------------------------------------- rust kernels
def test_rust_kernels_equal_numpy_directly():
    from ferrograd.backends import get_backend
    npb, rb = get_backend("numpy"), get_backend("rust")
    rng = np.random.default_rng(0)
    t, n, i, h = 4, 3, 5, 2
    x = rng.standard_normal((t, n, i))
    for mode in ("lstm", "gru"):
        g = GATES[mode] * h
        w_ih, w_hh = rng.standard_normal((g, i)), rng.standard_normal((g, h))
        b_ih, b_hh = rng.standard_normal(g), rng.standard_normal(g)
        h0, c0 = rng.standard_normal((n, h)), rng.standard_normal((n, h))
        for reverse in (False, True):
            if mode == "lstm":
                a = npb.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
                b = rb.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
            else:
                a = npb.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse)
                b = rb.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse)
            for u, v in zip(a, b):
                assert_close(v, u, np.float64, "reduction")


# ------------------------------------------- step kernels: block shapes, no_grad
@pytest.mark.parametrize("n,t,i,h", [(7, 3, 9, 100), (1, 2, 50, 300), (5, 3, 2, 1), (1, 4, 3, 17),
                                     (32, 2, 64, 256)])
def test_lstm_step_shapes_and_no_grad(backend, n, t, i, h):
    """Sizes that split each step into unit blocks (the rust kernels then fuse the input
    projection into the step GEMM), strips of 16 units left partly empty (H = 1, 17, 100,
    300), batch tails of the 4-row register tile (N = 1, 5, 7): output, final states and
    every gradient against numpy, both directions; under no_grad (where kernels may skip
    what only backward reads) the same values, bit for bit."""
    rng = np.random.default_rng(n * 1000 + h)
    params = _params("lstm", 1, 2, True, i, h, np.float32, rng)
    params = [p * np.float32(2 / np.sqrt(h)) for p in params]  # keep the gates off saturation
    x = rng.standard_normal((t, n, i)).astype(np.float32)
    states = [rng.uniform(-1, 1, (2, n, h)).astype(np.float32) for _ in range(2)]
    wo = [rng.standard_normal((t, n, 2 * h)).astype(np.float32)] + [
        rng.standard_normal((2, n, h)).astype(np.float32) for _ in range(2)]
    cfg = dict(num_layers=1, bias=True, batch_first=False, bidirectional=True)
    vals, grads = _run(backend, "lstm", x, states, params, cfg, wo)
    ref_vals, ref_grads = _run("numpy", "lstm", x, states, params, cfg, wo)
    for k, (v, e) in enumerate(zip(vals + grads, ref_vals + ref_grads)):
        assert_close(v, e, np.float32, "reduction", msg=f"{backend} result/gradient {k} vs numpy")
    with fg.no_grad():
        inferred, _ = _run(backend, "lstm", x, states, params, cfg, wo, grad=False)
    for v, e in zip(inferred, vals):
        np.testing.assert_array_equal(v, e)


def test_lstm_forward_inference_kernel(backend):
    """The backend's lstm_forward_inference equals lstm_forward's first three results."""
    b = fg.get_backend(backend)
    rng = np.random.default_rng(8)
    t, n, i, h = 3, 6, 40, 70
    x = rng.standard_normal((t, n, i)).astype(np.float32)
    w_ih, w_hh = (rng.uniform(-0.2, 0.2, (4 * h, k)).astype(np.float32) for k in (i, h))
    b_ih, b_hh = (rng.uniform(-0.2, 0.2, 4 * h).astype(np.float32) for _ in range(2))
    h0, c0 = (rng.standard_normal((n, h)).astype(np.float32) for _ in range(2))
    for reverse in (False, True):
        full = b.lstm_forward(*(b.from_numpy(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)), reverse)
        inf = b.lstm_forward_inference(*(b.from_numpy(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)),
                                       reverse)
        assert len(inf) == 3
        for u, v in zip(full[:3], inf):
            np.testing.assert_array_equal(b.to_numpy(u), b.to_numpy(v))


# -------------------------------------------------------------------- modules
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_module_parameter_names_and_shapes(cls):
    m = cls(3, 5, num_layers=2, bidirectional=True, bias=True)
    g = 4 if cls is nn.LSTM else 3
    names = [k for k, _ in m.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert names[4] == "weight_ih_l0_reverse" and len(names) == 16
    assert m.weight_ih_l1.shape == (g * 5, 10) and m.weight_hh_l1_reverse.shape == (g * 5, 5)
    assert np.all(np.abs(m.weight_ih_l0.numpy()) <= 1 / np.sqrt(5))
    assert len(list(cls(3, 5, bias=False).parameters())) == 2


def test_dropout_between_layers(backend):
    """Training-mode dropout: the same seed gives the same result on every backend (one
    Philox stream), it changes the output, and eval mode ignores it."""
    def run(dropout, training, be):
        fg.manual_seed(0)
        m = nn.LSTM(3, 4, num_layers=3, dropout=dropout, backend=be)
        m.train(training)
        x = fg.tensor(np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32),
                      backend=be, requires_grad=True)
        fg.manual_seed(7)
        out, _ = m(x)
        out.sum().backward()
        return out.numpy(), x.grad.numpy()

    y, gx = run(0.5, True, backend)
    y0, gx0 = run(0.5, True, "numpy")
    assert_close(y, y0, np.float32, "reduction")
    assert_close(gx, gx0, np.float32, "reduction")
    plain, _ = run(0.0, True, "numpy")
    assert not np.allclose(y0, plain)
    evaluated, _ = run(0.5, False, "numpy")
    np.testing.assert_array_equal(evaluated, plain)


def test_cells_match_one_step_of_the_layer(backend):
    rng = np.random.default_rng(2)
    for cell_cls, layer_cls in ((nn.LSTMCell, nn.LSTM), (nn.GRUCell, nn.GRU)):
        cell = cell_cls(3, 4, backend=backend)
        layer = layer_cls(3, 4, backend=backend)
        layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
        x = rng.standard_normal((2, 3)).astype(np.float32)
        h = rng.standard_normal((2, 4)).astype(np.float32)
        c = rng.standard_normal((2, 4)).astype(np.float32)
        xt = fg.tensor(x, backend=backend)
        ht, ct = fg.tensor(h, backend=backend), fg.tensor(c, backend=backend)
        if cell_cls is nn.LSTMCell:
            h1, c1 = cell(xt, (ht, ct))
            _, (hn, cn) = layer(fg.tensor(x[None], backend=backend),
                                (fg.tensor(h[None], backend=backend), fg.tensor(c[None], backend=backend)))
            assert_close(c1.numpy(), cn.numpy()[0], np.float32)
            h1u, _ = cell(fg.tensor(x[0], backend=backend))  # unbatched, zero state
            assert h1u.shape == (4,)
        else:
            h1 = cell(xt, ht)
            _, hn = layer(fg.tensor(x[None], backend=backend), fg.tensor(h[None], backend=backend))
            assert cell(fg.tensor(x[0], backend=backend)).shape == (4,)
        assert h1.shape == (2, 4)
        assert_close(h1.numpy(), hn.numpy()[0], np.float32)


def test_unbatched_input_equals_batch_of_one(backend):
    rng = np.random.default_rng(4)
    m = nn.GRU(3, 2, num_layers=2, bidirectional=True, backend=backend)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    h0 = rng.standard_normal((4, 2)).astype(np.float32)
    out, hn = m(fg.tensor(x, backend=backend), fg.tensor(h0, backend=backend))
    assert out.shape == (5, 4) and hn.shape == (4, 2)
    out1, hn1 = m(fg.tensor(x[:, None], backend=backend), fg.tensor(h0[:, None], backend=backend))
    assert_close(out.numpy(), out1.numpy()[:, 0], np.float32)
    assert_close(hn.numpy(), hn1.numpy()[:, 0], np.float32)


# ------------------------------------------------------------------ bad input
def test_bad_shapes_and_arguments_raise_clear_errors():
    m = nn.LSTM(3, 4, num_layers=2)
    x = fg.tensor(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="weight_ih_l0.*input_size"):
        m(fg.tensor(np.zeros((5, 2, 6), np.float32)))
    with pytest.raises(ValueError, match="input: expected a 2-D"):
        m(fg.tensor(np.zeros((5, 2, 3, 1), np.float32)))
    with pytest.raises(ValueError, match=r"h_0: expected shape \(2, 2, 4\), got \(1, 2, 4\)"):
        m(x, (fg.tensor(np.zeros((1, 2, 4), np.float32)), fg.tensor(np.zeros((2, 2, 4), np.float32))))
    with pytest.raises(ValueError, match=r"c_0: expected shape \(2, 2, 4\)"):
        m(x, (fg.tensor(np.zeros((2, 2, 4), np.float32)), fg.tensor(np.zeros((2, 3, 4), np.float32))))
    with pytest.raises(TypeError, match="hx: expected a tuple"):
        m(x, fg.tensor(np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(TypeError, match="h_0: expected dtype float32"):
        nn.GRU(3, 4)(x, fg.tensor(np.zeros((1, 2, 4), np.float64)))
    with pytest.raises(ValueError, match="input: expected a non-empty"):
        m(fg.tensor(np.zeros((0, 2, 3), np.float32)))
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="num_layers"):
        F.gru(x, None, [], num_layers=0)
    with pytest.raises(ValueError, match="params: expected 4 tensors"):
        F.lstm(x, None, list(nn.LSTM(3, 4).parameters())[:2])
    with pytest.raises(ValueError, match=r"hx: expected shape \(4,\)"):
        nn.GRUCell(3, 4)(fg.tensor(np.zeros(3, np.float32)), fg.tensor(np.zeros(5, np.float32)))


@pytest.mark.parametrize("be", ["numpy", "rust"])
def test_kernels_reject_bad_shapes(be):
    """Kernels called directly validate too (ValueError/TypeError, never a Rust panic)."""
    b = fg.get_backend(be)
    x = np.zeros((2, 1, 3))
    s = np.zeros((1, 2))
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(8, 3\)"):
        b.lstm_forward(x, s, s, np.zeros((8, 2)), np.zeros((8, 2)), None, None, False)
    with pytest.raises(ValueError, match="w_hh"):
        b.gru_forward(x, s, np.zeros((6, 3)), np.zeros((5, 2)), None, None, False)
    with pytest.raises(ValueError, match=r"c0: expected shape \(1, 2\)"):
        b.lstm_forward(x, s, np.zeros((2, 2)), np.zeros((8, 3)), np.zeros((8, 2)), None, None, False)
    with pytest.raises(TypeError, match="h0: expected dtype float64"):
        b.gru_forward(x, s.astype(np.float32), np.zeros((6, 3)), np.zeros((6, 2)), None, None, False)
    with pytest.raises(ValueError, match="b_ih, b_hh"):
        b.gru_forward(x, s, np.zeros((6, 3)), np.zeros((6, 2)), np.zeros(6), None, False)
    with pytest.raises(ValueError, match="gy: expected shape"):
        y, hn, g = b.gru_forward(x, s, np.zeros((6, 3)), np.zeros((6, 2)), None, None, False)
        b.gru_backward(x, s, np.zeros((6, 3)), np.zeros((6, 2)), y, g, np.zeros((2, 1, 3)), s, False, False)


def test_rust_extension_validates_without_python_checks():
    from ferrograd import _core
    x = np.zeros((2, 1, 3))
    s = np.zeros((1, 2))
    with pytest.raises(ValueError, match="w_ih"):
        _core.lstm_forward(x, s, s, np.zeros((8, 2)), np.zeros((8, 2)), None, None, False)
    with pytest.raises(ValueError, match="x: expected a non-empty"):
        _core.gru_forward(np.zeros((0, 1, 3)), s, np.zeros((6, 3)), np.zeros((6, 2)), None, None, False)
    with pytest.raises(ValueError, match="gates"):
        _core.gru_backward(x, s, np.zeros((6, 3)), np.zeros((6, 2)), np.zeros((2, 1, 2)),
                           np.zeros((2, 1, 7)), np.zeros((2, 1, 2)), s, False, False)


# ---------------------------------------------------------- PyTorch as oracle
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_against_torch(backend, kind, batch_first):
    torch = pytest.importorskip("torch")
    cls, tcls = (nn.LSTM, torch.nn.LSTM) if kind == "lstm" else (nn.GRU, torch.nn.GRU)
    m = cls(4, 5, num_layers=2, bidirectional=True, batch_first=batch_first, backend=backend)
    tm = tcls(4, 5, num_layers=2, bidirectional=True, batch_first=batch_first)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 6, 4) if batch_first else (6, 3, 4)).astype(np.float32)
    states = [rng.standard_normal((4, 3, 5)).astype(np.float32) for _ in range(GATES[kind] - 2)]
    xt = fg.tensor(x, backend=backend, requires_grad=True)
    st_t = [fg.tensor(s, backend=backend, requires_grad=True) for s in states]
    tx = torch.tensor(x, requires_grad=True)
    tst = [torch.tensor(s, requires_grad=True) for s in states]
    if kind == "lstm":
        out, (hn, cn) = m(xt, tuple(st_t))
        tout, (thn, tcn) = tm(tx, tuple(tst))
        res, tres = [out, hn, cn], [tout, thn, tcn]
    else:
        out, hn = m(xt, st_t[0])
        tout, thn = tm(tx, tst[0])
        res, tres = [out, hn], [tout, thn]
    loss, tloss = None, None
    for k, (r, tr) in enumerate(zip(res, tres)):
        assert_close(r.numpy(), tr.detach().numpy(), np.float32, "reduction", msg=f"result {k}")
        w = rng.standard_normal(r.shape).astype(np.float32)
        term, tterm = (r * fg.tensor(w, backend=backend)).sum(), (tr * torch.tensor(w)).sum()
        loss = term if loss is None else loss + term
        tloss = tterm if tloss is None else tloss + tterm
    loss.backward()
    tloss.backward()
    assert_close(xt.grad.numpy(), tx.grad.numpy(), np.float32, "reduction", msg="grad input")
    for s, ts in zip(st_t, tst):
        assert_close(s.grad.numpy(), ts.grad.numpy(), np.float32, "reduction", msg="grad state")
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        assert_close(p.grad.numpy(), tp.grad.numpy(), np.float32, "reduction", msg=f"grad {name}")
