//! 2-D convolution (torch.nn.functional.conv2d semantics) by im2col + the `gemm` crate.
//!
//! x (N, C, H, W), w (O, C/G, KH, KW), y (N, O, OH, OW), all row-major. Image by image,
//! the columns matrix (C * KH * KW, L = OH * OW) = (G, C/G * KH * KW, L) goes into one
//! reused buffer, and one GEMM per group (the gemm crate, multithreaded) gives
//! y_n,g (O/G, L) = w_g @ cols_g in place in y; the input gradient is
//! col2im(w_g^T @ gy_n,g) (a gather, see `im2col.rs`), the weight gradient accumulates
//! gy_n,g @ cols_g^T. (A batch-wide columns matrix measured 2x slower here: 115 MB of
//! fresh pages per 3x3 layer of 16x64x56x56.)
//!
//! The other algorithms, same signatures: `naive` (the definition as loops, the test
//! reference), `winograd` (F(2x2, 3x3) and F(4x4, 3x3)), `fft` (rustfft / realfft).

pub mod fft;
pub mod im2col;
pub mod naive;
pub mod winograd;

use crate::error::Result;
use crate::ops::linear::{amax, exact_nonfinite, gemm_into, may_overflow, Mat};
use crate::real::Real;
use crate::{shape_err, value_err};
use rayon::prelude::*;

/// `n` zeros, allocated fallibly (MemoryError, ValueError past isize) and written in
/// parallel: `alloc::zeroed` fills on one thread, which for the multi-megabyte outputs
/// and columns of a layer cost ~20% of an im2col call.
pub(crate) fn zeros<T: Real>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = crate::alloc::with_capacity::<T>(n, what)?;
    v.spare_capacity_mut()[..n].par_chunks_mut(1 << 16).for_each(|c| {
        c.iter_mut().for_each(|e| {
            e.write(T::ZERO);
        })
    });
    // SAFETY: every one of the first n slots was written above
    unsafe { v.set_len(n) };
    Ok(v)
}

/// The geometry of one convolution (checked by [`Geom::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// x_shape (N, C, H, W), w_shape (O, C/G, KH, KW); errors name the argument.
    pub fn new(
        x_shape: [usize; 4],
        w_shape: [usize; 4],
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Geom> {
        let [n, c, h, w] = x_shape;
        let [o, cg, kh, kw] = w_shape;
        if stride.0 == 0 || stride.1 == 0 {
            return value_err!("stride: expected values >= 1, got {stride:?}");
        }
        if dilation.0 == 0 || dilation.1 == 0 {
            return value_err!("dilation: expected values >= 1, got {dilation:?}");
        }
        if groups == 0 || c % groups != 0 || o % groups != 0 {
            return value_err!(
                "groups: expected a positive divisor of in_channels ({c}) and out_channels ({o}), got {groups}"
            );
        }
        if cg != c / groups || kh == 0 || kw == 0 {
            return shape_err!(
                "weight: expected shape ({o}, {}, KH >= 1, KW >= 1), got {w_shape:?}",
                c / groups
            );
        }
        // checked arithmetic: a padding of 2**62 must be a ValueError, not a wrapped size
        // (and every signed index the kernels form, up to the padded size, fits isize)
        let too_big = |what: &str| -> Result<Geom> {
            value_err!(
                "{what}: input {h}x{w} with padding {padding:?}, kernel {kh}x{kw}, dilation {dilation:?} \
                 gives sizes larger than fit in memory"
            )
        };
        let dil = |d: usize, k: usize| d.checked_mul(k - 1).and_then(|v| v.checked_add(1));
        let pad = |x: usize, p: usize| {
            p.checked_mul(2).and_then(|p2| x.checked_add(p2)).filter(|&v| v <= isize::MAX as usize)
        };
        let (Some(ekh), Some(ekw)) = (dil(dilation.0, kh), dil(dilation.1, kw)) else {
            return too_big("dilation");
        };
        let (Some(hp), Some(wp)) = (pad(h, padding.0), pad(w, padding.1)) else {
            return too_big("padding");
        };
        if ekh > hp || ekw > wp {
            return shape_err!(
                "weight: the (dilated) kernel {ekh}x{ekw} is larger than the padded input {hp}x{wp}"
            );
        }
        let (oh, ow) = ((hp - ekh) / stride.0 + 1, (wp - ekw) / stride.1 + 1);
        // the output, the columns matrix and the inputs must have countable sizes; whether
        // the memory exists is for the (fallible) allocations to find out
        for dims in [[n, o, oh, ow, 1], [c, kh, kw, oh, ow], [n, c, h, w, 1], [o, cg, kh, kw, 1]] {
            if crate::alloc::checked_numel(&dims, "conv2d").is_err() {
                return too_big("padding");
            }
        }
        Ok(Geom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            padding,
            dilation,
            groups,
            oh,
            ow,
        })
    }
    pub fn l(&self) -> usize {
        self.oh * self.ow
    }
    /// rows of a group's columns matrix: C/G * KH * KW
    pub fn k(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }
}

