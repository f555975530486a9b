//! Normalization layers: `BatchNorm2d`, `LayerNorm` and `GroupNorm` (torch.nn's), over
//! the kernels of `ops::norm` (statistics in f64 lanes, Chan's merge; see there).

use super::{expect_shape, param_slice, row_major, to_array};
use crate::error::Result;
use crate::ops::norm::{self, ChannelsLayout, Running, RowsLayout};
use crate::real::Real;
use crate::{shape_err, value_err};
use ndarray::{Array, Array1, Array4, ArrayD, ArrayView, ArrayView4, Dimension, Ix1, Ix4, IxDyn};
use std::borrow::Cow;

/// Gradients of a normalization call: the input's, and the affine parameters' (None for
/// a parameter the layer does not have). `P` is the parameters' dimension: `Ix1` for
/// the per-channel norms, `IxDyn` (normalized_shape) for [`LayerNorm`].
#[derive(Clone, Debug)]
pub struct NormGrads<T, D: Dimension, P: Dimension = Ix1> {
    pub input: Array<T, D>,
    pub weight: Option<Array<T, P>>,
    pub bias: Option<Array<T, P>>,
}

/// The weight the backward kernels get: the layer's, or ones when it has a bias only (the
/// kernels return parameter gradients only with a weight, and a weight of ones changes
/// nothing else).
fn weight_for_backward<T: Real>(weight: Option<Cow<'_, [T]>>, has_bias: bool, c: usize) -> Option<Cow<'_, [T]>> {
    match weight {
        None if has_bias => Some(Cow::Owned(vec![T::ONE; c])),
        w => w,
    }
}

/// torch.nn.BatchNorm2d on x (N, C, H, W): per-channel statistics over (N, H, W) in
/// training (and the running statistics updated with `momentum` and the unbiased
/// variance), the running statistics otherwise. `weight` and `bias` (C,) are the affine
/// parameters (None: `affine=False`); `running_mean` / `running_var` None is
/// `track_running_stats=False` (batch statistics always).
///
/// ```rust
/// use _core::layers::BatchNorm2d;
/// use ndarray::{array, Array4};
///
/// let mut bn = BatchNorm2d::<f64>::new(1);
/// // two samples of one value each: mean 2, biased variance 1
/// let x = array![[[[1.0]]], [[[3.0]]]];
/// let (y, cache) = bn.forward(x.view()).unwrap();
/// let s = 1.0 / (1.0 + 1e-5f64).sqrt();
/// assert!((y[[0, 0, 0, 0]] + s).abs() < 1e-12 && (y[[1, 0, 0, 0]] - s).abs() < 1e-12);
/// // running statistics: 0.9 * 0 + 0.1 * 2 and 0.9 * 1 + 0.1 * 2 (unbiased variance)
/// assert!((bn.running_mean.as_ref().unwrap()[0] - 0.2).abs() < 1e-12);
/// assert!((bn.running_var.as_ref().unwrap()[0] - 1.1).abs() < 1e-12);
/// let grads = bn.backward(&cache, array![[[[1.0]]], [[[0.0]]]].view()).unwrap();
/// assert_eq!(grads.input.shape(), &[2, 1, 1, 1]);
/// assert_eq!(grads.bias.unwrap()[0], 1.0); // the sum of grad_output
/// assert!((grads.weight.unwrap()[0] + s).abs() < 1e-12); // sum of grad_output * y
///
/// bn.training = false; // evaluation: the running statistics
/// let (y, _) = bn.forward(Array4::from_elem((1, 1, 1, 1), 0.2).view()).unwrap();
/// assert!(y[[0, 0, 0, 0]].abs() < 1e-12);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm2d<T> {
    pub weight: Option<Array1<T>>,
    pub bias: Option<Array1<T>>,
    pub running_mean: Option<Array1<T>>,
    pub running_var: Option<Array1<T>>,
    pub eps: f64,
    pub momentum: f64,
    pub training: bool,
}

/// What [`BatchNorm2d::backward`] needs: the input, the statistics used, and whether
/// they were the batch's (which gives the statistics' own gradient terms).
pub struct BatchNormCache<'a, T: Clone> {
    input: Cow<'a, [T]>,
    dim: (usize, usize, usize, usize),
    layout: ChannelsLayout,
    mean: Vec<T>,
    rstd: Vec<T>,
    batch_stats: bool,
}

