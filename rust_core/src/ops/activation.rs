//! Activations, forward and backward. Backward kernels take the forward *input* `x` and
//! recompute what they need (the kernel contract): these ops are bandwidth-bound, so one
//! more pass of arithmetic is cheaper than storing and re-reading the output.

use super::map::{map1, map1_avx2, map2, map2_unmasked, Map1, Map2};
use super::sign_mask::{self, Negative};
use crate::error::Result;
use crate::real::Real;
use crate::{shape_err, value_err};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_C: f64 = 0.044_715;

pub(crate) fn check_same_len<T>(x: &[T], gy: &[T]) -> Result<()> {
    if x.len() != gy.len() {
        return shape_err!("gy: expected {} elements like the forward's, got {}", x.len(), gy.len());
    }
    Ok(())
}

/// sigmoid(x) = 1 / (1 + exp(-x)): exp(-x) may overflow to +inf, which gives the right
/// limit 0, and never produces NaN for finite x; where exp(-x) < e^-87 the sum is 1
/// either way, so the cheaper `exp_flush_` (0 there) serves.
#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp_flush_())
}

pub fn relu_forward<T: Real>(x: &[T]) -> Vec<T> {
    // `x < 0 ? 0 : x` keeps NaN (a max() would drop it)
    map1_avx2(x, |v| if v < T::ZERO { T::ZERO } else { v })
}

pub fn relu_backward<T: Real>(x: &[T], gy: &[T]) -> Result<Vec<T>> {
    check_same_len(x, gy)?;
    // a selection between gy and 0: see map2_unmasked
    Ok(map2_unmasked(x, gy, |v, g| if v > T::ZERO { g } else { T::ZERO }))
}

pub fn leaky_relu_forward<T: Real>(x: &[T], negative_slope: f64) -> Vec<T> {
    let a = T::c(negative_slope);
    map1(x, move |v| if v > T::ZERO { v } else { a * v })
}

pub fn leaky_relu_backward<T: Real>(x: &[T], gy: &[T], negative_slope: f64) -> Result<Vec<T>> {
    check_same_len(x, gy)?;
    let a = T::c(negative_slope);
    Ok(map2(x, gy, move |v, g| if v > T::ZERO { g } else { a * g }))
}

/// relu's output and the packed mask of x > 0 that `relu_backward_mask` reads (what the
/// autograd saves instead of a tensor: see sign_mask.rs).
pub fn relu_forward_mask<T: Real>(x: &[T]) -> (Vec<T>, Vec<u8>) {
    sign_mask::forward(x, Negative::Zero)
}

pub fn relu_backward_mask<T: Real>(mask: &[u8], gy: &[T]) -> Result<Vec<T>> {
    sign_mask::backward(mask, gy, Negative::Zero)
}

pub fn leaky_relu_forward_mask<T: Real>(x: &[T], negative_slope: f64) -> (Vec<T>, Vec<u8>) {
    sign_mask::forward(x, Negative::Slope(negative_slope))
}

pub fn leaky_relu_backward_mask<T: Real>(mask: &[u8], gy: &[T], negative_slope: f64) -> Result<Vec<T>> {
    sign_mask::backward(mask, gy, Negative::Slope(negative_slope))
}

/// The (outer, channels, inner) blocking of x for PReLU's alpha along axis 1.
fn prelu_layout<T>(shape: &[usize], weight: &[T]) -> Result<(usize, usize, usize)> {
    let n: usize = shape.iter().product();
    if weight.len() == 1 {
        return Ok((1, 1, n));
    }
    if shape.len() < 2 || shape[1] != weight.len() {
        let got = shape.get(1).map(|c| c.to_string()).unwrap_or("no channel axis".into());
        return shape_err!(
            "weight: expected 1 alpha or one per channel (x.shape[1] = {got}), got {}",
            weight.len()
        );
    }
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    Ok((shape[0], c, inner))
}

