//! softmax and log_softmax over the last axis (rows of length `cols`), max-subtracted so
//! any finite input gives a finite result; rows run in parallel.

use super::activation::check_same_len;
use super::map::with_widest_isa;
use crate::error::Result;
use crate::real::Real;
use crate::shape_err;
use rayon::prelude::*;

fn check_rows<T>(x: &[T], cols: usize) -> Result<()> {
    if cols == 0 && !x.is_empty() || cols != 0 && !x.len().is_multiple_of(cols) {
        return shape_err!("x: {} elements are not whole rows of {cols}", x.len());
    }
    Ok(())
}

/// The row's maximum; NaN anywhere makes it NaN, so the row's result is NaN as in
/// PyTorch. Kept in 16 independent lanes: one running maximum was a chain of dependent
/// compares, scalar, and the slowest of softmax's passes (1024 x 1024 float32 softmax
/// 758 -> ~300 us).
#[inline(always)]
fn row_max<T: Real>(row: &[T]) -> T {
    const LANES: usize = 16;
    // a NaN, once taken, stays: nothing compares above it
    let take = |m: T, v: T| if v > m || v.is_nan_() { v } else { m };
    let mut acc = [T::c(f64::NEG_INFINITY); LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = take(acc[i], c[i]);
        }
    }
    let m = chunks.remainder().iter().fold(T::c(f64::NEG_INFINITY), |m, &v| take(m, v));
    acc.iter().fold(m, |m, &v| take(m, v))
}

/// Rows processed per rayon task: at least ~8K elements.
fn rows_per_task(cols: usize) -> usize {
    (8192 / cols.max(1)).max(1)
}

/// out row = f(x row), rows in parallel blocks.
fn map_rows<T: Real>(x: &[T], cols: usize, f: impl Fn(&[T], &mut [T]) + Sync) -> Result<Vec<T>> {
    check_rows(x, cols)?;
    let mut out = crate::alloc::float_zeros_or_unwind::<T>(x.len(), "a kernel buffer");
    if x.is_empty() {
        return Ok(out);
    }
    let block = cols * rows_per_task(cols);
    out.par_chunks_mut(block).zip(x.par_chunks(block)).for_each(|(ob, xb)| {
        // compiled for AVX-512 where the CPU has it: the exp pass is compute-bound
        with_widest_isa(
            #[inline(always)]
            || {
                for (o, r) in ob.chunks_mut(cols).zip(xb.chunks(cols)) {
                    f(r, o);
                }
            },
        )
    });
    Ok(out)
}

/// out row = f(y row, gy row), rows in parallel blocks.
fn map_rows2<T: Real>(
    y: &[T],
    gy: &[T],
    cols: usize,
    f: impl Fn(&[T], &[T], &mut [T]) + Sync,
) -> Result<Vec<T>> {
    check_same_len(y, gy)?;
    check_rows(y, cols)?;
    let mut out = crate::alloc::float_zeros_or_unwind::<T>(y.len(), "a kernel buffer");
    if y.is_empty() {
        return Ok(out);
    }
    let block = cols * rows_per_task(cols);
    out.par_chunks_mut(block).zip(y.par_chunks(block).zip(gy.par_chunks(block))).for_each(
        |(ob, (yb, gb))| {
            with_widest_isa(
                #[inline(always)]
                || {
                    for ((o, yr), gr) in ob.chunks_mut(cols).zip(yb.chunks(cols)).zip(gb.chunks(cols)) {
                        f(yr, gr, o);
                    }
                },
            )
        },
    );
    Ok(out)
}

/// Writes exp(x - max) into `o` and returns (max, sum of o). x - max <= 0, and terms below
/// e^-87 (relative to the row's largest, which is 1) change neither the sum nor any
/// normal-range output: `exp_flush_` serves (in f32 it flushes them to 0, with fewer
/// instructions than the gradual-underflow exp).
#[inline(always)]
fn shifted_exp<T: Real>(r: &[T], o: &mut [T]) -> (T, T) {
    let m = row_max(r);
    for (o, &v) in o.iter_mut().zip(r) {
        *o = (v - m).exp_flush_();
    }
    (m, super::reduce::pairwise_sum(o))
}

pub fn softmax_forward<T: Real>(x: &[T], cols: usize) -> Result<Vec<T>> {
    map_rows(x, cols, #[inline(always)] |r, o| {
        let (_, s) = shifted_exp(r, o);
        let inv = T::ONE / s;
        o.iter_mut().for_each(|v| *v *= inv);
    })
}

/// gx = y * (gy - sum(gy * y)) per row, given y = softmax(x).
pub fn softmax_backward<T: Real>(y: &[T], gy: &[T], cols: usize) -> Result<Vec<T>> {
    map_rows2(y, gy, cols, #[inline(always)] |yr, gr, o| {
        for ((o, &yv), &g) in o.iter_mut().zip(yr).zip(gr) {
            *o = g * yv;
        }
        let dot = super::reduce::pairwise_sum(o);
        for ((o, &yv), &g) in o.iter_mut().zip(yr).zip(gr) {
            *o = yv * (g - dot);
        }
    })
}

pub fn log_softmax_forward<T: Real>(x: &[T], cols: usize) -> Result<Vec<T>> {
    map_rows(x, cols, #[inline(always)] |r, o| {
        let (m, s) = shifted_exp(r, o);
        let lse = m + s.ln_();
        for (o, &v) in o.iter_mut().zip(r) {
            *o = v - lse;
        }
    })
}

/// gx = gy - exp(y) * sum(gy) per row, given y = log_softmax(x).
pub fn log_softmax_backward<T: Real>(y: &[T], gy: &[T], cols: usize) -> Result<Vec<T>> {
    map_rows2(y, gy, cols, #[inline(always)] |yr, gr, o| {
        let s = super::reduce::pairwise_sum(gr);
        for ((o, &yv), &g) in o.iter_mut().zip(yr).zip(gr) {
            *o = g - yv.exp_() * s;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_even_for_huge_logits() {
        let x = [1000.0f32, 0.0, -1000.0, 1e30, 1e30, -1e30];
        let y = softmax_forward(&x, 3).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        assert!((y[0] - 1.0).abs() < 1e-7 && (y[3] - 0.5).abs() < 1e-7);
        let l = log_softmax_forward(&x, 3).unwrap();
        assert_eq!(l[0], 0.0);
        assert_eq!(l[1], -1000.0);
        assert!(softmax_forward(&x, 4).is_err());
    }
}
