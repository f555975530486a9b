"""Scaled dot-product attention (torch.nn.functional.scaled_dot_product_attention).

Two paths, one result:

* the flash path, one autograd Function over the backend's ``attention_forward`` /
  ``attention_backward`` kernels (tiled, online softmax, memory linear in the lengths on
  rust and cuda; the plain algorithm on numpy, the oracle). Used whenever there is no
  attention dropout and the weights are not wanted.
* the plain path, composed of differentiable ops (matmul, softmax, dropout), which
  materializes the (L, S) weights: used with ``dropout_p > 0`` and by
  MultiheadAttention's ``need_weights=True``.

Masks follow PyTorch: a boolean ``attn_mask`` says which keys *take part* (True = attend),
a float mask is added to the scores; both broadcast to (..., L, S). A float mask Tensor
that requires grad (a learned additive bias, as in T5's or Swin's relative positions)
gets its gradient, the gradient of the scores summed over the axes it broadcasts over:
such calls take the plain path, as PyTorch's math path does (its values should be
finite: a row of -inf gives NaN there, as in PyTorch). Other masks are constants. A row
whose keys are all hidden by a constant mask gives 0 (with zero gradients), as
PyTorch's SDPA does (not NaN).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import numpy as np

from ..autograd.engine import Function, is_grad_enabled
from ..backends import _dropout
from ._checks import require_float, require_same_dtype
from .dropout import dropout as _dropout_op
from .layout import expand
from .linear import matmul
from .softmax import softmax


class Attention(Function):
    """out = softmax(scale * q k^T + mask) v on (B, H, L, E) arrays; k, v may have fewer heads."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, is_causal):
        out, lse = ctx.backend.attention_forward(q, k, v, mask, scale, is_causal)
        ctx.args = (q, k, v, mask, scale, is_causal, out, lse)
        return out

    @staticmethod
    def backward(ctx, gout):
        q, k, v, mask, scale, is_causal, out, lse = ctx.args
        return ctx.backend.attention_backward(q, k, v, mask, scale, is_causal, out, lse, gout)


# ------------------------------------------------------------------ masks
def mask_to_additive(mask, lead: Tuple[int, ...], heads_axis_size: int, length: int, source: int,
                     dtype, name: str = "attn_mask", true_hides: bool = False) -> np.ndarray:
    """A boolean or float mask broadcastable to lead + (L, S) as a host additive float array
    of shape (Bm, Hm, L, S) (Bm = 1 or prod(lead[:-1]), Hm = 1 or lead[-1]); 0 where a key
    takes part, -inf where it is hidden. ``true_hides`` flips the boolean meaning
    (MultiheadAttention's masks: True = hidden). Integer masks count as boolean (fg.tensor
    turns bools into int64)."""
    from ..tensor import Tensor

    if isinstance(mask, Tensor):
        arr = mask.numpy()
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(f"{name}: expected a Tensor or a numpy array, got {type(mask).__name__}")
    full = tuple(lead) + (length, source)
    try:
        np.broadcast_shapes(arr.shape, full)
        if len(arr.shape) > len(full):
            raise ValueError
    except ValueError:
        raise ValueError(f"{name}: expected a shape that broadcasts to {full}, got {arr.shape}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a boolean or float mask, got dtype {arr.dtype}")
    arr = arr.reshape((1,) * (len(full) - arr.ndim) + arr.shape)
    # keep the batch / head axes the mask broadcasts over at size 1 (memory)
    nb = int(np.prod(lead[:-1], dtype=np.int64))
    batch_one = all(n == 1 for n in arr.shape[:-3])
    hm = heads_axis_size if arr.shape[-3] != 1 else 1
    target = ((1,) * (len(full) - 3) if batch_one else tuple(lead[:-1])) + (hm, length, source)
    arr = np.broadcast_to(arr, target).reshape((1 if batch_one else nb, hm, length, source))
    if arr.dtype.kind in "biu":
        keep = arr.astype(bool)
        if true_hides:
            keep = ~keep
        add = np.where(keep, 0.0, -np.inf).astype(dtype)
    else:
        add = arr.astype(dtype)
    return np.ascontiguousarray(add)


def _learned_mask(mask, lead, lq: int, lk: int, nb: int, h: int):
    """A float mask Tensor that requires grad (with grad enabled) as a 4-D tensor that
    broadcasts against the (nb, h, L, S) scores, kept on the tape (its batch axes expanded
    and merged only where it has them); else None. ``mask_to_additive`` has checked the
    shape and dtype."""
    from ..tensor import Tensor

    if not (isinstance(mask, Tensor) and mask.requires_grad and is_grad_enabled()
            and np.dtype(mask.dtype).kind == "f"):
        return None
    full = tuple(lead) + (lq, lk)
    m = mask.reshape((1,) * (len(full) - mask.ndim) + tuple(mask.shape))
    if all(n == 1 for n in m.shape[:-3]):
        return m.reshape((1,) + tuple(m.shape[-3:]))
    m = expand(m, tuple(lead[:-1]) + tuple(m.shape[-3:]))
    return m.reshape((nb,) + tuple(m.shape[-3:]))


