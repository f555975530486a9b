//! Pooling layers on (N, C, H, W) inputs: `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`
//! (torch.nn's), over the window tables of `ops::pool` built with PyTorch's output-size
//! rule (`autograd::tape::PoolGeom`).

use super::{expect_shape, row_major, to_array};
use crate::autograd::tape::{adaptive_axis, PoolGeom};
use crate::error::{FerroError, Result};
use crate::ops::pool::{self, Axis};
use crate::real::Real;
use crate::{shape_err, value_err};
use ndarray::{Array4, ArrayView4, Ix4};

type Dims4 = (usize, usize, usize, usize);

fn nchw<T>(x: &ArrayView4<'_, T>) -> Result<Dims4> {
    match x.dim() {
        (n, c, h, w) if h > 0 && w > 0 => Ok((n, c, h, w)),
        d => shape_err!("input: expected a 4-D (N, C, H, W) input with H, W > 0, got {d:?}"),
    }
}

/// torch.nn.MaxPool2d: the maximum of each window (NaN wins, ties keep the first);
/// pairs are (height, width), `stride` defaults to the kernel size.
///
/// ```rust
/// use _core::layers::MaxPool2d;
/// use ndarray::{array, Array4};
///
/// let pool = MaxPool2d::new((2, 2));
/// let x = array![[[[1.0f32, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0]]]];
/// let (y, cache) = pool.forward(x.view()).unwrap();
/// assert_eq!(y, array![[[[5.0, 8.0]]]]);
/// assert_eq!(cache.indices().unwrap(), array![[[[1i64, 6]]]]); // flat h * W + w
/// // the gradient goes to each window's maximum
/// let gx = pool.backward(&cache, array![[[[10.0f32, 20.0]]]].view()).unwrap();
/// assert_eq!(gx, array![[[[0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 20.0, 0.0]]]]);
/// // overlapping windows with padding: stride 1, padding 1
/// let pool = MaxPool2d { stride: (1, 1), padding: (1, 1), ..MaxPool2d::new((3, 3)) };
/// assert_eq!(pool.forward(Array4::<f32>::zeros((2, 3, 4, 5)).view()).unwrap().0.shape(), &[2, 3, 4, 5]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel_size: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
}

/// What [`MaxPool2d::backward`] needs: where each window's maximum was.
#[derive(Clone, Debug)]
pub struct MaxPoolCache {
    indices: Vec<i64>,
    input_dim: Dims4,
    output_dim: Dims4,
}

impl MaxPoolCache {
    /// The flat index h * W + w of each output's maximum in its plane (PyTorch's
    /// `return_indices=True`), -1 for a window with no element inside the input.
    pub fn indices(&self) -> Result<ArrayView4<'_, i64>> {
        ArrayView4::from_shape(self.output_dim, &self.indices).map_err(|e| FerroError::Shape(format!("indices: {e}")))
    }
}

impl MaxPool2d {
    pub fn new(kernel_size: (usize, usize)) -> Self {
        MaxPool2d { kernel_size, stride: kernel_size, padding: (0, 0), dilation: (1, 1), ceil_mode: false }
    }

    fn geom(&self) -> PoolGeom {
        PoolGeom { kernel: self.kernel_size, stride: self.stride, padding: self.padding, dilation: self.dilation, ceil_mode: self.ceil_mode }
    }

    pub fn forward<T: Real>(&self, x: ArrayView4<'_, T>) -> Result<(Array4<T>, MaxPoolCache)> {
        let (n, c, h, w) = nchw(&x)?;
        let (rows, cols) = self.geom().axes(h, w, true, "max")?;
        let input = row_major(&x)?;
        let (y, indices) = pool::max_pool_forward(&input, n * c, &rows, &cols, true)?;
        let output_dim = (n, c, rows.out(), cols.out());
        let cache = MaxPoolCache { indices: indices.unwrap_or_default(), input_dim: (n, c, h, w), output_dim };
        Ok((to_array(Ix4(n, c, rows.out(), cols.out()), y, "max_pool2d")?, cache))
    }

