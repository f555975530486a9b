"""The cuda backend: optimizer steps (SGD, Adam/AdamW) in place."""

from __future__ import annotations

import numpy as np

from .runtime import _check_f32


class OptimKernels:
    """The cuda backend's optimizer steps (SGD, Adam/AdamW) in place."""

    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                 nesterov, first_step):
        _check_f32(param, "param")
        buf = momentum_buffer if momentum else None
        self._launch("optim", "sgd_step", param.size, self._ptr(param), self._ptr(grad), self._ptr(buf),
                     np.int64(param.size), np.float32(lr), np.float32(momentum),
                     np.float32(dampening), np.float32(weight_decay), np.int32(bool(nesterov)),
                     np.int32(bool(first_step)))

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        _check_f32(param, "param")
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        decay_param = 1 - lr * weight_decay if decoupled else 1.0
        decay_grad = 0.0 if decoupled else weight_decay
        self._launch("optim", "adam_step", param.size, self._ptr(param), self._ptr(grad),
                     self._ptr(exp_avg), self._ptr(exp_avg_sq), np.int64(param.size),
                     np.float32(lr / bias1), np.float32(beta1), np.float32(beta2),
                     np.float32(eps), np.float32(1.0 / bias2), np.float32(decay_param),
                     np.float32(decay_grad))
