//! im2col (one image -> its columns) and col2im (columns -> one image, the adjoint),
//! parallel over rows / channel planes with rayon.
//!
//! cols[(c * KH + a) * KW + b][i * OW + j] = x_pad[c, i*sh + a*dh, j*sw + b*dw] (zero in
//! the padding). col2im gathers: element (c, h, w) sums the entries (a, b, i, j) with
//! h + ph = i*sh + a*dh and w + pw = j*sw + b*dw (no atomics, the same order every run).
//! The callers reuse one (C * KH * KW, OH * OW) buffer for every image of the batch, so
//! the columns stay small and warm instead of one batch-sized matrix.

use super::Geom;
use crate::real::Real;
use rayon::prelude::*;

/// The j < count with 0 <= off + j * step < len, as a range lo..hi.
fn inside(len: usize, off: isize, step: usize, count: usize) -> (usize, usize) {
    let st = step as isize;
    let lo = if off >= 0 { 0 } else { ((-off + st - 1) / st) as usize };
    let rest = len as isize - off;
    let hi = if rest <= 0 { 0 } else { ((rest + st - 1) / st) as usize };
    let lo = lo.min(count);
    (lo, hi.clamp(lo, count))
}

/// Writes the columns of one image `x` (C, H, W) into `cols` (C * KH * KW, OH * OW),
/// every element (the buffer is reused).
pub fn im2col_image<T: Real>(x: &[T], g: &Geom, cols: &mut [T]) {
    let l = g.oh * g.ow;
    if l == 0 || cols.is_empty() {
        return;
    }
    cols.par_chunks_mut(l).enumerate().for_each(|(row, out)| {
        let (c, a, b) = (row / (g.kh * g.kw), (row / g.kw) % g.kh, row % g.kw);
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        let w0 = (b * g.dilation.1) as isize - g.padding.1 as isize;
        for i in 0..g.oh {
            let h = (i * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
            let orow = &mut out[i * g.ow..(i + 1) * g.ow];
            if h < 0 || h >= g.h as isize {
                orow.iter_mut().for_each(|v| *v = T::ZERO);
                continue;
            }
            let src = &plane[h as usize * g.w..(h as usize + 1) * g.w];
            if g.stride.1 == 1 {
                // a contiguous run: zeros, the part inside the input, zeros
                let lo = ((-w0).max(0) as usize).min(g.ow);
                let hi = ((g.w as isize - w0).max(0) as usize).clamp(lo, g.ow);
                orow[..lo].iter_mut().for_each(|v| *v = T::ZERO);
                if lo < hi {
                    let s0 = (w0 + lo as isize) as usize;
                    orow[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                }
                orow[hi..].iter_mut().for_each(|v| *v = T::ZERO);
            } else {
                // strided: zeros, every stride-th input element of the inside part, zeros
                let (lo, hi) = inside(g.w, w0, g.stride.1, g.ow);
                orow[..lo].iter_mut().for_each(|v| *v = T::ZERO);
                orow[hi..].iter_mut().for_each(|v| *v = T::ZERO);
                if lo < hi {
                    let first = (w0 + (lo * g.stride.1) as isize) as usize;
                    let taken = src[first..].iter().step_by(g.stride.1);
                    orow[lo..hi].iter_mut().zip(taken).for_each(|(o, &v)| *o = v);
                }
            }
        }
    });
}

/// The adjoint of [`im2col_image`]: `cols` (C * KH * KW, OH * OW) -> `gx` (C, H, W),
/// every element of `gx` written.
pub fn col2im_image<T: Real>(cols: &[T], g: &Geom, gx: &mut [T]) {
    let l = g.oh * g.ow;
    if gx.is_empty() {
        return;
    }
    gx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(c, plane)| {
            plane.iter_mut().for_each(|v| *v = T::ZERO);
            for a in 0..g.kh {
                for b in 0..g.kw {
                    let src = &cols[((c * g.kh + a) * g.kw + b) * l..][..l];
                    let w0 = (b * g.dilation.1) as isize - g.padding.1 as isize;
                    for i in 0..g.oh {
                        let h = (i * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
                        if h < 0 || h >= g.h as isize {
                            continue;
                        }
                        let drow = &mut plane[h as usize * g.w..(h as usize + 1) * g.w];
                        let srow = &src[i * g.ow..(i + 1) * g.ow];
                        // the outputs j whose input column is inside, then no bounds tests
                        let (lo, hi) = inside(g.w, w0, g.stride.1, g.ow);
                        if lo < hi {
                            let first = (w0 + (lo * g.stride.1) as isize) as usize;
                            let dst = drow[first..].iter_mut().step_by(g.stride.1);
                            dst.zip(&srow[lo..hi]).for_each(|(d, &v)| *d += v);
                        }
                    }
                }
            }
        });
}
