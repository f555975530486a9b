//! Bindings of the dropout family (`ops::dropout`): the Philox stream, dropout's
//! multiply (forward on x, backward on gy: the same mask from the same (seed, offset)),
//! and DropBlock's multiplier.

use super::{float_dtype, map_x, out, run, Dt, PyArr};
use crate::ops::dropout;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

#[pyfunction]
fn philox_words<'py>(py: Python<'py>, seed: u64, offset: u64, first_block: u64, n_blocks: usize) -> PyArr<'py> {
    let w = run(py, || Ok(dropout::philox_words(seed, offset, first_block, n_blocks)))?;
    out(py, w, &[n_blocks, 4])
}

/// `x * m` with dropout's multiplier m for the stream (seed, offset): forward on x,
/// backward on gy.
#[pyfunction]
fn dropout_apply<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, p: f64, seed: u64, offset: u64) -> PyArr<'py> {
    with_float!(float_dtype(x, "x")?, T => {
        map_x::<T>(py, x, |xs| dropout::dropout_apply(xs, p, seed, offset))
    })
}

#[pyfunction]
fn dropblock_mask<'py>(
    py: Python<'py>,
    shape: Vec<usize>,
    dtype: &str,
    gamma: f64,
    block_size: usize,
    seed: u64,
    offset: u64,
) -> PyArr<'py> {
    let dt = match dtype {
        "float32" => Dt::F32,
        "float64" => Dt::F64,
        _ => return Err(PyTypeError::new_err(format!("dtype: expected float32 or float64, got {dtype}"))),
    };
    with_float!(dt, T => {
        let m = run(py, || dropout::dropblock_mask::<T>(&shape, gamma, block_size, seed, offset))?;
        out(py, m, &shape)
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(philox_words, m)?)?;
    m.add_function(wrap_pyfunction!(dropout_apply, m)?)?;
    m.add_function(wrap_pyfunction!(dropblock_mask, m)?)?;
    Ok(())
}
