"""ferrograd-bench: time the default suite on every available backend and PyTorch.

    ferrograd-bench                      # everything available, full sizes
    ferrograd-bench --quick              # smaller sizes, fewer repeats
    ferrograd-bench --backend rust --backend torch --json out.json --csv out.csv --plot out.png
    ferrograd-bench --filter "train step"  # training steps: rust engine vs native vs torch
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import List

from .report import add_ratios, plot, print_table, write_csv, write_json
from .suite import default_suite
from .timing import FAST_S, measure_epochs, median

#: timed calls per implementation for rows whose calls take under timing.FAST_S
FAST_REPEATS = 60

ALL = ("numpy", "rust", "native", "cuda", "torch", "torch-cpu", "torch-cuda")


def available_impls(wanted: List[str]) -> List[str]:
    """Implementations asked for that can run here (with the reason for the others)."""
    import ferrograd as fg

    impls = []
    for name in wanted:
        if name.startswith("torch"):  # "torch" is both torch-cpu and torch-cuda
            try:
                import torch
            except ImportError:
                print("torch: not installed, no PyTorch rows (pip install torch)", file=sys.stderr)
                continue
            if name in ("torch", "torch-cpu") and "torch-cpu" not in impls:
                impls.append("torch-cpu")
            if name in ("torch", "torch-cuda") and "torch-cuda" not in impls:
                if torch.cuda.is_available():
                    impls.append("torch-cuda")
                else:
                    print("torch-cuda: skipped (no CUDA device for PyTorch)", file=sys.stderr)
            continue
        try:
            # native (ferrograd.native, training-step rows) runs on the rust extension
            fg.get_backend("rust" if name == "native" else name)
        except Exception as exc:  # noqa: BLE001 - report why and go on
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        impls.append(name)
    return impls


class _NoProgress:
    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *_, **__):
        return 0

    def update(self, *_, description="", **__):
        print(description, file=sys.stderr, flush=True)

    def advance(self, *_):
        pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="ferrograd-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument("--backend", action="append", choices=ALL,
                   help="implementation to time (repeatable; default: all available)")
    p.add_argument("--filter", default="", help="only rows whose name contains this text")
    p.add_argument("--repeats", type=int, default=None, help=f"timed calls per row (default 15, quick 5; rows whose calls take under "
                        f"{FAST_S * 1e3:g} ms get {FAST_REPEATS}, quick 15)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3, quick 1)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--csv", metavar="PATH", help="write the results as CSV")
    p.add_argument("--plot", metavar="PATH", help="write a bar chart (PNG) of speed-ups over PyTorch")
    args = p.parse_args(argv)
    for name in ("repeats", "warmup"):
        v = getattr(args, name)
        if v is not None and v < (1 if name == "repeats" else 0):
            p.error(f"--{name}: expected a positive count, got {v}")
    return args


#: thread-pool settings the benchmark runs under (each only where the user has not set it)
QUIET_WORKERS = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def _restart_with_sleeping_worker_threads() -> None:
    """Run this command again with numpy's OpenBLAS workers set to sleep as soon as a call
    ends (``QUIET_WORKERS``), unless the user set the variable.

    OpenBLAS workers busy-wait for about 0.1 s after every BLAS call. The rows time the
    implementations in alternating rounds, so on a machine with few cores those spinning
    workers take the cores from the next implementation's timed call. Measured on the
    2-core VM with numpy in the rounds: rust LSTM T50 fwd+bwd took 23.7 ms instead of
    13.2 ms and torch-cpu's forward 7.5 instead of 3.5 ms. The price is numpy's wake-up
    in its own rows (its LSTM forward +12%). The variable is read when OpenBLAS loads,
    before this module runs, hence the restart.

    PyTorch's OpenMP workers are left as they are (the yardstick runs as users run it):
    OMP_WAIT_POLICY=PASSIVE made rust's 4M sigmoid after torch calls 0.51 ms instead of
    0.92 ms, but also doubled torch's own LSTM (3.4 -> 8.7 ms)."""
    missing = {k: v for k, v in QUIET_WORKERS.items() if k not in os.environ}
    if not missing:
        return
    os.environ.update(missing)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "ferrograd.bench", *sys.argv[1:]])


def main(argv=None) -> int:
    if argv is None:
        _restart_with_sleeping_worker_threads()
    args = parse_args(argv)
    try:
        from rich.progress import Progress
    except ImportError:  # a bare machine: no progress display
        Progress = _NoProgress

    repeats = args.repeats or (5 if args.quick else 15)
    # rows of fast calls get more (timing.measure_epochs), unless --repeats says how many
    fast_repeats = 0 if args.repeats else (15 if args.quick else FAST_REPEATS)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    impls = available_impls(args.backend or list(ALL))
    cases = [c for c in default_suite(args.quick) if args.filter in c.name]
    work = [(c, [i for i in c.impls if i in impls]) for c in cases]
    work = [(c, row_impls) for c, row_impls in work if row_impls]
    if not work:
        print("nothing to run: no row matches the filter on the available backends", file=sys.stderr)
        return 2
    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("benchmarking", total=len(work))
        for case, row_impls in work:
            progress.update(task, description=f"{case.name} [{', '.join(row_impls)}]")
            times = measure_epochs(case.make, row_impls, warmup, repeats, fast_repeats=fast_repeats)
            for impl in row_impls:
                m = median(times[impl])
                rows.append({
                    "group": case.group, "case": case.name, "impl": impl, "median_s": m,
                    "times_s": times[impl], "repeats": len(times[impl]), "params": case.params,
                    "gbps": case.bytes_moved / m / 1e9 if case.bytes_moved else None,
                    "gflops": case.flops / m / 1e9 if case.flops else None,
                })
                # one line per row as it finishes, so a run cut short still shows its figures
                print(f"{case.name} [{impl}]: {m * 1e3:.3f} ms", file=sys.stderr, flush=True)
            progress.advance(task)
    add_ratios(rows)
    meta = {"repeats": repeats, "fast_repeats": fast_repeats, "warmup": warmup, "quick": args.quick, "impls": impls,
            "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    meta["worker_env"] = {k: os.environ.get(k) for k in QUIET_WORKERS}
    try:
        from .. import _core
        meta["rust_threads"] = _core.num_threads()
    except ImportError:
        pass
    try:
        import torch
        meta["torch"] = torch.__version__
        meta["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    print_table(rows, meta)
    if args.json:
        write_json(args.json, rows, meta)
    if args.csv:
        write_csv(args.csv, rows)
    if args.plot:
        plot(args.plot, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
