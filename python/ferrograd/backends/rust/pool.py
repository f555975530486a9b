"""The rust backend: pooling kernels (max, avg, adaptive)."""

from __future__ import annotations

from .. import _pool
from ._extension import _core


class PoolKernels:
    """The rust backend's pooling kernels (max, avg, adaptive)."""

    # the window tables come from _pool (PyTorch's rules), the work from ops/pool.rs
    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices):
        rows, cols = _pool.pool_axes(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        return _core.pool2d_max_forward(x, _pool.table(rows), _pool.table(cols), bool(return_indices))

    def max_pool2d_backward(self, gy, indices, input_shape, kernel_size, stride, padding,
                            dilation, ceil_mode):
        _pool.check_indices(indices, gy.shape)
        return _core.pool2d_max_backward(gy, indices, [int(v) for v in input_shape])

    def _avg_tables(self, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override):
        rows, cols = _pool.pool_axes(shape, kernel_size, stride, padding, 1, ceil_mode,
                                     count_include_pad, kind="avg")
        return _pool.table(rows), _pool.table(cols), _pool.check_divisor(divisor_override)

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
        rows, cols, div = self._avg_tables(x.shape, kernel_size, stride, padding, ceil_mode,
                                           count_include_pad, divisor_override)
        return _core.pool2d_avg_forward(x, rows, cols, div)

    def avg_pool2d_backward(self, gy, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
        rows, cols, div = self._avg_tables(tuple(input_shape), kernel_size, stride, padding,
                                           ceil_mode, count_include_pad, divisor_override)
        return _core.pool2d_avg_backward(gy, [int(v) for v in input_shape], rows, cols, div)

    def adaptive_avg_pool2d_forward(self, x, output_size):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return _core.pool2d_avg_forward(x, _pool.table(rows), _pool.table(cols), 0)

    def adaptive_avg_pool2d_backward(self, gy, input_shape):
        shape = tuple(int(v) for v in input_shape)
        if len(gy.shape) != 4:
            raise ValueError(f"gy: expected a 4-D array, got shape {tuple(gy.shape)}")
        rows, cols = _pool.adaptive_axes(shape, tuple(gy.shape[2:]))
        return _core.pool2d_avg_backward(gy, list(shape), _pool.table(rows), _pool.table(cols), 0)

    def adaptive_max_pool2d_forward(self, x, output_size, return_indices):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return _core.pool2d_max_forward(x, _pool.table(rows), _pool.table(cols), bool(return_indices))

    def adaptive_max_pool2d_backward(self, gy, indices, input_shape):
        _pool.check_indices(indices, gy.shape)
        return _core.pool2d_max_backward(gy, indices, [int(v) for v in input_shape])
