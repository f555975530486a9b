//! Bindings of the native tape (`autograd::tape`): one call runs a sequential model's
//! forward, loss, backward and (optionally) an SGD step inside Rust.

use super::{arr, data, float_dtype, out, run, writable, Dt};
use crate::autograd::tape::{self, Activation, Layer, LossTarget};
use crate::ops::activation::Gelu;
use crate::ops::loss::Reduction;
use crate::ops::optim::Sgd;
use crate::real::Real;
use numpy::{PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

fn parse_layers(specs: &[(String, f64)]) -> PyResult<Vec<Layer>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (kind, p))| {
            Ok(match kind.as_str() {
                "linear" => Layer::Linear { bias: *p != 0.0 },
                "relu" => Layer::Act(Activation::Relu),
                "leaky_relu" => Layer::Act(Activation::LeakyRelu(*p)),
                "sigmoid" => Layer::Act(Activation::Sigmoid),
                "tanh" => Layer::Act(Activation::Tanh),
                "gelu" => Layer::Act(Activation::Gelu(if *p != 0.0 { Gelu::Tanh } else { Gelu::None })),
                "swish" => Layer::Act(Activation::Swish(*p)),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "layers[{i}]: expected one of linear, relu, leaky_relu, sigmoid, tanh, gelu, swish, got {other:?}"
                    )))
                }
            })
        })
        .collect()
}

fn parse_reduction(r: &str) -> PyResult<Reduction> {
    match r {
        "mean" => Ok(Reduction::Mean),
        "sum" => Ok(Reduction::Sum),
        other => Err(PyValueError::new_err(format!("reduction: expected 'mean' or 'sum', got {other:?}"))),
    }
}

/// `(loss, grads)` of a sequential model; with `lr`, also `param -= lr * grad` in place.
#[pyfunction]
#[pyo3(signature = (layers, params, x, target, loss, reduction, lr=None))]
#[allow(clippy::too_many_arguments)]
fn native_sequential_step<'py>(
    py: Python<'py>,
    layers: Vec<(String, f64)>,
    params: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    loss: &str,
    reduction: &str,
    lr: Option<f64>,
) -> PyResult<(f64, Vec<Bound<'py, PyAny>>)> {
    let layers = parse_layers(&layers)?;
    let red = parse_reduction(reduction)?;
    if loss != "mse" && loss != "cross_entropy" {
        return Err(PyValueError::new_err(format!("loss: expected 'mse' or 'cross_entropy', got {loss:?}")));
    }
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let xs = data(&xa);
        let xshape = xa.shape().to_vec();
        let mut pw: Vec<PyReadwriteArrayDyn<'py, T>> = params
            .iter()
            .enumerate()
            .map(|(i, p)| writable::<T>(p, &format!("params[{i}]")))
            .collect::<PyResult<_>>()?;
        let shapes: Vec<Vec<usize>> = pw.iter().map(|a| a.shape().to_vec()).collect();
        let (lv, grads) = {
            let views: Vec<(&[T], &[usize])> = pw
                .iter()
                .zip(&shapes)
                .map(|(a, s)| (a.as_slice().expect("checked contiguous"), s.as_slice()))
                .collect();
            if loss == "mse" {
                let ta = arr::<T>(target, "target")?;
                let ts = data(&ta);
                run(py, || tape::sequential_grads(&layers, &views, &xs, &xshape, LossTarget::Mse(&ts, red)))?
            } else {
                let ta: PyReadonlyArrayDyn<'py, i64> = target.extract().map_err(|_| {
                    PyTypeError::new_err("target: expected an int64 numpy array of class indices")
                })?;
                let ts = data(&ta);
                run(py, || tape::sequential_grads(&layers, &views, &xs, &xshape, LossTarget::CrossEntropy(&ts, red)))?
            }
        };
        if let Some(lr) = lr {
            let sgd = Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, first_step: true };
            for (a, g) in pw.iter_mut().zip(&grads) {
                sgd.step::<T>(a.as_slice_mut().expect("checked contiguous"), g, None)?;
            }
        }
        let outs = grads
            .into_iter()
            .zip(&shapes)
            .map(|(g, s)| out(py, g, s))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((lv.to_f64(), outs))
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(native_sequential_step, m)?)?;
    Ok(())
}