    /// The input's gradient: each output's gradient added at its window's maximum.
    pub fn backward<T: Real>(&self, cache: &MaxPoolCache, grad_output: ArrayView4<'_, T>) -> Result<Array4<T>> {
        let (n, c, oh, ow) = cache.output_dim;
        expect_shape("grad_output", grad_output.shape(), &[n, c, oh, ow])?;
        let gy = row_major(&grad_output)?;
        let (_, _, h, w) = cache.input_dim;
        let gx = pool::max_pool_backward(&gy, &cache.indices, n * c, oh * ow, h * w)?;
        to_array(Ix4(n, c, h, w), gx, "max_pool2d backward")
    }
}

/// What the average pools' backward needs: the window tables and the divisor.
#[derive(Clone, Debug)]
pub struct AvgPoolCache {
    rows: Axis,
    cols: Axis,
    divisor: i64,
    input_dim: Dims4,
}

fn avg_forward<T: Real>(x: ArrayView4<'_, T>, dims: Dims4, rows: Axis, cols: Axis, divisor: i64) -> Result<(Array4<T>, AvgPoolCache)> {
    let (n, c, ..) = dims;
    let input = row_major(&x)?;
    let y = pool::avg_pool_forward(&input, n * c, &rows, &cols, divisor)?;
    let y = to_array(Ix4(n, c, rows.out(), cols.out()), y, "avg_pool2d")?;
    Ok((y, AvgPoolCache { rows, cols, divisor, input_dim: dims }))
}

fn avg_backward<T: Real>(cache: &AvgPoolCache, grad_output: ArrayView4<'_, T>) -> Result<Array4<T>> {
    let (n, c, h, w) = cache.input_dim;
    expect_shape("grad_output", grad_output.shape(), &[n, c, cache.rows.out(), cache.cols.out()])?;
    let gy = row_major(&grad_output)?;
    let gx = pool::avg_pool_backward(&gy, n * c, &cache.rows, &cache.cols, cache.divisor)?;
    to_array(Ix4(n, c, h, w), gx, "avg_pool2d backward")
}

/// torch.nn.AvgPool2d: the mean of each window; `count_include_pad` counts the padding
/// in the divisor (PyTorch's default), `divisor_override` replaces the divisor.
///
/// ```rust
/// use _core::layers::AvgPool2d;
/// use ndarray::{array, Array4};
///
/// let pool = AvgPool2d::new((2, 2));
/// let x = array![[[[1.0f64, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]]];
/// let (y, cache) = pool.forward(x.view()).unwrap();
/// assert_eq!(y, array![[[[3.5, 5.5]]]]);
/// let gx = pool.backward(&cache, array![[[[4.0, 8.0]]]].view()).unwrap();
/// assert_eq!(gx, array![[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]);
/// // padding not counted: a corner window of 3x3 with padding 1 averages 4 values
/// let pool = AvgPool2d { stride: (1, 1), padding: (1, 1), count_include_pad: false, ..AvgPool2d::new((3, 3)) };
/// let (y, _) = pool.forward(Array4::<f64>::ones((1, 1, 3, 3)).view()).unwrap();
/// assert_eq!(y, Array4::ones((1, 1, 3, 3)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    pub kernel_size: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<usize>,
}

impl AvgPool2d {
    pub fn new(kernel_size: (usize, usize)) -> Self {
        AvgPool2d { kernel_size, stride: kernel_size, padding: (0, 0), ceil_mode: false, count_include_pad: true, divisor_override: None }
    }

    pub fn forward<T: Real>(&self, x: ArrayView4<'_, T>) -> Result<(Array4<T>, AvgPoolCache)> {
        let dims = nchw(&x)?;
        let divisor = match self.divisor_override {
            None => 0,
            Some(d) if d > 0 && d <= i64::MAX as usize => d as i64,
            Some(d) => return value_err!("divisor_override: expected a positive divisor, got {d}"),
        };
        let geom = PoolGeom { kernel: self.kernel_size, stride: self.stride, padding: self.padding, dilation: (1, 1), ceil_mode: self.ceil_mode };
        let (rows, cols) = geom.axes(dims.2, dims.3, self.count_include_pad, "avg")?;
        avg_forward(x, dims, rows, cols, divisor)
    }

