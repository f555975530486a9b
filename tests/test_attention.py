"""Scaled dot-product attention (plain, flash, numpy tiled) and MultiheadAttention.

Flash kernels of every backend against the numpy reference (hypothesis over batch,
heads, grouped key/value heads, lengths 1 / not a multiple of the tile / query != key,
head dims, boolean / float / causal masks and rows with one visible key); the numpy tiled
(flash) reference against the plain one; float64 gradcheck on numpy and rust; rows whose
keys are all hidden; dropout; bad input; PyTorch as an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.backends import _attention
from ferrograd.ops.attention import attention
from ferrograd.testing import assert_close, check_against_numpy
from ferrograd.testing.strategies import sides

from conftest import dtype_backend_ok

RED = dict(kind="reduction", grad_kind="reduction")
LENGTHS = st.one_of(st.sampled_from([1, 2, 5, 33, 65]), st.integers(1, 40))


@st.composite
def attention_case(draw, dtype):
    b = draw(sides(3), label="batch")
    hk = draw(st.sampled_from([1, 2]), label="kv_heads")
    h = hk * draw(st.sampled_from([1, 2, 3]), label="group")
    lq, lk = draw(LENGTHS, label="lq"), draw(LENGTHS, label="lk")
    d = draw(st.sampled_from([1, 3, 8, 16, 32, 64]), label="d")  # 32, 64: cuda wide kernel
    dv = draw(st.sampled_from([d, 5]), label="dv")
    mask_kind = draw(st.sampled_from(["none", "bool", "float", "causal", "one_key"]), label="mask")
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="seed"))
    q = rng.standard_normal((b, h, lq, d)).astype(dtype)
    k = rng.standard_normal((b, hk, lk, d)).astype(dtype)
    v = rng.standard_normal((b, hk, lk, dv)).astype(dtype)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((1, h, lq, lk)) > 0.4
        mask[..., 0] = True               # every row keeps a key
    elif mask_kind == "float":
        mask = (rng.standard_normal((b, 1, lq, lk)) * 2).astype(dtype)
    elif mask_kind == "one_key":          # all but one key hidden in every row
        mask = np.zeros((b, h, lq, lk), dtype=bool)
        mask[..., rng.integers(0, lk)] = True
    return q, k, v, mask, mask_kind == "causal"


def _sdpa(mask, causal, scale=None):
    return lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True)


# ------------------------------------------------------------- values vs numpy
# the cases of the cuda tile-kernel tests below: several query / key tiles, ragged edges
TILE_CASES = [(200, 130, "causal"), (130, 200, "causal"), (129, 191, "float"), (64, 64, "bool"),
              (70, 300, "one_key"), (1, 257, "none")]


def _tile_test_case(rng, mask_kind, d, lq, lk):
    """q, k, v (batch 2, 4 query heads on 2 key/value heads) and the mask of a tile-kernel
    test."""
    b, h, hk = 2, 4, 2
    q = rng.standard_normal((b, h, lq, d)).astype(np.float32)
    k = rng.standard_normal((b, hk, lk, d)).astype(np.float32)
    v = rng.standard_normal((b, hk, lk, d)).astype(np.float32)
    return q, k, v, _tile_test_mask(rng, mask_kind, b, h, lq, lk)


def _tile_test_mask(rng, mask_kind, b, h, lq, lk):
    """The mask of a tile-kernel test: boolean with a row whose keys are all hidden (zeros,
    lse -inf, like torch's flash), float broadcast over the batch, one visible key per row
    broadcast over heads, or none (also for "causal")."""
    if mask_kind == "bool":
        mask = rng.random((b, h, lq, lk)) > 0.5
        mask[0, 0, 3] = False
        return mask
    if mask_kind == "float":
        return (rng.standard_normal((1, h, lq, lk)) * 3).astype(np.float32)
    if mask_kind == "one_key":
        mask = np.zeros((b, 1, lq, lk), dtype=bool)
        mask[:, :, np.arange(lq), rng.integers(0, lk, size=lq)] = True
        return mask
    return None


@pytest.mark.cuda
@pytest.mark.parametrize("d", [32, 64])
@pytest.mark.parametrize("lq,lk,mask_kind", TILE_CASES)
def test_cuda_wide_forward_matches_numpy(d, lq, lk, mask_kind):
    """attention.cu's wide forward (head dims 32 and 64) and, through the gradients, the
    tiled backward (head dim 64; 32 takes the one-thread-per-row kernels) over several
    query / key tiles, ragged edges, causal with lq != lk, masks, a row with every key
    hidden and grouped key/value heads."""
    from conftest import require_backend

    require_backend("cuda")
    rng = np.random.default_rng(lq * 1000 + lk + d)
    q, k, v, mask = _tile_test_case(rng, mask_kind, d, lq, lk)
    check_against_numpy(_sdpa(mask, mask_kind == "causal"), [q, k, v], "cuda", **RED)


@pytest.mark.cuda
@pytest.mark.parametrize("d", [32, 64])
@pytest.mark.parametrize("lq,lk,mask_kind", TILE_CASES)
def test_cuda_tf32_forward_only_when_allowed(d, lq, lk, mask_kind):
    """attention_forward_tf32_* runs only with fg.backends.cuda.matmul.allow_tf32: values
    of 1 + 2^-12 (exact in float32, 1 in TF32) under uniform attention come out unchanged
    on the float32 path and as 1 on the TF32 one. With TF32 allowed, random inputs over
    several query / key tiles, ragged edges, masks and grouped heads stay within TF32's
    error of the float64 reference (lse too, without a mask)."""
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    flags = fg.backends.cuda.matmul
    assert flags.allow_tf32 is False
    q0 = np.zeros((1, 1, 5, d), np.float32)
    k0 = np.random.default_rng(0).standard_normal((1, 1, 64, d)).astype(np.float32)
    v0 = np.full((1, 1, 64, d), 1 + 2.0 ** -12, np.float32)
    args = [be.from_numpy(a) for a in (q0, k0, v0)]
    out, _ = be.attention_forward(*args, None, 1.0, False)
    assert np.all(out.get() == np.float32(1 + 2.0 ** -12))
    rng = np.random.default_rng(lq * 1000 + lk + d)
    q, k, v, mask = _tile_test_case(rng, mask_kind, d, lq, lk)
    causal, scale = mask_kind == "causal", 1.0 / np.sqrt(d)
    sdpa = _sdpa(mask, causal)
    flags.allow_tf32 = True
    try:
        out, _ = be.attention_forward(*args, None, 1.0, False)
        assert np.all(out.get() == np.float32(1.0))
        got = sdpa(*(fg.tensor(a, backend="cuda") for a in (q, k, v))).numpy()
        if mask is None:
            _, lse = be.attention_forward(*(be.from_numpy(a) for a in (q, k, v)), None, scale, causal)
    finally:
        flags.allow_tf32 = False
    want = sdpa(*(fg.tensor(a.astype(np.float64), backend="numpy") for a in (q, k, v))).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-2)
    if mask is None:
        ref = fg.get_backend("numpy")
        _, lse_want = ref.attention_forward(*(a.astype(np.float64) for a in (q, k, v)), None, scale, causal)
        np.testing.assert_allclose(lse.get(), lse_want, rtol=0, atol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("lq,lk,mask_kind", TILE_CASES)
def test_cuda_tf32_backward_only_when_allowed(lq, lk, mask_kind):
    """attention_backward_tf32_d64 runs only with TF32 allowed: under uniform attention
    (q = 0) over 64 keys and 64 queries, gv = sum of gout = 1 + 2^-12 (float32) or 1 (the
    TF32 rounding of gout). With TF32 allowed, the gradients of random inputs over several
    tiles, ragged edges, masks, a fully hidden row and grouped heads stay within TF32's
    error of the float64 reference."""
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    flags = fg.backends.cuda.matmul
    d = 64
    q0 = np.zeros((1, 1, 64, d), np.float32)
    k0 = np.random.default_rng(0).standard_normal((1, 1, 64, d)).astype(np.float32)
    v0 = np.random.default_rng(1).standard_normal((1, 1, 64, d)).astype(np.float32)
    g0 = np.full((1, 1, 64, d), (1 + 2.0 ** -12) / 64, np.float32)

    def gv_uniform():
        args = [be.from_numpy(a) for a in (q0, k0, v0)]
        out, lse = be.attention_forward(*args, None, 1.0, False)
        return be.attention_backward(*args, None, 1.0, False, out, lse, be.from_numpy(g0))[2].get()

    np.testing.assert_allclose(gv_uniform(), (1 + 2.0 ** -12) / 64, rtol=2e-6)
    rng = np.random.default_rng(lq * 1000 + lk)
    q, k, v, mask = _tile_test_case(rng, mask_kind, d, lq, lk)
    gout = rng.standard_normal(q.shape).astype(np.float32)
    sdpa = _sdpa(mask, mask_kind == "causal")

    def grads(backend, dtype):
        ts = [fg.tensor(a.astype(dtype), backend=backend, requires_grad=True) for a in (q, k, v)]
        sdpa(*ts).backward(fg.tensor(gout.astype(dtype), backend=backend))
        return [t.grad.numpy() for t in ts]

    flags.allow_tf32 = True
    try:
        np.testing.assert_allclose(gv_uniform(), 1 / 64, rtol=2e-6)
        got = grads("cuda", np.float32)
    finally:
        flags.allow_tf32 = False
    want = grads("numpy", np.float64)
    for name, a, w in zip("qkv", got, want):
        np.testing.assert_allclose(a, w, rtol=0, atol=2e-2 * max(1.0, float(np.abs(w).max())),
                                   err_msg=f"gradient of {name}")


@given(data=st.data())
def test_flash_matches_numpy(backend, dtype, data):
    dtype_backend_ok(backend, dtype)
    q, k, v, mask, causal = data.draw(attention_case(dtype))
    check_against_numpy(_sdpa(mask, causal), [q, k, v], backend, **RED)


@given(data=st.data(), block=st.sampled_from([1, 4, 7, 32]))
def test_numpy_tiled_matches_plain(data, block):
    q, k, v, mask, causal = data.draw(attention_case(np.float64))
    h = q.shape[1]
    add = None
    if mask is not None:
        from ferrograd.ops.attention import mask_to_additive
        add = mask_to_additive(mask, (q.shape[0], h), h, q.shape[2], k.shape[2], np.float64)
    scale = 0.7
    out, lse = _attention.plain_forward(q, k, v, add, scale, causal)
    out2, lse2 = _attention.tiled_forward(q, k, v, add, scale, causal, block=block)
    assert_close(out2, out, kind="reduction")
    assert_close(lse2, lse, kind="reduction")
    gout = np.random.default_rng(1).standard_normal(out.shape)
    g1 = _attention.plain_backward(q, k, v, add, scale, causal, out, lse, gout)
    g2 = _attention.tiled_backward(q, k, v, add, scale, causal, out, lse, gout, block=block)
    for a, e in zip(g2, g1):
        assert_close(a, e, kind="reduction")


def test_plain_path_matches_flash(cpu_backend):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s) for s in ((2, 4, 9, 8), (2, 2, 11, 8), (2, 2, 11, 6)))
    mask = rng.random((9, 11)) > 0.5
    mask[:, 3] = True
    for m, causal in ((mask, False), (None, True)):
        ts = [fg.tensor(a, backend=cpu_backend) for a in (q, k, v)]
        flash = F.scaled_dot_product_attention(*ts, attn_mask=m, is_causal=causal, enable_gqa=True)
        plain, w = attention(*ts, m, 0.0, causal, None, True, need_weights=True)
        assert_close(plain.numpy(), flash.numpy(), kind="reduction")
        assert_close(w.numpy().sum(-1), np.ones(w.shape[:-1]), kind="reduction")


@pytest.mark.parametrize("d", [32, 64])
def test_head_dims_32_64_match_numpy(backend, d):
    """D = Dv = 32 / 64 run the cuda kernels specialized for them; every case here too."""
    rng = np.random.default_rng(d)
    q = rng.standard_normal((2, 4, 37, d)).astype(np.float32)
    k = rng.standard_normal((2, 2, 70, d)).astype(np.float32)
    v = rng.standard_normal((2, 2, 70, d)).astype(np.float32)
    mask = rng.random((2, 1, 37, 70)) > 0.5
    mask[:, :, 3] = False               # a row with every key hidden
    for m, causal in ((None, False), (mask, False), (None, True)):
        check_against_numpy(_sdpa(m, causal), [q, k, v], backend, **RED)


@pytest.mark.cuda
def test_cuda_flash_memory_is_linear():
    """Flash attention at L = 4096 allocates far less than one L x L score matrix."""
    from conftest import require_backend

    require_backend("cuda")
    be = fg.get_backend("cuda")
    h, l, d = 2, 4096, 64
    ts = [fg.tensor(np.ones((1, h, l, d), np.float32), backend="cuda") for _ in range(3)]
    be._pool.free_held()
    be.synchronize()
    before = be._drv.mem_get_info()[0]
    with fg.no_grad():
        out = F.scaled_dot_product_attention(*ts)
    be.synchronize()
    used = before - be._drv.mem_get_info()[0]
    assert out.shape == (1, h, l, d)
    assert used < h * l * l * 4 // 4, f"flash attention used {used} bytes"


# -------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("case", ["plain", "bool", "causal", "gqa_float", "weights"])
def test_attention_gradcheck(cpu_backend, case):
    rng = np.random.default_rng(7)
    hk = 1 if case == "gqa_float" else 2
    q = rng.standard_normal((1, 2, 3, 4))
    k = rng.standard_normal((1, hk, 5, 4))
    v = rng.standard_normal((1, hk, 5, 3))
    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (q, k, v)]
    mask = None
    if case == "bool":
        mask = rng.random((3, 5)) > 0.5
        mask[:, 1] = True
    if case == "gqa_float":
        mask = rng.standard_normal((1, 1, 3, 5))
    if case == "weights":
        fn = lambda a, b, c: attention(a, b, c, None, 0.0, False, 0.5, False, need_weights=True)[0]  # noqa: E731
    else:
        fn = _sdpa(mask, case == "causal")
    assert fg.gradcheck(fn, ts)


@pytest.mark.parametrize("mask_shape", [(2, 2, 3, 5), (3, 5), (2, 1, 1, 5), (1, 2, 3, 1)])
def test_learned_float_mask_gets_its_gradient(cpu_backend, mask_shape):
    """A float mask that requires grad is differentiated (the scores' gradient summed
    over the axes it broadcasts over), gradcheck in float64 over full and broadcast mask
    shapes and grouped heads; its output equals the flash path's with the same mask as a
    constant."""
    rng = np.random.default_rng(len(mask_shape) * 10 + mask_shape[-1])
    q = rng.standard_normal((2, 2, 3, 4))
    k = rng.standard_normal((2, 1, 5, 4))
    v = rng.standard_normal((2, 1, 5, 3))
    m = rng.standard_normal(mask_shape)
    ts = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (q, k, v, m)]

    def fn(a, b, c, mask):
        return F.scaled_dot_product_attention(a, b, c, attn_mask=mask, enable_gqa=True)

    assert fg.gradcheck(fn, ts)
    out = fn(*ts)
    with fg.no_grad():
        flash = fn(*ts)  # the mask no longer requires grad here: the flash kernels
    assert_close(out.numpy(), flash.numpy(), kind="reduction")
    out.backward(fg.tensor(np.ones(out.shape), backend=cpu_backend))
    assert ts[3].grad.shape == mask_shape


def test_learned_float_mask_matches_torch(cpu_backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 4, 7, 8)) for _ in range(3))
    m = rng.standard_normal((4, 7, 7))  # a per-head relative-position bias
    gy = rng.standard_normal((2, 4, 7, 8))
    tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v, m)]
    torch.nn.functional.scaled_dot_product_attention(*tt[:3], attn_mask=tt[3]).backward(torch.tensor(gy))
    ft = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (q, k, v, m)]
    F.scaled_dot_product_attention(*ft[:3], attn_mask=ft[3]).backward(fg.tensor(gy, backend=cpu_backend))
    for a, b in zip(ft, tt):
        assert_close(a.grad.numpy(), b.grad.numpy(), kind="reduction")


@pytest.mark.cuda
def test_cuda_learned_float_mask_gradient():
    from conftest import require_backend

    require_backend("cuda")
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 4, 33, 16)).astype(np.float32) for _ in range(3))
    m = rng.standard_normal((1, 4, 33, 33)).astype(np.float32)
    check_against_numpy(lambda a, b, c, mask: F.scaled_dot_product_attention(a, b, c, attn_mask=mask),
                        [q, k, v, m], "cuda", **RED)


# ------------------------------------------------------------- edge cases
def test_fully_masked_rows_give_zero(backend):
    """A row whose keys are all hidden gives 0 and zero gradients (PyTorch's SDPA)."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 2, 4, 8), (2, 2, 6, 8), (2, 2, 6, 8)))
    mask = rng.random((4, 6)) > 0.3
    mask[:, 0] = True
    mask[2] = False
    ts = [fg.tensor(a, backend=backend, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, attn_mask=mask)
    o = out.numpy()
    assert np.all(o[:, :, 2] == 0) and np.all(np.isfinite(o))
    out.backward(fg.tensor(np.ones(o.shape, np.float32), backend=backend))
    assert np.all(ts[0].grad.numpy()[:, :, 2] == 0)
    for t in ts:
        assert np.all(np.isfinite(t.grad.numpy()))


@pytest.mark.parametrize("shape", [((3, 8), (5, 8), (5, 2)), ((2, 0, 4), (2, 3, 4), (2, 3, 4)),
                                   ((1, 2, 4), (1, 0, 4), (1, 0, 4))])
def test_edge_shapes(backend, shape):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in shape)
    ts = [fg.tensor(a, backend=backend) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts)
    ref = F.scaled_dot_product_attention(*[fg.tensor(a) for a in (q, k, v)])
    assert out.shape == q.shape[:-1] + (v.shape[-1],)
    assert_close(out.numpy(), ref.numpy(), kind="reduction")
    if shape[1][-2] == 0:  # no key at all: every row hidden, 0
        assert np.all(out.numpy() == 0)


def test_dropout_path():
    rng = np.random.default_rng(0)
    ts = [fg.tensor(rng.standard_normal((1, 2, 5, 4))) for _ in range(3)]
    fg.manual_seed(3)
    a = F.scaled_dot_product_attention(*ts, dropout_p=0.5).numpy()
    fg.manual_seed(3)
    b = F.scaled_dot_product_attention(*ts, dropout_p=0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, F.scaled_dot_product_attention(*ts).numpy())
    assert np.all(F.scaled_dot_product_attention(*ts, dropout_p=1.0).numpy() == 0)


# -------------------------------------------------------------------- bad input
def test_bad_input():
    t = lambda *s: fg.tensor(np.zeros(s, np.float32))  # noqa: E731
    with pytest.raises(ValueError, match="key: expected embedding size 4"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 3, 5), t(1, 2, 3, 5))
    with pytest.raises(ValueError, match="value: expected leading shape"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 3, 4), t(1, 2, 6, 4))
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(t(1, 4, 3, 4), t(1, 2, 3, 4), t(1, 2, 3, 4))
    with pytest.raises(ValueError, match="key: expected leading dims"):
        F.scaled_dot_product_attention(t(1, 4, 3, 4), t(1, 3, 3, 4), t(1, 3, 3, 4), enable_gqa=True)
    with pytest.raises(ValueError, match="attn_mask: expected a shape that broadcasts"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 5, 4), t(1, 2, 5, 4), attn_mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="attn_mask: expected None when is_causal"):
        F.scaled_dot_product_attention(t(1, 3, 4), t(1, 3, 4), t(1, 3, 4), attn_mask=np.ones((3, 3), bool),
                                       is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(t(3, 4), t(3, 4), t(3, 4), dropout_p=1.5)
    with pytest.raises(ValueError, match="scale"):
        F.scaled_dot_product_attention(t(3, 4), t(3, 4), t(3, 4), scale=float("nan"))
    with pytest.raises(ValueError, match="query: expected at least 2 dimensions"):
        F.scaled_dot_product_attention(t(4), t(3, 4), t(3, 4))
    with pytest.raises(TypeError, match="value: expected dtype float32"):
        F.scaled_dot_product_attention(t(3, 4), t(3, 4), fg.tensor(np.zeros((3, 4))))
    with pytest.raises(TypeError, match="is_causal"):
        F.scaled_dot_product_attention(t(3, 4), t(3, 4), t(3, 4), is_causal="yes")


@pytest.mark.parametrize("be", ["numpy", "rust"])
def test_kernel_bad_input(be):
    b = fg.get_backend(be)
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="k: expected a number of heads dividing"):
        b.attention_forward(z(1, 4, 3, 2), z(1, 3, 3, 2), z(1, 3, 3, 2), None, 1.0, False)
    with pytest.raises(ValueError, match="mask: expected shape"):
        b.attention_forward(z(1, 2, 3, 2), z(1, 2, 3, 2), z(1, 2, 3, 2), z(2, 2, 3, 3), 1.0, False)
    with pytest.raises(TypeError, match="k: expected dtype float32"):
        b.attention_forward(z(1, 2, 3, 2), np.zeros((1, 2, 3, 2)), z(1, 2, 3, 2), None, 1.0, False)
    with pytest.raises(ValueError, match="lse: expected shape"):
        b.attention_backward(z(1, 2, 3, 2), z(1, 2, 3, 2), z(1, 2, 3, 2), None, 1.0, False,
                             z(1, 2, 3, 2), z(1, 2, 4), z(1, 2, 3, 2))


