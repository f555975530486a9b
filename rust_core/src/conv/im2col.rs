//! im2col (x -> columns) and col2im (columns -> x, the adjoint), parallel with rayon.
//!
//! cols[(c * KH + a) * KW + b][n * L + i * OW + j] = x_pad[n, c, i*sh + a*dh, j*sw + b*dw]
//! (zero in the padding). col2im gathers: input element (n, c, h, w) sums the entries
//! (a, b, i, j) with h + ph = i*sh + a*dh and w + pw = j*sw + b*dw (no atomics, the same
//! order on every run).

use super::Geom;
use crate::real::Real;
use rayon::prelude::*;

/// The (C * KH * KW, N * OH * OW) columns matrix of x.
pub fn im2col<T: Real>(x: &[T], g: &Geom) -> Vec<T> {
    let (l, nl) = (g.oh * g.ow, g.n * g.oh * g.ow);
    let mut cols = vec![T::ZERO; g.c * g.kh * g.kw * nl];
    if nl == 0 {
        return cols;
    }
    cols.par_chunks_mut(nl).enumerate().for_each(|(row, dst)| {
        let (c, a, b) = (row / (g.kh * g.kw), (row / g.kw) % g.kh, row % g.kw);
        for n in 0..g.n {
            let plane = &x[(n * g.c + c) * g.h * g.w..(n * g.c + c + 1) * g.h * g.w];
            let out = &mut dst[n * l..(n + 1) * l];
            for i in 0..g.oh {
                let h = (i * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
                let orow = &mut out[i * g.ow..(i + 1) * g.ow];
                if h < 0 || h >= g.h as isize {
                    continue; // stays zero
                }
                let src = &plane[h as usize * g.w..(h as usize + 1) * g.w];
                let w0 = (b * g.dilation.1) as isize - g.padding.1 as isize;
                if g.stride.1 == 1 {
                    // a contiguous run: copy the part inside the input
                    let lo = (-w0).max(0) as usize;
                    let hi = ((g.w as isize - w0).max(0) as usize).min(g.ow);
                    if lo < hi {
                        let s0 = (w0 + lo as isize) as usize;
                        orow[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                    }
                } else {
                    for (j, o) in orow.iter_mut().enumerate() {
                        let ww = w0 + (j * g.stride.1) as isize;
                        if ww >= 0 && ww < g.w as isize {
                            *o = src[ww as usize];
                        }
                    }
                }
            }
        }
    });
    cols
}

/// The adjoint of [`im2col`]: (C * KH * KW, N * OH * OW) -> (N, C, H, W).
pub fn col2im<T: Real>(cols: &[T], g: &Geom) -> Vec<T> {
    let (l, nl) = (g.oh * g.ow, g.n * g.oh * g.ow);
    let mut gx = vec![T::ZERO; g.n * g.c * g.h * g.w];
    if gx.is_empty() {
        return gx;
    }
    gx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(nc, plane)| {
            let (n, c) = (nc / g.c, nc % g.c);
            for a in 0..g.kh {
                for b in 0..g.kw {
                    let src = &cols[((c * g.kh + a) * g.kw + b) * nl + n * l..][..l];
                    for i in 0..g.oh {
                        let h = (i * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
                        if h < 0 || h >= g.h as isize {
                            continue;
                        }
                        let drow = &mut plane[h as usize * g.w..(h as usize + 1) * g.w];
                        let srow = &src[i * g.ow..(i + 1) * g.ow];
                        let w0 = (b * g.dilation.1) as isize - g.padding.1 as isize;
                        for (j, &v) in srow.iter().enumerate() {
                            let ww = w0 + (j * g.stride.1) as isize;
                            if ww >= 0 && ww < g.w as isize {
                                drow[ww as usize] += v;
                            }
                        }
                    }
                }
            }
        });
    gx
}
