//! Neural-network layers with `ndarray` parameters: the crate's API for Rust programs.
//!
//! Each layer is a struct holding its parameters as public `ndarray` arrays under
//! PyTorch's names and shapes (`Linear::weight` is (out, in), `Conv2d::weight` is
//! (O, C / groups, KH, KW), an LSTM's gates are stacked i, f, g, o), made by `new` with
//! PyTorch's default initialisation drawn from a seeded [`init::Rng`]. Every layer has
//!
//! * `forward(x: ArrayView, ...)`, returning the output and a cache of what the backward
//!   pass needs (the input, borrowed when it is already row-major, and any statistics);
//! * `backward(&cache, grad_output: ArrayView, ...)`, returning the gradient of the input
//!   and of each parameter in a struct named after the layer (`LinearGrads`, ...).
//!
//! Layouts are PyTorch's: images (N, C, H, W); sequences (T, N, F), or (N, T, F) with
//! `batch_first`. Inside, the layers call the crate's slice kernels (`ops`, `conv`,
//! `attention`), so they run at the kernels' speed: a view in standard (row-major) layout
//! is handed over as it is, any other is copied once into row-major order. Errors are the
//! kernels' [`FerroError`]s (a shape that does not fit, a bad argument), never panics.
//!
//! | layer | kernels |
//! |---|---|
//! | [`Linear`] | `ops::linear` (GEMM) |
//! | [`Conv2d`] | `conv`: naive, im2col, Winograd F(2x2, 3x3) / F(4x4, 3x3), FFT ([`ConvAlgorithm`]) |
//! | [`BatchNorm2d`], [`LayerNorm`], [`GroupNorm`] | `ops::norm` |
//! | [`MaxPool2d`], [`AvgPool2d`], [`AdaptiveAvgPool2d`] | `ops::pool` |
//! | [`Dropout`] | `ops::dropout` (the Philox stream the Python backends share) |
//! | [`Lstm`], [`Gru`] | `ops::rnn` |
//! | [`MultiheadAttention`] | `ops::linear` and `attention::flash` |
//!
//! A layer's backward is a function of its cache alone, so layers compose by hand:
//!
//! ```rust
//! use _core::layers::{init::Rng, Linear};
//! use ndarray::Array2;
//!
//! let mut rng = Rng::new(0);
//! let (l1, l2) = (Linear::<f64>::new(3, 4, true, &mut rng), Linear::<f64>::new(4, 1, true, &mut rng));
//! let x = Array2::from_shape_fn((5, 3), |(i, j)| (i + j) as f64 * 0.1);
//! let (h, c1) = l1.forward(x.view()).unwrap();
//! let (y, c2) = l2.forward(h.view()).unwrap();
//! assert_eq!(y.shape(), &[5, 1]);
//! // d(sum y) / dy = 1, back through both layers
//! let g2 = l2.backward(&c2, Array2::ones((5, 1)).view()).unwrap();
//! let g1 = l1.backward(&c1, g2.input.view()).unwrap();
//! assert_eq!(g1.weight.shape(), &[4, 3]);
//! assert_eq!(g1.input.shape(), &[5, 3]);
//! ```
//!
//! For automatic gradients of a whole model there is the crate's reverse-mode tape,
//! [`Tape`] (a Wengert list over the same kernels; `cargo run --release --example
//! train_mlp` trains an MLP on it), and for forward-mode derivatives the dual numbers
//! [`Dual`]; both are re-exported here.
//!
//! ```rust
//! use _core::layers::{Activation, Tape};
//! use _core::ops::loss::Reduction;
//!
//! // loss = mean((tanh(x @ w.T) - t)^2) for one sample
//! let mut tape = Tape::<f64>::new();
//! let x = tape.constant(vec![1.0, 2.0], &[1, 2]).unwrap();
//! let w = tape.leaf(vec![0.5, -0.25], &[1, 2]).unwrap();
//! let z = tape.linear(x, w, None).unwrap(); // 0.5 - 0.5 = 0
//! let y = tape.activation(z, Activation::Tanh).unwrap();
//! let loss = tape.mse_loss(y, &[1.0], Reduction::Mean).unwrap();
//! assert_eq!(tape.value(loss).unwrap(), &[1.0]);
//! let grads = tape.backward(loss, None).unwrap();
//! // dloss/dw = 2 (y - t) tanh'(0) x = -2 x
//! assert_eq!(grads[w.index()].as_deref(), Some(&[-2.0, -4.0][..]));
//! assert!(grads[x.index()].is_none()); // a constant gets no gradient
//! ```
//!
//! ```rust
//! use _core::autograd::dual::Scalar; // sin, exp, ... of dual numbers
//! use _core::layers::Dual;
//!
//! // f(x) = x^2 sin(x); f'(x) = 2x sin(x) + x^2 cos(x)
//! let f = |x: Dual<f64>| x * x * x.sin();
//! let y = f(Dual::variable(1.5));
//! assert!((y.re - 1.5f64.powi(2) * 1.5f64.sin()).abs() < 1e-15);
//! assert!((y.eps - (3.0 * 1.5f64.sin() + 2.25 * 1.5f64.cos())).abs() < 1e-14);
//! ```

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod init;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod rnn;

