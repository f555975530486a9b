"""Benchmark rows. A Case builds, for one implementation ("numpy", "rust", "cuda",
"torch-cpu", "torch-cuda"), a zero-argument function that runs the measured work once.

Rows time the public layer API (ferrograd.functional with autograd, torch.nn.functional),
as a user calls it: "fwd" runs under no_grad, "fwd+bwd" records the graph and runs
backward with a given upstream gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

CPU_IMPLS = ("numpy", "rust", "torch-cpu")
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


def _activation_case(act: str, n: int, backward: bool, impls, group: str) -> Case:
    fg_name, fg_kw, t_name, t_kw = ACTIVATIONS[act]

    def make(impl: str):
        x_host = host_data(n, 0)
        g_host = host_data(n, 1)
        if impl.startswith("torch"):
            import torch
            import torch.nn.functional as TF

            dev = _torch_device(impl)
            fn = getattr(TF, t_name)
            x = torch.from_numpy(x_host).to(dev).requires_grad_(backward)
            g = torch.from_numpy(g_host).to(dev)
            if not backward:
                def run():
                    with torch.no_grad():
                        return fn(x, **t_kw)
            else:
                def run():
                    x.grad = None
                    fn(x, **t_kw).backward(g)
                    return x.grad
            return run
        import ferrograd as fg
        import ferrograd.functional as F

        fn = getattr(F, fg_name)
        x = fg.tensor(x_host, backend=impl, requires_grad=backward)
        g = fg.tensor(g_host, backend=impl)
        if not backward:
            def run():
                with fg.no_grad():
                    return fn(x, **fg_kw)
        else:
            def run():
                x.grad = None
                fn(x, **fg_kw).backward(g)
                return x.grad
        return run

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
        if impl.startswith("torch"):
            import torch
            import torch.nn.functional as TF

            dev = _torch_device(impl)
            x = torch.from_numpy(x_host).to(dev).requires_grad_(backward)
            w = torch.from_numpy(w_host).to(dev).requires_grad_(backward)
            b = torch.from_numpy(b_host).to(dev).requires_grad_(backward)
            g = torch.from_numpy(g_host).to(dev)
            if not backward:
                def run():
                    with torch.no_grad():
                        return TF.linear(x, w, b)
            else:
                def run():
                    x.grad = w.grad = b.grad = None
                    TF.linear(x, w, b).backward(g)
                    return w.grad
            return run
        import ferrograd as fg
        import ferrograd.functional as F

        x = fg.tensor(x_host, backend=impl, requires_grad=backward)
        w = fg.tensor(w_host, backend=impl, requires_grad=backward)
        b = fg.tensor(b_host, backend=impl, requires_grad=backward)
        g = fg.tensor(g_host, backend=impl)
        if not backward:
            def run():
                with fg.no_grad():
                    return F.linear(x, w, b)
        else:
            def run():
                x.grad = w.grad = b.grad = None
                F.linear(x, w, b).backward(g)
                return w.grad
        return run

    flops = 2.0 * n * fin * fout * (3 if backward else 1)
    return Case(f"linear {n}x{fin}x{fout} {'fwd+bwd' if backward else 'fwd'}", group,
                tuple(impls), make, flops=flops, params={"n": n, "in": fin, "out": fout})


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
        x_host = host_data(n, 0).reshape(shape)
        g_host = host_data(n, 1).reshape(shape)
        rng = np.random.default_rng(0)
        w_host = rng.standard_normal(c, dtype=np.float32)
        b_host = rng.standard_normal(c, dtype=np.float32)
        if impl.startswith("torch"):
            import torch
            import torch.nn.functional as TF

            dev = _torch_device(impl)
            x = torch.from_numpy(x_host).to(dev).requires_grad_(backward)
            p = [torch.from_numpy(a).to(dev).requires_grad_(backward) for a in (w_host, b_host)]
            p += [torch.zeros(c, device=dev), torch.ones(c, device=dev)]
            g = torch.from_numpy(g_host).to(dev)
            if not backward:
                def run():
                    with torch.no_grad():
                        return torch_call(TF, x, p)
            else:
                def run():
                    x.grad = p[0].grad = p[1].grad = None
                    torch_call(TF, x, p).backward(g)
                    return x.grad
            return run
        import ferrograd as fg
        import ferrograd.functional as F

        x = fg.tensor(x_host, backend=impl, requires_grad=backward)
        p = [fg.tensor(a, backend=impl, requires_grad=backward) for a in (w_host, b_host)]
        p += [fg.zeros(c, backend=impl), fg.ones(c, backend=impl)]
        g = fg.tensor(g_host, backend=impl)
        if not backward:
            def run():
                with fg.no_grad():
                    return fg_call(F, x, p)
        else:
            def run():
                x.grad = p[0].grad = p[1].grad = None
                fg_call(F, x, p).backward(g)
                return x.grad
        return run

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


def _fg_or_torch_case(make_args, fg_fn, torch_fn, backward: bool):
    """make(impl) for a one-input layer: ``make_args(impl)`` gives (x_host, gy_host);
    ``fg_fn(fg_tensor)`` / ``torch_fn(torch_tensor)`` run the layer."""

    def make(impl: str):
        x_host, g_host = make_args()
        if impl.startswith("torch"):
            import torch

            dev = _torch_device(impl)
            x = torch.from_numpy(x_host).to(dev).requires_grad_(backward)
            g = torch.from_numpy(g_host).to(dev)
            if not backward:
                def run():
                    with torch.no_grad():
                        return torch_fn(x)
            else:
                def run():
                    x.grad = None
                    torch_fn(x).backward(g)
                    return x.grad
            return run
        import ferrograd as fg

        x = fg.tensor(x_host, backend=impl, requires_grad=backward)
        g = fg.tensor(g_host, backend=impl)
        if not backward:
            def run():
                with fg.no_grad():
                    return fg_fn(x)
        else:
            def run():
                x.grad = None
                fg_fn(x).backward(g)
                return x.grad
        return run

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
                _fg_or_torch_case(args, fg_fn, torch_fn, backward), bytes_moved=moved,
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
                tuple(impls), _fg_or_torch_case(args, fg_fn, torch_fn, backward),
                bytes_moved=moved, params={"elements": n, "p": p})


def default_suite(quick: bool = False) -> List[Case]:
    """The default rows: activations on 4M float32 elements and Linear 4096x1024 by
    1024x1024 on every implementation; on the GPU also activations on 256M elements
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
    for act in ACTIVATIONS:
        for bwd in (False, True):
            cases.append(_activation_case(act, n_gpu, bwd, GPU_IMPLS, f"gpu activations {n_gpu >> 20}M"))
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
    cases += rnn_cases(quick)
    return cases


