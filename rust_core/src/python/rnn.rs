//! Bindings of the recurrent kernels (`ops/rnn.rs`), with the contract's names and argument
//! order: lstm_forward, lstm_backward, gru_forward, gru_backward (rnn_concat_cols and
//! rnn_split_cols are numpy copies, inherited from the numpy backend).

use super::{arr, data, float_dtype, out, run, Dt};
use crate::ops::rnn::{self, RnnDims};
use crate::real::Real;
use numpy::{Element, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

type Any<'py> = Bound<'py, PyAny>;

/// (T, N, I, H) from x (T, N, I) and w_hh (G*H, H).
fn dims(x: &[usize], w_hh: &[usize], gates: usize) -> PyResult<RnnDims> {
    if x.len() != 3 {
        return Err(PyValueError::new_err(format!("x: expected a 3-D array (T, N, input_size), got shape {x:?}")));
    }
    if w_hh.len() != 2 || w_hh[0] != gates * w_hh[1] {
        return Err(PyValueError::new_err(format!(
            "w_hh: expected shape ({gates}*hidden_size, hidden_size), got {w_hh:?}")));
    }
    Ok(RnnDims { t: x[0], n: x[1], i: x[2], h: w_hh[1] })
}

fn opt<'py, T: Real + Element>(p: Option<&Any<'py>>, name: &str) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    p.map(|p| arr::<T>(p, name)).transpose()
}

fn both<'py, T: Real + Element>(
    b_ih: Option<&Any<'py>>,
    b_hh: Option<&Any<'py>>,
) -> PyResult<Option<(PyReadonlyArrayDyn<'py, T>, PyReadonlyArrayDyn<'py, T>)>> {
    match (opt::<T>(b_ih, "b_ih")?, opt::<T>(b_hh, "b_hh")?) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(PyValueError::new_err("b_ih, b_hh: expected both arrays or both None, got one of each")),
    }
}

/// (y, h_n, c_n, gates, cells); gates and cells are None when keep_for_backward is false
/// (inference: neither is computed into memory).
#[pyfunction]
#[pyo3(signature = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep_for_backward=true))]
#[allow(clippy::too_many_arguments)]
fn lstm_forward<'py>(py: Python<'py>, x: &Any<'py>, h0: &Any<'py>, c0: &Any<'py>, w_ih: &Any<'py>,
                     w_hh: &Any<'py>, b_ih: Option<&Any<'py>>, b_hh: Option<&Any<'py>>, reverse: bool,
                     keep_for_backward: bool) -> PyResult<Bound<'py, PyTuple>> {
    with_float!(float_dtype(x, "x")?, T => {
        let (xa, ha, ca) = (arr::<T>(x, "x")?, arr::<T>(h0, "h0")?, arr::<T>(c0, "c0")?);
        let (wi, wh) = (arr::<T>(w_ih, "w_ih")?, arr::<T>(w_hh, "w_hh")?);
        let bias = both::<T>(b_ih, b_hh)?;
        let d = dims(xa.shape(), wh.shape(), 4)?;
        let (xs, hs, cs, wis, whs) = (data(&xa)?, data(&ha)?, data(&ca)?, data(&wi)?, data(&wh)?);
        let bs = match bias.as_ref() { Some((a, b)) => Some((data(a)?, data(b)?)), None => None };
        let f = run(py, || rnn::lstm_forward::<T>(&xs, &hs, &cs, &wis, &whs,
                                                  bs.as_ref().map(|(a, b)| (&a[..], &b[..])), d, reverse,
                                                  keep_for_backward))?;
        let (t, n, h) = (d.t, d.n, d.h);
        let (gates, cells) = if keep_for_backward {
            (out(py, f.gates, &[t, n, 4 * h])?, out(py, f.cells, &[t, n, h])?)
        } else {
            (py.None().into_bound(py), py.None().into_bound(py))
        };
        PyTuple::new(py, [out(py, f.y, &[t, n, h])?, out(py, f.h_n, &[n, h])?, out(py, f.c_n, &[n, h])?,
                          gates, cells])
    })
}