# ------------------------------------------------------------------ PyTorch oracle
def test_sdpa_matches_torch(cpu_backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for hk, mask_kind, causal in ((4, "bool", False), (2, "float", False), (1, None, True), (4, "dead", False)):
        q = rng.standard_normal((2, 4, 13, 8))
        k = rng.standard_normal((2, hk, 17, 8))
        v = rng.standard_normal((2, hk, 17, 6))
        mask = None
        if mask_kind == "bool":
            mask = rng.random((2, 1, 13, 17)) > 0.5
        elif mask_kind == "float":
            mask = rng.standard_normal((13, 17))
        elif mask_kind == "dead":   # some rows with every key hidden
            mask = rng.random((13, 17)) > 0.5
            mask[[0, 5]] = False
        tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        tm = None if mask is None else torch.tensor(mask)
        to = torch.nn.functional.scaled_dot_product_attention(*tt, attn_mask=tm, is_causal=causal,
                                                              enable_gqa=hk != 4)
        ft = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in (q, k, v)]
        fo = F.scaled_dot_product_attention(*ft, attn_mask=mask, is_causal=causal, enable_gqa=hk != 4)
        gy = rng.standard_normal(fo.shape)
        to.backward(torch.tensor(gy))
        fo.backward(fg.tensor(gy, backend=cpu_backend))
        assert_close(fo.numpy(), to.detach().numpy(), kind="reduction")
        for a, b in zip(ft, tt):
            assert_close(a.grad.numpy(), b.grad.numpy(), kind="reduction")


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_matches_torch(cpu_backend, batch_first):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    tm = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first).double()
    fm = nn.MultiheadAttention(16, 4, batch_first=batch_first, backend=cpu_backend, dtype=np.float64)
    assert sorted(fm.state_dict()) == sorted(tm.state_dict())
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((3, 5, 16))
    n, l = (3, 5) if batch_first else (5, 3)
    kp = rng.random((n, l)) > 0.7
    kp[:, 0] = False
    am = rng.random((l, l)) > 0.8
    am[:, 0] = False
    for need_weights, avg in ((True, True), (True, False), (False, True)):
        tx = torch.tensor(x, requires_grad=True)
        fx = fg.tensor(x, backend=cpu_backend, requires_grad=True)
        to, tw = tm(tx, tx, tx, key_padding_mask=torch.tensor(kp), attn_mask=torch.tensor(am),
                    need_weights=need_weights, average_attn_weights=avg)
        fo, fw = fm(fx, fx, fx, key_padding_mask=kp, attn_mask=am, need_weights=need_weights,
                    average_attn_weights=avg)
        assert_close(fo.numpy(), to.detach().numpy(), kind="reduction")
        if need_weights:
            assert_close(fw.numpy(), tw.detach().numpy(), kind="reduction")
        else:
            assert fw is None
        to.sum().backward()
        fo.sum().backward()
        assert_close(fx.grad.numpy(), tx.grad.numpy(), kind="reduction")
    # parameter gradients
    assert_close(fm.in_proj_weight.grad.numpy(), tm.in_proj_weight.grad.numpy(), kind="reduction")


