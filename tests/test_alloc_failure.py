"""A refused allocation is a MemoryError and the process goes on (issue 15): each op runs
on the rust backend in a child process whose address space is capped just above what it
holds, so the output buffer cannot be had. Without fallible allocation the child dies of
SIGABRT ("memory allocation of N bytes failed")."""

import subprocess
import sys
import textwrap

import pytest

import ferrograd as fg

pytestmark = pytest.mark.skipif("rust" not in fg.available_backends(), reason="needs the rust backend")

CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import ferrograd as fg, ferrograd.functional as F
    x = fg.tensor(np.ones((10000, 10000), np.float32), backend="rust")  # 400 MB
    small = fg.tensor(np.ones((4, 4), np.float32), backend="rust")
    F.relu(small); F.softmax(small, -1)  # threads and code paths warmed up before the cap
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (200 << 20),) * 2)
    ops = {"relu": lambda: F.relu(x), "gelu": lambda: F.gelu(x), "add": lambda: x + x,
           "softmax": lambda: F.softmax(x, -1), "log_softmax": lambda: F.log_softmax(x, -1),
           "layer_norm": lambda: F.layer_norm(x, (10000,)), "dropout": lambda: F.dropout(x, 0.5),
           "transpose copy": lambda: F.relu(x.T),
           "broadcast": lambda: fg.tensor(np.ones((100000, 1), np.float32), backend="rust")
                                + fg.tensor(np.ones((1, 100000), np.float32), backend="rust")}
    for name, op in ops.items():
        try:
            op()
            print(name, "succeeded")
        except MemoryError as e:
            print(name, "MemoryError", str(e)[:80])
    print("after:", float(F.relu(small).sum().item()))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_refused_output_buffers_raise_memory_error_and_the_process_survives():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"child died ({out.returncode}): {out.stderr[-800:]}"
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "after: 16.0", out.stdout
    for line in lines[:-1]:
        assert " MemoryError " in line, out.stdout
    assert "panicked" not in out.stderr, out.stderr[-800:]