fn check_len<T>(v: &[T], want: usize, name: &str) -> Result<()> {
    if v.len() != want {
        return shape_err!("{name}: expected {want} elements, got {}", v.len());
    }
    Ok(())
}

/// The lengths of input, weight, bias and grad_output against the geometry.
pub(crate) fn check_args<T>(x: &[T], w: &[T], bias: Option<&[T]>, gy: Option<&[T]>, g: &Geom) -> Result<()> {
    check_len(x, g.n * g.c * g.h * g.w, "input")?;
    check_len(w, g.o * g.k(), "weight")?;
    if let Some(b) = bias {
        check_len(b, g.o, "bias")?;
    }
    if let Some(gy) = gy {
        check_len(gy, g.n * g.o * g.l(), "grad_output")?;
    }
    Ok(())
}

/// gb[o] = sum over images and positions of gy[n, o].
pub(crate) fn bias_grad<T: Real>(gy: &[T], g: &Geom) -> Vec<T> {
    let l = g.l();
    (0..g.o)
        .into_par_iter()
        .map(|o| {
            (0..g.n).fold(T::ZERO, |acc, n| {
                gy[(n * g.o + o) * l..(n * g.o + o + 1) * l]
                    .iter()
                    .fold(acc, |a, &v| a + v)
            })
        })
        .collect()
}

/// y (N, O, OH, OW) = conv(x, w) + bias, image by image: y_n,g (O/G, L) =
/// w_g (O/G, K) @ cols_n,g (K, L) lands in NCHW order directly.
pub fn conv2d_forward<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Result<Vec<T>> {
    check_len(x, g.n * g.c * g.h * g.w, "input")?;
    check_len(w, g.o * g.k(), "weight")?;
    if let Some(b) = bias {
        check_len(b, g.o, "bias")?;
    }
    let (l, k, og) = (g.l(), g.k(), g.o / g.groups);
    let mut y = zeros::<T>(g.n * g.o * l, "conv2d")?;
    if let Some(b) = bias {
        y.par_chunks_mut(l)
            .enumerate()
            .for_each(|(no, row)| row.iter_mut().for_each(|v| *v = b[no % g.o]));
    }
    let mut cols = zeros::<T>(g.c * g.kh * g.kw * l, "conv2d (im2col columns)")?;
    let chw = g.c * g.h * g.w;
    let w_max = amax(w);
    for n in 0..g.n {
        let xn = &x[n * chw..(n + 1) * chw];
        im2col::im2col_image(xn, g, &mut cols);
        // the columns hold x's values and zeros: |x| bounds them
        let check = may_overflow::<T>(w_max, amax(xn), k);
        let yn = &mut y[n * g.o * l..(n + 1) * g.o * l];
        for gi in 0..g.groups {
            let a = Mat::new(&w[gi * og * k..(gi + 1) * og * k], og, k, false);
            let b = Mat::new(&cols[gi * k * l..(gi + 1) * k * l], k, l, false);
            let yg = &mut yn[gi * og * l..(gi + 1) * og * l];
            gemm_into(yg, a, b, true);
            if check {
                // overflowing products (finite x times 1e30): the exact sum, see exact_nonfinite
                exact_nonfinite(yg, a, b, |i, _| bias.map_or(T::ZERO, |bb| bb[gi * og + i]));
            }
        }
    }
    Ok(y)
}

/// direct_if_nonfinite: Winograd and FFT transform whole tiles, so one ±inf (or a product
/// overflowing inside a transform) turns every output of its tile NaN where the direct sum
/// gives ±inf at some and finite values at others. A result of theirs holding any
/// non-finite value is recomputed by im2col, the direct sum: PyTorch's answer, and the
/// cuda backend's, which runs every algo as im2col. A finite result costs one scan.
pub(crate) fn direct_if_nonfinite_forward<T: Real>(
    y: Vec<T>,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Geom,
) -> Result<Vec<T>> {
    if y.par_iter().all(|v| v.is_finite_()) {
        return Ok(y);
    }
    drop(y);
    conv2d_forward(x, w, bias, g)
}

