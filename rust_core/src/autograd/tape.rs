//! The native reverse-mode tape: a Wengert list over the crate's kernels.
//!
//! Each op appends one entry holding its output and the indices of its inputs (what its
//! backward needs: the inputs' values stay on the tape); `backward` walks the list once
//! in reverse, calls the op's backward kernel (`ops::linear`, `ops::activation`,
//! `ops::loss`, `ops::elementwise` semantics) with the summed gradient of its output,
//! accumulates into the inputs' gradients and drops each intermediate gradient once
//! used. Leaves (inputs, parameters) keep theirs; a `constant` (the data) gets none, and no
//! op computes a gradient that only flows into constants (a first layer's input gradient).
//! All shapes are checked when an op is recorded and errors are `FerroError`s, never
//! panics.
//!
//! The op set here is what an MLP or a small CNN needs: linear, conv2d (`conv::`, im2col +
//! GEMM), max, average and adaptive average pooling (`ops::pool`), reshape (flatten), the
//! activations, add for residuals, mse and cross-entropy losses. Further families keep
//! their recording methods and backward beside this file (`tape_norm`, `tape_dropout`,
//! `tape_rnn`, `tape_attention`); a new op is one `Op` variant, one recording method and
//! one arm in `backward`. `sequential_grads` composes them into whole layers (a
//! multi-layer bidirectional LSTM, a TransformerEncoderLayer) for `ferrograd.native`.

use crate::conv::{self, Geom};
use crate::error::{FerroError, Result};
use crate::ops::pool::{self, Axis};
use crate::ops::activation::{self, Gelu};
use crate::ops::linear::{self, gemm_into, Mat};
use crate::ops::reduce::column_sums;
use crate::ops::loss::{self, Reduction};
use crate::ops::norm::Running;
use crate::real::Real;
use crate::{shape_err, value_err};
use super::tape_attention::{DropoutAttentionOp, FlashAttentionOp, HeadsOp, SliceLastOp};
use super::tape_dropout::DropoutOp;
use super::tape_norm::{BatchNormOp, RowsNormOp};
use super::tape_rnn::{ConcatLastOp, RnnLayerOp, Swap01Op};

/// An activation with its parameters (PyTorch's defaults are the caller's to pass).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    Gelu(Gelu),
    Swish(f64),
}

impl Activation {
    fn forward<T: Real>(self, x: &[T]) -> Vec<T> {
        match self {
            Activation::Relu => activation::relu_forward(x),
            Activation::LeakyRelu(s) => activation::leaky_relu_forward(x, s),
            Activation::Sigmoid => activation::sigmoid_forward(x),
            Activation::Tanh => activation::tanh_forward(x),
            Activation::Gelu(a) => activation::gelu_forward(x, a),
            Activation::Swish(b) => activation::swish_forward(x, b),
        }
    }

    /// From the forward's input x and output y (sigmoid and tanh use y, see
    /// `activation::sigmoid_backward`).
    fn backward<T: Real>(self, x: &[T], y: &[T], gy: &[T]) -> Result<Vec<T>> {
        match self {
            Activation::Relu => activation::relu_backward(x, gy),
            Activation::LeakyRelu(s) => activation::leaky_relu_backward(x, gy, s),
            Activation::Sigmoid => activation::sigmoid_backward(y, gy),
            Activation::Tanh => activation::tanh_backward(y, gy),
            Activation::Gelu(a) => activation::gelu_backward(x, gy, a),
            Activation::Swish(b) => activation::swish_backward(x, gy, b),
        }
    }
}

/// The geometry of a max or average pooling layer (pairs are (h, w)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
}

impl PoolGeom {
    /// Window tables (rows, cols) with PyTorch's output-size rule and checks, like
    /// `ferrograd/backends/_pool.py` (`_pool_axes`). Also the `layers` pools' tables.
    pub(crate) fn axes(&self, h: usize, w: usize, count_include_pad: bool, kind: &str) -> Result<(Axis, Axis)> {
        let k = [self.kernel.0, self.kernel.1];
        let s = [self.stride.0, self.stride.1];
        let p = [self.padding.0, self.padding.1];
        let d = [self.dilation.0, self.dilation.1];
        if k.contains(&0) || s.contains(&0) || d.contains(&0) {
            return value_err!(
                "kernel_size: expected kernel_size, stride and dilation >= 1, got {:?}, {:?} and {:?}",
                self.kernel,
                self.stride,
                self.dilation
            );
        }
        if p[0] > k[0] / 2 || p[1] > k[1] / 2 {
            return value_err!(
                "padding: expected at most half of kernel_size ({:?} // 2), got {:?}",
                self.kernel,
                self.padding
            );
        }
        let mut axes = Vec::with_capacity(2);
        for (i, size) in [h, w].into_iter().enumerate() {
            let (size_, k_, s_, p_, d_) = (size as i64, k[i] as i64, s[i] as i64, p[i] as i64, d[i] as i64);
            let num = size_ + 2 * p_ - d_ * (k_ - 1) - 1 + if self.ceil_mode { s_ - 1 } else { 0 };
            let mut out = num.div_euclid(s_) + 1;
            if self.ceil_mode && (out - 1) * s_ >= size_ + p_ {
                out -= 1;
            }
            if out < 1 {
                return value_err!(
                    "kernel_size: {kind}_pool2d of input spatial size ({h}, {w}) with kernel_size={:?}, \
                     stride={:?}, padding={:?}, dilation={:?} gives an empty output",
                    self.kernel,
                    self.stride,
                    self.padding,
                    self.dilation
                );
            }
            let start: Vec<i64> = (0..out).map(|o| o * s_ - p_).collect();
            let factor = start
                .iter()
                .map(|&st| {
                    if count_include_pad {
                        (st + k_).min(size_ + p_) - st
                    } else {
                        (st + k_).min(size_) - st.max(0)
                    }
                })
                .collect();
            axes.push(Axis { size, start, count: vec![k_; out as usize], step: d_, factor });
        }
        let cols = axes.pop().expect("two axes");
        Ok((axes.pop().expect("two axes"), cols))
    }
}

/// The window table of adaptive average pooling of an axis of `size` to `out` outputs (0
/// keeps the size): window o covers [floor(o size / out), ceil((o + 1) size / out)).
pub(crate) fn adaptive_axis(size: usize, out: usize) -> Axis {
    let o = if out == 0 { size } else { out };
    let start: Vec<i64> = (0..o).map(|i| (i * size / o) as i64).collect();
    let count: Vec<i64> = (0..o).map(|i| ((i + 1) * size).div_ceil(o) as i64 - start[i]).collect();
    Axis { size, start, factor: count.clone(), count, step: 1 }
}

/// A value recorded on a tape (its index in the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(pub(super) usize);

impl Var {
    pub fn index(self) -> usize {
        self.0
    }
}

pub(super) enum Op<T> {
    Leaf,
    Linear { x: Var, w: Var, b: Option<Var>, n: usize, fin: usize, fout: usize },
    Act { x: Var, f: Activation },
    Add { a: Var, b: Var },
    Conv2d { x: Var, w: Var, b: Option<Var>, g: Geom },
    MaxPool { x: Var, indices: Vec<i64>, planes: usize, plane_out: usize, plane_in: usize },
    AvgPool { x: Var, rows: Axis, cols: Axis, divisor: i64, planes: usize },
    Reshape { x: Var },
    Mse { x: Var, target: Vec<T>, reduction: Reduction },
    CrossEntropy { logits: Var, target: Vec<i64>, n: usize, c: usize, reduction: Reduction },
    BatchNorm(BatchNormOp<T>),
    RowsNorm(RowsNormOp<T>),
    Dropout(DropoutOp),
    RnnLayer(RnnLayerOp<T>),
    Swap01(Swap01Op),
    ConcatLast(ConcatLastOp),
    SliceLast(SliceLastOp),
    Heads(HeadsOp),
    FlashAttention(FlashAttentionOp<T>),
    DropoutAttention(DropoutAttentionOp<T>),
}

