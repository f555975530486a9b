//! 2-D pooling (max, average, and their adaptive forms) over (planes, H, W) inputs, where
//! a plane is one (n, c) image, forward and backward, planes in parallel.
//!
//! Every layer is described per spatial axis by a window table ([`Axis`]): output `o`
//! reads the input positions `start[o] + j * step`, `j < count[o]`, that fall inside
//! `[0, size)` (the others are padding). The Python side builds the tables with PyTorch's
//! output-size rules (`ferrograd/backends/_pool.py`); the kernels only trust that the
//! tables have consistent lengths (checked), and skip any position out of range, so no
//! table can make them read or write out of bounds.
//!
//! Max: the value and flat index `h * W + w` of the window's maximum, scanning the window
//! row-major; an element is taken when it is the first valid one, larger than the current
//! max, or NaN (PyTorch's `val > max || isnan(val)`: NaN propagates, ties keep the first).
//! A window with no valid element (possible only with extreme dilation) gives -inf and
//! index -1, which backward skips.

use super::map::try_zeros;
use crate::alloc::checked_numel;
use crate::error::Result;
use crate::real::Real;
use crate::{shape_err, value_err};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// The windows of one spatial axis (see the module docs).
#[derive(Debug, Clone)]
pub struct Axis {
    /// input length along this axis
    pub size: usize,
    /// first position of each output's window (may be negative: padding)
    pub start: Vec<i64>,
    /// positions per window
    pub count: Vec<i64>,
    /// distance between a window's positions (the dilation)
    pub step: i64,
    /// average pools' divisor factor along this axis, one per output
    pub factor: Vec<i64>,
}

impl Axis {
    pub fn out(&self) -> usize {
        self.start.len()
    }

    fn check(&self, name: &str) -> Result<()> {
        let n = self.start.len();
        if self.count.len() != n || self.factor.len() != n {
            return shape_err!(
                "{name}: expected start, count and factor of one length, got {}, {} and {}",
                n,
                self.count.len(),
                self.factor.len()
            );
        }
        if self.step < 1 {
            return value_err!("{name}: expected a step (dilation) >= 1, got {}", self.step);
        }
        if let Some(c) = self.count.iter().find(|&&c| c < 0) {
            return value_err!("{name}: expected window counts >= 0, got {c}");
        }
        Ok(())
    }

    /// Windows of two adjacent positions with stride 2 and no padding (the commonest
    /// layer): output o reads 2o and 2o + 1, both inside the input.
    fn is_pairs(&self) -> bool {
        self.step == 1
            && 2 * self.out() <= self.size
            && self.start.iter().enumerate().all(|(o, &s)| s == 2 * o as i64)
            && self.count.iter().all(|&c| c == 2)
    }

    /// For each output: the valid input positions of its window, in order, flattened
    /// (`pos[off[o]..off[o + 1]]`).
    fn valid(&self) -> (Vec<usize>, Vec<usize>) {
        let mut pos = Vec::new();
        let mut off = Vec::with_capacity(self.out() + 1);
        off.push(0);
        for (&s, &c) in self.start.iter().zip(&self.count) {
            // Only the j whose position s + j * step lies in [0, size): a window may be
            // far longer than the input (kernel_size 2**62), so j is not walked from 0 to c.
            // i128, because s + c * step may overflow i64.
            let (s, c, step, size) = (s as i128, c as i128, self.step as i128, self.size as i128);
            let first = if s >= 0 { 0 } else { (-s + step - 1) / step };
            let end = c.min(if size > s { (size - s + step - 1) / step } else { 0 });
            for j in first..end.max(first) {
                pos.push((s + j * step) as usize);
            }
            off.push(pos.len());
        }
        (pos, off)
    }
}

fn check_len<T>(x: &[T], expected: usize, name: &str) -> Result<()> {
    if x.len() != expected {
        return shape_err!("{name}: expected {expected} elements, got {}", x.len());
    }
    Ok(())
}

