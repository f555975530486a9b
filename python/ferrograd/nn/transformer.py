"""TransformerEncoderLayer and TransformerEncoder (torch.nn's, same submodule names)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from ..backends import get_backend
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .module import Module, Sequential
from .norm import LayerNorm

_ACTIVATIONS = ("relu", "gelu")


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with dropout and a residual
    (torch.nn.TransformerEncoderLayer): post-norm ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``
    by default, pre-norm ``x = x + sa(norm1(x)); x = x + ff(norm2(x))`` with norm_first.
    Submodules self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2 as
    PyTorch, so state dicts load one to one. ``activation`` is "relu" or "gelu" (or a
    callable on tensors)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, backend=None, dtype=np.float32):
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"activation: expected one of {_ACTIVATIONS} or a callable, got {activation!r}")
        elif not callable(activation):
            raise TypeError(f"activation: expected 'relu', 'gelu' or a callable, got {activation!r}")
        be = get_backend(backend)
        self._config = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward,
                            dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                            batch_first=batch_first, norm_first=norm_first, bias=bias, dtype=dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, backend=be, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, backend=be, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, backend=be, dtype=dtype)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, backend=be, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, backend=be, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.norm_first = bool(norm_first)
        self.batch_first = bool(batch_first)
        self.activation = activation

    def _act(self, x):
        if self.activation == "relu":
            return F.relu(x)
        if self.activation == "gelu":
            return F.gelu(x)
        return self.activation(x)

    def _sa(self, x, mask, padding, is_causal):
        y, _ = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding,
                              need_weights=False, is_causal=is_causal)
        return self.dropout1(y)

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self._act(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff(self.norm2(x))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff(x))
        return x

    def extra_repr(self):
        return f"norm_first={self.norm_first}, activation={self.activation!r}"


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of ``encoder_layer`` (``layers.0``, ``layers.1``, ...,
    as PyTorch) and an optional final ``norm``. Each copy starts with the given layer's
    weights (PyTorch deep-copies it)."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm=None):
        super().__init__()
        if not isinstance(encoder_layer, TransformerEncoderLayer):
            raise TypeError(f"encoder_layer: expected a TransformerEncoderLayer, got {type(encoder_layer).__name__}")
        if not isinstance(num_layers, numbers.Integral) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive integer, got {num_layers!r}")
        be = encoder_layer.self_attn.out_proj.weight.backend
        state = encoder_layer.state_dict()
        layers = []
        for _ in range(int(num_layers)):
            layer = TransformerEncoderLayer(**encoder_layer._config, backend=be)
            layer.load_state_dict(state)
            layer.train(encoder_layer.training)
            layers.append(layer)
        self.layers = Sequential(*layers)
        self.num_layers = int(num_layers)
        if norm is not None and not isinstance(norm, Module):
            raise TypeError(f"norm: expected a Module or None, got {type(norm).__name__}")
        if norm is not None:
            self.norm = norm
        else:
            self.norm = None

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        if self.norm is not None:
            x = self.norm(x)
        return x
