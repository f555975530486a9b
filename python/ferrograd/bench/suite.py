"""Benchmark rows. A Case builds, for one implementation ("numpy", "rust", "cuda",
"torch-cpu", "torch-cuda"), a zero-argument function that runs the measured work once.

"native" (training-step rows only) is ferrograd.native: the whole step in one Rust call.

Rows time the public layer API (ferrograd.functional with autograd, torch.nn.functional),
as a user calls it: "fwd" runs under no_grad, "fwd+bwd" records the graph and runs
backward with a given upstream gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

CPU_IMPLS = ("numpy", "rust", "torch-cpu")
TRAIN_IMPLS = ("rust", "native", "torch-cpu")
GPU_IMPLS = ("cuda", "torch-cuda")

# activation name -> (ferrograd function name, kwargs, torch function name, torch kwargs)
ACTIVATIONS: Dict[str, Tuple[str, dict, str, dict]] = {
    "relu": ("relu", {}, "relu", {}),
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.01}, "leaky_relu", {"negative_slope": 0.01}),
    "sigmoid": ("sigmoid", {}, "sigmoid", {}),
    "tanh": ("tanh", {}, "tanh", {}),
    "gelu": ("gelu", {}, "gelu", {}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}, "gelu", {"approximate": "tanh"}),
    "silu": ("silu", {}, "silu", {}),
}


@dataclass
class Case:
    """One row of the table."""

    name: str
    group: str
    impls: Tuple[str, ...]
    #: impl -> a setup function returning the zero-argument callable that is timed
    make: Callable[[str], Callable[[], object]]
    #: bytes moved per call (for GB/s), or None
    bytes_moved: Optional[float] = None
    #: floating point operations per call (for GFLOP/s), or None
    flops: Optional[float] = None
    params: dict = field(default_factory=dict)


_HOST_DATA: Dict[Tuple[int, int], np.ndarray] = {}


def host_data(n: int, seed: int) -> np.ndarray:
    """n float32 standard-normal values, cached: drawing 256M values costs seconds, so a
    1M-value draw is tiled (the kernels' speed does not depend on the values)."""
    key = (n, seed)
    if key not in _HOST_DATA:
        base = np.random.default_rng(seed).standard_normal(min(n, 1 << 20), dtype=np.float32)
        _HOST_DATA[key] = np.resize(base, n)
    return _HOST_DATA[key]


def _torch_device(impl: str) -> str:
    return "cuda" if impl == "torch-cuda" else "cpu"


class _Lib:
    """What a row's make() needs of one implementation: PyTorch ("torch-cpu", "torch-cuda")
    or ferrograd (a backend name). ``F`` and ``nn`` are the functional and layer modules,
    ``tensor(host, requires_grad)`` puts a host array on the implementation's device."""

    def __init__(self, impl: str):
        self.impl = impl
        self.is_torch = impl.startswith("torch")
        if self.is_torch:
            import torch
            import torch.nn.functional as TF

            self.F, self.nn, self.no_grad = TF, torch.nn, torch.no_grad
        else:
            import ferrograd as fg
            import ferrograd.functional as F
            import ferrograd.nn as fnn

            self.F, self.nn, self.no_grad = F, fnn, fg.no_grad

    def tensor(self, host: np.ndarray, requires_grad: bool = False):
        if self.is_torch:
            import torch

            return torch.from_numpy(host).to(_torch_device(self.impl)).requires_grad_(requires_grad)
        import ferrograd as fg

        return fg.tensor(host, backend=self.impl, requires_grad=requires_grad)


def _set_tf32(lib: _Lib, allow: bool) -> bool:
    """Set the implementation's TF32 switch (torch: matmul and cuDNN; ferrograd:
    fg.backends.cuda.matmul.allow_tf32); returns the previous setting."""
    if lib.is_torch:
        import torch

        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
        return before
    import ferrograd as fg

    before = fg.backends.cuda.matmul.allow_tf32
    fg.backends.cuda.matmul.allow_tf32 = allow
    return before


def _timed(lib: _Lib, call: Callable[[], object], leaves, g, backward: bool, tf32: bool = False):
    """A row's timed callable: ``call()`` under no_grad (fwd rows), or, after clearing the
    leaves' gradients, ``call().backward(g)`` (fwd+bwd rows), returning the first leaf's
    gradient. Every row runs in full float32 (torch's cuDNN would otherwise use TF32 for
    convolutions by default) unless ``tf32`` allows TF32 tensor cores on both sides."""
    if not backward:
        def body():
            with lib.no_grad():
                return call()
    else:
        def body():
            for t in leaves:
                t.grad = None
            call().backward(g)
            return leaves[0].grad

    def run():
        before = _set_tf32(lib, tf32)
        try:
            return body()
        finally:
            _set_tf32(lib, before)
    return run


def _gemm_case(m: int, k: int, n: int, tf32: bool, impls, group: str) -> Case:
    """matmul (m x k) @ (k x n) in float32, or with TF32 tensor cores allowed on both sides."""
    def make(impl: str):
        lib = _Lib(impl)
        a = lib.tensor(host_data(m * k, 0).reshape(m, k))
        b = lib.tensor(host_data(k * n, 1).reshape(k, n))
        mm = lib.F.matmul if not lib.is_torch else __import__("torch").matmul
        return _timed(lib, lambda: mm(a, b), [a], None, False, tf32=tf32)

    return Case(f"gemm {m}x{k}x{n} {'tf32' if tf32 else 'fp32'}", group, tuple(impls), make,
                flops=2.0 * m * k * n, params={"m": m, "k": k, "n": n, "tf32": tf32})


def _activation_case(act: str, n: int, backward: bool, impls, group: str) -> Case:
    fg_name, fg_kw, t_name, t_kw = ACTIVATIONS[act]

    def make(impl: str):
        lib = _Lib(impl)
        name, kw = (t_name, t_kw) if lib.is_torch else (fg_name, fg_kw)
        fn = getattr(lib.F, name)
        x = lib.tensor(host_data(n, 0), backward)
        g = lib.tensor(host_data(n, 1))
        return _timed(lib, lambda: fn(x, **kw), [x], g, backward)

    # forward reads x and writes y; backward reads x and gy and writes gx
    moved = 4.0 * n * (2 if not backward else 5)
    return Case(f"{act} {'fwd+bwd' if backward else 'fwd'}", group, tuple(impls), make,
                bytes_moved=moved, params={"elements": n})


def _linear_case(n: int, fin: int, fout: int, backward: bool, impls, group: str) -> Case:
    def make(impl: str):
        rng = np.random.default_rng(0)
        x_host = rng.standard_normal((n, fin), dtype=np.float32)
        w_host = (rng.standard_normal((fout, fin), dtype=np.float32) / np.sqrt(fin)).astype(np.float32)
        b_host = rng.standard_normal(fout, dtype=np.float32)
        g_host = rng.standard_normal((n, fout), dtype=np.float32)
        lib = _Lib(impl)
        w, x, b = (lib.tensor(a, backward) for a in (w_host, x_host, b_host))
        return _timed(lib, lambda: lib.F.linear(x, w, b), [w, x, b], lib.tensor(g_host), backward)

    flops = 2.0 * n * fin * fout * (3 if backward else 1)
    return Case(f"linear {n}x{fin}x{fout} {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), make, flops=flops, params={"n": n, "in": fin, "out": fout})


# elementwise row kind -> (call on the operand tensors, number of operands, shapes)
def _elementwise_calls(kind: str, lib: "_Lib"):
    if lib.is_torch:
        import torch

        softmax, log_softmax, log = torch.softmax, torch.log_softmax, torch.log
    else:
        softmax, log_softmax, log = lib.F.softmax, lib.F.log_softmax, lib.F.log
    return {
        "softmax": lambda x: softmax(x, -1),
        "log_softmax": lambda x: log_softmax(x, -1),
        "log": lambda x: log(x * x + 1.0),
        "mul": lambda x, y: x * y,
        "add row-broadcast": lambda x, b: x + b,
    }[kind]


def _elementwise_case(kind: str, rows: int, cols: int, backward: bool, impls, group: str) -> Case:
    """softmax / log_softmax over the last axis, log (of x^2 + 1, so every input is
    valid), a same-shape product and a row-broadcast sum, on (rows, cols) float32."""
    def make(impl: str):
        lib = _Lib(impl)
        call = _elementwise_calls(kind, lib)
        x = lib.tensor(host_data(rows * cols, 0).reshape(rows, cols), backward)
        if kind == "mul":
            other = [lib.tensor(host_data(rows * cols, 1).reshape(rows, cols), backward)]
        elif kind == "add row-broadcast":
            other = [lib.tensor(host_data(cols, 1).copy(), backward)]
        else:
            other = []
        g = lib.tensor(host_data(rows * cols, 2).reshape(rows, cols))
        return _timed(lib, lambda: call(x, *other), [x, *other], g, backward)

    return Case(f"{kind} {rows}x{cols} {'fwd+bwd' if backward else 'fwd'}", group, tuple(impls), make,
                params={"rows": rows, "cols": cols})


# normalization row kind -> (ferrograd call, torch call); p = (weight, bias, running_mean, running_var)
def _norm_calls(kind: str, shape):
    if kind == "batch_norm2d":
        return (lambda F, x, p: F.batch_norm(x, p[2], p[3], p[0], p[1], training=True),
                lambda TF, x, p: TF.batch_norm(x, p[2], p[3], p[0], p[1], training=True))
    if kind == "layer_norm":
        return (lambda F, x, p: F.layer_norm(x, shape[-1:], p[0], p[1]),
                lambda TF, x, p: TF.layer_norm(x, shape[-1:], p[0], p[1]))
    return (lambda F, x, p: F.group_norm(x, 32, p[0], p[1]),
            lambda TF, x, p: TF.group_norm(x, 32, p[0], p[1]))


def _norm_case(kind: str, shape: Tuple[int, ...], backward: bool, impls, group: str) -> Case:
    """BatchNorm2d (training: batch statistics, running statistics updated), LayerNorm over
    the last axis, GroupNorm with 32 groups; affine parameters on every row."""
    n = int(np.prod(shape))
    c = shape[-1] if kind == "layer_norm" else shape[1]
    fg_call, torch_call = _norm_calls(kind, shape)

    def make(impl: str):
        rng = np.random.default_rng(0)
        w_host = rng.standard_normal(c, dtype=np.float32)
        b_host = rng.standard_normal(c, dtype=np.float32)
        lib = _Lib(impl)
        call = torch_call if lib.is_torch else fg_call
        x = lib.tensor(host_data(n, 0).reshape(shape), backward)
        p = [lib.tensor(a, backward) for a in (w_host, b_host)]
        p += [lib.tensor(np.zeros(c, np.float32)), lib.tensor(np.ones(c, np.float32))]
        g = lib.tensor(host_data(n, 1).reshape(shape))
        return _timed(lib, lambda: call(lib.F, x, p), [x, p[0], p[1]], g, backward)

    # forward reads x and writes y; backward reads x and gy and writes gx
    moved = 4.0 * n * (2 if not backward else 5)
    dims = "x".join(str(d) for d in shape)
    return Case(f"{kind} {dims} {'fwd+bwd' if backward else 'fwd'}", group, tuple(impls), make,
                bytes_moved=moved, params={"shape": list(shape)})


# pool name -> (ferrograd function, torch function, kwargs for both)
POOLS: Dict[str, Tuple[str, str, dict]] = {
    "max_pool2d 2x2": ("max_pool2d", "max_pool2d", {"kernel_size": 2}),
    "avg_pool2d 2x2": ("avg_pool2d", "avg_pool2d", {"kernel_size": 2}),
}


def _one_input_case(make_args, fg_fn, torch_fn, backward: bool):
    """make(impl) for a one-input layer: ``make_args()`` gives (x_host, gy_host);
    ``fg_fn(fg_tensor)`` / ``torch_fn(torch_tensor)`` run the layer."""

    def make(impl: str):
        x_host, g_host = make_args()
        lib = _Lib(impl)
        fn = torch_fn if lib.is_torch else fg_fn
        x = lib.tensor(x_host, backward)
        return _timed(lib, lambda: fn(x), [x], lib.tensor(g_host), backward)

    return make


def _pool_case(name: str, shape, backward: bool, impls, group: str) -> Case:
    fg_name, t_name, kw = POOLS[name]
    k = kw["kernel_size"]
    out_shape = shape[:2] + (shape[2] // k, shape[3] // k)
    n_in, n_out = int(np.prod(shape)), int(np.prod(out_shape))

    def args():
        return (host_data(n_in, 0).reshape(shape), host_data(n_out, 1).reshape(out_shape))

    def fg_fn(x):
        import ferrograd.functional as F
        return getattr(F, fg_name)(x, **kw)

    def torch_fn(x):
        import torch.nn.functional as TF
        return getattr(TF, t_name)(x, **kw)

    # forward reads x, writes y; backward reads gy (and max's int64 indices), writes gx
    moved = 4.0 * (n_in + n_out) + (0 if not backward else 4.0 * (n_in + n_out)
                                    + (8.0 * n_out if fg_name == "max_pool2d" else 0))
    dims = "x".join(str(d) for d in shape)
    return Case(f"{name} {dims} {'fwd+bwd' if backward else 'fwd'}", group, tuple(impls),
                _one_input_case(args, fg_fn, torch_fn, backward), bytes_moved=moved,
                params={"shape": list(shape), "kernel_size": k})


def _dropout_case(n: int, p: float, backward: bool, impls, group: str) -> Case:
    def args():
        return host_data(n, 0), host_data(n, 1)

    def fg_fn(x):
        import ferrograd.functional as F
        return F.dropout(x, p)

    def torch_fn(x):
        import torch.nn.functional as TF
        return TF.dropout(x, p, training=True)

    # forward reads x, writes y; backward reads gy, writes gx (the mask is regenerated)
    moved = 4.0 * n * (2 if not backward else 4)
    return Case(f"dropout p={p} {n >> 20}M {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), _one_input_case(args, fg_fn, torch_fn, backward),
                bytes_moved=moved, params={"elements": n, "p": p})


def _conv_case(label: str, x_shape, w_shape, stride: int, padding: int, algo: str,
               backward: bool, impls, group: str) -> Case:
    """conv2d of x_shape by w_shape; fwd+bwd computes the input, weight and bias gradients.
    torch rows run torch's own choice whatever ``algo`` says (the yardstick)."""
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    y_shape = (n, o, oh, ow)

    def make(impl: str):
        x_h = host_data(int(np.prod(x_shape)), 0).reshape(x_shape)
        w_h = host_data(int(np.prod(w_shape)), 1).reshape(w_shape) * 0.1
        b_h = host_data(o, 2)
        lib = _Lib(impl)
        x, wt, b = (lib.tensor(a, backward) for a in (x_h, w_h, b_h))
        g = lib.tensor(host_data(int(np.prod(y_shape)), 3).reshape(y_shape))
        if lib.is_torch:
            def fn():
                return lib.F.conv2d(x, wt, b, stride, padding)
        else:
            def fn():
                return lib.F.conv2d(x, wt, b, stride, padding, algo=algo)
        return _timed(lib, fn, [x, wt, b], g, backward)

    flops = 2.0 * n * o * oh * ow * cg * kh * kw * (3 if backward else 1)
    dims = "x".join(str(d) for d in x_shape)
    return Case(f"conv2d {label} {dims}->{o} {algo} {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), make, flops=flops,
                params={"x": list(x_shape), "w": list(w_shape), "stride": stride,
                        "padding": padding, "algo": algo})


def conv_cases(quick: bool = False) -> List[Case]:
    """Convolution rows: 3x3 (CPU 16x64x56x56, GPU 32x64x56x56) by every algorithm that
    applies, 1x1, the 7x7 stride-2 stem on 224x224 images, and an 11x11 kernel where FFT
    competes; fwd and fwd+bwd."""
    nb = 2 if quick else 16
    nb_gpu = 8 if quick else 32
    cases: List[Case] = []
    cpu_rows = [
        ("3x3", (nb, 64, 56, 56), (64, 64, 3, 3), 1, 1, ("auto", "im2col", "winograd", "fft")),
        ("1x1", (nb, 64, 56, 56), (64, 64, 1, 1), 1, 0, ("auto",)),
        ("7x7/2 stem", (nb // 2 or 1, 3, 224, 224), (64, 3, 7, 7), 2, 3, ("auto", "fft")),
        ("11x11", (max(nb // 4, 1), 16, 64, 64), (16, 16, 11, 11), 1, 5, ("auto", "im2col", "fft")),
    ]
    gpu_rows = [
        ("3x3", (nb_gpu, 64, 56, 56), (64, 64, 3, 3), 1, 1),
        ("1x1", (nb_gpu, 64, 56, 56), (64, 64, 1, 1), 1, 0),
        ("7x7/2 stem", (nb_gpu, 3, 224, 224), (64, 3, 7, 7), 2, 3),
        ("11x11", (nb_gpu, 16, 64, 64), (16, 16, 11, 11), 1, 5),
    ]
    for bwd in (False, True):
        for label, xs, ws, s, p, algos in cpu_rows:
            for algo in algos:
                cases.append(_conv_case(label, xs, ws, s, p, algo, bwd, CPU_IMPLS, "convolution"))
        for label, xs, ws, s, p in gpu_rows:
            cases.append(_conv_case(label, xs, ws, s, p, "auto", bwd, GPU_IMPLS, "gpu convolution"))
    return cases


def default_suite(quick: bool = False) -> List[Case]:
    """The default rows: activations on 4M float32 elements, Linear 4096x1024 by
    1024x1024 and elementwise ops on 4096x1024 (softmax, log_softmax, log, a product, a
    row-broadcast sum) on every implementation; on the GPU also activations on 256M elements
    (bandwidth rows); BatchNorm2d (training), LayerNorm and GroupNorm; 2x2 max and average
    pooling (16x64x112x112 on the CPU, 32x64x112x112 on the GPU) and dropout p=0.5 (4M on
    the CPU, 256M on the GPU). ``quick`` shrinks the sizes for a fast look."""
    n_act = 1 << 20 if quick else 4 << 20
    n_gpu = 16 << 20 if quick else 256 << 20
    lin = (1024, 512, 512) if quick else (4096, 1024, 1024)
    everywhere = CPU_IMPLS + GPU_IMPLS
    cases: List[Case] = []
    for act in ACTIVATIONS:
        for bwd in (False, True):
            cases.append(_activation_case(act, n_act, bwd, everywhere, f"activations {n_act >> 20}M"))
    for bwd in (False, True):
        cases.append(_linear_case(*lin, bwd, everywhere, "linear"))
    ew = (256, 1024) if quick else (4096, 1024)
    for kind in ("softmax", "log_softmax", "log", "mul", "add row-broadcast"):
        for bwd in (False, True):
            cases.append(_elementwise_case(kind, *ew, bwd, everywhere, "elementwise"))
    for act in ACTIVATIONS:
        for bwd in (False, True):
            cases.append(_activation_case(act, n_gpu, bwd, GPU_IMPLS, f"gpu activations {n_gpu >> 20}M"))
    g = 2048 if quick else 8192
    for tf32 in (False, True):
        cases.append(_gemm_case(g, g, g, tf32, GPU_IMPLS, "gpu gemm"))
    # normalization: CPU sizes on the CPU implementations, larger ones on the GPU
    cpu_norm = {"batch_norm2d": (16, 64, 56, 56), "layer_norm": (4096, 1024),
                "group_norm": (16, 64, 56, 56)}
    gpu_norm = {"batch_norm2d": (32, 64, 112, 112), "layer_norm": (16384, 4096),
                "group_norm": (32, 128, 56, 56)}
    if quick:
        cpu_norm = {"batch_norm2d": (8, 32, 28, 28), "layer_norm": (1024, 1024),
                    "group_norm": (8, 64, 28, 28)}
        gpu_norm = {"batch_norm2d": (16, 64, 56, 56), "layer_norm": (4096, 4096),
                    "group_norm": (16, 64, 56, 56)}
    for sizes, impls, group in ((cpu_norm, CPU_IMPLS, "normalization"),
                                (gpu_norm, GPU_IMPLS, "gpu normalization")):
        for kind, shape in sizes.items():
            for bwd in (False, True):
                cases.append(_norm_case(kind, shape, bwd, impls, group))
    # pooling 2x2 (CPU 16x64x112x112, GPU 32x64x112x112) and dropout (CPU 4M, GPU 256M)
    pool_cpu = (4, 64, 56, 56) if quick else (16, 64, 112, 112)
    pool_gpu = (8, 64, 112, 112) if quick else (32, 64, 112, 112)
    for name in POOLS:
        for bwd in (False, True):
            cases.append(_pool_case(name, pool_cpu, bwd, CPU_IMPLS, "pooling"))
            cases.append(_pool_case(name, pool_gpu, bwd, GPU_IMPLS, "gpu pooling"))
    for bwd in (False, True):
        cases.append(_dropout_case(n_act, 0.5, bwd, CPU_IMPLS, "dropout"))
        cases.append(_dropout_case(n_gpu, 0.5, bwd, GPU_IMPLS, "gpu dropout"))
    cases += attention_suite(quick)
    from .tensor_api import tensor_api_cases  # imports this module: bound at call time

    cases += tensor_api_cases(quick)
    cases.extend(conv_cases(quick))
    cases += rnn_cases(quick)
    cases.extend(train_cases(quick))
    return cases


def _rnn_case(kind: str, t: int, n: int, fin: int, hidden: int, backward: bool, impls,
              group: str) -> Case:
    """One-layer LSTM / GRU (nn.LSTM / nn.GRU with PyTorch's init) on a time-major
    (T, N, I) float32 sequence; fwd+bwd takes the output's gradient."""
    def make(impl: str):
        rng = np.random.default_rng(0)
        x_host = rng.standard_normal((t, n, fin), dtype=np.float32)
        g_host = rng.standard_normal((t, n, hidden), dtype=np.float32)
        lib = _Lib(impl)
        cls = lib.nn.LSTM if kind == "lstm" else lib.nn.GRU
        m = cls(fin, hidden).to(_torch_device(impl)) if lib.is_torch else cls(fin, hidden, backend=impl)
        x = lib.tensor(x_host, backward)
        # clearing the parameters' gradients is zero_grad() in both libraries
        return _timed(lib, lambda: m(x)[0], [x, *m.parameters()], lib.tensor(g_host), backward)

    gates = 4 if kind == "lstm" else 3
    flops = 2.0 * t * n * gates * hidden * (fin + hidden) * (3 if backward else 1)
    return Case(f"{kind} T{t} N{n} I{fin} H{hidden} {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), make, flops=flops,
                params={"seq": t, "batch": n, "input": fin, "hidden": hidden})


def rnn_cases(quick: bool = False) -> List[Case]:
    """LSTM and GRU, batch 32, input 128, hidden 256: sequence 50 on the CPU, 100 on the
    GPU (``quick``: sequence 10 / 20)."""
    cases: List[Case] = []
    for kind in ("lstm", "gru"):
        for bwd in (False, True):
            cases.append(_rnn_case(kind, 10 if quick else 50, 32, 128, 256, bwd, CPU_IMPLS,
                                   "recurrent"))
            cases.append(_rnn_case(kind, 20 if quick else 100, 32, 128, 256, bwd, GPU_IMPLS,
                                   "gpu recurrent"))
    return cases


# ------------------------------------------------------------------ training steps
MLP_SIZES = (784, 256, 256, 10)


def _mlp(nn):
    """784-256-256-10 with ReLU (nn: ferrograd.nn or torch.nn, same constructors)."""
    a, b, c, d = MLP_SIZES
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d))


def _cnn(nn):
    """LeNet-like on 1x28x28: conv 8 (3x3, pad 1), ReLU, 2x2 max pool, conv 16 (3x3,
    pad 1), ReLU, 2x2 max pool, flatten, linear 10."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


SEQ_SIZES = (16, 16, 64)  # sequence length, input features, hidden size


def _lstm_model(nn):
    """A sequence classifier on (N, 16, 16): LSTM 64 (batch first), LayerNorm, flatten,
    linear 10; run by ``_seq_forward`` (the LSTM passes on its output only)."""
    t, i, h = SEQ_SIZES
    return nn.Sequential(nn.LSTM(i, h, batch_first=True), nn.LayerNorm(h), nn.Flatten(),
                         nn.Linear(t * h, 10))


def _seq_forward(model, x):
    """The layers of ``model`` in turn, a tuple result (LSTM's) passing on its first item."""
    for m in model:
        x = m(x)
        if isinstance(x, tuple):
            x = x[0]
    return x


def _train_case(kind: str, batch: int, impls, group: str) -> Case:
    """One SGD training step (lr 1e-3, cross-entropy, float32): zero_grad, forward, loss,
    backward, step. rust: the Python engine on the rust backend with fg.optim.SGD;
    native: NativeSequential.step (forward, backward and the update in one Rust call);
    torch-cpu: the same model and torch.optim.SGD."""
    build = {"mlp": _mlp, "cnn": _cnn, "lstm": _lstm_model}[kind]
    in_shape = {"mlp": (MLP_SIZES[0],), "cnn": (1, 28, 28), "lstm": SEQ_SIZES[:2]}[kind]

    def make(impl: str):
        rng = np.random.default_rng(0)
        x_host = rng.standard_normal((batch,) + in_shape, dtype=np.float32)
        y_host = rng.integers(0, 10, batch)
        if impl.startswith("torch"):
            import torch

            torch.manual_seed(0)
            model = build(torch.nn)
            fwd = model if kind != "lstm" else (lambda x: _seq_forward(model, x))
            opt = torch.optim.SGD(model.parameters(), lr=1e-3)
            x, y = torch.from_numpy(x_host), torch.from_numpy(y_host)

            def run():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(fwd(x), y)
                loss.backward()
                opt.step()
                return loss
            return run
        import ferrograd as fg
        import ferrograd.functional as F
        import ferrograd.nn as fnn

        fg.manual_seed(0)
        model = build(fnn).to("rust")
        if impl == "native":
            from ..native import NativeSequential

            native = NativeSequential(model, "cross_entropy")
            return lambda: native.step(x_host, y_host, lr=1e-3)
        opt = fg.optim.SGD(model.parameters(), lr=1e-3)
        x = fg.tensor(x_host, backend=impl)
        fwd = model if kind != "lstm" else (lambda x: _seq_forward(model, x))

        def run():
            opt.zero_grad()
            loss = F.cross_entropy(fwd(x), y_host)
            loss.backward()
            opt.step()
            return loss
        return run

    return Case(f"{kind} train step batch {batch}", group, tuple(impls), make,
                params={"model": kind, "batch": batch})


def train_cases(quick: bool = False) -> List[Case]:
    """Time per SGD training step of a small MLP (784-256-256-10), a small CNN (see
    ``_cnn``) and a small LSTM sequence classifier (``_lstm_model``) at batch 1, 8 and 64:
    the Python engine on the rust backend, ferrograd.native and PyTorch on the CPU. The
    models are small already, so ``quick`` keeps them."""
    return [_train_case(kind, b, TRAIN_IMPLS, "training step")
            for kind in ("mlp", "cnn", "lstm") for b in (1, 8, 64)]


# ------------------------------------------------------------------ attention
def _sdpa_case(shape, backward: bool, impls, group: str, causal: bool = False,
               tf32: bool = False) -> Case:
    """SDPA on q, k, v of ``shape`` (B, H, L, E); fwd+bwd differentiates q, k and v.
    ``tf32`` allows TF32 tensor cores on both sides (GPU rows)."""
    b, h, l, e = shape
    n = b * h * l * e

    def make(impl: str):
        lib = _Lib(impl)
        q, k, v = (lib.tensor(host_data(n, s).reshape(shape), backward) for s in range(3))
        g = lib.tensor(host_data(n, 3).reshape(shape))
        return _timed(lib, lambda: lib.F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                      [q, k, v], g, backward, tf32=tf32)

    flops = 4.0 * b * h * l * l * e * (1 if not backward else 3.5) * (0.5 if causal else 1)
    dims = "x".join(str(d) for d in shape)
    return Case(f"sdpa {dims}{' causal' if causal else ''}{' tf32' if tf32 else ''} "
                f"{'fwd+bwd' if backward else 'fwd'}", group, tuple(impls), make, flops=flops,
                params={"shape": list(shape), "causal": causal, "tf32": tf32})


def _encoder_case(kind: str, batch: int, seq: int, d_model: int, nhead: int, backward: bool,
                  impls, group: str) -> Case:
    """MultiheadAttention (self-attention, need_weights=False) or TransformerEncoderLayer
    (dim_feedforward 2048, dropout 0, eval mode) on (batch, seq, d_model), batch_first."""
    shape = (batch, seq, d_model)
    n = batch * seq * d_model

    def make(impl: str):
        lib = _Lib(impl)
        kw = {} if lib.is_torch else {"backend": impl}
        if lib.is_torch:
            import torch

            torch.manual_seed(0)
        if kind == "mha":
            m = lib.nn.MultiheadAttention(d_model, nhead, batch_first=True, **kw)
        else:
            m = lib.nn.TransformerEncoderLayer(d_model, nhead, 2048, dropout=0.0, batch_first=True, **kw)
        if lib.is_torch:
            m = m.to(_torch_device(impl))
        # eval in fwd rows (PyTorch's fast path there), train in fwd+bwd
        m.train(backward)
        x = lib.tensor(host_data(n, 0).reshape(shape), backward)
        if kind == "mha":
            def call():
                return m(x, x, x, need_weights=False)[0]
        else:
            def call():
                return m(x)
        return _timed(lib, call, [x], lib.tensor(host_data(n, 1).reshape(shape)), backward)

    name = "MultiheadAttention" if kind == "mha" else "TransformerEncoderLayer"
    return Case(f"{name} {batch}x{seq}x{d_model} h{nhead} {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), make, params={"shape": list(shape), "nhead": nhead})


def attention_suite(quick: bool = False) -> List[Case]:
    """The attention rows: SDPA 2x8xLx64 (L = 128, 1024) on the CPU, 8x12x2048x64 on the
    GPU; MultiheadAttention and TransformerEncoderLayer at batch 8, sequence 128, d_model
    512, 8 heads. Peak memory of plain vs flash attention: :func:`attention_peak_memory`."""
    cpu_seqs = (128, 256) if quick else (128, 1024)
    gpu_shape = (2, 12, 512, 64) if quick else (8, 12, 2048, 64)
    everywhere = CPU_IMPLS + GPU_IMPLS
    cases: List[Case] = []
    for bwd in (False, True):
        for l in cpu_seqs:
            cases.append(_sdpa_case((2, 8, l, 64), bwd, ("rust", "torch-cpu") if l > 256 else everywhere,
                                    "attention"))
        cases.append(_sdpa_case(gpu_shape, bwd, GPU_IMPLS, "gpu attention"))
        cases.append(_sdpa_case(gpu_shape, bwd, GPU_IMPLS, "gpu attention", tf32=True))
        for kind in ("mha", "encoder"):
            cases.append(_encoder_case(kind, 8, 64 if quick else 128, 512, 8, bwd, everywhere, "transformer"))
    return cases


def attention_peak_memory(seqs=(4096, 16384), batch: int = 1, heads: int = 8, dim: int = 64) -> List[dict]:
    """Peak GPU memory (bytes above the inputs) of one attention forward at each sequence
    length: ferrograd cuda flash (SDPA) vs ferrograd cuda plain (need_weights path, which
    materializes the L x L weights), and torch's SDPA vs torch's plain softmax(q k^T) v.
    ferrograd's numbers are the growth of the memory pool's held bytes (the pool keeps
    what it allocated, so growth = peak); torch's come from torch.cuda.max_memory_allocated.
    A configuration that runs out of memory is reported as "OOM". Run on a GPU machine:
    ``python -c "from ferrograd.bench.suite import attention_peak_memory as m; print(m())"``"""
    import ferrograd as fg
    import ferrograd.functional as F
    from ferrograd.ops.attention import attention

    rows = []
    be = fg.get_backend("cuda")
    drv = be._drv
    for seq in seqs:
        shape = (batch, heads, seq, dim)
        n = int(np.prod(shape))
        host = [host_data(n, s).reshape(shape) for s in range(3)]
        row = {"seq": seq, "shape": list(shape)}
        for name in ("fg flash", "fg plain"):
            be._pool.free_held()
            be.synchronize()
            q, k, v = (fg.tensor(a, backend="cuda") for a in host)
            before = drv.mem_get_info()[0]
            try:
                with fg.no_grad():
                    if name == "fg flash":
                        out = F.scaled_dot_product_attention(q, k, v)
                    else:
                        out = attention(q, k, v, need_weights=True)[0]
                be.synchronize()
                row[name] = before - drv.mem_get_info()[0]
                del out
            except Exception as exc:  # noqa: BLE001 - out of memory is a result here
                row[name] = f"OOM ({type(exc).__name__})"
            del q, k, v
        be._pool.free_held()
        try:
            import torch
            import torch.nn.functional as TF

            tq, tk, tv = (torch.from_numpy(a).cuda() for a in host)
            for name, fn in (("torch sdpa", lambda: TF.scaled_dot_product_attention(tq, tk, tv)),
                             ("torch plain", lambda: torch.softmax(tq @ tk.transpose(-2, -1) / dim ** 0.5, -1) @ tv)):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                try:
                    with torch.no_grad():
                        out = fn()
                    torch.cuda.synchronize()
                    row[name] = torch.cuda.max_memory_allocated() - base
                    del out
                except torch.cuda.OutOfMemoryError:
                    row[name] = "OOM"
                torch.cuda.empty_cache()
            del tq, tk, tv
        except ImportError:
            pass
        rows.append(row)
    return rows
