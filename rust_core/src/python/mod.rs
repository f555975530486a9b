//! PyO3 bindings: the module `ferrograd._core`, one Python function per kernel of the
//! contract, with the contract's names and argument order.
//!
//! Every function
//! * accepts float32 or float64 numpy arrays (all float operands of one call share the
//!   dtype of the first) and reads them without copying when they are C-contiguous
//!   (a strided view is copied once into row-major order);
//! * releases the GIL while the kernel runs (`py.detach`), so Python threads run beside it;
//! * turns a kernel's `FerroError` into ValueError/TypeError, and a Rust panic (a bug)
//!   into RuntimeError instead of aborting the interpreter.

use crate::error::FerroError;
use crate::ops::activation::{self, Gelu};
use crate::ops::elementwise::{self, BinaryOp, UnaryOp};
use crate::ops::loss::{self, Reduction};
use crate::ops::optim::{Adam, Sgd};
use crate::ops::{linear, reduce, softmax};
use crate::real::Real;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    Element, IntoPyArray, PyArrayDescrMethods, PyReadonlyArrayDyn, PyReadwriteArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(super) type PyArr<'py> = PyResult<Bound<'py, PyAny>>;

impl From<FerroError> for PyErr {
    fn from(e: FerroError) -> PyErr {
        match e {
            FerroError::Dtype(m) => PyTypeError::new_err(m),
            FerroError::Shape(m) | FerroError::Value(m) => PyValueError::new_err(m),
            FerroError::Memory(m) => PyMemoryError::new_err(m),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Dt {
    F32,
    F64,
}

fn describe(x: &Bound<'_, PyAny>) -> String {
    match x.getattr("dtype") {
        Ok(d) => format!("dtype {d}"),
        Err(_) => format!("a {}", x.get_type().name().map(|n| n.to_string()).unwrap_or_default()),
    }
}

/// The float dtype of `x` (the first operand decides the call's dtype).
pub(super) fn float_dtype(x: &Bound<'_, PyAny>, name: &str) -> PyResult<Dt> {
    // an array's descriptor compared in C first: numpy's `dtype.name` is Python code,
    // ~10 us a call, 3% of a 4M-element relu
    if let Ok(a) = x.cast::<PyUntypedArray>() {
        let d = a.dtype();
        if d.is_equiv_to(&numpy::dtype::<f32>(x.py())) {
            return Ok(Dt::F32);
        }
        if d.is_equiv_to(&numpy::dtype::<f64>(x.py())) {
            return Ok(Dt::F64);
        }
    }
    let dt: Option<String> = x
        .getattr("dtype")
        .and_then(|d| d.getattr("name"))
        .and_then(|n| n.extract::<String>())
        .ok();
    match dt.as_deref() {
        Some("float32") => Ok(Dt::F32),
        Some("float64") => Ok(Dt::F64),
        _ => Err(PyTypeError::new_err(format!(
            "{name}: expected a float32 or float64 numpy array, got {}",
            describe(x)
        ))),
    }
}

/// `x` as a read-only array of T, or a TypeError naming the argument.
pub(super) fn arr<'py, T: Real + Element>(x: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    x.extract::<PyReadonlyArrayDyn<'py, T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name}: expected a {} numpy array (the dtype of the first operand), got {}",
            T::NAME,
            describe(x)
        ))
    })
}

/// The elements in row-major order: borrowed when C-contiguous, else copied once. The
/// copy is allocated fallibly: a broadcast view of a huge logical shape (`expand`) gives
/// MemoryError (ValueError past isize), as numpy's own copy would, not an abort.
pub(super) fn data<'a, T: Element + Copy>(a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<Cow<'a, [T]>> {
    // as_slice also accepts Fortran-ordered memory, so ask for C order explicitly
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() && a.as_array().as_ptr().is_aligned() => Ok(Cow::Borrowed(s)),
        _ => Ok(Cow::Owned(row_major_copy(a.as_array())?)),
    }
}