/// Max pooling: `(y, indices)` of shape (planes, rows.out, cols.out); indices only when
/// `with_indices` (forward-only calls skip writing them).
pub fn max_pool_forward<T: Real>(
    x: &[T],
    planes: usize,
    rows: &Axis,
    cols: &Axis,
    with_indices: bool,
) -> Result<(Vec<T>, Option<Vec<i64>>)> {
    rows.check("rows")?;
    cols.check("cols")?;
    let (h, w) = (rows.size, cols.size);
    check_len(x, planes * h * w, "x")?;
    let (oh, ow) = (rows.out(), cols.out());
    let plane_out = oh * ow;
    let n_out = checked_numel(&[planes, oh, ow], "max_pool2d output")?;
    let mut y = try_zeros::<T>(n_out, "max_pool2d output")?;
    let mut idx = if with_indices { Some(try_zeros::<i64>(n_out, "max_pool2d indices")?) } else { None };
    if y.is_empty() {
        return Ok((y, idx));
    }
    let (rp, ro) = rows.valid();
    let (cp, co) = cols.valid();
    let neg_inf = T::c(f64::NEG_INFINITY);
    let pairs = rows.is_pairs() && cols.is_pairs();
    let plane = |xp: &[T], yp: &mut [T], mut ip: Option<&mut [i64]>| {
        if pairs {
            // 2x2, stride 2: the same rule (first element, then larger or NaN), branch-free
            // and without bounds checks in the inner loop (exact chunks), so LLVM can keep
            // it in vector registers; on random data every comparison is a coin toss and a
            // branchy loop (an `||` or a select LLVM turned into a jump) ran 13x slower.
            #[inline(always)]
            fn max4<T: Real>(a: T, b: T, d: T, e: T, w: usize) -> (T, usize) {
                let pick = |t: bool, new: usize, old: usize| {
                    let mask = (t as usize).wrapping_neg();
                    (new & mask) | (old & !mask)
                };
                let t = (b > a) | b.is_nan_();
                let m = if t { b } else { a };
                let k = pick(t, 1, 0);
                let t = (d > m) | d.is_nan_();
                let m = if t { d } else { m };
                let k = pick(t, w, k);
                let t = (e > m) | e.is_nan_();
                (if t { e } else { m }, pick(t, w + 1, k))
            }
            for r in 0..oh {
                let r0 = &xp[2 * r * w..2 * r * w + 2 * ow];
                let r1 = &xp[(2 * r + 1) * w..(2 * r + 1) * w + 2 * ow];
                let yr = &mut yp[r * ow..(r + 1) * ow];
                let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                match ip.as_deref_mut() {
                    Some(ip) => {
                        let ir = &mut ip[r * ow..(r + 1) * ow];
                        let base = 2 * r * w;
                        for (c, ((yv, iv), (p0, p1))) in
                            yr.iter_mut().zip(ir.iter_mut()).zip(pairs).enumerate()
                        {
                            let (m, k) = max4(p0[0], p0[1], p1[0], p1[1], w);
                            *yv = m;
                            *iv = (base + 2 * c + k) as i64;
                        }
                    }
                    None => {
                        for (yv, (p0, p1)) in yr.iter_mut().zip(pairs) {
                            *yv = max4(p0[0], p0[1], p1[0], p1[1], w).0;
                        }
                    }
                }
            }
            return;
        }
        for r in 0..oh {
            let rpos = &rp[ro[r]..ro[r + 1]];
            for c in 0..ow {
                let cpos = &cp[co[c]..co[c + 1]];
                let mut m = neg_inf;
                let mut mi: i64 = -1;
                for &hh in rpos {
                    let row = &xp[hh * w..hh * w + w];
                    for &ww in cpos {
                        let v = row[ww];
                        if mi < 0 || v > m || v.is_nan_() {
                            m = v;
                            mi = (hh * w + ww) as i64;
                        }
                    }
                }
                yp[r * ow + c] = m;
                if let Some(ip) = ip.as_deref_mut() {
                    ip[r * ow + c] = mi;
                }
            }
        }
    };
    let hw = h * w;
    match idx.as_mut() {
        Some(ind) => y
            .par_chunks_mut(plane_out)
            .zip(ind.par_chunks_mut(plane_out))
            .zip(x.par_chunks(hw.max(1)))
            .for_each(|((yp, ip), xp)| plane(xp, yp, Some(ip))),
        None => y
            .par_chunks_mut(plane_out)
            .zip(x.par_chunks(hw.max(1)))
            .for_each(|(yp, xp)| plane(xp, yp, None)),
    }
    Ok((y, idx))
}

