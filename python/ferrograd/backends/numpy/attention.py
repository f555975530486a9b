"""The numpy backend: scaled dot-product attention."""

from __future__ import annotations

from .. import _attention


class AttentionKernels:
    """The numpy backend's scaled dot-product attention."""

    # the plain algorithm (whole score matrix): the oracle. _attention.tiled_* is the
    # readable flash version the tests compare with it.
    def attention_forward(self, q, k, v, mask, scale, is_causal):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        return _attention.plain_forward(q, k, v, mask, float(scale), bool(is_causal))

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        return _attention.plain_backward(q, k, v, mask, float(scale), bool(is_causal), out, lse, gout)