pub fn prelu_forward<T: Real>(x: &[T], shape: &[usize], weight: &[T]) -> Result<Vec<T>> {
    let (_, c, inner) = prelu_layout(shape, weight)?;
    if weight.len() == 1 {
        let a = weight[0];
        return Ok(map1(x, move |v| if v > T::ZERO { v } else { a * v }));
    }
    let mut out = crate::alloc::float_zeros_or_unwind::<T>(x.len(), "a kernel buffer");
    if inner == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(inner).zip(x.par_chunks(inner)).enumerate().for_each(|(row, (o, xr))| {
        let a = weight[row % c];
        for (o, &v) in o.iter_mut().zip(xr) {
            *o = if v > T::ZERO { v } else { a * v };
        }
    });
    Ok(out)
}

/// `(gx, gweight)`; gweight sums x * gy over the non-positive entries of each channel.
pub fn prelu_backward<T: Real>(
    x: &[T],
    shape: &[usize],
    weight: &[T],
    gy: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    check_same_len(x, gy)?;
    let (_, c, inner) = prelu_layout(shape, weight)?;
    let mut gx = crate::alloc::float_zeros_or_unwind::<T>(x.len(), "a kernel buffer");
    let mut gw = crate::alloc::float_zeros_or_unwind::<T>(weight.len(), "a kernel buffer");
    if x.is_empty() || inner == 0 {
        return Ok((gx, gw));
    }
    // one partial sum per (row of `inner` elements), summed per channel afterwards
    let partial: Vec<T> = gx
        .par_chunks_mut(inner)
        .zip(x.par_chunks(inner).zip(gy.par_chunks(inner)))
        .enumerate()
        .map(|(row, (o, (xr, gr)))| {
            let a = weight[if weight.len() == 1 { 0 } else { row % c }];
            let mut s = Vec::with_capacity(xr.len());
            for ((o, &v), &g) in o.iter_mut().zip(xr).zip(gr) {
                let pos = v > T::ZERO;
                *o = if pos { g } else { a * g };
                s.push(if pos { T::ZERO } else { v * g });
            }
            super::reduce::pairwise_sum(&s)
        })
        .collect();
    for (row, p) in partial.iter().enumerate() {
        let ch = if weight.len() == 1 { 0 } else { row % c };
        gw[ch] += *p;
    }
    Ok((gx, gw))
}

/// The heavy kernels as structs with `#[inline(always)]` bodies (see `map::Map1`).
struct SigmoidFwd;
struct TanhFwd;
struct GeluExactFwd;
struct GeluExactBwd;
struct GeluTanhFwd;
struct GeluTanhBwd;
struct SwishFwd<T>(T);
struct SwishBwd<T>(T);

impl<T: Real> Map1<T> for SigmoidFwd {
    #[inline(always)]
    fn f(&self, v: T) -> T {
        sigmoid(v)
    }
}
impl<T: Real> Map1<T> for TanhFwd {
    #[inline(always)]
    fn f(&self, v: T) -> T {
        v.tanh_()
    }
}
impl<T: Real> Map1<T> for GeluExactFwd {
    #[inline(always)]
    fn f(&self, v: T) -> T {
        v * v.normal_cdf_pdf_().0
    }
}
impl<T: Real> Map2<T> for GeluExactBwd {
    #[inline(always)]
    fn f(&self, v: T, g: T) -> T {
        let (cdf, pdf) = v.normal_cdf_pdf_();
        g * (cdf + v * pdf)
    }
}
impl<T: Real> Map1<T> for GeluTanhFwd {
    #[inline(always)]
    fn f(&self, v: T) -> T {
        v * tanh_gelu_parts(v).0
    }
}
impl<T: Real> Map2<T> for GeluTanhBwd {
    #[inline(always)]
    fn f(&self, v: T, g: T) -> T {
        let (s, s1ms) = tanh_gelu_parts(v);
        // s1ms is exactly 0 (f32 and f64) from |v| ~ 22 on, where v * dinner overflows for
        // huge v and 0 * inf would be NaN: the factor's v is capped (NaN passes)
        let vc = if v < T::c(-30.0) { T::c(-30.0) } else { v };
        let vc = if vc > T::c(30.0) { T::c(30.0) } else { vc };
        let dinner = T::c(SQRT_2_OVER_PI) * (T::ONE + T::c(3.0 * GELU_TANH_C) * vc * vc);
        g * (s + T::c(2.0) * vc * s1ms * dinner)
    }
}
impl<T: Real> Map1<T> for SwishFwd<T> {
    #[inline(always)]
    fn f(&self, v: T) -> T {
        // x / (1 + exp(-beta x)): one division instead of a division and a product
        v / (T::ONE + (-(self.0 * v)).exp_flush_())
    }
}
impl<T: Real> Map2<T> for SwishBwd<T> {
    #[inline(always)]
    fn f(&self, v: T, g: T) -> T {
        let bv = self.0 * v;
        let s = sigmoid(bv);
        // s (1 - s) is exactly 0 (f32 and f64) past |beta v| ~ 745, where beta v may be
        // inf and inf * 0 NaN: the factor's beta v is capped (NaN passes)
        let bvc = if bv < T::c(-1000.0) { T::c(-1000.0) } else { bv };
        let bvc = if bvc > T::c(1000.0) { T::c(1000.0) } else { bvc };
        g * (s + bvc * s * (T::ONE - s))
    }
}