/// The backward half of `direct_if_nonfinite_forward`: gx and gw both recomputed by im2col
/// when either is not finite everywhere (the bias gradient is the same sum in every algo).
pub(crate) fn direct_if_nonfinite_backward<T: Real>(
    grads: ConvGrads<T>,
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
) -> Result<ConvGrads<T>> {
    let finite = |v: &Vec<T>| v.par_iter().all(|a| a.is_finite_());
    if finite(&grads.0) && finite(&grads.1) {
        return Ok(grads);
    }
    let (_, _, gb) = grads;
    let (gx, gw, _) = conv2d_backward(x, w, gy, g, false)?;
    Ok((gx, gw, gb))
}

/// (gx, gw, gb): the gradients of input, weight and bias (None without a bias) that every
/// algorithm's backward returns.
pub type ConvGrads<T> = (Vec<T>, Vec<T>, Option<Vec<T>>);

/// (gx, gw, gb) for gy (N, O, OH, OW); gb is None unless `with_bias`. Image by image:
/// gw_g += gy_n,g (O/G, L) @ cols_n,g^T, gx_n = col2im(w_g^T @ gy_n,g).
pub fn conv2d_backward<T: Real>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    check_len(x, g.n * g.c * g.h * g.w, "input")?;
    check_len(w, g.o * g.k(), "weight")?;
    let (l, k, og) = (g.l(), g.k(), g.o / g.groups);
    check_len(gy, g.n * g.o * l, "grad_output")?;
    let gb = with_bias.then(|| bias_grad(gy, g));
    let chw = g.c * g.h * g.w;
    let mut gw = zeros::<T>(g.o * k, "conv2d backward")?;
    let mut gx = zeros::<T>(g.n * chw, "conv2d backward")?;
    let mut cols = zeros::<T>(g.c * g.kh * g.kw * l, "conv2d backward (im2col columns)")?;
    let mut gcols = zeros::<T>(g.c * g.kh * g.kw * l, "conv2d backward (im2col columns)")?;
    let mut gwt = zeros::<T>(k * og, "conv2d backward")?;
    let w_max = amax(w);
    for n in 0..g.n {
        let xn = &x[n * chw..(n + 1) * chw];
        im2col::im2col_image(xn, g, &mut cols);
        let gyn = &gy[n * g.o * l..(n + 1) * g.o * l];
        let gy_max = amax(gyn);
        // bounds of the two products' factors: skip the NaN scans when nothing can overflow
        let (check_w, check_x) = (may_overflow::<T>(amax(xn), gy_max, l), may_overflow::<T>(w_max, gy_max, og));
        for gi in 0..g.groups {
            let gyg = Mat::new(&gyn[gi * og * l..(gi + 1) * og * l], og, l, false);
            // gw_g^T (K x O/G) = cols_g (K x L) @ gy_n,g^T, added to gw_g transposed: the
            // gemm crate takes 3-8x longer for gy @ cols^T (it packs the transposed L x K
            // columns) than for this form (measured: 2.6 vs 0.9 ms at K=576, L=3136, O=64)
            let colg = Mat::new(&cols[gi * k * l..(gi + 1) * k * l], k, l, false);
            let gyt = Mat::new(&gyn[gi * og * l..(gi + 1) * og * l], og, l, true);
            gemm_into(&mut gwt, colg, gyt, false);
            if check_w {
                exact_nonfinite(&mut gwt, colg, gyt, |_, _| T::ZERO);
            }
            let gwg = &mut gw[gi * og * k..(gi + 1) * og * k];
            for (kk, row) in gwt.chunks_exact(og.max(1)).enumerate() {
                for (oi, &v) in row.iter().enumerate() {
                    gwg[oi * k + kk] += v;
                }
            }
            let wt = Mat::new(&w[gi * og * k..(gi + 1) * og * k], og, k, true);
            gemm_into(&mut gcols[gi * k * l..(gi + 1) * k * l], wt, gyg, false);
            if check_x {
                exact_nonfinite(&mut gcols[gi * k * l..(gi + 1) * k * l], wt, gyg, |_, _| T::ZERO);
            }
        }
        im2col::col2im_image(&gcols, g, &mut gx[n * chw..(n + 1) * chw]);
    }
    if g.n > 1 && gw.iter().any(|v| !v.is_finite_()) {
        exact_weight_grad(&mut gw, x, gy, g);
    }
    Ok((gx, gw, gb))
}