pub(super) struct Entry<T> {
    pub(super) op: Op<T>,
    pub(super) value: Vec<T>,
    pub(super) shape: Vec<usize>,
    /// a leaf from `leaf`, or an op with such a leaf upstream (a `constant` and what
    /// depends on constants only get no gradient, and none is computed for them)
    pub(super) needs_grad: bool,
}

/// The Wengert list.
pub struct Tape<T> {
    pub(super) entries: Vec<Entry<T>>,
}

impl<T: Real> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> Tape<T> {
    pub fn new() -> Self {
        Tape { entries: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn entry(&self, v: Var, name: &str) -> Result<&Entry<T>> {
        self.entries.get(v.0).ok_or_else(|| {
            FerroError::Value(format!(
                "{name}: expected a value of this tape (index < {}), got index {}",
                self.entries.len(),
                v.0
            ))
        })
    }

    pub(super) fn push(&mut self, op: Op<T>, value: Vec<T>, shape: Vec<usize>) -> Var {
        let needs_grad = match &op {
            Op::Leaf => true,
            Op::Linear { x, w, b, .. } | Op::Conv2d { x, w, b, .. } => {
                self.needs_grad(*x) || self.needs_grad(*w) || b.is_some_and(|b| self.needs_grad(b))
            }
            Op::Add { a, b } => self.needs_grad(*a) || self.needs_grad(*b),
            Op::Act { x, .. }
            | Op::MaxPool { x, .. }
            | Op::AvgPool { x, .. }
            | Op::Reshape { x }
            | Op::Mse { x, .. }
            | Op::CrossEntropy { logits: x, .. } => self.needs_grad(*x),
            Op::BatchNorm(op) => op.inputs().any(|v| self.needs_grad(v)),
            Op::RowsNorm(op) => op.inputs().any(|v| self.needs_grad(v)),
            Op::Dropout(op) => self.needs_grad(op.x),
            Op::RnnLayer(op) => op.inputs().any(|v| self.needs_grad(v)),
            Op::Swap01(op) => self.needs_grad(op.x),
            Op::ConcatLast(op) => self.needs_grad(op.a) || self.needs_grad(op.b),
            Op::SliceLast(op) => self.needs_grad(op.x),
            Op::Heads(op) => self.needs_grad(op.x),
            Op::FlashAttention(op) => op.inputs().any(|v| self.needs_grad(v)),
            Op::DropoutAttention(op) => op.inputs().any(|v| self.needs_grad(v)),
        };
        self.entries.push(Entry { op, value, shape, needs_grad });
        Var(self.entries.len() - 1)
    }

    pub(super) fn needs_grad(&self, v: Var) -> bool {
        self.entries[v.0].needs_grad
    }

    /// An input that needs no gradient (the data): `backward` computes none for it.
    pub fn constant(&mut self, value: Vec<T>, shape: &[usize]) -> Result<Var> {
        let v = self.leaf(value, shape)?;
        self.entries[v.0].needs_grad = false;
        Ok(v)
    }

    /// An input or a parameter: `value` in row-major order with `shape`.
    pub fn leaf(&mut self, value: Vec<T>, shape: &[usize]) -> Result<Var> {
        let n: usize = shape.iter().product();
        if n != value.len() {
            return shape_err!("value: expected {n} elements for shape {shape:?}, got {}", value.len());
        }
        Ok(self.push(Op::Leaf, value, shape.to_vec()))
    }

    pub fn value(&self, v: Var) -> Result<&[T]> {
        Ok(&self.entry(v, "var")?.value)
    }

    pub fn shape(&self, v: Var) -> Result<&[usize]> {
        Ok(&self.entry(v, "var")?.shape)
    }

    /// Bytes of the values the tape keeps for backward (every entry's output).
    pub fn saved_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.value.len() * std::mem::size_of::<T>()).sum()
    }