#[pyfunction]
#[pyo3(signature = (x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n, has_bias, reverse))]
#[allow(clippy::too_many_arguments)]
fn lstm_backward<'py>(py: Python<'py>, x: &Any<'py>, h0: &Any<'py>, c0: &Any<'py>, w_ih: &Any<'py>,
                      w_hh: &Any<'py>, y: &Any<'py>, gates: &Any<'py>, cells: &Any<'py>, gy: &Any<'py>,
                      gh_n: &Any<'py>, gc_n: &Any<'py>, has_bias: bool, reverse: bool)
                      -> PyResult<Bound<'py, PyTuple>> {
    with_float!(float_dtype(x, "x")?, T => {
        let (xa, ha, ca) = (arr::<T>(x, "x")?, arr::<T>(h0, "h0")?, arr::<T>(c0, "c0")?);
        let (wi, wh) = (arr::<T>(w_ih, "w_ih")?, arr::<T>(w_hh, "w_hh")?);
        let (ya, ga, cla) = (arr::<T>(y, "y")?, arr::<T>(gates, "gates")?, arr::<T>(cells, "cells")?);
        let (gya, gha, gca) = (arr::<T>(gy, "gy")?, arr::<T>(gh_n, "gh_n")?, arr::<T>(gc_n, "gc_n")?);
        let d = dims(xa.shape(), wh.shape(), 4)?;
        let (xs, hs, cs, wis, whs) = (data(&xa)?, data(&ha)?, data(&ca)?, data(&wi)?, data(&wh)?);
        let (ys, gs, cls, gys, ghs, gcs) = (data(&ya)?, data(&ga)?, data(&cla)?, data(&gya)?, data(&gha)?, data(&gca)?);
        let (gx, gh0, gc0, gwi, gwh, gb) = run(py, || rnn::lstm_backward::<T>(
            &xs, &hs, &cs, &wis, &whs, &ys, &gs, &cls, &gys, &ghs, &gcs, has_bias, d, reverse))?;
        let (t, n, i, h) = (d.t, d.n, d.i, d.h);
        let gb = match gb { Some(g) => out(py, g, &[4 * h])?, None => py.None().into_bound(py) };
        PyTuple::new(py, [out(py, gx, &[t, n, i])?, out(py, gh0, &[n, h])?, out(py, gc0, &[n, h])?,
                          out(py, gwi, &[4 * h, i])?, out(py, gwh, &[4 * h, h])?, gb])
    })
}

#[pyfunction]
#[pyo3(signature = (x, h0, w_ih, w_hh, b_ih, b_hh, reverse))]
#[allow(clippy::too_many_arguments)]
fn gru_forward<'py>(py: Python<'py>, x: &Any<'py>, h0: &Any<'py>, w_ih: &Any<'py>, w_hh: &Any<'py>,
                    b_ih: Option<&Any<'py>>, b_hh: Option<&Any<'py>>, reverse: bool)
                    -> PyResult<Bound<'py, PyTuple>> {
    with_float!(float_dtype(x, "x")?, T => {
        let (xa, ha) = (arr::<T>(x, "x")?, arr::<T>(h0, "h0")?);
        let (wi, wh) = (arr::<T>(w_ih, "w_ih")?, arr::<T>(w_hh, "w_hh")?);
        let bias = both::<T>(b_ih, b_hh)?;
        let d = dims(xa.shape(), wh.shape(), 3)?;
        let (xs, hs, wis, whs) = (data(&xa)?, data(&ha)?, data(&wi)?, data(&wh)?);
        let bs = match bias.as_ref() { Some((a, b)) => Some((data(a)?, data(b)?)), None => None };
        let (y, hn, g) = run(py, || rnn::gru_forward::<T>(&xs, &hs, &wis, &whs,
                                                          bs.as_ref().map(|(a, b)| (&a[..], &b[..])), d, reverse))?;
        let (t, n, h) = (d.t, d.n, d.h);
        PyTuple::new(py, [out(py, y, &[t, n, h])?, out(py, hn, &[n, h])?, out(py, g, &[t, n, 4 * h])?])
    })
}

#[pyfunction]
#[pyo3(signature = (x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse))]
#[allow(clippy::too_many_arguments)]
fn gru_backward<'py>(py: Python<'py>, x: &Any<'py>, h0: &Any<'py>, w_ih: &Any<'py>, w_hh: &Any<'py>,
                     y: &Any<'py>, gates: &Any<'py>, gy: &Any<'py>, gh_n: &Any<'py>, has_bias: bool,
                     reverse: bool) -> PyResult<Bound<'py, PyTuple>> {
    with_float!(float_dtype(x, "x")?, T => {
        let (xa, ha) = (arr::<T>(x, "x")?, arr::<T>(h0, "h0")?);
        let (wi, wh) = (arr::<T>(w_ih, "w_ih")?, arr::<T>(w_hh, "w_hh")?);
        let (ya, ga, gya, gha) = (arr::<T>(y, "y")?, arr::<T>(gates, "gates")?, arr::<T>(gy, "gy")?,
                                  arr::<T>(gh_n, "gh_n")?);
        let d = dims(xa.shape(), wh.shape(), 3)?;
        let (xs, hs, wis, whs) = (data(&xa)?, data(&ha)?, data(&wi)?, data(&wh)?);
        let (ys, gs, gys, ghs) = (data(&ya)?, data(&ga)?, data(&gya)?, data(&gha)?);
        let (gx, gh0, gwi, gwh, gbi, gbh) = run(py, || rnn::gru_backward::<T>(
            &xs, &hs, &wis, &whs, &ys, &gs, &gys, &ghs, has_bias, d, reverse))?;
        let (t, n, i, h) = (d.t, d.n, d.i, d.h);
        let opt_out = |g: Option<Vec<T>>| -> PyResult<Any<'py>> {
            match g { Some(g) => out(py, g, &[3 * h]), None => Ok(py.None().into_bound(py)) }
        };
        PyTuple::new(py, [out(py, gx, &[t, n, i])?, out(py, gh0, &[n, h])?, out(py, gwi, &[3 * h, i])?,
                          out(py, gwh, &[3 * h, h])?, opt_out(gbi)?, opt_out(gbh)?])
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lstm_forward, m)?)?;
    m.add_function(wrap_pyfunction!(lstm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gru_forward, m)?)?;
    m.add_function(wrap_pyfunction!(gru_backward, m)?)?;
    Ok(())
}
