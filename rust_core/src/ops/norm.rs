//! Normalization: layer_norm, group_norm (and instance_norm, which is group_norm with one
//! channel per group) and batch_norm, forward and backward.
//!
//! Two reductions cover them all, on the (N, C, HW) view of a row-major input:
//! * "rows" (layer_norm, group_norm): statistics over each contiguous row of
//!   `L = (C / G) * HW` elements, row r = (n, g); the affine parameters are per channel
//!   c = g * (C / G) + j / HW (layer_norm is G = 1, C = the normalized size, HW = 1).
//!   Rows run in parallel.
//! * "channels" (batch_norm): statistics per channel over the N contiguous spans
//!   x[n, c, :] of HW elements. Channels run in parallel for the statistics, samples for
//!   the elementwise passes.
//!
//! Statistics, in one pass over memory and stable for large means: a row or span is cut
//! into blocks of `STAT_BLOCK` elements that fit in L1; each block's mean (an f64-lane
//! sum) and sum of squared deviations from it come from the exact two-pass formula on the
//! cached block, and blocks merge with Chan's parallel formula in f64. No sum of squares is ever formed, so a mean of 1e4 with unit
//! spread loses nothing. The backward sums use deviations from the saved mean
//! (`sum gy * (x - mean)`), never `sum gy * x - mean * sum gy`, for the same reason.

use crate::error::Result;
use crate::real::Real;
use crate::{shape_err, value_err};
use super::map::with_capacity;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per statistics block: 16 KiB of f32, resident in L1 for the second pass.
const STAT_BLOCK: usize = 4096;
/// Accumulator lanes: independent chains that LLVM turns into SIMD registers.
const LANES: usize = 32;

/// Outputs are made with `with_capacity` and written through `spare_capacity_mut()` (no
/// zero-fill pass, which would be a full extra write); `finish` marks the n elements
/// written that way as initialised.
/// SAFETY: the caller has written every one of the first n slots.
unsafe fn finish<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.set_len(n);
    v
}

/// Run `f` compiled for the widest vector unit the CPU has (AVX-512 or the crate's AVX2
/// baseline, see map.rs); the helpers it calls are `#[inline(always)]` so they are
/// compiled with it.
#[inline(always)]
fn simd<R, F: FnOnce() -> R>(f: F) -> R {
    super::map::with_widest_isa(f)
}

/// Count, mean and sum of squared deviations of a set of values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// Chan, Golub and LeVeque's pairwise merge.
    #[inline(always)]
    pub fn merge(self, o: Moments) -> Moments {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments { n, mean: self.mean + d * (o.n / n), m2: self.m2 + o.m2 + d * d * (self.n * o.n / n) }
    }

    /// Biased variance (0 for an empty set). NaN stays NaN (a row holding NaN or inf has
    /// a NaN M2): `f64::max` would turn it into 0 and make the row finite.
    #[inline]
    pub fn var(&self) -> f64 {
        if self.n > 0.0 { clamp0(self.m2 / self.n) } else { 0.0 }
    }
}

/// max(v, 0) that keeps NaN (f64::max(NaN, 0) is 0).
#[inline(always)]
fn clamp0(v: f64) -> f64 {
    if v < 0.0 { 0.0 } else { v }
}

/// A chunks_exact(LANES) piece as a fixed-size array, so the lane loops carry no bounds
/// checks and vectorize.
#[inline(always)]
fn lanes<T: Real>(c: &[T]) -> &[T; LANES] {
    match c.try_into() {
        Ok(a) => a,
        Err(_) => unreachable!("chunks_exact yields LANES elements"),
    }
}

#[inline(always)]
fn lane_sum<T: Real>(acc: &[T; LANES]) -> T {
    let mut s = T::ZERO;
    for &a in acc {
        s += a;
    }
    s
}

/// Sum of f(v) over x with LANES accumulators (one accumulator array per loop: the form
/// LLVM's SLP vectorizer reliably turns into SIMD registers).
#[inline(always)]
fn sum_map<T: Real>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let c = lanes(c);
        for k in 0..LANES {
            acc[k] += f(c[k]);
        }
    }
    let mut s = lane_sum(&acc);
    for &v in rest {
        s += f(v);
    }
    s
}

/// Sum of x accumulated in f64 lanes (f32 values widen exactly), vectorized.
#[inline(always)]
fn sum_f64<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let c = lanes(c);
        for k in 0..LANES {
            acc[k] += c[k].to_f64();
        }
    }
    let mut s = 0f64;
    for a in acc {
        s += a;
    }
    for &v in rest {
        s += v.to_f64();
    }
    s
}

/// Moments of one cached block: the exact two-pass formula. The mean comes from an f64
/// sum (no rounding drift for large means), the squared deviations from it in T: the
/// rounding of the mean to T adds n * delta^2 to M2, far below M2's own rounding.
/// Squares of deviations past ~1.8e19 overflow f32: when the mean is finite but the T sum
/// is not, the block is summed again with f64 squares (as the numpy reference does), so
/// values of 1e20 normalize instead of giving rstd = 0. Inf or NaN in the block makes
/// the mean inf/NaN and M2 NaN (PyTorch and numpy give NaN for such a row).
#[inline(always)]
fn block_moments<T: Real>(x: &[T]) -> Moments {
    if x.is_empty() {
        return Moments::default();
    }
    let n = x.len() as f64;
    let mean = sum_f64(x) / n;
    if !mean.is_finite() {
        return Moments { n, mean, m2: f64::NAN };
    }
    let m = T::c(mean);
    let d = m.to_f64() - mean;
    let mut s2 = sum_map(x, |v| (v - m) * (v - m)).to_f64();
    if !s2.is_finite() {
        s2 = sum_f64_map(x, |v| (v.to_f64() - mean) * (v.to_f64() - mean));
        return Moments { n, mean, m2: clamp0(s2) };
    }
    Moments { n, mean, m2: clamp0(s2 - n * d * d) }
}

