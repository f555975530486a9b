"""Generated calls across the public API for the fuzz harness (``testing/fuzz.py``).

Each generator draws one call of one op family: mostly well-formed geometry with one or
two things wrong (a mismatched shape, an integer dtype, a negative or enormous size, a
non-number, NaN/±inf/1e30 values, an unusual memory layout), so that both the error paths
and the numerics at the edges are reached. Generators draw through a small ``Draw``
interface so the same code serves hypothesis (``cases()``, which shrinks a failure to a
small case) and a seeded numpy generator (``sample_cases``, for long local runs).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

import ferrograd as fg
import ferrograd.functional as F

#: sizes that are fine, degenerate, negative, or far past any memory
SIZES = [1, 2, 3, 1, 2, 0, -1, 10**6, 2**31, 2**62, 2**63]
#: things that are not a size
NOT_SIZES = [1.5, "2", None, True, (2,), (2, 2), (2, 2, 2), (-1, 2), float("nan")]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3e38, 1e-40, 1e20]
#: ops whose values depend on the random stream (compared by shape and dtype only)
OPS_RANDOM = {"dropout", "dropblock2d"}


class Draw:
    """What a generator may ask for; ``_pick(n)`` returns an index in range(n)."""

    def _pick(self, n: int) -> int:
        raise NotImplementedError

    def choice(self, seq: Sequence):
        return seq[self._pick(len(seq))]

    def integer(self, lo: int, hi: int) -> int:
        return lo + self._pick(hi - lo + 1)

    def rarely(self) -> bool:
        """True about one time in eight: for the one thing wrong in a call."""
        return self._pick(8) == 0


class HypothesisDraw(Draw):
    def __init__(self, data):
        from hypothesis import strategies as st

        self._data, self._st = data, st

    def _pick(self, n: int) -> int:
        return self._data.draw(self._st.integers(0, n - 1)) if n > 1 else 0


class RandomDraw(Draw):
    def __init__(self, rng: np.random.Generator):
        self._rng = rng

    def _pick(self, n: int) -> int:
        return int(self._rng.integers(n)) if n > 1 else 0


# ------------------------------------------------------------------ arguments
def values(d: Draw, shape, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(d.integer(0, 2**16))
    kind = d.choice(["normal", "normal", "normal", "special", "huge", "constant", "ints"])
    n = int(np.prod(shape))
    if kind == "normal":
        a = rng.standard_normal(n)
    elif kind == "special":
        a = rng.standard_normal(n)
        hit = rng.random(n) < 0.3
        a[hit] = rng.choice(SPECIALS, hit.sum())
    elif kind == "huge":
        a = rng.choice([-1, 1], n) * 10.0 ** rng.uniform(18, 31, n)
    elif kind == "constant":
        a = np.full(n, d.choice([0.0, 1.0, -2.5, 1e30, np.nan, np.inf]))
    else:
        a = rng.integers(-3, 4, n).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN cast to int64: any value
        return a.reshape(shape).astype(dtype)


def tensor(d: Draw, shape, dtype=None, grad=True, layouts=True):
    """A tensor argument: usually float32, sometimes another dtype or memory layout."""
    if dtype is None:
        dtype = np.float32 if not d.rarely() else d.choice([np.float64, np.int64, np.bool_, np.float16])
    arr = values(d, tuple(shape), dtype)
    layout = "plain"
    if layouts and d.rarely():
        layout = d.choice(["transposed", "strided", "unaligned", "readonly", "byteswapped"])
    return ("tensor", arr, layout, bool(grad and np.dtype(dtype).kind == "f"))


def huge_view(d: Draw, inner: int = 3):
    """A (1, inner) tensor expanded to a logical (40000, 20000, inner): 2.4e9 elements and
    more, 10 GB and more if copied, past the worker's 3 GiB cap, so any copy of it must
    raise MemoryError. Not 10**12 elements: numpy reduces a broadcast view without copying
    (softmax's max over an axis), and one pass over 10**12 elements takes hours; over
    2.4e9 it takes seconds, so a case ends in time on every backend."""
    arr = values(d, (1, inner))
    return ("tensor", arr, f"expand:40000,20000,{inner}", True)


def value(v):
    return ("value", v)


def dims(d: Draw, lo: int = 0, hi: int = 4, small: int = 4) -> List[int]:
    return [d.choice([1, 2, 3, small, 0]) if d.rarely() else d.integer(1, small)
            for _ in range(d.integer(lo, hi))]


def size(d: Draw, good):
    """Usually ``good``; rarely an odd, negative, enormous or non-integer size."""
    if not d.rarely():
        return good
    return d.choice(SIZES + NOT_SIZES)


# ------------------------------------------------------------------ generators
def gen_unary(d: Draw):
    op = d.choice(["relu", "sigmoid", "tanh", "gelu", "silu", "leaky_relu", "exp", "log", "neg",
                   "swish", "softmax", "log_softmax", "abs", "sqrt", "rsqrt", "sin", "cos",
                   "clamp"])
    x = huge_view(d) if d.rarely() else tensor(d, dims(d, 0, 4))
    kw: Dict[str, Any] = {}
    if op == "gelu":
        kw["approximate"] = value(d.choice(["none", "tanh", "none", "exact", 1]))
    if op == "leaky_relu":
        kw["negative_slope"] = value(d.choice([0.01, 0.2, -1.0, float("nan"), "0.1"]))
    if op == "swish":
        kw["beta"] = value(d.choice([1.0, 0.5, float("inf"), "1"]))
    if op in ("softmax", "log_softmax"):
        kw["dim"] = value(d.choice([-1, 0, 1, 2, -1, 5, -5, 1.5, None]))
    if op == "clamp":
        bounds = [None, -1.0, 0.5, float("nan"), float("inf"), "0", 2]
        kw["min"], kw["max"] = value(d.choice(bounds)), value(d.choice(bounds))
    return op, [x], kw


def gen_binary(d: Draw):
    op = d.choice(["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
    a_dims = dims(d, 0, 4)
    if d.rarely():
        b = value(d.choice([2.0, 0, -1, float("nan"), "x", None, 1e30]))
    else:
        b_dims = list(a_dims[d.integer(0, len(a_dims)):])
        b_dims = [1 if d.rarely() else n for n in b_dims]
        if d.rarely():
            b_dims = dims(d, 0, 3)
        b = tensor(d, b_dims)
    a = huge_view(d) if d.rarely() else tensor(d, a_dims)
    if d.rarely():  # two modest operands whose broadcast result is 40 GB
        a, b = tensor(d, [100000, 1], layouts=False), tensor(d, [1, 100000], layouts=False)
    return op, [a, b], {}


def gen_reduce(d: Draw):
    op = d.choice(["sum", "mean"])
    x = tensor(d, dims(d, 0, 4))
    dim = d.choice([None, 0, -1, 1, (0, 1), (0, 0), 5, -5, 1.5, [0], "0"])
    return op, [x], {"dim": value(dim), "keepdim": value(d.choice([False, True]))}


def gen_linear(d: Draw):
    n, k, m = d.integer(0, 4), d.integer(1, 4), d.integer(1, 4)
    k2 = k if not d.rarely() else d.integer(1, 5)
    if d.choice(["matmul", "linear"]) == "matmul":
        lead = dims(d, 0, 2)
        return "matmul", [tensor(d, lead + [n, k]), tensor(d, [k2, m] if d.integer(0, 1) else [k2])], {}
    bias = None if d.rarely() else tensor(d, [m if not d.rarely() else d.choice([m + 1, 0])] if not d.rarely() else [m, 1])
    args = [tensor(d, dims(d, 0, 2) + [n, k]), tensor(d, [m, k2])]
    return "linear", args, {"bias": bias if bias is not None else value(None)}


def gen_loss(d: Draw):
    red = value(d.choice(["mean", "sum", "none", "mean", "avg", None]))
    if d.integer(0, 1):
        shape = dims(d, 0, 3)
        tshape = shape if not d.rarely() else dims(d, 0, 3)
        return "mse_loss", [tensor(d, shape), tensor(d, tshape, grad=False)], {"reduction": red}
    n, c = d.integer(0, 4), d.integer(1, 5)
    lead = [n] if d.integer(0, 3) else ([] if d.integer(0, 1) else [n, c, 2][:3])
    logits = tensor(d, lead[:1] + [c] + lead[2:] if len(lead) == 3 else lead + [c])
    tshape = [n] if lead else []
    if len(lead) == 3:
        tshape = [n, 2]
    if d.rarely():
        tshape = tshape + [1]
    rng = np.random.default_rng(d.integer(0, 999))
    hi = c if not d.rarely() else c + 3
    lo = 0 if not d.rarely() else -3
    t = rng.integers(lo, max(hi, lo + 1), tshape).astype(np.int64 if not d.rarely() else np.float32)
    return "cross_entropy", [logits, ("tensor", t, "plain", False)], {"reduction": red}


def _affine(d: Draw, c: int):
    if d.integer(0, 2) == 0:
        return value(None), value(None)
    shape = [c] if not d.rarely() else [c + 1]
    return tensor(d, shape), tensor(d, shape)


def gen_norm(d: Draw):
    op = d.choice(["layer_norm", "group_norm", "batch_norm", "instance_norm"])
    eps = value(d.choice([1e-5, 1e-5, 0.0, -1.0, float("nan"), "1e-5"]))
    if op == "layer_norm":
        shape = dims(d, 1, 4)
        k = d.integer(1, len(shape))
        ns = tuple(shape[-k:]) if not d.rarely() else d.choice([(5,), 3, 1.5, (), (-1,), None])
        big = huge_view(d, shape[-1]) if d.rarely() else tensor(d, shape)
        w = tensor(d, list(ns)) if isinstance(ns, tuple) and all(
            isinstance(v, int) and v >= 0 for v in ns) and d.integer(0, 1) else value(None)
        return op, [big, value(ns)], {"weight": w, "bias": value(None), "eps": eps}
    n, c = d.integer(1, 3), d.integer(1, 4)
    shape = [size(d, n), c] + dims(d, 0, 2)
    shape = [s if type(s) is int and 0 <= s <= 5 else 2 for s in shape]  # not True: a bool is an int
    if d.rarely():
        shape = dims(d, 0, 2)
    x = tensor(d, shape)
    w, b = _affine(d, c)
    if op == "group_norm":
        g = d.choice([1, c, 2, 3, 0, -1, 1.5])
        return op, [x, value(g)], {"weight": w, "bias": b, "eps": eps}
    if op == "instance_norm":
        return op, [x], {"weight": w, "bias": b, "eps": eps}
    rm, rv = tensor(d, [c if not d.rarely() else c + 1], grad=False), tensor(d, [c], grad=False)
    rv = ("tensor", np.abs(rv[1]), rv[2], False)
    kw = {"weight": w, "bias": b, "training": value(d.choice([True, False, 1])),
          "momentum": value(d.choice([0.1, 0.1, 0.0, 1.0, -0.5, 2.0, None])), "eps": eps}
    return op, [x, rm, rv], kw


def gen_pool(d: Draw):
    op = d.choice(["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"])
    h, w = d.integer(1, 6), d.integer(1, 6)
    shape = ([d.integer(1, 2)] if d.integer(0, 3) else []) + [d.integer(1, 3), h, w]
    if d.rarely():
        shape = dims(d, 0, 5)
    x = tensor(d, shape)
    if op.startswith("adaptive"):
        out = d.choice([1, 2, (2, 3), (h, w), (1, None)]) if not d.rarely() else \
            d.choice([(10**6, 10**6), 10**6, 0, -1, (2,), 2**62, 1.5, "2"])
        return op, [x, value(out)], {}
    k = size(d, d.integer(1, min(h, w)))
    kw = {"kernel_size": value(k), "stride": value(size(d, None if d.integer(0, 1) else 1)),
          "padding": value(size(d, 0)), "ceil_mode": value(d.choice([False, True]))}
    if op == "max_pool2d":
        kw["dilation"] = value(size(d, 1))
    return op, [x], kw


def gen_dropout(d: Draw):
    p = value(d.choice([0.0, 0.5, 0.5, 1.0, -0.1, 1.5, float("nan"), "0.5"]))
    if d.integer(0, 1):
        return "dropout", [huge_view(d) if d.rarely() else tensor(d, dims(d, 0, 4))], \
            {"p": p, "training": value(d.choice([True, False]))}
    shape = [d.integer(1, 2), d.integer(1, 3), d.integer(1, 6), d.integer(1, 6)]
    if d.rarely():
        shape = dims(d, 0, 5)
    return "dropblock2d", [tensor(d, shape)], {"p": p, "block_size": value(size(d, d.integer(1, 4)))}


def gen_conv(d: Draw):
    n, c, o, g = d.integer(1, 2), d.integer(1, 3), d.integer(1, 3), 1
    if d.rarely():
        g = d.choice([2, 3, 0, -1])
        c, o = c * 2, o * 2
    kh, kw_ = d.integer(1, 3), d.integer(1, 3)
    x = tensor(d, [n, c, d.integer(kh, 6), d.integer(kw_, 6)] if not d.rarely() else dims(d, 0, 5))
    cin = c // g if isinstance(g, int) and g > 0 and c % g == 0 else c
    w = tensor(d, [o, cin if not d.rarely() else cin + 1, kh, kw_])
    bias = value(None) if d.integer(0, 1) else tensor(d, [o if not d.rarely() else o + 1])
    kw = {"bias": bias, "stride": value(size(d, 1)), "padding": value(size(d, d.integer(0, 1))),
          "dilation": value(size(d, 1)), "groups": value(g),
          "algo": value(d.choice(["auto", "naive", "im2col", "winograd", "fft", "bogus"]))}
    return "conv2d", [x, w], kw


def gen_attention(d: Draw):
    n, h, lq, s, e = d.integer(1, 2), d.integer(1, 2), d.integer(1, 4), d.integer(1, 4), d.integer(1, 4)
    q = tensor(d, [n, h, lq, e])
    k = tensor(d, [n, h, s, e if not d.rarely() else e + 1])
    v = tensor(d, [n, h, s if not d.rarely() else s + 1, d.integer(1, 4)])
    mask = value(None)
    causal = d.choice([False, False, True])
    if d.integer(0, 2) == 0 and not causal:
        rng = np.random.default_rng(d.integer(0, 999))
        mshape = [lq, s] if not d.rarely() else [lq + 1, s]
        if d.integer(0, 1):
            mask = ("tensor", rng.random(mshape) < 0.7, "plain", False)
        else:
            mask = tensor(d, mshape, grad=False)
    kw = {"attn_mask": mask, "is_causal": value(causal),
          "scale": value(d.choice([None, None, 0.5, 0.0, float("inf"), -1.0]))}
    return "scaled_dot_product_attention", [q, k, v], kw


def gen_rnn(d: Draw):
    op = d.choice(["lstm", "gru"])
    t, n, i, hsz = d.integer(1, 3), d.integer(1, 2), d.integer(1, 3), d.integer(1, 3)
    gates = 4 if op == "lstm" else 3
    x = tensor(d, [t, n, i if not d.rarely() else i + 1])
    params = [tensor(d, [gates * hsz, i]), tensor(d, [gates * hsz, hsz if not d.rarely() else hsz + 1]),
              tensor(d, [gates * hsz]), tensor(d, [gates * hsz])]
    if d.rarely():
        params = params[:3]
    return op, [x, value(None), ("list", params)], {}


def _optim_step(backend_params, opt="sgd", steps=1, **kw):
    opt_cls = {"sgd": fg.optim.SGD, "adam": fg.optim.Adam}[opt]
    params = list(backend_params)
    o = opt_cls(params, **kw)
    for _ in range(steps):
        for p in params:
            p.grad = fg.Tensor(p.backend.from_numpy(np.ones(p.shape, p.dtype)), p.backend)
        o.step()
    return params


def gen_optim(d: Draw):
    opt = d.choice(["sgd", "adam"])
    params = [tensor(d, dims(d, 1, 2), dtype=d.choice([np.float32, np.float32, np.float64]))
              for _ in range(d.integer(1, 2))]
    params = [("tensor", p[1], d.choice(["plain", "plain", "unaligned", "readonly", "byteswapped",
                                         "strided", "transposed"]), True) for p in params]
    kw: Dict[str, Any] = {"opt": value(opt), "lr": value(d.choice([0.1, 1e-3, -0.1, 0.0, "0.1"])),
                          "steps": value(d.integer(1, 3))}
    if opt == "sgd":
        kw["momentum"] = value(d.choice([0.0, 0.9, -0.5]))
        kw["weight_decay"] = value(d.choice([0.0, 0.01, -1.0]))
    else:
        kw["betas"] = value(d.choice([(0.9, 0.999), (0.9, 0.999), (0.9,), (1.5, 0.9), "x"]))
        kw["eps"] = value(d.choice([1e-8, 1e-8, -1.0, 0.0]))
    return "optim_step", [("list", params)], kw


def _native_step(x, target, loss="cross_entropy", hidden=4, lr=0.1, engine=None):
    """One SGD step of a small MLP: on the numpy backend through the Python engine (the
    reference), on the rust backend through ``NativeSequential``; returns loss and params."""
    from ferrograd.native import NativeSequential

    backend = x.backend.name
    fg.manual_seed(1)
    model = fg.nn.Sequential(fg.nn.Linear(x.shape[-1], hidden), fg.nn.ReLU(),
                             fg.nn.Linear(hidden, 3)).to(backend)
    if backend == "rust":
        value_ = NativeSequential(model, loss=loss).step(x, target, lr)
    else:
        out = model(x)
        fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
        l_ = fn(out, target)
        value_ = float(l_.numpy()) if hasattr(l_, "numpy") else float(l_)
        l_.backward()
        fg.optim.SGD(model.parameters(), lr=lr).step()
    return [fg.tensor(np.asarray(value_, np.float32), backend=backend)] + list(model.parameters())


def gen_native(d: Draw):
    n, f = d.integer(1, 4), d.integer(1, 3)
    loss = d.choice(["cross_entropy", "mse"])
    x = tensor(d, [n, f] if not d.rarely() else dims(d, 1, 3), grad=False, layouts=False)
    x = ("tensor", np.clip(np.nan_to_num(x[1]), -10, 10), "plain", False)
    rng = np.random.default_rng(d.integer(0, 999))
    if loss == "cross_entropy":
        tshape = [n] if not d.rarely() else d.choice([[n, 1], [n + 1], []])
        t = ("tensor", rng.integers(0, 3 if not d.rarely() else 5, tshape).astype(np.int64), "plain", False)
    else:
        tshape = [n, 3] if not d.rarely() else d.choice([[3, n], [n * 3], [n, 1]])
        t = ("tensor", rng.standard_normal(tshape).astype(np.float32), "plain", False)
    return "native_step", [x, t], {"loss": value(loss)}


def _index_item(d: Draw, n: int):
    """One entry of a basic index for a dimension of size n: usually valid, rarely not."""
    if d.rarely():
        return d.choice([n, -n - 1, 2**63, 1.5, "a", [0, 1], True, slice(None, None, -1),
                         slice(0, 1, 0), Ellipsis])
    kind = d.choice(["int", "slice", "none"])
    if kind == "int" and n:
        return d.integer(-n, n - 1)
    if kind == "none":
        return None
    return slice(d.choice([None, 0, 1, -1, n + 3]), d.choice([None, n, -1, 2 * n + 1]),
                 d.choice([None, 1, 2, 3]))


def gen_indexing(d: Draw):
    """Basic indexing, cat/stack/split/chunk/narrow, comparisons, where and masked_fill."""
    op = d.choice(["getitem", "cat", "stack", "split", "chunk", "narrow", "compare", "where",
                   "masked_fill"])
    shape = dims(d, 0, 3)
    x = tensor(d, shape)
    dim = value(d.choice([0, -1, 1, 2, -4, 5, 1.5, None]) if d.rarely() else
                (d.integer(-len(shape), len(shape) - 1) if shape else 0))
    if op == "getitem":
        key = tuple(_index_item(d, n) for n in shape[:d.integer(0, len(shape) + 1)])
        return op, [x, value(key)], {}
    if op in ("cat", "stack"):
        others = [tensor(d, shape if not d.rarely() else dims(d, 0, 3))
                  for _ in range(d.integer(0, 2))]
        items = [x] + others
        return op, [("list", items) if not d.rarely() else value(d.choice([[], "x", None]))], {"dim": dim}
    if op == "split":
        size = d.choice([1, 2, [1, 1], [5], 0, -1, "a", [1, -1]]) if d.rarely() else d.integer(1, 3)
        return op, [x, value(size)], {"dim": dim}
    if op == "chunk":
        return op, [x, value(d.choice([1, 2, 3, 0, -2, 1.5]))], {"dim": dim}
    if op == "narrow":
        return op, [x, dim, value(d.integer(-3, 4)), value(d.integer(-1, 4))], {}
    other = tensor(d, shape if not d.rarely() else dims(d, 0, 3)) if not d.rarely() else \
        value(d.choice([0.5, float("nan"), "x", None]))
    if op == "compare":
        return op, [value(d.choice(["eq", "ne", "lt", "le", "gt", "ge"])), x, other], {}
    mask = tensor(d, shape if not d.rarely() else dims(d, 0, 3), dtype=np.bool_ if not d.rarely()
                  else np.float32)
    if op == "where":
        return op, [mask, x, other], {}
    return op, [x, mask, value(d.choice([0.0, float("-inf"), float("nan"), "0", None]))], {}


def _getitem(x, key):
    return x[key]


OPS: Dict[str, Callable] = {name: getattr(F, name) for name in F.__all__}
OPS.update({
    "batch_norm": lambda x, rm, rv, **kw: (F.batch_norm(x, rm, rv, **kw), rm, rv),
    "optim_step": lambda params, **kw: _optim_step(params, **kw),
    "native_step": lambda x, t, loss: _native_step(x, t, "cross_entropy" if loss == "cross_entropy" else "mse"),
    "_abort": lambda: os.abort(),  # the harness's own test: a dying worker is reported
    "getitem": _getitem, "cat": fg.cat, "stack": fg.stack, "split": fg.split,
    "chunk": fg.chunk, "narrow": fg.narrow, "compare": fg.ops.logic.compare,
    "where": fg.where, "masked_fill": fg.masked_fill,
})
GENERATORS = [gen_unary, gen_binary, gen_reduce, gen_linear, gen_loss, gen_norm, gen_pool,
              gen_dropout, gen_conv, gen_attention, gen_rnn, gen_optim, gen_native, gen_indexing]


def draw_case(d: Draw) -> Dict[str, Any]:
    op, args, kwargs = d.choice(GENERATORS)(d)
    return {"op": op, "args": args, "kwargs": kwargs, "backward": d.integer(0, 3) > 0,
            "seed": d.integer(0, 3)}


def sample_cases(n: int, seed: int = 0):
    """``n`` cases from a seeded generator (the long local profile)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield draw_case(RandomDraw(rng))
