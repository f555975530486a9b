//! Bindings of the native tape (`autograd::tape`): one call runs a sequential model's
//! forward, loss, backward and (optionally) an SGD step inside Rust.

use super::{arr, data, float_dtype, out, run, writable, Dt};
use crate::autograd::tape::{self, Activation, EncoderLayer, Layer, LossTarget, PoolGeom};
use crate::ops::activation::Gelu;
use crate::ops::loss::Reduction;
use crate::ops::optim::Sgd;
use crate::real::Real;
use numpy::{PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

fn parse_layers(specs: &[(String, Vec<f64>)]) -> PyResult<Vec<Layer>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (kind, p))| {
            let want = match kind.as_str() {
                "relu" | "sigmoid" | "tanh" => 0,
                "linear" | "leaky_relu" | "gelu" | "swish" => 1,
                "flatten" => 2,
                "conv2d" => 8,
                "max_pool2d" => 9,
                "avg_pool2d" => 9,
                "batch_norm1d" | "batch_norm2d" | "instance_norm2d" | "lstm" | "gru" => 6,
                "group_norm" => 4,
                "dropout" | "adaptive_avg_pool2d" => 2,
                "transformer_encoder_layer" => 12,
                // eps, weight, bias, k, then the k normalized dimensions
                "layer_norm" => 4 + p.get(3).map_or(0, |&k| if (1.0..=4.0).contains(&k) { k as usize } else { 0 }),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "layers[{i}]: expected one of linear, conv2d, max_pool2d, avg_pool2d, flatten, relu, \
                         leaky_relu, sigmoid, tanh, gelu, swish, batch_norm1d, batch_norm2d, layer_norm, \
                         group_norm, instance_norm2d, dropout, lstm, gru, adaptive_avg_pool2d, \
                         transformer_encoder_layer, got {other:?}"
                    )))
                }
            };
            if p.len() != want {
                return Err(PyValueError::new_err(format!(
                    "layers[{i}]: {kind} expects {want} parameters, got {}", p.len())));
            }
            // a non-negative integer parameter
            let u = |j: usize| -> PyResult<usize> {
                let v = p[j];
                if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
                    Ok(v as usize)
                } else {
                    Err(PyValueError::new_err(format!(
                        "layers[{i}]: {kind} parameter {j}: expected a non-negative integer, got {v}")))
                }
            };
            let int = |j: usize| -> PyResult<i64> {
                let v = p[j];
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
                    Ok(v as i64)
                } else {
                    Err(PyValueError::new_err(format!(
                        "layers[{i}]: {kind} parameter {j}: expected an integer, got {v}")))
                }
            };
            Ok(match kind.as_str() {
                "linear" => Layer::Linear { bias: p[0] != 0.0 },
                "relu" => Layer::Act(Activation::Relu),
                "leaky_relu" => Layer::Act(Activation::LeakyRelu(p[0])),
                "sigmoid" => Layer::Act(Activation::Sigmoid),
                "tanh" => Layer::Act(Activation::Tanh),
                "gelu" => Layer::Act(Activation::Gelu(if p[0] != 0.0 { Gelu::Tanh } else { Gelu::None })),
                "swish" => Layer::Act(Activation::Swish(p[0])),
                "flatten" => Layer::Flatten { start_dim: int(0)?, end_dim: int(1)? },
                // bias, stride (2), padding (2), dilation (2), groups
                "conv2d" => Layer::Conv2d {
                    bias: p[0] != 0.0,
                    stride: (u(1)?, u(2)?),
                    padding: (u(3)?, u(4)?),
                    dilation: (u(5)?, u(6)?),
                    groups: u(7)?,
                },
                // kernel (2), stride (2), padding (2), then max: dilation (2), ceil_mode;
                // avg: ceil_mode, count_include_pad, divisor (0: none)
                "max_pool2d" => Layer::MaxPool2d(PoolGeom {
                    kernel: (u(0)?, u(1)?),
                    stride: (u(2)?, u(3)?),
                    padding: (u(4)?, u(5)?),
                    dilation: (u(6)?, u(7)?),
                    ceil_mode: p[8] != 0.0,
                }),
                // num_features, affine, running, batch_stats, momentum, eps
                "batch_norm1d" | "batch_norm2d" => Layer::BatchNorm {
                    num_features: u(0)?,
                    two_d: kind == "batch_norm2d",
                    affine: p[1] != 0.0,
                    running: p[2] != 0.0,
                    batch_stats: p[3] != 0.0,
                    momentum: p[4],
                    eps: p[5],
                },
                // num_features, affine, running, input_stats, momentum, eps
                "instance_norm2d" => Layer::InstanceNorm {
                    num_features: u(0)?,
                    affine: p[1] != 0.0,
                    running: p[2] != 0.0,
                    input_stats: p[3] != 0.0,
                    momentum: p[4],
                    eps: p[5],
                },
                "layer_norm" => {
                    let k = u(3)?;
                    if !(1..=4).contains(&k) {
                        return Err(PyValueError::new_err(format!(
                            "layers[{i}]: layer_norm supports 1 to 4 normalized dimensions, got {k}")));
                    }
                    let mut shape = [0usize; 4];
                    for (j, d) in shape.iter_mut().take(k).enumerate() {
                        *d = u(4 + j)?;
                    }
                    Layer::LayerNorm { shape, k, weight: p[1] != 0.0, bias: p[2] != 0.0, eps: p[0] }
                }
                // groups, channels, affine, eps
                "group_norm" => Layer::GroupNorm { groups: u(0)?, channels: u(1)?, affine: p[2] != 0.0, eps: p[3] },
                "dropout" => Layer::Dropout { p: p[0], training: p[1] != 0.0 },
                // output (h, w), 0 keeping the input's size
                "adaptive_avg_pool2d" => Layer::AdaptiveAvgPool2d { out: (u(0)?, u(1)?) },
                // heads, norm_first, gelu, batch_first, bias, eps1, eps2, p_attn, p (dropout,
                // dropout1, dropout2), training
                "transformer_encoder_layer" => Layer::TransformerEncoderLayer(EncoderLayer {
                    heads: u(0)?,
                    norm_first: p[1] != 0.0,
                    gelu: p[2] != 0.0,
                    batch_first: p[3] != 0.0,
                    bias: p[4] != 0.0,
                    eps: (p[5], p[6]),
                    p_attn: p[7],
                    p: (p[8], p[9], p[10]),
                    training: p[11] != 0.0,
                }),
                // num_layers, bidirectional, bias, batch_first, dropout, training
                "lstm" | "gru" => Layer::Rnn {
                    lstm: kind == "lstm",
                    layers: u(0)?,
                    bidirectional: p[1] != 0.0,
                    bias: p[2] != 0.0,
                    batch_first: p[3] != 0.0,
                    p: p[4],
                    training: p[5] != 0.0,
                },
                _ => Layer::AvgPool2d {
                    geom: PoolGeom {
                        kernel: (u(0)?, u(1)?),
                        stride: (u(2)?, u(3)?),
                        padding: (u(4)?, u(5)?),
                        dilation: (1, 1),
                        ceil_mode: p[6] != 0.0,
                    },
                    count_include_pad: p[7] != 0.0,
                    divisor: int(8)?,
                },
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
/// `buffers` (running statistics) are updated in place by training-mode norms; `streams`
/// are the dropout `(seed, offset)`s in layer order.
#[pyfunction]
#[pyo3(signature = (layers, params, x, target, loss, reduction, lr=None, buffers=Vec::new(), streams=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn native_sequential_step<'py>(
    py: Python<'py>,
    layers: Vec<(String, Vec<f64>)>,
    params: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    loss: &str,
    reduction: &str,
    lr: Option<f64>,
    buffers: Vec<Bound<'py, PyAny>>,
    streams: Vec<(u64, u64)>,
) -> PyResult<(f64, Vec<Bound<'py, PyAny>>)> {
    let layers = parse_layers(&layers)?;
    let red = parse_reduction(reduction)?;
    if loss != "mse" && loss != "cross_entropy" {
        return Err(PyValueError::new_err(format!("loss: expected 'mse' or 'cross_entropy', got {loss:?}")));
    }
    with_float!(float_dtype(x, "x")?, T => {
        let xa = arr::<T>(x, "x")?;
        let xs = data(&xa)?;
        let xshape = xa.shape().to_vec();
        let mut pw: Vec<PyReadwriteArrayDyn<'py, T>> = params
            .iter()
            .enumerate()
            .map(|(i, p)| writable::<T>(p, &format!("params[{i}]")))
            .collect::<PyResult<_>>()?;
        let shapes: Vec<Vec<usize>> = pw.iter().map(|a| a.shape().to_vec()).collect();
        let mut bw: Vec<PyReadwriteArrayDyn<'py, T>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| writable::<T>(b, &format!("buffers[{i}]")))
            .collect::<PyResult<_>>()?;
        let mut bufs: Vec<&mut [T]> = bw.iter_mut().map(|a| a.as_slice_mut().expect("checked contiguous")).collect();
        let (lv, grads) = {
            let views: Vec<(&[T], &[usize])> = pw
                .iter()
                .zip(&shapes)
                .map(|(a, s)| (a.as_slice().expect("checked contiguous"), s.as_slice()))
                .collect();
            if loss == "mse" {
                let ta = arr::<T>(target, "target")?;
                let (ts, tshape) = (data(&ta)?, ta.shape().to_vec());
                run(py, || tape::sequential_grads(&layers, &views, &mut bufs, &streams, &xs, &xshape, LossTarget::Mse(&ts, &tshape, red)))?
            } else {
                let ta: PyReadonlyArrayDyn<'py, i64> = target.extract().map_err(|_| {
                    PyTypeError::new_err("target: expected an int64 numpy array of class indices")
                })?;
                let (ts, tshape) = (data(&ta)?, ta.shape().to_vec());
                run(py, || tape::sequential_grads(&layers, &views, &mut bufs, &streams, &xs, &xshape, LossTarget::CrossEntropy(&ts, &tshape, red)))?
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
