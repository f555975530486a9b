"""NaN, +-inf and extreme magnitudes: one answer on the numpy, rust and (where it runs)
cuda backends, and it is PyTorch's (written here as literal expectations: PyTorch gives NaN for a normalized row
holding inf, NaN running statistics from a NaN batch, NaN for a softmax row with a NaN
or +inf score, NaN at padded positions for a NaN weight). Also: conv sizes that overflow
or cannot be allocated raise instead of aborting, and every conv algorithm's backward
gives the same bits on every call and thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.functional as F

# numpy is the reference and comes first; cuda joins where it runs (the GPU machine), so
# the same cases check its answers against numpy's there
BACKENDS = ["numpy", "rust"] + [b for b in ("cuda",) if b in fg.available_backends()]
INF, NAN = np.inf, np.nan


def _run(be, f, *arrays, grad=False, const=()):
    """f on tensors of `arrays` (requiring grad unless their index is in `const`); with
    grad, (y, grads) after backward of a varied output gradient."""
    ts = [fg.tensor(np.array(a), backend=be, requires_grad=grad and i not in const)
          for i, a in enumerate(arrays)]
    y = f(*ts)
    if not grad:
        return np.asarray(y.numpy())
    # a varied output gradient: sum(y) alone has a zero gradient through a norm
    (y * fg.tensor(_gy(y.shape, np.asarray(y.numpy()).dtype), backend=be)).sum().backward()
    return np.asarray(y.numpy()), [np.asarray(t.grad.numpy()) for i, t in enumerate(ts)
                                   if i not in const]


def _gy(shape, dtype):
    return np.cos(np.arange(int(np.prod(shape)))).reshape(shape).astype(dtype)


def _same(a, b, rtol=1e-5):
    """Equal NaN positions and values (inf included) within rtol."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_allclose(a[ok], b[ok], rtol=rtol, atol=0)


def _both(f, *arrays, grad=False, const=(), gtol=1e-4):
    out = [_run(be, f, *arrays, grad=grad, const=const) for be in BACKENDS]
    for other in out[1:]:
        if grad:
            _same(out[0][0], other[0])
            for g0, g1 in zip(out[0][1], other[1]):
                _same(g0, g1, rtol=gtol)
        else:
            _same(out[0], other)
    return out[1]


# ---------------------------------------------------------------- norms
def test_layer_norm_row_with_inf_is_nan():
    x = np.array([[1, INF, 2, 3], [1, 2, 3, 4]], np.float32)
    y = _both(lambda a: F.layer_norm(a, (4,)), x)
    assert np.isnan(y[0]).all()                 # PyTorch: nan nan nan nan
    assert np.isfinite(y[1]).all()


def test_batch_norm_channel_with_inf_is_nan():
    x = np.array([[1, 2], [-INF, 3], [2, 1]], np.float32)
    y = _both(lambda a: F.batch_norm(a, None, None, training=True), x)
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1]).all()


@pytest.mark.parametrize("be", BACKENDS)
def test_batch_norm_nan_input_makes_running_stats_nan(be):
    x = fg.tensor(np.array([[NAN, 1], [2, 3]], np.float32), backend=be)
    rm = fg.tensor(np.zeros(2, np.float32), backend=be)
    rv = fg.tensor(np.ones(2, np.float32), backend=be)
    F.batch_norm(x, rm, rv, training=True)
    rm, rv = np.asarray(rm.numpy()), np.asarray(rv.numpy())
    # PyTorch: running_mean [nan, 0.2], running_var [nan, 1.1] (0.9 + 0.1 * 2)
    assert np.isnan(rm[0]) and np.isnan(rv[0])
    np.testing.assert_allclose([rm[1], rv[1]], [0.2, 1.1], rtol=1e-6)