/// Sum of f(v) in f64 (the overflow fallback of `block_moments`: not vectorized wide).
fn sum_f64_map<T: Real>(x: &[T], f: impl Fn(T) -> f64) -> f64 {
    x.iter().map(|&v| f(v)).sum()
}

/// Moments of any contiguous slice: blocks of STAT_BLOCK merged with Chan's formula.
#[inline(always)]
pub fn moments<T: Real>(x: &[T]) -> Moments {
    // a plain loop, not Iterator::fold: fold is not inlined into the AVX2 copy of the caller
    let mut acc = Moments::default();
    for blk in x.chunks(STAT_BLOCK) {
        acc = acc.merge(block_moments(blk));
    }
    acc
}

/// (sum of g, sum of g * (x - m)) over a span, vectorized in T, in f64 where T overflows.
#[inline(always)]
fn grad_sums<T: Real>(x: &[T], g: &[T], m: T) -> (f64, f64) {
    let mut a1 = [T::ZERO; LANES];
    let mut a2 = [T::ZERO; LANES];
    let cx = x.chunks_exact(LANES);
    let cg = g.chunks_exact(LANES);
    let (rx, rg) = (cx.remainder(), cg.remainder());
    for (xc, gc) in cx.zip(cg) {
        let (xc, gc) = (lanes(xc), lanes(gc));
        let mut d = [T::ZERO; LANES];
        for k in 0..LANES {
            d[k] = xc[k] - m;
        }
        for k in 0..LANES {
            a1[k] += gc[k];
            a2[k] += gc[k] * d[k];
        }
    }
    let (mut s1, mut s2) = (lane_sum(&a1), lane_sum(&a2));
    for (&xv, &gv) in rx.iter().zip(rg) {
        s1 += gv;
        s2 += gv * (xv - m);
    }
    if s1.is_finite_() && s2.is_finite_() {
        return (s1.to_f64(), s2.to_f64());
    }
    // the T sums overflowed (deviations near T::MAX, or their products with gy): again in
    // f64, where they do not; a genuine inf or NaN in x or gy stays so
    let m64 = m.to_f64();
    x.iter().zip(g).fold((0f64, 0f64), |(a, b), (&xv, &gv)| {
        (a + gv.to_f64(), b + gv.to_f64() * (xv.to_f64() - m64))
    })
}

/// (sum w gy, sum w gy (x - mean)) over one row in f64, w per channel of `hw` elements
/// (layer_norm: hw = 1, one weight per element): the overflow fallback of rows_backward.
fn row_sums_f64<T: Real>(x: &[T], g: &[T], w: Option<&[T]>, hw: usize, m: T) -> (f64, f64) {
    let m = m.to_f64();
    let (mut a, mut b) = (0f64, 0f64);
    for (j, (&xv, &gv)) in x.iter().zip(g).enumerate() {
        let wg = w.map_or(1.0, |w| w[j / hw.max(1)].to_f64()) * gv.to_f64();
        a += wg;
        b += wg * (xv.to_f64() - m);
    }
    (a, b)
}

fn rstd_of(var: f64, eps: f64) -> f64 {
    1.0 / (var + eps).sqrt()
}

fn check_param<T>(p: Option<&[T]>, len: usize, name: &str) -> Result<()> {
    match p {
        Some(p) if p.len() != len => shape_err!("{name}: expected {len} elements, got {}", p.len()),
        _ => Ok(()),
    }
}

fn check_eps(eps: f64) -> Result<()> {
    if eps >= 0.0 { Ok(()) } else { value_err!("eps: expected a non-negative number, got {eps}") }
}

/// The (N, C, HW) / groups layout of a rows normalization.
#[derive(Clone, Copy, Debug)]
pub struct RowsLayout {
    /// samples (layer_norm: the product of the leading axes)
    pub n: usize,
    /// channels (layer_norm: the normalized size)
    pub c: usize,
    /// elements per channel (layer_norm: 1)
    pub hw: usize,
    /// groups: statistics per (sample, group)
    pub groups: usize,
}

impl RowsLayout {
    fn check(&self, len: usize) -> Result<()> {
        if self.groups == 0 || !self.c.is_multiple_of(self.groups) {
            return value_err!(
                "num_groups: expected a divisor of the number of channels {}, got {}",
                self.c,
                self.groups
            );
        }
        if self.n * self.c * self.hw != len {
            return shape_err!(
                "input: expected {} x {} x {} = {} elements, got {len}",
                self.n,
                self.c,
                self.hw,
                self.n * self.c * self.hw
            );
        }
        Ok(())
    }
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn row_len(&self) -> usize {
        self.cg() * self.hw
    }
    fn rows(&self) -> usize {
        self.n * self.groups
    }
}

/// Rows per rayon task: about 32K elements.
fn rows_per_task(row_len: usize) -> usize {
    (32768 / row_len.max(1)).max(1)
}

