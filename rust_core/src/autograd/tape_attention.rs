//! Attention on the native tape: multi-head self-attention as torch.nn.MultiheadAttention
//! computes it (one fused input projection, heads split, scaled dot-product attention,
//! heads merged, output projection), from four ops:
//!
//! * `slice_last`: columns of the last axis (q, k, v out of the fused projection);
//! * `heads`: (N, L, H D) <-> (N, H, L, D);
//! * `flash_attention`: `attention::flash` forward and backward (no attention dropout,
//!   the Python engine's path then too);
//! * `dropout_attention`: the composed path the Python engine takes with attention
//!   dropout (scores by batched GEMM, `ops::softmax`, Philox dropout of the weights at the
//!   caller's `(seed, offset)`, GEMM with v), so the same seed drops the same weights.

use super::tape::{accumulate, Op, Tape, Var};
use crate::attention::{flash, AttnDims};
use crate::error::Result;
use crate::ops::{dropout, linear, softmax};
use crate::real::Real;
use crate::{shape_err, value_err};

/// Columns [start, start + width) of the last axis (of `total`).
pub(super) struct SliceLastOp {
    pub(super) x: Var,
    start: usize,
    width: usize,
    total: usize,
}

/// (N, L, H, D) -> (N, H, L, D) when `split`, the inverse otherwise.
pub(super) struct HeadsOp {
    pub(super) x: Var,
    dims: [usize; 4],
    split: bool,
}

/// softmax(scale q k^T) v by the flash kernels; the output is the entry's value.
pub(super) struct FlashAttentionOp<T> {
    q: Var,
    k: Var,
    v: Var,
    dims: AttnDims,
    scale: T,
    lse: Vec<T>,
}

/// dropout(softmax(scale q k^T)) v with the weights materialized.
pub(super) struct DropoutAttentionOp<T> {
    q: Var,
    k: Var,
    v: Var,
    /// batch x heads, query and key lengths, head size
    bh: usize,
    lq: usize,
    lk: usize,
    d: usize,
    scale: T,
    p: f64,
    seed: u64,
    offset: u64,
    /// softmax weights before dropout (BH, Lq, Lk)
    probs: Vec<T>,
}

