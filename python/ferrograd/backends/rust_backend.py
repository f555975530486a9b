"""The rust backend: every compute kernel of the contract runs in ``ferrograd._core``.

Arrays are numpy arrays, as on the numpy backend, so the array plumbing (from_numpy,
reshape, permute, expand...) is inherited from :class:`NumpyBackend`; each kernel below
calls the Rust function of the same name. The extension reads C-contiguous inputs in
place, releases the GIL while it computes, and raises ValueError/TypeError for bad input
(RuntimeError if a Rust panic, i.e. a bug, happens).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .._cpu import missing_x86_features

_missing = missing_x86_features()
if _missing:
    raise ImportError(_missing)

# imported after the CPU check: the extension needs AVX2 + FMA
from .. import _core  # noqa: E402
from . import _attention, _conv, _dropout, _pool, _rnn  # noqa: E402
from ._validate import (  # noqa: E402
    check_batch_norm, check_batch_norm_backward, check_eps, check_group_norm,
    check_layer_norm, check_linear, check_matmul, check_prelu_weight, check_targets)
from .numpy_backend import NumpyBackend  # noqa: E402


def _broadcast_shape(a, b):
    """numpy's broadcast of two shapes, or None where they do not broadcast (the kernel
    then raises its error naming the operands)."""
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        return None


@contextlib.contextmanager
def _in_place(*arrays):
    """The arrays a kernel updates in place (parameters, optimizer state, running
    statistics), as the Rust kernels need them: C-contiguous, aligned, native byte order.
    numpy accepts any layout for an in-place update, so does this backend: an array in
    another layout is worked on as a copy, written back when the kernel returns. A
    read-only array is a ValueError here, as numpy's own in-place update raises."""
    work = []
    for a in arrays:
        if isinstance(a, np.ndarray):
            if not a.flags.writeable:
                raise ValueError(f"expected a writable array of shape {a.shape} (updated in "
                                 f"place), got a read-only one")
            if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
                a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)
        work.append(a)
    yield tuple(work)
    for original, copy in zip(arrays, work):
        if copy is not original:
            np.copyto(original, copy)


