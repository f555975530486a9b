//! Recurrent layers on the native tape: one LSTM or GRU layer in one direction over a
//! time-major sequence (the kernels of `ops::rnn`, zero initial states), plus the two
//! axis shuffles a stack of them needs: swapping the first two axes (batch_first) and
//! concatenating the last axis (the two directions of a bidirectional layer). A
//! multi-layer, bidirectional LSTM is a chain of these (see `sequential_grads`), the
//! same composition as `ops/rnn.py`'s Function, so the gradients are the same numbers.

use super::tape::{accumulate, Op, Tape, Var};
use crate::error::Result;
use crate::ops::rnn::{self, RnnDims};
use crate::real::Real;
use crate::shape_err;

/// One LSTM (`lstm`) or GRU layer and direction, with what its backward needs.
pub(super) struct RnnLayerOp<T> {
    x: Var,
    w_ih: Var,
    w_hh: Var,
    bias: Option<(Var, Var)>,
    lstm: bool,
    reverse: bool,
    d: RnnDims,
    /// LSTM: activated gates (T, N, 4H); GRU: [r, z, n, W_hn h + b_hn] (T, N, 4H)
    gates: Vec<T>,
    /// LSTM: cell states (T, N, H); GRU: empty
    cells: Vec<T>,
}

/// (A, B, C) -> (B, A, C).
pub(super) struct Swap01Op {
    pub(super) x: Var,
    dims: [usize; 3],
}

/// (*, Wa) and (*, Wb) -> (*, Wa + Wb).
pub(super) struct ConcatLastOp {
    pub(super) a: Var,
    pub(super) b: Var,
    wa: usize,
    wb: usize,
}

fn swap01<T: Real>(x: &[T], [a, b, c]: [usize; 3]) -> Vec<T> {
    let mut y = Vec::with_capacity(x.len());
    for j in 0..b {
        for i in 0..a {
            y.extend_from_slice(&x[(i * b + j) * c..(i * b + j + 1) * c]);
        }
    }
    y
}

impl<T: Real> RnnLayerOp<T> {
    pub(super) fn inputs(&self) -> impl Iterator<Item = Var> {
        [self.x, self.w_ih, self.w_hh].into_iter().chain(self.bias.into_iter().flat_map(|(a, b)| [a, b]))
    }

    /// `y` is this op's own output (the tape keeps it as the entry's value).
    pub(super) fn backward(&self, tape: &Tape<T>, y: &[T], g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        let val = |v: Var| tape.entries[v.index()].value.as_slice();
        let (x, w_ih, w_hh) = (val(self.x), val(self.w_ih), val(self.w_hh));
        let zeros = crate::alloc::float_zeros_or_unwind::<T>(self.d.n * self.d.h, "a kernel buffer");
        let has_bias = self.bias.is_some();
        let (gx, gw_ih, gw_hh, gb) = if self.lstm {
            let (gx, _, _, gw_ih, gw_hh, gb) = rnn::lstm_backward(
                x, &zeros, &zeros, w_ih, w_hh, y, &self.gates, &self.cells, g, &zeros, &zeros, has_bias, self.d, self.reverse,
            )?;
            (gx, gw_ih, gw_hh, gb.map(|gb| (gb.clone(), gb)))
        } else {
            let (gx, _, gw_ih, gw_hh, gb_ih, gb_hh) =
                rnn::gru_backward(x, &zeros, w_ih, w_hh, y, &self.gates, g, &zeros, has_bias, self.d, self.reverse)?;
            (gx, gw_ih, gw_hh, gb_ih.zip(gb_hh))
        };
        if tape.needs_grad(self.x) {
            accumulate(grads, self.x, gx);
        }
        accumulate(grads, self.w_ih, gw_ih);
        accumulate(grads, self.w_hh, gw_hh);
        if let (Some((b_ih, b_hh)), Some((g_ih, g_hh))) = (self.bias, gb) {
            accumulate(grads, b_ih, g_ih);
            accumulate(grads, b_hh, g_hh);
        }
        Ok(())
    }
}

impl Swap01Op {
    pub(super) fn backward<T: Real>(&self, g: &[T], grads: &mut [Option<Vec<T>>]) {
        let [a, b, c] = self.dims;
        accumulate(grads, self.x, swap01(g, [b, a, c]));
    }
}