@pytest.mark.parametrize("scale", [1e19, 1e20, 1e30])
def test_norms_of_huge_values_do_not_collapse(scale):
    base = np.array([[[0, 1, 2, 3], [4, 6, 8, 9]], [[1, 0, 0, 1], [2, 3, 5, 7]]], np.float32)
    x = (base * scale).astype(np.float32)
    for f in (lambda a: F.layer_norm(a, (4,)),
              lambda a: F.group_norm(a, 1),
              lambda a: F.instance_norm(a)):
        y = _both(f, x, grad=True)[0]
        # the normalization of base itself: PyTorch gives it (scale-free), not zeros
        want = np.asarray(f(fg.tensor(base.astype(np.float64))).numpy())
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_norm_backward_with_huge_weights_does_not_overflow():
    # weight 1e30 times deviations of 1e24: the float32 sums of w gy (x - mean) overflow;
    # numpy (float64) and PyTorch give finite gradients
    x = (np.array([[[-2.7, -0.2, 0.7, -1.9], [3.1, 0.4, -1.2, 2.2]]]) * 1e24).astype(np.float32)
    w = np.full(4, 1e30, np.float32)
    gx, gw = _both(lambda a, w: F.layer_norm(a, (4,), weight=w), x, w, grad=True)[1]
    assert np.isfinite(gx).all() and np.isfinite(gw).all()
    wi = np.array([4e28, -3.8e20], np.float32)
    grads = _both(lambda a, w: F.instance_norm(a, weight=w, eps=0.0), x, wi, grad=True)[1]
    assert all(np.isfinite(g).all() for g in grads)


def test_layer_norm_of_constant_rows_with_huge_weights_has_zero_input_grad():
    # x - mean is 0 and every w gy equals 1e30: gx = rstd (w gy - mean(w gy)) is exactly
    # 0; a float32 sum of the w gy rounded, and rstd = 1/sqrt(eps) made that 2e25
    for be in BACKENDS:
        x = fg.tensor(np.ones((2, 8), np.float32), backend=be, requires_grad=True)
        w = fg.tensor(np.full(8, 1e30, np.float32), backend=be)
        F.layer_norm(x, (8,), weight=w).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), 0.0)


def test_layer_norm_grad_with_weights_near_float32_max_cancels_in_f64():
    # two-element row, weight 3e38: rstd^2 * sum(w gy (x - mean)) / L is 6e39 (inf in
    # float32), but its product with x - mean cancels against w gy - mean(w gy):
    # numpy (float64) and PyTorch give finite gradients of ~1e32 (the cancellation leaves
    # ~1e-6 of the terms: the values themselves are rounding-sized, only finiteness and
    # scale are compared)
    for be in BACKENDS:
        x = fg.tensor(np.array([[-0.2028, -0.1536]], np.float32), backend=be, requires_grad=True)
        w = fg.tensor(np.array([3e38, 1.44], np.float32), backend=be)
        (F.layer_norm(x, (2,), weight=w, eps=0.0) * fg.tensor(np.array([[1.0, -0.5]], np.float32), backend=be)).sum().backward()
        gx = x.grad.numpy()
        assert np.isfinite(gx).all() and np.abs(gx).max() < 1e34, (be, gx)


# ---------------------------------------------------------------- attention
def _qkv(lq=3, lk=3, d=4, seed=0):
    rs = np.random.RandomState(seed)
    return (rs.randn(1, 2, lq, d).astype(np.float32), rs.randn(1, 2, lk, d).astype(np.float32),
            rs.randn(1, 2, lk, d).astype(np.float32))


def _sdpa(**kw):
    return lambda q, k, v, *m: F.scaled_dot_product_attention(q, k, v, *m, **kw)


@pytest.mark.parametrize("bad", [-INF, INF, NAN])
def test_sdpa_query_row_of_inf_or_nan_is_nan(bad):
    q, k, v = _qkv()
    q[0, 0, 1] = bad
    y = _both(_sdpa(), q, k, v, grad=True)[0]
    assert np.isnan(y[0, 0, 1]).all()           # PyTorch: the row is nan
    assert np.isfinite(np.delete(y[0, 0], 1, axis=0)).all() and np.isfinite(y[0, 1]).all()


