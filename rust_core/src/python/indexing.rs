//! Bindings of the indexing family (`ops::indexing`): the strided gather and the strided
//! copy into a writable array, behind basic indexing, narrow, split and cat.

use super::{arr, data, float_dtype, out, run, writable, Dt, PyArr};
use numpy::PyUntypedArrayMethods;
use crate::ops::indexing;
use pyo3::prelude::*;

#[pyfunction]
fn gather_strided<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let xs = data(&xa)?;
        let y = run(py, || indexing::gather_strided::<T>(&xs, &shape, &strides, offset))?;
        out(py, y, &shape)
    })
}

#[pyfunction]
fn copy_strided<'py>(
    py: Python<'py>,
    dst: &Bound<'py, PyAny>,
    src: &Bound<'py, PyAny>,
    strides: Vec<usize>,
    offset: usize,
) -> PyResult<()> {
    with_float!(float_dtype(dst, "dst")?, T => {
        let mut da = writable::<T>(dst, "dst")?;
        let sa = arr::<T>(src, "src")?;
        let (ss, shape) = (data(&sa)?, sa.shape().to_vec());
        let ds = da.as_slice_mut().expect("checked contiguous");
        run(py, || indexing::copy_strided::<T>(ds, &ss, &shape, &strides, offset))
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gather_strided, m)?)?;
    m.add_function(wrap_pyfunction!(copy_strided, m)?)?;
    Ok(())
}