def _rnn_case(kind: str, t: int, n: int, fin: int, hidden: int, backward: bool, impls,
              group: str) -> Case:
    """One-layer LSTM / GRU (nn.LSTM / nn.GRU with PyTorch's init) on a time-major
    (T, N, I) float32 sequence; fwd+bwd takes the output's gradient."""
    def make(impl: str):
        rng = np.random.default_rng(0)
        x_host = rng.standard_normal((t, n, fin), dtype=np.float32)
        g_host = rng.standard_normal((t, n, hidden), dtype=np.float32)
        if impl.startswith("torch"):
            import torch

            dev = _torch_device(impl)
            m = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(fin, hidden).to(dev)
            x = torch.from_numpy(x_host).to(dev).requires_grad_(backward)
            g = torch.from_numpy(g_host).to(dev)
            if not backward:
                def run():
                    with torch.no_grad():
                        return m(x)[0]
            else:
                def run():
                    x.grad = None
                    m.zero_grad()
                    m(x)[0].backward(g)
                    return x.grad
            return run
        import ferrograd as fg
        import ferrograd.nn as fnn

        m = (fnn.LSTM if kind == "lstm" else fnn.GRU)(fin, hidden, backend=impl)
        x = fg.tensor(x_host, backend=impl, requires_grad=backward)
        g = fg.tensor(g_host, backend=impl)
        if not backward:
            def run():
                with fg.no_grad():
                    return m(x)[0]
        else:
            def run():
                x.grad = None
                m.zero_grad()
                m(x)[0].backward(g)
                return x.grad
        return run

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