/// layer_norm / group_norm forward. Returns (y, mean, rstd), mean and rstd per row.
pub fn rows_forward<T: Real>(
    x: &[T],
    lay: RowsLayout,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    lay.check(x.len())?;
    check_param(weight, lay.c, "weight")?;
    check_param(bias, lay.c, "bias")?;
    check_eps(eps)?;
    let (l, rows, cg, hw, g) = (lay.row_len(), lay.rows(), lay.cg(), lay.hw, lay.groups);
    let mut y = with_capacity::<T>(x.len());
    let mut mean = vec![T::ZERO; rows];
    let mut rstd = vec![T::ZERO; rows];
    if x.is_empty() || l == 0 {
        return Ok((vec![T::ZERO; x.len()], mean, rstd));
    }
    let rpt = rows_per_task(l);
    y.spare_capacity_mut()[..x.len()].par_chunks_mut(l * rpt)
        .zip(x.par_chunks(l * rpt))
        .zip(mean.par_chunks_mut(rpt).zip(rstd.par_chunks_mut(rpt)))
        .enumerate()
        .for_each(|(task, ((yb, xb), (mb, sb)))| simd(#[inline(always)] || {
            for (i, (yr, xr)) in yb.chunks_mut(l).zip(xb.chunks(l)).enumerate() {
                let r = task * rpt + i;
                let mo = moments(xr);
                let (m, s) = (T::c(mo.mean), T::c(rstd_of(mo.var(), eps)));
                mb[i] = m;
                sb[i] = s;
                let c0 = (r % g) * cg;
                if hw == 1 {
                    // layer_norm: one parameter per element of the row
                    let w = weight.map(|w| &w[c0..c0 + l]);
                    let b = bias.map(|b| &b[c0..c0 + l]);
                    match (w, b) {
                        (Some(w), Some(b)) => {
                            for (((o, &v), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                                o.write((v - m) * s * wv + bv);
                            }
                        }
                        (Some(w), None) => {
                            for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
                                o.write((v - m) * s * wv);
                            }
                        }
                        (None, Some(b)) => {
                            for ((o, &v), &bv) in yr.iter_mut().zip(xr).zip(b) {
                                o.write((v - m) * s + bv);
                            }
                        }
                        (None, None) => {
                            for (o, &v) in yr.iter_mut().zip(xr) {
                                o.write((v - m) * s);
                            }
                        }
                    }
                } else {
                    for (k, (yc, xc)) in yr.chunks_mut(hw).zip(xr.chunks(hw)).enumerate() {
                        let scale = weight.map_or(s, |w| s * w[c0 + k]);
                        let shift = bias.map_or(T::ZERO, |b| b[c0 + k]);
                        // (x - mean) first: x * scale + (shift - mean * scale) would cancel
                        // catastrophically for large means
                        if scale.is_finite_() || !s.is_finite_() {
                            for (o, &v) in yc.iter_mut().zip(xc) {
                                o.write((v - m) * scale + shift);
                            }
                        } else {
                            // s * w overflowed (a weight near f32::MAX): ((x - mean) * s) * w
                            // + b in f64, the reference's order and precision
                            let w = weight.map_or(1.0, |w| w[c0 + k].to_f64());
                            let (m, s, b) = (m.to_f64(), s.to_f64(), shift.to_f64());
                            for (o, &v) in yc.iter_mut().zip(xc) {
                                o.write(T::c((v.to_f64() - m) * s * w + b));
                            }
                        }
                    }
                }
            }
        }));
    // SAFETY: the tasks wrote every element of every row
    let y = unsafe { finish(y, x.len()) };
    Ok((y, mean, rstd))
}

/// Column sums (in f64) of per-task partial vectors, back in T.
fn sum_partials<T: Real>(parts: &[Vec<T>], len: usize) -> Vec<T> {
    let mut acc = vec![0f64; len];
    for p in parts {
        for (a, &v) in acc.iter_mut().zip(p) {
            *a += v.to_f64();
        }
    }
    acc.into_iter().map(T::c).collect()
}

fn check_stats<T>(mean: &[T], rstd: &[T], len: usize) -> Result<()> {
    if mean.len() != len {
        return shape_err!("mean: expected {len} statistics, got {}", mean.len());
    }
    if rstd.len() != len {
        return shape_err!("rstd: expected {len} statistics, got {}", rstd.len());
    }
    Ok(())
}

pub type Grads<T> = (Vec<T>, Option<Vec<T>>, Option<Vec<T>>);

