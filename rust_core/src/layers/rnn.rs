//! Recurrent layers: `Lstm` and `Gru` (torch.nn.LSTM / GRU), stacks of the one-layer,
//! one-direction kernels of `ops::rnn` (gate order i, f, g, o and r, z, n: PyTorch
//! weights load as they are).
//!
//! Layer l's input is the sequence (layer 0) or the previous layer's outputs, both
//! directions concatenated on the feature axis; the reverse direction runs the sequence
//! backwards. Backward runs the layers in reverse, summing the directions' input
//! gradients. Dropout between layers (PyTorch's `dropout` argument) is not part of the
//! stack: stack one-layer modules with a [`super::Dropout`] between them for that.

use super::init::{fan_in_bound, uniform, Rng};
use super::{expect_shape, row_major, to_array};
use crate::error::Result;
use crate::ops::rnn::{self, RnnDims};
use crate::real::Real;
use crate::shape_err;
use ndarray::{Array1, Array2, Array3, ArrayView3, Ix1, Ix2, Ix3};
use std::borrow::Cow;

/// The stack's shape besides its sizes; the default is PyTorch's: one layer, biases,
/// time-major (T, N, F) sequences, one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnOptions {
    pub num_layers: usize,
    pub bias: bool,
    pub batch_first: bool,
    pub bidirectional: bool,
}

impl Default for RnnOptions {
    fn default() -> Self {
        RnnOptions { num_layers: 1, bias: true, batch_first: false, bidirectional: false }
    }
}

/// The parameters of one layer and direction (PyTorch's `weight_ih_l{k}[_reverse]`, ...):
/// `weight_ih` (G H, input features), `weight_hh` (G H, H), biases (G H,) with G = 4
/// (LSTM) or 3 (GRU). The gradients come back in the same struct.
#[derive(Clone, Debug)]
pub struct RnnWeights<T> {
    pub weight_ih: Array2<T>,
    pub weight_hh: Array2<T>,
    pub bias_ih: Option<Array1<T>>,
    pub bias_hh: Option<Array1<T>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// What either layer is, borrowed for the shared code below.
struct Stack<'s, T> {
    cell: Cell,
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    directions: usize,
    batch_first: bool,
    weights: &'s [RnnWeights<T>],
}

/// One layer and direction's forward results that its backward needs.
struct DirectionRun<T> {
    y: Vec<T>,
    gates: Vec<T>,
    /// LSTM cell states (T, N, H); empty for a GRU
    cells: Vec<T>,
    h0: Vec<T>,
    c0: Vec<T>,
}

/// The forward's inputs and results per layer (shared by both caches).
struct StackCache<'a, T: Clone> {
    /// the sequence, time-major (borrowed when it already was, row-major)
    input: Cow<'a, [T]>,
    /// the inputs of layers 1.. (the layer below's outputs), time-major
    layer_inputs: Vec<Vec<T>>,
    runs: Vec<DirectionRun<T>>,
    t: usize,
    n: usize,
}

/// Where the state of (layer, direction) `idx` lies in an (L D, N, H) state array.
fn state_of<T>(states: &[T], idx: usize, nh: usize) -> &[T] {
    &states[idx * nh..(idx + 1) * nh]
}

/// (T, N, F) <-> (N, T, F) for batch_first, else the view as it is.
fn time_major<'a, T>(x: ArrayView3<'a, T>, batch_first: bool) -> ArrayView3<'a, T> {
    if batch_first { x.permuted_axes([1, 0, 2]) } else { x }
}

fn sequence_out<T: Real>(v: Vec<T>, (t, n, f): (usize, usize, usize), batch_first: bool, what: &str) -> Result<Array3<T>> {
    let a = to_array(Ix3(t, n, f), v, what)?;
    Ok(if batch_first { a.permuted_axes([1, 0, 2]).as_standard_layout().into_owned() } else { a })
}