pub fn sigmoid_forward<T: Real>(x: &[T]) -> Vec<T> {
    map1(x, SigmoidFwd)
}

/// From the forward's output y, as PyTorch: a bandwidth-bound pass over the buffer the
/// forward wrote last, with no exp to recompute.
pub fn sigmoid_backward<T: Real>(y: &[T], gy: &[T]) -> Result<Vec<T>> {
    check_same_len(y, gy)?;
    Ok(map2(y, gy, |s: T, g: T| g * s * (T::ONE - s)))
}

pub fn tanh_forward<T: Real>(x: &[T]) -> Vec<T> {
    map1(x, TanhFwd)
}

/// From the forward's output y, like `sigmoid_backward`.
pub fn tanh_backward<T: Real>(y: &[T], gy: &[T]) -> Result<Vec<T>> {
    check_same_len(y, gy)?;
    Ok(map2(y, gy, |t: T, g: T| g * (T::ONE - t * t)))
}

/// GELU's `approximate` argument, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    None,
    Tanh,
}

impl Gelu {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Gelu::None),
            "tanh" => Ok(Gelu::Tanh),
            _ => value_err!("approximate: expected 'none' or 'tanh', got {s:?}"),
        }
    }
}

/// For the tanh GELU: with u = sqrt(2/pi) (x + 0.044715 x^3), 0.5 (1 + tanh u) is
/// sigmoid(2u) and its derivative part (1 - tanh^2 u) / 4 is sigmoid(2u) sigmoid(-2u).
/// Both are computed from e = exp(-2|u|) <= 1, which avoids the cancellation of 1 + tanh u
/// and 1 - tanh^2 u in float32 tails. Returns (sigmoid(2u), sigmoid(2u) sigmoid(-2u)).
#[inline(always)]
fn tanh_gelu_parts<T: Real>(v: T) -> (T, T) {
    let u = T::c(SQRT_2_OVER_PI) * (v + T::c(GELU_TANH_C) * v * v * v);
    // exp_flush_ is 0 where exp(-2|u|) leaves f32's normal range, so s is 0 (not a stray
    // 1e-38 that v * s would scale up) for very negative v
    let e = (T::c(-2.0) * u.abs_()).exp_flush_();
    let r = T::ONE / (T::ONE + e);
    let s = if u < T::ZERO { e * r } else { r };
    (s, e * r * r)
}

pub fn gelu_forward<T: Real>(x: &[T], approximate: Gelu) -> Vec<T> {
    match approximate {
        Gelu::None => map1(x, GeluExactFwd),
        Gelu::Tanh => map1(x, GeluTanhFwd),
    }
}

pub fn gelu_backward<T: Real>(x: &[T], gy: &[T], approximate: Gelu) -> Result<Vec<T>> {
    check_same_len(x, gy)?;
    Ok(match approximate {
        Gelu::None => map2(x, gy, GeluExactBwd),
        Gelu::Tanh => map2(x, gy, GeluTanhBwd),
    })
}

/// swish(x) = x * sigmoid(beta x); SiLU is beta = 1.
pub fn swish_forward<T: Real>(x: &[T], beta: f64) -> Vec<T> {
    map1(x, SwishFwd(T::c(beta)))
}

