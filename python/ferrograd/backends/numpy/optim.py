"""The numpy backend: optimizer steps (SGD, Adam/AdamW) in place."""

from __future__ import annotations

import numpy as np


class OptimKernels:
    """The numpy backend's optimizer steps (SGD, Adam/AdamW) in place."""

    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening,
                 weight_decay, nesterov, first_step):
        g = grad + weight_decay * param if weight_decay else grad
        if momentum:
            if first_step:
                momentum_buffer[...] = g
            else:
                momentum_buffer *= momentum
                momentum_buffer += (1 - dampening) * g
            g = g + momentum * momentum_buffer if nesterov else momentum_buffer
        param -= lr * g

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        if decoupled:
            param *= 1 - lr * weight_decay
            g = grad
        else:
            g = grad + weight_decay * param if weight_decay else grad
        exp_avg *= beta1
        exp_avg += (1 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        denom = np.sqrt(exp_avg_sq / bias2) + eps
        param -= (lr / bias1) * exp_avg / denom
