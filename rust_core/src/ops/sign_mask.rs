//! Packed sign masks: what relu and leaky_relu keep for their backward when autograd
//! records them. The forward writes y and one bit per element (x > 0); the backward reads
//! those bits instead of a saved tensor, 1/32 of the bytes of a float32 one. On 4M float32
//! elements (2-core VM, kernels alone) relu's backward from the mask took 0.42 ms against
//! 1.0 ms from the saved output: gy, gx and the mask fit the 32 MiB L3 together, gy, gx
//! and y do not. The forward costs the same with or without the mask.
//!
//! Layout: bit `i % 8` of byte `i / 8` is `x[i] > 0`, as numpy's
//! `packbits(x > 0, bitorder="little")`; the last byte's unused bits are 0.

use super::map::{linger, with_capacity, CHUNK};
use crate::error::Result;
use crate::real::Real;
use crate::shape_err;
use rayon::prelude::*;
use std::any::TypeId;
use std::mem::MaybeUninit;

/// Bytes of the mask of `n` elements.
pub fn mask_len(n: usize) -> usize {
    n.div_ceil(8)
}

/// What x <= 0 maps to: relu's 0 or leaky_relu's slope * x (and its backward's 0 or
/// slope * gy).
#[derive(Clone, Copy, Debug)]
pub enum Negative {
    Zero,
    Slope(f64),
}

impl Negative {
    /// The forward of one element, as `relu_forward` / `leaky_relu_forward` compute it
    /// (relu: `x < 0 ? 0 : x`, which keeps NaN and -0.0).
    #[inline(always)]
    fn forward<T: Real>(self, v: T, a: T) -> T {
        match self {
            Negative::Zero => {
                if v < T::ZERO {
                    T::ZERO
                } else {
                    v
                }
            }
            Negative::Slope(_) => {
                if v > T::ZERO {
                    v
                } else {
                    a * v
                }
            }
        }
    }

    #[inline(always)]
    fn backward<T: Real>(self, keep: bool, g: T, a: T) -> T {
        match (keep, self) {
            (true, _) => g,
            (false, Negative::Zero) => T::ZERO,
            (false, Negative::Slope(_)) => a * g,
        }
    }

    fn slope<T: Real>(self) -> T {
        match self {
            Negative::Zero => T::ZERO,
            Negative::Slope(s) => T::c(s),
        }
    }
}

/// y = the activation of x, and the mask of x > 0.
pub fn forward<T: Real>(x: &[T], neg: Negative) -> (Vec<T>, Vec<u8>) {
    let n = x.len();
    let nm = mask_len(n);
    let mut y: Vec<T> = with_capacity(n);
    let mut m: Vec<u8> = Vec::with_capacity(nm);
    {
        let ys = &mut y.spare_capacity_mut()[..n];
        let ms = &mut m.spare_capacity_mut()[..nm];
        if n <= CHUNK {
            forward_block(x, ys, ms, neg);
        } else {
            // CHUNK is a multiple of 8: every task but the last fills whole bytes
            ys.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .zip(ms.par_chunks_mut(CHUNK / 8))
                .for_each(|((yc, xc), mc)| forward_block(xc, yc, mc, neg));
            linger();
        }
    }
    // SAFETY: forward_block wrote all n outputs and all nm mask bytes.
    unsafe {
        y.set_len(n);
        m.set_len(nm);
    }
    (y, m)
}

/// gx = gy where the mask's bit is set, else 0 (relu) or slope * gy (leaky_relu).
pub fn backward<T: Real>(mask: &[u8], gy: &[T], neg: Negative) -> Result<Vec<T>> {
    let n = gy.len();
    if mask.len() != mask_len(n) {
        return shape_err!(
            "mask: expected {} bytes (one bit per element of gy, {n} elements), got {}",
            mask_len(n),
            mask.len()
        );
    }
    let mut gx: Vec<T> = with_capacity(n);
    {
        let gs = &mut gx.spare_capacity_mut()[..n];
        if n <= CHUNK {
            backward_block(mask, gy, gs, neg);
        } else {
            gs.par_chunks_mut(CHUNK)
                .zip(gy.par_chunks(CHUNK))
                .zip(mask.par_chunks(CHUNK / 8))
                .for_each(|((oc, gc), mc)| backward_block(mc, gc, oc, neg));
            linger();
        }
    }
    // SAFETY: backward_block wrote all n outputs.
    unsafe { gx.set_len(n) };
    Ok(gx)
}

/// `x` as f32 when T is f32 (the vector paths below are written for f32).
fn as_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 exactly when the type ids match.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { &*(x as *const [T] as *const [f32]) })
}

fn as_f32_out<T: 'static>(y: &mut [MaybeUninit<T>]) -> Option<&mut [MaybeUninit<f32>]> {
    // SAFETY: as in as_f32.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { &mut *(y as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]) })
}

