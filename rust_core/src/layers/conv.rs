//! `Conv2d` (torch.nn.Conv2d) over the crate's four convolution algorithms.

use super::init::{fan_in_bound, uniform, Rng};
use super::{expect_shape, param_slice, row_major, to_array};
use crate::conv::fft::{self, FftReal};
use crate::conv::winograd::{self, WinoTile};
use crate::conv::{self, naive, ConvGrads, Geom};
use crate::error::Result;
use crate::value_err;
use ndarray::{Array1, Array4, ArrayView4, Ix1, Ix4};
use std::borrow::Cow;

/// Which algorithm a [`Conv2d`] runs. All give the same numbers up to rounding (a result
/// that is not finite everywhere is recomputed by the direct sum, see `conv/mod.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAlgorithm {
    /// The rust backend's rule ([`ConvAlgorithm::kernel`]): Winograd for 3x3 stride-1
    /// kernels with 4 or more channels per group, FFT for large stride-1 kernels, else
    /// im2col.
    #[default]
    Auto,
    /// The definition as loops (the reference, slow).
    Naive,
    /// Columns matrix + GEMM.
    Im2col,
    /// Winograd, the tile size by the rule of [`ConvAlgorithm::kernel`]; 3x3 kernels,
    /// stride 1, dilation 1 only (others are a ValueError).
    Winograd,
    /// Winograd F(2x2, 3x3).
    WinogradF2,
    /// Winograd F(4x4, 3x3).
    WinogradF4,
    /// Products of the spectra (rustfft / realfft).
    Fft,
}

/// The kernel a call runs: a [`ConvAlgorithm`] resolved for one geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    Naive,
    Im2col,
    Winograd(WinoTile),
    Fft,
}

impl ConvAlgorithm {
    /// The kernel for geometry `g`, forward or backward (they choose separately: the
    /// FFT's backward pays off from smaller kernels). The rule is the rust backend's
    /// (`resolve_rust_algo` in `ferrograd/backends/_conv.py`; the crossovers behind it are
    /// in benches/README.md, "Measurements behind the code"), with ch = min(C, O) / groups
    /// and size = min(OH, OW):
    /// Winograd F(4x4, 3x3) for size >= 24, or size >= 10 with ch <= 32, else F(2x2, 3x3);
    /// `Auto` takes Winograd for 3x3 stride-1 undilated kernels with ch >= 4, FFT for
    /// stride-1 kernels of KH * KW >= 81 taps (49 backward) or >= 25 with ch <= 16, and
    /// im2col for everything else.
    pub fn kernel(self, g: &Geom, backward: bool) -> ConvKernel {
        let ch = (g.c / g.groups).min(g.o / g.groups);
        let size = g.oh.min(g.ow);
        let f43 = size >= 24 || (size >= 10 && ch <= 32);
        let tile = if f43 { WinoTile::F4 } else { WinoTile::F2 };
        match self {
            ConvAlgorithm::Naive => ConvKernel::Naive,
            ConvAlgorithm::Im2col => ConvKernel::Im2col,
            ConvAlgorithm::Winograd => ConvKernel::Winograd(tile),
            ConvAlgorithm::WinogradF2 => ConvKernel::Winograd(WinoTile::F2),
            ConvAlgorithm::WinogradF4 => ConvKernel::Winograd(WinoTile::F4),
            ConvAlgorithm::Fft => ConvKernel::Fft,
            ConvAlgorithm::Auto => {
                let unit = (1, 1);
                if (g.kh, g.kw) == (3, 3) && g.stride == unit && g.dilation == unit {
                    return if ch < 4 { ConvKernel::Im2col } else { ConvKernel::Winograd(tile) };
                }
                let taps = g.kh * g.kw;
                let fft_from = if backward { 49 } else { 81 };
                if g.stride == unit && (taps >= fft_from || (taps >= 25 && ch <= 16)) {
                    ConvKernel::Fft
                } else {
                    ConvKernel::Im2col
                }
            }
        }
    }
}

