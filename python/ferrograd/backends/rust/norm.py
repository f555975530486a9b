"""The rust backend: normalization kernels (batch, layer, group norm)."""

from __future__ import annotations

import numpy as np

from .._validate import (
    check_batch_norm, check_batch_norm_backward, check_eps, check_group_norm, check_layer_norm
)
from ._extension import _core
from .arrays import _in_place


class NormKernels:
    """The rust backend's normalization kernels (batch, layer, group norm)."""

    # rust_core/src/ops/norm.rs: rows in parallel (layer/group norm), channels then
    # samples in parallel (batch norm); blocked two-pass statistics merged with Chan's
    # formula. Arguments are checked here first so errors read like numpy's.
    def layer_norm_forward(self, x, weight, bias, normalized_ndim, eps):
        check_layer_norm(x, weight, bias, normalized_ndim)
        check_eps(eps)
        return _core.layer_norm_forward(x, weight, bias, int(normalized_ndim), float(eps))

    def layer_norm_backward(self, x, weight, mean, rstd, gy, normalized_ndim):
        check_layer_norm(x, weight, None, normalized_ndim)
        return _core.layer_norm_backward(x, weight, mean, rstd, gy, int(normalized_ndim))

    def group_norm_forward(self, x, weight, bias, num_groups, eps):
        check_group_norm(x, weight, bias, num_groups)
        check_eps(eps)
        return _core.group_norm_forward(x, weight, bias, int(num_groups), float(eps))

    def group_norm_backward(self, x, weight, mean, rstd, gy, num_groups):
        check_group_norm(x, weight, None, num_groups)
        return _core.group_norm_backward(x, weight, mean, rstd, gy, int(num_groups))

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        check_batch_norm(x, weight, bias, running_mean, running_var, training)
        check_eps(eps)
        if not training:
            # eval mode only reads the running statistics: read-only ones are fine, as on
            # numpy (the binding takes them mutably, so those get a copy of C floats)
            running_mean, running_var = (
                a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a
                for a in (running_mean, running_var))
        with _in_place(running_mean, running_var) as (rm, rv):
            return _core.batch_norm_forward(x, weight, bias, rm, rv, bool(training),
                                            float(momentum), float(eps))

    def batch_norm_backward(self, x, weight, mean, rstd, gy, training):
        check_batch_norm_backward(x, weight, mean, rstd)
        return _core.batch_norm_backward(x, weight, mean, rstd, gy, bool(training))