fn forward_block<T: Real>(x: &[T], y: &mut [MaybeUninit<T>], m: &mut [MaybeUninit<u8>], neg: Negative) {
    let a: T = neg.slope();
    // whole bytes (8 elements) through a vector path when T is f32, the rest here
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(yf)) = (as_f32(x), as_f32_out(y)) {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the slices have the lengths avx512 expects.
            done = unsafe { avx512::forward(xf, yf, m, neg, neg.slope()) };
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2; the slices have the lengths avx2 expects.
            done = unsafe { avx2::forward(xf, yf, m, neg, neg.slope()) };
        }
    }
    for (j, mb) in m.iter_mut().enumerate().skip(done) {
        let lo = 8 * j;
        let mut byte = 0u8;
        for (i, (&v, out)) in x[lo..].iter().zip(&mut y[lo..]).take(8).enumerate() {
            out.write(neg.forward(v, a));
            byte |= ((v > T::ZERO) as u8) << i;
        }
        mb.write(byte);
    }
}

fn backward_block<T: Real>(m: &[u8], g: &[T], gx: &mut [MaybeUninit<T>], neg: Negative) {
    let a: T = neg.slope();
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let (Some(gf), Some(of)) = (as_f32(g), as_f32_out(gx)) {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2; the slices have the lengths avx2 expects.
            done = unsafe { avx2::backward(m, gf, of, neg, neg.slope()) };
        }
    }
    for (j, &byte) in m.iter().enumerate().skip(done) {
        let lo = 8 * j;
        for (i, (&v, out)) in g[lo..].iter().zip(&mut gx[lo..]).take(8).enumerate() {
            out.write(neg.backward(byte & (1 << i) != 0, v, a));
        }
    }
}

/// The f32 loops with AVX2 intrinsics, 8 elements (one mask byte) per step. Written by
/// hand because LLVM neither packs compare results into bytes nor expands bytes back
/// into lanes well from scalar code (the plain loop's backward took 6 ms on 4M elements).
/// Each function returns the number of whole mask bytes it handled.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Negative;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn forward(
        x: &[f32],
        y: &mut [MaybeUninit<f32>],
        m: &mut [MaybeUninit<u8>],
        neg: Negative,
        slope: f32,
    ) -> usize {
        let bytes = x.len() / 8;
        let (xp, yp) = (x.as_ptr(), y.as_mut_ptr() as *mut f32);
        let zero = _mm256_setzero_ps();
        let a = _mm256_set1_ps(slope);
        for (j, mb) in m.iter_mut().enumerate().take(bytes) {
            let v = _mm256_loadu_ps(xp.add(8 * j));
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(v, zero);
            let out = match neg {
                // max(0, v) returns its second operand for NaN and for -0.0, as `v < 0 ? 0 : v`
                Negative::Zero => _mm256_max_ps(zero, v),
                Negative::Slope(_) => _mm256_blendv_ps(_mm256_mul_ps(a, v), v, pos),
            };
            _mm256_storeu_ps(yp.add(8 * j), out);
            mb.write(_mm256_movemask_ps(pos) as u8);
        }
        bytes
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn backward(
        m: &[u8],
        g: &[f32],
        gx: &mut [MaybeUninit<f32>],
        neg: Negative,
        slope: f32,
    ) -> usize {
        let bytes = g.len() / 8;
        let (gp, op) = (g.as_ptr(), gx.as_mut_ptr() as *mut f32);
        // lane i tests bit i of the byte broadcast to every lane
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let a = _mm256_set1_ps(slope);
        for (j, &byte) in m.iter().enumerate().take(bytes) {
            let b = _mm256_set1_epi32(byte as i32);
            let keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(b, bit), bit));
            let v = _mm256_loadu_ps(gp.add(8 * j));
            let out = match neg {
                Negative::Zero => _mm256_and_ps(v, keep),
                Negative::Slope(_) => _mm256_blendv_ps(_mm256_mul_ps(a, v), v, keep),
            };
            _mm256_storeu_ps(op.add(8 * j), out);
        }
        bytes
    }
}