/// A strided view's elements in row-major order. The per-element iterator of a
/// dynamic-rank view recomputes an IxDyn index for every element (~30 ns each: 14 ms for
/// a 0.5M-element head-split q), its lane iterator ~200 ns per lane; walking the strides
/// directly copies at memory speed (a memcpy per unit-stride row).
fn row_major_copy<T: Copy>(a: numpy::ndarray::ArrayViewD<'_, T>) -> crate::Result<Vec<T>> {
    let n = crate::alloc::checked_numel(a.shape(), "a strided input's row-major copy")?;
    let mut v = crate::alloc::with_capacity(n, &format!("a row-major copy of a {:?} view", a.shape()))?;
    if a.is_empty() {
        return Ok(v);
    }
    // SAFETY: a view's pointer and strides address a valid element for every index below
    // its shape, and the walk visits exactly those; v has capacity for all of them.
    unsafe { copy_strided(a.as_ptr(), a.shape(), a.strides(), &mut v) };
    Ok(v)
}

/// Appends the elements of the strided block at `p` (`shape`, `strides` in elements) to v.
/// Reads are unaligned where the array is (numpy allows a buffer at any byte offset; a
/// Rust slice over it would be undefined behaviour), so such an array is copied too.
unsafe fn copy_strided<T: Copy>(p: *const T, shape: &[usize], strides: &[isize], v: &mut Vec<T>) {
    match shape.len() {
        0 => v.push(p.read_unaligned()),
        1 if strides[0] == 1 && p.is_aligned() => v.extend_from_slice(std::slice::from_raw_parts(p, shape[0])),
        1 => v.extend((0..shape[0] as isize).map(|i| p.offset(i * strides[0]).read_unaligned())),
        _ => {
            for i in 0..shape[0] as isize {
                copy_strided(p.offset(i * strides[0]), &shape[1..], &strides[1..], v);
            }
        }
    }
}

/// A new numpy array of `shape` that takes ownership of `v` (no copy).
pub(super) fn out<'py, T: Element>(py: Python<'py>, v: Vec<T>, shape: &[usize]) -> PyArr<'py> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), v)
        .map_err(|e| PyRuntimeError::new_err(format!("rust_core: output shape {shape:?}: {e}")))?;
    Ok(a.into_pyarray(py).into_any())
}

/// Run a kernel without the GIL, turning its error or panic into a Python exception.
pub(super) fn run<R: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<R> + Send) -> PyResult<R> {
    match py.detach(move || catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(payload) => {
            if let Some(crate::alloc::AllocFailure(e)) = payload.downcast_ref::<crate::alloc::AllocFailure>() {
                return Err(e.clone().into());
            }
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "rust_core panicked (a bug in ferrograd; please report it): {msg}"
            )))
        }
    }
}

/// `match` on the dtype with `T` bound to f32 or f64 in the body.
macro_rules! with_float {
    ($dt:expr, $T:ident => $body:block) => {
        match $dt {
            Dt::F32 => {
                type $T = f32;
                $body
            }
            Dt::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}

mod norm;
// the pooling and dropout families' bindings (they use the helpers above)
mod dropout;
mod native;
mod pool;
// the attention family's bindings
mod attention;
// the convolution family's bindings
mod conv;
// the recurrent family's bindings
mod rnn;
// the indexing family's bindings
mod indexing;

/// y = f(x), same shape.
fn map_x<'py, T: Real + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    f: impl FnOnce(&[T]) -> crate::Result<Vec<T>> + Send,
) -> PyArr<'py> {
    let xa = arr::<T>(x, "x")?;
    let xs = data(&xa)?;
    let y = run(py, || f(&xs))?;
    out(py, y, xa.shape())
}

/// gx = f(x, gy), same shape; gy must match x's shape and dtype. `x_name` names the
/// first argument in errors (`y` where a backward takes the forward's output).
fn map_x_gy<'py, T: Real + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    x_name: &str,
    gy: &Bound<'py, PyAny>,
    f: impl FnOnce(&[T], &[T]) -> crate::Result<Vec<T>> + Send,
) -> PyArr<'py> {
    let xa = arr::<T>(x, x_name)?;
    let ga = arr::<T>(gy, "gy")?;
    if xa.shape() != ga.shape() {
        return Err(PyValueError::new_err(format!(
            "gy: expected the shape of {x_name} {:?}, got {:?}",
            xa.shape(),
            ga.shape()
        )));
    }
    let (xs, gs) = (data(&xa)?, data(&ga)?);
    let g = run(py, || f(&xs, &gs))?;
    out(py, g, xa.shape())
}