impl<T: Real> Stack<'_, T> {
    fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 { self.input_size } else { self.directions * self.hidden_size }
    }

    fn check(&self) -> Result<()> {
        let (g, h) = (self.cell.gates() * self.hidden_size, self.hidden_size);
        if self.num_layers == 0 || self.weights.len() != self.num_layers * self.directions {
            return shape_err!("weights: expected num_layers ({}) x directions ({}) >= 1 entries, got {}", self.num_layers, self.directions, self.weights.len());
        }
        for (idx, w) in self.weights.iter().enumerate() {
            let i = self.layer_input_size(idx / self.directions);
            expect_shape(&format!("weights[{idx}].weight_ih"), w.weight_ih.shape(), &[g, i])?;
            expect_shape(&format!("weights[{idx}].weight_hh"), w.weight_hh.shape(), &[g, h])?;
            match (&w.bias_ih, &w.bias_hh) {
                (Some(a), Some(b)) => {
                    expect_shape(&format!("weights[{idx}].bias_ih"), a.shape(), &[g])?;
                    expect_shape(&format!("weights[{idx}].bias_hh"), b.shape(), &[g])?;
                }
                (None, None) => {}
                _ => return shape_err!("weights[{idx}]: expected bias_ih and bias_hh both given or both None"),
            }
        }
        Ok(())
    }

    /// An initial or final state argument (L D, N, H) in row-major order, zeros if None.
    fn state<'v>(&self, s: Option<ArrayView3<'v, T>>, n: usize, name: &str) -> Result<Cow<'v, [T]>> {
        let want = [self.num_layers * self.directions, n, self.hidden_size];
        match s {
            Some(s) => {
                expect_shape(name, s.shape(), &want)?;
                row_major(&s)
            }
            None => Ok(Cow::Owned(crate::alloc::float_zeros(want.iter().product(), "a recurrent layer's state")?)),
        }
    }

    /// (output (T, N, D H) time-major, h_n, c_n (LSTM; empty for a GRU), cache).
    #[allow(clippy::type_complexity)]
    fn forward<'a>(&self, x: ArrayView3<'a, T>, h0: Option<ArrayView3<'_, T>>, c0: Option<ArrayView3<'_, T>>) -> Result<(Vec<T>, Vec<T>, Vec<T>, StackCache<'a, T>)> {
        self.check()?;
        let x = time_major(x, self.batch_first);
        let (t, n, i) = x.dim();
        if i != self.input_size {
            return shape_err!("input: expected {} features, got shape {:?} (batch_first = {})", self.input_size, x.shape(), self.batch_first);
        }
        let (h, nh) = (self.hidden_size, n * self.hidden_size);
        let (h0, c0) = (self.state(h0, n, "h_0")?, self.state(c0, n, "c_0")?);
        let mut cache = StackCache { input: row_major(&x)?, layer_inputs: Vec::new(), runs: Vec::new(), t, n };
        let (mut h_n, mut c_n) = (Vec::with_capacity(h0.len()), Vec::new());
        for layer in 0..self.num_layers {
            let d = RnnDims { t, n, i: self.layer_input_size(layer), h };
            let mut outputs = Vec::with_capacity(self.directions);
            for dir in 0..self.directions {
                let idx = layer * self.directions + dir;
                let xl = if layer == 0 { &cache.input[..] } else { &cache.layer_inputs[layer - 1][..] };
                let w = &self.weights[idx];
                let (w_ih, w_hh) = (row_major(&w.weight_ih.view())?, row_major(&w.weight_hh.view())?);
                let biases = match (&w.bias_ih, &w.bias_hh) {
                    (Some(a), Some(b)) => Some((row_major(&a.view())?, row_major(&b.view())?)),
                    _ => None,
                };
                let bias = biases.as_ref().map(|(a, b)| (&a[..], &b[..]));
                let (h0s, c0s) = (state_of(&h0, idx, nh), state_of(&c0, idx, nh));
                let run = match self.cell {
                    Cell::Lstm => {
                        let f = rnn::lstm_forward(xl, h0s, c0s, &w_ih, &w_hh, bias, d, dir == 1, true)?;
                        h_n.extend_from_slice(&f.h_n);
                        c_n.extend_from_slice(&f.c_n);
                        DirectionRun { y: f.y, gates: f.gates, cells: f.cells, h0: h0s.to_vec(), c0: c0s.to_vec() }
                    }
                    Cell::Gru => {
                        let (y, hn, gates) = rnn::gru_forward(xl, h0s, &w_ih, &w_hh, bias, d, dir == 1)?;
                        h_n.extend_from_slice(&hn);
                        DirectionRun { y, gates, cells: Vec::new(), h0: h0s.to_vec(), c0: Vec::new() }
                    }
                };
                outputs.push(cache.runs.len());
                cache.runs.push(run);
            }
            // the directions side by side on the feature axis: (T N, D H)
            let mut next = crate::alloc::with_capacity(t * n * self.directions * h, "a recurrent layer's output")?;
            for row in 0..t * n {
                for &r in &outputs {
                    next.extend_from_slice(&cache.runs[r].y[row * h..(row + 1) * h]);
                }
            }
            cache.layer_inputs.push(next);
        }
        let output = cache.layer_inputs.pop().unwrap_or_default();
        Ok((output, h_n, c_n, cache))
    }

    /// (input gradient (T, N, I) time-major, h_0's, c_0's (LSTM), parameter gradients).
    #[allow(clippy::type_complexity)]
    fn backward(&self, cache: &StackCache<'_, T>, grad_output: ArrayView3<'_, T>, gh_n: Option<ArrayView3<'_, T>>, gc_n: Option<ArrayView3<'_, T>>)
                -> Result<(Vec<T>, Vec<T>, Vec<T>, Vec<RnnWeights<T>>)> {
        self.check()?;
        let (t, n, h, dirs) = (cache.t, cache.n, self.hidden_size, self.directions);
        let gy = time_major(grad_output, self.batch_first);
        expect_shape("grad_output", gy.shape(), &[t, n, dirs * h])?;
        let (gh_n, gc_n) = (self.state(gh_n, n, "grad_h_n")?, self.state(gc_n, n, "grad_c_n")?);
        let nh = n * h;
        let mut g_above: Cow<'_, [T]> = row_major(&gy)?;
        let states = self.weights.len() * nh;
        let (mut gh0, mut gc0) = (crate::alloc::float_zeros(states, "h_0's gradient")?, Vec::new());
        if self.cell == Cell::Lstm {
            gc0 = crate::alloc::float_zeros(states, "c_0's gradient")?;
        }
        let mut grads: Vec<Option<RnnWeights<T>>> = (0..self.weights.len()).map(|_| None).collect();
        for layer in (0..self.num_layers).rev() {
            let i = self.layer_input_size(layer);
            let d = RnnDims { t, n, i, h };
            let xl = if layer == 0 { &cache.input[..] } else { &cache.layer_inputs[layer - 1][..] };
            let mut gx_layer: Vec<T> = crate::alloc::float_zeros(t * n * i, "a recurrent layer's input gradient")?;
            for dir in 0..dirs {
                let idx = layer * dirs + dir;
                let (w, run) = (&self.weights[idx], &cache.runs[idx]);
                let gy_dir: Cow<'_, [T]> = if dirs == 1 {
                    Cow::Borrowed(&g_above[..])
                } else {
                    Cow::Owned(g_above.chunks_exact(dirs * h).flat_map(|r| r[dir * h..(dir + 1) * h].iter().copied()).collect())
                };
                let (w_ih, w_hh) = (row_major(&w.weight_ih.view())?, row_major(&w.weight_hh.view())?);
                let has_bias = w.bias_ih.is_some();
                let (ghn, gcn) = (state_of(&gh_n, idx, nh), state_of(&gc_n, idx, nh));
                let (gx, gh0_i, gw_ih, gw_hh, gb) = match self.cell {
                    Cell::Lstm => {
                        let (gx, gh0_i, gc0_i, gw_ih, gw_hh, gb) = rnn::lstm_backward(
                            xl, &run.h0, &run.c0, &w_ih, &w_hh, &run.y, &run.gates, &run.cells, &gy_dir, ghn, gcn, has_bias, d, dir == 1,
                        )?;
                        gc0[idx * nh..(idx + 1) * nh].copy_from_slice(&gc0_i);
                        // the LSTM's two biases are summed before use: one gradient for both
                        (gx, gh0_i, gw_ih, gw_hh, gb.map(|g| (g.clone(), g)))
                    }
                    Cell::Gru => {
                        let (gx, gh0_i, gw_ih, gw_hh, gb_ih, gb_hh) =
                            rnn::gru_backward(xl, &run.h0, &w_ih, &w_hh, &run.y, &run.gates, &gy_dir, ghn, has_bias, d, dir == 1)?;
                        (gx, gh0_i, gw_ih, gw_hh, gb_ih.zip(gb_hh))
                    }
                };
                gh0[idx * nh..(idx + 1) * nh].copy_from_slice(&gh0_i);
                gx_layer.iter_mut().zip(&gx).for_each(|(a, &b)| *a += b);
                let g = self.cell.gates() * h;
                let (bias_ih, bias_hh) = match gb {
                    Some((a, b)) => (Some(to_array(Ix1(g), a, "bias_ih gradient")?), Some(to_array(Ix1(g), b, "bias_hh gradient")?)),
                    None => (None, None),
                };
                grads[idx] = Some(RnnWeights {
                    weight_ih: to_array(Ix2(g, i), gw_ih, "weight_ih gradient")?,
                    weight_hh: to_array(Ix2(g, h), gw_hh, "weight_hh gradient")?,
                    bias_ih,
                    bias_hh,
                });
            }
            g_above = Cow::Owned(gx_layer);
        }
        Ok((g_above.into_owned(), gh0, gc0, grads.into_iter().flatten().collect()))
    }
}