@pytest.mark.parametrize("bad", [INF, NAN])
def test_sdpa_mask_with_nan_or_inf_gives_a_nan_row(bad):
    q, k, v = _qkv()
    m = np.zeros((3, 3), np.float32)
    m[0, 1] = bad
    y = _both(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m), q, k, v, m)
    assert np.isnan(y[:, :, 0]).all() and np.isfinite(y[:, :, 1:]).all()


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_sdpa_scale_zero_or_negative_with_inf_inputs(scale):
    q, k, v = _qkv()
    k[0, 0, 0, 0] = INF
    y = _both(_sdpa(scale=scale), q, k, v)
    # scale 0: 0 * inf = nan in every row of head 0; scale -1: -inf or nan scores
    assert np.isnan(y[0, 0]).all() if scale == 0.0 else np.isnan(y[0, 0]).any()
    assert np.isfinite(y[0, 1]).all()


def test_sdpa_scale_zero_gives_zero_query_and_key_grads():
    # scale 0 multiplies the score gradient before the products (PyTorch's order): q.grad
    # and k.grad are exactly 0 even when gs @ k overflows (values of 1e37)
    q = np.array([1.0, -2.0, 0.5], np.float32).reshape(1, 1, 3, 1)
    k = np.array([1e3, -1e3, 2e3, 5e2], np.float32).reshape(1, 1, 4, 1)
    v = np.array([1e38, -1e38, 5e37, 0.0], np.float32).reshape(1, 1, 4, 1)
    out, (gq, gk, gv) = _both(_sdpa(scale=0.0), q, k, v, grad=True)
    np.testing.assert_array_equal(gq, 0.0)
    np.testing.assert_array_equal(gk, 0.0)


def test_sdpa_fully_masked_row_agrees():
    q, k, v = _qkv()
    m = np.zeros((3, 3), np.float32)
    m[2] = -INF
    y, grads = _both(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                     q, k, v, m, grad=True, const=(3,))
    # the flash kernels' (and PyTorch >= 2.5's) answer for a row with every key hidden
    np.testing.assert_array_equal(y[:, :, 2], 0.0)
    assert all(np.isfinite(g).all() for g in grads)


def test_sdpa_huge_queries_identical_keys_causal_rows_are_normalized():
    # |scores| ~ 1e30: lse = max + log(n) rounds log(n) away; the output must still be
    # the average of the visible values (PyTorch's answer), not their sum
    q = np.full((1, 1, 3, 2), 1e30, np.float32)
    k = np.ones((1, 1, 3, 2), np.float32)
    v = np.arange(6, dtype=np.float32).reshape(1, 1, 3, 2)
    for be in BACKENDS:
        out, (gq, gk, gv) = _run(be, _sdpa(is_causal=True), q, k, v, grad=True)
        want = np.array([[0, 1], [1, 2], [2, 3]], np.float32)
        np.testing.assert_allclose(out[0, 0], want, rtol=1e-6)
        # gv = p^T gy with p[i, j] = 1 / (i + 1) for j <= i (not 1: the rows sum to one)
        p = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
        np.testing.assert_allclose(gv[0, 0], p.T @ _gy(out.shape, np.float64)[0, 0], rtol=1e-5)
        # identical keys: q.grad is 0 up to rounding
        np.testing.assert_allclose(gq, 0.0, atol=1e-6)


def test_sdpa_backward_one_hot_rows_with_huge_q_have_zero_key_grad():
    rs = np.random.RandomState(1)
    q = (rs.randn(1, 1, 4, 3) * 1e30).astype(np.float32)
    k = rs.randn(1, 1, 5, 3).astype(np.float32)
    v = rs.randn(1, 1, 5, 3).astype(np.float32)
    out, (gq, gk, gv) = _both(_sdpa(), q, k, v, grad=True)
    # every row is one-hot: PyTorch's k.grad and q.grad are exactly 0
    np.testing.assert_array_equal(gk, 0.0)
    np.testing.assert_array_equal(gq, 0.0)


