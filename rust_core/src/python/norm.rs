//! Bindings of the normalization kernels (`ops/norm.rs`), with the contract's names and
//! argument order: layer_norm_*, group_norm_*, batch_norm_*.

use super::{arr, data, float_dtype, out, run, writable, Dt};
use crate::ops::norm::{self, ChannelsLayout, Running, RowsLayout};
use crate::real::Real;
use numpy::{Element, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Triple<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>);
type GradTriple<'py> = (Bound<'py, PyAny>, Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);

fn opt_arr<'py, T: Real + Element>(
    p: Option<&Bound<'py, PyAny>>,
    name: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    p.map(|p| arr::<T>(p, name)).transpose()
}

fn check_shape(got: &[usize], want: &[usize], name: &str) -> PyResult<()> {
    if got != want {
        return Err(PyValueError::new_err(format!("{name}: expected shape {want:?}, got {got:?}")));
    }
    Ok(())
}

/// (lead shape, normalized shape) of layer_norm's input.
fn split_normalized(shape: &[usize], k: usize) -> PyResult<(Vec<usize>, Vec<usize>)> {
    if k == 0 || k > shape.len() {
        return Err(PyValueError::new_err(format!(
            "normalized_ndim: expected an integer in [1, {}] for an input of shape {shape:?}, got {k}",
            shape.len()
        )));
    }
    let cut = shape.len() - k;
    Ok((shape[..cut].to_vec(), shape[cut..].to_vec()))
}

/// (N, C, HW) of an (N, C, *) input.
fn nc_dims(shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(PyValueError::new_err(format!("input: expected shape (N, C, *), got {shape:?}")));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

#[pyfunction]
#[pyo3(signature = (x, weight, bias, normalized_ndim, eps))]
fn layer_norm_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    normalized_ndim: usize,
    eps: f64,
) -> PyResult<Triple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let (wa, ba) = (opt_arr::<T>(weight, "weight")?, opt_arr::<T>(bias, "bias")?);
        let shape = xa.shape().to_vec();
        let (lead, normalized) = split_normalized(&shape, normalized_ndim)?;
        if let Some(w) = &wa { check_shape(w.shape(), &normalized, "weight")?; }
        if let Some(b) = &ba { check_shape(b.shape(), &normalized, "bias")?; }
        let lay = RowsLayout { n: lead.iter().product(), c: normalized.iter().product(), hw: 1, groups: 1 };
        let (xs, ws, bs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, ba.as_ref().map(data).transpose()?);
        let (y, m, s) = run(py, || norm::rows_forward::<T>(&xs, lay, ws.as_deref(), bs.as_deref(), eps))?;
        Ok((out(py, y, &shape)?, out(py, m, &lead)?, out(py, s, &lead)?))
    })
}

#[pyfunction]
fn layer_norm_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    normalized_ndim: usize,
) -> PyResult<GradTriple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let wa = opt_arr::<T>(weight, "weight")?;
        let (ma, sa, ga) = (arr::<T>(mean, "mean")?, arr::<T>(rstd, "rstd")?, arr::<T>(gy, "gy")?);
        let shape = xa.shape().to_vec();
        let (lead, normalized) = split_normalized(&shape, normalized_ndim)?;
        if let Some(w) = &wa { check_shape(w.shape(), &normalized, "weight")?; }
        check_shape(ga.shape(), &shape, "gy")?;
        let lay = RowsLayout { n: lead.iter().product(), c: normalized.iter().product(), hw: 1, groups: 1 };
        let (xs, ws, ms, ss, gs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, data(&ma)?, data(&sa)?, data(&ga)?);
        let (gx, gw, gb) = run(py, || norm::rows_backward::<T>(&xs, lay, ws.as_deref(), &ms, &ss, &gs))?;
        let gw = gw.map(|g| out(py, g, &normalized)).transpose()?;
        let gb = gb.map(|g| out(py, g, &normalized)).transpose()?;
        Ok((out(py, gx, &shape)?, gw, gb))
    })
}

#[pyfunction]
fn group_norm_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    num_groups: usize,
    eps: f64,
) -> PyResult<Triple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let (wa, ba) = (opt_arr::<T>(weight, "weight")?, opt_arr::<T>(bias, "bias")?);
        let shape = xa.shape().to_vec();
        let (n, c, hw) = nc_dims(&shape)?;
        if let Some(w) = &wa { check_shape(w.shape(), &[c], "weight")?; }
        if let Some(b) = &ba { check_shape(b.shape(), &[c], "bias")?; }
        let lay = RowsLayout { n, c, hw, groups: num_groups };
        let (xs, ws, bs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, ba.as_ref().map(data).transpose()?);
        let (y, m, s) = run(py, || norm::rows_forward::<T>(&xs, lay, ws.as_deref(), bs.as_deref(), eps))?;
        Ok((out(py, y, &shape)?, out(py, m, &[n, num_groups])?, out(py, s, &[n, num_groups])?))
    })
}