fn init_weights<T: Real>(cell: Cell, input_size: usize, hidden_size: usize, o: RnnOptions, rng: &mut Rng) -> Vec<RnnWeights<T>> {
    let (g, dirs) = (cell.gates() * hidden_size, if o.bidirectional { 2 } else { 1 });
    let bound = fan_in_bound(hidden_size);
    let mut weights = Vec::with_capacity(o.num_layers * dirs);
    for layer in 0..o.num_layers {
        let i = if layer == 0 { input_size } else { dirs * hidden_size };
        for _ in 0..dirs {
            weights.push(RnnWeights {
                weight_ih: uniform((g, i), bound, rng),
                weight_hh: uniform((g, hidden_size), bound, rng),
                bias_ih: o.bias.then(|| uniform(g, bound, rng)),
                bias_hh: o.bias.then(|| uniform(g, bound, rng)),
            });
        }
    }
    weights
}

macro_rules! recurrent_fields {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<T> {
            pub input_size: usize,
            pub hidden_size: usize,
            pub num_layers: usize,
            pub bidirectional: bool,
            pub batch_first: bool,
            /// per layer, then direction (forward, reverse): index layer * D + direction
            pub weights: Vec<RnnWeights<T>>,
        }
    };
}

recurrent_fields!(
    /// torch.nn.LSTM: c' = f c + i g, h' = o tanh(c') with gates i, f, g, o (stacked in
    /// that order in the weights' rows). Sequences are (T, N, F), or (N, T, F) with
    /// `batch_first`; states (num_layers * D, N, H), D = 2 when bidirectional.
    ///
    /// ```rust
    /// use _core::layers::{init::Rng, Lstm, RnnOptions};
    /// use ndarray::Array3;
    ///
    /// let opts = RnnOptions { num_layers: 2, bidirectional: true, batch_first: true, ..Default::default() };
    /// let lstm = Lstm::<f32>::new(3, 5, opts, &mut Rng::new(0));
    /// assert_eq!(lstm.weights.len(), 4);
    /// assert_eq!(lstm.weights[2].weight_ih.shape(), &[20, 10]); // layer 1 reads both directions
    /// let x = Array3::from_shape_fn((2, 7, 3), |(n, t, f)| (n + t + f) as f32 * 0.1);
    /// let (out, cache) = lstm.forward(x.view(), None).unwrap();
    /// assert_eq!(out.output.shape(), &[2, 7, 10]);
    /// assert_eq!(out.h_n.shape(), &[4, 2, 5]);
    /// let grads = lstm.backward(&cache, Array3::ones((2, 7, 10)).view(), None, None).unwrap();
    /// assert_eq!(grads.input.shape(), &[2, 7, 3]);
    /// assert_eq!(grads.c_0.shape(), &[4, 2, 5]);
    /// assert_eq!(grads.weights[3].weight_hh.shape(), &[20, 5]);
    ///
    /// // one step from zero states, zero weights, a bias of 1 on the g gate only:
    /// // i = f = o = sigmoid(0) = 1/2 and g = tanh(1)
    /// let mut tiny = Lstm::<f64>::new(1, 1, RnnOptions::default(), &mut Rng::new(0));
    /// tiny.weights[0].weight_ih.fill(0.0);
    /// tiny.weights[0].weight_hh.fill(0.0);
    /// tiny.weights[0].bias_ih.as_mut().unwrap().assign(&ndarray::array![0.0, 0.0, 1.0, 0.0]);
    /// tiny.weights[0].bias_hh.as_mut().unwrap().fill(0.0);
    /// let (out, _) = tiny.forward(Array3::ones((1, 1, 1)).view(), None).unwrap();
    /// // c = f c_0 + i g = tanh(1) / 2, h = o tanh(c)
    /// let c = 0.5 * 1f64.tanh();
    /// assert!((out.c_n[[0, 0, 0]] - c).abs() < 1e-12 && (out.h_n[[0, 0, 0]] - 0.5 * c.tanh()).abs() < 1e-12);
    /// ```
    Lstm
);