/// The non-finite entries of gw summed exactly over all images at once. Each image's
/// share is exact (`exact_nonfinite`), but adding the shares in T turns one image's
/// -inf and another's overflow to +inf into NaN where the sum over the whole batch (what
/// numpy's single GEMM over N * L columns sums exactly) is -inf. Padded taps count as
/// 0 * gy, as the im2col columns hold them (0 * inf is NaN).
fn exact_weight_grad<T: Real>(gw: &mut [T], x: &[T], gy: &[T], g: &Geom) {
    let (cg, og, l) = (g.c / g.groups, g.o / g.groups, g.l());
    let k = cg * g.kh * g.kw;
    for (idx, out) in gw.iter_mut().enumerate() {
        if out.is_finite_() {
            continue;
        }
        let (o, rem) = (idx / k, idx % k);
        let (ci, a, b) = (rem / (g.kh * g.kw), (rem / g.kw) % g.kh, rem % g.kw);
        let c = (o / og) * cg + ci;
        let mut acc = 0f64;
        for n in 0..g.n {
            let gyn = &gy[(n * g.o + o) * l..(n * g.o + o + 1) * l];
            let xc = &x[(n * g.c + c) * g.h * g.w..(n * g.c + c + 1) * g.h * g.w];
            for i in 0..g.oh {
                let h = (i * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
                for j in 0..g.ow {
                    let w = (j * g.stride.1 + b * g.dilation.1) as isize - g.padding.1 as isize;
                    let inside = h >= 0 && w >= 0 && (h as usize) < g.h && (w as usize) < g.w;
                    let xv = if inside { xc[h as usize * g.w + w as usize].to_f64() } else { 0.0 };
                    acc += gyn[i * g.ow + j].to_f64() * xv;
                }
            }
        }
        *out = T::c(acc);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The definition, one output at a time.
    pub(crate) fn direct(x: &[f64], w: &[f64], b: &[f64], g: &Geom) -> Vec<f64> {
        let (cg, og) = (g.c / g.groups, g.o / g.groups);
        let mut y = vec![0.0; g.n * g.o * g.oh * g.ow];
        for n in 0..g.n {
            for o in 0..g.o {
                for i in 0..g.oh {
                    for j in 0..g.ow {
                        let mut s = b[o];
                        for ci in 0..cg {
                            let c = (o / og) * cg + ci;
                            for a in 0..g.kh {
                                for bb in 0..g.kw {
                                    let h = (i * g.stride.0 + a * g.dilation.0) as isize
                                        - g.padding.0 as isize;
                                    let ww = (j * g.stride.1 + bb * g.dilation.1) as isize
                                        - g.padding.1 as isize;
                                    if h < 0 || ww < 0 || h >= g.h as isize || ww >= g.w as isize {
                                        continue;
                                    }
                                    s += x[((n * g.c + c) * g.h + h as usize) * g.w + ww as usize]
                                        * w[((o * cg + ci) * g.kh + a) * g.kw + bb];
                                }
                            }
                        }
                        y[((n * g.o + o) * g.oh + i) * g.ow + j] = s;
                    }
                }
            }
        }
        y
    }

    /// Seeded x, w, b and gy for geometry g.
    pub(crate) fn case(g: &Geom) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        (vals(g.n * g.c * g.h * g.w, 1), vals(g.o * g.k(), 2), vals(g.o, 3), vals(g.n * g.o * g.l(), 4))
    }

    pub(crate) fn vals(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// 3x3 stride-1 cases for Winograd: groups, odd sizes, padding 0..3, a 1x1 output.
    pub(crate) fn geoms_3x3() -> Vec<Geom> {
        let k = |x: [usize; 4], o: usize, p: (usize, usize), groups: usize| {
            Geom::new(x, [o, x[1] / groups, 3, 3], (1, 1), p, (1, 1), groups).unwrap()
        };
        vec![
            k([2, 4, 7, 6], 6, (1, 1), 2),
            k([1, 3, 9, 13], 5, (0, 2), 1),
            k([2, 2, 3, 3], 3, (0, 0), 1),
            k([1, 3, 1, 2], 3, (3, 2), 3),
            k([3, 5, 17, 10], 4, (1, 0), 1),
        ]
    }

    pub(crate) fn geoms() -> Vec<Geom> {
        vec![
            Geom::new([2, 4, 7, 6], [6, 2, 3, 3], (1, 1), (1, 1), (1, 1), 2).unwrap(),
            Geom::new([1, 3, 9, 8], [3, 1, 5, 3], (2, 1), (2, 1), (1, 2), 3).unwrap(),
            Geom::new([2, 2, 4, 4], [3, 2, 6, 6], (1, 1), (1, 1), (1, 1), 1).unwrap(),
            Geom::new([1, 2, 5, 5], [2, 2, 1, 1], (2, 3), (0, 0), (1, 1), 1).unwrap(),
        ]
    }

    #[test]
    fn conv_forward_matches_definition() {
        for g in geoms() {
            let (x, w, b, _) = case(&g);
            let y = conv2d_forward(&x, &w, Some(&b), &g).unwrap();
            let e = direct(&x, &w, &b, &g);
            for (a, e) in y.iter().zip(&e) {
                assert!((a - e).abs() < 1e-12, "{g:?}: {a} vs {e}");
            }
        }
    }

    /// <gy, conv(x, w)> is bilinear: its gradients must match the backward kernel.
    #[test]
    fn conv_backward_is_the_adjoint() {
        for g in geoms() {
            let x = vals(g.n * g.c * g.h * g.w, 4);
            let w = vals(g.o * g.k(), 5);
            let zero = vec![0.0; g.o];
            let gy = vals(g.n * g.o * g.l(), 6);
            let (gx, gw, gb) = conv2d_backward(&x, &w, &gy, &g, true).unwrap();
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            let f = |x: &[f64], w: &[f64]| dot(&gy, &direct(x, w, &zero, &g));
            // linear in x and in w: f(e_i) directions give the gradients exactly
            for i in (0..x.len()).step_by(7) {
                let mut e = vec![0.0; x.len()];
                e[i] = 1.0;
                assert!((f(&e, &w) - gx[i]).abs() < 1e-10, "{g:?} gx[{i}]");
            }
            for i in (0..w.len()).step_by(3) {
                let mut e = vec![0.0; w.len()];
                e[i] = 1.0;
                assert!((f(&x, &e) - gw[i]).abs() < 1e-10, "{g:?} gw[{i}]");
            }
            let gb = gb.unwrap();
            for o in 0..g.o {
                let want: f64 = (0..g.n)
                    .map(|n| {
                        gy[(n * g.o + o) * g.l()..(n * g.o + o + 1) * g.l()]
                            .iter()
                            .sum::<f64>()
                    })
                    .sum();
                assert!((gb[o] - want).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn conv_bad_geometry_is_an_error() {
        assert!(Geom::new([1, 3, 5, 5], [4, 3, 3, 3], (1, 1), (0, 0), (1, 1), 2).is_err());
        assert!(Geom::new([1, 1, 4, 4], [1, 1, 7, 7], (1, 1), (1, 1), (1, 1), 1).is_err());
        assert!(Geom::new([1, 1, 4, 4], [1, 1, 3, 3], (0, 1), (0, 0), (1, 1), 1).is_err());
        // sizes that overflow: ValueError, not a wrapped geometry or a panic
        for p in [1usize << 62, 1 << 31, usize::MAX / 2] {
            assert!(Geom::new([1, 1, 4, 4], [1, 1, 3, 3], (3, 3), (p, p), (1, 1), 1).is_err(), "{p}");
        }
        assert!(Geom::new([1, 1, 4, 4], [1, 1, 3, 3], (1, 1), (0, 0), (usize::MAX, 1), 1).is_err());
        // countable but impossible: the allocation refuses it (MemoryError), no abort
        let big = Geom::new([1, 1, 4, 4], [1, 1, 3, 3], (1, 1), (1 << 20, 1 << 20), (1, 1), 1).unwrap();
        assert!(conv2d_forward(&[0.0f32; 16], &[0.0; 9], None, &big).is_err());
        let g = Geom::new([1, 1, 4, 4], [1, 1, 3, 3], (1, 1), (0, 0), (1, 1), 1).unwrap();
        assert!(conv2d_forward(&[0.0f32; 15], &[0.0; 9], None, &g).is_err());
    }
}
