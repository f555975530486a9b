"""Long training runs that check two things a training library owes its users: memory that
stays flat over thousands of steps, and results that repeat bit for bit under one seed.

A small CNN (Conv2d 3x3 -> BatchNorm2d -> ReLU -> MaxPool2d -> Dropout -> Linear, and a
second 3x3 conv so every conv algorithm's weight gradient is exercised) trains on fixed
synthetic data with SGD (momentum) on one engine:

* ``numpy`` / ``rust``: the Python autograd engine on that backend, ``fg.optim.SGD``;
* ``native``: ``ferrograd.native.NativeSequential``'s Rust tape, plain SGD.

Each run reports the resident set size (RSS, from /proc/self/statm) at checkpoints and a
SHA-256 digest of every step's loss and the final parameters. Two runs with the same seed
in two fresh processes must give the same digest; with ``--threads 1,2`` the rust and
native runs are repeated under ``RAYON_NUM_THREADS=1`` and ``=2`` and must agree too.

    python -m ferrograd.testing.soak --steps 10000                  # every engine, 2 processes each
    python -m ferrograd.testing.soak --engines rust --algo winograd --steps 2000
    python -m ferrograd.testing.soak --steps 300 --threads 1,2      # thread-count independence

``tests/test_determinism.py`` runs a short version of the same check in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

ENGINES = ("numpy", "rust", "native")


def rss_bytes() -> int:
    """The process's resident set size now (Linux: /proc/self/statm; else ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_model(algo: str):
    import ferrograd.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, algo=algo), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, algo=algo), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


def train(engine: str, steps: int, seed: int = 0, algo: str = "auto", batch: int = 16,
          checkpoints: int = 10) -> Dict:
    """Trains for ``steps`` steps; returns the digest, the last loss and RSS samples."""
    import ferrograd as fg
    import ferrograd.functional as F

    fg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = rng.standard_normal((8 * batch, 1, 8, 8)).astype(np.float32)
    y_all = rng.integers(0, 10, 8 * batch).astype(np.int64)
    backend = "rust" if engine == "native" else engine
    model = make_model(algo).to(backend)
    digest = hashlib.sha256()
    rss: List[int] = []
    every = max(1, steps // checkpoints)
    if engine == "native":
        from ferrograd.native import NativeSequential

        runner = NativeSequential(model, loss="cross_entropy")
    else:
        opt = fg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_value = float("nan")
    for step in range(steps):
        i = (step % 8) * batch
        xb, yb = x_all[i:i + batch], y_all[i:i + batch]
        if engine == "native":
            loss_value = float(runner.step(xb, yb, 0.01))
        else:
            opt.zero_grad()
            loss = F.cross_entropy(model(fg.tensor(xb, backend=backend)), yb)
            loss.backward()
            opt.step()
            loss_value = float(loss.item())
        digest.update(np.float64(loss_value).tobytes())
        if (step + 1) % every == 0:
            rss.append(rss_bytes())
    for p in model.parameters():
        digest.update(np.ascontiguousarray(p.numpy()).tobytes())
    return {"engine": engine, "steps": steps, "digest": digest.hexdigest(), "loss": loss_value,
            "rss": rss}


def run_in_process(engine: str, steps: int, seed: int, algo: str,
                   threads: Optional[int] = None) -> Dict:
    """``train`` in a fresh interpreter (so "process to process" is what is compared)."""
    env = dict(os.environ)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "ferrograd.testing.soak", "--child", "--engines", engine,
           "--steps", str(steps), "--seed", str(seed), "--algo", algo]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"soak child ({engine}) failed with {out.returncode}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_growth(rss: List[int]) -> float:
    """Relative RSS growth from the second checkpoint to the last (the first holds warm-up:
    the buffer cache and allocator filling up)."""
    if len(rss) < 3:
        return 0.0
    return (rss[-1] - rss[1]) / rss[1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", default="auto", help="Conv2d algo: auto, naive, im2col, winograd, fft")
    parser.add_argument("--threads", default="", help="e.g. 1,2: repeat rust/native runs per thread count")
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    if args.child:
        print(json.dumps(train(engines[0], args.steps, args.seed, args.algo)))
        return 0
    ok = True
    for engine in engines:
        runs = [run_in_process(engine, args.steps, args.seed, args.algo) for _ in range(2)]
        if args.threads and engine != "numpy":
            runs += [run_in_process(engine, args.steps, args.seed, args.algo, int(t))
                     for t in args.threads.split(",")]
        same = len({r["digest"] for r in runs}) == 1
        growth = max(rss_growth(r["rss"]) for r in runs)
        flat = growth <= args.max_rss_growth
        ok &= same and flat
        print(f"{engine:7s} steps={args.steps} algo={args.algo} runs={len(runs)} "
              f"bit-identical={'yes' if same else 'NO'} loss={runs[0]['loss']:.6f} "
              f"rss={runs[0]['rss'][-1] / 2**20:.1f} MiB growth={100 * growth:+.2f}% "
              f"{'ok' if flat else 'GROWS'}")
        if not same:
            for r in runs:
                print(f"        {r['digest'][:16]} loss={r['loss']!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