recurrent_fields!(
    /// torch.nn.GRU: r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x +
    /// b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h; gates r, z, n stacked in that
    /// order. Layouts as [`Lstm`]'s.
    ///
    /// ```rust
    /// use _core::layers::{init::Rng, Gru, RnnOptions};
    /// use ndarray::Array3;
    ///
    /// let gru = Gru::<f64>::new(4, 3, RnnOptions::default(), &mut Rng::new(1));
    /// let x = Array3::from_shape_fn((6, 2, 4), |(t, n, f)| ((t * 8 + n * 4 + f) as f64).sin());
    /// let h0 = Array3::from_elem((1, 2, 3), 0.5);
    /// let (out, cache) = gru.forward(x.view(), Some(h0.view())).unwrap();
    /// assert_eq!(out.output.shape(), &[6, 2, 3]);
    /// // a one-direction, one-layer h_n is the last output
    /// assert_eq!(out.h_n.index_axis(ndarray::Axis(0), 0), out.output.index_axis(ndarray::Axis(0), 5));
    /// let grads = gru.backward(&cache, Array3::zeros((6, 2, 3)).view(), Some(Array3::ones((1, 2, 3)).view())).unwrap();
    /// assert_eq!(grads.input.shape(), &[6, 2, 4]);
    /// assert_eq!(grads.h_0.shape(), &[1, 2, 3]);
    /// assert_eq!(grads.weights[0].bias_hh.as_ref().unwrap().shape(), &[9]);
    /// ```
    Gru
);

