"""The numpy backend: pooling kernels (max, avg, adaptive)."""

from __future__ import annotations

import numpy as np

from .. import _pool
from .._validate import check_float


class PoolKernels:
    """The numpy backend's pooling kernels (max, avg, adaptive)."""

    # Written from PyTorch's definitions (padded copies and strided views, one per
    # kernel offset), independently of the window tables the rust and cuda kernels use;
    # only the output sizes and argument checks come from _pool.
    @staticmethod
    def _reach(rows, cols, k, s, d, p, shape):
        """Per axis, the kernel offsets [lo, hi) that can touch the input, and the input
        position the padded copy starts at. Offset i reads positions o * s + i * d - p;
        offsets whose positions are all < 0 or all >= size see only padding (which never
        wins a max and adds 0 to a sum; avg's divisor comes from the full kernel). A
        kernel of 2**62 with padding 2**61 on a 2x2 input then loops over a few offsets
        and pads a few rows, not 2**61."""
        reach = []
        for out, kk, ss, dd, pp, size in zip((rows.out, cols.out), k, s, d, p, shape[2:]):
            last = (out - 1) * ss - pp                        # offset 0's last position
            lo = max(0, -(-(-last) // dd)) if last < 0 else 0  # ceil(-last / d)
            hi = min(kk, (size + pp + dd - 1) // dd)
            reach.append((lo, max(hi, lo), min(0, lo * dd - pp)))
        return reach

    @staticmethod
    def _padded(x, fill, reach, s, d, p, out):
        """x inside a ``fill``-padded copy holding every position the reached offsets
        read; the copy starts at input position ``origin`` (<= 0) per axis. Also the input
        row/col each padded row/col holds (negative or >= size: padding)."""
        n, c, h, w = x.shape
        need = [max((o - 1) * ss + (hi - 1) * dd - pp - org + 1, size - org, 1)
                for (lo, hi, org), o, ss, dd, pp, size in zip(reach, out, s, d, p, (h, w))]
        (_, _, oh), (_, _, ow) = reach
        xp = np.full((n, c, need[0], need[1]), fill, dtype=x.dtype)
        xp[:, :, -oh:-oh + h, -ow:-ow + w] = x
        return xp, np.arange(need[0]) + oh, np.arange(need[1]) + ow

    @staticmethod
    def _offsets(reach, out, s, d, p):
        """(row slice, col slice) of every reached kernel offset, in row-major order."""
        (lo_h, hi_h, oh), (lo_w, hi_w, ow) = reach
        for i in range(lo_h, hi_h):
            r0 = i * d[0] - p[0] - oh
            for j in range(lo_w, hi_w):
                c0 = j * d[1] - p[1] - ow
                yield (slice(r0, r0 + (out[0] - 1) * s[0] + 1, s[0]),
                       slice(c0, c0 + (out[1] - 1) * s[1] + 1, s[1]))

    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices):
        check_float(x, "x")
        rows, cols = _pool.pool_axes(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        k = _pool.pair(kernel_size, "kernel_size", 1)
        s = _pool.stride_pair(stride, kernel_size)
        p, d = _pool.pair(padding, "padding", 0), _pool.pair(dilation, "dilation", 1)
        h, w = x.shape[2:]
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, d, p, x.shape)
        xp, in_h, in_w = self._padded(x, -np.inf, reach, s, d, p, out)
        y = np.full(x.shape[:2] + out, -np.inf, dtype=x.dtype)
        idx = np.full(y.shape, -1, dtype=np.int64)
        for hs, ws in self._offsets(reach, out, s, d, p):
            v = xp[:, :, hs, ws]
            hh, ww = in_h[hs][:, None], in_w[ws][None, :]
            valid = (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
            # PyTorch's rule: the first valid element, then anything larger or NaN
            take = valid & ((idx < 0) | (v > y) | np.isnan(v))
            y = np.where(take, v, y)
            idx = np.where(take, hh * w + ww, idx)
        return y, (idx if return_indices else None)

    @staticmethod
    def _scatter_indices(gy, indices, input_shape):
        n, c, h, w = input_shape
        _pool.check_indices(indices, gy.shape)
        planes = n * c
        gx = np.zeros((planes, h * w), dtype=gy.dtype)
        per_plane = int(np.prod(gy.shape[2:], dtype=np.int64))
        g = gy.reshape(planes, per_plane)  # explicit: -1 is ambiguous for empty batches
        ind = indices.reshape(planes, per_plane)
        if ind.size and ind.max() >= h * w:
            raise ValueError(f"indices: expected flat indices in [0, {h * w}), got {ind.max()}")
        plane = np.broadcast_to(np.arange(planes)[:, None], ind.shape)
        keep = ind >= 0
        np.add.at(gx, (plane[keep], ind[keep]), g[keep])
        return gx.reshape(input_shape)

    def max_pool2d_backward(self, gy, indices, input_shape, kernel_size, stride, padding,
                            dilation, ceil_mode):
        check_float(gy, "gy")
        rows, cols = _pool.pool_axes(tuple(input_shape), kernel_size, stride, padding,
                                     dilation, ceil_mode)
        _pool.check_grad_shape(gy, tuple(input_shape[:2]) + (rows.out, cols.out))
        return self._scatter_indices(gy, indices, tuple(input_shape))

    def _avg_divisor(self, shape, rows, cols, k, s, p, count_include_pad, divisor_override):
        """(OH, OW) divisors, as PyTorch's avg_pool2d computes them."""
        if divisor_override:
            return np.full((rows.out, cols.out), divisor_override, dtype=np.int64)
        sizes = []
        for o, kk, ss, pp, size in ((rows.out, k[0], s[0], p[0], shape[2]),
                                    (cols.out, k[1], s[1], p[1], shape[3])):
            start = np.arange(o) * ss - pp
            end = np.minimum(start + kk, size + pp)
            if count_include_pad:
                sizes.append(end - start)
            else:
                sizes.append(np.minimum(end, size) - np.maximum(start, 0))
        return sizes[0][:, None] * sizes[1][None, :]

    def _avg_setup(self, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                   divisor_override):
        rows, cols = _pool.pool_axes(shape, kernel_size, stride, padding, 1, ceil_mode,
                                     count_include_pad, kind="avg")
        divisor = _pool.check_divisor(divisor_override)
        k = _pool.pair(kernel_size, "kernel_size", 1)
        s = _pool.stride_pair(stride, kernel_size)
        p = _pool.pair(padding, "padding", 0)
        div = self._avg_divisor(shape, rows, cols, k, s, p, count_include_pad, divisor)
        return rows, cols, k, s, p, div

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
        check_float(x, "x")
        rows, cols, k, s, p, div = self._avg_setup(x.shape, kernel_size, stride, padding,
                                                   ceil_mode, count_include_pad, divisor_override)
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, (1, 1), p, x.shape)
        xp, _, _ = self._padded(x, 0, reach, s, (1, 1), p, out)
        total = np.zeros(x.shape[:2] + out, dtype=x.dtype)
        for hs, ws in self._offsets(reach, out, s, (1, 1), p):
            total += xp[:, :, hs, ws]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(div == 0, 0, total / div.astype(x.dtype)).astype(x.dtype, copy=False)

    def avg_pool2d_backward(self, gy, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
        check_float(gy, "gy")
        shape = tuple(input_shape)
        rows, cols, k, s, p, div = self._avg_setup(shape, kernel_size, stride, padding,
                                                   ceil_mode, count_include_pad, divisor_override)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        with np.errstate(invalid="ignore", divide="ignore"):
            g = np.where(div == 0, 0, gy / div.astype(gy.dtype)).astype(gy.dtype, copy=False)
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, (1, 1), p, shape)
        gp, _, _ = self._padded(np.zeros(shape, gy.dtype), 0, reach, s, (1, 1), p, out)
        for hs, ws in self._offsets(reach, out, s, (1, 1), p):
            gp[:, :, hs, ws] += g
        (h, w), (_, _, oh), (_, _, ow) = shape[2:], *reach
        return np.ascontiguousarray(gp[:, :, -oh:-oh + h, -ow:-ow + w])

    @staticmethod
    def _adaptive_windows(size, out):
        """[(start, end)] of PyTorch's adaptive pooling along one axis."""
        return [((o * size) // out, -((-(o + 1) * size) // out)) for o in range(out)]

    def adaptive_avg_pool2d_forward(self, x, output_size):
        check_float(x, "x")
        oh, ow = _pool.adaptive_output_size(x.shape, output_size)
        y = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for r, (h0, h1) in enumerate(self._adaptive_windows(x.shape[2], oh)):
            for c, (w0, w1) in enumerate(self._adaptive_windows(x.shape[3], ow)):
                win = x[:, :, h0:h1, w0:w1]
                y[:, :, r, c] = win.mean(axis=(2, 3))
                if not np.isfinite(y[:, :, r, c]).all():
                    # an overflowing sum depends on the order: the row-major running sum
                    # of rust, cuda and PyTorch (3e38 + 3e38 + -inf is NaN there), not
                    # numpy's pairwise one
                    with np.errstate(over="ignore", invalid="ignore"):
                        run = np.cumsum(win.reshape(win.shape[:2] + (-1,)), axis=-1, dtype=x.dtype)
                        y[:, :, r, c] = run[..., -1] / x.dtype.type(win.shape[2] * win.shape[3])
        return y

    def adaptive_avg_pool2d_backward(self, gy, input_shape):
        check_float(gy, "gy")
        shape = tuple(input_shape)
        _pool.check_input4d(shape, "input_shape")
        n, c, oh, ow = gy.shape if len(gy.shape) == 4 else (None,) * 4
        _pool.check_grad_shape(gy, shape[:2] + (oh, ow))
        gx = np.zeros(shape, dtype=gy.dtype)
        for r, (h0, h1) in enumerate(self._adaptive_windows(shape[2], oh)):
            for cc, (w0, w1) in enumerate(self._adaptive_windows(shape[3], ow)):
                area = (h1 - h0) * (w1 - w0)
                gx[:, :, h0:h1, w0:w1] += (gy[:, :, r, cc] / gy.dtype.type(area))[:, :, None, None]
        return gx

    def adaptive_max_pool2d_forward(self, x, output_size, return_indices):
        check_float(x, "x")
        oh, ow = _pool.adaptive_output_size(x.shape, output_size)
        w_in = x.shape[3]
        y = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        idx = np.empty(y.shape, dtype=np.int64)
        for r, (h0, h1) in enumerate(self._adaptive_windows(x.shape[2], oh)):
            for c, (w0, w1) in enumerate(self._adaptive_windows(w_in, ow)):
                win = x[:, :, h0:h1, w0:w1].reshape(x.shape[:2] + ((h1 - h0) * (w1 - w0),))
                # first maximum, or the last NaN (PyTorch takes every NaN it meets)
                nan = np.isnan(win)
                last_nan = win.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
                a = np.where(nan.any(axis=-1), last_nan, np.argmax(np.where(nan, -np.inf, win), axis=-1))
                y[:, :, r, c] = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
                idx[:, :, r, c] = (h0 + a // (w1 - w0)) * w_in + w0 + a % (w1 - w0)
        return y, (idx if return_indices else None)

    def adaptive_max_pool2d_backward(self, gy, indices, input_shape):
        check_float(gy, "gy")
        _pool.check_input4d(tuple(input_shape), "input_shape")
        if len(gy.shape) != 4 or tuple(gy.shape[:2]) != tuple(input_shape[:2]):
            raise ValueError(f"gy: expected shape ({input_shape[0]}, {input_shape[1]}, OH, OW), "
                             f"got {tuple(gy.shape)}")
        return self._scatter_indices(gy, indices, tuple(input_shape))
