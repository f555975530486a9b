"""The cuda backend: loss kernels."""

from __future__ import annotations

import numpy as np

from .._validate import check_reduction, check_same_shape, check_targets
from .runtime import _F32, _check_f32


class LossKernels:
    """The cuda backend's loss kernels."""

    def _reduce(self, v, reduction):
        if reduction == "none":
            return v
        s = self._sum_rows(v.reshape(1, v.size), 1, v.size).reshape(()) if v.size else \
            self.full((), 0.0, _F32)
        if reduction == "mean":
            out = self.empty(())
            self._launch("elementwise", "scale", 1, self._ptr(out), self._ptr(s),
                         np.float32(1.0 / v.size if v.size else np.nan), np.int64(1))
            return out
        return s

    def mse_loss_forward(self, x, target, reduction):
        check_reduction(reduction)
        check_same_shape(x, target, "input", "target")
        _check_f32(x, "input")
        d = self.empty(x.shape)
        self._launch("loss", "mse_elements", x.size, self._ptr(d), self._ptr(x), self._ptr(target),
                     np.int64(x.size))
        return self._reduce(d, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        check_reduction(reduction)
        scale = 2.0 / x.size if (reduction == "mean" and x.size) else 2.0
        g = self.empty(x.shape)
        self._launch("loss", "mse_backward", x.size, self._ptr(g), self._ptr(x), self._ptr(target),
                     self._ptr(gy), np.int64(x.size), np.float32(scale), np.int32(reduction == "none"))
        return g

    def _targets(self, logits, target):
        host = target if isinstance(target, np.ndarray) else target.get()
        check_targets(logits, host)
        return target if not isinstance(target, np.ndarray) else self.from_numpy(host)

    def cross_entropy_forward(self, logits, target, reduction):
        check_reduction(reduction)
        _check_f32(logits, "input")
        target = self._targets(logits, target)
        n, c = logits.shape
        logp = self._softmax(logits, 1)
        nll = self.empty((n,))
        self._launch("loss", "nll_gather", n, self._ptr(nll), self._ptr(logp), self._ptr(target),
                     np.int64(n), np.int64(c))
        return self._reduce(nll, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        check_reduction(reduction)
        target = self._targets(logits, target)
        n, c = logits.shape
        g = self._softmax(logits, 0)
        mode = {"none": 0, "sum": 1, "mean": 2}[reduction]
        self._launch("loss", "cross_entropy_backward", n * c, self._ptr(g), self._ptr(target),
                     self._ptr(gy), np.int64(n), np.int64(c), np.int32(mode))
        return g
