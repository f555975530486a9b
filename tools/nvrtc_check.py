"""Compile the CUDA kernel sources to PTX with NVRTC, without a GPU.

    python tools/nvrtc_check.py                 # every python/ferrograd/cuda/*.cu
    python tools/nvrtc_check.py path/to/x.cu    # selected files

Needs NVIDIA's `cuda-bindings` and the NVRTC library (both come with a CUDA build of
PyTorch: `pip install torch`). Catches syntax and type errors before a GPU run; it does
not run anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent.parent / "python" / "ferrograd" / "cuda"


def compile_to_ptx(path: Path, arch: str = "compute_90") -> tuple[bool, str]:
    from cuda.bindings import nvrtc

    src = path.read_bytes()
    _, prog = nvrtc.nvrtcCreateProgram(src, path.name.encode(), 0, [], [])
    opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17",
            b"-I" + str(path.parent).encode()]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    return err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace").strip(" \x00\n")


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted(CUDA_DIR.glob("*.cu"))
    failed = 0
    for f in files:
        # linear_sm90.cu uses Hopper's arch-specific instructions (wgmma)
        ok, log = compile_to_ptx(f, "compute_90a" if f.stem.endswith("_sm90") else "compute_90")
        print(f"{f}: {'ok' if ok else 'FAILED'}")
        if log:
            print(log)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
