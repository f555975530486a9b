"""Render a ferrograd-bench JSON file as the markdown table of benches/README.md.

    python tools/bench_table.py benches/results/bench_gpu.json > table.md

One line per row (group, case) with each implementation's median in ms, then each
non-torch implementation's ratio to numpy and to PyTorch on its device (above 1x: faster),
and the throughput of the first implementation that has one.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from ferrograd.bench.report import add_ratios  # noqa: E402


def main(path: str) -> None:
    data = json.load(open(path))
    rows = add_ratios(data["rows"])
    impls = data["meta"]["impls"]
    ours = [i for i in impls if not i.startswith("torch")]
    table = {}
    for r in rows:
        table.setdefault((r["group"], r["case"]), {})[r["impl"]] = r
    head = ["group", "row"] + [f"{i} ms" for i in impls]
    for i in ours:
        if i != "numpy" and "numpy" in impls:
            head.append(f"{i} vs numpy")
        if any(t.startswith("torch") for t in impls):
            head.append(f"{i} vs torch")
    head.append("throughput")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (group, case), by in table.items():
        cells = [group, case] + [f"{by[i]['median_s'] * 1e3:.3f}" if i in by else "" for i in impls]
        for i in ours:
            r = by.get(i, {})
            if i != "numpy" and "numpy" in impls:
                v = r.get("speedup_vs_numpy")
                cells.append("" if v is None else f"{v:.2f}x")
            if any(t.startswith("torch") for t in impls):
                v = r.get("speedup_vs_torch")
                cells.append("" if v is None else f"{v:.2f}x")
        # throughput of the first non-reference implementation of the row
        first = next((by[i] for i in ours if i in by and i != "numpy"), by.get("numpy", {}))
        if first.get("gbps") is not None:
            cells.append(f"{first['gbps']:.0f} GB/s")
        elif first.get("gflops") is not None:
            cells.append(f"{first['gflops'] / 1e3:.1f} TFLOP/s")
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