/// The f32 forward with AVX-512: a compare gives the 16 bits of two mask bytes directly
/// (AVX2 needs a movemask and a byte store per 8 elements). Measured on 4M elements, the
/// kernels alone in alternating rounds: AVX2 0.331 ms, the plain relu forward 0.301 ms;
/// AVX-512 0.273-0.278 ms, the plain forward 0.263-0.273 ms. Only the forward:
/// the backward's selection from a mask register becomes a masked load of gy, slow on
/// this Zen 5 (see map::map2_unmasked), so it stays AVX2.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Negative;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        x: &[f32],
        y: &mut [MaybeUninit<f32>],
        m: &mut [MaybeUninit<u8>],
        neg: Negative,
        slope: f32,
    ) -> usize {
        let steps = x.len() / 16;
        let (xp, yp) = (x.as_ptr(), y.as_mut_ptr() as *mut f32);
        let mp = m.as_mut_ptr() as *mut u8;
        let zero = _mm512_setzero_ps();
        let a = _mm512_set1_ps(slope);
        for j in 0..steps {
            let v = _mm512_loadu_ps(xp.add(16 * j));
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
            let out = match neg {
                // max(0, v) returns its second operand for NaN and for -0.0, as `v < 0 ? 0 : v`
                Negative::Zero => _mm512_max_ps(zero, v),
                Negative::Slope(_) => _mm512_mask_blend_ps(pos, _mm512_mul_ps(a, v), v),
            };
            _mm512_storeu_ps(yp.add(16 * j), out);
            // bytes 2j and 2j + 1, little-endian: element 16j is bit 0 of byte 2j
            std::ptr::write_unaligned(mp.add(2 * j) as *mut u16, pos.to_le());
        }
        2 * steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::activation::{leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward};

    fn inputs<T: Real>(n: usize) -> (Vec<T>, Vec<T>) {
        let special = [0.0, -0.0, f64::NAN, f64::INFINITY, -f64::INFINITY, 1e-30, -1e-30];
        let x = (0..n)
            .map(|i| T::c(if i % 11 == 0 { special[(i / 11) % special.len()] } else { ((i * 37) % 19) as f64 - 9.5 }))
            .collect();
        let g = (0..n)
            .map(|i| T::c(if i % 13 == 0 { special[(i / 13) % special.len()] } else { ((i * 7) % 5) as f64 - 2.0 }))
            .collect();
        (x, g)
    }

    fn same<T: Real>(a: &[T], b: &[T]) -> bool {
        // bit for bit, NaN included (both NaN), and -0.0 told from 0.0
        a.len() == b.len()
            && a.iter().zip(b).all(|(&p, &q)| (p.is_nan_() && q.is_nan_()) || format!("{p:?}") == format!("{q:?}"))
    }

    fn check<T: Real>() {
        for n in [0usize, 1, 7, 8, 9, 63, 64, 65, CHUNK - 1, CHUNK, CHUNK + 3, 3 * CHUNK + 13] {
            let (x, g) = inputs::<T>(n);
            let (y, m) = forward(&x, Negative::Zero);
            assert_eq!(m.len(), mask_len(n));
            for (i, &v) in x.iter().enumerate() {
                assert_eq!(m[i / 8] >> (i % 8) & 1 == 1, v > T::ZERO, "n {n}, bit {i}");
            }
            if n % 8 != 0 {
                assert_eq!(m[n / 8] >> (n % 8), 0, "unused bits are 0");
            }
            assert!(same(&y, &relu_forward(&x)), "relu forward, n {n}");
            let gx = backward(&m, &g, Negative::Zero).unwrap();
            assert!(same(&gx, &relu_backward(&x, &g).unwrap()), "relu backward, n {n}");
            for slope in [0.01, -0.5, 2.0] {
                let (y, m2) = forward(&x, Negative::Slope(slope));
                assert_eq!(m2, m);
                assert!(same(&y, &leaky_relu_forward(&x, slope)), "leaky forward, n {n}");
                let gx = backward(&m, &g, Negative::Slope(slope)).unwrap();
                assert!(same(&gx, &leaky_relu_backward(&x, &g, slope).unwrap()), "leaky backward, n {n}");
            }
        }
    }

    #[test]
    fn mask_kernels_match_the_kernels_that_read_x_f32() {
        check::<f32>();
    }

    #[test]
    fn mask_kernels_match_the_kernels_that_read_x_f64() {
        check::<f64>();
    }

    /// forward() takes the AVX-512 path where the CPU has it, so the AVX2 forward (the
    /// path of AVX2-only CPUs) is checked here directly against the scalar definition.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_forward_matches_the_scalar_loop() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for neg in [Negative::Zero, Negative::Slope(0.01), Negative::Slope(-0.5)] {
            let (x, _) = inputs::<f32>(1003);
            let mut y = vec![MaybeUninit::<f32>::uninit(); x.len()];
            let mut m = vec![MaybeUninit::<u8>::uninit(); x.len() / 8];
            // SAFETY: the CPU has AVX2; y has x's length and m one byte per 8 elements.
            let bytes = unsafe { avx2::forward(&x, &mut y, &mut m, neg, neg.slope()) };
            assert_eq!(bytes, x.len() / 8);
            let a: f32 = neg.slope();
            for (i, &v) in x.iter().enumerate().take(8 * bytes) {
                // SAFETY: the first 8 * bytes outputs and all bytes were written.
                let (yi, mb) = unsafe { (y[i].assume_init(), m[i / 8].assume_init()) };
                assert!(same(&[yi], &[neg.forward(v, a)]), "{neg:?} y[{i}]");
                assert_eq!(mb >> (i % 8) & 1 == 1, v > 0.0, "{neg:?} bit {i}");
            }
        }
    }

    #[test]
    fn a_mask_of_the_wrong_length_is_an_error() {
        let g = vec![1.0f32; 17];
        let e = backward(&[0u8; 2], &g, Negative::Zero).unwrap_err().to_string();
        assert!(e.contains("mask: expected 3 bytes"), "{e}");
    }
}