impl<T: Real> BatchNorm2d<T> {
    /// PyTorch's defaults: affine (weight ones, bias zeros), running statistics (mean 0,
    /// variance 1), eps 1e-5, momentum 0.1, in training mode.
    pub fn new(num_features: usize) -> Self {
        BatchNorm2d {
            weight: Some(Array1::from_elem(num_features, T::ONE)),
            bias: Some(Array1::from_elem(num_features, T::ZERO)),
            running_mean: Some(Array1::from_elem(num_features, T::ZERO)),
            running_var: Some(Array1::from_elem(num_features, T::ONE)),
            eps: 1e-5,
            momentum: 0.1,
            training: true,
        }
    }

    pub fn forward<'a>(&mut self, x: ArrayView4<'a, T>) -> Result<(Array4<T>, BatchNormCache<'a, T>)> {
        let (n, c, h, w) = x.dim();
        let layout = ChannelsLayout { n, c, hw: h * w };
        for (name, p) in [("weight", &self.weight), ("bias", &self.bias), ("running_mean", &self.running_mean), ("running_var", &self.running_var)] {
            if let Some(p) = p {
                expect_shape(name, p.shape(), &[c])?;
            }
        }
        let input = row_major(&x)?;
        let (weight, bias) = (param_slice(self.weight.as_ref())?, param_slice(self.bias.as_ref())?);
        // the kernel updates the statistics in place in row-major slices: C values copied
        // out and back, whatever the arrays' layout
        let mut stats = match (&self.running_mean, &self.running_var) {
            (Some(m), Some(v)) => Some((m.to_vec(), v.to_vec())),
            (None, None) => None,
            _ => return value_err!("running_mean: expected running_mean and running_var both given or both None"),
        };
        let batch_stats = self.training || stats.is_none();
        let running = stats.as_mut().map(|(mean, var)| Running { mean, var });
        let (y, mean, rstd) = norm::batch_norm_forward(&input, layout, weight.as_deref(), bias.as_deref(), running, batch_stats, self.momentum, self.eps)?;
        if let Some((m, v)) = stats {
            (self.running_mean, self.running_var) = (Some(Array1::from_vec(m)), Some(Array1::from_vec(v)));
        }
        let y = to_array(Ix4(n, c, h, w), y, "batch_norm")?;
        Ok((y, BatchNormCache { input, dim: (n, c, h, w), layout, mean, rstd, batch_stats }))
    }

    pub fn backward(&self, cache: &BatchNormCache<'_, T>, grad_output: ArrayView4<'_, T>) -> Result<NormGrads<T, Ix4>> {
        let dim = cache.dim;
        expect_shape("grad_output", grad_output.shape(), &[dim.0, dim.1, dim.2, dim.3])?;
        let gy = row_major(&grad_output)?;
        let weight = weight_for_backward(param_slice(self.weight.as_ref())?, self.bias.is_some(), dim.1);
        let (gx, gw, gb) = norm::batch_norm_backward(&cache.input, cache.layout, weight.as_deref(), &cache.mean, &cache.rstd, &gy, cache.batch_stats)?;
        Ok(NormGrads {
            input: to_array(Ix4(dim.0, dim.1, dim.2, dim.3), gx, "batch_norm backward")?,
            weight: gw.filter(|_| self.weight.is_some()).map(Array1::from_vec),
            bias: gb.filter(|_| self.bias.is_some()).map(Array1::from_vec),
        })
    }
}

/// What [`LayerNorm::backward`] and [`GroupNorm::backward`] need: the input and the
/// per-row (sample, group) mean and 1 / std.
pub struct RowsNormCache<'a, T: Clone, D> {
    input: Cow<'a, [T]>,
    input_dim: D,
    layout: RowsLayout,
    mean: Vec<T>,
    rstd: Vec<T>,
}

fn rows_forward<'a, T: Real, D: Dimension>(
    x: ArrayView<'a, T, D>,
    layout: RowsLayout,
    weight: Option<Cow<'_, [T]>>,
    bias: Option<Cow<'_, [T]>>,
    eps: f64,
) -> Result<(Array<T, D>, RowsNormCache<'a, T, D>)> {
    let input = row_major(&x)?;
    let (y, mean, rstd) = norm::rows_forward(&input, layout, weight.as_deref(), bias.as_deref(), eps)?;
    let y = to_array(x.raw_dim(), y, "normalization")?;
    Ok((y, RowsNormCache { input, input_dim: x.raw_dim(), layout, mean, rstd }))
}

