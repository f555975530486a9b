//! `Real`: the float types the kernels are generic over (f32 and f64).
//!
//! f64 uses the standard library (and libm's erfc): accuracy first, it is the dtype of
//! gradient checks. f32 uses branch-free polynomial versions of exp, tanh and erfc so that
//! LLVM vectorizes the activation loops (16 lanes under AVX-512); each stays within a few
//! ulp of the f64 result, which the tests below check over a dense grid. The polynomials
//! are written with `mul_add`: one FMA each (the crate is built for x86-64-v3, see
//! .cargo/config.toml), half the instructions of a separate multiply and add.
#![allow(clippy::excessive_precision)] // coefficients are kept as fitted or published

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NAME: &'static str;
    fn c(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// exp; +inf above the overflow threshold, 0 below the underflow one, NaN stays NaN.
    fn exp_(self) -> Self;
    /// exp for kernels where results below f32's normal range do not matter (sigmoid and
    /// kin): +inf above the overflow threshold like `exp_`, but in f32 exactly 0 below about
    /// e^-87 instead of a subnormal, which spares a second scaling step (see
    /// `exp_flush_f32`). f64 has no such shortcut: there it is `exp`.
    fn exp_flush_(self) -> Self;
    fn ln_(self) -> Self;
    /// tanh, saturating to ±1 for large |x|.
    fn tanh_(self) -> Self;
    /// `(Phi(x), phi(x))`: the standard normal CDF and density (exact GELU and its
    /// derivative). Phi is accurate to a few ulp relative in both tails (no 1 + erf
    /// cancellation), and both share one exp.
    fn normal_cdf_pdf_(self) -> (Self, Self);
    fn sqrt_(self) -> Self;
    fn powf_(self, e: Self) -> Self;
    fn abs_(self) -> Self;
    /// sin and cos: the standard library's (libm), accuracy first.
    fn sin_(self) -> Self;
    fn cos_(self) -> Self;
    fn is_nan_(self) -> bool;
    fn is_finite_(self) -> bool;
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "float64";
    #[inline(always)]
    fn c(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn exp_flush_(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn ln_(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn normal_cdf_pdf_(self) -> (Self, Self) {
        let cdf = 0.5 * libm::erfc(-self * std::f64::consts::FRAC_1_SQRT_2);
        (cdf, INV_SQRT_2PI * (-0.5 * self * self).exp())
    }
    #[inline(always)]
    fn sqrt_(self) -> Self {
        self.sqrt()
    }
    #[inline(always)]
    fn powf_(self, e: Self) -> Self {
        self.powf(e)
    }
    #[inline(always)]
    fn abs_(self) -> Self {
        self.abs()
    }
    #[inline(always)]
    fn sin_(self) -> Self {
        self.sin()
    }
    #[inline(always)]
    fn cos_(self) -> Self {
        self.cos()
    }
    #[inline(always)]
    fn is_nan_(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn is_finite_(self) -> bool {
        self.is_finite()
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn c(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn exp_flush_(self) -> Self {
        exp_flush_f32(self)
    }
    #[inline(always)]
    fn ln_(self) -> Self {
        ln_f32(self)
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        tanh_f32(self)
    }
    #[inline(always)]
    fn normal_cdf_pdf_(self) -> (Self, Self) {
        normal_cdf_pdf_f32(self)
    }
    #[inline(always)]
    fn sqrt_(self) -> Self {
        self.sqrt()
    }
    #[inline(always)]
    fn powf_(self, e: Self) -> Self {
        self.powf(e)
    }
    #[inline(always)]
    fn abs_(self) -> Self {
        self.abs()
    }
    #[inline(always)]
    fn sin_(self) -> Self {
        self.sin()
    }
    #[inline(always)]
    fn cos_(self) -> Self {
        self.cos()
    }
    #[inline(always)]
    fn is_nan_(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn is_finite_(self) -> bool {
        self.is_finite()
    }
}


const LOG2E_F32: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two (Cody and Waite): n * LN2_HI is exact for the n that occur
const LN2_HI_F32: f32 = 0.693_359_375;
const LN2_LO_F32: f32 = -2.121_944_4e-4;

/// 2 exp(r) for |r| <= ln2/2: 2 + 2r + r^2 q(r) with q of degree 4, a least-squares fit
/// weighted towards equal ripple (relative error 3e-9 before f32 rounding; Cephes'
/// degree-5 q is more than f32 needs on this interval). The factor 2 is folded into the
/// coefficients because the callers scale by 2^(n-1), see `exp_clamped_f32`. q is
/// evaluated by Estrin's scheme: fewer dependent steps at the same FMA count.
#[inline(always)]
fn exp2x_poly_f32(r: f32) -> f32 {
    let r2 = r * r;
    let q01 = r.mul_add(2.0 * 0.166_665_2, 2.0 * 0.499_999_94);
    let q23 = r.mul_add(2.0 * 0.008_368_781, 2.0 * 0.041_668_292);
    let q = r2.mul_add(r2.mul_add(2.0 * 0.001_382_020_1, q23), q01);
    r2.mul_add(q, r.mul_add(2.0, 2.0))
}

/// exp(xc + extra) for xc in [-87.5, 88.8] and |extra| far below ln2/2 (a rounding
/// correction some callers carry). With n = round(xc log2 e), adding 1.5 * 2^23 + 126
/// leaves n + 126 in [0, 254] in the low mantissa bits of `t`; shifting t's bits left by
/// 23 moves them into the exponent field and drops the rest (0x4B40_0000 << 23 wraps to
/// 0), which makes 2^(n-1) in one integer instruction and no float-to-int conversion (a
/// saturating `as` would keep LLVM from vectorizing the loop). n = -126 gives the field
/// 0, i.e. +0.0: below about e^-87 the result is exactly 0, never a stray tiny value.
/// Above 88.72 the product rounds to +inf by itself. NaN stays NaN.
#[inline(always)]
fn exp_clamped_f32(xc: f32, extra: f32) -> f32 {
    const MAGIC: f32 = 12_583_038.0; // 1.5 * 2^23 + 126
    let t = xc.mul_add(LOG2E_F32, MAGIC);
    let n = t - MAGIC;
    let half_scale = f32::from_bits(t.to_bits() << 23); // 2^(n-1)
    let r = (-n).mul_add(LN2_LO_F32, (-n).mul_add(LN2_HI_F32, xc)) + extra;
    exp2x_poly_f32(r) * half_scale
}

/// exp for f32 with gradual underflow: 2^n for n in [-150, 128] is built as 2^h * 2^(n-h)
/// in two exponent fields, so the whole range needs no branch. ~2 ulp.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    // clamp keeps NaN and compiles to vmaxps/vminps (a nested if-else to compares and blends)
    let xc = x.clamp(-104.0, 88.8);
    let t = xc.mul_add(LOG2E_F32, MAGIC);
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = (-n).mul_add(LN2_LO_F32, (-n).mul_add(LN2_HI_F32, xc));
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 126) as u32) << 23); // 2^(n-h-1): the poly is 2 exp(r)
    let v = exp2x_poly_f32(r) * s1 * s2;
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -103.972_08 {
        0.0
    } else {
        v
    }
}

/// exp for f32 without gradual underflow, for kernels where results below e^-87 do not
/// matter or should be 0 (sigmoid's 1 + exp(-x), the tanh GELU's exp(-2|u|)): exactly 0
/// below about e^-87, +inf above 88.72, NaN stays NaN; about 30% fewer instructions
/// than `exp_f32` (measured 35% faster on 4M elements).
#[inline(always)]
pub fn exp_flush_f32(x: f32) -> f32 {
    exp_clamped_f32(x.clamp(-87.5, 88.8), 0.0)
}

/// ln for f32, branch-free so that loops over it vectorize (libm's logf is a call per
/// element: 0.8 ns against exp's 0.08). Cephes' logf: x = m 2^e with m in [sqrt(1/2),
/// sqrt 2), ln x = e ln2 + ln m with ln(1 + f) = f - f^2/2 + f^3 P(f), P of degree 8.
/// Subnormal x is scaled by 2^23 first; x < 0 and NaN give NaN, 0 gives -inf, +inf
/// gives +inf. ~1 ulp.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 8_388_608.0 } else { x }; // 2^23
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126 - if sub { 23 } else { 0 };
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    // m < sqrt(1/2): take 2m (in [sqrt(1/2), 1)) and one power of 2 less
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    m = if small { m + m } else { m } - 1.0;
    let ef = e as f32;
    let z = m * m;
    let mut p = 7.037_683_6e-2_f32;
    p = p.mul_add(m, -1.151_461e-1);
    p = p.mul_add(m, 1.167_699_9e-1);
    p = p.mul_add(m, -1.242_014_1e-1);
    p = p.mul_add(m, 1.424_932_3e-1);
    p = p.mul_add(m, -1.666_805_8e-1);
    p = p.mul_add(m, 2.000_071_4e-1);
    p = p.mul_add(m, -2.499_999_4e-1);
    p = p.mul_add(m, 3.333_333e-1);
    let y = (m * z).mul_add(p, ef.mul_add(-2.121_944_4e-4, -0.5 * z));
    let r = ef.mul_add(0.693_359_375, m + y);
    if x > 0.0 {
        if x == f32::INFINITY { x } else { r }
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else {
        f32::NAN // x < 0 or NaN
    }
}

/// tanh for f32: Eigen's rational approximation (odd degree-13 over even degree-6) on
/// [-7.9, 7.9], where f32 tanh reaches ±1; NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let xin = x;
    let x = x.clamp(-CLAMP, CLAMP); // NaN stays NaN; compiles to vmaxps/vminps
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = x2.mul_add(p, 2.000_187_9e-13);
    p = x2.mul_add(p, -8.604_671_5e-11);
    p = x2.mul_add(p, 5.122_297e-8);
    p = x2.mul_add(p, 1.485_722_4e-5);
    p = x2.mul_add(p, 6.372_619_3e-4);
    p = x2.mul_add(p, 4.893_524_6e-3);
    p *= x;
    let mut q = 1.198_258_4e-6_f32;
    q = x2.mul_add(q, 1.185_347_1e-4);
    q = x2.mul_add(q, 2.268_434_6e-3);
    q = x2.mul_add(q, 4.893_525e-3);
    // with FMAs the fit ends 2 ulp short of ±1 at the clamp; f32 tanh is exactly ±1
    // from |x| = 9.02 on
    let y = p / q;
    if xin > 9.0 {
        1.0
    } else if xin < -9.0 {
        -1.0
    } else {
        y
    }
}

const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `(Phi(x), phi(x))` for f32. With z = |x| / sqrt 2 and t = 1 / (1 + z / 2),
/// Phi(-|x|) = erfc(z) / 2 = t exp(-z^2) R(t) / 2, where R(t) = erfcx(z) / t is a degree-8
/// polynomial fitted (weighted least squares, relative error 4e-8 in f64, 3e-7 evaluated
/// in f32) on z in [0, 10]. exp(-z^2) = exp(-x^2/2) is also the density's exponential, so
/// GELU's backward pays one exp, not two; the rounding error of x*x is put back into the
/// exponent so the tails stay accurate for |x| ~ 13. That exponential is taken of |x|
/// capped at 13.2, past which it flushes to 0 (x*x would overflow for |x| > 1.8e19, and
/// its correction become inf - inf): Phi(-|x|) and phi(x) are then below f32's normal
/// range and come out 0. R is evaluated by Estrin's scheme (4 dependent FMA levels, not 8).
#[inline(always)]
pub fn normal_cdf_pdf_f32(x: f32) -> (f32, f32) {
    let ax = x.abs();
    let z = ax * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / 0.5f32.mul_add(z, 1.0);
    let t2 = t * t;
    let t4 = t2 * t2;
    let p01 = t.mul_add(0.282_375_35, 0.282_086_42);
    let p23 = t.mul_add(0.202_689_26, 0.243_103_33);
    let p45 = t.mul_add(0.278_080_36, -0.026_633_013);
    let p67 = t.mul_add(0.284_582_74, -0.487_213_7);
    let r = (t4 * t4).mul_add(-0.059_070_783, t4.mul_add(t2.mul_add(p67, p45), t2.mul_add(p23, p01)));
    // -xg^2/2 >= -87.12, inside exp_clamped_f32's range; NaN passes the cap
    let xg = if ax > 13.2 { 13.2 } else { ax };
    let xx = xg * xg;
    let lo = xg.mul_add(xg, -xx); // xg*xg == xx + lo exactly
    let gauss = exp_clamped_f32(-0.5 * xx, -0.5 * lo);
    let tail = (0.5 * t) * r * gauss; // Phi(-|x|)
    // NaN takes the second branch, where tail is NaN
    let cdf = if x > 0.0 { 1.0 - tail } else { tail };
    (cdf, INV_SQRT_2PI as f32 * gauss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| (lo + (hi - lo) * i as f64 / n as f64) as f32)
    }

    fn rel_err(a: f32, e: f64) -> f64 {
        ((a as f64) - e).abs() / e.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn exp_f32_is_accurate_over_its_range() {
        let mut worst: f64 = 0.0;
        for x in grid(-87.0, 88.7, 400_000) {
            worst = worst.max(rel_err(exp_f32(x), (x as f64).exp()));
        }
        assert!(worst < 4e-7, "exp_f32 worst relative error {worst}");
        for x in grid(-103.0, -87.0, 10_000) {
            let e = (x as f64).exp();
            assert!(((exp_f32(x) as f64) - e).abs() <= 2e-45 + 1e-6 * e, "exp_f32({x})");
        }
    }

    #[test]
    fn exp_flush_f32_matches_exp_f32_where_both_are_normal_and_flushes_below() {
        for x in grid(-86.9, 88.72, 200_000) {
            let (a, b) = (exp_flush_f32(x), exp_f32(x));
            assert!(rel_err(a, b as f64) < 4e-7, "exp_flush_f32({x}) = {a}, exp_f32 {b}");
        }
        // in the last stretch before the flush a result is either accurate or exactly 0
        for x in grid(-87.6, -86.9, 10_000) {
            let (a, b) = (exp_flush_f32(x), exp_f32(x));
            assert!(a == 0.0 || rel_err(a, b as f64) < 4e-7, "exp_flush_f32({x}) = {a}");
        }
        assert_eq!(exp_flush_f32(88.73), f32::INFINITY);
        assert_eq!(exp_flush_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_flush_f32(-87.5), 0.0);
        assert_eq!(exp_flush_f32(-1000.0), 0.0);
        assert_eq!(exp_flush_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_flush_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_f32_handles_the_ends_and_nan() {
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(-110.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn ln_f32_is_accurate_from_subnormals_to_the_largest_and_handles_the_edges() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-44f32;
        while x < 3e38 {
            for k in 0..50 {
                let v = x * (1.0 + k as f32 / 50.0);
                let e = (v as f64).ln();
                let err = ((ln_f32(v) as f64) - e).abs() / e.abs().max(1e-3);
                worst = worst.max(err);
            }
            x *= 1.37;
        }
        for v in grid(0.5, 2.0, 100_000) {
            let e = (v as f64).ln();
            worst = worst.max(((ln_f32(v) as f64) - e).abs() / e.abs().max(1e-3));
        }
        assert!(worst < 3e-7, "ln_f32 worst error {worst}");
        assert_eq!(ln_f32(1.0), 0.0);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan() && ln_f32(f32::NEG_INFINITY).is_nan());
    }

    #[test]
    fn tanh_f32_is_accurate_and_saturates() {
        let mut worst: f64 = 0.0;
        for x in grid(-10.0, 10.0, 400_000) {
            let e = (x as f64).tanh();
            worst = worst.max(((tanh_f32(x) as f64) - e).abs() / e.abs().max(1e-30));
        }
        assert!(worst < 1e-6, "tanh_f32 worst relative error {worst}");
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-1e30), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn normal_cdf_pdf_f32_is_accurate_in_both_tails() {
        let (mut worst_cdf, mut worst_pdf): (f64, f64) = (0.0, 0.0);
        for x in grid(-13.0, 9.0, 400_000) {
            let (c64, p64) = (x as f64).normal_cdf_pdf_();
            let (c, p) = normal_cdf_pdf_f32(x);
            if c64 > 1e-37 {
                worst_cdf = worst_cdf.max(rel_err(c, c64));
            }
            if p64 > 1e-37 {
                worst_pdf = worst_pdf.max(rel_err(p, p64));
            }
        }
        assert!(worst_cdf < 2e-6, "Phi f32 worst relative error {worst_cdf}");
        assert!(worst_pdf < 2e-6, "phi f32 worst relative error {worst_pdf}");
        assert!(normal_cdf_pdf_f32(f32::NAN).0.is_nan());
        assert_eq!(normal_cdf_pdf_f32(-100.0), (0.0, 0.0));
        assert_eq!(normal_cdf_pdf_f32(100.0), (1.0, 0.0));
        // x*x overflows here; the density's exponential must still be 0, not NaN
        for big in [1e20f32, f32::MAX] {
            assert_eq!(normal_cdf_pdf_f32(big), (1.0, 0.0));
            assert_eq!(normal_cdf_pdf_f32(-big), (0.0, 0.0));
        }
        assert_eq!(normal_cdf_pdf_f32(0.0).0, 0.5);
    }
}
