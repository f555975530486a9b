"""Recurrent layers: lstm and gru (the whole stack as one op, like PyTorch's ``_VF.lstm``).

One autograd Function runs every layer and direction through the backends' per-layer
kernels (``lstm_forward``/``gru_forward``: the input projection of the whole sequence as
one GEMM, then per step one GEMM of the state with all gates fused and one fused
pointwise pass) and composes batch_first, bidirectionality (outputs side by side,
forward direction first) and dropout between layers (the project's Philox dropout, one
stream offset per layer boundary, regenerated in backward).

Semantics, parameter names, shapes and gate order are PyTorch's (LSTM i, f, g, o; GRU
r, z, n with b_hn inside the reset product), so PyTorch weights load as they are. The
book writes the LSTM gates as f, i, C, o over a concatenated [h, x]; we follow PyTorch.
"""

from __future__ import annotations

import numbers

from ..autograd.engine import Function, is_grad_enabled
from ..backends import _dropout
from ._checks import require_float, require_same_dtype


class RNN(Function):
    """forward(cfg, x, h0, c0, *weights) -> (output, h_n[, c_n]).

    cfg = (mode, num_layers, num_directions, has_bias, batch_first, streams) where
    streams holds one (p, seed, offset) per layer boundary, or is empty (no dropout).
    x is (T, N, I) or (N, T, I) with batch_first; h0, c0 are (L*D, N, H) or None (zeros);
    weights are PyTorch's flat list: per layer and direction w_ih, w_hh[, b_ih, b_hh]."""

    @staticmethod
    def forward(ctx, cfg, x, h0, c0, *weights):
        mode, layers, dirs, has_bias, batch_first, streams = cfg
        be = ctx.backend
        ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
        lstm = mode == "lstm"
        # without a recorded backward (no_grad, or nothing requires grad) the kernels may
        # skip storing what only backward reads (the LSTM's gates and cells)
        keep = is_grad_enabled() and any(ctx.needs_input_grad)
        per = 4 if has_bias else 2
        if batch_first:
            x = be.copy(be.permute(x, (1, 0, 2)))
        t, n = int(x.shape[0]), int(x.shape[1])
        hs = int(weights[1].shape[1])
        k = layers * dirs
        h0s = _unstack(be, h0, k, n, hs, x.dtype)
        c0s = _unstack(be, c0, k, n, hs, x.dtype) if lstm else [None] * k
        layer_in, saved, h_n, c_n = x, [], [], []
        for layer in range(layers):
            outs = []
            for d in range(dirs):
                j = layer * dirs + d
                w = weights[j * per:(j + 1) * per]
                b_ih, b_hh = (w[2], w[3]) if has_bias else (None, None)
                if lstm and not keep:
                    y, hn, cn = be.lstm_forward_inference(layer_in, h0s[j], c0s[j], w[0], w[1],
                                                          b_ih, b_hh, d == 1)
                    saved.append((y, None, None))
                    c_n.append(cn)
                elif lstm:
                    y, hn, cn, gates, cells = be.lstm_forward(layer_in, h0s[j], c0s[j], w[0], w[1],
                                                              b_ih, b_hh, d == 1)
                    saved.append((y, gates, cells))
                    c_n.append(cn)
                else:
                    y, hn, gates = be.gru_forward(layer_in, h0s[j], w[0], w[1], b_ih, b_hh, d == 1)
                    saved.append((y, gates, None))
                h_n.append(hn)
                outs.append(y)
            ctx_in = layer_in
            y = _cat_dirs(be, outs, t, n, hs)
            saved[-dirs:] = [(ctx_in,) + s for s in saved[-dirs:]]
            if layer < layers - 1 and streams:
                y = be.dropout_forward(y, *streams[layer])
            layer_in = y
        out = layer_in
        if batch_first:
            out = be.copy(be.permute(out, (1, 0, 2)))
        ctx.cfg, ctx.shape = cfg, (t, n, hs)
        ctx.save_for_backward(h0s, c0s, weights, saved)
        results = [out, _stack(be, h_n, n, hs)]
        if lstm:
            results.append(_stack(be, c_n, n, hs))
        return tuple(results)

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        mode, layers, dirs, has_bias, batch_first, streams = ctx.cfg
        be = ctx.backend
        lstm = mode == "lstm"
        per = 4 if has_bias else 2
        t, n, hs = ctx.shape
        h0s, c0s, weights, saved = ctx.saved_arrays
        dtype = weights[0].dtype
        k = layers * dirs
        if g_out is None:
            g_out = be.full((t, n, dirs * hs), 0.0, dtype)
        elif batch_first:
            g_out = be.copy(be.permute(g_out, (1, 0, 2)))
        g_hns = _unstack(be, g_hn, k, n, hs, dtype)
        g_cns = _unstack(be, g_cn, k, n, hs, dtype) if lstm else [None] * k
        g_h0, g_c0, g_w = [None] * k, [None] * k, [None] * (k * per)
        g_in = g_out
        for layer in reversed(range(layers)):
            g_dirs = _split_dirs(be, g_in, dirs, t, n, hs)
            g_x = None
            for d in range(dirs):
                j = layer * dirs + d
                x_in, y, gates, cells = saved[j]
                w_ih, w_hh = weights[j * per], weights[j * per + 1]
                if lstm:
                    gx, gh0, gc0, gw_ih, gw_hh, gb = be.lstm_backward(
                        x_in, h0s[j], c0s[j], w_ih, w_hh, y, gates, cells, g_dirs[d], g_hns[j],
                        g_cns[j], has_bias, d == 1)
                    gbs = (gb, be.copy(gb)) if has_bias else (None, None)  # no aliasing
                    g_c0[j] = gc0
                else:
                    gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh = be.gru_backward(
                        x_in, h0s[j], w_ih, w_hh, y, gates, g_dirs[d], g_hns[j], has_bias, d == 1)
                    gbs = (gb_ih, gb_hh)
                g_h0[j] = gh0
                g_w[j * per:(j + 1) * per] = (gw_ih, gw_hh) + (gbs if has_bias else ())
                g_x = gx if g_x is None else be.binary_forward("add", g_x, gx)
            if layer > 0 and streams:
                g_x = be.dropout_backward(g_x, *streams[layer - 1])
            g_in = g_x
        if batch_first:
            g_in = be.copy(be.permute(g_in, (1, 0, 2)))
        grads = [g_in]
        if ctx.has_h0:
            grads.append(_stack(be, g_h0, n, hs))
        if ctx.has_c0:
            grads.append(_stack(be, g_c0, n, hs))
        return tuple(grads) + tuple(g_w)


