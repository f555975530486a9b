"""The cuda backend: pooling kernels (max, avg, adaptive)."""

from __future__ import annotations

import numpy as np

from .. import _pool
from .runtime import _I64, _check_f32


class PoolKernels:
    """The cuda backend's pooling kernels (max, avg, adaptive)."""

    # window tables from _pool (PyTorch's rules) go to the device once (cached by value);
    # kernels in cuda/pool.cu. Small windows: a thread per output; large ones (global
    # pooling): a warp per output. Backward gathers per input element (no atomics).
    _WARP_WINDOW = 64  # window elements from which a warp per output pays off

    _BLOCK_WINDOW = 2048  # and a block of 256 threads per output

    def _pool_planes(self, shape):
        n, c, h, w = (int(v) for v in shape)
        if h * w >= 2 ** 31:
            raise ValueError(f"input: the cuda pooling kernels take planes of fewer than 2^31 "
                             f"elements, got H * W = {h * w}")
        return n * c, h, w

    def _pool_tables(self, rows, cols):
        """(tab, inv) device arrays of a geometry; Axis objects are cached per geometry
        and hash by identity, so this dict keeps one entry per geometry used."""
        cache = self.__dict__.setdefault("_pool_cache", {})
        hit = cache.get((rows, cols))
        if hit is None:
            (rs, rc), (cs, cc) = _pool.clipped(rows), _pool.clipped(cols)
            tab = self._gpuarray.to_gpu(np.concatenate([rs, rc, rows.factor, cs, cc, cols.factor]))
            (lh, hh), (lw, hw) = rows.inverse(), cols.inverse()
            inv = self._gpuarray.to_gpu(np.concatenate([lh, hh, lw, hw]))
            hit = cache[(rows, cols)] = (tab, inv, int(rc.max()) * int(cc.max()),
                                         self._is_2x2(rows) and self._is_2x2(cols)
                                         and cols.size % 2 == 0)
        return hit

    @staticmethod
    def _is_2x2(axis):
        """2-wide windows, stride 2, no padding, covering an even axis exactly (the
        pool2x2 kernels' case)."""
        return (axis.step == 1 and axis.size == 2 * axis.out and bool(np.all(axis.count == 2))
                and np.array_equal(axis.start, 2 * np.arange(axis.out)))

    def _pool2x2_forward(self, y, idx, x, n_out, h, w, mode, divisor):
        grid = (max(1, min((n_out + 255) // 256, self._max_blocks)), 1)
        self._prepared("pool", "pool2x2_forward", "PPPqiiiif").prepared_call(
            grid, (256, 1, 1), self._ptr(y), self._ptr(idx), self._ptr(x), n_out, w, h // 2,
            w // 2, 0 if mode == "max" else 1, float(divisor or 4))

    def _pool2x2_backward(self, gx, gy, idx, h, w, mode, divisor):
        n_out = gy.size
        grid = (max(1, min((n_out + 255) // 256, self._max_blocks)), 1)
        self._prepared("pool", "pool2x2_backward", "PPPqiiiif").prepared_call(
            grid, (256, 1, 1), self._ptr(gx), self._ptr(gy), self._ptr(idx), n_out, w, h // 2,
            w // 2, 0 if mode == "max" else 1, float(divisor or 4))

    @staticmethod
    def _plane_grid(planes, per_plane, block=256):
        return (max(1, min((per_plane + block - 1) // block, 4096)), max(1, min(planes, 65535)))

    def _pool_forward(self, x, rows, cols, mode: str, with_indices: bool, divisor: int = 0):
        _check_f32(x, "x")
        planes, h, w = self._pool_planes(x.shape)
        oh, ow = rows.out, cols.out
        y = self.empty((x.shape[0], x.shape[1], oh, ow))
        idx = self.empty(y.shape, _I64) if with_indices else None
        if y.size == 0:
            return y, idx
        tab, _, window, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_forward(y, idx, x, y.size, h, w, mode, divisor)
            return y, idx
        geo = (np.int64(planes), np.int32(h), np.int32(w), np.int32(oh), np.int32(ow), self._ptr(tab))
        if window >= self._BLOCK_WINDOW:  # a block per output
            grid = (max(1, min(planes * oh * ow, self._max_blocks * 4)), 1)
            suffix = "_block"
        elif window >= self._WARP_WINDOW:  # a warp per output
            warps = planes * oh * ow
            grid = (max(1, min((warps * 32 + 255) // 256, self._max_blocks)), 1)
            suffix = "_warp"
        else:
            grid = self._plane_grid(planes, oh * ow)
            suffix = ""
        if mode == "max":
            self._prepared("pool", "pool_max_forward" + suffix, "PPPqiiiiPii").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(idx), self._ptr(x), *geo,
                np.int32(rows.step), np.int32(cols.step))
        else:
            self._prepared("pool", "pool_avg_forward" + suffix, "PPqiiiiPq").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(x), *geo, np.int64(divisor))
        return y, idx

    def _pool_max_backward(self, gy, indices, input_shape, rows, cols):
        _check_f32(gy, "gy")
        _pool.check_indices(indices, gy.shape)
        shape = tuple(int(v) for v in input_shape)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        planes, h, w = self._pool_planes(shape)
        gx = self.empty(shape)
        if gx.size == 0:
            return gx
        _, inv, _, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_backward(gx, gy, indices, h, w, "max", 0)
            return gx
        self._prepared("pool", "pool_max_backward", "PPPqiiiiP").prepared_call(
            self._plane_grid(planes, h * w), (256, 1, 1), self._ptr(gx), self._ptr(gy),
            self._ptr(indices), np.int64(planes), np.int32(h), np.int32(w),
            np.int32(rows.out), np.int32(cols.out), self._ptr(inv))
        return gx

    def _pool_avg_backward(self, gy, input_shape, rows, cols, divisor: int):
        _check_f32(gy, "gy")
        shape = tuple(int(v) for v in input_shape)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        planes, h, w = self._pool_planes(shape)
        gx = self.empty(shape)
        if gx.size == 0:
            return gx
        tab, inv, _, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_backward(gx, gy, None, h, w, "avg", divisor)
            return gx
        self._prepared("pool", "pool_avg_backward", "PPqiiiiPPq").prepared_call(
            self._plane_grid(planes, h * w), (256, 1, 1), self._ptr(gx), self._ptr(gy),
            np.int64(planes), np.int32(h), np.int32(w), np.int32(rows.out),
            np.int32(cols.out), self._ptr(tab), self._ptr(inv), np.int64(divisor))
        return gx

    def _axes(self, kind, shape, *args):
        """pool_axes / the avg variant, memoised on the raw arguments (one dict lookup on
        the hot path; unhashable arguments such as lists just skip the memo)."""
        plans = self.__dict__.setdefault("_pool_plans", {})
        key = (kind, tuple(shape)) + args
        try:
            hit = plans.get(key)
        except TypeError:
            key, hit = None, None
        if hit is None:
            if kind == "max":
                hit = _pool.pool_axes(tuple(shape), *args)
            else:
                k, s, p, ceil, cip, div = args
                rows, cols = _pool.pool_axes(tuple(shape), k, s, p, 1, ceil, cip, kind="avg")
                hit = rows, cols, _pool.check_divisor(div)
            if key is not None and len(plans) < 4096:
                plans[key] = hit
        return hit

    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices):
        rows, cols = self._axes("max", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        return self._pool_forward(x, rows, cols, "max", bool(return_indices))

    def max_pool2d_backward(self, gy, indices, input_shape, kernel_size, stride, padding,
                            dilation, ceil_mode):
        rows, cols = self._axes("max", input_shape, kernel_size, stride, padding, dilation,
                                ceil_mode)
        return self._pool_max_backward(gy, indices, input_shape, rows, cols)

    def _avg_axes(self, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                  divisor_override):
        return self._axes("avg", shape, kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
        rows, cols, div = self._avg_axes(x.shape, kernel_size, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override)
        return self._pool_forward(x, rows, cols, "avg", False, div)[0]

    def avg_pool2d_backward(self, gy, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
        rows, cols, div = self._avg_axes(input_shape, kernel_size, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override)
        return self._pool_avg_backward(gy, input_shape, rows, cols, div)

    def adaptive_avg_pool2d_forward(self, x, output_size):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return self._pool_forward(x, rows, cols, "avg", False)[0]

    def adaptive_avg_pool2d_backward(self, gy, input_shape):
        if len(gy.shape) != 4:
            raise ValueError(f"gy: expected a 4-D array, got shape {tuple(gy.shape)}")
        rows, cols = _pool.adaptive_axes(tuple(input_shape), tuple(gy.shape[2:]))
        return self._pool_avg_backward(gy, input_shape, rows, cols, 0)

    def adaptive_max_pool2d_forward(self, x, output_size, return_indices):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return self._pool_forward(x, rows, cols, "max", bool(return_indices))

    def adaptive_max_pool2d_backward(self, gy, indices, input_shape):
        if len(gy.shape) != 4:
            raise ValueError(f"gy: expected a 4-D array, got shape {tuple(gy.shape)}")
        rows, cols = _pool.adaptive_axes(tuple(input_shape), tuple(gy.shape[2:]))
        return self._pool_max_backward(gy, indices, input_shape, rows, cols)
