//! Bindings of the flash attention kernels (`attention/flash.rs`), with the contract's
//! names and argument order: attention_forward, attention_backward.

use super::{arr, data, float_dtype, out, run, Dt};
use crate::attention::{flash, AttnDims};
use crate::real::Real;
use numpy::{Element, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Pair<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);
type Triple<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>);

fn four(shape: &[usize], name: &str) -> PyResult<[usize; 4]> {
    if shape.len() != 4 {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a 4-D array (batch, heads, length, dim), got shape {shape:?}"
        )));
    }
    Ok([shape[0], shape[1], shape[2], shape[3]])
}

fn dims<T: Real + Element>(
    q: &PyReadonlyArrayDyn<'_, T>,
    k: &PyReadonlyArrayDyn<'_, T>,
    v: &PyReadonlyArrayDyn<'_, T>,
    mask: Option<&PyReadonlyArrayDyn<'_, T>>,
) -> PyResult<AttnDims> {
    let [b, h, lq, d] = four(q.shape(), "q")?;
    let [bk, hk, lk, dk] = four(k.shape(), "k")?;
    let [bv, hv, lv, dv] = four(v.shape(), "v")?;
    if bk != b || dk != d {
        return Err(PyValueError::new_err(format!(
            "k: expected shape ({b}, heads, length, {d}), got {:?}", k.shape())));
    }
    if (bv, hv, lv) != (b, hk, lk) {
        return Err(PyValueError::new_err(format!(
            "v: expected shape ({b}, {hk}, {lk}, dim_v), got {:?}", v.shape())));
    }
    let (mut mask_batch, mut mask_heads) = (false, false);
    if let Some(m) = mask {
        let [mb, mh, ml, ms] = four(m.shape(), "mask")?;
        if !(mb == 1 || mb == b) || !(mh == 1 || mh == h) || (ml, ms) != (lq, lk) {
            return Err(PyValueError::new_err(format!(
                "mask: expected shape (1 or {b}, 1 or {h}, {lq}, {lk}), got {:?}", m.shape())));
        }
        mask_batch = mb != 1;
        mask_heads = mh != 1;
    }
    Ok(AttnDims { b, h, hk, lq, lk, d, dv, mask_batch, mask_heads })
}

#[pyfunction]
#[pyo3(signature = (q, k, v, mask, scale, is_causal))]
fn attention_forward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    scale: f64,
    is_causal: bool,
) -> PyResult<Pair<'py>> {
    with_float!(float_dtype(q, "q")?, T => {
        let (qa, ka, va) = (arr::<T>(q, "q")?, arr::<T>(k, "k")?, arr::<T>(v, "v")?);
        let ma = mask.map(|m| arr::<T>(m, "mask")).transpose()?;
        let dm = dims(&qa, &ka, &va, ma.as_ref())?;
        let (qs, ks, vs, ms) = (data(&qa)?, data(&ka)?, data(&va)?, ma.as_ref().map(data).transpose()?);
        let (o, l) = run(py, || flash::forward::<T>(&qs, &ks, &vs, ms.as_deref(), dm, T::c(scale), is_causal))?;
        Ok((out(py, o, &[dm.b, dm.h, dm.lq, dm.dv])?, out(py, l, &[dm.b, dm.h, dm.lq])?))
    })
}

#[pyfunction]
#[pyo3(signature = (q, k, v, mask, scale, is_causal, out_, lse, gout))]
#[allow(clippy::too_many_arguments)]
fn attention_backward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    scale: f64,
    is_causal: bool,
    out_: &Bound<'py, PyAny>,
    lse: &Bound<'py, PyAny>,
    gout: &Bound<'py, PyAny>,
) -> PyResult<Triple<'py>> {
    with_float!(float_dtype(q, "q")?, T => {
        let (qa, ka, va) = (arr::<T>(q, "q")?, arr::<T>(k, "k")?, arr::<T>(v, "v")?);
        let ma = mask.map(|m| arr::<T>(m, "mask")).transpose()?;
        let (oa, la, ga) = (arr::<T>(out_, "out")?, arr::<T>(lse, "lse")?, arr::<T>(gout, "gout")?);
        let dm = dims(&qa, &ka, &va, ma.as_ref())?;
        let (qs, ks, vs, ms) = (data(&qa)?, data(&ka)?, data(&va)?, ma.as_ref().map(data).transpose()?);
        let (os, ls, gs) = (data(&oa)?, data(&la)?, data(&ga)?);
        let (gq, gk, gv) = run(py, || {
            flash::backward::<T>(&qs, &ks, &vs, ms.as_deref(), dm, T::c(scale), is_causal, &os, &ls, &gs)
        })?;
        Ok((
            out(py, gq, &[dm.b, dm.h, dm.lq, dm.d])?,
            out(py, gk, &[dm.b, dm.hk, dm.lk, dm.d])?,
            out(py, gv, &[dm.b, dm.hk, dm.lk, dm.dv])?,
        ))
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attention_forward, m)?)?;
    m.add_function(wrap_pyfunction!(attention_backward, m)?)?;
    Ok(())
}