/// Declares `name_forward(x, extra...)` and `name_backward(x, gy, extra...)` for an
/// activation whose kernels are `activation::name_forward` / `name_backward`; with
/// `from y`, the backward's first argument is the forward's output and is named `y`.
macro_rules! activation_pair {
    ($fwd:ident, $bwd:ident from y) => {
        #[pyfunction]
        fn $fwd<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyArr<'py> {
            with_float!(float_dtype(x, "x")?, T => { map_x::<T>(py, x, |xs| Ok(activation::$fwd(xs))) })
        }
        #[pyfunction]
        fn $bwd<'py>(py: Python<'py>, y: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>) -> PyArr<'py> {
            with_float!(float_dtype(y, "y")?, T => {
                map_x_gy::<T>(py, y, "y", gy, |ys, gs| activation::$bwd(ys, gs))
            })
        }
    };
    ($fwd:ident, $bwd:ident $(, $p:ident : $pt:ty => $conv:expr)*) => {
        #[pyfunction]
        // a parameter without conversion is rebound to itself (`beta => beta`)
        #[allow(clippy::redundant_locals)]
        fn $fwd<'py>(py: Python<'py>, x: &Bound<'py, PyAny> $(, $p: $pt)*) -> PyArr<'py> {
            $(let $p = $conv;)*
            with_float!(float_dtype(x, "x")?, T => {
                map_x::<T>(py, x, |xs| Ok(activation::$fwd(xs $(, $p)*)))
            })
        }
        #[pyfunction]
        #[allow(clippy::redundant_locals)]
        fn $bwd<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny> $(, $p: $pt)*) -> PyArr<'py> {
            $(let $p = $conv;)*
            with_float!(float_dtype(x, "x")?, T => {
                map_x_gy::<T>(py, x, "x", gy, |xs, gs| activation::$bwd(xs, gs $(, $p)*))
            })
        }
    };
}

activation_pair!(relu_forward, relu_backward);
activation_pair!(sigmoid_forward, sigmoid_backward from y);
activation_pair!(tanh_forward, tanh_backward from y);
activation_pair!(leaky_relu_forward, leaky_relu_backward, negative_slope: f64 => negative_slope);
activation_pair!(swish_forward, swish_backward, beta: f64 => beta);
activation_pair!(gelu_forward, gelu_backward, approximate: &str => Gelu::parse(approximate)?);

/// `(y, mask)`: the activation and its packed mask of x > 0 (sign_mask.rs); the mask is
/// a 1-D uint8 array of ceil(n / 8) bytes.
fn forward_with_mask<'py, T: Real + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    f: impl FnOnce(&[T]) -> (Vec<T>, Vec<u8>) + Send,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let xa = arr::<T>(x, "x")?;
    let xs = data(&xa)?;
    let (y, m) = run(py, || Ok(f(&xs)))?;
    let n = m.len();
    Ok((out(py, y, xa.shape())?, out(py, m, &[n])?))
}

/// gx from a packed mask and gy (the shape of gx).
fn backward_from_mask<'py, T: Real + Element>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    f: impl FnOnce(&[u8], &[T]) -> crate::Result<Vec<T>> + Send,
) -> PyArr<'py> {
    let ma = mask
        .extract::<PyReadonlyArrayDyn<'py, u8>>()
        .ok()
        .filter(|a| a.ndim() == 1)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "mask: expected a 1-D uint8 numpy array (from a *_forward_mask kernel), got {}",
                describe(mask)
            ))
        })?;
    let ga = arr::<T>(gy, "gy")?;
    let (ms, gs) = (data(&ma)?, data(&ga)?);
    let gx = run(py, || f(&ms, &gs))?;
    out(py, gx, ga.shape())
}

#[pyfunction]
fn relu_forward_mask<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    with_float!(float_dtype(x, "x")?, T => { forward_with_mask::<T>(py, x, activation::relu_forward_mask) })
}

#[pyfunction]
fn relu_backward_mask<'py>(py: Python<'py>, mask: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(gy, "gy")?, T => {
        backward_from_mask::<T>(py, mask, gy, activation::relu_backward_mask)
    })
}