/// (N, L, H, D) -> (N, H, L, D) (`split`) or back, as flat row-major arrays.
fn permute_heads<T: Real>(x: &[T], [n, l, h, d]: [usize; 4], split: bool) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len()];
    for b in 0..n {
        for t in 0..l {
            for hh in 0..h {
                let a = ((b * l + t) * h + hh) * d; // (N, L, H, D)
                let c = ((b * h + hh) * l + t) * d; // (N, H, L, D)
                let (src, dst) = if split { (a, c) } else { (c, a) };
                y[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    y
}

impl SliceLastOp {
    pub(super) fn backward<T: Real>(&self, g: &[T], grads: &mut [Option<Vec<T>>]) {
        let rows = g.len().checked_div(self.width).unwrap_or(0);
        let mut gx = vec![T::ZERO; rows * self.total];
        for (r, gr) in g.chunks_exact(self.width.max(1)).take(rows).enumerate() {
            gx[r * self.total + self.start..r * self.total + self.start + self.width].copy_from_slice(gr);
        }
        accumulate(grads, self.x, gx);
    }
}

impl HeadsOp {
    pub(super) fn backward<T: Real>(&self, g: &[T], grads: &mut [Option<Vec<T>>]) {
        accumulate(grads, self.x, permute_heads(g, self.dims, !self.split));
    }
}

impl<T: Real> FlashAttentionOp<T> {
    pub(super) fn inputs(&self) -> impl Iterator<Item = Var> {
        [self.q, self.k, self.v].into_iter()
    }

    pub(super) fn backward(&self, tape: &Tape<T>, out: &[T], g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        let val = |v: Var| tape.entries[v.index()].value.as_slice();
        let (gq, gk, gv) = flash::backward(val(self.q), val(self.k), val(self.v), None, self.dims, self.scale, false, out, &self.lse, g)?;
        accumulate(grads, self.q, gq);
        accumulate(grads, self.k, gk);
        accumulate(grads, self.v, gv);
        Ok(())
    }
}

impl<T: Real> DropoutAttentionOp<T> {
    pub(super) fn inputs(&self) -> impl Iterator<Item = Var> {
        [self.q, self.k, self.v].into_iter()
    }

    /// The backward of out = Pd v, Pd = dropout(P), P = softmax(S), S = scale q k^T, in
    /// the order the Python engine's ops run it.
    pub(super) fn backward(&self, tape: &Tape<T>, g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        let val = |v: Var| tape.entries[v.index()].value.as_slice();
        let (q, k, v) = (val(self.q), val(self.k), val(self.v));
        let (bh, lq, lk, d) = (self.bh, self.lq, self.lk, self.d);
        let pd = dropout::dropout_apply(&self.probs, self.p, self.seed, self.offset)?;
        let (g_pd, _, _) = linear::matmul(g, (lq, d), v, (lk, d), bh, false, true)?;
        let (gv, _, _) = linear::matmul(&pd, (lq, lk), g, (lq, d), bh, true, false)?;
        let g_p = dropout::dropout_apply(&g_pd, self.p, self.seed, self.offset)?;
        let mut g_s = softmax::softmax_backward(&self.probs, &g_p, lk)?;
        g_s.iter_mut().for_each(|x| *x *= self.scale);
        let (gq, _, _) = linear::matmul(&g_s, (lq, lk), k, (lk, d), bh, false, false)?;
        let (gk, _, _) = linear::matmul(&g_s, (lq, lk), q, (lq, d), bh, true, false)?;
        accumulate(grads, self.q, gq);
        accumulate(grads, self.k, gk);
        accumulate(grads, self.v, gv);
        Ok(())
    }
}

impl<T: Real> Tape<T> {
    /// Columns [start, start + width) of the last axis.
    pub fn slice_last(&mut self, x: Var, start: usize, width: usize) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        let Some(&total) = xe.shape.last() else {
            return shape_err!("input: expected at least one axis, got a scalar");
        };
        if start + width > total {
            return value_err!("start: columns [{start}, {}) exceed the last axis of {:?}", start + width, xe.shape);
        }
        let mut y = Vec::with_capacity(xe.value.len() / total.max(1) * width);
        for r in xe.value.chunks_exact(total.max(1)) {
            y.extend_from_slice(&r[start..start + width]);
        }
        let mut shape = xe.shape.clone();
        *shape.last_mut().expect("checked") = width;
        Ok(self.push(Op::SliceLast(SliceLastOp { x, start, width, total }), y, shape))
    }

    /// (N, L, H * D) -> (N, H, L, D) with `split`; (N, H, L, D) -> (N, L, H * D) without.
    pub fn heads(&mut self, x: Var, heads: usize, split: bool) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        let s = xe.shape.as_slice();
        let dims = match (split, s) {
            (true, &[n, l, e]) if heads > 0 && e % heads == 0 => [n, l, heads, e / heads],
            (false, &[n, h, l, d]) if h == heads => [n, l, h, d],
            _ => return shape_err!("input: expected (N, L, {heads} * D) to split or (N, {heads}, L, D) to merge, got {s:?}"),
        };
        let y = permute_heads(&xe.value, dims, split);
        let [n, l, h, d] = dims;
        let shape = if split { vec![n, h, l, d] } else { vec![n, l, h * d] };
        Ok(self.push(Op::Heads(HeadsOp { x, dims, split }), y, shape))
    }

    /// The (BH, Lq, Lk, D) sizes of q (B, H, Lq, D) against k, v (B, H, Lk, D).
    fn attention_dims(&self, q: Var, k: Var, v: Var) -> Result<AttnDims> {
        let (qs, ks, vs) = (&self.entry(q, "query")?.shape, &self.entry(k, "key")?.shape, &self.entry(v, "value")?.shape);
        match (qs.as_slice(), ks.as_slice()) {
            (&[b, h, lq, d], &[b2, h2, lk, d2]) if b == b2 && h == h2 && d == d2 && *ks == *vs => {
                Ok(AttnDims { b, h, hk: h, lq, lk, d, dv: d, mask_batch: false, mask_heads: false })
            }
            _ => shape_err!("key: expected q (B, H, Lq, D) and k, v (B, H, Lk, D), got {qs:?}, {ks:?} and {vs:?}"),
        }
    }

    /// softmax(q k^T / sqrt(D)) v on (B, H, L, D) values by the flash kernels.
    pub fn flash_attention(&mut self, q: Var, k: Var, v: Var) -> Result<Var> {
        let dims = self.attention_dims(q, k, v)?;
        let scale = T::c(1.0 / (dims.d.max(1) as f64).sqrt());
        let val = |x: Var| self.entries[x.index()].value.as_slice();
        let (out, lse) = flash::forward(val(q), val(k), val(v), None, dims, scale, false)?;
        let shape = vec![dims.b, dims.h, dims.lq, dims.dv];
        Ok(self.push(Op::FlashAttention(FlashAttentionOp { q, k, v, dims, scale, lse }), out, shape))
    }

    /// dropout(softmax(q k^T / sqrt(D))) v on (B, H, L, D) values, the weights dropped
    /// with probability `p` by the stream at `(seed, offset)` (element order (B, H, Lq, Lk)).
    pub fn dropout_attention(&mut self, q: Var, k: Var, v: Var, p: f64, seed: u64, offset: u64) -> Result<Var> {
        let dims = self.attention_dims(q, k, v)?;
        let (bh, lq, lk, d) = (dims.b * dims.h, dims.lq, dims.lk, dims.d);
        let scale = T::c(1.0 / (d.max(1) as f64).sqrt());
        let val = |x: Var| self.entries[x.index()].value.as_slice();
        let (mut s, _, _) = linear::matmul(val(q), (lq, d), val(k), (lk, d), bh, false, true)?;
        s.iter_mut().for_each(|x| *x *= scale);
        let probs = softmax::softmax_forward(&s, lk.max(1))?;
        let pd = dropout::dropout_apply(&probs, p, seed, offset)?;
        let (out, _, _) = linear::matmul(&pd, (lq, lk), val(v), (lk, d), bh, false, false)?;
        let op = DropoutAttentionOp { q, k, v, bh, lq, lk, d, scale, p, seed, offset, probs };
        Ok(self.push(Op::DropoutAttention(op), out, vec![dims.b, dims.h, lq, d]))
    }

    /// torch.nn.MultiheadAttention(x, x, x) on x (N, L, E) (batch first), no masks: the
    /// fused projection `w_in` (3E, E) (+ `b_in` (3E,)), `heads` heads, attention dropout
    /// `(p, seed, offset)` when given (training with p > 0), output projection `w_out`
    /// (E, E) (+ `b_out`).
    #[allow(clippy::too_many_arguments)]
    pub fn self_attention(
        &mut self,
        x: Var,
        w_in: Var,
        b_in: Option<Var>,
        w_out: Var,
        b_out: Option<Var>,
        heads: usize,
        dropout: Option<(f64, u64, u64)>,
    ) -> Result<Var> {
        let e = match self.entry(x, "input")?.shape.as_slice() {
            &[_, _, e] => e,
            s => return shape_err!("input: expected a 3-D (N, L, E) sequence, got {s:?}"),
        };
        if self.entry(w_in, "in_proj_weight")?.shape != [3 * e, e] {
            return shape_err!("in_proj_weight: expected shape ({}, {e}), got {:?}", 3 * e, self.entry(w_in, "in_proj_weight")?.shape);
        }
        let qkv = self.linear(x, w_in, b_in)?;
        let [q, k, v] = [0, 1, 2].map(|i| self.slice_last(qkv, i * e, e).and_then(|y| self.heads(y, heads, true)));
        let (q, k, v) = (q?, k?, v?);
        let o = match dropout {
            Some((p, seed, offset)) if p > 0.0 => self.dropout_attention(q, k, v, p, seed, offset)?,
            _ => self.flash_attention(q, k, v)?,
        };
        let o = self.heads(o, heads, false)?;
        self.linear(o, w_out, b_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::test_util::{assert_central_differences, lcg};

    /// x (N=2, L=3, E=4), 2 heads; values: x, w_in, b_in, w_out, b_out.
    fn build(vals: &[Vec<f64>], dropout: Option<(f64, u64, u64)>) -> (Tape<f64>, Vec<Var>, Var) {
        let mut t = Tape::new();
        let shapes: [&[usize]; 5] = [&[2, 3, 4], &[12, 4], &[12], &[4, 4], &[4]];
        let v: Vec<Var> = vals.iter().zip(shapes).map(|(v, s)| t.leaf(v.clone(), s).unwrap()).collect();
        let y = t.self_attention(v[0], v[1], Some(v[2]), v[3], Some(v[4]), 2, dropout).unwrap();
        (t, v, y)
    }

    #[test]
    fn self_attention_gradients_match_central_differences() {
        for dropout in [None, Some((0.3, 5, 9))] {
            let mut s = 23;
            let mut vals: Vec<Vec<f64>> = [24, 48, 12, 16, 4].iter().map(|&k| lcg(&mut s, k)).collect();
            let u = lcg(&mut s, 24);
            let loss = |vals: &[Vec<f64>]| {
                let (t, _, y) = build(vals, dropout);
                t.value(y).unwrap().iter().zip(&u).map(|(a, b)| a * b).sum::<f64>()
            };
            let (t, vars, y) = build(&vals, dropout);
            let grads = t.backward(y, Some(&u)).unwrap();
            let analytic: Vec<Vec<f64>> = vars.iter().map(|v| grads[v.index()].clone().unwrap()).collect();
            assert_central_differences(&mut vals, &analytic, loss, &format!("{dropout:?}"));
        }
    }

    #[test]
    fn dropout_path_without_dropping_equals_flash() {
        let mut s = 3;
        let vals: Vec<Vec<f64>> = [24, 48, 12, 16, 4].iter().map(|&k| lcg(&mut s, k)).collect();
        let (ta, _, ya) = build(&vals, None);
        let (tb, _, yb) = build(&vals, Some((1e-12, 1, 2))); // p > 0 takes the composed path
        for (a, b) in ta.value(ya).unwrap().iter().zip(tb.value(yb).unwrap()) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}"); // the kept weights scale by 1 / (1 - 1e-12)
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut t = Tape::<f32>::new();
        let x = t.leaf(vec![0.0; 24], &[2, 3, 4]).unwrap();
        assert!(t.heads(x, 3, true).is_err()); // 4 features, 3 heads
        assert!(t.heads(x, 2, false).is_err()); // not 4-D
        assert!(t.slice_last(x, 3, 2).is_err());
        let w = t.leaf(vec![0.0; 32], &[8, 4]).unwrap();
        let wo = t.leaf(vec![0.0; 16], &[4, 4]).unwrap();
        assert!(t.self_attention(x, w, None, wo, None, 2, None).is_err()); // (8, 4) in_proj
        let flat = t.leaf(vec![0.0; 8], &[2, 4]).unwrap();
        assert!(t.self_attention(flat, w, None, wo, None, 2, None).is_err());
        let q = t.heads(x, 2, true).unwrap();
        let k = t.leaf(vec![0.0; 16], &[2, 2, 2, 2]).unwrap();
        assert!(t.flash_attention(q, k, q).is_err());
    }
}