def test_multihead_attention_kdim_unbatched_causal():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    tm = torch.nn.MultiheadAttention(8, 2, kdim=5, vdim=3).double()
    fm = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, backend="rust", dtype=np.float64)
    assert sorted(fm.state_dict()) == sorted(tm.state_dict())
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    causal = np.triu(np.ones((4, 4), bool), 1)
    to, tw = tm(*(torch.tensor(a) for a in (q, k, v)), attn_mask=torch.tensor(causal))
    fo, fw = fm(*(fg.tensor(a, backend="rust") for a in (q, k, v)), is_causal=True)
    assert_close(fo.numpy(), to.detach().numpy(), kind="reduction")
    assert_close(fw.numpy(), tw.detach().numpy(), kind="reduction")


def test_grouped_query_multihead_attention(cpu_backend):
    """num_kv_heads: the same as SDPA with enable_gqa on the projected heads."""
    rng = np.random.default_rng(8)
    m = nn.MultiheadAttention(16, 4, num_kv_heads=2, batch_first=True, backend=cpu_backend, dtype=np.float64)
    assert m.k_proj_weight.shape == (8, 16) and m.in_proj_bias.shape == (32,)
    m.in_proj_bias.data[...] = rng.standard_normal(32)
    x = fg.tensor(rng.standard_normal((2, 5, 16)), backend=cpu_backend, requires_grad=True)
    out, w = m(x, x, x)
    out2, _ = m(x, x, x, need_weights=False)
    assert_close(out2.numpy(), out.numpy(), kind="reduction")
    xn = x.numpy()
    b = m.in_proj_bias.numpy()
    q = (xn @ m.q_proj_weight.numpy().T + b[:16]).reshape(2, 5, 4, 4).transpose(0, 2, 1, 3)
    k = (xn @ m.k_proj_weight.numpy().T + b[16:24]).reshape(2, 5, 2, 4).transpose(0, 2, 1, 3)
    v = (xn @ m.v_proj_weight.numpy().T + b[24:]).reshape(2, 5, 2, 4).transpose(0, 2, 1, 3)
    o, _ = _attention.plain_forward(q, k, v, None, 0.5, False)
    o = o.transpose(0, 2, 1, 3).reshape(2, 5, 16) @ m.out_proj.weight.numpy().T + m.out_proj.bias.numpy()
    assert_close(out.numpy(), o, kind="reduction")
    assert fg.gradcheck(lambda t: m(t, t, t, need_weights=False)[0], [x])


