//! `Linear`: y = x @ weight.T + bias over the last axis (torch.nn.Linear).

use super::init::{fan_in_bound, uniform, Rng};
use super::{expect_shape, param_slice, row_major, to_array};
use crate::error::Result;
use crate::ops::linear;
use crate::real::Real;
use crate::shape_err;
use ndarray::{Array, Array1, Array2, ArrayView, Dimension, Ix1, Ix2};
use std::borrow::Cow;

/// torch.nn.Linear: `weight` (out_features, in_features), `bias` (out_features,). The
/// input is (*, in_features): every leading axis is a batch axis.
///
/// ```rust
/// use _core::layers::{init::Rng, Linear};
/// use ndarray::{array, Array2};
///
/// let mut layer = Linear::<f64>::new(3, 2, true, &mut Rng::new(1));
/// assert_eq!(layer.weight.shape(), &[2, 3]);
/// // y = x w^T + b, checked by hand
/// layer.weight = array![[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]];
/// layer.bias = Some(array![0.25, -1.0]);
/// let x = array![[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]];
/// let (y, cache) = layer.forward(x.view()).unwrap();
/// assert_eq!(y, array![[-1.75, 2.0], [0.25, -0.5]]);
/// // backward of loss = sum(y): gx = 1 @ w, gw = 1^T @ x, gb = column sums
/// let grads = layer.backward(&cache, Array2::ones((2, 2)).view()).unwrap();
/// assert_eq!(grads.input, array![[1.5, 0.5, -0.5], [1.5, 0.5, -0.5]]);
/// assert_eq!(grads.weight, array![[1.0, 3.0, 3.0], [1.0, 3.0, 3.0]]);
/// assert_eq!(grads.bias, Some(array![2.0, 2.0]));
/// ```
#[derive(Clone, Debug)]
pub struct Linear<T> {
    pub weight: Array2<T>,
    pub bias: Option<Array1<T>>,
}

/// What [`Linear::backward`] needs: the input (borrowed when it was row-major).
pub struct LinearCache<'a, T: Clone, D> {
    input: Cow<'a, [T]>,
    input_dim: D,
}

/// Gradients of a [`Linear`] call: input, weight and bias (None without a bias).
#[derive(Clone, Debug)]
pub struct LinearGrads<T, D: Dimension> {
    pub input: Array<T, D>,
    pub weight: Array2<T>,
    pub bias: Option<Array1<T>>,
}

impl<T: Real> Linear<T> {
    /// PyTorch's initialisation: weight and bias from U(-1/sqrt(in), 1/sqrt(in)).
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Self {
        let bound = fan_in_bound(in_features);
        let weight = uniform((out_features, in_features), bound, rng);
        let bias = bias.then(|| uniform(out_features, bound, rng));
        Linear { weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// (rows of the batch, in_features) of an input of dimension `dim`, checked.
    fn rows_of(&self, dim: &[usize]) -> Result<usize> {
        match dim.split_last() {
            Some((&fin, lead)) if fin == self.in_features() => Ok(lead.iter().product()),
            _ => shape_err!("input: expected (*, in_features = {}), got {dim:?}", self.in_features()),
        }
    }

    /// The bias, if any, checked against the weight.
    fn checked_bias(&self) -> Result<Option<Cow<'_, [T]>>> {
        if let Some(b) = &self.bias {
            expect_shape("bias", b.shape(), &[self.out_features()])?;
        }
        param_slice::<T, Ix1>(self.bias.as_ref())
    }

    /// y (*, out_features) for x (*, in_features).
    pub fn forward<'a, D: Dimension>(&self, x: ArrayView<'a, T, D>) -> Result<(Array<T, D>, LinearCache<'a, T, D>)> {
        let n = self.rows_of(x.shape())?;
        let (fin, fout) = (self.in_features(), self.out_features());
        let input = row_major(&x)?;
        let w = row_major(&self.weight.view())?;
        let y = linear::linear_forward(&input, n, fin, &w, fout, self.checked_bias()?.as_deref())?;
        let mut out_dim = x.raw_dim();
        out_dim[x.ndim() - 1] = fout;
        let y = to_array(out_dim, y, "linear")?;
        Ok((y, LinearCache { input, input_dim: x.raw_dim() }))
    }

    /// Gradients of input, weight and bias from the output's gradient (*, out_features).
    pub fn backward<D: Dimension>(&self, cache: &LinearCache<'_, T, D>, grad_output: ArrayView<'_, T, D>) -> Result<LinearGrads<T, D>> {
        let n = self.rows_of(cache.input_dim.slice())?;
        let (fin, fout) = (self.in_features(), self.out_features());
        let mut out_dim = cache.input_dim.clone();
        out_dim[cache.input_dim.ndim() - 1] = fout;
        expect_shape("grad_output", grad_output.shape(), out_dim.slice())?;
        self.checked_bias()?;
        let gy = row_major(&grad_output)?;
        let w = row_major(&self.weight.view())?;
        let (gx, gw, gb) = linear::linear_backward(&cache.input, n, fin, &w, fout, &gy, self.bias.is_some())?;
        Ok(LinearGrads {
            input: to_array(cache.input_dim.clone(), gx, "linear backward")?,
            weight: to_array(Ix2(fout, fin), gw, "linear backward")?,
            bias: gb.map(|g| to_array(Ix1(fout), g, "linear backward")).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::assert_close;
    use ndarray::{Array3, Axis};

    #[test]
    fn any_leading_axes_and_strided_inputs_give_the_2d_result() {
        let layer = Linear::<f64>::new(4, 3, true, &mut Rng::new(3));
        let x = Array3::from_shape_fn((2, 5, 4), |(a, b, c)| (a * 20 + b * 4 + c) as f64 * 0.1 - 1.0);
        let (y, cache) = layer.forward(x.view()).unwrap();
        assert_eq!(y.shape(), &[2, 5, 3]);
        let flat = x.to_shape((10, 4)).unwrap().to_owned();
        let (y2, _) = layer.forward(flat.view()).unwrap();
        assert_eq!(y.to_shape((10, 3)).unwrap(), y2);
        // a transposed (not row-major) view gives the same numbers as its copy
        let xt = x.view().reversed_axes(); // (4, 5, 2): last axis 2 does not fit
        assert!(layer.forward(xt).is_err());
        let strided = x.slice(ndarray::s![.., ..;2, ..]);
        let (ys, _) = layer.forward(strided).unwrap();
        assert_close(&ys.view(), &y.slice(ndarray::s![.., ..;2, ..]), 1e-12);
        let g = layer.backward(&cache, Array3::ones((2, 5, 3)).view()).unwrap();
        assert_eq!(g.input.shape(), &[2, 5, 4]);
        assert_eq!(g.bias.unwrap(), Array1::from_elem(3, 10.0));
        let expected = Array2::from_shape_fn((3, 4), |(_, j)| x.index_axis(Axis(2), j).sum());
        assert_close(&g.weight.view(), &expected.view(), 1e-12);
        assert!(layer.backward(&cache, Array3::ones((2, 5, 4)).view()).is_err());
    }

    #[test]
    fn initialisation_is_within_pytorchs_bound_and_seeded() {
        let a = Linear::<f32>::new(16, 8, true, &mut Rng::new(9));
        let b = Linear::<f32>::new(16, 8, true, &mut Rng::new(9));
        assert_eq!(a.weight, b.weight);
        assert!(a.weight.iter().chain(a.bias.as_ref().unwrap()).all(|v| v.abs() <= 0.25));
        assert!(a.weight.iter().any(|v| v.abs() > 0.2)); // spread over the range
    }
}