# ---------------------------------------------------------------- conv
@pytest.mark.parametrize("algo", ["naive", "im2col", "winograd", "fft"])
def test_conv_nan_weight_is_nan_at_padded_positions(algo):
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = NAN
    y = _both(lambda x, w: F.conv2d(x, w, padding=1, algo=algo), x, w)
    assert np.isnan(y).all()                    # PyTorch: every output is nan


@pytest.mark.parametrize("algo", ["naive", "im2col", "fft"])
@pytest.mark.parametrize("padding", [10 ** 6, 2 ** 31, 2 ** 62])
@pytest.mark.parametrize("stride", [1, 3])
def test_conv_huge_padding_raises(algo, padding, stride):
    x = fg.tensor(np.ones((1, 1, 4, 4), np.float32), backend="rust", requires_grad=True)
    w = fg.tensor(np.ones((1, 1, 3, 3), np.float32), backend="rust", requires_grad=True)
    with pytest.raises((MemoryError, ValueError)):
        F.conv2d(x, w, padding=padding, stride=stride, algo=algo)
    # the process survives and the next call works
    assert F.conv2d(x, w, padding=1, algo=algo).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("padding", [10 ** 6, 2 ** 31, 2 ** 62])
def test_conv_winograd_huge_padding_raises(padding):
    x = fg.tensor(np.ones((1, 1, 4, 4), np.float32), backend="rust")
    w = fg.tensor(np.ones((1, 1, 3, 3), np.float32), backend="rust")
    with pytest.raises((MemoryError, ValueError)):
        F.conv2d(x, w, padding=padding, algo="winograd")