impl ConcatLastOp {
    pub(super) fn backward<T: Real>(&self, g: &[T], grads: &mut [Option<Vec<T>>]) {
        let w = self.wa + self.wb;
        let rows = g.len().checked_div(w).unwrap_or(0);
        let (mut ga, mut gb) = (Vec::with_capacity(rows * self.wa), Vec::with_capacity(rows * self.wb));
        for r in g.chunks_exact(w.max(1)).take(rows) {
            ga.extend_from_slice(&r[..self.wa]);
            gb.extend_from_slice(&r[self.wa..]);
        }
        accumulate(grads, self.a, ga);
        accumulate(grads, self.b, gb);
    }
}

impl<T: Real> Tape<T> {
    /// One recurrent layer over x (T, N, I) from zero states: `lstm` (gates i, f, g, o;
    /// weights (4H, I), (4H, H)) or GRU (gates r, z, n; (3H, I), (3H, H)), biases
    /// (b_ih, b_hh) of (G H,) each; `reverse` runs the sequence backwards. Returns the
    /// outputs (T, N, H).
    #[allow(clippy::too_many_arguments)]
    pub fn rnn_layer(&mut self, x: Var, w_ih: Var, w_hh: Var, bias: Option<(Var, Var)>, lstm: bool, reverse: bool) -> Result<Var> {
        let gates = if lstm { 4 } else { 3 };
        let (xe, we) = (self.entry(x, "input")?, self.entry(w_hh, "weight_hh")?);
        let Ok([t, n, i]) = <[usize; 3]>::try_from(xe.shape.as_slice()) else {
            return shape_err!("input: expected a 3-D (T, N, I) sequence, got {:?}", xe.shape);
        };
        let Ok([g, h]) = <[usize; 2]>::try_from(we.shape.as_slice()) else {
            return shape_err!("weight_hh: expected a 2-D weight, got {:?}", we.shape);
        };
        if g != gates * h || h == 0 {
            return shape_err!("weight_hh: expected shape ({}, H) with H >= 1, got {:?}", gates, we.shape);
        }
        let wi = self.entry(w_ih, "weight_ih")?;
        if wi.shape != [g, i] {
            return shape_err!("weight_ih: expected shape ({g}, {i}) for an input of {i} features, got {:?}", wi.shape);
        }
        let bv = match bias {
            Some((a, b)) => {
                let (ae, be) = (self.entry(a, "bias_ih")?, self.entry(b, "bias_hh")?);
                if ae.shape != [g] || be.shape != [g] {
                    return shape_err!("bias_ih: expected biases of shape ({g},), got {:?} and {:?}", ae.shape, be.shape);
                }
                Some((ae.value.as_slice(), be.value.as_slice()))
            }
            None => None,
        };
        let d = RnnDims { t, n, i, h };
        let zeros = crate::alloc::float_zeros_or_unwind::<T>(n * h, "a kernel buffer");
        let (y, gates, cells) = if lstm {
            let f = rnn::lstm_forward(&xe.value, &zeros, &zeros, &wi.value, &we.value, bv, d, reverse, true)?;
            (f.y, f.gates, f.cells)
        } else {
            let (y, _, gates) = rnn::gru_forward(&xe.value, &zeros, &wi.value, &we.value, bv, d, reverse)?;
            (y, gates, Vec::new())
        };
        let op = RnnLayerOp { x, w_ih, w_hh, bias, lstm, reverse, d, gates, cells };
        Ok(self.push(Op::RnnLayer(op), y, vec![t, n, h]))
    }

    /// A 3-D value with its first two axes swapped ((T, N, F) <-> (N, T, F)).
    pub fn swap01(&mut self, x: Var) -> Result<Var> {
        let xe = self.entry(x, "input")?;
        let Ok(dims) = <[usize; 3]>::try_from(xe.shape.as_slice()) else {
            return shape_err!("input: expected a 3-D sequence, got {:?}", xe.shape);
        };
        let y = swap01(&xe.value, dims);
        Ok(self.push(Op::Swap01(Swap01Op { x, dims }), y, vec![dims[1], dims[0], dims[2]]))
    }

