"""The rust backend: loss kernels."""

from __future__ import annotations

import numpy as np

from .._validate import check_targets
from ._extension import _core


class LossKernels:
    """The rust backend's loss kernels."""

    def mse_loss_forward(self, x, target, reduction):
        return _core.mse_loss_forward(x, target, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        return _core.mse_loss_backward(x, target, np.asarray(gy, dtype=x.dtype), reduction)

    def cross_entropy_forward(self, logits, target, reduction):
        check_targets(logits, target)
        return _core.cross_entropy_forward(logits, target, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        return _core.cross_entropy_backward(logits, target, np.asarray(gy, dtype=logits.dtype),
                                            reduction)