def _conv_grads(algo, seed=0, reps=50):
    rs = np.random.RandomState(seed)
    # enough Winograd blocks (8 images x 16 tile rows) for the threads to share them
    # differently from call to call
    x = rs.randn(8, 16, 32, 31).astype(np.float32)
    w = rs.randn(16, 16, 3, 3).astype(np.float32)
    b = rs.randn(16).astype(np.float32)
    gy = rs.randn(8, 16, 32, 31).astype(np.float32)
    first = None
    for _ in range(reps):
        xt, wt, bt = (fg.tensor(a, backend="rust", requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, padding=1, algo=algo)
        (y * fg.tensor(gy, backend="rust")).sum().backward()
        got = [np.asarray(t.grad.numpy()).copy() for t in (xt, wt, bt)] + [np.asarray(y.numpy())]
        if first is None:
            first = got
        for a, e in zip(got, first):
            assert np.array_equal(a, e), f"{algo}: not bit-identical run to run"
    return first


@pytest.mark.parametrize("algo", ["naive", "im2col", "winograd", "fft"])
def test_conv_forward_backward_bit_identical_run_to_run(algo):
    _conv_grads(algo, reps=50)


_THREADS_SCRIPT = """
import sys, hashlib, numpy as np
sys.path.insert(0, {tests!r})
from test_numerics import _conv_grads
h = hashlib.sha256()
for algo in ("naive", "im2col", "winograd", "fft"):
    for a in _conv_grads(algo, reps=2):
        h.update(a.tobytes())
print(h.hexdigest())
"""


def test_conv_bit_identical_whatever_the_thread_count():
    script = _THREADS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for n in ("1", "3", "8"):
        env = dict(os.environ, RAYON_NUM_THREADS=n)
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    assert len(digests) == 1, digests


# ---------------------------------------------------------------- linear / im2col
def test_linear_overflowing_products_give_the_exact_sum():
    # 1e10 * -1e30 overflows float32; with the +inf term the exact sum is +inf. Whether a
    # GEMM makes it inf or NaN depends on its accumulation order and FMA use (OpenBLAS
    # itself gives NaN for some shapes and inf for others), so rust recomputes such NaNs
    # exactly; genuine NaN (a NaN input, inf - inf terms) stays.
    x = np.array([[1, 1e10, 1], [1e10, -2, INF], [1, 1, 1]], np.float32)
    w = np.array([[INF, -1e30, -1e30], [-1e30, -1e30, 2], [INF, -INF, 1]], np.float32)
    y = _run("rust", lambda x, w: F.linear(x, w), x, w)
    with np.errstate(all="ignore"):
        exact = (x.astype(np.float64)[:, None, :] * w.astype(np.float64)[None]).sum(-1)
    np.testing.assert_array_equal(y, exact.astype(np.float32))
    assert y[0, 0] == INF and y[1, 1] == INF and np.isnan(y[0, 2])


def test_conv_im2col_overflowing_products_give_the_exact_sum():
    x = np.array([1e10, 1.0], np.float32).reshape(1, 2, 1, 1)
    w = np.array([[-1e30, INF]], np.float32).reshape(1, 2, 1, 1)
    y = _run("rust", lambda x, w: F.conv2d(x, w, padding=1, algo="im2col"), x, w)
    # the centre is 1e10 * -1e30 + inf = inf exactly; the padded zeros times inf are NaN
    assert y[0, 0, 1, 1] == INF
    assert np.isnan(np.delete(y.ravel(), 4)).all()


def test_conv_bias_joins_the_exact_sum():
    # 1e20 * -1e30 overflows to -inf in float32, but the exact sum with a +inf bias is +inf
    # (linear's rule: the bias is inside the sum), not -inf + inf = NaN
    x = np.array([1e20, 1.0], np.float32).reshape(1, 2, 1, 1)
    w = np.array([[-1e30, 1.0]], np.float32).reshape(1, 2, 1, 1)
    b = np.array([INF], np.float32)
    y = _both(lambda x, w, b: F.conv2d(x, w, b, algo="im2col"), x, w, b)
    assert y.ravel()[0] == INF


@pytest.mark.parametrize("algo", ["winograd", "fft"])
def test_conv_transform_algos_give_the_direct_sum_for_infinite_inputs(algo):
    # a transform mixes a whole tile: one inf made every output of the tile NaN, where the
    # direct sum (im2col, PyTorch) has +inf at the taps that reach it and finite elsewhere
    x = np.random.RandomState(0).randn(1, 1, 6, 6).astype(np.float32)
    x[0, 0, 1, 1] = INF
    w = np.abs(np.random.RandomState(1).randn(1, 1, 3, 3)).astype(np.float32)
    direct = _run("numpy", lambda x, w: F.conv2d(x, w, algo="im2col"), x, w)
    assert np.isfinite(direct).any() and (direct == INF).any() and not np.isnan(direct).any()
    for be in BACKENDS:
        y, (gx, gw) = _run(be, lambda x, w: F.conv2d(x, w, algo=algo), x, w, grad=True)
        _same(y, direct)
        _, (gx_d, gw_d) = _run(be, lambda x, w: F.conv2d(x, w, algo="im2col"), x, w, grad=True)
        _same(gx, gx_d, rtol=1e-4)
        _same(gw, gw_d, rtol=1e-4)


def test_rnn_bias_joins_the_exact_input_projection():
    # x * w_ih overflows to +inf; with a -inf bias the exact sum is -inf (a closed gate),
    # not +inf - inf = NaN: both backends, LSTM and GRU
    x = np.full((1, 1, 1), 1e30, np.float32)
    for gates, op in ((4, fg.ops.rnn.lstm), (3, fg.ops.rnn.gru)):
        w_ih = np.full((gates, 1), 1e20, np.float32)
        w_hh = np.zeros((gates, 1), np.float32)
        b_ih = np.full((gates,), -INF, np.float32)
        b_hh = np.zeros((gates,), np.float32)
        y = _both(lambda *a: op(a[0], None, list(a[1:]))[0], x, w_ih, w_hh, b_ih, b_hh)
        assert np.isfinite(y).all()


def test_adaptive_avg_pool_overflow_follows_the_running_sum():
    # 3e38 + 3e38 overflows to +inf before the -inf arrives: NaN, as in rust and PyTorch
    # (numpy's pairwise sum reached -inf)
    x = np.array([0.1, 1.8, 1e20, -0.4, 0.2, 3e38, 3e38, -INF], np.float32).reshape(1, 1, 2, 4)
    y = _both(lambda x: F.adaptive_avg_pool2d(x, 1), x)
    assert np.isnan(y).all()


def test_mse_loss_of_empty_input_has_an_empty_gradient():
    for be in BACKENDS:
        x = fg.tensor(np.zeros(0, np.float32), backend=be, requires_grad=True)
        loss = F.mse_loss(x, fg.tensor(np.zeros(0, np.float32), backend=be))
        assert np.isnan(loss.item())
        loss.backward()
        assert x.grad.shape == (0,)


def test_sdpa_nan_value_behind_the_causal_mask_reaches_every_gradient_like_the_output():
    # v's NaN at a key hidden from a row still enters p @ v (0 * NaN) in the forward, as in
    # PyTorch; the backward's delta = sum_j p dp then holds it too, on both backends
    rs = np.random.RandomState(2)
    q = (rs.randn(1, 1, 2, 1) * 1e28).astype(np.float32)   # one-hot rows: the exact path
    k = rs.randn(1, 1, 4, 1).astype(np.float32)
    v = rs.randn(1, 1, 4, 3).astype(np.float32)
    v[0, 0, 3, 1] = NAN
    _both(_sdpa(is_causal=True), q, k, v, grad=True)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_norm_weight_grad_of_deviations_near_float32_max(norm):
    # sum gy (x - mean) overflows float32 for values of 3e38, xhat = (x - mean) rstd does
    # not: the weight gradient is finite on both backends (the fuzz case: gy of ones)
    shape = (3, 2, 4, 2) if norm == "group" else (3, 2, 4, 4)  # spans of 8 and 16
    x = np.random.RandomState(3).randn(*shape).astype(np.float32)
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = x[2, 1, 3, 1] = 3e38
    grads = []
    for be in BACKENDS:
        xt, w, b = (fg.tensor(a, backend=be, requires_grad=True) for a in
                    (x, np.array([-0.76, 0.22], np.float32), np.array([1.1, 1.5], np.float32)))
        y = (F.group_norm(xt, 1, w, b) if norm == "group"
             else F.batch_norm(xt, None, None, w, b, training=True))
        y.sum().backward()
        grads.append((w.grad.numpy(), b.grad.numpy()))
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    # gy of ones: the weight gradient sums xhat, about 0 for batch norm (rounding noise)
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-5)