def _unstack(be, a, k, n, hs, dtype):
    """(k, N, H) -> k arrays (N, H); zeros when a is None."""
    if a is None:
        return [be.full((n, hs), 0.0, dtype) for _ in range(k)]
    if k == 1:
        return [be.reshape(a, (n, hs))]
    parts = be.rnn_split_cols(be.reshape(a, (1, k * n * hs)), [n * hs] * k)
    return [be.reshape(p, (n, hs)) for p in parts]


def _stack(be, parts, n, hs):
    if len(parts) == 1:
        return be.reshape(parts[0], (1, n, hs))
    flat = be.rnn_concat_cols([be.reshape(p, (1, n * hs)) for p in parts])
    return be.reshape(flat, (len(parts), n, hs))


def _cat_dirs(be, outs, t, n, hs):
    if len(outs) == 1:
        return outs[0]
    cat = be.rnn_concat_cols([be.reshape(o, (t * n, hs)) for o in outs])
    return be.reshape(cat, (t, n, len(outs) * hs))


def _split_dirs(be, g, dirs, t, n, hs):
    if dirs == 1:
        return [g]
    parts = be.rnn_split_cols(be.reshape(g, (t * n, dirs * hs)), [hs] * dirs)
    return [be.reshape(p, (t, n, hs)) for p in parts]


# ---------------------------------------------------------------- argument checks
def _positive_int(v, name):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _flag(v, name):
    if not isinstance(v, (bool, numbers.Integral)) or isinstance(v, float):
        raise TypeError(f"{name}: expected a bool, got {v!r}")
    return bool(v)


def _check_state(s, name, want, x):
    from ..tensor import Tensor
    if not isinstance(s, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(s).__name__}")
    require_same_dtype(x, s, "input", name)
    if tuple(s.shape) != tuple(want):
        raise ValueError(f"{name}: expected shape {tuple(want)}, got {tuple(s.shape)}")


