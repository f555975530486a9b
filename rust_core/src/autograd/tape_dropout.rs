//! Dropout on the native tape: the mask comes from the project's Philox stream
//! (`ops::dropout`) at the caller's `(seed, offset)`, so a seed gives the Python engine's
//! mask bit for bit; backward regenerates it from the stream instead of saving it.

use super::tape::{accumulate, Op, Tape, Var};
use crate::error::Result;
use crate::ops::dropout;
use crate::real::Real;
use crate::value_err;

/// A training-mode dropout on the tape.
pub(super) struct DropoutOp {
    pub(super) x: Var,
    p: f64,
    seed: u64,
    offset: u64,
}

impl DropoutOp {
    pub(super) fn backward<T: Real>(&self, g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        accumulate(grads, self.x, dropout::dropout_apply(g, self.p, self.seed, self.offset)?);
        Ok(())
    }
}

impl<T: Real> Tape<T> {
    /// torch.nn.functional.dropout in training mode: zero each element with probability
    /// `p` (its stream word at `(seed, offset)` says drop) and scale the rest by
    /// 1 / (1 - p). p = 0 records nothing and returns `x` (as `ops/dropout.py`).
    pub fn dropout(&mut self, x: Var, p: f64, seed: u64, offset: u64) -> Result<Var> {
        if !(0.0..=1.0).contains(&p) {
            return value_err!("p: expected a dropout probability in [0, 1], got {p}");
        }
        let xe = self.entry(x, "input")?;
        if p == 0.0 {
            return Ok(x);
        }
        let y = dropout::dropout_apply(&xe.value, p, seed, offset)?;
        let shape = xe.shape.clone();
        Ok(self.push(Op::Dropout(DropoutOp { x, p, seed, offset }), y, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_is_the_forward_mask_times_the_scale() {
        let mut t = Tape::<f64>::new();
        let n = 4000;
        let x = t.leaf((0..n).map(|i| 1.0 + (i % 7) as f64).collect(), &[n]).unwrap();
        let y = t.dropout(x, 0.3, 42, 7).unwrap();
        let yv = t.value(y).unwrap().to_vec();
        let u: Vec<f64> = (0..n).map(|i| (i as f64 * 0.1).sin()).collect();
        let g = t.backward(y, Some(&u)).unwrap()[x.index()].clone().unwrap();
        let xv = t.value(x).unwrap();
        let mut dropped = 0;
        for i in 0..n {
            let m = yv[i] / xv[i]; // 0 or 1 / 0.7
            assert!(m == 0.0 || (m - 1.0 / 0.7).abs() < 1e-12, "{m}");
            assert!((g[i] - m * u[i]).abs() < 1e-12);
            dropped += (m == 0.0) as usize;
        }
        let rate = dropped as f64 / n as f64;
        assert!((rate - 0.3).abs() < 0.03, "drop rate {rate}");
        // the same stream position gives the same mask; another offset another one
        let y2 = t.dropout(x, 0.3, 42, 7).unwrap();
        let y3 = t.dropout(x, 0.3, 42, 8).unwrap();
        assert_eq!(t.value(y2).unwrap(), &yv[..]);
        assert_ne!(t.value(y3).unwrap(), &yv[..]);
    }

    #[test]
    fn p_zero_is_the_identity_and_bad_p_an_error() {
        let mut t = Tape::<f32>::new();
        let x = t.leaf(vec![1.0, 2.0], &[2]).unwrap();
        assert_eq!(t.dropout(x, 0.0, 1, 2).unwrap(), x);
        assert!(t.dropout(x, 1.5, 1, 2).is_err());
        assert!(t.dropout(x, f64::NAN, 1, 2).is_err());
        let y = t.dropout(x, 1.0, 1, 2).unwrap();
        assert_eq!(t.value(y).unwrap(), &[0.0, 0.0]);
    }
}
