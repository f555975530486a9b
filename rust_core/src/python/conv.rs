//! Bindings of the convolution kernels (`conv/`): conv2d_forward / conv2d_backward with
//! `algo` one of "im2col" (default), "naive", "winograd" (F(4x4, 3x3)), "winograd2"
//! (F(2x2, 3x3)), "winograd4" and "fft". Geometry arguments are (h, w) pairs already
//! checked by `ferrograd/backends/_conv.py`; the kernels check them again
//! (`conv::Geom::new`).

use super::{arr, data, float_dtype, out, run, Dt, PyArr};
use crate::conv::winograd::WinoTile;
use crate::conv::{self, Geom};
use numpy::PyUntypedArrayMethods;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type P = (usize, usize);

/// The algorithms these bindings run.
#[derive(Clone, Copy)]
enum Algo {
    Im2col,
    Naive,
    Winograd(WinoTile),
    Fft,
}

fn parse_algo(algo: &str) -> PyResult<Algo> {
    Ok(match algo {
        "im2col" => Algo::Im2col,
        "naive" => Algo::Naive,
        "winograd" | "winograd4" => Algo::Winograd(WinoTile::F4),
        "winograd2" => Algo::Winograd(WinoTile::F2),
        "fft" => Algo::Fft,
        _ => {
            return Err(PyValueError::new_err(format!(
                "algo: expected one of 'im2col', 'naive', 'winograd', 'winograd2', 'winograd4', 'fft', got {algo:?}"
            )))
        }
    })
}

fn dims4(shape: &[usize], name: &str) -> PyResult<[usize; 4]> {
    <[usize; 4]>::try_from(shape).map_err(|_| {
        PyValueError::new_err(format!("{name}: expected a 4-D array, got shape {shape:?}"))
    })
}

fn same_dtype(a: &Bound<'_, PyAny>, name: &str, dt: Dt) -> PyResult<()> {
    if !matches!(
        (float_dtype(a, name)?, dt),
        (Dt::F32, Dt::F32) | (Dt::F64, Dt::F64)
    ) {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected the dtype of input"
        )));
    }
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (x, weight, bias, stride, padding, dilation, groups, algo = "im2col"))]
#[allow(clippy::too_many_arguments)]
fn conv2d_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    stride: P,
    padding: P,
    dilation: P,
    groups: usize,
    algo: &str,
) -> PyArr<'py> {
    let algo = parse_algo(algo)?;
    let dt = float_dtype(x, "input")?;
    same_dtype(weight, "weight", dt)?;
    if let Some(b) = bias {
        same_dtype(b, "bias", dt)?;
    }
    with_float!(dt, T => {
        let xa = arr::<T>(x, "input")?;
        let wa = arr::<T>(weight, "weight")?;
        let ba = bias.map(|b| arr::<T>(b, "bias")).transpose()?;
        let g = Geom::new(dims4(xa.shape(), "input")?, dims4(wa.shape(), "weight")?, stride,
                          padding, dilation, groups)?;
        let (xs, ws) = (data(&xa)?, data(&wa)?);
        let bs = ba.as_ref().map(|b| data(b)).transpose()?;
        let bs = bs.as_deref();
        let y = run(py, || match algo {
            Algo::Im2col => conv::conv2d_forward::<T>(&xs, &ws, bs, &g),
            Algo::Naive => conv::naive::naive_forward::<T>(&xs, &ws, bs, &g),
            Algo::Winograd(t) => conv::winograd::winograd_forward::<T>(&xs, &ws, bs, &g, t),
            Algo::Fft => conv::fft::fft_forward::<T>(&xs, &ws, bs, &g),
        })?;
        out(py, y, &[g.n, g.o, g.oh, g.ow])
    })
}

type Grads<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

#[pyfunction]
#[pyo3(signature = (x, weight, gy, stride, padding, dilation, groups, has_bias, algo = "im2col"))]
#[allow(clippy::too_many_arguments)]
fn conv2d_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    gy: &Bound<'py, PyAny>,
    stride: P,
    padding: P,
    dilation: P,
    groups: usize,
    has_bias: bool,
    algo: &str,
) -> PyResult<Grads<'py>> {
    let algo = parse_algo(algo)?;
    let dt = float_dtype(x, "input")?;
    same_dtype(weight, "weight", dt)?;
    same_dtype(gy, "grad_output", dt)?;
    with_float!(dt, T => {
        let xa = arr::<T>(x, "input")?;
        let wa = arr::<T>(weight, "weight")?;
        let ga = arr::<T>(gy, "grad_output")?;
        let xshape = dims4(xa.shape(), "input")?;
        let wshape = dims4(wa.shape(), "weight")?;
        let g = Geom::new(xshape, wshape, stride, padding, dilation, groups)?;
        let want = [g.n, g.o, g.oh, g.ow];
        if ga.shape() != want {
            return Err(PyValueError::new_err(format!(
                "grad_output: expected shape {want:?}, got {:?}", ga.shape())));
        }
        let (xs, ws, gs) = (data(&xa)?, data(&wa)?, data(&ga)?);
        let (gx, gw, gb) = run(py, || match algo {
            Algo::Im2col => conv::conv2d_backward::<T>(&xs, &ws, &gs, &g, has_bias),
            Algo::Naive => conv::naive::naive_backward::<T>(&xs, &ws, &gs, &g, has_bias),
            Algo::Winograd(t) => conv::winograd::winograd_backward::<T>(&xs, &ws, &gs, &g, t, has_bias),
            Algo::Fft => conv::fft::fft_backward::<T>(&xs, &ws, &gs, &g, has_bias),
        })?;
        let gb = match gb { Some(v) => Some(out(py, v, &[g.o])?), None => None };
        Ok((out(py, gx, &xshape)?, out(py, gw, &wshape)?, gb))
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv2d_forward, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_backward, m)?)?;
    Ok(())
}
