"""The rust backend: scaled dot-product attention."""

from __future__ import annotations

from .. import _attention
from ._extension import _core


class AttentionKernels:
    """The rust backend's scaled dot-product attention."""

    # flash attention (rust_core/src/attention/flash.rs): tiles in parallel over batch x heads
    def attention_forward(self, q, k, v, mask, scale, is_causal):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        return _core.attention_forward(q, k, v, mask, float(scale), bool(is_causal))

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        return _core.attention_backward(q, k, v, mask, float(scale), bool(is_causal), out, lse, gout)