    pub fn backward<T: Real>(&self, cache: &AvgPoolCache, grad_output: ArrayView4<'_, T>) -> Result<Array4<T>> {
        avg_backward(cache, grad_output)
    }
}

/// torch.nn.AdaptiveAvgPool2d: `output_size` (height, width) windows that tile the input,
/// window o of an axis of n covering [floor(o n / out), ceil((o + 1) n / out)); 0 keeps
/// that axis' size (PyTorch's None).
///
/// ```rust
/// use _core::layers::AdaptiveAvgPool2d;
/// use ndarray::{array, Array4};
///
/// let pool = AdaptiveAvgPool2d { output_size: (1, 2) };
/// let x = array![[[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]]];
/// let (y, cache) = pool.forward(x.view()).unwrap();
/// // windows: columns [0, 2) and [1, 3), both rows
/// assert_eq!(y, array![[[[3.0, 4.0]]]]);
/// let gx = pool.backward(&cache, Array4::<f32>::ones((1, 1, 1, 2)).view()).unwrap();
/// assert_eq!(gx, array![[[[0.25, 0.5, 0.25], [0.25, 0.5, 0.25]]]]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    pub fn forward<T: Real>(&self, x: ArrayView4<'_, T>) -> Result<(Array4<T>, AvgPoolCache)> {
        let dims = nchw(&x)?;
        let (rows, cols) = (adaptive_axis(dims.2, self.output_size.0), adaptive_axis(dims.3, self.output_size.1));
        avg_forward(x, dims, rows, cols, 0)
    }

    pub fn backward<T: Real>(&self, cache: &AvgPoolCache, grad_output: ArrayView4<'_, T>) -> Result<Array4<T>> {
        avg_backward(cache, grad_output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_pytorch_and_bad_geometry_is_an_error() {
        let x = Array4::<f32>::zeros((2, 3, 7, 6));
        let ceil = MaxPool2d { ceil_mode: true, ..MaxPool2d::new((2, 2)) };
        assert_eq!(ceil.forward(x.view()).unwrap().0.shape(), &[2, 3, 4, 3]);
        assert_eq!(MaxPool2d::new((2, 2)).forward(x.view()).unwrap().0.shape(), &[2, 3, 3, 3]);
        let dilated = MaxPool2d { dilation: (2, 2), stride: (1, 1), ..MaxPool2d::new((3, 3)) };
        assert_eq!(dilated.forward(x.view()).unwrap().0.shape(), &[2, 3, 3, 2]);
        assert!(MaxPool2d { padding: (2, 2), ..MaxPool2d::new((2, 2)) }.forward(x.view()).is_err());
        assert!(MaxPool2d::new((8, 8)).forward(x.view()).is_err());
        assert!(AvgPool2d { divisor_override: Some(0), ..AvgPool2d::new((2, 2)) }.forward(x.view()).is_err());
        assert!(MaxPool2d::new((1, 1)).forward(Array4::<f32>::zeros((1, 1, 0, 3)).view()).is_err());
        let (_, cache) = AvgPool2d::new((2, 2)).forward(x.view()).unwrap();
        assert!(AvgPool2d::new((2, 2)).backward(&cache, Array4::<f32>::zeros((2, 3, 3, 2)).view()).is_err());
        let (y, _) = AdaptiveAvgPool2d { output_size: (0, 1) }.forward(x.view()).unwrap();
        assert_eq!(y.shape(), &[2, 3, 7, 1]);
    }

    #[test]
    fn divisor_override_divides_every_window() {
        let pool = AvgPool2d { divisor_override: Some(2), ..AvgPool2d::new((2, 2)) };
        let (y, cache) = pool.forward(Array4::<f64>::ones((1, 2, 2, 4)).view()).unwrap();
        assert_eq!(y, Array4::from_elem((1, 2, 1, 2), 2.0));
        let gx = pool.backward(&cache, Array4::<f64>::ones((1, 2, 1, 2)).view()).unwrap();
        assert_eq!(gx, Array4::from_elem((1, 2, 2, 4), 0.5));
    }
}
