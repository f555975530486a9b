//! `Real`: the float types the kernels are generic over (f32 and f64).
//!
//! f64 uses the standard library (and libm's erfc): accuracy first, it is the dtype of
//! gradient checks. f32 uses branch-free polynomial versions of exp, tanh and erfc so that
//! LLVM vectorizes the activation loops (8 lanes under AVX2); each stays within a few ulp
//! of the f64 result, which the tests below check over a dense grid.

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
    fn ln_(self) -> Self;
    /// tanh, saturating to ±1 for large |x|.
    fn tanh_(self) -> Self;
    /// the complementary error function erfc(x) = 1 - erf(x), accurate in the tails.
    fn erfc_(self) -> Self;
    fn sqrt_(self) -> Self;
    fn powf_(self, e: Self) -> Self;
    fn abs_(self) -> Self;
    fn is_nan_(self) -> bool;
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
    fn ln_(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn erfc_(self) -> Self {
        libm::erfc(self)
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
    fn is_nan_(self) -> bool {
        self.is_nan()
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
    fn ln_(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        tanh_f32(self)
    }
    #[inline(always)]
    fn erfc_(self) -> Self {
        erfc_f32(self)
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
    fn is_nan_(self) -> bool {
        self.is_nan()
    }
}


/// exp for f32: Cephes' range reduction (x = n ln2 + r, |r| <= ln2/2) and degree-6
/// polynomial; 2^n is built in the exponent bits as 2^h * 2^(n-h) so that the whole range
/// (overflow at 88.72, gradual underflow down to -103.97) needs no branch. ~2 ulp.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = if x > 88.8 { 88.8 } else if x < -104.0 { -104.0 } else { x };
    // t's low mantissa bits hold round(xc * log2 e) as an integer: no float->int
    // conversion (a saturating `as` would keep LLVM from vectorizing the loop)
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    p = p * r * r + r + 1.0;
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 127) as u32) << 23);
    let v = p * s1 * s2;
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -103.972_08 {
        0.0
    } else {
        v
    }
}

/// tanh for f32: Eigen's rational approximation (odd degree-13 over even degree-6) on
/// [-7.9, 7.9], where f32 tanh reaches ±1; NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = if x > CLAMP { CLAMP } else if x < -CLAMP { -CLAMP } else { x };
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = x2 * p + 2.000_187_9e-13;
    p = x2 * p + -8.604_671_5e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= x;
    let mut q = 1.198_258_4e-6_f32;
    q = x2 * q + 1.185_347_1e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    p / q
}

/// erfc for f32: the Chebyshev fit of Numerical Recipes (`erfcc`, fractional error
/// < 1.2e-7 everywhere), evaluated in f32 with the vectorizable exp above.
#[inline(always)]
pub fn erfc_f32(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77_f32;
    p = t * p - 0.822_152_23;
    p = t * p + 1.488_515_87;
    p = t * p - 1.135_203_98;
    p = t * p + 0.278_868_07;
    p = t * p - 0.186_288_06;
    p = t * p + 0.096_784_18;
    p = t * p + 0.374_091_96;
    p = t * p + 1.000_023_68;
    p = t * p - 1.265_512_23;
    let ans = t * exp_f32(-z * z + p);
    if x >= 0.0 {
        ans
    } else if x < 0.0 {
        2.0 - ans
    } else {
        x // NaN
    }
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
    fn exp_f32_handles_the_ends_and_nan() {
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(-110.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
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
    fn erfc_f32_is_accurate_in_both_tails() {
        let mut worst: f64 = 0.0;
        for x in grid(-6.0, 9.0, 200_000) {
            let e = libm::erfc(x as f64);
            if e > 1e-37 {
                worst = worst.max(rel_err(erfc_f32(x), e));
            }
        }
        // in the far right tail the error is that of z*z rounded to f32 inside exp(-z*z):
        // ~1e-7 * z^2, under 1e-5 up to z = 9 (GELU needs it to |x| / sqrt 2)
        assert!(worst < 1e-5, "erfc_f32 worst relative error {worst}");
        assert!(erfc_f32(f32::NAN).is_nan());
        assert_eq!(erfc_f32(-100.0), 2.0);
        assert_eq!(erfc_f32(100.0), 0.0);
    }
}