def test_multihead_attention_bad_input():
    with pytest.raises(ValueError, match="num_heads: expected a divisor"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="num_kv_heads: expected a divisor"):
        nn.MultiheadAttention(12, 4, num_kv_heads=3)
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = fg.tensor(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match="query: expected a 3-D tensor"):
        m(fg.tensor(np.zeros((2, 3, 7), np.float32)), x, x)
    with pytest.raises(ValueError, match="key_padding_mask: expected shape"):
        m(x, x, x, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="attn_mask: expected shape"):
        m(x, x, x, attn_mask=np.zeros((4, 3), bool))


@pytest.mark.parametrize("self_attention", [True, False])
def test_multihead_attention_projection_grads_match_torch(cpu_backend, self_attention):
    """Self-attention takes one (3E, E) GEMM split by columns; cross-attention splits the
    weight and bias three ways: both give PyTorch's parameter gradients."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    tm = torch.nn.MultiheadAttention(12, 3, batch_first=True).double()
    with torch.no_grad():
        tm.in_proj_bias.copy_(torch.tensor(rng.standard_normal(36)))
    fm = nn.MultiheadAttention(12, 3, batch_first=True, backend=cpu_backend, dtype=np.float64)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    arrays = [rng.standard_normal((2, 4, 12)) for _ in range(1 if self_attention else 3)]
    tq = [torch.tensor(a, requires_grad=True) for a in arrays]
    fq = [fg.tensor(a, backend=cpu_backend, requires_grad=True) for a in arrays]
    targs, fargs = (tq * 3, fq * 3) if self_attention else (tq, fq)
    to, _ = tm(*targs, need_weights=False)
    fo, _ = fm(*fargs, need_weights=False)
    assert_close(fo.numpy(), to.detach().numpy(), kind="reduction")
    g = rng.standard_normal(to.shape)
    to.backward(torch.tensor(g))
    fo.backward(fg.tensor(g, backend=cpu_backend))
    for name in ("in_proj_weight", "in_proj_bias"):
        assert_close(getattr(fm, name).grad.numpy(), getattr(tm, name).grad.numpy(), kind="reduction")
    for f, t in zip(fq, tq):
        assert_close(f.grad.numpy(), t.grad.numpy(), kind="reduction")


def test_split_cols_gradcheck(cpu_backend):
    from ferrograd.nn.attention import split_cols

    rng = np.random.default_rng(12)
    x = fg.tensor(rng.standard_normal((3, 7)), backend=cpu_backend, requires_grad=True)
    a, b, c = split_cols(x, (2, 4, 1))
    assert_close(b.numpy(), x.numpy()[:, 2:6], kind="elementwise")
    # a block left out of the loss gets a zero gradient
    assert fg.gradcheck(lambda t: split_cols(t, (2, 4, 1))[0] * 2 + split_cols(t, (2, 4, 1))[2], [x])
    with pytest.raises(ValueError, match="sizes"):
        split_cols(x, (2, 2))
