"""The rust backend: recurrent layers (LSTM, GRU)."""

from __future__ import annotations

from .. import _rnn
from ._extension import _core


class RnnKernels:
    """The rust backend's recurrent layers (LSTM, GRU)."""

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
