"""Recurrent layers: LSTM, GRU, LSTMCell and GRUCell with PyTorch's semantics.

Parameter names, shapes, gate order and initialization (uniform in +-1/sqrt(hidden_size))
are PyTorch's, so ``load_state_dict`` takes a PyTorch state dict one to one: LSTM gates
are stacked i, f, g, o (the book's f, i, C, o over a concatenated [h, x] is not used) and
GRU gates r, z, n with b_hn inside the reset product. ``proj_size`` is not supported.
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import get_backend
from ..ops import rnn as R
from ..ops.layout import reshape
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def _param(be, shape, bound, dtype):
    return Parameter(Tensor(be.from_numpy(init.uniform(shape, bound, dtype)), be))


def _positive(v, name):
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


class _RNNBase(Module):
    _mode = ""
    _gates = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 backend=None, dtype=np.float32):
        super().__init__()
        _positive(input_size, "input_size")
        _positive(hidden_size, "hidden_size")
        _positive(num_layers, "num_layers")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        be = get_backend(backend)
        g, hs = self._gates * hidden_size, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        dirs = 2 if bidirectional else 1
        self._flat_names = []
        for layer in range(num_layers):
            fin = input_size if layer == 0 else dirs * hs
            for d in range(dirs):
                sfx = f"_l{layer}{'_reverse' if d else ''}"
                shapes = [("weight_ih", (g, fin)), ("weight_hh", (g, hs))]
                if bias:
                    shapes += [("bias_ih", (g,)), ("bias_hh", (g,))]
                for name, shape in shapes:
                    setattr(self, name + sfx, _param(be, shape, bound, dtype))
                    self._flat_names.append(name + sfx)

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_names]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


class LSTM(_RNNBase):
    """torch.nn.LSTM: forward(input, hx=None) -> (output, (h_n, c_n)). Gates i, f, g, o."""
    _mode, _gates = "lstm", 4

    def forward(self, input, hx=None):
        return R.lstm(input, hx, self._flat_weights, self.num_layers, self.bias, self.batch_first,
                      self.dropout, self.training, self.bidirectional)


class GRU(_RNNBase):
    """torch.nn.GRU: forward(input, hx=None) -> (output, h_n). Gates r, z, n."""
    _mode, _gates = "gru", 3

    def forward(self, input, hx=None):
        return R.gru(input, hx, self._flat_weights, self.num_layers, self.bias, self.batch_first,
                     self.dropout, self.training, self.bidirectional)


class _CellBase(Module):
    _gates = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, backend=None,
                 dtype=np.float32):
        super().__init__()
        _positive(input_size, "input_size")
        _positive(hidden_size, "hidden_size")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        be = get_backend(backend)
        g, bound = self._gates * hidden_size, 1.0 / math.sqrt(hidden_size)
        self.weight_ih = _param(be, (g, input_size), bound, dtype)
        self.weight_hh = _param(be, (g, hidden_size), bound, dtype)
        if bias:
            self.bias_ih = _param(be, (g,), bound, dtype)
            self.bias_hh = _param(be, (g,), bound, dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def _params(self):
        ps = [self.weight_ih, self.weight_hh]
        return ps + [self.bias_ih, self.bias_hh] if self.bias else ps

    def _sequence(self, input):
        """input (N, I) or (I,) as a one-step sequence (1, N, I); whether it was batched."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"input: expected a 1-D or 2-D tensor, got shape {input.shape}")
        batched = input.ndim == 2
        n = input.shape[0] if batched else 1
        return reshape(input, (1, n, input.shape[-1])), batched, n

    def _state(self, s, name, batched, n):
        if s is None:
            return None
        if not isinstance(s, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(s).__name__}")
        want = (n, self.hidden_size) if batched else (self.hidden_size,)
        if tuple(s.shape) != want:
            raise ValueError(f"{name}: expected shape {want}, got {tuple(s.shape)}")
        return reshape(s, (1, n, self.hidden_size))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell: forward(input, hx=None) -> (h_1, c_1); one step of LSTM."""
    _gates = 4

    def forward(self, input, hx=None):
        x, batched, n = self._sequence(input)
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx: expected a tuple (h_0, c_0), got {type(hx).__name__}")
        state = None
        if hx is not None:
            state = (self._state(hx[0], "h_0", batched, n), self._state(hx[1], "c_0", batched, n))
        _, (h, c) = R.lstm(x, state, self._params(), 1, self.bias)
        shape = (n, self.hidden_size) if batched else (self.hidden_size,)
        return reshape(h, shape), reshape(c, shape)


class GRUCell(_CellBase):
    """torch.nn.GRUCell: forward(input, hx=None) -> h_1; one step of GRU."""
    _gates = 3

    def forward(self, input, hx=None):
        x, batched, n = self._sequence(input)
        _, h = R.gru(x, self._state(hx, "hx", batched, n), self._params(), 1, self.bias)
        return reshape(h, (n, self.hidden_size) if batched else (self.hidden_size,))
