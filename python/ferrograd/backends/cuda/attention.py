"""The cuda backend: scaled dot-product attention."""

from __future__ import annotations

import math

import numpy as np

from ..._determinism import are_deterministic_algorithms_enabled
from .. import _attention
from . import matmul as matmul_flags  # allow_tf32 is read at each call
from .runtime import _F32, _check_f32


class AttentionKernels:
    """The cuda backend's scaled dot-product attention."""

    # attention.cu: flash attention. Forward for head dims 32 and 64: 128-row query tiles
    # per block (attention_forward_wide_*), or on tensor cores when TF32 is allowed
    # (attention_forward_tf32_*). Backward for head dim 64: 64-key tiles per block
    # (attention_backward_wide_d64, or attention_backward_tf32_d64); other head dims (up to 128) and the backward:
    # one thread per query (or key) row, the other side staged tile by tile in shared memory.
    _ATT_THREADS = 64

    def _attention_args(self, q, k, v, mask, scale, is_causal):
        b, h, hk, lq, lk, d, dv = _attention.check_attention(q, k, v, mask, scale, is_causal)
        _check_f32(q, "q")
        for name, n in (("q", d), ("v", dv)):
            if n > 128:
                raise ValueError(f"{name}: the cuda attention kernel takes head dims up to 128, got {n}")
        if b * max(h, hk) > 65535:
            raise ValueError(f"q: the cuda attention kernel takes batch * heads up to 65535, got {b * h}")
        msb = msh = 0
        if mask is not None:
            msb = int(mask.shape[1]) * lq * lk if mask.shape[0] != 1 else 0
            msh = lq * lk if mask.shape[1] != 1 else 0
        tail = (np.int32(h), np.int32(hk), np.int32(lq), np.int32(lk), np.int32(d), np.int32(dv),
                np.float32(scale), np.int32(bool(is_causal)))
        return (b, h, hk, lq, lk, d, dv), (self._ptr(mask), np.int64(msb), np.int64(msh)), tail

    @staticmethod
    def _attention_suffix(d: int, dv: int) -> str:
        """The kernels specialized for D = Dv = 32 / 64 (per-row arrays in registers)."""
        return f"_d{d}" if d == dv and d in (32, 64) else ""

    def _attention_wide(self, d: int):
        """attention_forward_wide_d{d}, prepared, with the dynamic shared memory it needs
        (Q^T, K^T, V and P^T tiles: 96 KB for d = 64, past the 48 KB default) allowed."""
        key = ("attention", f"wide{d}", "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("attention", f"attention_forward_wide_d{d}", "PPPPPPqqiiiifi")
            smem = 4 * (d * 128 + d * 64 + 64 * d + 64 * 128)
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = (f, smem)
        return hit

    def attention_forward(self, q, k, v, mask, scale, is_causal):
        (b, h, hk, lq, lk, d, dv), margs, tail = self._attention_args(q, k, v, mask, scale, is_causal)
        out = self.empty((b, h, lq, dv))
        lse = self.empty((b, h, lq))
        if b * h * lq == 0:
            return out, lse
        if lk == 0:  # no key: every row is hidden
            return self.full(out.shape, 0.0, _F32), self.full(lse.shape, -math.inf, _F32)
        if dv == 0:  # no value column: run with one zero column to get lse
            _, lse = self.attention_forward(q, k, self.full(tuple(v.shape[:3]) + (1,), 0.0, _F32),
                                            mask, scale, is_causal)
            return out, lse

        if d == dv and d in (32, 64) and matmul_flags.allow_tf32:
            # tensor cores (TF32), only when allowed: 64 query rows per block of 4 warps
            self._prepared("attention", f"attention_forward_tf32_d{d}", "PPPPPPqqiiiifi").prepared_call(
                ((lq + 63) // 64, b * h), (128, 1, 1), self._ptr(out), self._ptr(lse), self._ptr(q),
                self._ptr(k), self._ptr(v), *margs, h, hk, lq, lk, float(tail[6]), int(tail[7]))
            return out, lse
        if d == dv and d in (32, 64):
            # the wide kernel: 128 query rows per block of 128 threads (see attention.cu)
            f, smem = self._attention_wide(d)
            f.prepared_call(((lq + 127) // 128, b * h), (128, 1, 1), self._ptr(out), self._ptr(lse),
                            self._ptr(q), self._ptr(k), self._ptr(v), *margs, h, hk, lq, lk,
                            float(tail[6]), int(tail[7]), shared_size=smem)
            return out, lse
        t = self._ATT_THREADS
        self._fn("attention", "attention_forward" + self._attention_suffix(d, dv))(
            self._ptr(out), self._ptr(lse), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *tail,
            block=(t, 1, 1), grid=((lq + t - 1) // t, b * h))
        return out, lse

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        (b, h, hk, lq, lk, d, dv), margs, tail = self._attention_args(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        if b * h * lq == 0 or lk == 0 or dv == 0:  # nothing flows back
            return (self.full(q.shape, 0.0, _F32), self.full(k.shape, 0.0, _F32),
                    self.full(v.shape, 0.0, _F32))
        # the d=64 kernels sum dQ with float atomics (not deterministic): deterministic
        # mode takes the row kernels below instead (see ferrograd/_determinism.py)
        if d == dv == 64 and not are_deterministic_algorithms_enabled():
            return self._attention_backward_wide(q, k, v, margs, tail, lse, out, gout)
        gq, gk, gv = self.empty(q.shape), self.empty(k.shape), self.empty(v.shape)
        t = self._ATT_THREADS
        saved = (self._ptr(out), self._ptr(lse), self._ptr(gout))
        suffix = self._attention_suffix(d, dv)
        self._fn("attention", "attention_backward_dq" + suffix)(
            self._ptr(gq), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *saved, *tail,
            block=(t, 1, 1), grid=((lq + t - 1) // t, b * h))
        self._fn("attention", "attention_backward_dkdv" + suffix)(
            self._ptr(gk), self._ptr(gv), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *saved,
            *tail, block=(t, 1, 1), grid=((lk + t - 1) // t, b * hk))
        return gq, gk, gv

    def _attention_backward_wide(self, q, k, v, margs, tail, lse, out, gout):
        """attention_backward_wide_d64 (or attention_backward_tf32_d64 on tensor cores when
        TF32 is allowed): delta = rowsum(gout * out) first, then one block per 64 keys of a
        key/value head computes gk and gv and adds into gq (zeroed)."""

        b, h, lq, _ = (int(s) for s in q.shape)
        hk, lk = int(k.shape[1]), int(k.shape[2])
        delta = self.empty((b, h, lq))
        self._launch("attention", "attention_backward_rowdot", b * h * lq, self._ptr(delta), self._ptr(out),
                     self._ptr(gout), np.int64(b * h * lq), np.int32(64))
        gq = self.full(q.shape, 0.0, _F32)
        gk, gv = self.empty(k.shape), self.empty(v.shape)
        tf32 = bool(matmul_flags.allow_tf32)
        name = "attention_backward_tf32_d64" if tf32 else "attention_backward_wide_d64"
        key = ("attention", name, "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("attention", name, "PPPPPPPqqPPPiiiifi")
            if tf32:  # Q, dO twice (rows of 80 and 68), K (72), dS (68), lse, delta
                smem = 4 * (2 * 64 * 80 + 3 * 64 * 68 + 64 * 72 + 2 * 64)
            else:  # K, V, Q, dO as [d][row] and [row][d] but V, P^T and dS^T, dS, lse, delta
                smem = 4 * (7 * 64 * 64 + 2 * 64 * 68 + 64 * 64 + 2 * 64)
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = (f, smem)
        f, smem = hit
        f.prepared_call(((lk + 63) // 64, b * hk), (128 if tf32 else 256, 1, 1), self._ptr(gq), self._ptr(gk), self._ptr(gv),
                        self._ptr(q), self._ptr(k), self._ptr(v), *margs, self._ptr(lse), self._ptr(delta),
                        self._ptr(gout), h, hk, lq, lk, float(tail[6]), int(tail[7]), shared_size=smem)
        return gq, gk, gv