pub use crate::autograd::dual::Dual;
pub use crate::autograd::tape::{Activation, Tape, Var};
pub use attention::{MultiheadAttention, MultiheadAttentionCache, MultiheadAttentionGrads};
pub use conv::{Conv2d, Conv2dCache, Conv2dGrads, Conv2dOptions, ConvAlgorithm, ConvKernel};
pub use dropout::{Dropout, DropoutCache};
pub use linear::{Linear, LinearCache, LinearGrads};
pub use norm::{BatchNorm2d, BatchNormCache, GroupNorm, LayerNorm, NormGrads, RowsNormCache};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, AvgPoolCache, MaxPool2d, MaxPoolCache};
pub use rnn::{Gru, GruCache, GruGrads, GruOutput, Lstm, LstmCache, LstmGrads, LstmOutput, RnnOptions, RnnWeights};

use crate::error::{FerroError, Result};
use crate::real::Real;
use ndarray::{Array, ArrayView, Dimension};
use std::borrow::Cow;

/// The elements of `x` in row-major order, as the kernels take them: borrowed when the
/// view is in standard layout, else copied once (fallibly, like every caller-sized
/// buffer of the crate).
pub(crate) fn row_major<'a, T: Real, D: Dimension>(x: &ArrayView<'a, T, D>) -> Result<Cow<'a, [T]>> {
    if let Some(s) = x.to_slice() {
        return Ok(Cow::Borrowed(s));
    }
    let mut v = crate::alloc::with_capacity(x.len(), "a row-major copy of a strided view")?;
    v.extend(x.iter().copied());
    Ok(Cow::Owned(v))
}

/// [`row_major`] of an optional parameter.
pub(crate) fn param_slice<'a, T: Real, D: Dimension>(p: Option<&'a Array<T, D>>) -> Result<Option<Cow<'a, [T]>>> {
    p.map(|a| row_major(&a.view())).transpose()
}

/// A kernel's row-major output as an array of `shape`.
pub(crate) fn to_array<T, D: Dimension>(shape: D, v: Vec<T>, what: &str) -> Result<Array<T, D>> {
    Array::from_shape_vec(shape, v).map_err(|e| FerroError::Shape(format!("{what}: {e}")))
}

/// A ShapeError naming `name` unless `got` is `want`.
pub(crate) fn expect_shape(name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return crate::shape_err!("{name}: expected shape {want:?}, got {got:?}");
    }
    Ok(())
}

/// Asserts that `a` and `b` have one shape and differ by at most `tol` (1 + |b|) anywhere.
#[cfg(test)]
pub(crate) fn assert_close<T: Real, D: Dimension>(a: &ArrayView<'_, T, D>, b: &ArrayView<'_, T, D>, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        let (x, y) = (x.to_f64(), y.to_f64());
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}