#[pyfunction]
fn leaky_relu_forward_mask<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    negative_slope: f64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    with_float!(float_dtype(x, "x")?, T => {
        forward_with_mask::<T>(py, x, |xs| activation::leaky_relu_forward_mask(xs, negative_slope))
    })
}

#[pyfunction]
fn leaky_relu_backward_mask<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    negative_slope: f64,
) -> PyArr<'py> {
    with_float!(float_dtype(gy, "gy")?, T => {
        backward_from_mask::<T>(py, mask, gy, |ms, gs| activation::leaky_relu_backward_mask(ms, gs, negative_slope))
    })
}

#[pyfunction]
fn prelu_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, weight: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let wa = arr::<T>(weight, "weight")?;
        if wa.ndim() != 1 {
            return Err(PyValueError::new_err(format!(
                "weight: expected a 1-D array of alphas, got shape {:?}", wa.shape())));
        }
        let (xs, ws, shape) = (data(&xa)?, data(&wa)?, xa.shape().to_vec());
        let y = run(py, || activation::prelu_forward::<T>(&xs, &shape, &ws))?;
        out(py, y, &shape)
    })
}

#[pyfunction]
fn prelu_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let wa = arr::<T>(weight, "weight")?;
        let ga = arr::<T>(gy, "gy")?;
        if wa.ndim() != 1 {
            return Err(PyValueError::new_err(format!(
                "weight: expected a 1-D array of alphas, got shape {:?}", wa.shape())));
        }
        let (xs, ws, gs, shape) = (data(&xa)?, data(&wa)?, data(&ga)?, xa.shape().to_vec());
        let (gx, gw) = run(py, || activation::prelu_backward::<T>(&xs, &shape, &ws, &gs))?;
        Ok((out(py, gx, &shape)?, out(py, gw, wa.shape())?))
    })
}

#[pyfunction]
fn binary_forward<'py>(py: Python<'py>, op: &str, a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyArr<'py> {
    let op = BinaryOp::parse(op)?;
    with_float!(float_dtype(a, "a")?, T => {
        let (aa, ba) = (arr::<T>(a, "a")?, arr::<T>(b, "b")?);
        let (asl, bsl) = (data(&aa)?, data(&ba)?);
        let (sa, sb) = (aa.shape().to_vec(), ba.shape().to_vec());
        let (y, shape) = run(py, || elementwise::binary_forward::<T>(op, &asl, &sa, &bsl, &sb))?;
        out(py, y, &shape)
    })
}

#[pyfunction]
fn binary_backward<'py>(
    py: Python<'py>,
    op: &str,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let op = BinaryOp::parse(op)?;
    with_float!(float_dtype(a, "a")?, T => {
        let (aa, ba, ga) = (arr::<T>(a, "a")?, arr::<T>(b, "b")?, arr::<T>(gy, "gy")?);
        let (asl, bsl, gsl) = (data(&aa)?, data(&ba)?, data(&ga)?);
        let (sa, sb) = (aa.shape().to_vec(), ba.shape().to_vec());
        let (gra, grb) = run(py, || elementwise::binary_backward::<T>(op, &asl, &sa, &bsl, &sb, &gsl))?;
        Ok((out(py, gra, &sa)?, out(py, grb, &sb)?))
    })
}

#[pyfunction]
fn unary_forward<'py>(py: Python<'py>, op: &str, x: &Bound<'py, PyAny>) -> PyArr<'py> {
    let op = UnaryOp::parse(op)?;
    with_float!(float_dtype(x, "x")?, T => {
        map_x::<T>(py, x, |xs| Ok(elementwise::unary_forward(op, xs)))
    })
}

#[pyfunction]
fn unary_backward<'py>(py: Python<'py>, op: &str, x: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>) -> PyArr<'py> {
    let op = UnaryOp::parse(op)?;
    with_float!(float_dtype(x, "x")?, T => {
        map_x_gy::<T>(py, x, "x", gy, |xs, gs| elementwise::unary_backward(op, xs, gs))
    })
}