/// (gx, gweight, gbias), the parameter gradients for the parameters given.
#[allow(clippy::type_complexity)]
fn rows_backward<T: Real, D: Dimension>(
    cache: &RowsNormCache<'_, T, D>,
    weight: Option<Cow<'_, [T]>>,
    has_bias: bool,
    grad_output: ArrayView<'_, T, D>,
) -> Result<(Array<T, D>, Option<Vec<T>>, Option<Vec<T>>)> {
    expect_shape("grad_output", grad_output.shape(), cache.input_dim.slice())?;
    let gy = row_major(&grad_output)?;
    let has_weight = weight.is_some();
    let weight = weight_for_backward(weight, has_bias, cache.layout.c);
    let (gx, gw, gb) = norm::rows_backward(&cache.input, cache.layout, weight.as_deref(), &cache.mean, &cache.rstd, &gy)?;
    let gx = to_array(cache.input_dim.clone(), gx, "normalization backward")?;
    Ok((gx, gw.filter(|_| has_weight), gb.filter(|_| has_bias)))
}

/// torch.nn.LayerNorm: each sample normalized over its last axes, `normalized_shape`;
/// `weight` and `bias` have that shape (None: `elementwise_affine=False` / `bias=False`).
///
/// ```rust
/// use _core::layers::LayerNorm;
/// use ndarray::{array, Array2};
///
/// let ln = LayerNorm::<f64>::new(&[3]);
/// let x = array![[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]];
/// let (y, cache) = ln.forward(x.view()).unwrap();
/// // row 0: mean 2, variance 2/3
/// let s = 1.0 / (2.0 / 3.0 + 1e-5f64).sqrt();
/// assert!((y[[0, 0]] + s).abs() < 1e-12 && y[[0, 1]].abs() < 1e-12 && (y[[0, 2]] - s).abs() < 1e-12);
/// let grads = ln.backward(&cache, Array2::ones((2, 3)).view()).unwrap();
/// // a constant grad_output moves no normalized value: no input gradient
/// assert!(grads.input.iter().all(|g| g.abs() < 1e-12));
/// assert_eq!(grads.bias.unwrap().shape(), &[3]);
/// assert_eq!(grads.weight.unwrap().shape(), &[3]);
/// ```
#[derive(Clone, Debug)]
pub struct LayerNorm<T> {
    pub normalized_shape: Vec<usize>,
    pub weight: Option<ArrayD<T>>,
    pub bias: Option<ArrayD<T>>,
    pub eps: f64,
}

impl<T: Real> LayerNorm<T> {
    /// PyTorch's defaults: weight ones, bias zeros, eps 1e-5.
    pub fn new(normalized_shape: &[usize]) -> Self {
        let shape = IxDyn(normalized_shape);
        LayerNorm { normalized_shape: normalized_shape.to_vec(), weight: Some(ArrayD::from_elem(shape.clone(), T::ONE)), bias: Some(ArrayD::from_elem(shape, T::ZERO)), eps: 1e-5 }
    }

    /// The layout of an input of `shape`: (rows, normalized size), checked.
    fn layout(&self, shape: &[usize]) -> Result<RowsLayout> {
        let k = self.normalized_shape.len();
        if shape.len() < k || shape[shape.len() - k..] != self.normalized_shape[..] {
            return shape_err!("input: expected a shape ending in normalized_shape {:?}, got {shape:?}", self.normalized_shape);
        }
        for (name, p) in [("weight", &self.weight), ("bias", &self.bias)] {
            if let Some(p) = p {
                expect_shape(name, p.shape(), &self.normalized_shape)?;
            }
        }
        let n = shape[..shape.len() - k].iter().product();
        Ok(RowsLayout { n, c: self.normalized_shape.iter().product(), hw: 1, groups: 1 })
    }