def _run(mode, input, hx, params, num_layers, bias, batch_first, dropout, training,
         bidirectional):
    from ..random import philox_next
    from ..tensor import Tensor
    from .layout import reshape

    lstm = mode == "lstm"
    gates = 4 if lstm else 3
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
    require_float(input, "input")
    layers = _positive_int(num_layers, "num_layers")
    bias, batch_first = _flag(bias, "bias"), _flag(batch_first, "batch_first")
    training, bidirectional = _flag(training, "training"), _flag(bidirectional, "bidirectional")
    p = _dropout.check_p(dropout)
    dirs = 2 if bidirectional else 1
    per = 4 if bias else 2
    params = list(params)
    if len(params) != layers * dirs * per:
        raise ValueError(f"params: expected {layers * dirs * per} tensors (w_ih, w_hh"
                         f"{', b_ih, b_hh' if bias else ''} per layer and direction), got {len(params)}")
    for q in params:
        if not isinstance(q, Tensor):
            raise TypeError(f"params: expected Tensors, got a {type(q).__name__}")
    if len(params[1].shape) != 2:
        raise ValueError(f"weight_hh_l0: expected a 2-D tensor, got shape {params[1].shape}")
    hs = int(params[1].shape[1])
    if input.ndim not in (2, 3):
        raise ValueError(f"input: expected a 2-D (unbatched) or 3-D tensor, got shape {input.shape}")
    unbatched = input.ndim == 2
    if unbatched:
        input = reshape(input, (input.shape[0], 1, input.shape[1]))
        batch_first = False
    t, n = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if t < 1 or n < 1:
        raise ValueError(f"input: expected a non-empty sequence and batch, got shape {input.shape}")
    for layer in range(layers):
        fin = input.shape[2] if layer == 0 else dirs * hs
        for d in range(dirs):
            sfx = f"_l{layer}{'_reverse' if d else ''}"
            j = (layer * dirs + d) * per
            shapes = [(gates * hs, fin), (gates * hs, hs)] + [(gates * hs,)] * (per - 2)
            for name, q, want in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                                     params[j:j + per], shapes):
                require_same_dtype(input, q, "input", name + sfx)
                if tuple(q.shape) != want:
                    raise ValueError(f"{name + sfx}: expected shape {want}, got {tuple(q.shape)}"
                                     + (" (input_size does not match the input's last dimension)"
                                        if name == "weight_ih" and layer == 0 else ""))
    k = layers * dirs
    h0 = c0 = None
    if hx is not None:
        if lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
            h0, c0 = hx
        else:
            h0 = hx
        want = (k, hs) if unbatched else (k, n, hs)
        _check_state(h0, "h_0", want, input)
        if lstm:
            _check_state(c0, "c_0", want, input)
        if unbatched:
            h0 = reshape(h0, (k, 1, hs))
            c0 = reshape(c0, (k, 1, hs)) if lstm else None
    streams = ()
    if training and p > 0 and layers > 1:
        streams = tuple((p,) + tuple(philox_next()) for _ in range(layers - 1))
    cfg = (mode, layers, dirs, bias, batch_first, streams)
    res = RNN.apply(cfg, input, h0, c0, *params)
    if unbatched:
        res = (reshape(res[0], (t, res[0].shape[2])),) + tuple(reshape(r, (k, hs)) for r in res[1:])
    return res


def lstm(input, hx, params, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
         dropout: float = 0.0, training: bool = True, bidirectional: bool = False):
    """Multi-layer LSTM (torch.nn.LSTM's forward as a function). ``params`` is PyTorch's
    flat weight list: per layer, per direction (forward first) weight_ih (4H, I),
    weight_hh (4H, H)[, bias_ih, bias_hh (4H,)], gates in PyTorch's order i, f, g, o.
    ``hx`` is None (zeros) or (h_0, c_0), each (L*D, N, H). Returns
    (output, (h_n, c_n)); output is (T, N, D*H) ((N, T, D*H) with batch_first).
    Dropout with probability ``dropout`` on each layer's output except the last, when
    training. A 2-D input (T, I) is one unbatched sequence, with (L*D, H) states."""
    out, h_n, c_n = _run("lstm", input, hx, params, num_layers, bias, batch_first, dropout,
                         training, bidirectional)
    return out, (h_n, c_n)


def gru(input, hx, params, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, training: bool = True, bidirectional: bool = False):
    """Multi-layer GRU (torch.nn.GRU's forward as a function), gates r, z, n with
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); see :func:`lstm` for the arguments.
    Returns (output, h_n)."""
    out, h_n = _run("gru", input, hx, params, num_layers, bias, batch_first, dropout,
                    training, bidirectional)
    return out, h_n