#[pyfunction]
fn sum_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, axes: Vec<usize>, keepdims: bool) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let (xs, shape) = (data(&xa)?, xa.shape().to_vec());
        let y = run(py, || reduce::sum_axes::<T>(&xs, &shape, &axes))?;
        let out_shape: Vec<usize> = (0..shape.len())
            .filter_map(|a| if axes.contains(&a) { if keepdims { Some(1) } else { None } } else { Some(shape[a]) })
            .collect();
        out(py, y, &out_shape)
    })
}

#[pyfunction]
fn sum_to_shape<'py>(py: Python<'py>, g: &Bound<'py, PyAny>, shape: Vec<usize>) -> PyArr<'py> {
    with_float!(float_dtype(g, "g")?, T => {
        let ga = arr::<T>(g, "g")?;
        let (gs, g_shape) = (data(&ga)?, ga.shape().to_vec());
        let y = run(py, || reduce::sum_to_shape::<T>(&gs, &g_shape, &shape))?;
        out(py, y, &shape)
    })
}

/// Length of the last axis (1 for a 0-d array).
fn last_axis(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

#[pyfunction]
fn softmax_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let c = last_axis(arr::<T>(x, "x")?.shape());
        map_x::<T>(py, x, |xs| softmax::softmax_forward(xs, c))
    })
}

#[pyfunction]
fn softmax_backward<'py>(py: Python<'py>, y: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(y, "y")?, T => {
        let c = last_axis(arr::<T>(y, "y")?.shape());
        map_x_gy::<T>(py, y, "y", gy, |ys, gs| softmax::softmax_backward(ys, gs, c))
    })
}

#[pyfunction]
fn log_softmax_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let c = last_axis(arr::<T>(x, "x")?.shape());
        map_x::<T>(py, x, |xs| softmax::log_softmax_forward(xs, c))
    })
}

#[pyfunction]
fn log_softmax_backward<'py>(py: Python<'py>, y: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>) -> PyArr<'py> {
    with_float!(float_dtype(y, "y")?, T => {
        let c = last_axis(arr::<T>(y, "y")?.shape());
        map_x_gy::<T>(py, y, "y", gy, |ys, gs| softmax::log_softmax_backward(ys, gs, c))
    })
}

/// (batch, rows, cols) of a 2-D or 3-D operand.
fn mat_dims(shape: &[usize], name: &str) -> PyResult<(usize, usize, usize)> {
    match *shape {
        [r, c] => Ok((1, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(PyValueError::new_err(format!("{name}: expected a 2-D or 3-D array, got shape {shape:?}"))),
    }
}

#[pyfunction]
#[pyo3(signature = (a, b, transpose_a=false, transpose_b=false))]
fn matmul<'py>(py: Python<'py>, a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>, transpose_a: bool, transpose_b: bool) -> PyArr<'py> {
    with_float!(float_dtype(a, "a")?, T => {
        let (aa, ba) = (arr::<T>(a, "a")?, arr::<T>(b, "b")?);
        let (bta, ra, ca) = mat_dims(aa.shape(), "a")?;
        let (btb, rb, cb) = mat_dims(ba.shape(), "b")?;
        if aa.ndim() != ba.ndim() || bta != btb {
            return Err(PyValueError::new_err(format!(
                "b: expected a and b both 2-D or both 3-D with one batch size, got shapes {:?} and {:?}",
                aa.shape(), ba.shape())));
        }
        let (asl, bsl) = (data(&aa)?, data(&ba)?);
        let (y, m, n) = run(py, || linear::matmul::<T>(&asl, (ra, ca), &bsl, (rb, cb), bta, transpose_a, transpose_b))?;
        if aa.ndim() == 2 { out(py, y, &[m, n]) } else { out(py, y, &[bta, m, n]) }
    })
}

fn linear_dims(x: &[usize], w: &[usize]) -> PyResult<(usize, usize, usize)> {
    let (n, fin) = match *x {
        [n, f] => (n, f),
        _ => return Err(PyValueError::new_err(format!("input: expected shape (N, in_features), got {x:?}"))),
    };
    match *w {
        [fout, f] if f == fin => Ok((n, fin, fout)),
        _ => Err(PyValueError::new_err(format!("weight: expected shape (out_features, {fin}), got {w:?}"))),
    }
}