/// layer_norm / group_norm backward: (gx, gweight, gbias), the parameter gradients when
/// `weight` is given. Per row, one pass over (x, gy) gathers A = sum w gy and
/// B = sum w gy (x - mean) (and the parameter partials), a second pass over the same
/// cached row writes gx = rstd (w gy - A / L - (x - mean) rstd^2 B / L).
pub fn rows_backward<T: Real>(
    x: &[T],
    lay: RowsLayout,
    weight: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    gy: &[T],
) -> Result<Grads<T>> {
    lay.check(x.len())?;
    check_param(weight, lay.c, "weight")?;
    check_stats(mean, rstd, lay.rows())?;
    if gy.len() != x.len() {
        return shape_err!("gy: expected {} elements like input, got {}", x.len(), gy.len());
    }
    let (l, rows, cg, hw, g, c) = (lay.row_len(), lay.rows(), lay.cg(), lay.hw, lay.groups, lay.c);
    if x.is_empty() || l == 0 {
        let z = weight.map(|_| vec![T::ZERO; c]);
        return Ok((vec![T::ZERO; x.len()], z.clone(), z));
    }
    let mut gx = with_capacity::<T>(x.len());
    // few tasks (each with its own parameter partials), enough to balance the threads
    // a fixed count, not one from the thread count: the parameter partials are summed in
    // task order, so the result is the same bits whatever the number of threads
    let tasks = 256.min(rows).max(1);
    let rpt = rows.div_ceil(tasks);
    let inv_l = 1.0 / l as f64;
    let parts: Vec<(Vec<T>, Vec<T>)> = gx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(l * rpt)
        .zip(x.par_chunks(l * rpt).zip(gy.par_chunks(l * rpt)))
        .enumerate()
        .map(|(task, (gxb, (xb, gb)))| simd(#[inline(always)] || {
            let mut pw = vec![T::ZERO; if weight.is_some() { c } else { 0 }];
            let mut pb = vec![T::ZERO; pw.len()];
            for (i, ((gxr, xr), gr)) in gxb.chunks_mut(l).zip(xb.chunks(l)).zip(gb.chunks(l)).enumerate() {
                let r = task * rpt + i;
                let (m, s) = (mean[r], rstd[r]);
                let c0 = (r % g) * cg;
                let (mut a, mut b) = (0f64, 0f64);
                if hw == 1 {
                    match weight {
                        Some(w) => {
                            let w = &w[c0..c0 + l];
                            let (pwr, pbr) = (&mut pw[c0..c0 + l], &mut pb[c0..c0 + l]);
                            // sum w gy in f64: gx takes its mean off each w gy, and a
                            // row of equal w gy (1e30) must give exactly 0 there, not
                            // rstd (up to 1/sqrt(eps)) times a float32 rounding of the sum
                            let mut aa = [0f64; LANES];
                            let mut ab = [T::ZERO; LANES];
                            let whole = l / LANES * LANES;
                            for ((xc, gc), wc) in xr[..whole]
                                .chunks_exact(LANES)
                                .zip(gr[..whole].chunks_exact(LANES))
                                .zip(w[..whole].chunks_exact(LANES))
                            {
                                for k in 0..LANES {
                                    let wg = wc[k] * gc[k];
                                    aa[k] += wg.to_f64();
                                    ab[k] += wg * (xc[k] - m);
                                }
                            }
                            for j in whole..l {
                                let wg = w[j] * gr[j];
                                aa[0] += wg.to_f64();
                                ab[0] += wg * (xr[j] - m);
                            }
                            for (((pwv, pbv), &xv), &gv) in pwr.iter_mut().zip(pbr.iter_mut()).zip(xr).zip(gr) {
                                // xhat = (x - mean) rstd first: gy (x - mean) can overflow
                                *pwv += gv * ((xv - m) * s);
                                *pbv += gv;
                            }
                            a = aa.iter().sum::<f64>();
                            b = lane_sum(&ab).to_f64();
                        }
                        None => {
                            (a, b) = grad_sums(xr, gr, m);
                        }
                    }
                } else {
                    for k in 0..cg {
                        let span = k * hw..(k + 1) * hw;
                        let (db, ds) = grad_sums(&xr[span.clone()], &gr[span], m);
                        let wv = weight.map_or(1.0, |w| w[c0 + k].to_f64());
                        a += wv * db;
                        b += wv * ds;
                        if weight.is_some() {
                            pw[c0 + k] += T::c(ds * s.to_f64());
                            pb[c0 + k] += T::c(db);
                        }
                    }
                }
                if !(a.is_finite() && b.is_finite()) {
                    // the T sums overflowed (weights of 1e30 times deviations of 1e24) or
                    // the row holds inf/NaN: the sums again in f64, as numpy computes them
                    (a, b) = row_sums_f64(xr, gr, weight.map(|w| &w[c0..c0 + cg]), hw, m);
                }
                let sf = s.to_f64();
                let c1_64 = -sf * sf * b * inv_l;
                let c1 = T::c(c1_64);
                if !c1.is_finite_() && c1_64.is_finite() {
                    // c1 overflows T (weights near float32's max, rstd^2 of 1e3) although
                    // its product with x - mean cancels against w gy: the row in f64
                    let (m64, mg64) = (m.to_f64(), a * inv_l);
                    for (j, ((o, &xv), &gv)) in gxr.iter_mut().zip(xr).zip(gr).enumerate() {
                        let wv = weight.map_or(1.0, |w| w[c0 + j / hw].to_f64());
                        o.write(T::c(((wv * gv.to_f64() - mg64) + c1_64 * (xv.to_f64() - m64)) * sf));
                    }
                    continue;
                }
                // gx = rstd ((w gy - mean(w gy)) + c1 (x - mean)): the mean of w gy is taken
                // off before scaling by rstd, so that a one-element row (rstd up to
                // 1/sqrt(eps), w gy - mean exactly 0) gives exactly 0 rather than rstd
                // times a rounding error. rstd^2 (not rstd^3) in c1: for values of 1e20,
                // rstd^3 B / L is 1e-40, below f32's normal range
                let mg = T::c(a * inv_l);
                if hw == 1 {
                    match weight {
                        Some(w) => {
                            let w = &w[c0..c0 + l];
                            for (((o, &xv), &gv), &wv) in gxr.iter_mut().zip(xr).zip(gr).zip(w) {
                                o.write(((wv * gv - mg) + c1 * (xv - m)) * s);
                            }
                        }
                        None => {
                            for ((o, &xv), &gv) in gxr.iter_mut().zip(xr).zip(gr) {
                                o.write(((gv - mg) + c1 * (xv - m)) * s);
                            }
                        }
                    }
                } else {
                    for k in 0..cg {
                        let wv = weight.map_or(T::ONE, |w| w[c0 + k]);
                        let span = k * hw..(k + 1) * hw;
                        for ((o, &xv), &gv) in gxr[span.clone()].iter_mut().zip(&xr[span.clone()]).zip(&gr[span]) {
                            o.write(((wv * gv - mg) + c1 * (xv - m)) * s);
                        }
                    }
                }
            }
            (pw, pb)
        }))
        .collect();
    // SAFETY: the tasks wrote every element of every row
    let gx = unsafe { finish(gx, x.len()) };
    if weight.is_none() {
        return Ok((gx, None, None));
    }
    let (pws, pbs): (Vec<Vec<T>>, Vec<Vec<T>>) = parts.into_iter().unzip();
    Ok((gx, Some(sum_partials(&pws, c)), Some(sum_partials(&pbs, c))))
}

