"""Results: ratios to numpy and to PyTorch on the same device, the rich table, JSON, CSV
and a plot."""

from __future__ import annotations

import csv
import json
from typing import Dict, List, Optional

TORCH_OF = {"numpy": "torch-cpu", "rust": "torch-cpu", "native": "torch-cpu", "cuda": "torch-cuda",
            "torch-cpu": "torch-cpu", "torch-cuda": "torch-cuda"}


def add_ratios(rows: List[dict]) -> List[dict]:
    """speedup_vs_numpy = numpy's median / this median (> 1: faster than numpy), and
    speedup_vs_torch against PyTorch on the same device, for rows of one run."""
    # keyed by (group, case): "relu fwd" is a row of the 4M and of the 256M group
    by_case: Dict[tuple, Dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault((r.get("group"), r["case"]), {})[r["impl"]] = r
    for r in rows:
        same = by_case[(r.get("group"), r["case"])]
        base = same.get("numpy")
        r["speedup_vs_numpy"] = base["median_s"] / r["median_s"] if base and r["median_s"] else None
        torch = same.get(TORCH_OF.get(r["impl"], ""))
        r["speedup_vs_torch"] = torch["median_s"] / r["median_s"] if torch and r["median_s"] else None
    return rows


def _fmt_ratio(v: Optional[float]) -> str:
    return "" if v is None else f"{v:.2f}x"


def _throughput(r: dict) -> str:
    if r.get("gbps") is not None:
        return f"{r['gbps']:.0f} GB/s"
    if r.get("gflops") is not None:
        return f"{r['gflops']:.0f} GFLOP/s"
    return ""


def print_plain(rows: List[dict], meta: dict) -> None:
    """The table without rich (it is a dependency, but a bare GPU machine may lack it)."""
    print(f"median of {meta['repeats']} after {meta['warmup']} warm-up")
    print(f"{'row':34} {'impl':10} {'median':>12} {'throughput':>14} {'vs numpy':>9} {'vs torch':>9}")
    for r in rows:
        print(f"{r['case'][:34]:34} {r['impl']:10} {r['median_s'] * 1e3:9.3f} ms {_throughput(r):>14} "
              f"{_fmt_ratio(r['speedup_vs_numpy']):>9} {_fmt_ratio(r['speedup_vs_torch']):>9}")


def print_table(rows: List[dict], meta: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return print_plain(rows, meta)

    console = Console()
    groups: Dict[str, List[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for group, rs in groups.items():
        table = Table(title=f"{group} (median of {meta['repeats']} after {meta['warmup']} warm-up)")
        for col, just in [("row", "left"), ("impl", "left"), ("median", "right"),
                          ("throughput", "right"), ("vs numpy", "right"), ("vs torch", "right")]:
            table.add_column(col, justify=just)
        last = None
        for r in rs:
            table.add_row("" if r["case"] == last else r["case"], r["impl"],
                          f"{r['median_s'] * 1e3:.3f} ms", _throughput(r),
                          _fmt_ratio(r["speedup_vs_numpy"]), _fmt_ratio(r["speedup_vs_torch"]),
                          end_section=False)
            last = r["case"]
        console.print(table)
    console.print("vs numpy / vs torch: the other's median divided by this one's (above 1x is "
                  "faster); torch means PyTorch on the same device (torch-cpu for numpy, rust and native).")


def write_json(path: str, rows: List[dict], meta: dict) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)


CSV_FIELDS = ["group", "case", "impl", "median_s", "gbps", "gflops", "speedup_vs_numpy",
              "speedup_vs_torch", "repeats"]


def write_csv(path: str, rows: List[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def plot(path: str, rows: List[dict]) -> None:
    """Horizontal bars: each implementation's speed-up over PyTorch on its device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = [i for i in ("numpy", "rust", "native", "cuda") if any(r["impl"] == i for r in rows)]
    cases = list(dict.fromkeys(r["case"] + ("" if "gpu" not in r["group"] else " [256M]")
                               for r in rows))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(cases) * max(1, len(impls)) + 1.5))
    height = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        ys, xs = [], []
        for i, case in enumerate(cases):
            for r in rows:
                label = r["case"] + ("" if "gpu" not in r["group"] else " [256M]")
                if label == case and r["impl"] == impl and r["speedup_vs_torch"]:
                    ys.append(i + k * height)
                    xs.append(r["speedup_vs_torch"])
        ax.barh(ys, xs, height=height, label=impl)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cases))], cases, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over PyTorch on the same device (median times; >1 is faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