#[pyfunction]
#[pyo3(signature = (x, weight, bias=None))]
fn linear_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, weight: &Bound<'py, PyAny>, bias: Option<&Bound<'py, PyAny>>) -> PyArr<'py> {
    with_float!(float_dtype(x, "input")?, T => {
        let (xa, wa) = (arr::<T>(x, "input")?, arr::<T>(weight, "weight")?);
        let ba = match bias { Some(b) => Some(arr::<T>(b, "bias")?), None => None };
        let (n, fin, fout) = linear_dims(xa.shape(), wa.shape())?;
        if let Some(b) = &ba {
            if b.shape() != [fout] {
                return Err(PyValueError::new_err(format!("bias: expected shape ({fout},), got {:?}", b.shape())));
            }
        }
        let (xs, ws) = (data(&xa)?, data(&wa)?);
        let bs = ba.as_ref().map(data).transpose()?;
        let y = run(py, || linear::linear_forward::<T>(&xs, n, fin, &ws, fout, bs.as_deref()))?;
        out(py, y, &[n, fout])
    })
}

#[pyfunction]
#[allow(clippy::type_complexity)]
fn linear_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    has_bias: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    with_float!(float_dtype(x, "input")?, T => {
        let (xa, wa, ga) = (arr::<T>(x, "input")?, arr::<T>(weight, "weight")?, arr::<T>(gy, "gy")?);
        let (n, fin, fout) = linear_dims(xa.shape(), wa.shape())?;
        let (xs, ws, gs) = (data(&xa)?, data(&wa)?, data(&ga)?);
        let (gx, gw, gb) = run(py, || linear::linear_backward::<T>(&xs, n, fin, &ws, fout, &gs, has_bias))?;
        let gb = match gb { Some(g) => Some(out(py, g, &[fout])?), None => None };
        Ok((out(py, gx, &[n, fin])?, out(py, gw, &[fout, fin])?, gb))
    })
}

#[pyfunction]
fn mse_loss_forward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, target: &Bound<'py, PyAny>, reduction: &str) -> PyArr<'py> {
    let red = Reduction::parse(reduction)?;
    with_float!(float_dtype(x, "input")?, T => {
        let (xa, ta) = (arr::<T>(x, "input")?, arr::<T>(target, "target")?);
        if xa.shape() != ta.shape() {
            return Err(PyValueError::new_err(format!(
                "target: expected the shape of input {:?}, got {:?}", xa.shape(), ta.shape())));
        }
        let (xs, ts) = (data(&xa)?, data(&ta)?);
        let y = run(py, || loss::mse_loss_forward::<T>(&xs, &ts, red))?;
        if red == Reduction::None { out(py, y, xa.shape()) } else { out(py, y, &[]) }
    })
}

#[pyfunction]
fn mse_loss_backward<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, target: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>, reduction: &str) -> PyArr<'py> {
    let red = Reduction::parse(reduction)?;
    with_float!(float_dtype(x, "input")?, T => {
        let (xa, ta, ga) = (arr::<T>(x, "input")?, arr::<T>(target, "target")?, arr::<T>(gy, "gy")?);
        let (xs, ts, gs) = (data(&xa)?, data(&ta)?, data(&ga)?);
        let g = run(py, || loss::mse_loss_backward::<T>(&xs, &ts, &gs, red))?;
        out(py, g, xa.shape())
    })
}

fn targets<'py>(t: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, i64>> {
    t.extract::<PyReadonlyArrayDyn<'py, i64>>().map_err(|_| {
        PyTypeError::new_err(format!("target: expected int64 class indices, got {}", describe(t)))
    })
}

fn logits_dims(shape: &[usize]) -> PyResult<(usize, usize)> {
    match *shape {
        [n, c] => Ok((n, c)),
        _ => Err(PyValueError::new_err(format!("input: expected logits of shape (N, C), got {shape:?}"))),
    }
}

