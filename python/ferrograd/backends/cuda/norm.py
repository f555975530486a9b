"""The cuda backend: normalization kernels (batch, layer, group norm)."""

from __future__ import annotations

import numpy as np

from .._validate import (
    check_batch_norm, check_batch_norm_backward, check_eps, check_group_norm, check_layer_norm,
    check_same_shape
)
from .runtime import _F32, _check_f32


class NormKernels:
    """The cuda backend's normalization kernels (batch, layer, group norm)."""

    # norm.cu. layer_norm and group_norm run one block per row (n, group) with the row's
    # float4s cached in registers when it fits; batch_norm reduces each channel with
    # (channel, chunk) blocks, merges the partial moments per channel, then applies an
    # elementwise float4 pass. See norm.cu for the numerics.
    def _rows_forward(self, x, weight, bias, n, c, hw, groups, eps):
        rows, cg = n * groups, c // groups
        L = cg * hw
        y, mean, rstd = self.empty(x.shape), self.empty((rows,)), self.empty((rows,))
        if rows == 0 or L == 0:
            if rows:
                self._launch("elementwise", "fill", rows, self._ptr(mean), np.float32(np.nan), np.int64(rows))
                self._launch("elementwise", "fill", rows, self._ptr(rstd), np.float32(np.nan), np.int64(rows))
            return y, mean, rstd
        if L % 4 == 0:
            fit = self._row_cache(L // 4)
            name, block = (f"rows_forward_vec_c{fit[0]}", fit[1]) if fit else ("rows_forward_vec", 512)
        else:
            name, block = "rows_forward_scalar", min(512, max(32, (L // 4 + 31) // 32 * 32))
        self._fn("norm", name)(self._ptr(y), self._ptr(mean), self._ptr(rstd), self._ptr(x),
                               self._ptr(weight), self._ptr(bias), np.int64(L), np.int64(groups),
                               np.int64(cg), np.int64(hw), np.float32(eps),
                               block=(block, 1, 1), grid=(rows, 1))
        return y, mean, rstd

    def _rows_backward_gx(self, x, weight, mean, rstd, gy, n, c, hw, groups):
        rows, cg = n * groups, c // groups
        L = cg * hw
        gx = self.empty(x.shape)
        if rows and L:
            vec = L % 4 == 0
            block = min(512, max(32, ((L // 4 if vec else L) // 4 + 31) // 32 * 32))
            self._fn("norm", "rows_backward")(self._ptr(gx), self._ptr(x), self._ptr(weight),
                                              self._ptr(mean), self._ptr(rstd), self._ptr(gy),
                                              np.int64(L), np.int64(groups), np.int64(cg),
                                              np.int64(hw), np.int32(vec),
                                              block=(block, 1, 1), grid=(rows, 1))
        return gx

    def layer_norm_forward(self, x, weight, bias, normalized_ndim, eps):
        check_layer_norm(x, weight, bias, normalized_ndim)
        check_eps(eps)
        _check_f32(x, "input")
        lead = tuple(x.shape[:len(x.shape) - normalized_ndim])
        m = int(np.prod(x.shape[len(x.shape) - normalized_ndim:], dtype=np.int64))
        rows = int(np.prod(lead, dtype=np.int64))
        y, mean, rstd = self._rows_forward(x, weight, bias, rows, m, 1, 1, eps)
        return y, mean.reshape(lead), rstd.reshape(lead)

    @staticmethod
    def _row_cache(n4: int):
        """(cache, block) of a register-cached row of n4 float4s, or None if it is too long."""
        for cache in (1, 2, 4, 8):
            b = max(32, ((-(-n4 // cache)) + 31) // 32 * 32)
            if b <= 256 or (cache == 8 and b <= 512):
                return cache, b
        return None

    def layer_norm_backward(self, x, weight, mean, rstd, gy, normalized_ndim):
        check_layer_norm(x, weight, None, normalized_ndim)
        check_same_shape(x, gy, "input", "gy")
        pshape = tuple(x.shape[len(x.shape) - normalized_ndim:])
        m = int(np.prod(pshape, dtype=np.int64))
        rows = x.size // m if m else 0
        fit = self._row_cache(m // 4) if m % 4 == 0 else None
        if weight is not None and rows and fit and fit[0] <= 4:
            # one fused pass: gx and per-block parameter partials, then a small reduction
            # (at most 4 cached float4 per thread: x, gy, weight and two partials stay in
            # registers at 256 threads)
            cache, block = fit
            p = min(rows, 2 * (self._max_blocks // 32))
            gx, gw, gb = self.empty(x.shape), self.empty(pshape), self.empty(pshape)
            partw, partb = self.empty((p, m)), self.empty((p, m))
            self._fn("norm", f"ln_backward_fused_c{cache}")(
                self._ptr(gx), self._ptr(partw), self._ptr(partb), self._ptr(x), self._ptr(weight),
                self._ptr(mean), self._ptr(rstd), self._ptr(gy), np.int64(rows), np.int64(m),
                block=(block, 1, 1), grid=(p, 1))
            self._fn("norm", "ln_param_reduce")(self._ptr(gw), self._ptr(gb), self._ptr(partw),
                                                self._ptr(partb), np.int64(p), np.int64(m),
                                                block=(32, 8, 1), grid=((m + 31) // 32, 1))
            return gx, gw, gb
        gx = self._rows_backward_gx(x, weight, mean, rstd, gy, rows, m, 1, 1)
        if weight is None:
            return gx, None, None
        gw, gb = self.empty(pshape), self.empty(pshape)
        if rows == 0:
            return gx, self.full(pshape, 0.0, _F32), self.full(pshape, 0.0, _F32)
        # rows too long for registers (or of odd length): column partial sums over row chunks
        chunk = max(64, -(-rows // 128))
        chunks = -(-rows // chunk)
        part = self.empty((chunks, m, 2))
        self._fn("norm", "ln_param_partials")(self._ptr(part), self._ptr(x), self._ptr(mean),
                                              self._ptr(rstd), self._ptr(gy), np.int64(rows),
                                              np.int64(m), np.int64(chunk),
                                              block=(32, 8, 1), grid=((m + 31) // 32, chunks))
        self._launch("norm", "ln_param_finish", m, self._ptr(gw), self._ptr(gb), self._ptr(part),
                     np.int64(chunks), np.int64(m))
        return gx, gw, gb

    @staticmethod
    def _nc(x):
        return int(x.shape[0]), int(x.shape[1]), int(np.prod(x.shape[2:], dtype=np.int64))

    def group_norm_forward(self, x, weight, bias, num_groups, eps):
        check_group_norm(x, weight, bias, num_groups)
        check_eps(eps)
        _check_f32(x, "input")
        n, c, hw = self._nc(x)
        y, mean, rstd = self._rows_forward(x, weight, bias, n, c, hw, int(num_groups), eps)
        return y, mean.reshape(n, num_groups), rstd.reshape(n, num_groups)

    def group_norm_backward(self, x, weight, mean, rstd, gy, num_groups):
        check_group_norm(x, weight, None, num_groups)
        check_same_shape(x, gy, "input", "gy")
        n, c, hw = self._nc(x)
        g = int(num_groups)
        gx = self._rows_backward_gx(x, weight, mean, rstd, gy, n, c, hw, g)
        if weight is None:
            return gx, None, None
        if n * c * hw == 0:
            return gx, self.full((c,), 0.0, _F32), self.full((c,), 0.0, _F32)
        sums = self.empty((n, c, 2))
        block = min(256, max(32, (hw // 4 + 31) // 32 * 32))
        self._fn("norm", "gn_channel_sums")(self._ptr(sums), self._ptr(x), self._ptr(mean),
                                            self._ptr(gy), np.int64(c), np.int64(c // g),
                                            np.int64(hw), block=(block, 1, 1), grid=(n * c, 1))
        gw, gb = self.empty((c,)), self.empty((c,))
        self._launch("norm", "gn_param_finish", c, self._ptr(gw), self._ptr(gb), self._ptr(sums),
                     self._ptr(rstd), np.int64(n), np.int64(c), np.int64(c // g))
        return gx, gw, gb

    def _bn_split(self, n, c, hw):
        """(vec, HW / V, chunk, S): V-vectors per channel split into S chunks so that
        about 2 * max_blocks blocks share a reduction."""
        vec = hw % 4 == 0
        hwv = hw // 4 if vec else hw
        total = n * hwv
        s = max(1, min(65535, -(-2 * self._max_blocks // max(c, 1)), -(-total // 1024)))
        chunk = max(1, -(-total // s))
        s = max(1, -(-total // chunk))
        return vec, hwv, chunk, s

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        check_batch_norm(x, weight, bias, running_mean, running_var, training)
        check_eps(eps)
        _check_f32(x, "input")
        n, c, hw = self._nc(x)
        y, mean, rstd = self.empty(x.shape), self.empty((c,)), self.empty((c,))
        if c == 0:
            return y, mean, rstd
        vec, hwv, chunk, s = self._bn_split(n, c, hw)
        if training:
            part = self.empty((c, s, 3))
            self._fn("norm", "bn_partial_stats")(self._ptr(part), self._ptr(x), np.int64(n),
                                                 np.int64(c), np.int64(hw), np.int64(chunk),
                                                 np.int32(vec), block=(256, 1, 1), grid=(c, s))
            self._launch("norm", "bn_finish_stats", c, self._ptr(mean), self._ptr(rstd),
                         self._ptr(running_mean), self._ptr(running_var), self._ptr(part),
                         np.int64(c), np.int64(s), np.float32(momentum), np.float32(eps))
        else:
            self._launch("norm", "bn_eval_stats", c, self._ptr(mean), self._ptr(rstd),
                         self._ptr(running_mean), self._ptr(running_var), np.int64(c),
                         np.float32(eps))
        total_v = x.size // 4 if vec else x.size
        self._launch("norm", "bn_apply", total_v, self._ptr(y), self._ptr(x), self._ptr(mean),
                     self._ptr(rstd), self._ptr(weight), self._ptr(bias), np.int64(total_v),
                     np.int64(c), np.int64(hwv), np.int32(vec))
        return y, mean, rstd

    def batch_norm_backward(self, x, weight, mean, rstd, gy, training):
        check_batch_norm_backward(x, weight, mean, rstd)
        check_same_shape(x, gy, "input", "gy")
        n, c, hw = self._nc(x)
        gx = self.empty(x.shape)
        if c == 0:
            return gx, (None if weight is None else self.empty((0,))), (None if weight is None else self.empty((0,)))
        vec, hwv, chunk, s = self._bn_split(n, c, hw)
        need_sums = (training or weight is not None) and x.size > 0
        part = None
        if need_sums:
            part = self.empty((c, s, 2))
            self._fn("norm", "bn_partial_grads")(self._ptr(part), self._ptr(x), self._ptr(gy),
                                                 self._ptr(mean), np.int64(n), np.int64(c),
                                                 np.int64(hw), np.int64(chunk), np.int32(vec),
                                                 block=(256, 1, 1), grid=(c, s))
        coef = self.empty((c, 3))
        gw = self.empty((c,)) if weight is not None else None
        gb = self.empty((c,)) if weight is not None else None
        count = n * hw
        self._launch("norm", "bn_finish_grads", c, self._ptr(coef), self._ptr(gw), self._ptr(gb),
                     self._ptr(part), self._ptr(weight), self._ptr(rstd), np.int64(c),
                     np.int64(s if need_sums else 0), np.float32(1.0 / max(count, 1)),
                     np.int32(bool(training)))
        total_v = x.size // 4 if vec else x.size
        self._launch("norm", "bn_backward_apply", total_v, self._ptr(gx), self._ptr(x),
                     self._ptr(gy), self._ptr(mean), self._ptr(coef), np.int64(total_v),
                     np.int64(c), np.int64(hwv), np.int32(vec))
        return gx, gw, gb