#[pyfunction]
fn group_norm_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    num_groups: usize,
) -> PyResult<GradTriple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let wa = opt_arr::<T>(weight, "weight")?;
        let (ma, sa, ga) = (arr::<T>(mean, "mean")?, arr::<T>(rstd, "rstd")?, arr::<T>(gy, "gy")?);
        let shape = xa.shape().to_vec();
        let (n, c, hw) = nc_dims(&shape)?;
        if let Some(w) = &wa { check_shape(w.shape(), &[c], "weight")?; }
        check_shape(ga.shape(), &shape, "gy")?;
        let lay = RowsLayout { n, c, hw, groups: num_groups };
        let (xs, ws, ms, ss, gs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, data(&ma)?, data(&sa)?, data(&ga)?);
        let (gx, gw, gb) = run(py, || norm::rows_backward::<T>(&xs, lay, ws.as_deref(), &ms, &ss, &gs))?;
        let gw = gw.map(|g| out(py, g, &[c])).transpose()?;
        let gb = gb.map(|g| out(py, g, &[c])).transpose()?;
        Ok((out(py, gx, &shape)?, gw, gb))
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn batch_norm_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    running_mean: Option<&Bound<'py, PyAny>>,
    running_var: Option<&Bound<'py, PyAny>>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> PyResult<Triple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let (wa, ba) = (opt_arr::<T>(weight, "weight")?, opt_arr::<T>(bias, "bias")?);
        let shape = xa.shape().to_vec();
        let (n, c, hw) = nc_dims(&shape)?;
        if let Some(w) = &wa { check_shape(w.shape(), &[c], "weight")?; }
        if let Some(b) = &ba { check_shape(b.shape(), &[c], "bias")?; }
        let mut rm = running_mean.map(|r| writable::<T>(r, "running_mean")).transpose()?;
        let mut rv = running_var.map(|r| writable::<T>(r, "running_var")).transpose()?;
        if rm.is_some() != rv.is_some() {
            return Err(PyValueError::new_err(
                "running_var: expected running_mean and running_var both given or both None"));
        }
        if let Some(r) = &rm { check_shape(r.shape(), &[c], "running_mean")?; }
        if let Some(r) = &rv { check_shape(r.shape(), &[c], "running_var")?; }
        let lay = ChannelsLayout { n, c, hw };
        let (xs, ws, bs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, ba.as_ref().map(data).transpose()?);
        let running = match (rm.as_mut(), rv.as_mut()) {
            (Some(m), Some(v)) => Some(Running {
                mean: m.as_slice_mut().expect("checked contiguous"),
                var: v.as_slice_mut().expect("checked contiguous"),
            }),
            _ => None,
        };
        let (y, m, s) = run(py, || norm::batch_norm_forward::<T>(
            &xs, lay, ws.as_deref(), bs.as_deref(), running, training, momentum, eps))?;
        Ok((out(py, y, &shape)?, out(py, m, &[c])?, out(py, s, &[c])?))
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn batch_norm_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    training: bool,
) -> PyResult<GradTriple<'py>> {
    with_float!(float_dtype(x, "input")?, T => {
        let xa = arr::<T>(x, "input")?;
        let wa = opt_arr::<T>(weight, "weight")?;
        let (ma, sa, ga) = (arr::<T>(mean, "mean")?, arr::<T>(rstd, "rstd")?, arr::<T>(gy, "gy")?);
        let shape = xa.shape().to_vec();
        let (n, c, hw) = nc_dims(&shape)?;
        if let Some(w) = &wa { check_shape(w.shape(), &[c], "weight")?; }
        check_shape(ga.shape(), &shape, "gy")?;
        let lay = ChannelsLayout { n, c, hw };
        let (xs, ws, ms, ss, gs) = (data(&xa)?, wa.as_ref().map(data).transpose()?, data(&ma)?, data(&sa)?, data(&ga)?);
        let (gx, gw, gb) = run(py, || norm::batch_norm_backward::<T>(&xs, lay, ws.as_deref(), &ms, &ss, &gs, training))?;
        let gw = gw.map(|g| out(py, g, &[c])).transpose()?;
        let gb = gb.map(|g| out(py, g, &[c])).transpose()?;
        Ok((out(py, gx, &shape)?, gw, gb))
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(layer_norm_forward, m)?)?;
    m.add_function(wrap_pyfunction!(layer_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(group_norm_forward, m)?)?;
    m.add_function(wrap_pyfunction!(group_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(batch_norm_forward, m)?)?;
    m.add_function(wrap_pyfunction!(batch_norm_backward, m)?)?;
    Ok(())
}
