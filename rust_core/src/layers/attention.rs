//! `MultiheadAttention` (torch.nn.MultiheadAttention): input projections and the output
//! projection by `ops::linear`, the attention itself by the flash kernels
//! (`attention::flash`, which keep only the log-sum-exp per query for backward).

use super::init::{fan_in_bound, uniform, Rng};
use super::linear::Linear;
use super::{expect_shape, param_slice, row_major, to_array};
use crate::attention::{flash, AttnDims};
use crate::error::{FerroError, Result};
use crate::ops::linear;
use crate::real::Real;
use crate::{shape_err, value_err};
use ndarray::{Array1, Array2, Array3, ArrayView3, ArrayView4, Ix1, Ix2, Ix3};
use std::borrow::Cow;

/// torch.nn.MultiheadAttention with `kdim = vdim = embed_dim`: query (Lq, N, E) and key,
/// value (Lk, N, E) (batch first with `batch_first`) are projected by the rows of
/// `in_proj_weight` (3E, E) (q, k, v in that order, plus `in_proj_bias` (3E,)), split into
/// `num_heads` heads of E / num_heads, attended with softmax(q k^T / sqrt(E / num_heads)),
/// merged and projected by `out_proj`. `causal` hides key j from query i for j > i
/// (PyTorch's `is_causal` with the causal mask). The attention weights are not formed, so
/// none are returned; masks other than the causal one and dropout of the weights are not
/// supported.
///
/// ```rust
/// use _core::layers::{init::Rng, MultiheadAttention};
/// use ndarray::{s, Array3, Axis};
///
/// let mha = MultiheadAttention::<f64>::new(4, 2, true, &mut Rng::new(3)).unwrap();
/// let x = Array3::from_shape_fn((5, 2, 4), |(l, n, e)| ((l * 8 + n * 4 + e) as f64 * 0.3).cos());
/// let (y, cache) = mha.forward(x.view(), x.view(), x.view(), true).unwrap(); // causal self-attention
/// assert_eq!(y.shape(), &[5, 2, 4]);
/// let grads = mha.backward(&cache, Array3::ones((5, 2, 4)).view()).unwrap();
/// assert_eq!(grads.query.shape(), &[5, 2, 4]);
/// assert_eq!(grads.in_proj_weight.shape(), &[12, 4]);
///
/// // one key: every query's weight on it is 1, so y = out_proj(value's projection)
/// let v = Array3::from_shape_fn((1, 2, 4), |(_, n, e)| (n as f64) - (e as f64) * 0.5);
/// let (y, _) = mha.forward(x.view(), v.view(), v.view(), false).unwrap();
/// let wv = mha.in_proj_weight.slice(s![8.., ..]);
/// let projected = v.index_axis(Axis(0), 0).dot(&wv.t()); // the biases start at zero
/// let expected = projected.dot(&mha.out_proj.weight.t());
/// for l in 0..5 {
///     let diff = (&y.index_axis(Axis(0), l) - &expected).mapv(f64::abs);
///     assert!(diff.iter().all(|&d| d < 1e-12));
/// }
/// ```
#[derive(Clone, Debug)]
pub struct MultiheadAttention<T> {
    pub num_heads: usize,
    pub batch_first: bool,
    pub in_proj_weight: Array2<T>,
    pub in_proj_bias: Option<Array1<T>>,
    pub out_proj: Linear<T>,
}

/// What [`MultiheadAttention::backward`] needs: the inputs, the per-head projections, the
/// attention output and its log-sum-exp.
pub struct MultiheadAttentionCache<'a, T: Clone> {
    /// query, key, value (N, L, E), batch first
    inputs: [Cow<'a, [T]>; 3],
    /// their projections split into heads, (N, H, L, D)
    heads: [Vec<T>; 3],
    /// the attention's output (N, H, Lq, D) and its log-sum-exp (N, H, Lq)
    out: Vec<T>,
    lse: Vec<T>,
    dims: AttnDims,
    causal: bool,
}

/// Gradients of a [`MultiheadAttention`] call: of query, key and value (in their layout)
/// and of every parameter. For self-attention the input's gradient is the sum of the
/// three.
#[derive(Clone, Debug)]
pub struct MultiheadAttentionGrads<T> {
    pub query: Array3<T>,
    pub key: Array3<T>,
    pub value: Array3<T>,
    pub in_proj_weight: Array2<T>,
    pub in_proj_bias: Option<Array1<T>>,
    pub out_proj_weight: Array2<T>,
    pub out_proj_bias: Option<Array1<T>>,
}

