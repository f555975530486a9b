"""The numpy backend: every kernel of the contract written to be read.

This is the reference the other backends are tested against, so clarity wins over speed
here; numerically delicate spots (sigmoid, softmax, cross-entropy) still use the stable
formulations, since the reference must be right for large |x| too.

One module per op family (the names of ``ops/``, ``rust_core/src/ops`` and ``cuda/``),
each a mixin class of kernels; :class:`NumpyBackend` (``backend.py``) is their sum.
"""

from .arrays import sum_to_shape
from .backend import NumpyBackend

__all__ = ["NumpyBackend", "sum_to_shape"]
