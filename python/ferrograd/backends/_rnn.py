"""Argument checks of the recurrent kernels (lstm_* and gru_*), shared by every backend.

The kernels run one layer in one direction over a time-major sequence: ``x`` is
``(T, N, I)``, the states ``(N, H)``, ``w_ih`` ``(G*H, I)``, ``w_hh`` ``(G*H, H)`` and the
biases ``(G*H,)`` with G = 4 gates for LSTM (PyTorch's order i, f, g, o) and G = 3 for GRU
(r, z, n). Each check raises ValueError/TypeError naming the argument, the expected and
the received shape or dtype. Sequences must have T >= 1 and every size must be >= 1
(PyTorch rejects empty sequences too).
"""

from __future__ import annotations

import numpy as np

from ._validate import check_float

#: gates per cell
GATES = {"lstm": 4, "gru": 3}


def _shape(a):
    return tuple(int(v) for v in a.shape)


def _same_dtype(x, a, name):
    if np.dtype(a.dtype) != np.dtype(x.dtype):
        raise TypeError(f"{name}: expected dtype {x.dtype} like x, got {a.dtype}")


def _want(a, shape, name):
    if _shape(a) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {_shape(a)}")


def check_rnn(mode, x, states, w_ih, w_hh, b_ih, b_hh):
    """Checks a forward call; returns (T, N, I, H). ``states`` is (h0,) or (h0, c0)."""
    g = GATES[mode]
    check_float(x, "x")
    if len(x.shape) != 3:
        raise ValueError(f"x: expected a 3-D array (T, N, input_size), got shape {_shape(x)}")
    t, n, i = _shape(x)
    if t < 1 or n < 1 or i < 1:
        raise ValueError(f"x: expected a non-empty (T, N, input_size) array, got shape {_shape(x)}")
    if len(w_hh.shape) != 2 or w_hh.shape[0] != g * w_hh.shape[1] or w_hh.shape[1] < 1:
        raise ValueError(f"w_hh: expected shape ({g}*hidden_size, hidden_size), got {_shape(w_hh)}")
    h = int(w_hh.shape[1])
    _same_dtype(x, w_hh, "w_hh")
    _want(w_ih, (g * h, i), "w_ih")
    _same_dtype(x, w_ih, "w_ih")
    for name, s in zip(("h0", "c0"), states):
        _want(s, (n, h), name)
        _same_dtype(x, s, name)
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            _want(b, (g * h,), name)
            _same_dtype(x, b, name)
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: expected both arrays or both None, got one of each")
    return t, n, i, h


def check_rnn_backward(mode, x, h, saved, grads):
    """Checks the saved arrays and the incoming gradients of a backward call.

    ``saved`` maps names to (array, last dimension); ``grads`` maps gy/gh_n/gc_n to arrays."""
    t, n, _ = _shape(x)
    for name, (a, last) in saved.items():
        _want(a, (t, n, last), name)
        _same_dtype(x, a, name)
    for name, a in grads.items():
        want = (t, n, h) if name == "gy" else (n, h)
        _want(a, want, name)
        _same_dtype(x, a, name)
