"""Scaled dot-product attention kernels in NumPy: the plain one and the tiled (flash) one.

Both compute, for q (B, H, Lq, D), k (B, Hk, Lk, D), v (B, Hk, Lk, Dv) with Hk dividing H
(query head h reads key/value head ``h // (H // Hk)``: multi-query when Hk = 1, grouped
query when 1 < Hk < H), an optional additive float mask of shape (Bm, Hm, Lq, Lk) with
Bm in (1, B) and Hm in (1, H), and ``is_causal`` (key j hidden from query i when j > i,
PyTorch's top-left ``tril`` alignment)::

    s   = scale * q @ k^T + mask          (-inf where causal hides a key)
    lse = logsumexp(s, axis=-1)           (B, H, Lq); -inf for a row with every key hidden
    out = exp(s - lse) @ v                (B, H, Lq, Dv)

A row whose keys are all hidden gives out = 0 and zero gradients: PyTorch's
``scaled_dot_product_attention`` does the same (its CPU and math paths return 0 there,
checked against torch 2.x), rather than the NaN a plain softmax would give. A row with
a NaN or +inf score (NaN in q, k or the mask, inf * 0, inf - inf) is NaN in out, lse and
the gradients, as PyTorch's softmax makes it; hidden keys (-inf) get weight 0 even
there. The weights are exp(s - max) / sum, never exp(s - lse): with scores of 1e30,
lse = max + log(sum) rounds log(sum) away and the rows would not sum to 1.

``plain_*`` materialize the (Lq, Lk) score matrix; they are the readable oracle. ``tiled_*``
are the flash-attention algorithm (Dao et al. 2022): query blocks meet key blocks one at
a time with a running max ``m`` and running sum ``l`` (the online softmax), so only
(block x block) scores exist at once and the saved state is ``lse`` (linear in Lq);
backward recomputes each score block from q, k and lse.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._exact import exact_nonfinite

#: the tile edge of the tiled reference (the Rust kernel uses its own)
BLOCK = 32


def check_attention(q, k, v, mask, scale, is_causal):
    """Shapes and dtypes of the attention contract; returns (B, H, Hk, Lq, Lk, D, Dv)."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if np.dtype(a.dtype) not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected float32 or float64, got {np.dtype(a.dtype)}")
        if len(a.shape) != 4:
            raise ValueError(f"{name}: expected a 4-D array (batch, heads, length, dim), got shape {tuple(a.shape)}")
        if np.dtype(a.dtype) != np.dtype(q.dtype):
            raise TypeError(f"{name}: expected dtype {np.dtype(q.dtype)} (q's), got {np.dtype(a.dtype)}")
    b, h, lq, d = (int(s) for s in q.shape)
    bk, hk, lk, dk = (int(s) for s in k.shape)
    if bk != b or dk != d:
        raise ValueError(f"k: expected shape ({b}, heads, length, {d}), got {tuple(k.shape)}")
    if hk == 0 or h % hk:
        raise ValueError(f"k: expected a number of heads dividing q's {h}, got {hk}")
    if tuple(v.shape[:3]) != (b, hk, lk):
        raise ValueError(f"v: expected shape ({b}, {hk}, {lk}, dim_v), got {tuple(v.shape)}")
    if mask is not None:
        if np.dtype(mask.dtype) != np.dtype(q.dtype):
            raise TypeError(f"mask: expected dtype {np.dtype(q.dtype)}, got {np.dtype(mask.dtype)}")
        ms = tuple(int(s) for s in mask.shape)
        if len(ms) != 4 or ms[0] not in (1, b) or ms[1] not in (1, h) or ms[2:] != (lq, lk):
            raise ValueError(f"mask: expected shape (1 or {b}, 1 or {h}, {lq}, {lk}), got {ms}")
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not np.isfinite(scale):
        raise ValueError(f"scale: expected a finite number, got {scale!r}")
    if not isinstance(is_causal, (bool, np.bool_)):
        raise TypeError(f"is_causal: expected a bool, got {is_causal!r}")
    return b, h, hk, lq, lk, d, int(v.shape[3])


