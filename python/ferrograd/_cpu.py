"""The CPU features the Rust extension is compiled for.

``ferrograd._core`` is built for x86-64-v3 (AVX2 + FMA; see ``.cargo/config.toml``), with
wider units (AVX-512) chosen at run time. Loading it on an older x86-64 CPU would die on
an illegal instruction, so the rust backend checks first and raises ImportError instead.
"""

from __future__ import annotations

import platform
from typing import Optional

REQUIRED_X86_FLAGS = ("avx2", "fma")


def missing_x86_features() -> Optional[str]:
    """A message naming the missing features, or None when the CPU can run ``_core``.

    Only checked on x86-64 Linux (/proc/cpuinfo); elsewhere assume the build matches.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    missing = [x for x in REQUIRED_X86_FLAGS if x not in flags]
                    if missing:
                        return (f"this CPU lacks {', '.join(missing)}: the Rust extension is "
                                f"built for x86-64-v3 (AVX2 + FMA, Intel Haswell / AMD Zen "
                                f"or later)")
                    return None
    except OSError:
        return None
    return None