#[pyfunction]
fn cross_entropy_forward<'py>(py: Python<'py>, logits: &Bound<'py, PyAny>, target: &Bound<'py, PyAny>, reduction: &str) -> PyArr<'py> {
    let red = Reduction::parse(reduction)?;
    with_float!(float_dtype(logits, "input")?, T => {
        let (la, ta) = (arr::<T>(logits, "input")?, targets(target)?);
        let (n, c) = logits_dims(la.shape())?;
        let (ls, ts) = (data(&la)?, data(&ta)?);
        let y = run(py, || loss::cross_entropy_forward::<T>(&ls, n, c, &ts, red))?;
        if red == Reduction::None { out(py, y, &[n]) } else { out(py, y, &[]) }
    })
}

#[pyfunction]
fn cross_entropy_backward<'py>(py: Python<'py>, logits: &Bound<'py, PyAny>, target: &Bound<'py, PyAny>, gy: &Bound<'py, PyAny>, reduction: &str) -> PyArr<'py> {
    let red = Reduction::parse(reduction)?;
    with_float!(float_dtype(logits, "input")?, T => {
        let (la, ta, ga) = (arr::<T>(logits, "input")?, targets(target)?, arr::<T>(gy, "gy")?);
        let (n, c) = logits_dims(la.shape())?;
        let (ls, ts, gs) = (data(&la)?, data(&ta)?, data(&ga)?);
        let g = run(py, || loss::cross_entropy_backward::<T>(&ls, n, c, &ts, &gs, red))?;
        out(py, g, &[n, c])
    })
}

/// A writable, C-contiguous array of T (optimizer state is updated in place).
pub(super) fn writable<'py, T: Real + Element>(x: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    let a = x.extract::<PyReadwriteArrayDyn<'py, T>>().map_err(|e| {
        PyTypeError::new_err(format!("{name}: expected a writable {} numpy array, got {} ({e})", T::NAME, describe(x)))
    })?;
    if !a.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("{name}: expected a C-contiguous array (updated in place)")));
    }
    if !a.as_array().as_ptr().is_aligned() {
        return Err(PyValueError::new_err(format!(
            "{name}: expected an array aligned to {} bytes (updated in place), got one at an unaligned address",
            std::mem::align_of::<T>()
        )));
    }
    Ok(a)
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn sgd_step<'py>(
    py: Python<'py>,
    param: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    momentum_buffer: Option<&Bound<'py, PyAny>>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    first_step: bool,
) -> PyResult<()> {
    let opt = Sgd { lr, momentum, dampening, weight_decay, nesterov, first_step };
    with_float!(float_dtype(param, "param")?, T => {
        let mut pa = writable::<T>(param, "param")?;
        let ga = arr::<T>(grad, "grad")?;
        let mut ba = match momentum_buffer { Some(b) => Some(writable::<T>(b, "momentum_buffer")?), None => None };
        let gs = data(&ga)?;
        let ps = pa.as_slice_mut().expect("checked contiguous");
        let bs = ba.as_mut().map(|b| b.as_slice_mut().expect("checked contiguous"));
        run(py, || opt.step::<T>(ps, &gs, bs))
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn adam_step<'py>(
    py: Python<'py>,
    param: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    exp_avg: &Bound<'py, PyAny>,
    exp_avg_sq: &Bound<'py, PyAny>,
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) -> PyResult<()> {
    let opt = Adam { step, lr, beta1, beta2, eps, weight_decay, decoupled };
    with_float!(float_dtype(param, "param")?, T => {
        let mut pa = writable::<T>(param, "param")?;
        let ga = arr::<T>(grad, "grad")?;
        let mut ma = writable::<T>(exp_avg, "exp_avg")?;
        let mut va = writable::<T>(exp_avg_sq, "exp_avg_sq")?;
        let gs = data(&ga)?;
        let ps = pa.as_slice_mut().expect("checked contiguous");
        let ms = ma.as_slice_mut().expect("checked contiguous");
        let vs = va.as_slice_mut().expect("checked contiguous");
        run(py, || opt.step::<T>(ps, &gs, ms, vs))
    })
}

/// Panics inside a kernel on purpose: the test that a Rust panic reaches Python as a
/// RuntimeError (and does not abort the interpreter) calls this.
#[pyfunction]
fn _debug_panic(py: Python<'_>) -> PyResult<()> {
    run(py, || -> crate::Result<()> { panic!("deliberate panic from _debug_panic") })
}

/// Threads the kernels use (rayon's pool; set RAYON_NUM_THREADS before import to change).
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// The rust backend's cache of large freed buffers (`buffer_cache.rs`): bytes and blocks
/// kept, the byte limit, and the large requests served from it (hits) or not (misses).
#[pyfunction]
fn buffer_cache_info(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let i = crate::buffer_cache::info();
    let d = pyo3::types::PyDict::new(py);
    d.set_item("cached_bytes", i.cached_bytes)?;
    d.set_item("cached_blocks", i.cached_blocks)?;
    d.set_item("limit_bytes", i.limit_bytes)?;
    d.set_item("hits", i.hits)?;
    d.set_item("misses", i.misses)?;
    Ok(d)
}

/// Set the byte limit of the cached free buffers (0 turns caching off).
#[pyfunction]
fn set_buffer_cache_limit(limit_bytes: usize) {
    crate::buffer_cache::set_limit(limit_bytes)
}

/// Return every cached free buffer to the system.
#[pyfunction]
fn empty_buffer_cache(py: Python<'_>) {
    py.detach(crate::buffer_cache::empty)
}

/// Make the importing thread (normally Python's main thread) worker 0 of rayon's global
/// pool, so a kernel called from it works on its own chunks instead of handing the whole
/// job to the pool and sleeping. With the pool's default shape (one worker per core plus
/// the blocked caller) a woken worker is often placed on the caller's busy core and the
/// call runs at one core's speed: measured on 2 cores, 10-25% of 1 ms calls took twice
/// as long. Calls from other Python threads are injected into the pool as before. With a
/// single thread (RAYON_NUM_THREADS=1) the pool keeps its own worker, so jobs injected by
/// other threads always have a thread that runs them.
/// A refused allocation unwinds with `alloc::AllocFailure`, which `run` turns into
/// MemoryError: the default hook would print "thread panicked" for it first. Every other
/// panic still goes to the previous hook.
fn quiet_alloc_failures() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<crate::alloc::AllocFailure>().is_none() {
            previous(info)
        }
    }));
}

