"""The numpy backend: elementwise arithmetic with broadcasting (the binary and unary ops)."""

from __future__ import annotations

import math

import numpy as np

from .._validate import check_binary_op, check_fits_memory, check_float, check_unary_op
from .arrays import sum_to_shape


class ElementwiseKernels:
    """The numpy backend's elementwise arithmetic with broadcasting (the binary and unary ops)."""

    def binary_forward(self, op, a, b):
        check_binary_op(op)
        check_float(a, "a")
        check_float(b, "b")
        shape = np.broadcast_shapes(a.shape, b.shape)
        check_fits_memory(math.prod(shape), np.result_type(a, b).itemsize, f"{op} of shape {shape}")
        with np.errstate(all="ignore"):
            if op == "add":
                return a + b
            if op == "sub":
                return a - b
            if op == "mul":
                return a * b
            if op == "div":
                return a / b
            if op in ("maximum", "clamp_min"):
                return np.maximum(a, b)  # NaN if either is NaN, as torch.maximum and clamp
            if op in ("minimum", "clamp_max"):
                return np.minimum(a, b)
            return np.power(a, b)

    def binary_backward(self, op, a, b, gy):
        check_binary_op(op)
        with np.errstate(all="ignore"):
            if op == "add":
                ga, gb = gy, gy
            elif op == "sub":
                ga, gb = gy, -gy
            elif op == "mul":
                ga, gb = gy * b, gy * a
            elif op == "div":
                ga = gy / b
                gb = -gy * a / (b * b)
            elif op in ("maximum", "minimum"):
                # the winner takes gy, a tie splits it; a NaN compares false both ways
                # and both operands take gy (PyTorch's rule)
                shared = np.where(a == b, gy / 2, gy)
                a_loses, b_loses = (a < b, a > b) if op == "maximum" else (a > b, a < b)
                ga = np.where(a_loses, 0, shared)
                gb = np.where(b_loses, 0, shared)
            elif op == "clamp_min":  # a clamped from below by b (a number: a tie, or NaN, gets 0)
                ga, gb = np.where(a > b, gy, 0), np.where(a < b, gy, 0)
            elif op == "clamp_max":  # a clamped from above by b
                ga, gb = np.where(a < b, gy, 0), np.where(a > b, gy, 0)
            else:  # pow: d/da = b a^(b-1), 0 where b == 0; d/db = a^b log a, 0 where
                # a == 0 and b >= 0 (PyTorch's masks: 0^0 and 0^b have gradient 0; 0^-1
                # gives inf * log 0 = -inf; a negative a gives NaN, as log a is)
                ga = gy * b * np.power(a, b - 1)
                ga = np.where(b == 0, np.zeros_like(ga), ga)
                gb = gy * np.power(a, b) * np.log(a)
                gb = np.where((a == 0) & (b >= 0), np.zeros_like(gb), gb)
        return (np.require(sum_to_shape(ga, a.shape), requirements="C"),
                np.require(sum_to_shape(gb, b.shape), requirements="C"))

    def unary_forward(self, op, x):
        check_unary_op(op)
        check_float(x, "x")
        check_fits_memory(x.size, x.itemsize, f"{op} of shape {x.shape}")
        with np.errstate(all="ignore"):
            if op == "neg":
                return -x
            if op == "exp":
                return np.exp(x)
            if op == "log":
                return np.log(x)
            if op == "abs":
                return np.abs(x)
            if op == "sqrt":
                return np.sqrt(x)
            if op == "rsqrt":
                return 1 / np.sqrt(x)
            if op == "sin":
                return np.sin(x)
            return np.cos(x)

    def unary_backward(self, op, x, gy):
        check_unary_op(op)
        with np.errstate(all="ignore"):
            if op == "neg":
                return -gy
            if op == "exp":
                return gy * np.exp(x)
            if op == "log":
                return gy / x
            if op == "abs":
                return gy * np.sign(x)
            if op == "sqrt":
                return gy / (2 * np.sqrt(x))
            if op == "rsqrt":
                r = 1 / np.sqrt(x)
                return -0.5 * gy * (r * r * r)
            if op == "sin":
                return gy * np.cos(x)
            return -gy * np.sin(x)