/// An [`Lstm`]'s outputs: the last layer's outputs (T, N, D H) (batch first if the layer
/// is) and the final states (num_layers * D, N, H).
#[derive(Clone, Debug)]
pub struct LstmOutput<T> {
    pub output: Array3<T>,
    pub h_n: Array3<T>,
    pub c_n: Array3<T>,
}

/// A [`Gru`]'s outputs, as [`LstmOutput`] without the cell state.
#[derive(Clone, Debug)]
pub struct GruOutput<T> {
    pub output: Array3<T>,
    pub h_n: Array3<T>,
}

/// What [`Lstm::backward`] needs: each layer's input, outputs, gates and cell states.
pub struct LstmCache<'a, T: Clone>(StackCache<'a, T>);

/// What [`Gru::backward`] needs: each layer's input, outputs and gates.
pub struct GruCache<'a, T: Clone>(StackCache<'a, T>);

/// Gradients of an [`Lstm`] call: input, initial states, and each layer and direction's
/// parameters (indexed as `weights`).
#[derive(Clone, Debug)]
pub struct LstmGrads<T> {
    pub input: Array3<T>,
    pub h_0: Array3<T>,
    pub c_0: Array3<T>,
    pub weights: Vec<RnnWeights<T>>,
}

/// Gradients of a [`Gru`] call, as [`LstmGrads`] without the cell state.
#[derive(Clone, Debug)]
pub struct GruGrads<T> {
    pub input: Array3<T>,
    pub h_0: Array3<T>,
    pub weights: Vec<RnnWeights<T>>,
}

macro_rules! stack_of {
    ($self:ident, $cell:expr) => {
        Stack {
            cell: $cell,
            input_size: $self.input_size,
            hidden_size: $self.hidden_size,
            num_layers: $self.num_layers,
            directions: if $self.bidirectional { 2 } else { 1 },
            batch_first: $self.batch_first,
            weights: &$self.weights,
        }
    };
}