fn init_thread_pool() {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads >= 2 {
        // fails only if the global pool exists already (another extension built it): keep it
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global();
    }
}

/// Keeps freed heap memory for reuse instead of returning it to the kernel at once.
/// glibc's dynamic thresholds trim the heap whenever more than twice the last freed mmap
/// chunk lies free at its top (4 MiB after a 2 MiB array), so a layer whose intermediates
/// are a few MiB each handed its pages back on every call and took a page fault per 4 KiB
/// on the next (measured: a 0.5M-element strided relu 1.9 ms -> 0.11 ms, attention on
/// head-split views 11 ms -> 3 ms). Fixed values switch the dynamic adjustment off:
/// blocks under 32 MiB (glibc's largest mmap threshold; larger outputs get huge pages,
/// ops/map.rs) come from the heap, and up to 256 MiB of free heap top is kept.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called once at import.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    quiet_alloc_failures();
    init_thread_pool();
    tune_allocator();
    macro_rules! add {
        ($($f:ident),* $(,)?) => { $( m.add_function(wrap_pyfunction!($f, m)?)?; )* };
    }
    add!(
        relu_forward, relu_backward, leaky_relu_forward, leaky_relu_backward,
        relu_forward_mask, relu_backward_mask, leaky_relu_forward_mask, leaky_relu_backward_mask,
        prelu_forward, prelu_backward, sigmoid_forward, sigmoid_backward,
        tanh_forward, tanh_backward, gelu_forward, gelu_backward,
        swish_forward, swish_backward, binary_forward, binary_backward,
        unary_forward, unary_backward, sum_forward, sum_to_shape,
        softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward,
        matmul, linear_forward, linear_backward, mse_loss_forward, mse_loss_backward,
        cross_entropy_forward, cross_entropy_backward, sgd_step, adam_step,
        _debug_panic, num_threads, buffer_cache_info, set_buffer_cache_limit,
        empty_buffer_cache,
    );
    norm::register(m)?;
    pool::register(m)?;
    dropout::register(m)?;
    attention::register(m)?;
    native::register(m)?;
    conv::register(m)?;
    rnn::register(m)?;
    indexing::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
