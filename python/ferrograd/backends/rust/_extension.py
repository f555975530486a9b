"""The extension every rust kernel module calls, imported after the CPU check: it is built
for x86-64-v3 (AVX2 + FMA), and an older CPU gets an ImportError saying which features
are missing instead of dying on an illegal instruction."""

from ..._cpu import missing_x86_features

_missing = missing_x86_features()
if _missing:
    raise ImportError(_missing)

from ... import _core  # noqa: E402

__all__ = ["_core"]