    pub fn forward<'a, D: Dimension>(&self, x: ArrayView<'a, T, D>) -> Result<(Array<T, D>, RowsNormCache<'a, T, D>)> {
        let layout = self.layout(x.shape())?;
        rows_forward(x, layout, param_slice(self.weight.as_ref())?, param_slice(self.bias.as_ref())?, self.eps)
    }

    pub fn backward<D: Dimension>(&self, cache: &RowsNormCache<'_, T, D>, grad_output: ArrayView<'_, T, D>) -> Result<NormGrads<T, D, IxDyn>> {
        self.layout(cache.input_dim.slice())?;
        let (input, gw, gb) = rows_backward(cache, param_slice(self.weight.as_ref())?, self.bias.is_some(), grad_output)?;
        let shape = IxDyn(&self.normalized_shape);
        Ok(NormGrads {
            input,
            weight: gw.map(|g| to_array(shape.clone(), g, "layer_norm backward")).transpose()?,
            bias: gb.map(|g| to_array(shape.clone(), g, "layer_norm backward")).transpose()?,
        })
    }
}

/// torch.nn.GroupNorm on x (N, C, *): each sample's channels split into `num_groups`
/// groups, each normalized over its channels and positions; `weight` and `bias` (C,)
/// per channel (None: `affine=False`). InstanceNorm is the case num_groups = C.
///
/// ```rust
/// use _core::layers::GroupNorm;
/// use ndarray::Array3;
///
/// let gn = GroupNorm::<f32>::new(2, 4).unwrap();
/// let x = Array3::from_shape_fn((2, 4, 5), |(n, c, l)| (n * 20 + c * 5 + l) as f32);
/// let (y, cache) = gn.forward(x.view()).unwrap();
/// // each (sample, group) of 2 channels x 5 positions now has mean 0
/// let group_mean: f32 = y.slice(ndarray::s![1, 2..4, ..]).sum() / 10.0;
/// assert!(group_mean.abs() < 1e-5);
/// let grads = gn.backward(&cache, Array3::ones((2, 4, 5)).view()).unwrap();
/// assert_eq!(grads.input.shape(), &[2, 4, 5]);
/// assert_eq!(grads.bias.unwrap().to_vec(), vec![10.0; 4]);
/// assert!(GroupNorm::<f32>::new(3, 4).is_err()); // 3 groups do not divide 4 channels
/// ```
#[derive(Clone, Debug)]
pub struct GroupNorm<T> {
    pub num_groups: usize,
    pub weight: Option<Array1<T>>,
    pub bias: Option<Array1<T>>,
    pub eps: f64,
}

