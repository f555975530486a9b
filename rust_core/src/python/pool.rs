//! Bindings of the pooling kernels (`ops::pool`). Inputs are (N, C, H, W) arrays; each
//! spatial axis comes as a window table `(start, count, step, factor)` built by
//! `ferrograd/backends/_pool.py`.

use super::{arr, data, float_dtype, out, run, Dt, PyArr};
use crate::ops::pool::{self, Axis};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type Table = (Vec<i64>, Vec<i64>, i64, Vec<i64>);

fn axis(size: usize, t: Table) -> Axis {
    Axis { size, start: t.0, count: t.1, step: t.2, factor: t.3 }
}

/// (planes, H, W) of a 4-D shape.
fn nchw(shape: &[usize], name: &str) -> PyResult<(usize, usize, usize)> {
    match *shape {
        [n, c, h, w] => Ok((n * c, h, w)),
        _ => Err(PyValueError::new_err(format!(
            "{name}: expected a 4-D array (N, C, H, W), got shape {shape:?}"
        ))),
    }
}

fn indices<'py>(t: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, i64>> {
    t.extract::<PyReadonlyArrayDyn<'py, i64>>().map_err(|_| {
        PyTypeError::new_err("indices: expected an int64 numpy array".to_string())
    })
}

#[pyfunction]
fn pool2d_max_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: Table,
    cols: Table,
    with_indices: bool,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let shape = xa.shape().to_vec();
        let (planes, h, w) = nchw(&shape, "x")?;
        let (ra, ca) = (axis(h, rows), axis(w, cols));
        let xs = data(&xa)?;
        let (y, idx) = run(py, || pool::max_pool_forward::<T>(&xs, planes, &ra, &ca, with_indices))?;
        let oshape = [shape[0], shape[1], ra.out(), ca.out()];
        let idx = match idx { Some(i) => Some(out(py, i, &oshape)?), None => None };
        Ok((out(py, y, &oshape)?, idx))
    })
}

#[pyfunction]
fn pool2d_max_backward<'py>(
    py: Python<'py>,
    gy: &Bound<'py, PyAny>,
    indices_: &Bound<'py, PyAny>,
    input_shape: Vec<usize>,
) -> PyArr<'py> {
    with_float!(float_dtype(gy, "gy")?, T => {
        let ga = arr::<T>(gy, "gy")?;
        let ia = indices(indices_)?;
        let (planes, h, w) = nchw(&input_shape, "input_shape")?;
        let gshape = ga.shape().to_vec();
        let (gplanes, oh, ow) = nchw(&gshape, "gy")?;
        if gplanes != planes || gshape[..2] != input_shape[..2] || ia.shape() != gshape.as_slice() {
            return Err(PyValueError::new_err(format!(
                "indices: expected gy and indices of one shape (N, C, OH, OW) with the input's N, C \
                 {:?}, got {:?} and {:?}", &input_shape[..2], gshape, ia.shape())));
        }
        let (gs, is) = (data(&ga)?, data(&ia)?);
        let gx = run(py, || pool::max_pool_backward::<T>(&gs, &is, planes, oh * ow, h * w))?;
        out(py, gx, &input_shape)
    })
}

#[pyfunction]
fn pool2d_avg_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: Table,
    cols: Table,
    divisor: i64,
) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let shape = xa.shape().to_vec();
        let (planes, h, w) = nchw(&shape, "x")?;
        let (ra, ca) = (axis(h, rows), axis(w, cols));
        let xs = data(&xa)?;
        let y = run(py, || pool::avg_pool_forward::<T>(&xs, planes, &ra, &ca, divisor))?;
        out(py, y, &[shape[0], shape[1], ra.out(), ca.out()])
    })
}

#[pyfunction]
fn pool2d_avg_backward<'py>(
    py: Python<'py>,
    gy: &Bound<'py, PyAny>,
    input_shape: Vec<usize>,
    rows: Table,
    cols: Table,
    divisor: i64,
) -> PyArr<'py> {
    with_float!(float_dtype(gy, "gy")?, T => {
        let ga = arr::<T>(gy, "gy")?;
        let (planes, h, w) = nchw(&input_shape, "input_shape")?;
        let (ra, ca) = (axis(h, rows), axis(w, cols));
        let expected = [input_shape[0], input_shape[1], ra.out(), ca.out()];
        if ga.shape() != expected {
            return Err(PyValueError::new_err(format!(
                "gy: expected shape {expected:?}, got {:?}", ga.shape())));
        }
        let gs = data(&ga)?;
        let gx = run(py, || pool::avg_pool_backward::<T>(&gs, planes, &ra, &ca, divisor))?;
        out(py, gx, &input_shape)
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pool2d_max_forward, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_max_backward, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_avg_forward, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_avg_backward, m)?)?;
    Ok(())
}