pub fn swish_backward<T: Real>(x: &[T], gy: &[T], beta: f64) -> Result<Vec<T>> {
    check_same_len(x, gy)?;
    Ok(map2(x, gy, SwishBwd(T::c(beta))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_and_tanh_are_finite_and_saturate_for_large_inputs() {
        let x = [-1e4f32, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4];
        let s = sigmoid_forward(&x);
        assert!(s.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 1.0));
        assert_eq!(s[0], 0.0);
        assert_eq!(s[6], 1.0);
        assert_eq!(s[3], 0.5);
        let t = tanh_forward(&x);
        assert_eq!((t[0], t[6]), (-1.0, 1.0));
        let g = sigmoid_backward(&s, &[1.0; 7]).unwrap();
        assert!(g.iter().all(|v| v.is_finite()));
        assert_eq!((g[0], g[3], g[6]), (0.0, 0.25, 0.0));
    }

    #[test]
    fn nan_propagates_through_every_forward() {
        let x = [f32::NAN, 1.0];
        for y in [
            relu_forward(&x),
            leaky_relu_forward(&x, 0.1),
            sigmoid_forward(&x),
            tanh_forward(&x),
            gelu_forward(&x, Gelu::None),
            gelu_forward(&x, Gelu::Tanh),
            swish_forward(&x, 1.0),
        ] {
            assert!(y[0].is_nan());
            assert!(y[1].is_finite());
        }
    }

    #[test]
    fn huge_inputs_give_the_limits_not_nan_or_stray_values() {
        // x*x and x^3 overflow here; the results are x or 0, the gradients 1 or 0
        for big in [1e20f32, 3e38, 1e12] {
            let x = [big, -big];
            let ones = [1.0f32; 2];
            for approx in [Gelu::None, Gelu::Tanh] {
                let y = gelu_forward(&x, approx);
                assert_eq!((y[0], y[1]), (big, 0.0), "{approx:?} gelu(±{big})");
                let g = gelu_backward(&x, &ones, approx).unwrap();
                assert_eq!((g[0], g[1]), (1.0, 0.0), "{approx:?} gelu'(±{big})");
            }
            let y = swish_forward(&x, 1.0);
            assert_eq!((y[0], y[1]), (big, 0.0));
        }
    }

    #[test]
    fn gelu_f32_matches_f64_within_float32_tolerance() {
        let xs: Vec<f64> = (0..20001).map(|i| -12.0 + 24.0 * i as f64 / 20000.0).collect();
        let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        for approx in [Gelu::None, Gelu::Tanh] {
            let y64 = gelu_forward(&xs, approx);
            let y32 = gelu_forward(&x32, approx);
            let g64 = gelu_backward(&xs, &vec![1.0; xs.len()], approx).unwrap();
            let g32 = gelu_backward(&x32, &vec![1.0; xs.len()], approx).unwrap();
            for i in 0..xs.len() {
                assert!((y32[i] as f64 - y64[i]).abs() <= 1e-6 + 1e-5 * y64[i].abs(), "{approx:?} y({})", xs[i]);
                assert!((g32[i] as f64 - g64[i]).abs() <= 1e-6 + 1e-5 * g64[i].abs(), "{approx:?} g({})", xs[i]);
            }
        }
    }

    #[test]
    fn prelu_per_channel_gradient_sums_each_channel() {
        // x: (2, 2, 1); channel 0 values -1, -3; channel 1 values 2, -4
        let x = [-1.0f64, 2.0, -3.0, -4.0];
        let w = [0.5, 0.25];
        let y = prelu_forward(&x, &[2, 2, 1], &w).unwrap();
        assert_eq!(y, vec![-0.5, 2.0, -1.5, -1.0]);
        let (gx, gw) = prelu_backward(&x, &[2, 2, 1], &w, &[1.0; 4]).unwrap();
        assert_eq!(gx, vec![0.5, 1.0, 0.5, 0.25]);
        assert_eq!(gw, vec![-4.0, -4.0]);
        assert!(prelu_forward(&x, &[2, 2, 1], &[1.0, 2.0, 3.0]).is_err());
    }

    #[test]
    fn backward_rejects_mismatched_lengths() {
        assert!(relu_backward(&[1.0f32, 2.0], &[1.0]).is_err());
        assert!(Gelu::parse("erf").is_err());
    }
}