/// Max pooling backward: `gx[p, indices[p, o]] += gy[p, o]` (indices < 0 are skipped).
/// `gy` and `indices` have `plane_out` elements per plane, gx has `plane_in`.
pub fn max_pool_backward<T: Real>(
    gy: &[T],
    indices: &[i64],
    planes: usize,
    plane_out: usize,
    plane_in: usize,
) -> Result<Vec<T>> {
    check_len(gy, planes * plane_out, "gy")?;
    check_len(indices, planes * plane_out, "indices")?;
    let mut gx = super::map::zeros::<T>(planes * plane_in); // written: see map::zeros
    if gx.is_empty() || plane_out == 0 {
        return Ok(gx);
    }
    let bad = AtomicBool::new(false);
    gx.par_chunks_mut(plane_in)
        .zip(gy.par_chunks(plane_out).zip(indices.par_chunks(plane_out)))
        .for_each(|(gp, (gyp, ip))| {
            for (&g, &i) in gyp.iter().zip(ip) {
                if i >= 0 && (i as u64) < plane_in as u64 {
                    gp[i as usize] += g;
                } else if i >= 0 {
                    bad.store(true, Ordering::Relaxed);
                }
            }
        });
    if bad.load(Ordering::Relaxed) {
        return value_err!("indices: expected flat indices in [0, {plane_in}) (or -1), got a larger one");
    }
    Ok(gx)
}

/// The divisor of output (r, c): `divisor` when non-zero, else the product of the axes'
/// factors.
#[inline(always)]
fn divisor_of(rows: &Axis, cols: &Axis, r: usize, c: usize, divisor: i64) -> i64 {
    if divisor != 0 {
        divisor
    } else {
        rows.factor[r] * cols.factor[c]
    }
}

/// Average pooling: the sum of each window's valid elements divided by its divisor
/// (`divisor` when non-zero, else factor_rows * factor_cols; a zero divisor gives 0).
pub fn avg_pool_forward<T: Real>(
    x: &[T],
    planes: usize,
    rows: &Axis,
    cols: &Axis,
    divisor: i64,
) -> Result<Vec<T>> {
    rows.check("rows")?;
    cols.check("cols")?;
    let (h, w) = (rows.size, cols.size);
    check_len(x, planes * h * w, "x")?;
    let (oh, ow) = (rows.out(), cols.out());
    let plane_out = oh * ow;
    let mut y = try_zeros::<T>(checked_numel(&[planes, oh, ow], "avg_pool2d output")?, "avg_pool2d output")?;
    if y.is_empty() {
        return Ok(y);
    }
    let (rp, ro) = rows.valid();
    let (cp, co) = cols.valid();
    let pairs = rows.is_pairs() && cols.is_pairs();
    y.par_chunks_mut(plane_out).zip(x.par_chunks((h * w).max(1))).for_each(|(yp, xp)| {
        if pairs {
            // 2x2, stride 2, no padding: summed in the generic order (row-major)
            for r in 0..oh {
                let (r0, r1) = (&xp[2 * r * w..2 * r * w + w], &xp[(2 * r + 1) * w..(2 * r + 2) * w]);
                for c in 0..ow {
                    let s = r0[2 * c] + r0[2 * c + 1] + r1[2 * c] + r1[2 * c + 1];
                    let d = divisor_of(rows, cols, r, c, divisor);
                    yp[r * ow + c] = if d == 0 { T::ZERO } else { s / T::c(d as f64) };
                }
            }
            return;
        }
        for r in 0..oh {
            let rpos = &rp[ro[r]..ro[r + 1]];
            for c in 0..ow {
                let cpos = &cp[co[c]..co[c + 1]];
                let mut s = T::ZERO;
                for &hh in rpos {
                    let row = &xp[hh * w..hh * w + w];
                    for &ww in cpos {
                        s += row[ww];
                    }
                }
                let d = divisor_of(rows, cols, r, c, divisor);
                yp[r * ow + c] = if d == 0 { T::ZERO } else { s / T::c(d as f64) };
            }
        }
    });
    Ok(y)
}

