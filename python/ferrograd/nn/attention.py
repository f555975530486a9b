"""MultiheadAttention with torch.nn.MultiheadAttention's parameters, names and masks,
plus grouped-query / multi-query attention (``num_kv_heads``)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import functional as F
from ..autograd.engine import Function
from ..backends import _dropout, get_backend
from ..ops.attention import attention
from ..tensor import Tensor
from . import init
from .linear import Linear
from .module import Module, Parameter


def _xavier_uniform(shape, fan_in, fan_out, dtype):
    """torch.nn.init.xavier_uniform_, drawn from fg.manual_seed's generator."""
    return init.uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def _positive(v, name):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


class MultiheadAttention(Module):
    """Multi-head attention (torch.nn.MultiheadAttention).

    Parameters as PyTorch: ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E) when key and
    value have the embedding size (else ``q_proj_weight``, ``k_proj_weight``,
    ``v_proj_weight``), and ``out_proj`` (a Linear E -> E); xavier-uniform projections,
    zero biases. Weights load from PyTorch one to one.

    Extension: ``num_kv_heads`` (default ``num_heads``) dividing ``num_heads`` gives
    grouped-query attention (1: multi-query); key/value projections then have
    ``num_kv_heads * head_dim`` rows and the separate ``*_proj_weight`` layout is used,
    with ``in_proj_bias`` of size E + 2 * num_kv_heads * head_dim.

    Not supported: ``add_bias_kv`` and ``add_zero_attn``.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) as PyTorch: boolean masks mark *hidden*
    positions with True, float masks are added; ``attn_mask`` is (L, S) or (N * H, L, S),
    ``key_padding_mask`` is (N, S). ``is_causal=True`` without ``attn_mask`` applies the
    causal mask (PyTorch treats it as a hint that needs attn_mask). Choice: a query whose keys
    are all hidden gives 0 (output and weights), where PyTorch's MultiheadAttention gives
    NaN; its SDPA gives 0 too. Without need_weights and dropout the flash kernels run.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim=None, vdim=None, batch_first: bool = False, num_kv_heads=None,
                 backend=None, dtype=np.float32):
        super().__init__()
        self.embed_dim = _positive(embed_dim, "embed_dim")
        self.num_heads = _positive(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"num_heads: expected a divisor of embed_dim={embed_dim}, got {num_heads}")
        self.head_dim = embed_dim // num_heads
        self.num_kv_heads = self.num_heads if num_kv_heads is None else _positive(num_kv_heads, "num_kv_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: expected a divisor of num_heads={num_heads}, got {num_kv_heads}")
        self.kdim = embed_dim if kdim is None else _positive(kdim, "kdim")
        self.vdim = embed_dim if vdim is None else _positive(vdim, "vdim")
        self.dropout = _dropout.check_p(dropout, "dropout")
        self.batch_first = bool(batch_first)
        kv = self.num_kv_heads * self.head_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim and kv == embed_dim
        be = get_backend(backend)

        def param(arr):
            return Parameter(Tensor(be.from_numpy(np.ascontiguousarray(arr)), be))

        e = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = param(_xavier_uniform((3 * e, e), e, 3 * e, dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = param(_xavier_uniform((e, e), e, e, dtype))
            self.k_proj_weight = param(_xavier_uniform((kv, self.kdim), self.kdim, kv, dtype))
            self.v_proj_weight = param(_xavier_uniform((kv, self.vdim), self.vdim, kv, dtype))
        if bias:
            self.in_proj_bias = param(np.zeros((e + 2 * kv,), dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, backend=be, dtype=dtype)
        if bias:
            self.out_proj.bias = param(np.zeros((e,), dtype))

    def _projections(self, query, key, value, self_attention: bool):
        e, kv = self.embed_dim, self.num_kv_heads * self.head_dim
        b = self.in_proj_bias
        if self._qkv_same_embed_dim and self_attention:
            # one input: one GEMM with the whole (3E, E) in_proj_weight, then its columns
            # split three ways (PyTorch's fast path does the same)
            lead = query.shape[:-1]
            y = F.linear(query.reshape((-1, e)), self.in_proj_weight, b)
            return tuple(t.reshape(lead + (e,)) for t in split_cols(y, (e, e, e)))
        bq = bk = bv = None
        if self._qkv_same_embed_dim:
            wq, wk, wv = (t.reshape((e, e)) for t in
                          split_cols(self.in_proj_weight.reshape((1, 3 * e * e)), (e * e,) * 3))
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        if b is not None:
            bq, bk, bv = (t.reshape((t.shape[1],)) for t in
                          split_cols(b.reshape((1, e + 2 * kv)), (e, kv, kv)))
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
        self_attention = query is key and key is value
        batched = query.ndim == 3
        want = (3,) if batched else (2,)
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim),
                             ("value", value, self.vdim)):
            if t.ndim not in want or t.shape[-1] != dim:
                form = "(N, L, E)" if self.batch_first else "(L, N, E)"
                raise ValueError(f"{name}: expected a {want[0]}-D tensor {form if batched else '(L, E)'} "
                                 f"with last dimension {dim}, got shape {t.shape}")
        if not batched:
            query, key, value = (t.reshape((1,) + t.shape) for t in (query, key, value))
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, lq, _ = query.shape
        lk = key.shape[1]
        if value.shape[1] != lk or key.shape[0] != n or value.shape[0] != n:
            raise ValueError(f"value: expected batch {n} and length {lk} like key, got key {key.shape}, "
                             f"value {value.shape} (batch first)")
        h, hk, d = self.num_heads, self.num_kv_heads, self.head_dim
        q, k, v = self._projections(query, key, value, self_attention)
        q = q.reshape((n, lq, h, d)).transpose(1, 2)
        k = k.reshape((n, lk, hk, d)).transpose(1, 2)
        v = v.reshape((n, lk, hk, d)).transpose(1, 2)
        mask = _combine_masks(attn_mask, key_padding_mask, n, h, lq, lk, query.dtype, batched)
        if is_causal and mask is not None:
            causal = np.where(np.arange(lk)[None, :] > np.arange(lq)[:, None], -np.inf, 0.0)
            mask = mask + causal.astype(mask.dtype)
            is_causal = False
        p = self.dropout if self.training else 0.0
        out, w = attention(q, k, v, mask, p, bool(is_causal), None, hk != h, bool(need_weights))
        out = out.transpose(1, 2).reshape((n, lq, self.embed_dim))
        out = self.out_proj(out)
        if not batched:
            out = out.reshape(out.shape[1:])
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            w = w.mean(dim=1)
        if not batched:
            w = w.reshape(w.shape[1:])
        return out, w

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, dropout={self.dropout}, batch_first={self.batch_first}")


class SplitCols(Function):
    """The column blocks of a 2-D tensor, of the given widths, each a contiguous copy;
    backward lays the blocks' gradients side by side again (zeros for a block that got
    none). Exact: no arithmetic touches the values."""

    @staticmethod
    def forward(ctx, a, sizes):
        ctx.rows, ctx.sizes, ctx.dtype = int(a.shape[0]), sizes, a.dtype
        return tuple(ctx.backend.rnn_split_cols(a, list(sizes)))

    @staticmethod
    def backward(ctx, *grads):
        be = ctx.backend
        return be.rnn_concat_cols([g if g is not None else be.full((ctx.rows, w), 0.0, ctx.dtype)
                                   for g, w in zip(grads, ctx.sizes)])

    @staticmethod
    def jvp(ctx, out, tangent):
        return tuple(ctx.backend.rnn_split_cols(tangent, list(ctx.sizes)))


def split_cols(t, sizes):
    """``t`` (R, sum(sizes)) split into column blocks (R, sizes[i]), differentiably."""
    sizes = tuple(int(w) for w in sizes)
    if t.ndim != 2 or sum(sizes) != t.shape[1]:
        raise ValueError(f"sizes: expected widths summing to the columns of a 2-D tensor, "
                         f"got {sizes} for shape {t.shape}")
    return SplitCols.apply(t, sizes)


def _as_host(mask, name):
    if mask is None:
        return None
    if isinstance(mask, Tensor):
        return mask.numpy()
    if isinstance(mask, np.ndarray):
        return mask
    raise TypeError(f"{name}: expected a Tensor or a numpy array, got {type(mask).__name__}")


def _additive(arr, dtype, name):
    if arr.dtype.kind in "biu":
        return np.where(arr.astype(bool), -np.inf, 0.0).astype(dtype)
    if arr.dtype.kind == "f":
        return arr.astype(dtype)
    raise TypeError(f"{name}: expected a boolean or float mask, got dtype {arr.dtype}")


def _combine_masks(attn_mask, key_padding_mask, n, h, lq, lk, dtype, batched):
    """attn_mask (L, S) or (N * H, L, S) and key_padding_mask (N, S) (True = hidden) as one
    additive host mask broadcastable to (N, H, L, S), or None."""
    am, kp = _as_host(attn_mask, "attn_mask"), _as_host(key_padding_mask, "key_padding_mask")
    out = None
    if am is not None:
        if am.shape == (lq, lk):
            out = _additive(am, dtype, "attn_mask").reshape(1, 1, lq, lk)
        elif am.ndim == 3 and am.shape == (n * h, lq, lk):
            out = _additive(am, dtype, "attn_mask").reshape(n, h, lq, lk)
        else:
            raise ValueError(f"attn_mask: expected shape ({lq}, {lk}) or ({n * h}, {lq}, {lk}), got {am.shape}")
    if kp is not None:
        want = (n, lk) if batched else (lk,)
        if kp.shape != want:
            raise ValueError(f"key_padding_mask: expected shape {want}, got {kp.shape}")
        kpa = _additive(kp, dtype, "key_padding_mask").reshape(n, 1, 1, lk)
        out = kpa if out is None else out + kpa
    return out