    /// `a` and `b` side by side along the last axis (the other axes equal).
    pub fn concat_last(&mut self, a: Var, b: Var) -> Result<Var> {
        let (ae, be) = (self.entry(a, "input")?, self.entry(b, "other")?);
        let (k, l) = (ae.shape.len(), be.shape.len());
        if k == 0 || k != l || ae.shape[..k - 1] != be.shape[..l - 1] {
            return shape_err!("other: expected the input's shape but the last axis, got {:?} and {:?}", ae.shape, be.shape);
        }
        let (wa, wb) = (ae.shape[k - 1], be.shape[k - 1]);
        let rows: usize = ae.shape[..k - 1].iter().product();
        let mut y = Vec::with_capacity(rows * (wa + wb));
        for r in 0..rows {
            y.extend_from_slice(&ae.value[r * wa..(r + 1) * wa]);
            y.extend_from_slice(&be.value[r * wb..(r + 1) * wb]);
        }
        let mut shape = ae.shape.clone();
        shape[k - 1] = wa + wb;
        Ok(self.push(Op::ConcatLast(ConcatLastOp { a, b, wa, wb }), y, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::test_util::{assert_central_differences, lcg};

    /// x (N=2, T=3, I=2), batch_first -> bidirectional layer (H=2) -> layer 2 (H=2,
    /// forward only) -> batch_first. Values: x, then per layer and
    /// direction w_ih, w_hh, b_ih, b_hh.
    fn build(lstm: bool, vals: &[Vec<f64>]) -> (Tape<f64>, Vec<Var>, Var) {
        let g = if lstm { 4 } else { 3 };
        let mut t = Tape::new();
        let x = t.leaf(vals[0].clone(), &[2, 3, 2]).unwrap();
        let shapes: [&[usize]; 4] = [&[g * 2, 2], &[g * 2, 2], &[g * 2], &[g * 2]];
        let shapes2: [&[usize]; 4] = [&[g * 2, 4], &[g * 2, 2], &[g * 2], &[g * 2]];
        let mut vars = vec![x];
        for (k, v) in vals[1..].iter().enumerate() {
            let sh = if k < 8 { shapes[k % 4] } else { shapes2[k % 4] };
            vars.push(t.leaf(v.clone(), sh).unwrap());
        }
        let xt = t.swap01(x).unwrap();
        let f = t.rnn_layer(xt, vars[1], vars[2], Some((vars[3], vars[4])), lstm, false).unwrap();
        let r = t.rnn_layer(xt, vars[5], vars[6], Some((vars[7], vars[8])), lstm, true).unwrap();
        let h = t.concat_last(f, r).unwrap();
        let y = t.rnn_layer(h, vars[9], vars[10], Some((vars[11], vars[12])), lstm, false).unwrap();
        let y = t.swap01(y).unwrap();
        assert_eq!(t.shape(y).unwrap(), &[2, 3, 2]);
        (t, vars, y)
    }

    #[test]
    fn stacked_bidirectional_gradients_match_central_differences() {
        for lstm in [true, false] {
            let g = if lstm { 4 } else { 3 };
            let mut s = 17;
            let sizes = [12, g * 4, g * 4, g * 2, g * 2, g * 4, g * 4, g * 2, g * 2, g * 8, g * 4, g * 2, g * 2];
            let mut vals: Vec<Vec<f64>> = sizes.iter().map(|&k| lcg(&mut s, k)).collect();
            let u = lcg(&mut s, 12);
            let loss = |vals: &[Vec<f64>]| {
                let (t, _, y) = build(lstm, vals);
                t.value(y).unwrap().iter().zip(&u).map(|(a, b)| a * b).sum::<f64>()
            };
            let (t, vars, y) = build(lstm, &vals);
            let grads = t.backward(y, Some(&u)).unwrap();
            let analytic: Vec<Vec<f64>> = vars.iter().map(|v| grads[v.index()].clone().unwrap()).collect();
            assert_central_differences(&mut vals, &analytic, loss, &format!("lstm={lstm}"));
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut t = Tape::<f32>::new();
        let x = t.leaf(vec![0.0; 12], &[3, 2, 2]).unwrap();
        let w_ih = t.leaf(vec![0.0; 24], &[12, 2]).unwrap();
        let w_hh = t.leaf(vec![0.0; 36], &[12, 3]).unwrap();
        assert!(t.rnn_layer(x, w_ih, w_hh, None, true, false).is_ok());
        assert!(t.rnn_layer(x, w_ih, w_hh, None, false, false).is_err()); // 12 = 4 * 3, not 3 * H
        let w_ih3 = t.leaf(vec![0.0; 36], &[12, 3]).unwrap();
        assert!(t.rnn_layer(x, w_ih3, w_hh, None, true, false).is_err()); // 3 input features vs 2
        let flat = t.leaf(vec![0.0; 6], &[3, 2]).unwrap();
        assert!(t.rnn_layer(flat, w_ih, w_hh, None, true, false).is_err());
        assert!(t.swap01(flat).is_err());
        assert!(t.concat_last(x, flat).is_err());
        let b = t.leaf(vec![0.0; 3], &[3]).unwrap();
        assert!(t.rnn_layer(x, w_ih, w_hh, Some((b, b)), true, false).is_err());
    }
}
