//! FFT convolution (realfft for the rows, rustfft for the columns), for large kernels.
//!
//! Correlation with the (dilated) kernel is a product of 2-D spectra on a grid Hf x Wf at
//! least as large as the padded input (rounded up to a size with factors 2, 3, 5, 7 only):
//! no circular wrap-around reaches an output that is kept. Every pass computes the
//! stride-1 result and keeps every stride-th value (for stride > 1 that wastes work;
//! `auto` sends strided convolutions to im2col):
//!
//! * forward: Y[n,o] = sum_c X[n,c] conj(W[o,c]), y = crop(ifft(Y))[::s] + b
//! * input gradient: a convolution, GX[n,c] = sum_o GY[n,o] W[o,c] with gy spread on the
//!   stride-1 grid, gx = the padded-input window of ifft(GX)
//! * weight gradient: a correlation, GW[o,c] = sum_n X[n,c] conj(GY[n,o]), gw = ifft(GW)
//!   at the dilated taps
//!
//! A spectrum is stored column-major ((Wf / 2 + 1) columns of Hf values) so the column
//! FFTs run on contiguous data; planes run in parallel (rayon), each with its own scratch.

use super::{ConvGrads, Geom};
use crate::alloc::{checked_numel, zeroed};
use crate::error::Result;
use crate::real::Real;
use rayon::prelude::*;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftNum, FftPlanner};
use std::sync::Arc;

/// The float types the FFT kernels run on: `Real` and rustfft's `FftNum` (f32, f64).
pub trait FftReal: Real + FftNum {}
impl<T: Real + FftNum> FftReal for T {}

/// The smallest n >= len whose only prime factors are 2 and 3: rustfft's fastest sizes
/// (measured: a 70 = 2 5 7 grid took longer than a 72 one, 75 longer than 80).
/// Found among the 2^a 3^b directly (no linear search: a padding of 2**40 would make
/// that search run for hours).
fn good_size(len: usize) -> usize {
    let len = len.max(1);
    let mut best = usize::MAX;
    let mut p3: usize = 1;
    loop {
        let mut v = p3;
        while v < len {
            match v.checked_mul(2) {
                Some(x) => v = x,
                None => {
                    v = usize::MAX;
                    break;
                }
            }
        }
        best = best.min(v);
        if p3 >= len {
            break;
        }
        match p3.checked_mul(3) {
            Some(x) => p3 = x,
            None => break,
        }
    }
    best
}

/// The plans of one 2-D real FFT size.
struct Fft2<T: FftReal> {
    hf: usize,
    wf: usize,
    wc: usize,
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    col_fwd: Arc<dyn Fft<T>>,
    col_inv: Arc<dyn Fft<T>>,
}