@pytest.mark.parametrize("be", BACKENDS)
def test_batch_norm_of_an_empty_plane_backward(be):
    # H = 0: no columns; the column-block size was 256 / 0 on rust (a panic)
    x = fg.tensor(np.zeros((2, 4, 0, 1), np.float32), backend=be, requires_grad=True)
    w = fg.tensor(np.ones(4, np.float32), backend=be, requires_grad=True)
    rm, rv = (fg.tensor(np.zeros(4, np.float32), backend=be),
              fg.tensor(np.ones(4, np.float32), backend=be))
    y = F.batch_norm(x, rm, rv, w, None, training=False)
    y.sum().backward()
    assert x.grad.shape == (2, 4, 0, 1) and np.array_equal(w.grad.numpy(), np.zeros(4))


@pytest.mark.parametrize("algo", ["naive", "im2col", "fft"])
def test_conv_stride_of_2_62_gives_one_output(algo):
    for be in BACKENDS:
        x = fg.tensor(np.ones((1, 1, 5, 5), np.float32), backend=be, requires_grad=True)
        w = fg.tensor(np.ones((1, 1, 3, 3), np.float32), backend=be)
        y = F.conv2d(x, w, stride=2 ** 62, algo=algo)
        y.sum().backward()
        assert y.shape == (1, 1, 1, 1) and y.item() == 9.0
        assert x.grad.numpy().sum() == 9.0


