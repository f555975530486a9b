"""The cuda backend: elementwise arithmetic with broadcasting (the binary and unary ops)."""

from __future__ import annotations

import numpy as np

from .._validate import check_binary_op, check_same_shape, check_unary_op
from ..base import contiguous_strides
from .runtime import _check_f32


_BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4, "maximum": 5, "minimum": 6,
                 "clamp_min": 5, "clamp_max": 6}
# (ga formula, gb formula) codes of elementwise.cu's binary_apply
_BINARY_GRAD_CODES = {"add": (10, 10), "sub": (10, 11), "mul": (12, 13), "div": (14, 15),
                      "pow": (16, 17), "maximum": (18, 19), "minimum": (20, 21),
                      "clamp_min": (22, 23), "clamp_max": (24, 25)}
_UNARY_CODES = {"neg": 0, "exp": 1, "log": 2, "abs": 3, "sqrt": 4, "rsqrt": 5, "sin": 6, "cos": 7}


class ElementwiseKernels:
    """The cuda backend's elementwise arithmetic with broadcasting (the binary and unary ops)."""

    def _binary(self, code: int, a, b, g, out_shape):
        """binary_apply(code) over the broadcast shape (g is None or has out_shape)."""
        y = self.empty(out_shape)
        n = y.size
        if n == 0:
            return y
        if tuple(a.shape) == tuple(b.shape) == tuple(out_shape):
            self._launch("elementwise", "binary_same", n, np.int32(code), self._ptr(y), self._ptr(a),
                         self._ptr(b), self._ptr(g), np.int64(n))
            return y
        nd = len(out_shape)

        def strides(shape):
            src = contiguous_strides(shape)
            pad = nd - len(shape)
            return (0,) * pad + tuple(0 if d == 1 else s for d, s in zip(shape, src))

        meta = self._meta(tuple(out_shape) + strides(a.shape) + strides(b.shape)
                          + contiguous_strides(out_shape))
        self._launch("elementwise", "binary_broadcast", n, np.int32(code), self._ptr(y), self._ptr(a),
                     self._ptr(b), self._ptr(g), np.int64(n), np.int32(nd), self._ptr(meta))
        return y

    @staticmethod
    def _broadcast(a, b):
        try:
            return tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
        except ValueError:
            raise ValueError(f"b: shape {tuple(b.shape)} does not broadcast with a's shape "
                             f"{tuple(a.shape)}") from None

    def binary_forward(self, op, a, b):
        check_binary_op(op)
        _check_f32(a, "a")
        _check_f32(b, "b")
        return self._binary(_BINARY_CODES[op], a, b, None, self._broadcast(a, b))

    def binary_backward(self, op, a, b, gy):
        check_binary_op(op)
        shape = self._broadcast(a, b)
        code_a, code_b = _BINARY_GRAD_CODES[op]
        ga = self._binary(code_a, a, b, gy, shape)
        gb = self._binary(code_b, a, b, gy, shape)
        return self.sum_to_shape(ga, a.shape), self.sum_to_shape(gb, b.shape)

    def unary_forward(self, op, x):
        check_unary_op(op)
        _check_f32(x, "x")
        y = self.empty(x.shape)
        self._launch("elementwise", "unary_forward", x.size, np.int32(_UNARY_CODES[op]),
                     self._ptr(y), self._ptr(x), np.int64(x.size))
        return y

    def unary_backward(self, op, x, gy):
        check_unary_op(op)
        check_same_shape(x, gy, "x", "gy")
        g = self.empty(x.shape)
        self._launch("elementwise", "unary_backward", x.size, np.int32(_UNARY_CODES[op]),
                     self._ptr(g), self._ptr(x), self._ptr(gy), np.int64(x.size))
        return g
