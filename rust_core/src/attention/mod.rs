//! Attention: scaled dot-product attention with the flash algorithm (`flash.rs`).
//!
//! Arrays are row-major: q (B, H, Lq, D), k (B, Hk, Lk, D), v (B, Hk, Lk, Dv),
//! out (B, H, Lq, Dv), lse (B, H, Lq); query head h reads key/value head h / (H / Hk)
//! (grouped-query; multi-query when Hk = 1). The optional additive mask is
//! (Bm, Hm, Lq, Lk) with Bm in {1, B} and Hm in {1, H}. Causal hides key j from query i
//! when j > i. A row whose keys are all hidden gives out = 0, lse = -inf and zero
//! gradients (PyTorch's SDPA gives 0 there too). A row with a NaN or +inf score is NaN
//! in out, lse and its gradients (PyTorch's softmax); hidden keys get weight 0 even
//! there. Semantics: `backends/_attention.py`.

pub mod flash;

use crate::error::Result;
use crate::shape_err;

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    pub b: usize,
    pub h: usize,
    pub hk: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
    /// the mask has a batch axis of size B (else 1)
    pub mask_batch: bool,
    /// the mask has a head axis of size H (else 1)
    pub mask_heads: bool,
}

impl AttnDims {
    pub(crate) fn check(&self, q: usize, k: usize, v: usize, mask: Option<usize>) -> Result<()> {
        let d = *self;
        if d.hk == 0 || !d.h.is_multiple_of(d.hk) {
            return shape_err!("k: expected a number of heads dividing q's {}, got {}", d.h, d.hk);
        }
        let want = [
            ("q", q, d.b * d.h * d.lq * d.d),
            ("k", k, d.b * d.hk * d.lk * d.d),
            ("v", v, d.b * d.hk * d.lk * d.dv),
        ];
        for (name, got, n) in want {
            if got != n {
                return shape_err!("{name}: expected {n} elements for sizes {d:?}, got {got}");
            }
        }
        if let Some(m) = mask {
            let n = self.mask_len();
            if m != n {
                return shape_err!("mask: expected {n} elements for sizes {d:?}, got {m}");
            }
        }
        Ok(())
    }

    pub(crate) fn mask_len(&self) -> usize {
        (if self.mask_batch { self.b } else { 1 }) * (if self.mask_heads { self.h } else { 1 }) * self.lq * self.lk
    }

    /// The offset of the (Lq, Lk) mask block of batch b, head h.
    pub(crate) fn mask_offset(&self, b: usize, h: usize) -> usize {
        let hm = if self.mask_heads { self.h } else { 1 };
        let bi = if self.mask_batch { b } else { 0 };
        let hi = if self.mask_heads { h } else { 0 };
        (bi * hm + hi) * self.lq * self.lk
    }
}