/// The (N, C, HW) layout of batch_norm.
#[derive(Clone, Copy, Debug)]
pub struct ChannelsLayout {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl ChannelsLayout {
    fn check(&self, len: usize) -> Result<()> {
        if self.n * self.c * self.hw != len {
            return shape_err!(
                "input: expected {} x {} x {} = {} elements, got {len}",
                self.n,
                self.c,
                self.hw,
                self.n * self.c * self.hw
            );
        }
        Ok(())
    }
    fn span<'a, T>(&self, x: &'a [T], n: usize, c: usize) -> &'a [T] {
        let o = (n * self.c + c) * self.hw;
        &x[o..o + self.hw]
    }
}

/// Running statistics of batch_norm, updated in place in training.
pub struct Running<'a, T> {
    pub mean: &'a mut [T],
    pub var: &'a mut [T],
}

/// y[n, c, :] = f(c, x[n, c, :]) for every span, samples in parallel.
fn map_spans<T: Real>(x: &[T], lay: ChannelsLayout, f: impl Fn(usize, &[T], &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let per_n = lay.c * lay.hw;
    if per_n == 0 {
        return vec![T::ZERO; x.len()];
    }
    let mut y = with_capacity::<T>(x.len());
    // tasks of whole samples, or of one sample's channels when N is small
    let span_per_task = (32768 / lay.hw.max(1)).clamp(1, lay.c.max(1));
    y.spare_capacity_mut()[..x.len()].par_chunks_mut(span_per_task * lay.hw)
        .zip(x.par_chunks(span_per_task * lay.hw))
        .enumerate()
        .for_each(|(t, (yb, xb))| simd(#[inline(always)] || {
            // task t covers spans t * span_per_task .. (chunks never straddle a sample only
            // when span_per_task divides C, so compute each span's channel on its own)
            for (i, (ys, xs)) in yb.chunks_mut(lay.hw).zip(xb.chunks(lay.hw)).enumerate() {
                let span = t * span_per_task + i;
                f(span % lay.c, xs, ys);
            }
        }));
    // SAFETY: f wrote every span (the spans tile x)
    unsafe { finish(y, x.len()) }
}

/// Spans shorter than this take the matrix path: x as N rows of W = C * HW columns
/// (BatchNorm1d's (N, C) input has spans of one element).
const SMALL_SPAN: usize = 16;

/// Columns per parallel block of the matrix path: whole channels, about 256 columns.
fn col_block(hw: usize) -> usize {
    let hw = hw.max(1); // an empty H x W has no columns, but the block must not be 0
    hw * (256 / hw).max(1)
}

/// Per-column sums down the N rows of the matrix view, over column blocks in parallel:
/// `f(block columns j0..j1, row slice(s)) ` accumulates into the block's f64 vectors.
/// Returns, per channel, what `finish(channel block sums)` makes of them.
fn column_blocks<R: Send>(
    lay: ChannelsLayout,
    per_block: impl Fn(usize, usize) -> Vec<R> + Sync,
) -> Vec<R> {
    let w = lay.c * lay.hw;
    let cb = col_block(lay.hw);
    let blocks: Vec<Vec<R>> = (0..w.div_ceil(cb))
        .into_par_iter()
        .map(|b| per_block(b * cb, (b * cb + cb).min(w)))
        .collect();
    blocks.into_iter().flatten().collect()
}

/// Per-channel moments on the matrix path: pass 1 sums each column in f64 down the rows,
/// pass 2 sums squared deviations from the channel mean (two reads of x, both streaming).
fn small_span_moments<T: Real>(x: &[T], lay: ChannelsLayout) -> Vec<Moments> {
    let (w, hw) = (lay.c * lay.hw, lay.hw);
    let count = (lay.n * hw) as f64;
    column_blocks::<Moments>(lay, |j0, j1| {
        simd(#[inline(always)] || {
            let bw = j1 - j0;
            let mut s = vec![0f64; bw];
            for n in 0..lay.n {
                for (a, &v) in s.iter_mut().zip(&x[n * w + j0..n * w + j1]) {
                    *a += v.to_f64();
                }
            }
            let chans = bw / hw;
            let means: Vec<f64> =
                (0..chans).map(|k| s[k * hw..(k + 1) * hw].iter().sum::<f64>() / count).collect();
            let colm: Vec<T> = (0..bw).map(|j| T::c(means[j / hw])).collect();
            let mut q = vec![0f64; bw];
            for n in 0..lay.n {
                for ((a, &v), &m) in q.iter_mut().zip(&x[n * w + j0..n * w + j1]).zip(&colm) {
                    // squared in f64: (1e20)^2 overflows f32
                    let d = (v - m).to_f64();
                    *a += d * d;
                }
            }
            (0..chans)
                .map(|k| {
                    let m2: f64 = q[k * hw..(k + 1) * hw].iter().sum();
                    let d = colm[k * hw].to_f64() - means[k];
                    let m2 = if means[k].is_finite() { clamp0(m2 - count * d * d) } else { f64::NAN };
                    Moments { n: count, mean: means[k], m2 }
                })
                .collect()
        })
    })
}