def test_sdpa_backward_overflowing_terms_agree():
    # identical keys, |v| ~ 1e30 and |q| ~ 1e25: ds * q overflows float32, and its sign
    # (or NaN) depended on the summation order; both backends recompute such heads in f64
    rs = np.random.RandomState(4)
    q = (rs.randn(1, 1, 2, 2) * 1e25).astype(np.float32)
    k = np.full((1, 1, 4, 2), -2.5, np.float32)
    v = (rs.randn(1, 1, 4, 2) * 1e28).astype(np.float32)
    v[0, 0, 0, 1] = 1.4e30
    m = np.array([[False, True, True, True], [True, True, False, True]])
    _both(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=fg.tensor(m), scale=-1.0),
          q, k, v, grad=True, gtol=1e-3)


@pytest.mark.parametrize("be", BACKENDS)
def test_batch_norm_eval_reads_read_only_running_stats(be):
    rm, rv = np.array([2.0, -3.0], np.float32), np.array([4.0, 1.0], np.float32)
    rm.flags.writeable = rv.flags.writeable = False
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    if be == "cuda":
        pytest.skip("cuda arrays are device memory: no read-only host arrays")
    b = fg.get_backend(be)
    stats = [fg.Tensor(b.from_numpy(a), b) for a in (rm, rv)]  # the arrays themselves
    y = F.batch_norm(fg.tensor(x, backend=be), *stats, training=False, eps=0.0)
    want = (x - rm[None, :, None]) / np.sqrt(rv)[None, :, None]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("be", BACKENDS)
def test_requests_beyond_the_machine_are_memory_errors_before_any_allocation(be):
    # under vm.overcommit_memory = 1 (the GPU host's setting) a 16 TB allocation succeeds
    # and touching it gets the process killed: such sizes are refused from the machine's
    # memory first, on every backend, and the next call works
    x = fg.tensor(np.ones((1, 1, 4, 4), np.float32), backend=be)
    w = fg.tensor(np.ones((1, 1, 3, 3), np.float32), backend=be)
    for algo in ("naive", "im2col", "fft"):
        with pytest.raises(MemoryError, match="conv2d output of 2000002x2000002"):
            F.conv2d(x, w, padding=10 ** 6, algo=algo)
    with pytest.raises(MemoryError, match="adaptive pool output"):
        F.adaptive_avg_pool2d(x, (10 ** 6, 10 ** 6))
    if be != "cuda":  # a device allocation fails on its own (PyCUDA's error)
        big = F.expand(fg.tensor(np.ones((1, 1), np.float32), backend=be), (2 ** 21, 2 ** 21))
        with pytest.raises(MemoryError):
            big + fg.tensor(np.ones((1, 2 ** 21), np.float32), backend=be)
    assert F.conv2d(x, w, padding=1).shape == (1, 1, 4, 4)


def test_sdpa_average_of_values_near_float32_max_is_finite():
    # two keys of equal score over values of 3e38: the average is 3e38; flash's running
    # sum (normalized at the end) reached 6e38 = inf in float32. Causal rows and an inf
    # value every row sees (which stays inf) ride along.
    q = np.zeros((1, 1, 3, 1), np.float32)
    k = np.zeros((1, 1, 3, 1), np.float32)
    v = np.full((1, 1, 3, 2), 3e38, np.float32)
    v[0, 0, 0, 1] = np.inf
    for causal in (False, True):
        y = _both(_sdpa(is_causal=causal), q, k, v)
        np.testing.assert_allclose(y[0, 0], [[3e38, np.inf]] * 3, rtol=1e-6)


def test_conv_weight_grad_sums_the_batch_exactly():
    # image 0's window sum is -inf (a genuine -inf), image 1's overflows float32 to +inf
    # (3e38 + 3e38): the exact sum over the batch is -inf, not -inf + inf = NaN
    x = np.zeros((2, 1, 1, 3), np.float32)
    x[0, 0, 0, 0] = -INF
    x[1, 0, 0, :2] = 3e38
    w = np.ones((1, 1, 1, 1), np.float32)
    for be in BACKENDS:
        xt, wt = (fg.tensor(a, backend=be, requires_grad=True) for a in (x, w))
        F.conv2d(xt, wt, algo="im2col").sum().backward()
        assert wt.grad.numpy()[0, 0, 0, 0] == -INF, be