impl<T: Real> GroupNorm<T> {
    /// PyTorch's defaults: affine (weight ones, bias zeros), eps 1e-5. A ValueError when
    /// `num_groups` does not divide `num_channels`.
    pub fn new(num_groups: usize, num_channels: usize) -> Result<Self> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return value_err!("num_groups: expected a divisor of num_channels ({num_channels}), got {num_groups}");
        }
        Ok(GroupNorm { num_groups, weight: Some(Array1::from_elem(num_channels, T::ONE)), bias: Some(Array1::from_elem(num_channels, T::ZERO)), eps: 1e-5 })
    }

    fn layout(&self, shape: &[usize]) -> Result<RowsLayout> {
        let &[n, c, ref rest @ ..] = shape else {
            return shape_err!("input: expected (N, C, *), got {shape:?}");
        };
        for (name, p) in [("weight", &self.weight), ("bias", &self.bias)] {
            if let Some(p) = p {
                expect_shape(name, p.shape(), &[c])?;
            }
        }
        Ok(RowsLayout { n, c, hw: rest.iter().product(), groups: self.num_groups })
    }

    pub fn forward<'a, D: Dimension>(&self, x: ArrayView<'a, T, D>) -> Result<(Array<T, D>, RowsNormCache<'a, T, D>)> {
        let layout = self.layout(x.shape())?;
        rows_forward(x, layout, param_slice(self.weight.as_ref())?, param_slice(self.bias.as_ref())?, self.eps)
    }

    pub fn backward<D: Dimension>(&self, cache: &RowsNormCache<'_, T, D>, grad_output: ArrayView<'_, T, D>) -> Result<NormGrads<T, D>> {
        self.layout(cache.input_dim.slice())?;
        let (input, gw, gb) = rows_backward(cache, param_slice(self.weight.as_ref())?, self.bias.is_some(), grad_output)?;
        Ok(NormGrads { input, weight: gw.map(Array1::from_vec), bias: gb.map(Array1::from_vec) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::init::Rng;
    use ndarray::Array3;

    /// sum(grad_output * y) by central differences in each input element, against the
    /// layer's input gradient.
    fn check_input_grad(mut f: impl FnMut(&ArrayD<f64>) -> ArrayD<f64>, x: &ArrayD<f64>, gy: &ArrayD<f64>, gx: &ArrayD<f64>) {
        let mut loss = |x: &ArrayD<f64>| (f(x) * gy).sum();
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.as_slice_mut().unwrap()[i] += 1e-6;
            xm.as_slice_mut().unwrap()[i] -= 1e-6;
            let fd = (loss(&xp) - loss(&xm)) / 2e-6;
            let g = gx.as_slice().unwrap()[i];
            assert!((g - fd).abs() < 1e-6 * (1.0 + fd.abs()), "element {i}: {g} vs {fd}");
        }
    }

    fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
        let mut rng = Rng::new(seed);
        ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.uniform(-1.0, 1.0))
    }

    #[test]
    fn input_gradients_match_central_differences() {
        let x = random(&[3, 4, 2, 3], 1);
        let gy = random(&[3, 4, 2, 3], 2);
        let mut gn = GroupNorm::<f64>::new(2, 4).unwrap();
        gn.weight = Some(random(&[4], 3).into_dimensionality().unwrap());
        let g = gn.backward(&gn.forward(x.view()).unwrap().1, gy.view()).unwrap();
        check_input_grad(|x| gn.forward(x.view()).unwrap().0, &x, &gy, &g.input);
        let mut ln = LayerNorm::<f64>::new(&[2, 3]);
        ln.weight = Some(random(&[2, 3], 4));
        let g = ln.backward(&ln.forward(x.view()).unwrap().1, gy.view()).unwrap();
        check_input_grad(|x| ln.forward(x.view()).unwrap().0, &x, &gy, &g.input);
        let mut bn = BatchNorm2d::<f64>::new(4);
        let x4 = x.clone().into_dimensionality::<Ix4>().unwrap();
        let (_, cache) = bn.forward(x4.view()).unwrap();
        let g = bn.backward(&cache, gy.view().into_dimensionality().unwrap()).unwrap();
        check_input_grad(|x| bn.forward(x.view().into_dimensionality().unwrap()).unwrap().0.into_dyn(), &x, &gy, &g.input.into_dyn());
    }

    #[test]
    fn a_bias_without_a_weight_still_gets_its_gradient() {
        let mut gn = GroupNorm::<f64>::new(1, 2).unwrap();
        gn.weight = None;
        let x = Array3::from_shape_fn((2, 2, 3), |(a, b, c)| (a + 2 * b + c * c) as f64);
        let (_, cache) = gn.forward(x.view()).unwrap();
        let g = gn.backward(&cache, Array3::ones((2, 2, 3)).view()).unwrap();
        assert!(g.weight.is_none());
        assert_eq!(g.bias.unwrap().to_vec(), vec![6.0, 6.0]);
        let mut bn = BatchNorm2d::<f64>::new(2);
        bn.bias = None;
        bn.running_var = None;
        assert!(bn.forward(Array4::zeros((2, 2, 1, 1)).view()).is_err()); // one statistic only
        bn.running_mean = None;
        bn.training = false; // no running statistics: batch statistics even in evaluation
        let x = Array4::from_shape_fn((2, 2, 1, 1), |(n, _, _, _)| n as f64);
        let (y, c) = bn.forward(x.view()).unwrap();
        assert!((y[[1, 0, 0, 0]] - y[[0, 0, 0, 0]] - 2.0).abs() < 1e-4);
        let g = bn.backward(&c, Array4::ones((2, 2, 1, 1)).view()).unwrap();
        assert!(g.bias.is_none() && g.weight.is_some());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let ln = LayerNorm::<f32>::new(&[4]);
        assert!(ln.forward(ndarray::Array2::<f32>::zeros((2, 3)).view()).is_err());
        let gn = GroupNorm::<f32>::new(2, 4).unwrap();
        assert!(gn.forward(Array3::<f32>::zeros((2, 6, 3)).view()).is_err());
        assert!(gn.forward(ndarray::Array1::<f32>::zeros(4).view()).is_err());
        let x = Array3::<f32>::zeros((2, 4, 3));
        let (_, cache) = gn.forward(x.view()).unwrap();
        assert!(gn.backward(&cache, Array3::<f32>::zeros((2, 4, 2)).view()).is_err());
    }
}
