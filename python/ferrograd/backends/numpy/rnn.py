"""The numpy backend: recurrent layers (LSTM, GRU)."""

from __future__ import annotations

import numpy as np

from .. import _rnn
from .._exact import exact_nonfinite


class RnnKernels:
    """The numpy backend's recurrent layers (LSTM, GRU)."""

    # The readable reference: the sequence's input projection as one matmul, then per step
    # one matmul of the state with all gates of w_hh and the pointwise gate update.
    @staticmethod
    def _rnn_sigmoid(a):
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)

    @staticmethod
    def _rnn_steps(t, reverse):
        return range(t - 1, -1, -1) if reverse else range(t)

    @staticmethod
    def _rnn_prev_states(y, h0, reverse):
        """(T, N, H): the state each step started from."""
        if reverse:
            return np.concatenate([y[1:], h0[None]], axis=0)
        return np.concatenate([h0[None], y[:-1]], axis=0)

    @staticmethod
    def _rnn_projection(x2, w_ih, bias):
        """x2 (T*N, I) @ w_ih^T + bias: the whole sequence's input projection, overflowing
        products summed exactly with the bias inside the sum (linear's rule, _exact.py)."""
        xp = x2 @ w_ih.T
        if bias is not None:
            xp += bias
        return exact_nonfinite(xp, x2, w_ih.T, bias)

    def lstm_forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        bias = None if b_ih is None else b_ih + b_hh
        xp = self._rnn_projection(x.reshape(t * n, i), w_ih, bias).reshape(t, n, 4 * hs)
        y = np.empty((t, n, hs), x.dtype)
        cells = np.empty((t, n, hs), x.dtype)
        gates = np.empty((t, n, 4 * hs), x.dtype)
        h, c = h0, c0
        for s in self._rnn_steps(t, reverse):
            a = xp[s] + h @ w_hh.T
            ig = self._rnn_sigmoid(a[:, :hs])
            fg = self._rnn_sigmoid(a[:, hs:2 * hs])
            gg = np.tanh(a[:, 2 * hs:3 * hs])
            og = self._rnn_sigmoid(a[:, 3 * hs:])
            c = fg * c + ig * gg
            h = og * np.tanh(c)
            gates[s] = np.concatenate([ig, fg, gg, og], axis=1)
            cells[s], y[s] = c, h
        return y, np.array(h), np.array(c), gates, cells

    def lstm_backward(self, x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n,
                      has_bias, reverse):
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("lstm", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs),
                                                "cells": (cells, hs)},
                                {"gy": gy, "gh_n": gh_n, "gc_n": gc_n})
        c_prev_all = self._rnn_prev_states(cells, c0, reverse)
        g_pre = np.empty((t, n, 4 * hs), x.dtype)  # gradients of the gate pre-activations
        dh, dc = gh_n, gc_n
        for s in self._rnn_steps(t, not reverse):
            dh = dh + gy[s]
            ig, fg, gg, og = (gates[s, :, k * hs:(k + 1) * hs] for k in range(4))
            tc = np.tanh(cells[s])
            dc = dc + dh * og * (1 - tc * tc)
            g_pre[s] = np.concatenate([dc * gg * ig * (1 - ig), dc * c_prev_all[s] * fg * (1 - fg),
                                       dc * ig * (1 - gg * gg), dh * tc * og * (1 - og)], axis=1)
            dc = dc * fg
            dh = g_pre[s] @ w_hh
        g2 = g_pre.reshape(t * n, 4 * hs)
        gx = (g2 @ w_ih).reshape(t, n, i)
        gw_ih = g2.T @ x.reshape(t * n, i)
        gw_hh = g2.T @ self._rnn_prev_states(y, h0, reverse).reshape(t * n, hs)
        gb = g2.sum(axis=0) if has_bias else None
        return gx, np.array(dh), np.array(dc), gw_ih, gw_hh, gb

    def gru_forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh)
        x2 = x.reshape(t * n, i)  # overflowing products summed exactly (_exact.py)
        xp = self._rnn_projection(x2, w_ih, b_ih).reshape(t, n, 3 * hs)
        y = np.empty((t, n, hs), x.dtype)
        gates = np.empty((t, n, 4 * hs), x.dtype)
        h = h0
        for s in self._rnn_steps(t, reverse):
            hp = h @ w_hh.T
            if b_hh is not None:
                hp = hp + b_hh
            r = self._rnn_sigmoid(xp[s, :, :hs] + hp[:, :hs])
            z = self._rnn_sigmoid(xp[s, :, hs:2 * hs] + hp[:, hs:2 * hs])
            hn = hp[:, 2 * hs:]
            nn_ = np.tanh(xp[s, :, 2 * hs:] + r * hn)
            h = (1 - z) * nn_ + z * h
            gates[s] = np.concatenate([r, z, nn_, hn], axis=1)
            y[s] = h
        return y, np.array(h), gates

    def gru_backward(self, x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse):
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("gru", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs)},
                                {"gy": gy, "gh_n": gh_n})
        h_prev_all = self._rnn_prev_states(y, h0, reverse)
        gi = np.empty((t, n, 3 * hs), x.dtype)  # gradients of the input-side pre-activations
        gh = np.empty((t, n, 3 * hs), x.dtype)  # and of the hidden-side ones (W_hh h + b_hh)
        dh = gh_n
        for s in self._rnn_steps(t, not reverse):
            dh = dh + gy[s]
            r, z, nn_, hn = (gates[s, :, k * hs:(k + 1) * hs] for k in range(4))
            dan = dh * (1 - z) * (1 - nn_ * nn_)
            daz = dh * (h_prev_all[s] - nn_) * z * (1 - z)
            dar = dan * hn * r * (1 - r)
            gi[s] = np.concatenate([dar, daz, dan], axis=1)
            gh[s] = np.concatenate([dar, daz, dan * r], axis=1)
            dh = dh * z + gh[s] @ w_hh
        gi2, gh2 = gi.reshape(t * n, 3 * hs), gh.reshape(t * n, 3 * hs)
        gx = (gi2 @ w_ih).reshape(t, n, i)
        gw_ih = gi2.T @ x.reshape(t * n, i)
        gw_hh = gh2.T @ h_prev_all.reshape(t * n, hs)
        gb_ih, gb_hh = (gi2.sum(axis=0), gh2.sum(axis=0)) if has_bias else (None, None)
        return gx, np.array(dh), gw_ih, gw_hh, gb_ih, gb_hh

    def rnn_concat_cols(self, arrays):
        return np.concatenate(list(arrays), axis=1)

    def rnn_split_cols(self, a, sizes):
        edges = np.cumsum([0] + [int(s) for s in sizes])
        if len(a.shape) != 2 or edges[-1] != a.shape[1]:
            raise ValueError(f"sizes: expected column counts summing to a.shape[1] of a 2-D "
                             f"array, got {list(sizes)} for shape {tuple(a.shape)}")
        return tuple(np.ascontiguousarray(a[:, lo:hi]) for lo, hi in zip(edges[:-1], edges[1:]))
