"""Rust vs torch-cpu on the 4M-element activation kernels, alternating in one process.

    python tools/paired_activation_bench.py [rounds]

Each round times 15 calls of each side (after 3 untimed ones), in alternating order, on
the same buffers, and records torch's median / rust's median; the script prints the
median and quartiles of those ratios per kernel. The `_core` kernels are called directly
(no autograd layer), so this isolates the kernels from the benchmark suite's run-to-run
placement effects (see benches/README.md, "The activation rows across runs")."""

import sys
import time

import numpy as np
import torch

import ferrograd._core as core

N = 4 << 20


def median_time(fn, calls=15, warm=3):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(rounds: int = 30) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal(N).astype(np.float32)
    tx, tg = torch.from_numpy(x.copy()), torch.from_numpy(g.copy())
    tf = torch.nn.functional
    cases = {
        "relu fwd": (lambda: core.relu_forward(x), lambda: torch.relu(tx)),
        "leaky_relu fwd": (lambda: core.leaky_relu_forward(x, 0.01), lambda: tf.leaky_relu(tx, 0.01)),
        "sigmoid fwd": (lambda: core.sigmoid_forward(x), lambda: torch.sigmoid(tx)),
        "relu bwd": (lambda: core.relu_backward(x, g), lambda: torch.ops.aten.threshold_backward(tg, tx, 0)),
    }
    print(f"torch-cpu {torch.__version__}, {torch.get_num_threads()} threads; rust {core.num_threads()} threads")
    for name, (rust, ref) in cases.items():
        ratios, rt, tt = [], [], []
        for r in range(rounds):
            if r % 2:
                a, b = median_time(rust), median_time(ref)
            else:
                b, a = median_time(ref), median_time(rust)
            ratios.append(b / a)
            rt.append(a)
            tt.append(b)
        q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
        print(f"{name:15} rust {np.median(rt) * 1e3:.3f} ms, torch {np.median(tt) * 1e3:.3f} ms; "
              f"torch/rust per round: median {q2:.2f}x (quartiles {q1:.2f}-{q3:.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
