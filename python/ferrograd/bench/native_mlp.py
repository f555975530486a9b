"""Time per training step of a small MLP (784-256-256-10, ReLU, cross-entropy, SGD) at
batch 1, 8 and 64: the Python engine on the rust backend, ferrograd.native (one Rust call
per step) and PyTorch on the CPU when installed. Median of interleaved rounds.

    python -m ferrograd.bench.native_mlp [--repeats N]

The small-CNN row waits for the convolution family (a conv op on the native tape).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn
from ferrograd.native import NativeSequential

SIZES = (784, 256, 256, 10)


def _model():
    fg.manual_seed(0)
    return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(), nn.Linear(SIZES[1], SIZES[2]),
                         nn.ReLU(), nn.Linear(SIZES[2], SIZES[3])).to("rust")


def steps(batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], batch)
    engine_model = _model()
    opt = fg.optim.SGD(engine_model.parameters(), lr=1e-3)
    xt = fg.tensor(x, backend="rust")

    def engine():
        opt.zero_grad()
        loss = F.cross_entropy(engine_model(xt), y)
        loss.backward()
        opt.step()

    native = NativeSequential(_model(), "cross_entropy")

    def native_step():
        native.step(x, y, lr=1e-3)

    runs = {"python engine (rust)": engine, "native": native_step}
    try:
        import torch

        tm = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
                                 torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
                                 torch.nn.Linear(SIZES[2], SIZES[3]))
        topt = torch.optim.SGD(tm.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

        runs["torch-cpu"] = torch_step
    except ImportError:
        pass
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    print(f"MLP {'-'.join(map(str, SIZES))} training step, median ms")
    for batch in (1, 8, 64):
        runs = steps(batch)
        times = {k: [] for k in runs}
        for f in runs.values():
            f()
        for r in range(args.repeats):
            names = list(runs)
            for k in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                runs[k]()
                times[k].append(time.perf_counter() - t0)
        cells = ", ".join(f"{k}: {1e3 * statistics.median(v):.3f}" for k, v in times.items())
        print(f"batch {batch:>3}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