impl<T: Real> Lstm<T> {
    /// PyTorch's initialisation: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn new(input_size: usize, hidden_size: usize, options: RnnOptions, rng: &mut Rng) -> Self {
        let weights = init_weights(Cell::Lstm, input_size, hidden_size, options, rng);
        let RnnOptions { num_layers, bidirectional, batch_first, .. } = options;
        Lstm { input_size, hidden_size, num_layers, bidirectional, batch_first, weights }
    }

    /// `state`: (h_0, c_0), zeros when None.
    pub fn forward<'a>(&self, x: ArrayView3<'a, T>, state: Option<(ArrayView3<'_, T>, ArrayView3<'_, T>)>) -> Result<(LstmOutput<T>, LstmCache<'a, T>)> {
        let s = stack_of!(self, Cell::Lstm);
        let (h0, c0) = state.unzip();
        let (y, h_n, c_n, cache) = s.forward(x, h0, c0)?;
        let states = (s.weights.len(), cache.n, self.hidden_size);
        let output = sequence_out(y, (cache.t, cache.n, s.directions * self.hidden_size), self.batch_first, "lstm")?;
        let out = LstmOutput { output, h_n: to_array(Ix3(states.0, states.1, states.2), h_n, "lstm h_n")?, c_n: to_array(Ix3(states.0, states.1, states.2), c_n, "lstm c_n")? };
        Ok((out, LstmCache(cache)))
    }

    /// Gradients for the output's gradient and, when given, the final states'.
    pub fn backward(&self, cache: &LstmCache<'_, T>, grad_output: ArrayView3<'_, T>, grad_h_n: Option<ArrayView3<'_, T>>, grad_c_n: Option<ArrayView3<'_, T>>) -> Result<LstmGrads<T>> {
        let s = stack_of!(self, Cell::Lstm);
        let (gx, gh0, gc0, weights) = s.backward(&cache.0, grad_output, grad_h_n, grad_c_n)?;
        let (t, n) = (cache.0.t, cache.0.n);
        let states = Ix3(s.weights.len(), n, self.hidden_size);
        Ok(LstmGrads {
            input: sequence_out(gx, (t, n, self.input_size), self.batch_first, "lstm backward")?,
            h_0: to_array(states, gh0, "lstm backward")?,
            c_0: to_array(states, gc0, "lstm backward")?,
            weights,
        })
    }
}

impl<T: Real> Gru<T> {
    /// PyTorch's initialisation: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn new(input_size: usize, hidden_size: usize, options: RnnOptions, rng: &mut Rng) -> Self {
        let weights = init_weights(Cell::Gru, input_size, hidden_size, options, rng);
        let RnnOptions { num_layers, bidirectional, batch_first, .. } = options;
        Gru { input_size, hidden_size, num_layers, bidirectional, batch_first, weights }
    }

    /// `h_0`: the initial states, zeros when None.
    pub fn forward<'a>(&self, x: ArrayView3<'a, T>, h_0: Option<ArrayView3<'_, T>>) -> Result<(GruOutput<T>, GruCache<'a, T>)> {
        let s = stack_of!(self, Cell::Gru);
        let (y, h_n, _, cache) = s.forward(x, h_0, None)?;
        let output = sequence_out(y, (cache.t, cache.n, s.directions * self.hidden_size), self.batch_first, "gru")?;
        let h_n = to_array(Ix3(s.weights.len(), cache.n, self.hidden_size), h_n, "gru h_n")?;
        Ok((GruOutput { output, h_n }, GruCache(cache)))
    }

    /// Gradients for the output's gradient and, when given, the final state's.
    pub fn backward(&self, cache: &GruCache<'_, T>, grad_output: ArrayView3<'_, T>, grad_h_n: Option<ArrayView3<'_, T>>) -> Result<GruGrads<T>> {
        let s = stack_of!(self, Cell::Gru);
        let (gx, gh0, _, weights) = s.backward(&cache.0, grad_output, grad_h_n, None)?;
        let (t, n) = (cache.0.t, cache.0.n);
        Ok(GruGrads {
            input: sequence_out(gx, (t, n, self.input_size), self.batch_first, "gru backward")?,
            h_0: to_array(Ix3(s.weights.len(), n, self.hidden_size), gh0, "gru backward")?,
            weights,
        })
    }
}

#[cfg(test)]
#[path = "rnn_tests.rs"]
mod tests;