def _kv_heads(x, h):
    """(B, Hk, L, D) -> (B, H, L, D): each key/value head repeated for its query heads."""
    return np.repeat(x, h // x.shape[1], axis=1) if x.shape[1] != h else x


def _fold_heads(g, hk):
    """(B, H, L, D) -> (B, Hk, L, D): sum the gradients of a group's query heads."""
    b, h, l, d = g.shape
    return g.reshape(b, hk, h // hk, l, d).sum(axis=2) if h != hk else g


def _scores(q, k, mask, scale, is_causal, rows=slice(None), cols=slice(None)):
    """scale * q[rows] @ k[cols]^T + mask, -inf where causal hides a key (rows, cols: slices)."""
    qr, kt = q[:, :, rows], np.swapaxes(k[:, :, cols], -1, -2)
    qk = qr @ kt
    if qk.dtype == np.float32 and not np.isfinite(qk).all():
        # overflowing products (|q|, |k| ~ 1e28) summed exactly, as rust does (_exact.py)
        qb = np.broadcast_to(qr, qk.shape[:2] + qr.shape[2:])
        kb = np.broadcast_to(kt, qk.shape[:2] + kt.shape[2:])
        for b, h in np.ndindex(*qk.shape[:2]):
            exact_nonfinite(qk[b, h], qb[b, h], kb[b, h])
    s = scale * qk
    if mask is not None:
        s = s + mask[:, :, rows, cols]
    if is_causal:
        i = np.arange(q.shape[2])[rows][:, None]
        j = np.arange(k.shape[2])[cols][None, :]
        s = np.where(j > i, -np.inf, s)
    return s


def _exp_minus(s, lse):
    """exp(s - lse[..., None]) with 0 (not NaN) where lse = -inf (every key hidden)."""
    safe = np.where(np.isneginf(lse), 0.0, lse)[..., None]
    return np.where(np.isneginf(s), 0.0, np.exp(s - safe))


# ------------------------------------------------------------------ plain
def _softmax(s):
    """(p, lse) of the score rows s: p = exp(s - max) / sum (0 for hidden keys and for
    a row with every key hidden, NaN for a row holding NaN or +inf)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = s.max(axis=-1, initial=-np.inf)            # NaN if the row holds a NaN
        m_safe = np.where(np.isneginf(m), 0.0, m)
        e = np.where(np.isneginf(s), 0.0, np.exp(s - m_safe[..., None]))
        l = e.sum(axis=-1)
        lse = m + np.log(l)
        keep = (l > 0) | np.isnan(l)
        p = np.where(keep[..., None] & ~np.isneginf(s), e / np.where(keep, l, 1.0)[..., None], 0.0)
    return p.astype(s.dtype), lse


def plain_forward(q, k, v, mask, scale, is_causal):
    h = q.shape[1]
    kk, vv = _kv_heads(k, h), _kv_heads(v, h)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p, lse = _softmax(_scores(q, kk, mask, scale, is_causal))
        # a row with every key hidden is 0 (the kernel contract, PyTorch's _safe_softmax),
        # even where v holds NaN or inf (0 * NaN would make it NaN)
        out = np.where(np.isneginf(lse)[..., None], 0.0, p @ vv)
    return out.astype(q.dtype), lse.astype(q.dtype)


def plain_backward(q, k, v, mask, scale, is_causal, out, lse, gout):
    grads = _plain_backward(q, k, v, mask, scale, is_causal, gout)
    if q.dtype == np.float32 and not all(np.isfinite(g).all() for g in grads):
        # terms such as gs * q of 1e25-1e30 values overflow float32 in an order-dependent
        # way (+inf, -inf or NaN by BLAS order): recomputed in float64 and rounded once, as
        # rust's flash backward does for such a head (exact_head_backward)
        f64 = [None if a is None else np.asarray(a, np.float64) for a in (q, k, v, mask, gout)]
        grads = tuple(g.astype(np.float32) for g in _plain_backward(
            f64[0], f64[1], f64[2], f64[3], scale, is_causal, f64[4]))
    return grads


def _plain_backward(q, k, v, mask, scale, is_causal, gout):
    h, hk = q.shape[1], k.shape[1]
    kk, vv = _kv_heads(k, h), _kv_heads(v, h)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p, row_lse = _softmax(_scores(q, kk, mask, scale, is_causal))
    hidden = np.isneginf(row_lse)[..., None]  # rows with every key hidden: no gradient
    gout = np.where(hidden, 0.0, gout).astype(gout.dtype)
    gv = np.swapaxes(p, -1, -2) @ gout
    gp = gout @ np.swapaxes(vv, -1, -2)
    # rowsum(p * gp), PyTorch's softmax backward: for a one-hot row (scores of 1e30) it is
    # exactly that row's gp, so the score gradient is exactly 0 (rowsum(gout * out)
    # differs from it by a rounding error that q of 1e30 would scale up)
    with np.errstate(invalid="ignore", over="ignore"):
        delta = (p * gp).sum(axis=-1, keepdims=True)
        gs = np.where(hidden, 0.0, p * (gp - delta))
    # scale before the products, as PyTorch's backward of (q k^T) * scale and the flash
    # kernels do: scale = 0 gives 0 gradients, not 0 * (an overflowed product) = NaN
    gs = scale * gs
    gq = gs @ kk
    gk = np.swapaxes(gs, -1, -2) @ q
    dt = q.dtype
    return gq.astype(dt), _fold_heads(gk, hk).astype(dt), _fold_heads(gv, hk).astype(dt)


# ------------------------------------------------------------------ tiled (flash)
def tiled_forward(q, k, v, mask, scale, is_causal, block=BLOCK):
    b, h, lq, d = q.shape
    lk, dv = k.shape[2], v.shape[3]
    kk, vv = _kv_heads(k, h), _kv_heads(v, h)
    out = np.zeros((b, h, lq, dv), dtype=q.dtype)
    lse = np.empty((b, h, lq), dtype=q.dtype)
    for i0 in range(0, lq, block):
        rows = slice(i0, min(i0 + block, lq))
        n = rows.stop - rows.start
        m = np.full((b, h, n), -np.inf)        # running row max
        l = np.zeros((b, h, n))                # running sum of exp(s - m)
        acc = np.zeros((b, h, n, dv))          # running sum of exp(s - m) v
        for j0 in range(0, lk, block):
            cols = slice(j0, min(j0 + block, lk))
            if is_causal and j0 > rows.stop - 1:
                break                          # every later key is hidden from this block
            with np.errstate(invalid="ignore", over="ignore"):
                s = _scores(q, kk, mask, scale, is_causal, rows, cols)
                m_new = np.maximum(m, s.max(axis=-1))
                m_safe = np.where(np.isneginf(m_new), 0.0, m_new)
                corr = np.exp(m - m_safe)      # rescales what was summed under the old max
                p = np.where(np.isneginf(s), 0.0, np.exp(s - m_safe[..., None]))
            l = l * corr + p.sum(axis=-1)
            acc = acc * corr[..., None] + p @ vv[:, :, cols]
            m = m_new
        with np.errstate(divide="ignore", invalid="ignore"):
            # NaN (a NaN or +inf score) stays NaN, a fully hidden row is 0
            out[:, :, rows] = np.where(l[..., None] > 0, acc / l[..., None],
                                       np.where(np.isnan(l)[..., None], np.nan, 0.0))
            lse[:, :, rows] = np.where(l > 0, m + np.log(l), np.where(np.isnan(l), np.nan, -np.inf))
    return out, lse


def tiled_backward(q, k, v, mask, scale, is_causal, out, lse, gout, block=BLOCK):
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    kk, vv = _kv_heads(k, h), _kv_heads(v, h)
    gq = np.zeros(q.shape, dtype=np.float64)
    gk = np.zeros(kk.shape, dtype=np.float64)
    gv = np.zeros(vv.shape, dtype=np.float64)
    delta = (gout.astype(np.float64) * out).sum(axis=-1)     # (B, H, Lq)
    for j0 in range(0, lk, block):
        cols = slice(j0, min(j0 + block, lk))
        for i0 in range(0, lq, block):
            rows = slice(i0, min(i0 + block, lq))
            if is_causal and j0 > rows.stop - 1:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                p = _exp_minus(_scores(q, kk, mask, scale, is_causal, rows, cols), lse[:, :, rows])
            go = gout[:, :, rows]
            gv[:, :, cols] += np.swapaxes(p, -1, -2) @ go
            gs = p * (go @ np.swapaxes(vv[:, :, cols], -1, -2) - delta[:, :, rows, None])
            gq[:, :, rows] += scale * (gs @ kk[:, :, cols])
            gk[:, :, cols] += scale * (np.swapaxes(gs, -1, -2) @ q[:, :, rows])
    dt = q.dtype
    return gq.astype(dt), _fold_heads(gk, hk).astype(dt), _fold_heads(gv, hk).astype(dt)


def check_saved(q, v, out, lse, gout):
    """Shapes of the arrays attention_backward receives besides q, k, v."""
    b, h, lq = (int(s) for s in q.shape[:3])
    dv = int(v.shape[3])
    for name, a, want in (("out", out, (b, h, lq, dv)), ("lse", lse, (b, h, lq)),
                          ("gout", gout, (b, h, lq, dv))):
        if tuple(int(s) for s in a.shape) != want:
            raise ValueError(f"{name}: expected shape {want}, got {tuple(a.shape)}")
        if np.dtype(a.dtype) != np.dtype(q.dtype):
            raise TypeError(f"{name}: expected dtype {np.dtype(q.dtype)}, got {np.dtype(a.dtype)}")
