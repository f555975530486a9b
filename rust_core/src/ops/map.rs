//! Parallel elementwise maps: the engine of every bandwidth-bound kernel.
//!
//! The output is written once into uninitialised memory (no zero-fill pass), in chunks of
//! `CHUNK` elements spread over rayon's threads. Each chunk runs through a copy of the loop
//! compiled for AVX2+FMA when the CPU has them (chosen at run time, so one wheel serves
//! every x86-64 machine) and the baseline SSE2 copy otherwise.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel task: large enough to amortise scheduling, small enough that
/// two threads stay balanced on the benchmark sizes.
pub const CHUNK: usize = 1 << 15;

/// An elementwise function of one input. Closures implement it; heavy kernels are
/// structs whose `f` is `#[inline(always)]`, because LLVM will not inline a large closure
/// into the vectorized loop by itself (a call per element, measured 10x slower).
pub trait Map1<T>: Sync {
    fn f(&self, x: T) -> T;
}

/// An elementwise function of two inputs (forward input and upstream gradient).
pub trait Map2<T>: Sync {
    fn f(&self, x: T, y: T) -> T;
}

impl<T, F: Fn(T) -> T + Sync> Map1<T> for F {
    #[inline(always)]
    fn f(&self, x: T) -> T {
        self(x)
    }
}

impl<T, F: Fn(T, T) -> T + Sync> Map2<T> for F {
    #[inline(always)]
    fn f(&self, x: T, y: T) -> T {
        self(x, y)
    }
}

#[inline(always)]
fn apply1<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(f.f(v));
    }
}

#[inline(always)]
fn apply2<T: Copy, F: Map2<T>>(x: &[T], y: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        o.write(f.f(a, b));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply1_avx2<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    apply1(x, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply2_avx2<T: Copy, F: Map2<T>>(
    x: &[T],
    y: &[T],
    out: &mut [MaybeUninit<T>],
    f: &F,
) {
    apply2(x, y, out, f)
}

#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn run1<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F, avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: only called when the CPU reports AVX2 and FMA.
        return unsafe { apply1_avx2(x, out, f) };
    }
    let _ = avx2;
    apply1(x, out, f)
}

fn run2<T: Copy, F: Map2<T>>(x: &[T], y: &[T], out: &mut [MaybeUninit<T>], f: &F, avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: only called when the CPU reports AVX2 and FMA.
        return unsafe { apply2_avx2(x, y, out, f) };
    }
    let _ = avx2;
    apply2(x, y, out, f)
}

/// `f` applied to every element of `x`, in parallel.
pub fn map1<T, F>(x: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map1<T>,
{
    let n = x.len();
    let mut out: Vec<T> = Vec::with_capacity(n);
    let avx2 = has_avx2();
    {
        let spare = &mut out.spare_capacity_mut()[..n];
        if n <= CHUNK {
            run1(x, spare, &f, avx2);
        } else {
            spare
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(o, xi)| run1(xi, o, &f, avx2));
        }
    }
    // SAFETY: every one of the n slots was written above.
    unsafe { out.set_len(n) };
    out
}

/// `f(x[i], y[i])` for every i, in parallel; `x` and `y` have the same length.
pub fn map2<T, F>(x: &[T], y: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map2<T>,
{
    assert_eq!(x.len(), y.len(), "map2: operands of different lengths");
    let n = x.len();
    let mut out: Vec<T> = Vec::with_capacity(n);
    let avx2 = has_avx2();
    {
        let spare = &mut out.spare_capacity_mut()[..n];
        if n <= CHUNK {
            run2(x, y, spare, &f, avx2);
        } else {
            spare
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
                .for_each(|(o, (xi, yi))| run2(xi, yi, o, &f, avx2));
        }
    }
    // SAFETY: every one of the n slots was written above.
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map1_and_map2_cover_every_element_across_chunks() {
        for n in [0usize, 1, 7, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let y = map1(&x, |v| 2.0 * v + 1.0);
            assert!(y.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f64 + 1.0));
            let z = map2(&x, &y, |a, b| b - a);
            assert!(z.iter().enumerate().all(|(i, &v)| v == i as f64 + 1.0));
        }
    }
}
