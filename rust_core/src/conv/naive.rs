//! Direct convolution: the definition as loops, one output (or gradient) element at a time,
//! parallel over output planes. The slow, obviously right reference the other algorithms
//! are tested against (`algo="naive"`).

use super::{ConvGrads, Geom};
use crate::alloc::zeroed;
use crate::error::Result;
use crate::real::Real;
use rayon::prelude::*;

/// The input row/column that tap `a` of output `i` reads, if it is inside the input.
#[inline]
fn src(i: usize, a: usize, s: usize, d: usize, p: usize, len: usize) -> Option<usize> {
    let v = (i * s + a * d) as isize - p as isize;
    (v >= 0 && (v as usize) < len).then_some(v as usize)
}

/// y[n, o, i, j] = b[o] + sum_{ci, a, b} x[n, g cg + ci, i sh + a dh - ph, j sw + b dw - pw]
/// w[o, ci, a, b].
pub fn naive_forward<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Result<Vec<T>> {
    super::check_args(x, w, bias, None, g)?;
    let (cg, og, l) = (g.c / g.groups, g.o / g.groups, g.l());
    let mut y = super::zeros::<T>(g.n * g.o * l, "conv2d")?;
    if l == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(l).enumerate().for_each(|(no, plane)| {
        let (n, o) = (no / g.o, no % g.o);
        let b = bias.map_or(T::ZERO, |b| b[o]);
        for i in 0..g.oh {
            for j in 0..g.ow {
                let mut s = b;
                for ci in 0..cg {
                    let c = (o / og) * cg + ci;
                    let xc = &x[(n * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let wc = &w[(o * cg + ci) * g.kh * g.kw..][..g.kh * g.kw];
                    for a in 0..g.kh {
                        let h = src(i, a, g.stride.0, g.dilation.0, g.padding.0, g.h);
                        for bb in 0..g.kw {
                            // a padded tap still multiplies its zero: 0 * NaN (or inf)
                            // weight is NaN, as in PyTorch and the other algorithms
                            let xv = match (h, src(j, bb, g.stride.1, g.dilation.1, g.padding.1, g.w)) {
                                (Some(h), Some(ww)) => xc[h * g.w + ww],
                                _ => T::ZERO,
                            };
                            s += xv * wc[a * g.kw + bb];
                        }
                    }
                }
                plane[i * g.ow + j] = s;
            }
        }
    });
    Ok(y)
}

/// (gx, gw, gb) by the definition: gx scatters every gy element into the inputs it read
/// (one task per input plane, so no two tasks write one element), gw sums gy times the
/// input each tap read (one task per (o, ci) kernel).
pub fn naive_backward<T: Real>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    super::check_args(x, w, None, Some(gy), g)?;
    let (cg, og, l, hw) = (g.c / g.groups, g.o / g.groups, g.l(), g.h * g.w);
    let kk = g.kh * g.kw;
    let mut gx = super::zeros::<T>(g.n * g.c * hw, "conv2d backward")?;
    if hw > 0 {
        gx.par_chunks_mut(hw).enumerate().for_each(|(nc, plane)| {
            let (n, c) = (nc / g.c, nc % g.c);
            let (gi, ci) = (c / cg, c % cg);
            for o in gi * og..(gi + 1) * og {
                let gyp = &gy[(n * g.o + o) * l..][..l];
                let wc = &w[(o * cg + ci) * kk..][..kk];
                for i in 0..g.oh {
                    for a in 0..g.kh {
                        let Some(h) = src(i, a, g.stride.0, g.dilation.0, g.padding.0, g.h) else {
                            continue;
                        };
                        for j in 0..g.ow {
                            for bb in 0..g.kw {
                                if let Some(ww) =
                                    src(j, bb, g.stride.1, g.dilation.1, g.padding.1, g.w)
                                {
                                    plane[h * g.w + ww] += gyp[i * g.ow + j] * wc[a * g.kw + bb];
                                }
                            }
                        }
                    }
                }
            }
        });
    }
    let mut gw = zeroed::<T>(g.o * cg * kk, "conv2d backward")?;
    if kk > 0 {
        gw.par_chunks_mut(kk).enumerate().for_each(|(oci, taps)| {
            let (o, ci) = (oci / cg, oci % cg);
            let c = (o / og) * cg + ci;
            for n in 0..g.n {
                let gyp = &gy[(n * g.o + o) * l..][..l];
                let xc = &x[(n * g.c + c) * hw..][..hw];
                for a in 0..g.kh {
                    for bb in 0..g.kw {
                        let mut s = T::ZERO;
                        for i in 0..g.oh {
                            let h = src(i, a, g.stride.0, g.dilation.0, g.padding.0, g.h);
                            for j in 0..g.ow {
                                // padded taps read 0, and 0 * a NaN / inf gradient is NaN
                                let xv = match (h, src(j, bb, g.stride.1, g.dilation.1, g.padding.1, g.w)) {
                                    (Some(h), Some(ww)) => xc[h * g.w + ww],
                                    _ => T::ZERO,
                                };
                                s += gyp[i * g.ow + j] * xv;
                            }
                        }
                        taps[a * g.kw + bb] += s;
                    }
                }
            }
        });
    }
    let gb = with_bias.then(|| super::bias_grad(gy, g));
    Ok((gx, gw, gb))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{case, direct, geoms};
    use super::*;

    #[test]
    fn naive_matches_definition_and_im2col() {
        for g in geoms() {
            let (x, w, b, gy) = case(&g);
            let y = naive_forward(&x, &w, Some(&b), &g).unwrap();
            for (a, e) in y.iter().zip(&direct(&x, &w, &b, &g)) {
                assert!((a - e).abs() < 1e-12, "{g:?}");
            }
            let (gx, gw, gb) = naive_backward(&x, &w, &gy, &g, true).unwrap();
            let (ex, ew, eb) = super::super::conv2d_backward(&x, &w, &gy, &g, true).unwrap();
            for (a, e) in gx
                .iter()
                .zip(&ex)
                .chain(gw.iter().zip(&ew))
                .chain(gb.unwrap().iter().zip(&eb.unwrap()))
            {
                assert!((a - e).abs() < 1e-10, "{g:?}: {a} vs {e}");
            }
        }
    }
}