/// Per-channel (sum gy, sum gy (x - mean)) on the matrix path, one streaming pass.
fn small_span_grad_sums<T: Real>(x: &[T], gy: &[T], mean: &[T], lay: ChannelsLayout) -> Vec<(f64, f64)> {
    let (w, hw) = (lay.c * lay.hw, lay.hw);
    column_blocks::<(f64, f64)>(lay, |j0, j1| {
        simd(#[inline(always)] || {
            let bw = j1 - j0;
            let colm: Vec<T> = (j0..j1).map(|j| mean[j / hw]).collect();
            let (mut a, mut b) = (vec![0f64; bw], vec![0f64; bw]);
            for n in 0..lay.n {
                let (xr, gr) = (&x[n * w + j0..n * w + j1], &gy[n * w + j0..n * w + j1]);
                for ((((sa, sb), &xv), &gv), &m) in a.iter_mut().zip(b.iter_mut()).zip(xr).zip(gr).zip(&colm) {
                    *sa += gv.to_f64();
                    *sb += (gv * (xv - m)).to_f64();
                }
            }
            (0..bw / hw)
                .map(|k| {
                    let r = k * hw..(k + 1) * hw;
                    (a[r.clone()].iter().sum::<f64>(), b[r].iter().sum::<f64>())
                })
                .collect()
        })
    })
}

/// out[n, j] = k0[j] * g[n, j] + k1[j] * (x[n, j] - m[j]) + k2[j] over the matrix view
/// (per-column coefficients; g = None means g = 0), rows in parallel.
fn small_span_apply<T: Real>(x: &[T], g: Option<&[T]>, w: usize, m: &[T], k0: &[T], k1: &[T], k2: &[T]) -> Vec<T> {
    let mut out = with_capacity::<T>(x.len());
    if w == 0 {
        return vec![T::ZERO; x.len()];
    }
    let rows_per = (32768 / w).max(1);
    out.spare_capacity_mut()[..x.len()].par_chunks_mut(w * rows_per).enumerate().for_each(|(t, ob)| {
        simd(#[inline(always)] || {
            for (i, o) in ob.chunks_mut(w).enumerate() {
                let base = (t * rows_per + i) * w;
                let xr = &x[base..base + w];
                match g {
                    Some(g) => {
                        let gr = &g[base..base + w];
                        for (j, oj) in o.iter_mut().enumerate() {
                            oj.write(k0[j] * gr[j] + k1[j] * (xr[j] - m[j]) + k2[j]);
                        }
                    }
                    None => {
                        for (j, oj) in o.iter_mut().enumerate() {
                            oj.write(k1[j] * (xr[j] - m[j]) + k2[j]);
                        }
                    }
                }
            }
        })
    });
    // SAFETY: the row blocks tile the output and each row is written whole
    unsafe { finish(out, x.len()) }
}

/// A per-channel value repeated over the HW columns of each channel.
fn per_column<T: Copy>(v: impl Iterator<Item = T>, hw: usize) -> Vec<T> {
    v.flat_map(|e| std::iter::repeat_n(e, hw)).collect()
}

/// batch_norm forward. training: batch statistics (and running statistics updated with
/// `momentum` and the unbiased variance); otherwise the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<T: Real>(
    x: &[T],
    lay: ChannelsLayout,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    running: Option<Running<'_, T>>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    lay.check(x.len())?;
    check_param(weight, lay.c, "weight")?;
    check_param(bias, lay.c, "bias")?;
    check_eps(eps)?;
    if let Some(r) = &running {
        check_param(Some(&*r.mean), lay.c, "running_mean")?;
        check_param(Some(&*r.var), lay.c, "running_var")?;
    }
    let count = lay.n * lay.hw;
    let (mean, rstd): (Vec<T>, Vec<T>) = if training {
        if count <= 1 {
            return value_err!(
                "input: expected more than 1 value per channel when training, got {count}"
            );
        }
        let mom: Vec<Moments> = if lay.hw < SMALL_SPAN {
            small_span_moments(x, lay)
        } else {
            (0..lay.c)
            .into_par_iter()
            .map(|c| simd(#[inline(always)] || {
                let mut acc = Moments::default();
                for n in 0..lay.n {
                    acc = acc.merge(moments(lay.span(x, n, c)));
                }
                acc
            }))
            .collect()
        };
        if let Some(r) = running {
            let unbias = count as f64 / (count as f64 - 1.0);
            for (c, mo) in mom.iter().enumerate() {
                r.mean[c] = T::c((1.0 - momentum) * r.mean[c].to_f64() + momentum * mo.mean);
                r.var[c] = T::c((1.0 - momentum) * r.var[c].to_f64() + momentum * mo.var() * unbias);
            }
        }
        mom.iter().map(|mo| (T::c(mo.mean), T::c(rstd_of(mo.var(), eps)))).unzip()
    } else {
        match running {
            Some(r) => r
                .mean
                .iter()
                .zip(r.var.iter())
                .map(|(&m, &v)| (m, T::c(rstd_of(v.to_f64(), eps))))
                .unzip(),
            None => return value_err!("running_mean: expected running statistics when training=False"),
        }
    };
    let scale: Vec<T> = (0..lay.c).map(|c| weight.map_or(rstd[c], |w| w[c] * rstd[c])).collect();
    // a weight near f32::MAX times rstd > 1 overflows the folded scale: those channels
    // take ((x - mean) * rstd) * weight + bias in f64 below (the reference's way)
    let folded_overflows = (0..lay.c).any(|c| !scale[c].is_finite_() && rstd[c].is_finite_());
    if lay.hw < SMALL_SPAN && !folded_overflows {
        let hw = lay.hw;
        let m = per_column(mean.iter().copied(), hw);
        let k1 = per_column(scale.into_iter(), hw);
        let k2 = per_column((0..lay.c).map(|c| bias.map_or(T::ZERO, |b| b[c])), hw);
        let y = small_span_apply(x, None, lay.c * hw, &m, &k1, &k1, &k2);
        return Ok((y, mean, rstd));
    }
    let y = map_spans(x, lay, |c, xs, ys| {
        let (m, s) = (mean[c], rstd[c]);
        let shift = bias.map_or(T::ZERO, |b| b[c]);
        if scale[c].is_finite_() || !s.is_finite_() {
            for (o, &v) in ys.iter_mut().zip(xs) {
                o.write((v - m) * scale[c] + shift);
            }
        } else {
            // in f64, as the reference computes it
            let w = weight.map_or(1.0, |w| w[c].to_f64());
            let (m, s, b) = (m.to_f64(), s.to_f64(), shift.to_f64());
            for (o, &v) in ys.iter_mut().zip(xs) {
                o.write(T::c((v.to_f64() - m) * s * w + b));
            }
        }
    });
    Ok((y, mean, rstd))
}