    /// `x @ w.T + b` for x (*, fin), w (fout, fin), b (fout,): the leading axes (at least
    /// one, e.g. (batch, seq) after a recurrent layer) are rows.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xe, we) = (self.entry(x, "input")?, self.entry(w, "weight")?);
        let nd = xe.shape.len();
        if nd < 2 || we.shape.len() != 2 || xe.shape[nd - 1] != we.shape[1] {
            return shape_err!(
                "input: expected (n, in_features) or (*, in_features) with in_features = \
                 weight.shape[1] for weight {:?}, got {:?}",
                we.shape,
                xe.shape
            );
        }
        let (n, fin, fout) = (xe.shape[..nd - 1].iter().product(), xe.shape[nd - 1], we.shape[0]);
        let mut out_shape = xe.shape[..nd - 1].to_vec();
        out_shape.push(fout);
        let bias = match b {
            Some(bv) => {
                let be = self.entry(bv, "bias")?;
                if be.shape != [fout] {
                    return shape_err!("bias: expected shape ({fout},), got {:?}", be.shape);
                }
                Some(be.value.as_slice())
            }
            None => None,
        };
        let y = linear::linear_forward(&xe.value, n, fin, &we.value, fout, bias)?;
        Ok(self.push(Op::Linear { x, w, b, n, fin, fout }, y, out_shape))
    }

    pub fn activation(&mut self, x: Var, f: Activation) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        let (y, shape) = (f.forward(&xe.value), xe.shape.clone());
        Ok(self.push(Op::Act { x, f }, y, shape))
    }

    /// `a + b` of the same shape (a residual connection).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let (ae, be) = (self.entry(a, "input")?, self.entry(b, "other")?);
        if ae.shape != be.shape {
            return shape_err!("other: expected the input's shape {:?}, got {:?}", ae.shape, be.shape);
        }
        let y: Vec<T> = ae.value.iter().zip(&be.value).map(|(&p, &q)| p + q).collect();
        let shape = ae.shape.clone();
        Ok(self.push(Op::Add { a, b }, y, shape))
    }

    /// torch.nn.functional.conv2d: x (N, C, H, W), w (O, C/G, KH, KW), b (O,).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Var> {
        let (xe, we) = (self.entry(x, "input")?, self.entry(w, "weight")?);
        let xs = <[usize; 4]>::try_from(xe.shape.as_slice());
        let ws = <[usize; 4]>::try_from(we.shape.as_slice());
        let (Ok(xs), Ok(ws)) = (xs, ws) else {
            return shape_err!(
                "input: expected a 4-D (N, C, H, W) input and a 4-D weight, got {:?} and {:?}",
                xe.shape,
                we.shape
            );
        };
        let g = Geom::new(xs, ws, stride, padding, dilation, groups)?;
        if g.o == 0 {
            return shape_err!("weight: expected at least one output channel, got {:?}", we.shape);
        }
        let bias = match b {
            Some(bv) => {
                let be = self.entry(bv, "bias")?;
                if be.shape != [g.o] {
                    return shape_err!("bias: expected shape ({},), got {:?}", g.o, be.shape);
                }
                Some(be.value.as_slice())
            }
            None => None,
        };
        let y = conv::conv2d_forward(&xe.value, &we.value, bias, &g)?;
        Ok(self.push(Op::Conv2d { x, w, b, g }, y, vec![g.n, g.o, g.oh, g.ow]))
    }

    fn nchw(&self, x: Var) -> Result<(usize, usize, usize, usize)> {
        match *self.entry(x, "input")?.shape.as_slice() {
            [n, c, h, w] if h > 0 && w > 0 => Ok((n, c, h, w)),
            ref s => shape_err!("input: expected a 4-D (N, C, H, W) input with H, W > 0, got {s:?}"),
        }
    }

    /// torch.nn.functional.max_pool2d (no indices returned).
    pub fn max_pool2d(&mut self, x: Var, p: PoolGeom) -> Result<Var> {
        let (n, c, h, w) = self.nchw(x)?;
        let (rows, cols) = p.axes(h, w, true, "max")?;
        let (y, idx) = pool::max_pool_forward(&self.entries[x.0].value, n * c, &rows, &cols, true)?;
        let (oh, ow) = (rows.out(), cols.out());
        let op = Op::MaxPool {
            x,
            indices: idx.unwrap_or_default(),
            planes: n * c,
            plane_out: oh * ow,
            plane_in: h * w,
        };
        Ok(self.push(op, y, vec![n, c, oh, ow]))
    }

    /// torch.nn.functional.avg_pool2d; `divisor` 0 means none (divisor_override=None).
    pub fn avg_pool2d(&mut self, x: Var, p: PoolGeom, count_include_pad: bool, divisor: i64) -> Result<Var> {
        let (n, c, h, w) = self.nchw(x)?;
        let (rows, cols) = p.axes(h, w, count_include_pad, "avg")?;
        if p.dilation != (1, 1) {
            return value_err!("dilation: avg_pool2d has none, got {:?}", p.dilation);
        }
        let y = pool::avg_pool_forward(&self.entries[x.0].value, n * c, &rows, &cols, divisor)?;
        let shape = vec![n, c, rows.out(), cols.out()];
        Ok(self.push(Op::AvgPool { x, rows, cols, divisor, planes: n * c }, y, shape))
    }

    /// torch.nn.functional.adaptive_avg_pool2d to (oh, ow) (0 keeps the input's size):
    /// window o of an axis of n covers [floor(o n / out), ceil((o + 1) n / out)).
    pub fn adaptive_avg_pool2d(&mut self, x: Var, out: (usize, usize)) -> Result<Var> {
        let (n, c, h, w) = self.nchw(x)?;
        let (rows, cols) = (adaptive_axis(h, out.0), adaptive_axis(w, out.1));
        let y = pool::avg_pool_forward(&self.entries[x.0].value, n * c, &rows, &cols, 0)?;
        let shape = vec![n, c, rows.out(), cols.out()];
        Ok(self.push(Op::AvgPool { x, rows, cols, divisor: 0, planes: n * c }, y, shape))
    }

    /// The same values with a new shape of as many elements.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        if shape.iter().product::<usize>() != xe.value.len() {
            return shape_err!("shape: expected {} elements like the input {:?}, got {shape:?}", xe.value.len(), xe.shape);
        }
        let y = xe.value.clone();
        Ok(self.push(Op::Reshape { x }, y, shape.to_vec()))
    }

    /// torch.flatten(x, start_dim, end_dim) (negative dims count from the end).
    pub fn flatten(&mut self, x: Var, start_dim: i64, end_dim: i64) -> Result<Var> {
        let shape = self.entry(x, "input")?.shape.clone();
        let nd = shape.len().max(1) as i64;
        let norm = |d: i64, name: &str| -> Result<usize> {
            let r = if d < 0 { d + nd } else { d };
            if r < 0 || r >= nd {
                return value_err!("{name}: expected a dimension in [{}, {}), got {d}", -nd, nd);
            }
            Ok(r as usize)
        };
        let (s, e) = (norm(start_dim, "start_dim")?, norm(end_dim, "end_dim")?);
        if s > e {
            return value_err!("start_dim: expected start_dim <= end_dim, got {start_dim} and {end_dim}");
        }
        if shape.is_empty() {
            return self.reshape(x, &[1]);
        }
        let mut out: Vec<usize> = shape[..s].to_vec();
        out.push(shape[s..=e].iter().product());
        out.extend_from_slice(&shape[e + 1..]);
        self.reshape(x, &out)
    }

    pub fn mse_loss(&mut self, x: Var, target: &[T], reduction: Reduction) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        let y = loss::mse_loss_forward(&xe.value, target, reduction)?;
        let shape = if reduction == Reduction::None { xe.shape.clone() } else { vec![] };
        Ok(self.push(Op::Mse { x, target: target.to_vec(), reduction }, y, shape))
    }

    pub fn cross_entropy(&mut self, logits: Var, target: &[i64], reduction: Reduction) -> Result<Var> {
        let le = self.entry(logits, "input")?;
        if le.shape.len() != 2 {
            return shape_err!("input: expected logits of shape (N, C), got {:?}", le.shape);
        }
        let (n, c) = (le.shape[0], le.shape[1]);
        if target.len() != n {
            return shape_err!("target: expected shape ({n},), got {} elements", target.len());
        }
        let y = loss::cross_entropy_forward(&le.value, n, c, target, reduction)?;
        let shape = if reduction == Reduction::None { vec![n] } else { vec![] };
        let op = Op::CrossEntropy { logits, target: target.to_vec(), n, c, reduction };
        Ok(self.push(op, y, shape))
    }

    /// Gradients of `root` (seeded with ones, or `seed`) with respect to every entry that
    /// it depends on, indexed like the tape: leaves keep `Some(grad)`, intermediates are
    /// dropped once their backward has run, entries not reached stay `None`.
    pub fn backward(&self, root: Var, seed: Option<&[T]>) -> Result<Vec<Option<Vec<T>>>> {
        let re = self.entry(root, "root")?;
        let g0 = match seed {
            Some(s) if s.len() != re.value.len() => {
                return shape_err!("seed: expected {} elements like root, got {}", re.value.len(), s.len())
            }
            Some(s) => s.to_vec(),
            None if re.value.len() != 1 => {
                return value_err!(
                    "seed: needed for a root of {} elements (implicit only for one element)",
                    re.value.len()
                )
            }
            None => vec![T::ONE],
        };
        let mut grads: Vec<Option<Vec<T>>> = (0..self.entries.len()).map(|_| None).collect();
        grads[root.0] = Some(g0);
        for i in (0..=root.0).rev() {
            let e = &self.entries[i];
            if matches!(e.op, Op::Leaf) || !e.needs_grad {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            match &e.op {
                Op::Leaf => {}
                Op::Linear { x, w, b, n, fin, fout } if !self.needs_grad(*x) => {
                    // the input is data: only gw = gy^T @ x and gb (column sums of gy)
                    let xv = &self.entries[x.0].value;
                    let mut gw = crate::alloc::float_zeros_or_unwind::<T>(fout * fin, "a kernel buffer");
                    let (gy, xm) = (Mat::new(&g, *n, *fout, true), Mat::new(xv, *n, *fin, false));
                    gemm_into(&mut gw, gy, xm, false);
                    accumulate(&mut grads, *w, gw);
                    if let Some(bv) = b {
                        accumulate(&mut grads, *bv, column_sums(&g, *n, *fout));
                    }
                }
                Op::Linear { x, w, b, n, fin, fout } => {
                    let (xv, wv) = (&self.entries[x.0].value, &self.entries[w.0].value);
                    let (gx, gw, gb) = linear::linear_backward(xv, *n, *fin, wv, *fout, &g, b.is_some())?;
                    accumulate(&mut grads, *x, gx);
                    accumulate(&mut grads, *w, gw);
                    if let (Some(bv), Some(gb)) = (b, gb) {
                        accumulate(&mut grads, *bv, gb);
                    }
                }
                Op::Act { x, f } => {
                    let gx = f.backward(&self.entries[x.0].value, &e.value, &g)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::Add { a, b } => {
                    accumulate(&mut grads, *a, g.clone());
                    accumulate(&mut grads, *b, g);
                }
                Op::Conv2d { x, w, b, g: geom } => {
                    let (xv, wv) = (&self.entries[x.0].value, &self.entries[w.0].value);
                    let (gx, gw, gb) = conv::conv2d_backward(xv, wv, &g, geom, b.is_some())?;
                    accumulate(&mut grads, *x, gx);
                    accumulate(&mut grads, *w, gw);
                    if let (Some(bv), Some(gb)) = (b, gb) {
                        accumulate(&mut grads, *bv, gb);
                    }
                }
                Op::MaxPool { x, indices, planes, plane_out, plane_in } => {
                    let gx = pool::max_pool_backward(&g, indices, *planes, *plane_out, *plane_in)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::AvgPool { x, rows, cols, divisor, planes } => {
                    let gx = pool::avg_pool_backward(&g, *planes, rows, cols, *divisor)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::Reshape { x } => accumulate(&mut grads, *x, g),
                Op::Mse { x, target, reduction } => {
                    let gx = loss::mse_loss_backward(&self.entries[x.0].value, target, &g, *reduction)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::CrossEntropy { logits, target, n, c, reduction } => {
                    let lv = &self.entries[logits.0].value;
                    let gl = loss::cross_entropy_backward(lv, *n, *c, target, &g, *reduction)?;
                    accumulate(&mut grads, *logits, gl);
                }
                Op::BatchNorm(op) => op.backward(self, &g, &mut grads)?,
                Op::RowsNorm(op) => op.backward(self, &g, &mut grads)?,
                Op::Dropout(op) => op.backward(&g, &mut grads)?,
                Op::RnnLayer(op) => op.backward(self, &e.value, &g, &mut grads)?,
                Op::Swap01(op) => op.backward(&g, &mut grads),
                Op::ConcatLast(op) => op.backward(&g, &mut grads),
                Op::SliceLast(op) => op.backward(&g, &mut grads),
                Op::Heads(op) => op.backward(&g, &mut grads),
                Op::FlashAttention(op) => op.backward(self, &e.value, &g, &mut grads)?,
                Op::DropoutAttention(op) => op.backward(self, &g, &mut grads)?,
            }
        }
        for (g, e) in grads.iter_mut().zip(&self.entries) {
            if !e.needs_grad {
                *g = None; // a constant (e.g. a conv's data input) gets no gradient
            }
        }
        Ok(grads)
    }
}

pub(super) fn accumulate<T: Real>(grads: &mut [Option<Vec<T>>], v: Var, g: Vec<T>) {
    match &mut grads[v.0] {
        Some(acc) => acc.iter_mut().zip(g).for_each(|(a, b)| *a += b),
        slot => *slot = Some(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::test_util::lcg;
    use crate::ops::optim::Sgd;

    struct Mlp {
        params: Vec<(Vec<f64>, Vec<usize>)>,
        acts: [Activation; 2],
    }

    /// loss of x (n, 3) -> linear(4) -> act0 -> linear(4) -> act1 + residual -> linear(2) -> loss
    fn build(m: &Mlp, x: &[f64], n: usize, ce: bool) -> (Tape<f64>, Vec<Var>, Var) {
        let mut t = Tape::new();
        let xv = t.leaf(x.to_vec(), &[n, 3]).unwrap();
        let p: Vec<Var> = m.params.iter().map(|(v, s)| t.leaf(v.clone(), s).unwrap()).collect();
        let h1 = t.linear(xv, p[0], Some(p[1])).unwrap();
        let a1 = t.activation(h1, m.acts[0]).unwrap();
        let h2 = t.linear(a1, p[2], None).unwrap();
        let a2 = t.activation(h2, m.acts[1]).unwrap();
        let r = t.add(a2, a1).unwrap();
        let out = t.linear(r, p[3], Some(p[4])).unwrap();
        let l = if ce {
            let target: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
            t.cross_entropy(out, &target, Reduction::Mean).unwrap()
        } else {
            let target: Vec<f64> = (0..2 * n).map(|i| (i as f64 * 0.37).sin()).collect();
            t.mse_loss(out, &target, Reduction::Sum).unwrap()
        };
        (t, p, l)
    }

    fn mlp(seed: u64, acts: [Activation; 2]) -> Mlp {
        let mut s = seed;
        let shapes: [&[usize]; 5] = [&[4, 3], &[4], &[4, 4], &[2, 4], &[2]];
        Mlp { params: shapes.iter().map(|sh| (lcg(&mut s, sh.iter().product()), sh.to_vec())).collect(), acts }
    }

    #[test]
    fn gradients_match_central_differences() {
        let cases = [
            ([Activation::Tanh, Activation::Sigmoid], false),
            ([Activation::Gelu(Gelu::None), Activation::Swish(1.3)], true),
            ([Activation::LeakyRelu(0.1), Activation::Gelu(Gelu::Tanh)], true),
            ([Activation::Relu, Activation::Tanh], false),
        ];
        for (k, (acts, ce)) in cases.into_iter().enumerate() {
            let mut m = mlp(7 + k as u64, acts);
            let mut s = 99 + k as u64;
            let n = 5;
            let x = lcg(&mut s, n * 3);
            let (t, p, l) = build(&m, &x, n, ce);
            let grads = t.backward(l, None).unwrap();
            for (pi, var) in p.iter().enumerate() {
                let g = grads[var.index()].clone().expect("a parameter gets a gradient");
                for j in 0..g.len() {
                    let h = 1e-6;
                    let orig = m.params[pi].0[j];
                    m.params[pi].0[j] = orig + h;
                    let (tp, _, lp) = build(&m, &x, n, ce);
                    m.params[pi].0[j] = orig - h;
                    let (tm, _, lm) = build(&m, &x, n, ce);
                    m.params[pi].0[j] = orig;
                    let fd = (tp.value(lp).unwrap()[0] - tm.value(lm).unwrap()[0]) / (2.0 * h);
                    assert!((g[j] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "case {k} param {pi}[{j}]: {} vs {fd}", g[j]);
                }
            }
            // intermediates were dropped, leaves kept
            assert!(grads[l.index()].is_none());
        }
    }

    #[test]
    fn sgd_steps_reduce_the_loss() {
        let mut m = mlp(3, [Activation::Tanh, Activation::Relu]);
        let mut s = 5;
        let x = lcg(&mut s, 8 * 3);
        let sgd = Sgd { lr: 0.3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, first_step: true };
        let first = {
            let (t, _, l) = build(&m, &x, 8, true);
            t.value(l).unwrap()[0]
        };
        let mut last = first;
        for _ in 0..200 {
            let (t, p, l) = build(&m, &x, 8, true);
            last = t.value(l).unwrap()[0];
            let grads = t.backward(l, None).unwrap();
            for (pi, var) in p.iter().enumerate() {
                sgd.step(&mut m.params[pi].0, grads[var.index()].as_ref().unwrap(), None).unwrap();
            }
        }
        assert!(last < 0.5 * first, "{first} -> {last}");
    }

    #[test]
    fn seeds_unreached_entries_and_saved_bytes() {
        let mut t = Tape::<f32>::new();
        let a = t.leaf(vec![1.0, -2.0], &[1, 2]).unwrap();
        let unused = t.leaf(vec![5.0], &[1]).unwrap();
        let y = t.activation(a, Activation::Relu).unwrap();
        let z = t.add(y, a).unwrap();
        let g = t.backward(z, Some(&[3.0, 4.0])).unwrap();
        assert_eq!(g[a.index()].as_deref(), Some(&[6.0f32, 4.0][..]));
        assert!(g[unused.index()].is_none());
        assert_eq!(t.saved_bytes(), 4 * (2 + 1 + 2 + 2));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn constants_get_no_gradient_and_change_nothing_else() {
        let run = |constant: bool| {
            let mut t = Tape::<f64>::new();
            let x = if constant { t.constant(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]) } else { t.leaf(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]) };
            let x = x.unwrap();
            let w = t.leaf(vec![0.3, -0.1, 0.7, 0.2, 0.4, -0.6], &[3, 2]).unwrap();
            let b = t.leaf(vec![0.1, 0.2, 0.3], &[3]).unwrap();
            let y = t.linear(x, w, Some(b)).unwrap();
            let l = t.cross_entropy(y, &[2, 0], Reduction::Mean).unwrap();
            let g = t.backward(l, None).unwrap();
            (g[x.index()].clone(), g[w.index()].clone().unwrap(), g[b.index()].clone().unwrap())
        };
        let (gx_c, gw_c, gb_c) = run(true);
        let (gx, gw, gb) = run(false);
        assert!(gx_c.is_none() && gx.is_some());
        assert_eq!((gw_c, gb_c), (gw, gb));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut t = Tape::<f64>::new();
        assert!(matches!(t.leaf(vec![1.0; 5], &[2, 3]), Err(FerroError::Shape(_))));
        let x = t.leaf(vec![0.0; 6], &[2, 3]).unwrap();
        let w = t.leaf(vec![0.0; 8], &[2, 4]).unwrap();
        assert!(matches!(t.linear(x, w, None), Err(FerroError::Shape(_))));
        let w = t.leaf(vec![0.0; 6], &[2, 3]).unwrap();
        let b = t.leaf(vec![0.0; 3], &[3]).unwrap();
        assert!(matches!(t.linear(x, w, Some(b)), Err(FerroError::Shape(_))));
        let y = t.linear(x, w, None).unwrap();
        assert!(t.cross_entropy(y, &[0, 2], Reduction::Mean).is_err()); // class 2 of 2
        assert!(matches!(t.cross_entropy(y, &[0], Reduction::Mean), Err(FerroError::Shape(_))));
        assert!(t.mse_loss(y, &[0.0; 3], Reduction::Mean).is_err());
        assert!(matches!(t.backward(y, None), Err(FerroError::Value(_)))); // 4 elements, no seed
        assert!(matches!(t.backward(y, Some(&[1.0])), Err(FerroError::Shape(_))));
        assert!(matches!(t.activation(Var(99), Activation::Relu), Err(FerroError::Value(_))));
        assert!(matches!(t.add(x, y), Err(FerroError::Shape(_))));
    }
}

/// One layer of a sequential model run on the tape; a Linear takes the next parameters
/// (weight (out, in), then bias (out,) when `bias`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    Linear { bias: bool },
    Act(Activation),
    /// takes weight (O, C/G, KH, KW), then bias (O,) when `bias`
    Conv2d { bias: bool, stride: (usize, usize), padding: (usize, usize), dilation: (usize, usize), groups: usize },
    MaxPool2d(PoolGeom),
    /// `divisor` 0: none
    AvgPool2d { geom: PoolGeom, count_include_pad: bool, divisor: i64 },
    Flatten { start_dim: i64, end_dim: i64 },
    /// BatchNorm1d (`two_d` false: (N, C) or (N, C, L)) or BatchNorm2d ((N, C, H, W)); takes
    /// weight and bias (C,) when `affine`, and the next two buffers (running_mean,
    /// running_var) when `running`. `batch_stats`: normalize with the batch statistics
    /// (training, or no running statistics) and update the running ones in place.
    BatchNorm { num_features: usize, two_d: bool, affine: bool, running: bool, batch_stats: bool, momentum: f64, eps: f64 },
    /// LayerNorm over the trailing `shape[..k]`; takes weight, then bias, of that shape
    LayerNorm { shape: [usize; 4], k: usize, weight: bool, bias: bool, eps: f64 },
    /// GroupNorm; takes weight and bias (C,) when `affine`
    GroupNorm { groups: usize, channels: usize, affine: bool, eps: f64 },
    /// InstanceNorm2d on (N, C, H, W): instance statistics when `input_stats` (moving the
    /// running statistics, the next two buffers when `running`), else the running ones
    InstanceNorm { num_features: usize, affine: bool, running: bool, input_stats: bool, momentum: f64, eps: f64 },
    /// Dropout; in training takes the next stream `(seed, offset)`, in eval the identity
    Dropout { p: f64, training: bool },
    /// LSTM (`lstm`) or GRU as torch.nn.LSTM / GRU with zero initial states, passing on
    /// `output` only; takes per layer and direction w_ih, w_hh (then b_ih, b_hh when
    /// `bias`); dropout `p` between layers in training takes one stream per boundary
    Rnn { lstm: bool, layers: usize, bidirectional: bool, bias: bool, batch_first: bool, p: f64, training: bool },
    /// AdaptiveAvgPool2d to (oh, ow), 0 keeping the input's size
    AdaptiveAvgPool2d { out: (usize, usize) },
    /// TransformerEncoderLayer (self-attention, no masks); takes in_proj_weight,
    /// [in_proj_bias], out_proj.weight, [out_proj.bias], linear1.weight, [bias],
    /// linear2.weight, [bias], norm1.weight, [bias], norm2.weight, [bias] (biases when
    /// `bias`); in training, one stream for the attention weights' dropout when
    /// `p_attn` > 0, then one each for dropout1, dropout and dropout2
    TransformerEncoderLayer(EncoderLayer),
}

/// The configuration of a TransformerEncoderLayer on the tape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderLayer {
    pub heads: usize,
    pub norm_first: bool,
    pub gelu: bool,
    pub batch_first: bool,
    pub bias: bool,
    pub eps: (f64, f64),
    /// dropout of the attention weights, after the feed-forward activation (dropout),
    /// after self-attention (dropout1) and after the feed-forward block (dropout2)
    pub p_attn: f64,
    pub p: (f64, f64, f64),
    pub training: bool,
}

/// The loss closing a sequential model, with its target.
/// Each target comes with its shape, checked against the model's output as the Python
/// engine's losses check it (same messages), not by element count alone.
pub enum LossTarget<'a, T> {
    Mse(&'a [T], &'a [usize], Reduction),
    CrossEntropy(&'a [i64], &'a [usize], Reduction),
}

/// A shape as Python prints a tuple: `(4, 3)`, `(4,)`, `()`.
fn py_shape(s: &[usize]) -> String {
    match s {
        [a] => format!("({a},)"),
        _ => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Forward and backward of `layers` on input `x` (shape `x_shape`, (n, features)) under
/// `loss`, recorded on one tape: returns the scalar loss and the gradient of every
/// parameter, in order. `params[i]` is `(values, shape)`; `buffers` are the norms'
/// running statistics, updated in place; `streams` the dropout `(seed, offset)`s, one per
/// training-mode Dropout and per layer boundary of a training-mode recurrent dropout, in
/// layer order (all must be used).
pub fn sequential_grads<T: Real>(
    layers: &[Layer],
    params: &[(&[T], &[usize])],
    buffers: &mut [&mut [T]],
    streams: &[(u64, u64)],
    x: &[T],
    x_shape: &[usize],
    loss: LossTarget<'_, T>,
) -> Result<(T, Vec<Vec<T>>)> {
    let mut t = Tape::new();
    let mut h = t.constant(x.to_vec(), x_shape)?;
    let mut vars = Vec::with_capacity(params.len());
    let mut next = 0usize;
    let n_buffers = buffers.len();
    let mut bufs = buffers.iter_mut();
    let mut streams_left = streams.iter();
    // the next `k` parameters as leaves
    let mut take = |t: &mut Tape<T>, vars: &mut Vec<Var>, k: usize, i: usize, kind: &str| -> Result<Vec<Var>> {
        if next + k > params.len() {
            return value_err!("params: layer {i} ({kind}) needs {k} more parameters, {} left", params.len() - next);
        }
        let out = (next..next + k).map(|j| t.leaf(params[j].0.to_vec(), params[j].1)).collect::<Result<Vec<_>>>()?;
        vars.extend_from_slice(&out);
        next += k;
        Ok(out)
    };
    fn next_running<'a, T>(bufs: &mut std::slice::IterMut<'a, &mut [T]>, i: usize, kind: &str, n: usize) -> Result<Running<'a, T>> {
        match (bufs.next(), bufs.next()) {
            (Some(m), Some(v)) => Ok(Running { mean: &mut m[..], var: &mut v[..] }),
            _ => value_err!("buffers: layer {i} ({kind}) needs running_mean and running_var, got {n} buffers in all"),
        }
    }
    let mut stream = |i: usize, kind: &str| -> Result<(u64, u64)> {
        match streams_left.next() {
            Some(&s) => Ok(s),
            None => value_err!("streams: layer {i} ({kind}) needs a dropout stream, got {} in all", streams.len()),
        }
    };
    let channels = |t: &Tape<T>, h: Var, c: usize, nd: &[usize], kind: &str| -> Result<()> {
        let s = t.shape(h)?;
        if !nd.contains(&s.len()) || s[1] != c {
            return shape_err!("input: {kind} expected a {nd:?}-D input with {c} channels at axis 1, got shape {s:?}");
        }
        Ok(())
    };
    for (i, layer) in layers.iter().enumerate() {
        h = match *layer {
            Layer::BatchNorm { num_features, two_d, affine, running: has_running, batch_stats, momentum, eps } => {
                let kind = if two_d { "batch_norm2d" } else { "batch_norm1d" };
                channels(&t, h, num_features, if two_d { &[4] } else { &[2, 3] }, kind)?;
                let wb = if affine { take(&mut t, &mut vars, 2, i, kind)? } else { vec![] };
                let r = if has_running { Some(next_running(&mut bufs, i, kind, n_buffers)?) } else { None };
                t.batch_norm(h, wb.first().copied(), wb.get(1).copied(), r, batch_stats, momentum, eps)?
            }
            Layer::LayerNorm { shape, k, weight, bias, eps } => {
                if k == 0 || k > 4 {
                    return value_err!("layers[{i}]: layer_norm expected 1 to 4 normalized dimensions, got {k}");
                }
                let wb = take(&mut t, &mut vars, weight as usize + bias as usize, i, "layer_norm")?;
                let (w, b) = match (weight, bias) {
                    (true, true) => (Some(wb[0]), Some(wb[1])),
                    (true, false) => (Some(wb[0]), None),
                    (false, true) => (None, Some(wb[0])),
                    (false, false) => (None, None),
                };
                t.layer_norm(h, &shape[..k], w, b, eps)?
            }
            Layer::GroupNorm { groups, channels: c, affine, eps } => {
                let nd = t.shape(h)?.len();
                channels(&t, h, c, &[nd.max(2)], "group_norm")?;
                let wb = if affine { take(&mut t, &mut vars, 2, i, "group_norm")? } else { vec![] };
                t.group_norm(h, groups, wb.first().copied(), wb.get(1).copied(), eps)?
            }
            Layer::InstanceNorm { num_features, affine, running: has_running, input_stats, momentum, eps } => {
                channels(&t, h, num_features, &[4], "instance_norm2d")?;
                let wb = if affine { take(&mut t, &mut vars, 2, i, "instance_norm2d")? } else { vec![] };
                let r = if has_running { Some(next_running(&mut bufs, i, "instance_norm2d", n_buffers)?) } else { None };
                let (w, b) = (wb.first().copied(), wb.get(1).copied());
                if input_stats {
                    t.instance_norm(h, w, b, r, momentum, eps)?
                } else {
                    t.batch_norm(h, w, b, r, false, momentum, eps)?
                }
            }
            Layer::Dropout { p, training } => {
                if training {
                    let (seed, offset) = stream(i, "dropout")?;
                    t.dropout(h, p, seed, offset)?
                } else {
                    h
                }
            }
            Layer::Rnn { lstm, layers: nl, bidirectional, bias, batch_first, p, training } => {
                let kind = if lstm { "lstm" } else { "gru" };
                if t.shape(h)?.len() != 3 {
                    return shape_err!("input: {kind} expected a 3-D (batched) sequence, got shape {:?}", t.shape(h)?);
                }
                let per = if bias { 4 } else { 2 };
                let mut y = if batch_first { t.swap01(h)? } else { h };
                for layer in 0..nl {
                    if layer > 0 && training && p > 0.0 {
                        let (seed, offset) = stream(i, kind)?;
                        y = t.dropout(y, p, seed, offset)?;
                    }
                    let mut outs = Vec::with_capacity(2);
                    for reverse in [false, true].into_iter().take(1 + bidirectional as usize) {
                        let w = take(&mut t, &mut vars, per, i, kind)?;
                        let b = bias.then(|| (w[2], w[3]));
                        outs.push(t.rnn_layer(y, w[0], w[1], b, lstm, reverse)?);
                    }
                    y = if outs.len() == 2 { t.concat_last(outs[0], outs[1])? } else { outs[0] };
                }
                if batch_first { t.swap01(y)? } else { y }
            }
            Layer::Linear { bias } | Layer::Conv2d { bias, .. } => {
                let kind = if matches!(layer, Layer::Linear { .. }) { "linear" } else { "conv2d" };
                let wb = take(&mut t, &mut vars, 1 + bias as usize, i, kind)?;
                let (w, b) = (wb[0], wb.get(1).copied());
                match *layer {
                    Layer::Conv2d { stride, padding, dilation, groups, .. } => {
                        t.conv2d(h, w, b, stride, padding, dilation, groups)?
                    }
                    _ => t.linear(h, w, b)?,
                }
            }
            Layer::MaxPool2d(p) => t.max_pool2d(h, p)?,
            Layer::AdaptiveAvgPool2d { out } => t.adaptive_avg_pool2d(h, out)?,
            Layer::TransformerEncoderLayer(c) => {
                const KIND: &str = "transformer_encoder_layer";
                let s = t.shape(h)?.to_vec();
                if s.len() != 3 {
                    return shape_err!("input: {KIND} expected a 3-D (batched) sequence, got shape {s:?}");
                }
                let e = s[2];
                let per = if c.bias { 2 } else { 1 };
                let w = take(&mut t, &mut vars, 6 * per, i, KIND)?;
                // (weight, bias) of in_proj, out_proj, linear1, linear2, norm1, norm2
                let wb = |j: usize| (w[j * per], if c.bias { Some(w[j * per + 1]) } else { None });
                let ((wi, bi), (wo, bo), (w1, b1), (w2, b2), (n1w, n1b), (n2w, n2b)) = (wb(0), wb(1), wb(2), wb(3), wb(4), wb(5));
                // the streams in the order the Python forward draws them: attention weights
                // (only when p_attn > 0), dropout1, dropout, dropout2
                let attn = if c.training && c.p_attn > 0.0 { Some(stream(i, KIND)?) } else { None };
                let mut st = [None; 3];
                if c.training {
                    for slot in st.iter_mut() {
                        *slot = Some(stream(i, KIND)?);
                    }
                }
                let drop = |t: &mut Tape<T>, x: Var, p: f64, s: Option<(u64, u64)>| match s {
                    Some((seed, offset)) => t.dropout(x, p, seed, offset),
                    None => Ok(x),
                };
                // attention runs batch first (as MultiheadAttention transposes); the dropouts
                // see the layer's own layout, which places their masks
                let sa = |t: &mut Tape<T>, x: Var| -> Result<Var> {
                    let a = attn.map(|(seed, offset)| (c.p_attn, seed, offset));
                    let xb = if c.batch_first { x } else { t.swap01(x)? };
                    let y = t.self_attention(xb, wi, bi, wo, bo, c.heads, a)?;
                    let y = if c.batch_first { y } else { t.swap01(y)? };
                    drop(t, y, c.p.1, st[0])
                };
                let act = if c.gelu { Activation::Gelu(Gelu::None) } else { Activation::Relu };
                let ff = |t: &mut Tape<T>, x: Var| -> Result<Var> {
                    let y = t.linear(x, w1, b1)?;
                    let y = t.activation(y, act)?;
                    let y = drop(t, y, c.p.0, st[1])?;
                    let y = t.linear(y, w2, b2)?;
                    drop(t, y, c.p.2, st[2])
                };
                let x = h;
                if c.norm_first {
                    let n1 = t.layer_norm(x, &[e], Some(n1w), n1b, c.eps.0)?;
                    let a = sa(&mut t, n1)?;
                    let x = t.add(x, a)?;
                    let n2 = t.layer_norm(x, &[e], Some(n2w), n2b, c.eps.1)?;
                    let f = ff(&mut t, n2)?;
                    t.add(x, f)?
                } else {
                    let a = sa(&mut t, x)?;
                    let r = t.add(x, a)?;
                    let x = t.layer_norm(r, &[e], Some(n1w), n1b, c.eps.0)?;
                    let f = ff(&mut t, x)?;
                    let r = t.add(x, f)?;
                    t.layer_norm(r, &[e], Some(n2w), n2b, c.eps.1)?
                }
            }
            Layer::AvgPool2d { geom, count_include_pad, divisor } => t.avg_pool2d(h, geom, count_include_pad, divisor)?,
            Layer::Flatten { start_dim, end_dim } => t.flatten(h, start_dim, end_dim)?,
            Layer::Act(f) => t.activation(h, f)?,
        };
    }
    let used = vars.len();
    if used != params.len() {
        return value_err!("params: the layers use {used} parameters, got {}", params.len());
    }
    if bufs.next().is_some() {
        return value_err!("buffers: the layers use fewer than the {n_buffers} buffers given");
    }
    if streams_left.next().is_some() {
        return value_err!("streams: the layers use fewer than the {} dropout streams given", streams.len());
    }
    let out_shape = t.entry(h, "output")?.shape.clone();
    let l = match loss {
        LossTarget::Mse(target, shape, r) => {
            if shape != out_shape.as_slice() {
                return shape_err!("target: expected the input's shape {}, got {}", py_shape(&out_shape), py_shape(shape));
            }
            t.mse_loss(h, target, r)?
        }
        LossTarget::CrossEntropy(target, shape, r) => {
            if out_shape.len() != 2 {
                return shape_err!("input: expected logits of shape (N, C), got {}", py_shape(&out_shape));
            }
            if shape != [out_shape[0]] {
                return shape_err!("target: expected shape ({},), got {}", out_shape[0], py_shape(shape));
            }
            t.cross_entropy(h, target, r)?
        }
    };
    let lv = t.value(l)?;
    if lv.len() != 1 {
        return value_err!("reduction: expected 'mean' or 'sum' (a scalar loss), got an unreduced loss");
    }
    let loss_value = lv[0];
    let mut grads = t.backward(l, None)?;
    let out = vars.iter().map(|v| grads[v.index()].take().unwrap_or_else(|| vec![T::ZERO; t.entries[v.index()].value.len()])).collect();
    Ok((loss_value, out))
}

#[cfg(test)]
mod sequential_tests {
    use super::*;
    use crate::autograd::test_util::{assert_central_differences, lcg};

    #[test]
    fn sequential_matches_a_hand_built_tape_and_checks_params() {
        let w1 = [0.5, -0.3, 0.8, 0.1, 0.2, -0.7];
        let b1 = [0.05, -0.1];
        let w2 = [0.3, -0.6];
        let x = [1.0, 2.0, -1.0, 0.5, 0.0, 1.5];
        let layers = [Layer::Linear { bias: true }, Layer::Act(Activation::Tanh), Layer::Linear { bias: false }];
        let params: [(&[f64], &[usize]); 3] = [(&w1, &[2, 3]), (&b1, &[2]), (&w2, &[1, 2])];
        let target = [0.2, -0.4];
        let (l, g) = sequential_grads(&layers, &params, &mut [], &[], &x, &[2, 3], LossTarget::Mse(&target, &[2, 1], Reduction::Mean)).unwrap();
        let mut t = Tape::new();
        let xv = t.leaf(x.to_vec(), &[2, 3]).unwrap();
        let (a, b, c) = (t.leaf(w1.to_vec(), &[2, 3]).unwrap(), t.leaf(b1.to_vec(), &[2]).unwrap(), t.leaf(w2.to_vec(), &[1, 2]).unwrap());
        let h = t.linear(xv, a, Some(b)).unwrap();
        let h = t.activation(h, Activation::Tanh).unwrap();
        let h = t.linear(h, c, None).unwrap();
        let lv = t.mse_loss(h, &target, Reduction::Mean).unwrap();
        let gr = t.backward(lv, None).unwrap();
        assert_eq!(l, t.value(lv).unwrap()[0]);
        assert_eq!(g[0], *gr[a.index()].as_ref().unwrap());
        assert_eq!(g[1], *gr[b.index()].as_ref().unwrap());
        assert_eq!(g[2], *gr[c.index()].as_ref().unwrap());
        // too few / too many parameters, unreduced loss
        assert!(sequential_grads(&layers, &params[..2], &mut [], &[], &x, &[2, 3], LossTarget::Mse(&target, &[2, 1], Reduction::Mean)).is_err());
        let extra: [(&[f64], &[usize]); 4] = [params[0], params[1], params[2], (&b1, &[2])];
        assert!(sequential_grads(&layers, &extra, &mut [], &[], &x, &[2, 3], LossTarget::Mse(&target, &[2, 1], Reduction::Mean)).is_err());
        assert!(sequential_grads(&layers, &params, &mut [], &[], &x, &[2, 3], LossTarget::Mse(&target, &[2, 1], Reduction::None)).is_err());
    }


    #[test]
    fn cnn_gradients_match_central_differences() {
        let pg = |k, s, p, d, ceil_mode| PoolGeom { kernel: (k, k), stride: (s, s), padding: (p, p), dilation: (d, d), ceil_mode };
        let conv = |bias, s, p, groups| Layer::Conv2d { bias, stride: (s, s), padding: (p, p), dilation: (1, 1), groups };
        // x (2, 2, 7, 6) -> conv 4 (3x3, pad 1, groups 2) -> tanh -> maxpool 2 (ceil) -> conv 3 (2x2)
        // -> avgpool 2 (pad 1, no pad count) -> flatten -> linear 3 -> cross-entropy
        let layers = [
            conv(true, 1, 1, 2),
            Layer::Act(Activation::Tanh),
            Layer::MaxPool2d(pg(2, 2, 0, 1, true)),
            conv(false, 1, 0, 1),
            Layer::AvgPool2d { geom: pg(2, 1, 1, 1, false), count_include_pad: false, divisor: 0 },
            Layer::Flatten { start_dim: 1, end_dim: -1 },
            Layer::Linear { bias: true },
        ];
        let shapes: [&[usize]; 5] = [&[4, 1, 3, 3], &[4], &[3, 4, 2, 2], &[3, 3 * 4 * 3], &[3]];
        let mut s = 11;
        let mut ps: Vec<Vec<f64>> = shapes.iter().map(|sh| lcg(&mut s, sh.iter().product())).collect();
        let x = lcg(&mut s, 2 * 2 * 7 * 6);
        let target = [2i64, 0];
        let eval = |ps: &[Vec<f64>]| {
            let views: Vec<(&[f64], &[usize])> = ps.iter().zip(&shapes).map(|(v, sh)| (v.as_slice(), *sh)).collect();
            sequential_grads(&layers, &views, &mut [], &[], &x, &[2, 2, 7, 6], LossTarget::CrossEntropy(&target, &[2], Reduction::Sum)).unwrap()
        };
        let (_, grads) = eval(&ps);
        assert_central_differences(&mut ps, &grads, |p| eval(p).0, "param");
    }

    /// Central differences of `sequential_grads` over every parameter (buffers are
    /// restored before each evaluation, so each sees the same running statistics).
    fn check_sequential(layers: &[Layer], shapes: &[&[usize]], buffers: &[Vec<f64>], streams: &[(u64, u64)], x: &[f64], x_shape: &[usize], target: &[i64]) {
        let mut s = 29;
        let mut ps: Vec<Vec<f64>> = shapes.iter().map(|sh| lcg(&mut s, sh.iter().product())).collect();
        let eval = |ps: &[Vec<f64>]| {
            let views: Vec<(&[f64], &[usize])> = ps.iter().zip(shapes).map(|(v, sh)| (v.as_slice(), *sh)).collect();
            let mut bufs = buffers.to_vec();
            let mut refs: Vec<&mut [f64]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let r = sequential_grads(layers, &views, &mut refs, streams, x, x_shape, LossTarget::CrossEntropy(target, &[target.len()], Reduction::Sum)).unwrap();
            (r, bufs)
        };
        let ((_, grads), moved) = eval(&ps);
        assert!(moved.iter().zip(buffers).all(|(a, b)| a != b), "training-mode norms move their running statistics");
        assert_central_differences(&mut ps, &grads, |p| eval(p).0 .0, "param");
    }

    #[test]
    fn sequence_model_gradients_match_central_differences() {
        // x (2, 3, 4) batch first -> linear 4 -> transformer encoder layer (2 heads, gelu,
        // ff 5, all dropouts) -> 2-layer bidirectional LSTM (H 2, dropout) -> flatten ->
        // batch_norm1d (12) -> dropout -> linear 3 -> cross-entropy
        let enc = EncoderLayer {
            heads: 2, norm_first: false, gelu: true, batch_first: true, bias: true, eps: (1e-5, 1e-5),
            p_attn: 0.2, p: (0.1, 0.1, 0.1), training: true,
        };
        let layers = [
            Layer::Linear { bias: true },
            Layer::TransformerEncoderLayer(enc),
            Layer::Rnn { lstm: true, layers: 2, bidirectional: true, bias: true, batch_first: true, p: 0.3, training: true },
            Layer::Flatten { start_dim: 1, end_dim: -1 },
            Layer::BatchNorm { num_features: 12, two_d: false, affine: true, running: true, batch_stats: true, momentum: 0.1, eps: 1e-5 },
            Layer::Dropout { p: 0.2, training: true },
            Layer::Linear { bias: true },
        ];
        let rnn: [&[usize]; 4] = [&[8, 4], &[8, 2], &[8], &[8]];
        let mut shapes: Vec<&[usize]> = vec![&[4, 4], &[4], &[12, 4], &[12], &[4, 4], &[4], &[5, 4], &[5], &[4, 5], &[4], &[4], &[4], &[4], &[4]];
        for _ in 0..4 {
            shapes.extend_from_slice(&rnn);
        }
        shapes.extend_from_slice(&[&[12], &[12], &[3, 12], &[3]]);
        let streams: Vec<(u64, u64)> = (0..6).map(|i| (7, i)).collect();
        let mut s = 3;
        let x = lcg(&mut s, 24);
        let buffers = vec![vec![0.0; 12], vec![1.0; 12]];
        check_sequential(&layers, &shapes, &buffers, &streams, &x, &[2, 3, 4], &[2, 0]);
        // missing buffers, a stream too few or too many: errors naming them
        let ps: Vec<Vec<f64>> = shapes.iter().map(|sh| vec![0.1; sh.iter().product()]).collect();
        let views: Vec<(&[f64], &[usize])> = ps.iter().zip(&shapes).map(|(v, sh)| (v.as_slice(), *sh)).collect();
        let (mut m, mut v) = (vec![0.0; 12], vec![1.0; 12]);
        let run = |bufs: &mut [&mut [f64]], streams: &[(u64, u64)]| {
            let target = LossTarget::CrossEntropy(&[2, 0], &[2], Reduction::Sum);
            match sequential_grads(&layers, &views, bufs, streams, &x, &[2, 3, 4], target) {
                Err(FerroError::Value(msg)) => msg,
                other => panic!("expected a value error, got {:?}", other.map(|r| r.0)),
            }
        };
        assert!(run(&mut [], &streams).starts_with("buffers: layer 4"));
        assert!(run(&mut [&mut m, &mut v], &streams[..5]).starts_with("streams: layer 5"));
        let seven: Vec<(u64, u64)> = (0..7).map(|i| (7, i)).collect();
        assert!(run(&mut [&mut m, &mut v], &seven).starts_with("streams: the layers use fewer"));
        assert!(sequential_grads(&layers, &views, &mut [&mut m, &mut v], &streams, &x, &[2, 3, 4],
                                 LossTarget::CrossEntropy(&[2, 0], &[2], Reduction::Sum)).is_ok());
    }

    #[test]
    fn adaptive_pool_and_instance_norm_gradients_match_central_differences() {
        // x (2, 1, 5, 7) -> conv 2 (3x3, pad 1) -> adaptive avg pool (2, 3) -> instance norm
        // (affine, running) -> group norm (1 group) -> flatten -> linear 3
        let layers = [
            Layer::Conv2d { bias: true, stride: (1, 1), padding: (1, 1), dilation: (1, 1), groups: 1 },
            Layer::AdaptiveAvgPool2d { out: (2, 3) },
            Layer::InstanceNorm { num_features: 2, affine: true, running: true, input_stats: true, momentum: 0.1, eps: 1e-5 },
            Layer::Act(Activation::Tanh),
            Layer::GroupNorm { groups: 1, channels: 2, affine: true, eps: 1e-5 },
            Layer::Flatten { start_dim: 1, end_dim: -1 },
            Layer::Linear { bias: false },
        ];
        let shapes: [&[usize]; 7] = [&[2, 1, 3, 3], &[2], &[2], &[2], &[2], &[2], &[3, 12]];
        let mut s = 5;
        let x = lcg(&mut s, 70);
        check_sequential(&layers, &shapes, &[vec![0.0; 2], vec![1.0; 2]], &[], &x, &[2, 1, 5, 7], &[1, 2]);
    }

    #[test]
    fn cnn_bad_input_is_an_error() {
        let mut t = Tape::<f32>::new();
        let x = t.leaf(vec![0.0; 2 * 3 * 4 * 4], &[2, 3, 4, 4]).unwrap();
        let w = t.leaf(vec![0.0; 5 * 2 * 3 * 3], &[5, 2, 3, 3]).unwrap();
        assert!(t.conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1).is_err()); // 3 channels vs 2
        let w = t.leaf(vec![0.0; 5 * 3 * 5 * 5], &[5, 3, 5, 5]).unwrap();
        assert!(t.conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1).is_err()); // kernel too large
        assert!(t.conv2d(x, w, None, (0, 1), (1, 1), (1, 1), 1).is_err()); // stride 0
        let flat = t.leaf(vec![0.0; 6], &[2, 3]).unwrap();
        assert!(matches!(t.conv2d(flat, w, None, (1, 1), (0, 0), (1, 1), 1), Err(FerroError::Shape(_))));
        let g = PoolGeom { kernel: (2, 2), stride: (2, 2), padding: (2, 2), dilation: (1, 1), ceil_mode: false };
        assert!(t.max_pool2d(x, g).is_err()); // padding > kernel / 2
        let g = PoolGeom { kernel: (9, 9), padding: (0, 0), ..g };
        assert!(t.max_pool2d(x, g).is_err()); // empty output
        let g = PoolGeom { kernel: (0, 2), ..g };
        assert!(t.avg_pool2d(x, g, true, 0).is_err());
        assert!(t.max_pool2d(flat, g).is_err());
        assert!(t.flatten(x, 2, 1).is_err());
        assert!(t.flatten(x, 0, 4).is_err());
        let f = t.flatten(x, 1, -2).unwrap();
        assert_eq!(t.shape(f).unwrap(), &[2, 12, 4]);
        assert!(t.reshape(x, &[5]).is_err());
    }
}