/// Average pooling backward: each gy / divisor added to every valid position of its window.
pub fn avg_pool_backward<T: Real>(
    gy: &[T],
    planes: usize,
    rows: &Axis,
    cols: &Axis,
    divisor: i64,
) -> Result<Vec<T>> {
    rows.check("rows")?;
    cols.check("cols")?;
    let (h, w) = (rows.size, cols.size);
    let (oh, ow) = (rows.out(), cols.out());
    let plane_out = oh * ow;
    check_len(gy, planes * plane_out, "gy")?;
    let mut gx = super::map::zeros::<T>(planes * h * w); // written: see map::zeros
    if gx.is_empty() || plane_out == 0 {
        return Ok(gx);
    }
    let (rp, ro) = rows.valid();
    let (cp, co) = cols.valid();
    let pairs = rows.is_pairs() && cols.is_pairs();
    gx.par_chunks_mut(h * w).zip(gy.par_chunks(plane_out)).for_each(|(gp, gyp)| {
        if pairs {
            // 2x2, stride 2: disjoint windows, so each gradient is stored, not added
            for r in 0..oh {
                let (top, bottom) = gp[2 * r * w..(2 * r + 2) * w].split_at_mut(w);
                let cells = top[..2 * ow].chunks_exact_mut(2).zip(bottom[..2 * ow].chunks_exact_mut(2));
                for (c, (t, b)) in cells.enumerate() {
                    let d = divisor_of(rows, cols, r, c, divisor);
                    let g = if d == 0 { T::ZERO } else { gyp[r * ow + c] / T::c(d as f64) };
                    t[0] = g;
                    t[1] = g;
                    b[0] = g;
                    b[1] = g;
                }
            }
            return;
        }
        for r in 0..oh {
            let rpos = &rp[ro[r]..ro[r + 1]];
            for c in 0..ow {
                let d = divisor_of(rows, cols, r, c, divisor);
                if d == 0 {
                    continue;
                }
                let g = gyp[r * ow + c] / T::c(d as f64);
                for &hh in rpos {
                    let row = &mut gp[hh * w..hh * w + w];
                    for &ww in &cp[co[c]..co[c + 1]] {
                        row[ww] += g;
                    }
                }
            }
        }
    });
    Ok(gx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// max_pool2d's table: start = o*s - p, count = k, step = d.
    fn pool_axis(size: usize, k: i64, s: i64, p: i64, d: i64, out: usize) -> Axis {
        let start: Vec<i64> = (0..out as i64).map(|o| o * s - p).collect();
        let factor = start.iter().map(|&st| (st + k).min(size as i64 + p) - st).collect();
        Axis { size, start, count: vec![k; out], step: d, factor }
    }

    #[test]
    fn max_pool_2x2_values_indices_and_backward() {
        // one 4x4 plane 0..16: each 2x2 window's max is its bottom-right element
        let x: Vec<f64> = (0..16).map(|v| v as f64).collect();
        let a = pool_axis(4, 2, 2, 0, 1, 2);
        let (y, idx) = max_pool_forward(&x, 1, &a, &a, true).unwrap();
        assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0]);
        let idx = idx.unwrap();
        assert_eq!(idx, vec![5, 7, 13, 15]);
        let gx = max_pool_backward(&[1.0, 2.0, 3.0, 4.0], &idx, 1, 4, 16).unwrap();
        assert_eq!(gx[5], 1.0);
        assert_eq!(gx[15], 4.0);
        assert_eq!(gx.iter().sum::<f64>(), 10.0);
        assert!(max_pool_backward(&[1.0f64], &[16], 1, 1, 16).is_err());
    }

    #[test]
    fn max_pool_nan_wins_and_padding_never_does() {
        let x = [-5.0f32, f32::NAN, -7.0, -1.0];
        let a = pool_axis(2, 3, 1, 1, 1, 2); // k=3, p=1 over a 2-long axis
        let (y, idx) = max_pool_forward(&x, 1, &a, &a, true).unwrap();
        assert!(y.iter().all(|v| v.is_nan()));
        assert!(idx.unwrap().iter().all(|&i| i == 1));
        let x = [-5.0f32, -6.0, -7.0, -8.0];
        let (y, _) = max_pool_forward(&x, 1, &a, &a, false).unwrap();
        assert!(y.iter().all(|&v| v == -5.0));
    }

    #[test]
    fn avg_pool_counts_padding_as_asked() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let a = pool_axis(2, 2, 1, 1, 1, 3); // k=2, s=1, p=1: 3 outputs per axis
        let y = avg_pool_forward(&x, 1, &a, &a, 0).unwrap();
        assert_eq!(y[0], 1.0 / 4.0); // corner window: one element over 4 (pad counted)
        assert_eq!(y[4], 10.0 / 4.0);
        let y = avg_pool_forward(&x, 1, &a, &a, 1).unwrap();
        assert_eq!(y[4], 10.0);
        let gx = avg_pool_backward(&[4.0f64; 9], 1, &a, &a, 0).unwrap();
        assert_eq!(gx, vec![4.0; 4]); // each input sits in 4 windows of divisor 4
    }

    #[test]
    fn the_2x2_fast_path_agrees_with_the_generic_loop() {
        // an odd 5x7 plane: the 2x2 windows skip the last row and column
        let x: Vec<f32> = (0..2 * 35).map(|v| ((v * 37) % 11) as f32 - 5.0).collect();
        let (r, c) = (pool_axis(5, 2, 2, 0, 1, 2), pool_axis(7, 2, 2, 0, 1, 3));
        // the same windows, written so that the fast path does not apply (step 2, count 1
        // would differ): compare with windows given as 2 explicit counts of 1-step tables
        let mut r_slow = r.clone();
        r_slow.start.push(100); // an extra output beyond the input: not "pairs" any more
        r_slow.count.push(2);
        r_slow.factor.push(2);
        let (yf, i_f) = max_pool_forward(&x, 2, &r, &c, true).unwrap();
        let (ys, is) = max_pool_forward(&x, 2, &r_slow, &c, true).unwrap();
        let (i_f, is) = (i_f.unwrap(), is.unwrap());
        for p in 0..2 {
            for o in 0..6 {
                assert_eq!(yf[p * 6 + o], ys[p * 9 + o]);
                assert_eq!(i_f[p * 6 + o], is[p * 9 + o]);
            }
        }
        let af = avg_pool_forward(&x, 2, &r, &c, 0).unwrap();
        let as_ = avg_pool_forward(&x, 2, &r_slow, &c, 0).unwrap();
        for p in 0..2 {
            for o in 0..6 {
                assert_eq!(af[p * 6 + o], as_[p * 9 + o]);
            }
        }
    }

    #[test]
    fn inconsistent_tables_are_errors_not_panics() {
        let mut a = pool_axis(4, 2, 2, 0, 1, 2);
        a.count.pop();
        assert!(max_pool_forward(&[0.0f32; 16], 1, &a, &a, true).is_err());
        let b = pool_axis(4, 2, 2, 0, 1, 2);
        assert!(avg_pool_forward(&[0.0f32; 15], 1, &b, &b, 0).is_err());
        // a table reaching far outside the input only reads valid positions
        let c = Axis { size: 4, start: vec![-100, 100], count: vec![3, 3], step: 1, factor: vec![1, 1] };
        let (y, idx) = max_pool_forward(&[0.0f32; 16], 1, &c, &c, true).unwrap();
        assert!(y.iter().all(|v| *v == f32::NEG_INFINITY));
        assert!(idx.unwrap().iter().all(|&i| i == -1));
    }
}