/// batch_norm backward: (gx, gweight, gbias). Per channel, one pass over (x, gy) gives
/// db = sum gy and ds = sum gy (x - mean); a second, elementwise pass writes
/// gx = w rstd (gy - db / M - (x - mean) rstd^2 ds / M) (training) or w rstd gy.
pub fn batch_norm_backward<T: Real>(
    x: &[T],
    lay: ChannelsLayout,
    weight: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    gy: &[T],
    training: bool,
) -> Result<Grads<T>> {
    lay.check(x.len())?;
    check_param(weight, lay.c, "weight")?;
    check_stats(mean, rstd, lay.c)?;
    if gy.len() != x.len() {
        return shape_err!("gy: expected {} elements like input, got {}", x.len(), gy.len());
    }
    let need_sums = training || weight.is_some();
    let sums: Vec<(f64, f64)> = if need_sums && lay.hw < SMALL_SPAN {
        small_span_grad_sums(x, gy, mean, lay)
    } else if need_sums {
        (0..lay.c)
            .into_par_iter()
            .map(|c| simd(#[inline(always)] || {
                let m = mean[c];
                let (mut a, mut b) = (0f64, 0f64);
                for n in 0..lay.n {
                    let (s1, s2) = grad_sums(lay.span(x, n, c), lay.span(gy, n, c), m);
                    a += s1;
                    b += s2;
                }
                (a, b)
            }))
            .collect()
    } else {
        Vec::new()
    };
    let inv_m = 1.0 / (lay.n * lay.hw).max(1) as f64;
    // per channel: gx = k0 * gy + k1 * (x - mean) + k2
    let coef: Vec<(T, T, T)> = (0..lay.c)
        .map(|c| {
            let s = rstd[c].to_f64();
            let ws = weight.map_or(1.0, |w| w[c].to_f64()) * s;
            if training {
                let (db, ds) = sums[c];
                (T::c(ws), T::c(-ws * s * s * ds * inv_m), T::c(-ws * db * inv_m))
            } else {
                (T::c(ws), T::ZERO, T::ZERO)
            }
        })
        .collect();
    let per_n = lay.c * lay.hw;
    if per_n == 0 {
        let z = weight.map(|_| vec![T::ZERO; lay.c]);
        return Ok((vec![T::ZERO; x.len()], z.clone(), z));
    }
    if lay.hw < SMALL_SPAN {
        let hw = lay.hw;
        let m = per_column(mean.iter().copied(), hw);
        let k0 = per_column(coef.iter().map(|c| c.0), hw);
        let k1 = per_column(coef.iter().map(|c| c.1), hw);
        let k2 = per_column(coef.iter().map(|c| c.2), hw);
        let gx = if training {
            small_span_apply(x, Some(gy), lay.c * hw, &m, &k0, &k1, &k2)
        } else {
            // eval: gx = w * rstd * gy alone; 0 * (x - mean) would make an infinite x NaN
            gy.par_chunks(lay.c * hw).flat_map_iter(|g| g.iter().zip(&k0).map(|(&g, &k)| g * k)).collect()
        };
        if weight.is_none() {
            return Ok((gx, None, None));
        }
        let gw = sums.iter().zip(rstd).map(|(&(_, ds), &s)| T::c(ds * s.to_f64())).collect();
        let gb = sums.iter().map(|&(db, _)| T::c(db)).collect();
        return Ok((gx, Some(gw), Some(gb)));
    }
    let mut gx = with_capacity::<T>(x.len());
    {
        gx.spare_capacity_mut()[..x.len()].par_chunks_mut(lay.hw.max(1) * lay.c.min((32768 / lay.hw.max(1)).max(1)))
            .enumerate()
            .for_each(|(t, gb)| simd(#[inline(always)] || {
                let spt = lay.c.min((32768 / lay.hw.max(1)).max(1));
                for (i, gs) in gb.chunks_mut(lay.hw).enumerate() {
                    let span = t * spt + i;
                    let c = span % lay.c;
                    let o = span * lay.hw;
                    let (xs, gys) = (&x[o..o + lay.hw], &gy[o..o + lay.hw]);
                    let (k0, k1, k2) = coef[c];
                    let m = mean[c];
                    if training {
                        for ((g, &xv), &gv) in gs.iter_mut().zip(xs).zip(gys) {
                            g.write(k0 * gv + k1 * (xv - m) + k2);
                        }
                    } else {
                        for (g, &gv) in gs.iter_mut().zip(gys) {
                            g.write(k0 * gv);
                        }
                    }
                }
            }));
    }
    // SAFETY: the span blocks tile the output and each span is written whole
    let gx = unsafe { finish(gx, x.len()) };
    if weight.is_none() {
        return Ok((gx, None, None));
    }
    let gw = sums.iter().zip(rstd).map(|(&(_, ds), &s)| T::c(ds * s.to_f64())).collect();
    let gb = sums.iter().map(|&(db, _)| T::c(db)).collect();
    Ok((gx, Some(gw), Some(gb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_stats(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        (m, x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n)
    }

    #[test]
    fn moments_are_stable_for_large_means() {
        // mean 1e4, spread 1: a sum-of-squares formula in f32 would lose every digit
        let x: Vec<f32> = (0..100_003).map(|i| 1e4 + ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (m, v) = naive_stats(&x64);
        let mo = moments(&x);
        assert!((mo.mean - m).abs() < 1e-6 * m, "{} vs {m}", mo.mean);
        assert!((mo.var() - v).abs() < 1e-5 * v, "{} vs {v}", mo.var());
    }

    #[test]
    fn layer_norm_rows_match_a_direct_computation() {
        let x: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64) * 0.3 + 5.0).collect();
        let w: Vec<f64> = (0..6).map(|i| 1.0 + i as f64 * 0.1).collect();
        let b: Vec<f64> = (0..6).map(|i| i as f64 * -0.2).collect();
        let lay = RowsLayout { n: 4, c: 6, hw: 1, groups: 1 };
        let (y, mean, rstd) = rows_forward(&x, lay, Some(&w), Some(&b), 1e-5).unwrap();
        for r in 0..4 {
            let (m, v) = naive_stats(&x[r * 6..r * 6 + 6]);
            assert!((mean[r] - m).abs() < 1e-12 && (rstd[r] - 1.0 / (v + 1e-5).sqrt()).abs() < 1e-12);
            for j in 0..6 {
                let e = (x[r * 6 + j] - m) / (v + 1e-5).sqrt() * w[j] + b[j];
                assert!((y[r * 6 + j] - e).abs() < 1e-12);
            }
        }
        // a group norm with 2 groups of 3 channels of 2 elements is the same rows of 6
        let lay_g = RowsLayout { n: 2, c: 6, hw: 2, groups: 2 };
        let (_, mg, _) = rows_forward(&x, lay_g, None, None, 1e-5).unwrap();
        assert!((mg[1] - naive_stats(&x[6..12]).0).abs() < 1e-12);
        assert!(rows_forward(&x, RowsLayout { n: 2, c: 6, hw: 2, groups: 4 }, None, None, 1e-5).is_err());
        assert!(rows_forward(&x, lay, Some(&w[..5]), None, 1e-5).is_err());
    }

    #[test]
    fn rows_backward_matches_finite_differences() {
        let lay = RowsLayout { n: 2, c: 4, hw: 3, groups: 2 };
        let x: Vec<f64> = (0..24).map(|i| ((i * 5 % 13) as f64) * 0.37 - 1.0).collect();
        let w: Vec<f64> = (0..4).map(|i| 0.5 + i as f64 * 0.25).collect();
        let gy: Vec<f64> = (0..24).map(|i| ((i * 3 % 7) as f64) * 0.2 - 0.5).collect();
        let loss = |x: &[f64], w: &[f64]| -> f64 {
            let (y, _, _) = rows_forward(x, lay, Some(w), None, 1e-5).unwrap();
            y.iter().zip(&gy).map(|(a, b)| a * b).sum()
        };
        let (_, mean, rstd) = rows_forward(&x, lay, Some(&w), None, 1e-5).unwrap();
        let (gx, gw, gb) = rows_backward(&x, lay, Some(&w), &mean, &rstd, &gy).unwrap();
        let h = 1e-6;
        for i in 0..24 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h);
            assert!((gx[i] - fd).abs() < 1e-6, "gx[{i}] {} vs {fd}", gx[i]);
        }
        for i in 0..4 {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[i] += h;
            wm[i] -= h;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h);
            assert!((gw.as_ref().unwrap()[i] - fd).abs() < 1e-6);
        }
        let gb = gb.unwrap();
        let gy = &gy;
        let e: f64 = (0..2).flat_map(|n| (0..3).map(move |k| gy[n * 12 + k])).sum();
        assert!((gb[0] - e).abs() < 1e-12);
    }

    #[test]
    fn batch_norm_updates_running_stats_and_backward_matches_finite_differences() {
        let lay = ChannelsLayout { n: 3, c: 2, hw: 4 };
        let x: Vec<f64> = (0..24).map(|i| ((i * 5 % 13) as f64) * 0.37 + 3.0).collect();
        let gy: Vec<f64> = (0..24).map(|i| ((i * 3 % 7) as f64) * 0.2 - 0.5).collect();
        let w = [1.5, -0.5];
        let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
        let (_, mean, rstd) = batch_norm_forward(
            &x, lay, Some(&w), None, Some(Running { mean: &mut rm, var: &mut rv }), true, 0.1, 1e-5,
        )
        .unwrap();
        let ch: Vec<f64> = (0..3).flat_map(|n| x[n * 8..n * 8 + 4].to_vec()).collect();
        let (m, v) = naive_stats(&ch);
        assert!((mean[0] - m).abs() < 1e-12);
        assert!((rm[0] - 0.1 * m).abs() < 1e-12);
        assert!((rv[0] - (0.9 + 0.1 * v * 12.0 / 11.0)).abs() < 1e-12);
        let loss = |x: &[f64]| -> f64 {
            let (y, _, _) = batch_norm_forward(x, lay, Some(&w), None, None, true, 0.1, 1e-5).unwrap();
            y.iter().zip(&gy).map(|(a, b)| a * b).sum()
        };
        let (gx, _, _) = batch_norm_backward(&x, lay, Some(&w), &mean, &rstd, &gy, true).unwrap();
        for i in 0..24 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += 1e-6;
            xm[i] -= 1e-6;
            let fd = (loss(&xp) - loss(&xm)) / 2e-6;
            assert!((gx[i] - fd).abs() < 1e-6, "gx[{i}] {} vs {fd}", gx[i]);
        }
        let one = ChannelsLayout { n: 1, c: 2, hw: 1 };
        assert!(batch_norm_forward(&[1.0, 2.0], one, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(batch_norm_forward(&[1.0, 2.0], one, None, None, None, false, 0.1, 1e-5).is_err());
    }
}