/// The hyperparameters of a [`Conv2d`] besides its channels and kernel size; the default
/// is PyTorch's (stride 1, no padding, no dilation, one group, a bias) with
/// [`ConvAlgorithm::Auto`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
    pub algorithm: ConvAlgorithm,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1, bias: true, algorithm: ConvAlgorithm::Auto }
    }
}

/// torch.nn.Conv2d: x (N, C, H, W) -> y (N, O, OH, OW) with `weight` (O, C / groups, KH,
/// KW) and `bias` (O,); pairs are (height, width).
///
/// ```rust
/// use _core::layers::{init::Rng, Conv2d, Conv2dOptions, ConvAlgorithm};
/// use ndarray::{array, Array4};
///
/// let opts = Conv2dOptions { padding: (1, 1), ..Default::default() };
/// let mut conv = Conv2d::<f32>::new(2, 4, (3, 3), opts, &mut Rng::new(0)).unwrap();
/// assert_eq!(conv.weight.shape(), &[4, 2, 3, 3]);
/// let x = Array4::from_shape_fn((1, 2, 5, 5), |(_, c, h, w)| (c + h * w) as f32 * 0.1);
/// let (y, cache) = conv.forward(x.view()).unwrap();
/// assert_eq!(y.shape(), &[1, 4, 5, 5]);
/// let grads = conv.backward(&cache, Array4::ones((1, 4, 5, 5)).view()).unwrap();
/// assert_eq!(grads.input.shape(), &[1, 2, 5, 5]);
/// assert_eq!(grads.weight.shape(), &[4, 2, 3, 3]);
/// assert_eq!(grads.bias.unwrap().shape(), &[4]);
///
/// // a 2x2 kernel of ones sums each window; every algorithm that applies agrees
/// let mut sum = Conv2d::<f64>::new(1, 1, (2, 2), Conv2dOptions { bias: false, ..Default::default() },
///                                  &mut Rng::new(0)).unwrap();
/// sum.weight.fill(1.0);
/// let x = array![[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]];
/// for algorithm in [ConvAlgorithm::Naive, ConvAlgorithm::Im2col, ConvAlgorithm::Fft] {
///     sum.algorithm = algorithm;
///     let (y, _) = sum.forward(x.view()).unwrap();
///     assert!((y[[0, 0, 0, 0]] - 12.0).abs() < 1e-12 && (y[[0, 0, 0, 1]] - 16.0).abs() < 1e-12);
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d<T> {
    pub weight: Array4<T>,
    pub bias: Option<Array1<T>>,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub algorithm: ConvAlgorithm,
}

/// What [`Conv2d::backward`] needs: the input (borrowed when it was row-major) and the
/// call's geometry.
pub struct Conv2dCache<'a, T: Clone> {
    input: Cow<'a, [T]>,
    geom: Geom,
}

impl<T: Clone> Conv2dCache<'_, T> {
    /// The geometry of the forward call (sizes, output size, hyperparameters).
    pub fn geom(&self) -> &Geom {
        &self.geom
    }
}

/// Gradients of a [`Conv2d`] call: input, weight and bias (None without a bias).
#[derive(Clone, Debug)]
pub struct Conv2dGrads<T> {
    pub input: Array4<T>,
    pub weight: Array4<T>,
    pub bias: Option<Array1<T>>,
}

