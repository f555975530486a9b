"""2-D convolution: argument checks, the "auto" choice and the four CPU algorithms.

Semantics are torch.nn.functional.conv2d's (cross-correlation, no kernel flip):

    y[n, o, i, j] = b[o] + sum_{c in group(o), a, b'} x_pad[n, c, i*sh + a*dh, j*sw + b'*dw]
                                                       * w[o, c - g0, a, b']

x: (N, C, H, W); w: (O, C / groups, KH, KW); b: (O,) or None; output
OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1 (likewise OW), at least 1 (else ValueError, as
PyTorch's "kernel size can't be greater than actual input size").

Every algorithm is written against a batched ``matmul(a, b)`` (3-D arrays with the same
batch size; numpy's ``@`` on the numpy backend, the Rust GEMM on the rust backend), so the
readable reference and the rust path share the data movement and differ in the GEMM:

* ``naive``: direct convolution, one small product per kernel tap (KH * KW of them).
* ``im2col``: unfold the padded input into a (K = C/g * KH * KW, N * OH * OW) matrix per
  group and do one GEMM per group; the input gradient folds the columns back (col2im).
  A 1x1 stride-1 unpadded convolution is a plain GEMM (the unfold is a transpose).
* ``winograd``: F(2x2, 3x3) (Lavin & Gray 2015) for 3x3 kernels, stride 1, dilation 1:
  4x4 input tiles with stride 2, U = G g G^T, V = B^T d B, 16 batched GEMMs over
  channels, Y = A^T M A. The input gradient is itself a 3x3 stride-1 convolution (of gy
  padded by 2 with the flipped, in/out-swapped kernel), so it runs by Winograd too; the
  weight gradient (a kernel of size OH x OW) runs by im2col.
* ``fft``: correlation as a product of 2-D real FFTs of size (Hp, Wp) (the padded input;
  no wrap-around reaches a valid output); dilation by spreading the kernel, stride by
  subsampling the stride-1 result. Both gradients are FFT products as well.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Tuple

import numpy as np

from ._exact import exact_nonfinite
from ._validate import check_fits_memory, pair

ALGOS = ("auto", "naive", "im2col", "winograd", "fft")

Pair = Tuple[int, int]


#: the largest size argument: sizes cross into the kernels as int64


def check_algo(algo) -> str:
    if algo not in ALGOS:
        raise ValueError(f"algo: expected one of {ALGOS}, got {algo!r}")
    return algo


def geometry(x_shape, w_shape, b_shape, stride, padding, dilation, groups):
    """Checks a conv2d call (PyTorch's rules); returns (stride, padding, dilation, groups,
    (OH, OW)) with each of the first three an (h, w) pair."""
    s = pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    if type(groups) is not int and (not isinstance(groups, numbers.Integral) or isinstance(groups, bool)):
        raise TypeError(f"groups: expected a positive int, got {groups!r}")
    g = int(groups)
    if g < 1:
        raise ValueError(f"groups: expected a positive int, got {groups!r}")
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if len(x_shape) != 4:
        raise ValueError(f"input: expected a 4-D (N, C, H, W) array, got shape {x_shape}")
    if len(w_shape) != 4:
        raise ValueError(f"weight: expected a 4-D (out_channels, in_channels / groups, KH, KW) "
                         f"array, got shape {w_shape}")
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    if c % g:
        raise ValueError(f"groups: in_channels ({c}) must be divisible by groups ({g})")
    if o % g:
        raise ValueError(f"groups: out_channels ({o}) must be divisible by groups ({g})")
    if o == 0:
        raise ValueError(f"weight: expected at least one output channel, got shape {w_shape}")
    if cg != c // g:
        raise ValueError(f"weight: expected shape ({o}, {c // g}, KH, KW) for {c} input channels "
                         f"and groups={g}, got {w_shape}")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight: expected a kernel of at least 1x1, got shape {w_shape}")
    if b_shape is not None and tuple(b_shape) != (o,):
        raise ValueError(f"bias: expected shape ({o},), got {tuple(b_shape)}")
    ekh, ekw = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    hp, wp = h + 2 * p[0], w + 2 * p[1]
    if ekh > hp or ekw > wp:
        raise ValueError(
            f"weight: the (dilated) kernel {ekh}x{ekw} is larger than the padded input "
            f"{hp}x{wp} (input {h}x{w}, padding {p})")
    out = ((hp - ekh) // s[0] + 1, (wp - ekw) // s[1] + 1)
    return s, p, d, g, out


def winograd_applies(w_shape, stride, dilation) -> bool:
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)


def resolve_algo(algo: str, x_shape, w_shape, stride, padding, dilation, groups) -> str:
    """The algorithm "auto" picks on the numpy backend (and a check that an explicit
    choice applies); the rust backend has its own kernels and rule,
    :func:`resolve_rust_algo`.

    The rule, from crossovers measured on the rust backend (the tables are in
    benches/README.md, "Measurements behind the code: convolution"):

    * 1x1 kernels: im2col, which for stride 1 and no padding is a plain GEMM (no unfold).
    * 3x3 stride 1: im2col. Winograd F(2x2, 3x3) does 2.25x fewer multiplies, but its
      tile transforms (numpy, memory-bound) cost more than that saves at every size
      measured, so "auto" never picks it; it stays available as ``algo="winograd"``.
    * large kernels, stride 1: FFT from KH * KW >= 121 (11x11), where im2col's cost,
      growing with KH * KW, passes the FFT's, nearly independent of the kernel. Strided
      large kernels (the 7x7 stride-2 stem) stay on im2col: FFT computes every stride-1
      output.
    * everything else: im2col.
    """
    check_algo(algo)
    if algo == "winograd" and not winograd_applies(w_shape, stride, dilation):
        raise ValueError(f"algo: 'winograd' needs a 3x3 kernel with stride 1 and dilation 1, got "
                         f"kernel {tuple(w_shape[2:])}, stride {tuple(stride)}, "
                         f"dilation {tuple(dilation)}")
    if algo != "auto":
        return algo
    kh, kw = w_shape[2], w_shape[3]
    if kh * kw >= 121 and tuple(stride) == (1, 1):
        return "fft"
    return "im2col"


def resolve_rust_algo(algo: str, w_shape, stride, dilation, groups, out, backward: bool) -> str:
    """The rust backend's kernel for a call (``ferrograd._core`` names: "im2col", "naive",
    "winograd2" = F(2x2, 3x3), "winograd4" = F(4x4, 3x3), "fft"); ``algo`` already checked
    by :func:`resolve_algo` (an explicit "winograd" applies). Forward and backward choose
    separately (both gradients of one call run together).

    The rule, from crossovers measured separately for forward and backward (the tables
    are in benches/README.md, "Measurements behind the code: convolution"):

    * 3x3 stride 1 dilation 1, with ch = min(C/g, O/g) and size = min(OH, OW): F(4,3)
      does 4x fewer multiplies than im2col, F(2,3) 2.25x; the 6x6 tiles of F(4,3) waste
      work on small images (7x7 -> 2x2 tiles of 4 outputs) and its transforms weigh more
      against the GEMMs with many channels. Rule (forward and backward): F(4,3) for
      size >= 24, and for size 10-23 with ch <= 32; F(2,3) for the other small images;
      im2col below 4 channels per group (depthwise: the per-point GEMMs are 1x1).
    * large kernels, stride 1 (any dilation): the FFT's cost is the (N + O) C spectra
      and an N O C product per frequency, nearly independent of the kernel; im2col grows
      with KH * KW (and its backward, at 5-10x its forward, grows faster). Rule: FFT from
      KH * KW >= 81 forward and >= 49 backward, or from >= 25 with ch <= 16. Strided
      kernels stay on im2col (FFT computes every stride-1 output).
    * 1x1 and everything else: im2col (a 1x1 stride-1 convolution is one GEMM per image).

    An explicit "winograd" picks its tile size by the same rule, at any channel count.
    """
    kh, kw = w_shape[2], w_shape[3]
    size = min(out)
    ch = min(w_shape[1], w_shape[0] // groups)
    f43 = size >= 24 or (size >= 10 and ch <= 32)
    if algo == "winograd":
        return "winograd4" if f43 else "winograd2"
    if algo != "auto":
        return algo
    if winograd_applies(w_shape, stride, dilation):
        if ch < 4:
            return "im2col"
        return "winograd4" if f43 else "winograd2"
    if tuple(stride) == (1, 1):
        taps = kh * kw
        if taps >= (49 if backward else 81) or (taps >= 25 and ch <= 16):
            return "fft"
    return "im2col"


# ------------------------------------------------------------------ helpers
MatMul = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _np_matmul(a, b):
    """numpy's batched GEMM, with overflowing float32 products summed exactly (the kernel
    contract's rule, ``_exact.py``: their ±inf/NaN would depend on OpenBLAS's order)."""
    y = np.matmul(a, b)
    if y.dtype == np.float32 and not np.isfinite(y).all():
        for i in range(y.shape[0]):
            exact_nonfinite(y[i], a[i], b[i])
    return y


def _pad(x, p):
    if p == (0, 0):
        return x
    n, c, h, w = x.shape
    check_fits_memory(n * c * (h + 2 * p[0]) * (w + 2 * p[1]), x.dtype.itemsize,
                      f"conv2d padded input of padding {p}")
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))


def _unfold(xp, kh, kw, s, d, out):
    """View of the padded input as (N, C, KH, KW, OH, OW): element (.., a, b, i, j) is
    xp[.., i*sh + a*dh, j*sw + b*dw]. No copy."""
    n, c = xp.shape[:2]
    sn, sc, sh_, sw_ = xp.strides
    shape = (n, c, kh, kw, out[0], out[1])
    steps = (sn, sc, d[0] * sh_, d[1] * sw_, s[0] * sh_, s[1] * sw_)
    # an axis of length 1 never steps: stride 0, so a stride of 2**62 does not overflow
    # the byte offset numpy stores in a C long
    return np.lib.stride_tricks.as_strided(
        xp, shape, tuple(st if m > 1 else 0 for st, m in zip(steps, shape)), writeable=False)


def _cols(x, kh, kw, s, p, d, g, out):
    """im2col: (G, C/g * KH * KW, N * OH * OW), C-contiguous."""
    n, c = x.shape[:2]
    if (kh, kw) == (1, 1) and s == (1, 1) and p == (0, 0):
        u = x.reshape(n, g, c // g, out[0] * out[1])  # 1x1: no unfolding, a transpose
        return np.ascontiguousarray(u.transpose(1, 2, 0, 3)).reshape(g, c // g, n * out[0] * out[1])
    u = _unfold(_pad(x, p), kh, kw, s, d, out).reshape(n, g, c // g, kh, kw, out[0], out[1])
    u = u.transpose(1, 2, 3, 4, 0, 5, 6)  # (G, C/g, KH, KW, N, OH, OW)
    return np.ascontiguousarray(u).reshape(g, (c // g) * kh * kw, n * out[0] * out[1])


def _col2im(gcols, x_shape, kh, kw, s, p, d, out):
    """Adjoint of _cols: (G, C/g * KH * KW, N * OH * OW) -> (N, C, H, W), summing the
    overlapping taps."""
    n, c, h, w = x_shape
    g = gcols.shape[0]
    gc = gcols.reshape(g, c // g, kh, kw, n, out[0], out[1]).transpose(4, 0, 1, 2, 3, 5, 6)
    gc = gc.reshape(n, c, kh, kw, out[0], out[1])
    gxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=gcols.dtype)
    for a in range(kh):
        for b in range(kw):
            r0, c0 = a * d[0], b * d[1]
            gxp[:, :, r0:r0 + s[0] * (out[0] - 1) + 1:s[0], c0:c0 + s[1] * (out[1] - 1) + 1:s[1]] \
                += gc[:, :, a, b]
    return gxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def _gy_groups(gy, g):
    """(N, O, OH, OW) -> (G, O/g, N * OH * OW)."""
    n, o, oh, ow = gy.shape
    return np.ascontiguousarray(gy.reshape(n, g, o // g, oh * ow).transpose(1, 2, 0, 3)
                                ).reshape(g, o // g, n * oh * ow)


def _ungroup(yg, n, out):
    """(G, O/g, N * OH * OW) -> (N, O, OH, OW)."""
    g, og = yg.shape[:2]
    return np.ascontiguousarray(
        yg.reshape(g, og, n, out[0] * out[1]).transpose(2, 0, 1, 3)).reshape(n, g * og, out[0], out[1])


def _bias(y, b):
    if b is not None:
        y += b.reshape(1, -1, 1, 1).astype(y.dtype, copy=False)
    return y


# ------------------------------------------------------------------ naive
def naive_forward(x, w, b, s, p, d, g, out):
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    xs = _unfold(_pad(x, p), kh, kw, s, d, out)  # (N, C, KH, KW, OH, OW)
    wg = w.reshape(g, o // g, cg, kh, kw)
    y = np.zeros((n, g, o // g, out[0], out[1]), dtype=x.dtype)
    for a in range(kh):
        for bb in range(kw):
            tap = xs[:, :, a, bb].reshape(n, g, cg, out[0], out[1])
            y += np.einsum("ngchw,goc->ngohw", tap, wg[:, :, :, a, bb])
    return _bias(y.reshape(n, o, out[0], out[1]), b)


def naive_backward(x, w, gy, s, p, d, g, out):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xs = _unfold(_pad(x, p), kh, kw, s, d, out)
    wg = w.reshape(g, o // g, cg, kh, kw)
    gyg = gy.reshape(n, g, o // g, out[0], out[1])
    gw = np.zeros((g, o // g, cg, kh, kw), dtype=x.dtype)
    gxp = np.zeros((n, c, h + 2 * p[0], wd + 2 * p[1]), dtype=x.dtype)
    for a in range(kh):
        for bb in range(kw):
            tap = xs[:, :, a, bb].reshape(n, g, cg, out[0], out[1])
            gw[:, :, :, a, bb] = np.einsum("ngohw,ngchw->goc", gyg, tap)
            r0, c0 = a * d[0], bb * d[1]
            gxp[:, :, r0:r0 + s[0] * (out[0] - 1) + 1:s[0], c0:c0 + s[1] * (out[1] - 1) + 1:s[1]] \
                += np.einsum("ngohw,goc->ngchw", gyg, wg[:, :, :, a, bb]).reshape(n, c, out[0], out[1])
    return gxp[:, :, p[0]:p[0] + h, p[1]:p[1] + wd], gw.reshape(w.shape)


# ------------------------------------------------------------------ im2col
def im2col_forward(x, w, b, s, p, d, g, out, matmul: MatMul = _np_matmul):
    o, cg, kh, kw = w.shape
    cols = _cols(x, kh, kw, s, p, d, g, out)
    wm = np.ascontiguousarray(w.reshape(g, o // g, cg * kh * kw))
    yg = matmul(wm, cols)
    if b is None:
        return _ungroup(yg, x.shape[0], out)
    bg = b.reshape(g, o // g, 1).astype(yg.dtype, copy=False)
    yg += bg
    if yg.dtype == np.float32 and not np.isfinite(yg).all():
        # the bias inside the exact sum (linear's rule, and rust's): -inf products plus an
        # infinite bias are that bias, not -inf rounded first and then inf - inf = NaN
        for i in range(g):
            exact_nonfinite(yg[i], wm[i], cols[i], init=bg[i])
    return _ungroup(yg, x.shape[0], out)


def _im2col_weight_grad(x, w, gyg, s, p, d, g, out, matmul):
    o, cg, kh, kw = w.shape
    cols = _cols(x, kh, kw, s, p, d, g, out)
    return matmul(gyg, np.ascontiguousarray(cols.transpose(0, 2, 1))).reshape(w.shape)


def im2col_backward(x, w, gy, s, p, d, g, out, matmul: MatMul = _np_matmul):
    o, cg, kh, kw = w.shape
    gyg = _gy_groups(gy, g)
    gw = _im2col_weight_grad(x, w, gyg, s, p, d, g, out, matmul)
    wt = np.ascontiguousarray(w.reshape(g, o // g, cg * kh * kw).transpose(0, 2, 1))
    gx = _col2im(matmul(wt, gyg), x.shape, kh, kw, s, p, d, out)
    return gx, gw


# ------------------------------------------------------------------ winograd F(2x2, 3x3)
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def _winograd_valid(xp, w, g, matmul):
    """Stride-1 'valid' 3x3 correlation of an already padded input by F(2x2, 3x3)."""
    n, c, hp, wp = xp.shape
    o, cg = w.shape[:2]
    oh, ow = hp - 2, wp - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    # pad bottom/right so that th x tw tiles of 4x4 with stride 2 fit
    xq = np.pad(xp, ((0, 0), (0, 0), (0, 2 * th + 2 - hp), (0, 2 * tw + 2 - wp)))
    sn, sc, sh_, sw_ = xq.strides
    tiles = np.lib.stride_tricks.as_strided(
        xq, (n, c, th, tw, 4, 4), (sn, sc, 2 * sh_, 2 * sw_, sh_, sw_), writeable=False)
    # V = B^T d B with B^T's entries 0 and +-1 written out as adds (rows, then columns),
    # laid out as (4, 4, G, C/g, N, TH, TW) for the 16 * G GEMMs
    t = tiles.transpose(4, 5, 1, 0, 2, 3)  # (4, 4, C, N, TH, TW), a view
    r = np.stack([t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3]])
    v = np.stack([r[:, 0] - r[:, 2], r[:, 1] + r[:, 2], r[:, 2] - r[:, 1], r[:, 1] - r[:, 3]], axis=1)
    v = v.reshape(16 * g, cg, n * th * tw)
    u = np.einsum("ij,ocjk,lk->iloc", _G.astype(xp.dtype), w, _G.astype(xp.dtype))  # (4,4,O,Cg)
    u = np.ascontiguousarray(u.reshape(16 * g, o // g, cg))
    m = matmul(u, v).reshape(4, 4, o, n, th, tw)
    # Y = A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], rows then columns
    r = np.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])  # (2, 4, O, N, TH, TW)
    y = np.stack([r[:, 0] + r[:, 1] + r[:, 2], r[:, 1] - r[:, 2] - r[:, 3]], axis=1)
    y = y.transpose(3, 2, 4, 0, 5, 1).reshape(n, o, 2 * th, 2 * tw)  # (N, O, TH, 2, TW, 2)
    return np.ascontiguousarray(y[:, :, :oh, :ow])


def winograd_forward(x, w, b, s, p, d, g, out, matmul: MatMul = _np_matmul):
    return _bias(_winograd_valid(_pad(x, p), w, g, matmul), b)


def winograd_backward(x, w, gy, s, p, d, g, out, matmul: MatMul = _np_matmul):
    n, c, h, wd = x.shape
    o, cg = w.shape[:2]
    # gx_pad = gy (padded by 2) correlated with w flipped, input and output channels swapped
    wf = w.reshape(g, o // g, cg, 3, 3).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    wf = np.ascontiguousarray(wf).reshape(c, o // g, 3, 3)
    gxp = _winograd_valid(_pad(gy, (2, 2)), wf, g, matmul)
    gx = np.ascontiguousarray(gxp[:, :, p[0]:p[0] + h, p[1]:p[1] + wd])
    gw = _im2col_weight_grad(x, w, _gy_groups(gy, g), s, p, d, g, out, matmul)
    return gx, gw


# ------------------------------------------------------------------ fft
def _dilate(w, d):
    o, cg, kh, kw = w.shape
    if d == (1, 1):
        return w
    wd = np.zeros((o, cg, d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1), dtype=w.dtype)
    wd[:, :, ::d[0], ::d[1]] = w
    return wd


def fft_forward(x, w, b, s, p, d, g, out, matmul: Optional[MatMul] = None):
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    xp = _pad(x, p)
    hp, wp = xp.shape[2:]
    wdl = _dilate(w, d)
    ekh, ekw = wdl.shape[2:]
    X = np.fft.rfft2(xp, s=(hp, wp)).reshape(n, g, cg, hp, -1)
    W = np.fft.rfft2(wdl, s=(hp, wp)).reshape(g, o // g, cg, hp, -1)
    Y = np.einsum("ngcxy,gocxy->ngoxy", X, np.conj(W)).reshape(n, o, hp, -1)
    full = np.fft.irfft2(Y, s=(hp, wp))  # full[i, j] = sum x[i + a, j + b] w[a, b]
    y = full[:, :, :hp - ekh + 1:s[0], :wp - ekw + 1:s[1]]
    return _bias(np.ascontiguousarray(y, dtype=x.dtype), b)


def fft_backward(x, w, gy, s, p, d, g, out, matmul: Optional[MatMul] = None):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = _pad(x, p)
    hp, wp = xp.shape[2:]
    wdl = _dilate(w, d)
    ekh, ekw = wdl.shape[2:]
    gy1 = np.zeros((n, o, hp, wp), dtype=x.dtype)  # gy on the stride-1 grid, zero padded
    gy1[:, :, :s[0] * (out[0] - 1) + 1:s[0], :s[1] * (out[1] - 1) + 1:s[1]] = gy
    GY = np.fft.rfft2(gy1).reshape(n, g, o // g, hp, -1)
    X = np.fft.rfft2(xp).reshape(n, g, cg, hp, -1)
    W = np.fft.rfft2(wdl, s=(hp, wp)).reshape(g, o // g, cg, hp, -1)
    # gx_pad[u] = sum_i gy1[i] w[u - i]: a convolution, no wrap for u < hp
    gxp = np.fft.irfft2(np.einsum("ngoxy,gocxy->ngcxy", GY, W).reshape(n, c, hp, -1), s=(hp, wp))
    # gw[a] = sum_i gy1[i] x_pad[i + a]: a correlation, no wrap for a < ekh
    gwd = np.fft.irfft2(np.einsum("ngcxy,ngoxy->gocxy", X, np.conj(GY)).reshape(o, cg, hp, -1),
                        s=(hp, wp))
    gx = np.ascontiguousarray(gxp[:, :, p[0]:p[0] + h, p[1]:p[1] + wd], dtype=x.dtype)
    gw = np.ascontiguousarray(gwd[:, :, :ekh:d[0], :ekw:d[1]], dtype=x.dtype)
    return gx, gw


FORWARD = {"naive": naive_forward, "im2col": im2col_forward, "winograd": winograd_forward,
           "fft": fft_forward}
BACKWARD = {"naive": naive_backward, "im2col": im2col_backward, "winograd": winograd_backward,
            "fft": fft_backward}


# ------------------------------------------------------------------ the CPU runner
# Winograd and FFT transform whole tiles, so one ±inf (or a product overflowing inside a
# transform) turns every output of its tile NaN where the direct sum gives ±inf at some
# and finite values at others. Their results holding any non-finite value are recomputed
# by im2col, the direct sum (PyTorch's answer; rust does the same, cuda runs every algo
# as im2col).
_TRANSFORMS = ("winograd", "fft")


def _check_dtypes(x, w, b, gy):
    for a, name in ((x, "input"), (w, "weight"), (b, "bias"), (gy, "grad_output")):
        if a is None:
            continue
        if np.dtype(a.dtype) not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {a.dtype}")
        if np.dtype(a.dtype) != np.dtype(x.dtype):
            raise TypeError(f"{name}: expected dtype {x.dtype} like input, got {a.dtype}")


def prepare(x, w, b, gy, stride, padding, dilation, groups, algo):
    """All checks of a kernel call; returns (s, p, d, g, out, algo resolved)."""
    _check_dtypes(x, w, b, gy)
    s, p, d, g, out = geometry(x.shape, w.shape, None if b is None else b.shape, stride,
                               padding, dilation, groups)
    check_fits_memory(int(x.shape[0]) * int(w.shape[0]) * out[0] * out[1], x.dtype.itemsize,
                      f"conv2d output of {out[0]}x{out[1]}")
    if gy is not None:
        want = (x.shape[0], w.shape[0]) + out
        if tuple(gy.shape) != want:
            raise ValueError(f"grad_output: expected shape {want}, got {tuple(gy.shape)}")
    return s, p, d, g, out, resolve_algo(algo, x.shape, w.shape, s, p, d, g)


def cpu_forward(x, w, b, stride, padding, dilation, groups, algo, matmul: MatMul = _np_matmul):
    s, p, d, g, out, algo = prepare(x, w, b, None, stride, padding, dilation, groups, algo)
    x, w = np.asarray(x), np.asarray(w)
    if x.shape[0] == 0 or w.shape[1] == 0:  # empty batch, or no input channel: bias only
        return _bias(np.zeros((x.shape[0], w.shape[0]) + out, dtype=x.dtype), b)
    if algo == "naive":
        return naive_forward(x, w, b, s, p, d, g, out)
    y = FORWARD[algo](x, w, b, s, p, d, g, out, matmul)
    if algo in _TRANSFORMS and not np.isfinite(y).all():
        y = im2col_forward(x, w, b, s, p, d, g, out, matmul)  # the direct sum: _TRANSFORMS
    return y


def cpu_backward(x, w, gy, stride, padding, dilation, groups, algo, has_bias,
                 matmul: MatMul = _np_matmul):
    s, p, d, g, out, algo = prepare(x, w, None, gy, stride, padding, dilation, groups, algo)
    x, w, gy = np.asarray(x), np.asarray(w), np.asarray(gy)
    gb = gy.sum(axis=(0, 2, 3)) if has_bias else None
    if x.shape[0] == 0 or w.shape[1] == 0:
        return np.zeros(x.shape, x.dtype), np.zeros(w.shape, x.dtype), gb
    if algo == "naive":
        gx, gw = naive_backward(x, w, gy, s, p, d, g, out)
    else:
        gx, gw = BACKWARD[algo](x, w, gy, s, p, d, g, out, matmul)
        if algo in _TRANSFORMS and not (np.isfinite(gx).all() and np.isfinite(gw).all()):
            gx, gw = im2col_backward(x, w, gy, s, p, d, g, out, matmul)
    return np.ascontiguousarray(gx), np.ascontiguousarray(gw), gb
