"""The rust backend: optimizer steps (SGD, Adam/AdamW) in place."""

from __future__ import annotations

from ._extension import _core
from .arrays import _in_place


class OptimKernels:
    """The rust backend's optimizer steps (SGD, Adam/AdamW) in place."""

    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening,
                 weight_decay, nesterov, first_step):
        with _in_place(param, momentum_buffer) as (p, buf):
            _core.sgd_step(p, grad, buf, float(lr), float(momentum), float(dampening),
                           float(weight_decay), bool(nesterov), bool(first_step))

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        with _in_place(param, exp_avg, exp_avg_sq) as (p, m, v):
            _core.adam_step(p, grad, m, v, int(step), float(lr), float(beta1), float(beta2),
                            float(eps), float(weight_decay), bool(decoupled))
