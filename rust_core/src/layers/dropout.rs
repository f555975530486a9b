//! `Dropout` (torch.nn.Dropout) on the crate's Philox stream (`ops::dropout`).

use super::{expect_shape, row_major, to_array};
use crate::error::Result;
use crate::ops::dropout;
use crate::real::Real;
use crate::value_err;
use ndarray::{Array, ArrayView, Dimension};

/// torch.nn.Dropout: in training, each element is zeroed with probability `p` and the
/// rest scaled by 1 / (1 - p); in evaluation (`training = false`) the identity.
///
/// The mask of a call is the Philox stream at `(seed, offset)` (element i: word i of the
/// stream, see `ops/dropout.rs`), the stream the Python backends draw from too, so the
/// same `(seed, offset)` drops the same elements there. Each training call takes the
/// current `offset` and moves it on by one: calls never share a mask, and a layer made
/// with the same seed replays the same masks. Backward regenerates the mask from the
/// cached offset instead of storing it.
///
/// ```rust
/// use _core::layers::Dropout;
/// use ndarray::Array2;
///
/// let mut drop = Dropout::new(0.25, 42);
/// let x = Array2::<f32>::ones((64, 64));
/// let (y, cache) = drop.forward(x.view()).unwrap();
/// // kept elements are scaled by 1 / (1 - p), dropped ones are 0
/// assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
/// let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 4096.0;
/// assert!((kept - 0.75).abs() < 0.03);
/// // the gradient goes through the same mask
/// let gx = drop.backward(&cache, x.view()).unwrap();
/// assert_eq!(gx, y);
/// assert_eq!(drop.offset, 1); // the next call draws another mask
/// drop.training = false;
/// assert_eq!(drop.forward(x.view()).unwrap().0, x);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub training: bool,
    pub seed: u64,
    /// the stream position of the next training call
    pub offset: u64,
}

/// What [`Dropout::backward`] needs: the input's shape and the stream position of the
/// mask (None: the call was the identity).
#[derive(Clone, Debug)]
pub struct DropoutCache<D: Dimension> {
    input_dim: D,
    stream: Option<(f64, u64, u64)>,
}

impl Dropout {
    /// In training mode, at stream offset 0 of `seed`.
    pub fn new(p: f64, seed: u64) -> Self {
        Dropout { p, training: true, seed, offset: 0 }
    }

    pub fn forward<T: Real, D: Dimension>(&mut self, x: ArrayView<'_, T, D>) -> Result<(Array<T, D>, DropoutCache<D>)> {
        if !(0.0..=1.0).contains(&self.p) {
            return value_err!("p: expected a dropout probability in [0, 1], got {}", self.p);
        }
        let input_dim = x.raw_dim();
        if !self.training || self.p == 0.0 {
            return Ok((x.to_owned(), DropoutCache { input_dim, stream: None }));
        }
        let (p, seed, offset) = (self.p, self.seed, self.offset);
        self.offset = self.offset.wrapping_add(1);
        let input = row_major(&x)?;
        let y = to_array(input_dim.clone(), dropout::dropout_apply(&input, p, seed, offset)?, "dropout")?;
        Ok((y, DropoutCache { input_dim, stream: Some((p, seed, offset)) }))
    }

    /// The input's gradient: grad_output through the forward's mask and scale.
    pub fn backward<T: Real, D: Dimension>(&self, cache: &DropoutCache<D>, grad_output: ArrayView<'_, T, D>) -> Result<Array<T, D>> {
        expect_shape("grad_output", grad_output.shape(), cache.input_dim.slice())?;
        match cache.stream {
            None => Ok(grad_output.to_owned()),
            Some((p, seed, offset)) => {
                let gy = row_major(&grad_output)?;
                to_array(cache.input_dim.clone(), dropout::dropout_apply(&gy, p, seed, offset)?, "dropout backward")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn masks_are_the_tapes_and_bad_p_is_an_error() {
        let x = Array3::from_shape_fn((3, 4, 5), |(a, b, c)| 1.0 + (a * 20 + b * 5 + c) as f64);
        let mut layer = Dropout::new(0.4, 7);
        layer.offset = 3;
        let (y, _) = layer.forward(x.view()).unwrap();
        let mut tape = crate::autograd::tape::Tape::<f64>::new();
        let v = tape.leaf(x.iter().copied().collect(), &[3, 4, 5]).unwrap();
        let d = tape.dropout(v, 0.4, 7, 3).unwrap();
        assert_eq!(y.as_slice().unwrap(), tape.value(d).unwrap());
        let (y2, _) = layer.forward(x.view()).unwrap();
        assert_ne!(y, y2); // offset 4: another mask
        layer.p = 1.5;
        assert!(layer.forward(x.view()).is_err());
        layer.p = 0.0;
        let (y0, c0) = layer.forward(x.view()).unwrap();
        assert_eq!(y0, x);
        assert!(layer.backward(&c0, Array3::<f64>::zeros((3, 4, 4)).view()).is_err());
    }
}