class RustBackend(NumpyBackend):
    name = "rust"

    def num_threads(self) -> int:
        return _core.num_threads()

    # sum_to_shape is a reduction: Rust's pairwise sums, in parallel
    def sum_to_shape(self, g, shape):
        shape = tuple(shape)
        if tuple(g.shape) == shape:
            return g
        return _core.sum_to_shape(g, list(shape))

    # ------------------------------------------------- elementwise arithmetic
    def binary_forward(self, op, a, b):
        return _core.binary_forward(op, a, b)

    def binary_backward(self, op, a, b, gy):
        # the gradient of a + b, and of a - b for a, is gy: an operand of gy's shape gets gy
        # itself, not a copy, as the numpy backend returns it (the engine never writes
        # into a gradient array; accumulation makes new ones). The copy was a third of the
        # time of a 4096x1024 row-broadcast add forward+backward.
        if (op in ("add", "sub") and isinstance(gy, np.ndarray) and gy.flags.c_contiguous
                and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype == gy.dtype and gy.dtype in (np.float32, np.float64)
                and gy.shape == _broadcast_shape(a.shape, b.shape)):
            ga = gy if a.shape == gy.shape else _core.sum_to_shape(gy, list(a.shape))
            if op == "add":
                gb = gy if b.shape == gy.shape else _core.sum_to_shape(gy, list(b.shape))
            else:
                gb = _core.unary_forward("neg", _core.sum_to_shape(gy, list(b.shape))
                                         if b.shape != gy.shape else gy)
            return ga, gb
        return _core.binary_backward(op, a, b, gy)

    def unary_forward(self, op, x):
        return _core.unary_forward(op, x)

    def unary_backward(self, op, x, gy):
        return _core.unary_backward(op, x, gy)

    # -------------------------------------------------------------- activations
    def relu_forward(self, x):
        return _core.relu_forward(x)

    def relu_backward(self, x, gy):
        return _core.relu_backward(x, gy)

    def relu_forward_mask(self, x):
        return _core.relu_forward_mask(x)

    def relu_backward_mask(self, mask, gy):
        return _core.relu_backward_mask(mask, gy)

    def leaky_relu_forward_mask(self, x, negative_slope):
        return _core.leaky_relu_forward_mask(x, float(negative_slope))

    def leaky_relu_backward_mask(self, mask, gy, negative_slope):
        return _core.leaky_relu_backward_mask(mask, gy, float(negative_slope))

    def leaky_relu_forward(self, x, negative_slope):
        return _core.leaky_relu_forward(x, float(negative_slope))

    def leaky_relu_backward(self, x, gy, negative_slope):
        return _core.leaky_relu_backward(x, gy, float(negative_slope))

    def prelu_forward(self, x, weight):
        check_prelu_weight(x, weight)
        return _core.prelu_forward(x, weight)

    def prelu_backward(self, x, weight, gy):
        check_prelu_weight(x, weight)
        return _core.prelu_backward(x, weight, gy)

    def sigmoid_forward(self, x):
        return _core.sigmoid_forward(x)

    def sigmoid_backward(self, y, gy):
        return _core.sigmoid_backward(y, gy)

    def tanh_forward(self, x):
        return _core.tanh_forward(x)

    def tanh_backward(self, y, gy):
        return _core.tanh_backward(y, gy)

    def gelu_forward(self, x, approximate):
        return _core.gelu_forward(x, approximate)

    def gelu_backward(self, x, gy, approximate):
        return _core.gelu_backward(x, gy, approximate)

    def swish_forward(self, x, beta):
        return _core.swish_forward(x, float(beta))

    def swish_backward(self, x, gy, beta):
        return _core.swish_backward(x, gy, float(beta))

    # ------------------------------------------------------ reductions, softmax
    def sum_forward(self, x, axes, keepdims):
        return _core.sum_forward(x, [int(a) for a in axes], bool(keepdims))

    def softmax_forward(self, x):
        return _core.softmax_forward(x)

    def softmax_backward(self, y, gy):
        return _core.softmax_backward(y, gy)

    def log_softmax_forward(self, x):
        return _core.log_softmax_forward(x)

    def log_softmax_backward(self, y, gy):
        return _core.log_softmax_backward(y, gy)

    # ----------------------------------------------------------- linear algebra
    def matmul(self, a, b, transpose_a=False, transpose_b=False):
        check_matmul(a, b, transpose_a, transpose_b)
        return _core.matmul(a, b, bool(transpose_a), bool(transpose_b))

    def linear_forward(self, x, weight, bias):
        check_linear(x, weight, bias)
        return _core.linear_forward(x, weight, bias)

    def linear_backward(self, x, weight, gy, has_bias):
        return _core.linear_backward(x, weight, gy, bool(has_bias))

    # ------------------------------------------------------------------ losses
    def mse_loss_forward(self, x, target, reduction):
        return _core.mse_loss_forward(x, target, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        return _core.mse_loss_backward(x, target, np.asarray(gy, dtype=x.dtype), reduction)

    def cross_entropy_forward(self, logits, target, reduction):
        check_targets(logits, target)
        return _core.cross_entropy_forward(logits, target, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        return _core.cross_entropy_backward(logits, target, np.asarray(gy, dtype=logits.dtype),
                                            reduction)

    # -------------------------------------------------------- optimizer steps
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening,
                 weight_decay, nesterov, first_step):
        with _in_place(param, momentum_buffer) as (p, buf):
            _core.sgd_step(p, grad, buf, float(lr), float(momentum), float(dampening),
                           float(weight_decay), bool(nesterov), bool(first_step))

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        with _in_place(param, exp_avg, exp_avg_sq) as (p, m, v):
            _core.adam_step(p, grad, m, v, int(step), float(lr), float(beta1), float(beta2),
                            float(eps), float(weight_decay), bool(decoupled))

    # ------------------------------------------------------------ normalization
    # rust_core/src/ops/norm.rs: rows in parallel (layer/group norm), channels then
    # samples in parallel (batch norm); blocked two-pass statistics merged with Chan's
    # formula. Arguments are checked here first so errors read like numpy's.
    def layer_norm_forward(self, x, weight, bias, normalized_ndim, eps):
        check_layer_norm(x, weight, bias, normalized_ndim)
        check_eps(eps)
        return _core.layer_norm_forward(x, weight, bias, int(normalized_ndim), float(eps))

    def layer_norm_backward(self, x, weight, mean, rstd, gy, normalized_ndim):
        check_layer_norm(x, weight, None, normalized_ndim)
        return _core.layer_norm_backward(x, weight, mean, rstd, gy, int(normalized_ndim))

    def group_norm_forward(self, x, weight, bias, num_groups, eps):
        check_group_norm(x, weight, bias, num_groups)
        check_eps(eps)
        return _core.group_norm_forward(x, weight, bias, int(num_groups), float(eps))

    def group_norm_backward(self, x, weight, mean, rstd, gy, num_groups):
        check_group_norm(x, weight, None, num_groups)
        return _core.group_norm_backward(x, weight, mean, rstd, gy, int(num_groups))

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        check_batch_norm(x, weight, bias, running_mean, running_var, training)
        check_eps(eps)
        if not training:
            # eval mode only reads the running statistics: read-only ones are fine, as on
            # numpy (the binding takes them mutably, so those get a copy of C floats)
            running_mean, running_var = (
                a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a
                for a in (running_mean, running_var))
        with _in_place(running_mean, running_var) as (rm, rv):
            return _core.batch_norm_forward(x, weight, bias, rm, rv, bool(training),
                                            float(momentum), float(eps))

    def batch_norm_backward(self, x, weight, mean, rstd, gy, training):
        check_batch_norm_backward(x, weight, mean, rstd)
        return _core.batch_norm_backward(x, weight, mean, rstd, gy, bool(training))
    # ------------------------------------------------------------------ pooling
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

    # ------------------------------------------------------------------ dropout
    def philox_words(self, seed, offset, first_block, n_blocks):
        _dropout.check_stream(seed, offset)
        return _core.philox_words(int(seed), int(offset), int(first_block) % 2**64, int(n_blocks))

    def dropout_forward(self, x, p, seed, offset):
        _dropout.check_stream(seed, offset)
        return _core.dropout_apply(x, _dropout.check_p(p), int(seed), int(offset))

    def dropout_backward(self, gy, p, seed, offset):
        _dropout.check_stream(seed, offset)
        return _core.dropout_apply(gy, _dropout.check_p(p), int(seed), int(offset))

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        _dropout.check_stream(seed, offset)
        return _core.dropblock_mask(list(shape), np.dtype(dtype).name, min(float(gamma), 1.0),
                                    int(block_size), int(seed), int(offset))

    # ---------------------------------------------------------------- attention
    # flash attention (rust_core/src/attention/flash.rs): tiles in parallel over batch x heads
    def attention_forward(self, q, k, v, mask, scale, is_causal):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        return _core.attention_forward(q, k, v, mask, float(scale), bool(is_causal))

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        return _core.attention_backward(q, k, v, mask, float(scale), bool(is_causal), out, lse, gout)
    # ------------------------------------------------------------------ convolution
    # Every algorithm runs in rust_core/src/conv: naive (direct loops), im2col (rayon
    # im2col, the gemm crate per group, a gathering col2im), Winograd F(2x2, 3x3) and
    # F(4x4, 3x3) (winograd.rs), FFT (rustfft, fft.rs). "auto" picks by the crossovers
    # measured on this machine, separately for forward and backward
    # (_conv.resolve_rust_algo, where the numbers are).
    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        s, p, d, g, out, _ = _conv.prepare(x, weight, bias, None, stride, padding, dilation,
                                           groups, algo)
        kernel = _conv.resolve_rust_algo(algo, weight.shape, s, d, g, out, backward=False)
        return _core.conv2d_forward(x, weight, bias, s, p, d, g, kernel)

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        s, p, d, g, out, _ = _conv.prepare(x, weight, None, gy, stride, padding, dilation,
                                           groups, algo)
        kernel = _conv.resolve_rust_algo(algo, weight.shape, s, d, g, out, backward=True)
        return _core.conv2d_backward(x, weight, gy, s, p, d, g, bool(has_bias), kernel)

    # ---------------------------------------------------------------- recurrent
    # rnn_concat_cols / rnn_split_cols are numpy copies (inherited).
    def lstm_forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        return _core.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, bool(reverse))

    def lstm_forward_inference(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        y, h_n, c_n, _, _ = _core.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, bool(reverse),
                                               keep_for_backward=False)
        return y, h_n, c_n

    def lstm_backward(self, x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n, has_bias,
                      reverse):
        _, _, _, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("lstm", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs),
                                                "cells": (cells, hs)},
                                {"gy": gy, "gh_n": gh_n, "gc_n": gc_n})
        return _core.lstm_backward(x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n,
                                   bool(has_bias), bool(reverse))

    def gru_forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh)
        return _core.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, bool(reverse))

    def gru_backward(self, x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse):
        _, _, _, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("gru", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs)},
                                {"gy": gy, "gh_n": gh_n})
        return _core.gru_backward(x, h0, w_ih, w_hh, y, gates, gy, gh_n, bool(has_bias),
                                  bool(reverse))
