"""The cuda backend: recurrent layers (LSTM, GRU)."""

from __future__ import annotations

import numpy as np

from .. import _rnn
from .runtime import _F32, _check_f32


class RnnKernels:
    """The cuda backend's recurrent layers (LSTM, GRU)."""

    # rnn.cu's fused step kernels plus linear.cu's gemm, called on raw pointers so that the
    # steps of one sequence read and write slices of the (T, N, *) arrays without views.
    def _rnn_gemm(self, c_ptr, a_ptr, b_ptr, bias_ptr, m, n, k, trans_a, trans_b):
        """C (m x n) = op(A) @ op(B) (+ bias per column); pointers as np.uintp."""
        if m == 0 or n == 0:
            return
        self._gemm_launch(c_ptr, a_ptr, b_ptr, bias_ptr, m, n, k, trans_a, trans_b)

    def _rnn_contig(self, *arrays):
        return [a if a is None or a.flags.c_contiguous else self.copy(a) for a in arrays]

    def _rnn_copy_rows(self, dst, dst_elem, src, src_elem, count):
        if count:
            self._drv.memcpy_dtod(int(dst.gpudata) + 4 * dst_elem,
                                  int(src.gpudata) + 4 * src_elem, 4 * count)

    def _rnn_prev_states(self, y, h0, t, n, hs, reverse):
        """(T, N, H): the state each step started from (h0 at the first step)."""
        prev = self.empty((t, n, hs))
        step = n * hs
        if reverse:
            self._rnn_copy_rows(prev, 0, y, step, (t - 1) * step)
            self._rnn_copy_rows(prev, (t - 1) * step, h0, 0, step)
        else:
            self._rnn_copy_rows(prev, 0, h0, 0, step)
            self._rnn_copy_rows(prev, step, y, 0, (t - 1) * step)
        return prev

    def _rnn_last(self, y, t, n, hs, reverse):
        out = self.empty((n, hs))
        self._rnn_copy_rows(out, 0, y, (0 if reverse else t - 1) * n * hs, n * hs)
        return out

    def _rnn_pointwise(self, name: str, types: str, count: int):
        """A prepared launcher of rnn.cu's step kernel ``name`` over count items."""
        if count == 0:
            return lambda *args: None
        f = self._prepared("rnn", name, types)
        grid = (max(1, min((count + 255) // 256, self._max_blocks)), 1)
        block = (256, 1, 1)
        return lambda *args: f.prepared_call(grid, block, *args)

    @staticmethod
    def _rnn_aligned(n: int, hs: int) -> bool:
        """Every step's slice of a (T, N, H) array starts 16-byte aligned."""
        return (n * hs) % 4 == 0

    @staticmethod
    def _rnn_steps(t, reverse):
        return range(t - 1, -1, -1) if reverse else range(t)

    def lstm_forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = self._rnn_contig(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        g = 4 * hs
        bias = self.binary_forward("add", b_ih, b_hh) if b_ih is not None else None
        xp = self.empty((t, n, g))
        self._rnn_gemm(self._ptr(xp), self._ptr(x), self._ptr(w_ih), self._ptr(bias), t * n, g, i, 0, 1)
        y, cells, gates = self.empty((t, n, hs)), self.empty((t, n, hs)), self.empty((t, n, g))
        hp = self.empty((n, g))
        # per step: hp = h_prev @ w_hh^T, then the fused gate kernel; launchers planned once
        # and pointers kept as ints (Python's per-launch cost is most of a step's time)
        gemm = self._gemm_stepper(n, g, hs, False, True, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("lstm_step_forward", "PPPPPPqi", n * hs)
        y_p, c_p, xp_p, g_p, hp_p = (int(self._ptr(a)) for a in (y, cells, xp, gates, hp))
        w_p = int(self._ptr(w_hh))
        h_prev, c_prev = int(self._ptr(h0)), int(self._ptr(c0))
        for s in self._rnn_steps(t, reverse):
            h_s, c_s = y_p + 4 * s * n * hs, c_p + 4 * s * n * hs
            gemm(hp_p, h_prev, w_p)
            step(xp_p + 4 * s * n * g, hp_p, c_prev, g_p + 4 * s * n * g, c_s, h_s, n, hs)
            h_prev, c_prev = h_s, c_s
        return (y, self._rnn_last(y, t, n, hs, reverse), self._rnn_last(cells, t, n, hs, reverse),
                gates, cells)

    def lstm_backward(self, x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n, has_bias,
                      reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("lstm", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs),
                                                "cells": (cells, hs)},
                                {"gy": gy, "gh_n": gh_n, "gc_n": gc_n})
        x, h0, c0, w_ih, w_hh, y, gates, cells, gy = self._rnn_contig(
            x, h0, c0, w_ih, w_hh, y, gates, cells, gy)
        g = 4 * hs
        dh, dc = self.copy(gh_n), self.copy(gc_n)
        g_pre = self.empty((t, n, g))
        # per step (latest first): the fused gate backward, then dh = g_pre_s @ w_hh
        gemm = self._gemm_stepper(n, hs, g, False, False, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("lstm_step_backward", "PPPPPPPqi", n * hs)
        gates_p, c_p, gy_p, gp_p = (int(self._ptr(a)) for a in (gates, cells, gy, g_pre))
        dh_p, dc_p, w_p, c0_p = int(self._ptr(dh)), int(self._ptr(dc)), int(self._ptr(w_hh)), int(self._ptr(c0))
        prev_of = (lambda s: s + 1) if reverse else (lambda s: s - 1)
        for s in self._rnn_steps(t, not reverse):
            p = prev_of(s)
            c_prev = c0_p if not 0 <= p < t else c_p + 4 * p * n * hs
            gp_s = gp_p + 4 * s * n * g
            step(gates_p + 4 * s * n * g, c_p + 4 * s * n * hs, c_prev, dh_p,
                 gy_p + 4 * s * n * hs, dc_p, gp_s, n, hs)
            gemm(dh_p, gp_s, w_p)
        gx = self.empty((t, n, i))
        self._rnn_gemm(self._ptr(gx), self._ptr(g_pre), self._ptr(w_ih), np.uintp(0), t * n, i, g, 0, 0)
        gw_ih, gw_hh = self.empty((g, i)), self.empty((g, hs))
        self._rnn_gemm(self._ptr(gw_ih), self._ptr(g_pre), self._ptr(x), np.uintp(0), g, i, t * n, 1, 0)
        h_prev = self._rnn_prev_states(y, h0, t, n, hs, reverse)
        self._rnn_gemm(self._ptr(gw_hh), self._ptr(g_pre), self._ptr(h_prev), np.uintp(0), g, hs,
                       t * n, 1, 0)
        gb = self._sum_axes(g_pre.reshape(t * n, g), (0,)).reshape(g) if has_bias else None
        return gx, dh, dc, gw_ih, gw_hh, gb

    def gru_forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh)
        x, h0, w_ih, w_hh, b_ih, b_hh = self._rnn_contig(x, h0, w_ih, w_hh, b_ih, b_hh)
        g = 3 * hs
        xp = self.empty((t, n, g))
        self._rnn_gemm(self._ptr(xp), self._ptr(x), self._ptr(w_ih), self._ptr(b_ih), t * n, g, i, 0, 1)
        y, gates, hp = self.empty((t, n, hs)), self.empty((t, n, 4 * hs)), self.empty((n, g))
        gemm = self._gemm_stepper(n, g, hs, False, True, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("gru_step_forward", "PPPPPqi", n * hs)
        y_p, xp_p, g_p, hp_p = (int(self._ptr(a)) for a in (y, xp, gates, hp))
        w_p, b_p = int(self._ptr(w_hh)), int(self._ptr(b_hh))
        h_prev = int(self._ptr(h0))
        for s in self._rnn_steps(t, reverse):
            h_s = y_p + 4 * s * n * hs
            gemm(hp_p, h_prev, w_p, b_p)
            step(xp_p + 4 * s * n * g, hp_p, h_prev, g_p + 4 * s * n * 4 * hs, h_s, n, hs)
            h_prev = h_s
        return y, self._rnn_last(y, t, n, hs, reverse), gates

    def gru_backward(self, x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("gru", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs)},
                                {"gy": gy, "gh_n": gh_n})
        x, h0, w_ih, w_hh, y, gates, gy = self._rnn_contig(x, h0, w_ih, w_hh, y, gates, gy)
        g = 3 * hs
        dz, dmm = self.copy(gh_n), self.full((n, hs), 0.0, _F32)
        gi, gh = self.empty((t, n, g)), self.empty((t, n, g))
        gemm = self._gemm_stepper(n, hs, g, False, False, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("gru_step_backward", "PPPPPPPqi", n * hs)
        gates_p, y_p, gy_p, gi_p, gh_p = (int(self._ptr(a)) for a in (gates, y, gy, gi, gh))
        dz_p, dmm_p, w_p, h0_p = int(self._ptr(dz)), int(self._ptr(dmm)), int(self._ptr(w_hh)), int(self._ptr(h0))
        prev_of = (lambda s: s + 1) if reverse else (lambda s: s - 1)
        for s in self._rnn_steps(t, not reverse):
            p = prev_of(s)
            h_prev = h0_p if not 0 <= p < t else y_p + 4 * p * n * hs
            gh_s = gh_p + 4 * s * n * g
            step(gates_p + 4 * s * n * 4 * hs, h_prev, dmm_p, gy_p + 4 * s * n * hs, dz_p,
                 gi_p + 4 * s * n * g, gh_s, n, hs)
            gemm(dmm_p, gh_s, w_p)
        gh0 = self.binary_forward("add", dz, dmm)
        gx = self.empty((t, n, i))
        self._rnn_gemm(self._ptr(gx), self._ptr(gi), self._ptr(w_ih), np.uintp(0), t * n, i, g, 0, 0)
        gw_ih, gw_hh = self.empty((g, i)), self.empty((g, hs))
        self._rnn_gemm(self._ptr(gw_ih), self._ptr(gi), self._ptr(x), np.uintp(0), g, i, t * n, 1, 0)
        h_prev = self._rnn_prev_states(y, h0, t, n, hs, reverse)
        self._rnn_gemm(self._ptr(gw_hh), self._ptr(gh), self._ptr(h_prev), np.uintp(0), g, hs,
                       t * n, 1, 0)
        gb_ih = gb_hh = None
        if has_bias:
            gb_ih = self._sum_axes(gi.reshape(t * n, g), (0,)).reshape(g)
            gb_hh = self._sum_axes(gh.reshape(t * n, g), (0,)).reshape(g)
        return gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh

    def rnn_concat_cols(self, arrays):
        arrays = self._rnn_contig(*arrays)
        for a in arrays:
            _check_f32(a, "arrays")
        rows = int(arrays[0].shape[0])
        if any(len(a.shape) != 2 or a.shape[0] != rows for a in arrays):
            raise ValueError(f"arrays: expected 2-D arrays with {rows} rows, got shapes "
                             f"{[tuple(a.shape) for a in arrays]}")
        total = sum(int(a.shape[1]) for a in arrays)
        out = self.empty((rows, total))
        off = 0
        for a in arrays:
            w = int(a.shape[1])
            self._launch("rnn", "copy_cols", rows * w, self._ptr(out), self._ptr(a), np.int64(rows),
                         np.int64(w), np.int64(total), np.int64(off), np.int64(w), np.int64(0))
            off += w
        return out

    def rnn_split_cols(self, a, sizes):
        _check_f32(a, "a")
        (a,) = self._rnn_contig(a)
        sizes = [int(s) for s in sizes]
        if len(a.shape) != 2 or sum(sizes) != a.shape[1]:
            raise ValueError(f"sizes: expected column counts summing to a.shape[1] of a 2-D "
                             f"array, got {sizes} for shape {tuple(a.shape)}")
        rows, cols = int(a.shape[0]), int(a.shape[1])
        out, off = [], 0
        for w in sizes:
            p = self.empty((rows, w))
            self._launch("rnn", "copy_cols", rows * w, self._ptr(p), self._ptr(a), np.int64(rows),
                         np.int64(w), np.int64(w), np.int64(0), np.int64(cols), np.int64(off))
            out.append(p)
            off += w
        return tuple(out)