impl<T: FftReal> Conv2d<T> {
    /// PyTorch's initialisation: weight and bias from U(-b, b), b = 1 / sqrt(C / groups *
    /// KH * KW). A ValueError when `groups` does not divide both channel counts.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: (usize, usize), options: Conv2dOptions, rng: &mut Rng) -> Result<Self> {
        let g = options.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return value_err!("groups: expected a positive divisor of in_channels ({in_channels}) and out_channels ({out_channels}), got {g}");
        }
        let (kh, kw) = kernel_size;
        let bound = fan_in_bound(in_channels / g * kh * kw);
        let weight = uniform((out_channels, in_channels / g, kh, kw), bound, rng);
        let bias = options.bias.then(|| uniform(out_channels, bound, rng));
        let Conv2dOptions { stride, padding, dilation, groups, algorithm, .. } = options;
        Ok(Conv2d { weight, bias, stride, padding, dilation, groups, algorithm })
    }

    /// The geometry of a call on an input of shape `x`, checked (`conv::Geom::new`).
    pub fn geom(&self, x: [usize; 4]) -> Result<Geom> {
        let w = self.weight.dim();
        let g = Geom::new(x, [w.0, w.1, w.2, w.3], self.stride, self.padding, self.dilation, self.groups)?;
        if let Some(b) = &self.bias {
            expect_shape("bias", b.shape(), &[g.o])?;
        }
        Ok(g)
    }

    pub fn forward<'a>(&self, x: ArrayView4<'a, T>) -> Result<(Array4<T>, Conv2dCache<'a, T>)> {
        let d = x.dim();
        let geom = self.geom([d.0, d.1, d.2, d.3])?;
        let input = row_major(&x)?;
        let w = row_major(&self.weight.view())?;
        let bias = param_slice(self.bias.as_ref())?;
        let (xs, ws, bs, g) = (&input[..], &w[..], bias.as_deref(), &geom);
        let y = match self.algorithm.kernel(g, false) {
            ConvKernel::Naive => naive::naive_forward(xs, ws, bs, g)?,
            ConvKernel::Im2col => conv::conv2d_forward(xs, ws, bs, g)?,
            ConvKernel::Winograd(tile) => winograd::winograd_forward(xs, ws, bs, g, tile)?,
            ConvKernel::Fft => fft::fft_forward(xs, ws, bs, g)?,
        };
        let y = to_array(Ix4(g.n, g.o, g.oh, g.ow), y, "conv2d")?;
        Ok((y, Conv2dCache { input, geom }))
    }

    /// Gradients for the output's gradient (N, O, OH, OW), with the weight as it is now
    /// (of the forward's shape).
    pub fn backward(&self, cache: &Conv2dCache<'_, T>, grad_output: ArrayView4<'_, T>) -> Result<Conv2dGrads<T>> {
        let g = &cache.geom;
        let w_shape = [g.o, g.c / g.groups, g.kh, g.kw];
        expect_shape("weight", self.weight.shape(), &w_shape)?;
        expect_shape("grad_output", grad_output.shape(), &[g.n, g.o, g.oh, g.ow])?;
        let gy = row_major(&grad_output)?;
        let w = row_major(&self.weight.view())?;
        let (xs, ws, gs, with_bias) = (&cache.input[..], &w[..], &gy[..], self.bias.is_some());
        let (gx, gw, gb): ConvGrads<T> = match self.algorithm.kernel(g, true) {
            ConvKernel::Naive => naive::naive_backward(xs, ws, gs, g, with_bias)?,
            ConvKernel::Im2col => conv::conv2d_backward(xs, ws, gs, g, with_bias)?,
            ConvKernel::Winograd(tile) => winograd::winograd_backward(xs, ws, gs, g, tile, with_bias)?,
            ConvKernel::Fft => fft::fft_backward(xs, ws, gs, g, with_bias)?,
        };
        Ok(Conv2dGrads {
            input: to_array(Ix4(g.n, g.c, g.h, g.w), gx, "conv2d backward")?,
            weight: to_array(Ix4(w_shape[0], w_shape[1], w_shape[2], w_shape[3]), gw, "conv2d backward")?,
            bias: gb.map(|b| to_array(Ix1(g.o), b, "conv2d backward")).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::assert_close;

    fn input(shape: (usize, usize, usize, usize)) -> Array4<f64> {
        let mut rng = Rng::new(5);
        Array4::from_shape_simple_fn(shape, || rng.uniform(-1.0, 1.0))
    }

    #[test]
    fn every_algorithm_gives_the_naive_gradients() {
        let opts = Conv2dOptions { padding: (1, 1), groups: 2, algorithm: ConvAlgorithm::Naive, ..Default::default() };
        let mut conv = Conv2d::<f64>::new(4, 6, (3, 3), opts, &mut Rng::new(2)).unwrap();
        let x = input((2, 4, 9, 8));
        let gy = input((2, 6, 9, 8));
        let (y0, c0) = conv.forward(x.view()).unwrap();
        let g0 = conv.backward(&c0, gy.view()).unwrap();
        let algos = [ConvAlgorithm::Im2col, ConvAlgorithm::Winograd, ConvAlgorithm::WinogradF2, ConvAlgorithm::WinogradF4,
                     ConvAlgorithm::Fft, ConvAlgorithm::Auto];
        for algorithm in algos {
            conv.algorithm = algorithm;
            // a transposed-then-back view is not row-major: the layer copies it once
            let xt = x.view().permuted_axes([0, 1, 3, 2]);
            let xt = xt.permuted_axes([0, 1, 3, 2]);
            let (y, c) = conv.forward(xt).unwrap();
            assert_close(&y.view(), &y0.view(), 1e-10);
            let g = conv.backward(&c, gy.view()).unwrap();
            assert_close(&g.input.view(), &g0.input.view(), 1e-10);
            assert_close(&g.weight.view(), &g0.weight.view(), 1e-10);
            assert_close(&g.bias.unwrap().view(), &g0.bias.as_ref().unwrap().view(), 1e-10);
        }
    }

    #[test]
    fn auto_follows_the_backends_rule() {
        let geom = |c, k, s, hw| Geom::new([1, c, hw, hw], [c, c, k, k], (s, s), (0, 0), (1, 1), 1).unwrap();
        let auto = ConvAlgorithm::Auto;
        assert_eq!(auto.kernel(&geom(2, 3, 1, 30), false), ConvKernel::Im2col); // < 4 channels
        assert_eq!(auto.kernel(&geom(8, 3, 1, 30), false), ConvKernel::Winograd(WinoTile::F4));
        assert_eq!(auto.kernel(&geom(64, 3, 1, 9), false), ConvKernel::Winograd(WinoTile::F2));
        assert_eq!(auto.kernel(&geom(32, 7, 1, 40), false), ConvKernel::Im2col);
        assert_eq!(auto.kernel(&geom(32, 7, 1, 40), true), ConvKernel::Fft); // 49 taps backward
        assert_eq!(auto.kernel(&geom(8, 5, 1, 40), false), ConvKernel::Fft); // 25 taps, few channels
        assert_eq!(auto.kernel(&geom(8, 9, 2, 40), false), ConvKernel::Im2col); // strided
        assert_eq!(ConvAlgorithm::Winograd.kernel(&geom(64, 3, 1, 9), false), ConvKernel::Winograd(WinoTile::F2));
    }

    #[test]
    fn bad_shapes_and_hyperparameters_are_errors() {
        assert!(Conv2d::<f32>::new(3, 4, (3, 3), Conv2dOptions { groups: 2, ..Default::default() }, &mut Rng::new(0)).is_err());
        let mut conv = Conv2d::<f32>::new(3, 4, (3, 3), Conv2dOptions::default(), &mut Rng::new(0)).unwrap();
        assert!(conv.forward(Array4::zeros((1, 2, 5, 5)).view()).is_err()); // 2 channels, not 3
        assert!(conv.forward(Array4::zeros((1, 3, 2, 2)).view()).is_err()); // kernel larger than input
        let x = Array4::zeros((1, 3, 5, 5));
        let (_, cache) = conv.forward(x.view()).unwrap();
        assert!(conv.backward(&cache, Array4::zeros((1, 4, 5, 5)).view()).is_err()); // output is 3x3
        conv.stride = (2, 2);
        conv.algorithm = ConvAlgorithm::Winograd; // needs stride 1
        assert!(conv.forward(x.view()).is_err());
        conv.algorithm = ConvAlgorithm::Im2col;
        assert_eq!(conv.forward(x.view()).unwrap().0.shape(), &[1, 4, 2, 2]);
        conv.bias = Some(Array1::zeros(3));
        assert!(conv.forward(x.view()).is_err());
    }
}