def _check_inputs(query, key, value, enable_gqa):
    from ..tensor import Tensor

    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
        require_float(t, name)
        if t.ndim < 2:
            raise ValueError(f"{name}: expected at least 2 dimensions (..., L, E), got shape {t.shape}")
    require_same_dtype(query, key, "query", "key")
    require_same_dtype(query, value, "query", "value")
    if not (query.ndim == key.ndim == value.ndim):
        raise ValueError(f"key: expected {query.ndim} dimensions like query, got shapes "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"key: expected embedding size {query.shape[-1]} (query's), got shape {key.shape}")
    if value.shape[:-1] != key.shape[:-1]:
        raise ValueError(f"value: expected leading shape {key.shape[:-1]} (key's), got {value.shape}")
    qlead, klead = query.shape[:-2], key.shape[:-2]
    if qlead != klead:
        gqa_ok = (enable_gqa and len(qlead) >= 1 and qlead[:-1] == klead[:-1] and klead[-1] > 0
                  and qlead[-1] % klead[-1] == 0)
        if not gqa_ok:
            hint = ("" if enable_gqa else " (pass enable_gqa=True for fewer key/value heads)")
            raise ValueError(f"key: expected leading dims {qlead} (query's){hint}, got {klead}")


def _to4(t, lead_batch: int, heads: int):
    shape = (lead_batch, heads) + t.shape[-2:]
    # already 4-D (the usual SDPA call): no reshape node on the tape
    return t if t.shape == shape else t.reshape(shape)


def _plain(q, k, v, mask_t, scale, dropout_p):
    """Composed attention on (B, H, L, E) tensors (k, v already with H heads); returns
    (out, weights). ``mask_t`` is an additive tensor with finite values (or None) and
    a 0/1 tensor of rows that keep at least one key, or None."""
    s = matmul(q, k.transpose(-2, -1)) * scale
    keep_rows = None
    if mask_t is not None:
        add, keep_rows = mask_t
        s = s + add
    w = softmax(s, -1)
    if keep_rows is not None:
        w = w * keep_rows
    wd = _dropout_op(w, dropout_p, True) if dropout_p > 0 else w
    return matmul(wd, v), w


def _finite_mask(add: np.ndarray, be, dtype):
    """-inf -> a large finite negative, so that a fully hidden row's softmax stays finite;
    the (.., L, 1) keep-row factor then zeroes such rows."""
    from ..tensor import Tensor

    big = np.finfo(dtype).min / 4
    finite = np.where(np.isneginf(add), big, add).astype(dtype)
    keep = (~np.all(np.isneginf(add), axis=-1, keepdims=True)).astype(dtype)
    return (Tensor._wrap(be.from_numpy(finite), be), Tensor._wrap(be.from_numpy(keep), be))


def attention(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
              scale: Optional[float] = None, enable_gqa: bool = False, need_weights: bool = False,
              mask_true_hides: bool = False):
    """The shared worker of SDPA and MultiheadAttention; returns (out, weights or None).

    ``need_weights`` forces the plain path and returns the (..., L, S) softmax weights
    (before dropout)."""
    _check_inputs(query, key, value, enable_gqa)
    if not isinstance(is_causal, (bool, np.bool_)):
        raise TypeError(f"is_causal: expected a bool, got {is_causal!r}")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: expected None when is_causal=True (PyTorch's rule), got a mask")
    dropout_p = _dropout.check_p(dropout_p, "dropout_p")
    e = query.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(e) if e else 1.0
    elif not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(f"scale: expected a finite number or None, got {scale!r}")
    scale = float(scale)
    lead = query.shape[:-2]
    lq, lk = query.shape[-2], key.shape[-2]
    if len(lead) == 0:
        nb, h, hk = 1, 1, 1
    else:
        nb, h, hk = int(np.prod(lead[:-1], dtype=np.int64)), lead[-1], key.shape[-3]
    q4, k4, v4 = _to4(query, nb, h), _to4(key, nb, hk), _to4(value, nb, hk)
    be, dtype = query.backend, query.dtype
    add = None
    if attn_mask is not None:
        add = mask_to_additive(attn_mask, lead if lead else (1,), h, lq, lk, dtype,
                               true_hides=mask_true_hides)
    out_shape = lead + (lq, value.shape[-1])
    learned = _learned_mask(attn_mask, lead if lead else (1,), lq, lk, nb, h)
    if dropout_p == 0.0 and not need_weights and learned is None:
        from ..tensor import Tensor
        mask_arr = None if add is None else be.from_numpy(add)
        out = Attention.apply(q4, k4, v4, mask_arr, scale, bool(is_causal))
        return (out if out.shape == out_shape else out.reshape(out_shape)), None
    # plain path: causal folds into the additive mask
    if is_causal:
        causal = np.where(np.arange(lk)[None, :] > np.arange(lq)[:, None], -np.inf, 0.0)
        add = causal.astype(dtype).reshape(1, 1, lq, lk)
    if hk != h:  # every key/value head serves h / hk query heads
        g = h // hk
        k4 = expand(k4.reshape((nb, hk, 1, lk, e)), (nb, hk, g, lk, e)).reshape((nb, h, lk, e))
        ev = v4.shape[-1]
        v4 = expand(v4.reshape((nb, hk, 1, lk, ev)), (nb, hk, g, lk, ev)).reshape((nb, h, lk, ev))
    mask_t = None if add is None else _finite_mask(add, be, dtype)
    if learned is not None:  # added as it is, on the tape; no fully-hidden-row factor
        mask_t = (learned, None)
    out, w = _plain(q4, k4, v4, mask_t, scale, dropout_p)
    return out.reshape(out_shape), w.reshape(lead + (lq, lk))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False):
    """softmax(query @ key^T * scale + mask) @ value, as torch.nn.functional's.

    query (..., L, E), key (..., S, E), value (..., S, Ev) with the same leading dims, or,
    with ``enable_gqa=True``, key/value with fewer heads (dim -3) dividing query's (grouped
    query / multi-query attention). ``scale`` defaults to 1 / sqrt(E). ``is_causal`` hides
    key j from query i when j > i (top-left aligned, PyTorch's tril). Dropout is applied
    to the weights whenever ``dropout_p > 0`` (as PyTorch's functional does; pass 0 in
    evaluation). Without dropout this runs the flash kernels."""
    out, _ = attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return out