/// Swaps axes 1 and 2 of the row-major array `v` of `dims`: (N, L, H, D) <-> (N, H, L, D)
/// (its own inverse).
fn swap_heads<T: Real>(v: &[T], [n, a, b, d]: [usize; 4]) -> Result<Vec<T>> {
    let view = ArrayView4::from_shape((n, a, b, d), v).map_err(|e| FerroError::Shape(format!("attention heads: {e}")))?;
    Ok(view.permuted_axes([0, 2, 1, 3]).iter().copied().collect())
}

/// (L, N, E) <-> (N, L, E) unless already batch first.
fn batch_major<T>(x: ArrayView3<'_, T>, batch_first: bool) -> ArrayView3<'_, T> {
    if batch_first { x } else { x.permuted_axes([1, 0, 2]) }
}

impl<T: Real> MultiheadAttention<T> {
    /// PyTorch's initialisation: `in_proj_weight` Xavier-uniform (bound sqrt(6 / 4E)),
    /// `out_proj.weight` from U(-1/sqrt(E), 1/sqrt(E)), both biases zero; time-major
    /// inputs. A ValueError unless `num_heads` divides `embed_dim`.
    pub fn new(embed_dim: usize, num_heads: usize, bias: bool, rng: &mut Rng) -> Result<Self> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return value_err!("num_heads: expected a divisor of embed_dim ({embed_dim}), got {num_heads}");
        }
        let xavier = if embed_dim == 0 { 0.0 } else { (6.0 / (4 * embed_dim) as f64).sqrt() };
        let in_proj_weight = uniform((3 * embed_dim, embed_dim), xavier, rng);
        let out_proj = Linear {
            weight: uniform((embed_dim, embed_dim), fan_in_bound(embed_dim), rng),
            bias: bias.then(|| Array1::from_elem(embed_dim, T::ZERO)),
        };
        let in_proj_bias = bias.then(|| Array1::from_elem(3 * embed_dim, T::ZERO));
        Ok(MultiheadAttention { num_heads, batch_first: false, in_proj_weight, in_proj_bias, out_proj })
    }

    pub fn embed_dim(&self) -> usize {
        self.out_proj.out_features()
    }

    /// The embedding size and head size, with every parameter's shape checked.
    fn check(&self) -> Result<(usize, usize)> {
        let e = self.embed_dim();
        if self.num_heads == 0 || !e.is_multiple_of(self.num_heads) {
            return value_err!("num_heads: expected a divisor of embed_dim ({e}), got {}", self.num_heads);
        }
        expect_shape("in_proj_weight", self.in_proj_weight.shape(), &[3 * e, e])?;
        if let Some(b) = &self.in_proj_bias {
            expect_shape("in_proj_bias", b.shape(), &[3 * e])?;
        }
        expect_shape("out_proj.weight", self.out_proj.weight.shape(), &[e, e])?;
        if let Some(b) = &self.out_proj.bias {
            expect_shape("out_proj.bias", b.shape(), &[e])?;
        }
        Ok((e, e / self.num_heads))
    }

    pub fn forward<'a>(&self, query: ArrayView3<'a, T>, key: ArrayView3<'a, T>, value: ArrayView3<'a, T>, causal: bool)
                       -> Result<(Array3<T>, MultiheadAttentionCache<'a, T>)> {
        let (e, d) = self.check()?;
        let [q, k, v] = [query, key, value].map(|x| batch_major(x, self.batch_first));
        let ((n, lq, eq), (nk, lk, ek)) = (q.dim(), k.dim());
        if eq != e || ek != e || nk != n || v.dim() != (nk, lk, ek) {
            return shape_err!("key: expected query (N, Lq, {e}) and key, value (N, Lk, {e}) (batch first), got {:?}, {:?} and {:?}",
                              q.shape(), k.shape(), v.shape());
        }
        let h = self.num_heads;
        let w = row_major(&self.in_proj_weight.view())?;
        let b = param_slice(self.in_proj_bias.as_ref())?;
        let inputs = [row_major(&q)?, row_major(&k)?, row_major(&v)?];
        let mut heads: [Vec<T>; 3] = Default::default();
        for (j, (x, len)) in inputs.iter().zip([lq, lk, lk]).enumerate() {
            let bias = b.as_ref().map(|b| &b[j * e..(j + 1) * e]);
            let projected = linear::linear_forward(x, n * len, e, &w[j * e * e..(j + 1) * e * e], e, bias)?;
            heads[j] = swap_heads(&projected, [n, len, h, d])?;
        }
        let dims = AttnDims { b: n, h, hk: h, lq, lk, d, dv: d, mask_batch: false, mask_heads: false };
        let scale = T::c(1.0 / (d.max(1) as f64).sqrt());
        let (out, lse) = flash::forward(&heads[0], &heads[1], &heads[2], None, dims, scale, causal)?;
        let merged = swap_heads(&out, [n, h, lq, d])?;
        let w_out = row_major(&self.out_proj.weight.view())?;
        let b_out = param_slice(self.out_proj.bias.as_ref())?;
        let y = linear::linear_forward(&merged, n * lq, e, &w_out, e, b_out.as_deref())?;
        let y = batch_major(to_array(Ix3(n, lq, e), y, "multi-head attention")?.view(), self.batch_first).as_standard_layout().into_owned();
        Ok((y, MultiheadAttentionCache { inputs, heads, out, lse, dims, causal }))
    }

    /// Gradients for the output's gradient, with the parameters as they are now.
    pub fn backward(&self, cache: &MultiheadAttentionCache<'_, T>, grad_output: ArrayView3<'_, T>) -> Result<MultiheadAttentionGrads<T>> {
        let (e, d) = self.check()?;
        let AttnDims { b: n, h, lq, lk, .. } = cache.dims;
        if d != cache.dims.d || h != self.num_heads {
            return shape_err!("num_heads: expected the forward's {} heads of {}, got {} of {d}", cache.dims.h, cache.dims.d, self.num_heads);
        }
        let gy = batch_major(grad_output, self.batch_first);
        expect_shape("grad_output (batch first)", gy.shape(), &[n, lq, e])?;
        let gy = row_major(&gy)?;
        let merged = swap_heads(&cache.out, [n, h, lq, d])?;
        let w_out = row_major(&self.out_proj.weight.view())?;
        let has_out_bias = self.out_proj.bias.is_some();
        let (g_merged, g_w_out, g_b_out) = linear::linear_backward(&merged, n * lq, e, &w_out, e, &gy, has_out_bias)?;
        let g_out = swap_heads(&g_merged, [n, lq, h, d])?;
        let [qh, kh, vh] = &cache.heads;
        let scale = T::c(1.0 / (d.max(1) as f64).sqrt());
        let (gq, gk, gv) = flash::backward(qh, kh, vh, None, cache.dims, scale, cache.causal, &cache.out, &cache.lse, &g_out)?;
        let w = row_major(&self.in_proj_weight.view())?;
        let has_in_bias = self.in_proj_bias.is_some();
        let (mut g_w, mut g_b) = (Vec::with_capacity(3 * e * e), Vec::with_capacity(3 * e));
        let mut g_inputs = Vec::with_capacity(3);
        for (j, (g_heads, len)) in [gq, gk, gv].iter().zip([lq, lk, lk]).enumerate() {
            let g_projected = swap_heads(g_heads, [n, h, len, d])?;
            let (gx, gw, gb) = linear::linear_backward(&cache.inputs[j], n * len, e, &w[j * e * e..(j + 1) * e * e], e, &g_projected, has_in_bias)?;
            g_w.extend_from_slice(&gw);
            g_b.extend(gb.unwrap_or_default());
            let gx = to_array(Ix3(n, len, e), gx, "multi-head attention backward")?;
            g_inputs.push(batch_major(gx.view(), self.batch_first).as_standard_layout().into_owned());
        }
        let [query, key, value]: [Array3<T>; 3] = g_inputs.try_into().map_err(|_| FerroError::Value("three input gradients".into()))?;
        Ok(MultiheadAttentionGrads {
            query,
            key,
            value,
            in_proj_weight: to_array(Ix2(3 * e, e), g_w, "in_proj_weight gradient")?,
            in_proj_bias: has_in_bias.then(|| to_array(Ix1(3 * e), g_b, "in_proj_bias gradient")).transpose()?,
            out_proj_weight: to_array(Ix2(e, e), g_w_out, "out_proj.weight gradient")?,
            out_proj_bias: g_b_out.map(|g| to_array(Ix1(e), g, "out_proj.bias gradient")).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::test_util::{assert_central_differences, lcg};

    #[test]
    fn gradients_match_central_differences() {
        let (lq, lk, n, e) = (3, 4, 2, 4);
        for causal in [false, true] {
            let mut base = MultiheadAttention::<f64>::new(e, 2, true, &mut Rng::new(8)).unwrap();
            let mut s = 31;
            // nonzero biases, so their gradients are exercised through non-trivial paths
            base.in_proj_bias = Some(Array1::from_vec(lcg(&mut s, 3 * e)));
            base.out_proj.bias = Some(Array1::from_vec(lcg(&mut s, e)));
            let mut vals = vec![lcg(&mut s, lq * n * e), lcg(&mut s, lk * n * e), lcg(&mut s, lk * n * e)];
            vals.push(base.in_proj_weight.iter().copied().collect());
            vals.push(base.in_proj_bias.as_ref().unwrap().to_vec());
            vals.push(base.out_proj.weight.iter().copied().collect());
            vals.push(base.out_proj.bias.as_ref().unwrap().to_vec());
            let u = lcg(&mut s, lq * n * e);
            let run = |v: &[Vec<f64>]| {
                let mut m = base.clone();
                m.in_proj_weight = Array2::from_shape_vec((3 * e, e), v[3].clone()).unwrap();
                m.in_proj_bias = Some(Array1::from_vec(v[4].clone()));
                m.out_proj.weight = Array2::from_shape_vec((e, e), v[5].clone()).unwrap();
                m.out_proj.bias = Some(Array1::from_vec(v[6].clone()));
                let arr = |x: &[f64], l: usize| Array3::from_shape_vec((l, n, e), x.to_vec()).unwrap();
                let (q, k, vv) = (arr(&v[0], lq), arr(&v[1], lk), arr(&v[2], lk));
                let (y, cache) = m.forward(q.view(), k.view(), vv.view(), causal).unwrap();
                let loss: f64 = y.iter().zip(&u).map(|(a, b)| a * b).sum();
                let g = m.backward(&cache, arr(&u, lq).view()).unwrap();
                let flat = |a: &Array3<f64>| a.iter().copied().collect::<Vec<_>>();
                let grads = vec![flat(&g.query), flat(&g.key), flat(&g.value), g.in_proj_weight.iter().copied().collect(),
                                 g.in_proj_bias.unwrap().to_vec(), g.out_proj_weight.iter().copied().collect(), g.out_proj_bias.unwrap().to_vec()];
                (loss, grads)
            };
            let (_, analytic) = run(&vals);
            assert_central_differences(&mut vals, &analytic, |p| run(p).0, &format!("causal {causal}"));
        }
    }

    #[test]
    fn batch_first_self_attention_is_the_tapes() {
        let (n, l, e) = (2, 3, 4);
        let mut mha = MultiheadAttention::<f64>::new(e, 2, true, &mut Rng::new(2)).unwrap();
        mha.batch_first = true;
        let mut s = 5;
        let x = Array3::from_shape_vec((n, l, e), lcg(&mut s, n * l * e)).unwrap();
        let (y, _) = mha.forward(x.view(), x.view(), x.view(), false).unwrap();
        let mut t = crate::autograd::tape::Tape::<f64>::new();
        let xv = t.leaf(x.iter().copied().collect(), &[n, l, e]).unwrap();
        let w_in = t.leaf(mha.in_proj_weight.iter().copied().collect(), &[3 * e, e]).unwrap();
        let b_in = t.leaf(mha.in_proj_bias.as_ref().unwrap().to_vec(), &[3 * e]).unwrap();
        let w_out = t.leaf(mha.out_proj.weight.iter().copied().collect(), &[e, e]).unwrap();
        let b_out = t.leaf(mha.out_proj.bias.as_ref().unwrap().to_vec(), &[e]).unwrap();
        let yt = t.self_attention(xv, w_in, Some(b_in), w_out, Some(b_out), 2, None).unwrap();
        for (a, b) in y.iter().zip(t.value(yt).unwrap()) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(MultiheadAttention::<f32>::new(6, 4, true, &mut Rng::new(0)).is_err());
        let mha = MultiheadAttention::<f32>::new(4, 2, false, &mut Rng::new(0)).unwrap();
        let (q, kv) = (Array3::<f32>::zeros((3, 2, 4)), Array3::<f32>::zeros((5, 1, 4)));
        assert!(mha.forward(q.view(), kv.view(), kv.view(), false).is_err()); // batch 2 vs 1
        let kv = Array3::<f32>::zeros((5, 2, 4));
        let (y, cache) = mha.forward(q.view(), kv.view(), kv.view(), false).unwrap();
        assert_eq!(y.shape(), &[3, 2, 4]);
        assert!(mha.backward(&cache, Array3::zeros((5, 2, 4)).view()).is_err());
        let g = mha.backward(&cache, Array3::zeros((3, 2, 4)).view()).unwrap();
        assert!(g.in_proj_bias.is_none() && g.out_proj_bias.is_none());
        assert_eq!(g.key.shape(), &[5, 2, 4]);
    }
}
