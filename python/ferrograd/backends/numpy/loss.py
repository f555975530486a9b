"""The numpy backend: loss kernels."""

from __future__ import annotations

import numpy as np

from .._validate import check_reduction, check_same_shape, check_targets


class LossKernels:
    """The numpy backend's loss kernels."""

    @staticmethod
    def _reduce(v, reduction):
        if reduction == "mean":
            return np.asarray(v.mean(), dtype=v.dtype)
        if reduction == "sum":
            return np.asarray(v.sum(), dtype=v.dtype)
        return v

    def mse_loss_forward(self, x, target, reduction):
        check_reduction(reduction)
        check_same_shape(x, target, "input", "target")
        d = x - target
        return self._reduce(d * d, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        check_reduction(reduction)
        # an empty input has an empty gradient (its mean loss is NaN, as in PyTorch)
        scale = 2.0 / max(x.size, 1) if reduction == "mean" else 2.0
        return (x.dtype.type(scale) * (x - target) * gy).astype(x.dtype, copy=False)

    def cross_entropy_forward(self, logits, target, reduction):
        check_reduction(reduction)
        check_targets(logits, target)
        logp = self.log_softmax_forward(logits)
        nll = -logp[np.arange(logits.shape[0]), target]
        return self._reduce(nll, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        check_reduction(reduction)
        check_targets(logits, target)
        n = logits.shape[0]
        g = self.softmax_forward(logits)
        g[np.arange(n), target] -= 1
        if reduction == "none":
            return g * gy.reshape(n, 1)
        scale = gy / n if reduction == "mean" else gy
        return (g * scale).astype(logits.dtype, copy=False)