/// One task's buffers for [`Fft2`]: the real grid, the row spectra, scratch.
struct Work<T> {
    grid: Vec<T>,
    rows: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

impl<T: FftReal> Fft2<T> {
    fn new(hf: usize, wf: usize) -> Self {
        let mut rp = RealFftPlanner::<T>::new();
        let mut cp = FftPlanner::<T>::new();
        Fft2 {
            hf,
            wf,
            wc: wf / 2 + 1,
            r2c: rp.plan_fft_forward(wf),
            c2r: rp.plan_fft_inverse(wf),
            col_fwd: cp.plan_fft_forward(hf),
            col_inv: cp.plan_fft_inverse(hf),
        }
    }
    fn len(&self) -> usize {
        self.wc * self.hf
    }
    fn work(&self) -> Work<T> {
        let n = [
            self.r2c.get_scratch_len(),
            self.c2r.get_scratch_len(),
            self.col_fwd.get_inplace_scratch_len(),
            self.col_inv.get_inplace_scratch_len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Work {
            grid: vec![T::ZERO; self.hf * self.wf],
            rows: vec![Complex::new(T::ZERO, T::ZERO); self.len()],
            scratch: vec![Complex::new(T::ZERO, T::ZERO); n],
        }
    }

    /// Whether one thread's workspaces (a `Work` and an accumulator spectrum) can be had
    /// for every rayon thread: asked fallibly before the parallel loops, whose
    /// `for_each_init` cannot return an error (a padding of 10**6 makes 4e12-point grids).
    fn check_work(&self) -> Result<()> {
        let what = "conv2d (fft workspace)";
        let per = checked_numel(&[self.hf, self.wf], what)?
            .checked_add(checked_numel(&[self.len(), 4], what)?)
            .ok_or_else(|| crate::error::FerroError::Value(format!("{what}: sizes overflow")))?;
        let all = checked_numel(&[per, rayon::current_num_threads().max(1)], what)?;
        // a reservation of the bytes (as T-sized slots), dropped at once
        drop(crate::alloc::with_capacity::<T>(all, what)?);
        Ok(())
    }

    /// The spectrum of `plane` (rows x cols) placed with element (i, j) at
    /// (i * step.0, j * step.1) + offset on the zero grid, into `out` (column-major).
    fn forward(
        &self,
        plane: &[T],
        (rows, cols): (usize, usize),
        step: (usize, usize),
        off: (usize, usize),
        wk: &mut Work<T>,
        out: &mut [Complex<T>],
    ) {
        let (hf, wf, wc) = (self.hf, self.wf, self.wc);
        wk.grid.iter_mut().for_each(|v| *v = T::ZERO);
        for i in 0..rows {
            let r = off.0 + i * step.0;
            for j in 0..cols {
                wk.grid[r * wf + off.1 + j * step.1] = plane[i * cols + j];
            }
        }
        for r in 0..hf {
            let spec = &mut wk.rows[r * wc..][..wc];
            let in_plane = r >= off.0 && (r - off.0).is_multiple_of(step.0) && (r - off.0) / step.0 < rows;
            if !in_plane {
                spec.iter_mut()
                    .for_each(|v| *v = Complex::new(T::ZERO, T::ZERO));
                continue;
            }
            let row = &mut wk.grid[r * wf..][..wf];
            let _ = self.r2c.process_with_scratch(row, spec, &mut wk.scratch);
        }
        for r in 0..hf {
            for k in 0..wc {
                out[k * hf + r] = wk.rows[r * wc + k];
            }
        }
        self.col_fwd.process_with_scratch(out, &mut wk.scratch);
    }

    /// The real grid (Hf x Wf, times Hf * Wf: unnormalized) of spectrum `spec` (consumed),
    /// in `wk.grid`.
    fn inverse(&self, spec: &mut [Complex<T>], wk: &mut Work<T>) {
        let (hf, wf, wc) = (self.hf, self.wf, self.wc);
        self.col_inv.process_with_scratch(spec, &mut wk.scratch);
        for k in 0..wc {
            for r in 0..hf {
                wk.rows[r * wc + k] = spec[k * hf + r];
            }
        }
        for r in 0..hf {
            let row = &mut wk.rows[r * wc..][..wc];
            // a real signal's spectrum is real at 0 (and at Wf/2); drop the rounding noise
            row[0].im = T::ZERO;
            if wf % 2 == 0 {
                row[wc - 1].im = T::ZERO;
            }
            let _ =
                self.c2r
                    .process_with_scratch(row, &mut wk.grid[r * wf..][..wf], &mut wk.scratch);
        }
    }
}

/// acc += a * b (or a * conj(b)), elementwise.
fn mac<T: FftReal>(acc: &mut [Complex<T>], a: &[Complex<T>], b: &[Complex<T>], conj_b: bool) {
    if conj_b {
        for ((s, x), y) in acc.iter_mut().zip(a).zip(b) {
            s.re += x.re * y.re + x.im * y.im;
            s.im += x.im * y.re - x.re * y.im;
        }
    } else {
        for ((s, x), y) in acc.iter_mut().zip(a).zip(b) {
            s.re += x.re * y.re - x.im * y.im;
            s.im += x.im * y.re + x.re * y.im;
        }
    }
}

/// Spectra of `count` planes of `src` (each rows x cols), placed as in [`Fft2::forward`].
fn spectra<T: FftReal>(
    f: &Fft2<T>,
    src: &[T],
    count: usize,
    dims: (usize, usize),
    step: (usize, usize),
    off: (usize, usize),
) -> Result<Vec<Complex<T>>> {
    let s = f.len();
    let n = checked_numel(&[count, s], "conv2d (fft spectra)")?;
    let mut out = crate::alloc::filled(n, Complex::new(T::ZERO, T::ZERO), "conv2d (fft spectra)")?;
    let pl = dims.0 * dims.1;
    out.par_chunks_mut(s).enumerate().for_each_init(
        || f.work(),
        |wk, (i, spec)| f.forward(&src[i * pl..][..pl], dims, step, off, wk, spec),
    );
    Ok(out)
}

/// The FFT size of the padded input; its grid must be allocatable (checked before the
/// plans, whose twiddle tables rustfft allocates infallibly).
fn plan<T: FftReal>(g: &Geom) -> Result<Fft2<T>> {
    let (hf, wf) = (good_size(g.h + 2 * g.padding.0), good_size(g.w + 2 * g.padding.1));
    let what = "conv2d (fft grid)";
    drop(crate::alloc::with_capacity::<T>(checked_numel(&[hf, wf], what)?, what)?);
    Ok(Fft2::new(hf, wf))
}

/// y (N, O, OH, OW) = conv(x, w) + bias by FFT (a result that is not finite everywhere is
/// the direct sum's: `super::direct_if_nonfinite`).
pub fn fft_forward<T: FftReal>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Result<Vec<T>> {
    let y = fft_grid_forward(x, w, bias, g)?;
    super::direct_if_nonfinite_forward(y, x, w, bias, g)
}

fn fft_grid_forward<T: FftReal>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Result<Vec<T>> {
    super::check_args(x, w, bias, None, g)?;
    let (cg, og, l) = (g.c / g.groups, g.o / g.groups, g.l());
    let mut y = super::zeros::<T>(g.n * g.o * l, "conv2d")?;
    if y.is_empty() {
        return Ok(y);
    }
    let f = plan::<T>(g)?;
    f.check_work()?;
    let s = f.len();
    let xs = spectra(&f, x, g.n * g.c, (g.h, g.w), (1, 1), g.padding)?;
    let ws = spectra(&f, w, g.o * cg, (g.kh, g.kw), g.dilation, (0, 0))?;
    let scale = T::ONE / T::c((f.hf * f.wf) as f64);
    y.par_chunks_mut(l).enumerate().for_each_init(
        || (f.work(), vec![Complex::new(T::ZERO, T::ZERO); s]),
        |(wk, acc), (no, plane)| {
            let (n, o) = (no / g.o, no % g.o);
            let gi = o / og;
            acc.iter_mut()
                .for_each(|v| *v = Complex::new(T::ZERO, T::ZERO));
            for ci in 0..cg {
                let xc = &xs[(n * g.c + gi * cg + ci) * s..][..s];
                mac(acc, xc, &ws[(o * cg + ci) * s..][..s], true);
            }
            f.inverse(acc, wk);
            let b = bias.map_or(T::ZERO, |b| b[o]);
            for i in 0..g.oh {
                let row = &wk.grid[i * g.stride.0 * f.wf..];
                for j in 0..g.ow {
                    plane[i * g.ow + j] = row[j * g.stride.1] * scale + b;
                }
            }
        },
    );
    Ok(y)
}

/// (gx, gw, gb) by FFT; gb is None unless `with_bias` (gradients that are not finite
/// everywhere are the direct sum's: `super::direct_if_nonfinite`).
pub fn fft_backward<T: FftReal>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    let grads = fft_grid_backward(x, w, gy, g, with_bias)?;
    super::direct_if_nonfinite_backward(grads, x, w, gy, g)
}

fn fft_grid_backward<T: FftReal>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    super::check_args(x, w, None, Some(gy), g)?;
    let (cg, og, hw, kk) = (g.c / g.groups, g.o / g.groups, g.h * g.w, g.kh * g.kw);
    let gb = with_bias.then(|| super::bias_grad(gy, g));
    let mut gx = super::zeros::<T>(g.n * g.c * hw, "conv2d backward")?;
    let mut gw = zeroed::<T>(g.o * cg * kk, "conv2d backward")?;
    if g.n == 0 || g.c == 0 || hw == 0 {
        return Ok((gx, gw, gb));
    }
    let f = plan::<T>(g)?;
    f.check_work()?;
    let s = f.len();
    let scale = T::ONE / T::c((f.hf * f.wf) as f64);
    let gys = spectra(&f, gy, g.n * g.o, (g.oh, g.ow), g.stride, (0, 0))?;
    let ws = spectra(&f, w, g.o * cg, (g.kh, g.kw), g.dilation, (0, 0))?;
    gx.par_chunks_mut(hw).enumerate().for_each_init(
        || (f.work(), vec![Complex::new(T::ZERO, T::ZERO); s]),
        |(wk, acc), (nc, plane)| {
            let (n, c) = (nc / g.c, nc % g.c);
            let (gi, ci) = (c / cg, c % cg);
            acc.iter_mut()
                .for_each(|v| *v = Complex::new(T::ZERO, T::ZERO));
            for o in gi * og..(gi + 1) * og {
                mac(
                    acc,
                    &gys[(n * g.o + o) * s..][..s],
                    &ws[(o * cg + ci) * s..][..s],
                    false,
                );
            }
            f.inverse(acc, wk);
            for h in 0..g.h {
                let row = &wk.grid[(h + g.padding.0) * f.wf + g.padding.1..][..g.w];
                for (d, &v) in plane[h * g.w..][..g.w].iter_mut().zip(row) {
                    *d = v * scale;
                }
            }
        },
    );
    drop(ws);
    let xs = spectra(&f, x, g.n * g.c, (g.h, g.w), (1, 1), g.padding)?;
    gw.par_chunks_mut(kk).enumerate().for_each_init(
        || (f.work(), vec![Complex::new(T::ZERO, T::ZERO); s]),
        |(wk, acc), (oci, taps)| {
            let (o, ci) = (oci / cg, oci % cg);
            let c = (o / og) * cg + ci;
            acc.iter_mut()
                .for_each(|v| *v = Complex::new(T::ZERO, T::ZERO));
            for n in 0..g.n {
                mac(
                    acc,
                    &xs[(n * g.c + c) * s..][..s],
                    &gys[(n * g.o + o) * s..][..s],
                    true,
                );
            }
            f.inverse(acc, wk);
            for a in 0..g.kh {
                for b in 0..g.kw {
                    taps[a * g.kw + b] =
                        wk.grid[a * g.dilation.0 * f.wf + b * g.dilation.1] * scale;
                }
            }
        },
    );
    Ok((gx, gw, gb))
}

#[cfg(test)]
mod tests {
    use super::super::naive;
    use super::super::tests::{case, geoms};
    use super::*;

    #[test]
    fn good_sizes() {
        assert_eq!(good_size(74), 81);
        assert_eq!(good_size(70), 72);
        assert_eq!(good_size(11), 12);
        assert_eq!(good_size(64), 64);
        assert_eq!(good_size(1), 1);
    }

    #[test]
    fn fft_matches_naive() {
        for g in geoms() {
            let (x, w, b, gy) = case(&g);
            let y = fft_forward(&x, &w, Some(&b), &g).unwrap();
            let e = naive::naive_forward(&x, &w, Some(&b), &g).unwrap();
            for (a, e) in y.iter().zip(&e) {
                assert!((a - e).abs() < 1e-11, "{g:?}: {a} vs {e}");
            }
            let (gx, gw, gb) = fft_backward(&x, &w, &gy, &g, true).unwrap();
            let (ex, ew, eb) = naive::naive_backward(&x, &w, &gy, &g, true).unwrap();
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
