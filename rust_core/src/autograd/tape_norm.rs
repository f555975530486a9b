//! Normalization on the native tape: batch_norm (training with batch statistics and an
//! in-place running-statistics update, or eval with the running statistics), layer_norm,
//! group_norm and instance_norm (group_norm with one channel per group, whose running
//! statistics move like PyTorch's), over the kernels of `ops::norm`.
//!
//! Each op keeps the statistics its forward used (mean and rstd) and hands them to the
//! family's fused backward, as the Python engine's Functions do, so the gradients are
//! the same numbers.

use super::tape::{accumulate, Op, Tape, Var};
use crate::error::Result;
use crate::ops::norm::{self, ChannelsLayout, Running, RowsLayout};
use crate::real::Real;
use crate::{shape_err, value_err};

/// A batch_norm on the tape.
pub(super) struct BatchNormOp<T> {
    x: Var,
    w: Option<Var>,
    b: Option<Var>,
    lay: ChannelsLayout,
    mean: Vec<T>,
    rstd: Vec<T>,
    /// normalized with the batch statistics (their gradient flows through mean and var)
    batch_stats: bool,
}

/// A layer_norm, group_norm or instance_norm on the tape (statistics per row of the
/// `RowsLayout`).
pub(super) struct RowsNormOp<T> {
    x: Var,
    w: Option<Var>,
    b: Option<Var>,
    lay: RowsLayout,
    mean: Vec<T>,
    rstd: Vec<T>,
}

/// The weight the kernels see: the parameter, ones when only a bias is given (so that
/// they compute the bias gradient, as `ops/norm.py`'s `_affine_args`), or none.
fn kernel_weight<T: Real>(tape: &Tape<T>, w: Option<Var>, b: Option<Var>, c: usize) -> Option<Vec<T>> {
    match (w, b) {
        (Some(w), _) => Some(tape.entries[w.index()].value.clone()),
        (None, Some(_)) => Some(vec![T::ONE; c]),
        (None, None) => None,
    }
}

fn affine_grads<T: Real>(grads: &mut [Option<Vec<T>>], w: Option<Var>, b: Option<Var>, gw: Option<Vec<T>>, gb: Option<Vec<T>>) {
    if let (Some(w), Some(gw)) = (w, gw) {
        accumulate(grads, w, gw);
    }
    if let (Some(b), Some(gb)) = (b, gb) {
        accumulate(grads, b, gb);
    }
}

impl<T: Real> BatchNormOp<T> {
    pub(super) fn inputs(&self) -> impl Iterator<Item = Var> {
        std::iter::once(self.x).chain(self.w).chain(self.b)
    }

    pub(super) fn backward(&self, tape: &Tape<T>, g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        let xv = &tape.entries[self.x.index()].value;
        let w = kernel_weight(tape, self.w, self.b, self.lay.c);
        let (gx, gw, gb) = norm::batch_norm_backward(xv, self.lay, w.as_deref(), &self.mean, &self.rstd, g, self.batch_stats)?;
        if tape.needs_grad(self.x) {
            accumulate(grads, self.x, gx);
        }
        affine_grads(grads, self.w, self.b, gw, gb);
        Ok(())
    }
}

impl<T: Real> RowsNormOp<T> {
    pub(super) fn inputs(&self) -> impl Iterator<Item = Var> {
        std::iter::once(self.x).chain(self.w).chain(self.b)
    }

    pub(super) fn backward(&self, tape: &Tape<T>, g: &[T], grads: &mut [Option<Vec<T>>]) -> Result<()> {
        let xv = &tape.entries[self.x.index()].value;
        let w = kernel_weight(tape, self.w, self.b, self.lay.c);
        let (gx, gw, gb) = norm::rows_backward(xv, self.lay, w.as_deref(), &self.mean, &self.rstd, g)?;
        if tape.needs_grad(self.x) {
            accumulate(grads, self.x, gx);
        }
        affine_grads(grads, self.w, self.b, gw, gb);
        Ok(())
    }
}

impl<T: Real> Tape<T> {
    /// A per-channel parameter's value, checked to hold `c` elements.
    fn channel_param(&self, p: Option<Var>, c: usize, name: &str) -> Result<Option<&[T]>> {
        match p {
            Some(v) => {
                let e = self.entry(v, name)?;
                if e.value.len() != c {
                    return shape_err!("{name}: expected {c} elements, got shape {:?}", e.shape);
                }
                Ok(Some(e.value.as_slice()))
            }
            None => Ok(None),
        }
    }

    /// (N, C, product of the rest) of an input of at least `min_nd` axes.
    fn nc_rest(&self, x: Var, min_nd: usize) -> Result<(usize, usize, usize)> {
        let s = &self.entry(x, "input")?.shape;
        if s.len() < min_nd.max(2) {
            return shape_err!("input: expected (N, C, *) with at least {} axes, got {s:?}", min_nd.max(2));
        }
        Ok((s[0], s[1], s[2..].iter().product()))
    }

    /// torch.nn.functional.batch_norm on x (N, C, *). `batch_stats`: normalize with the
    /// batch statistics (training, or no running statistics), updating `running` in place
    /// with `momentum` when given; otherwise normalize with `running` (required).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        x: Var,
        w: Option<Var>,
        b: Option<Var>,
        running: Option<Running<'_, T>>,
        batch_stats: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Var> {
        let (n, c, hw) = self.nc_rest(x, 2)?;
        let lay = ChannelsLayout { n, c, hw };
        let (wv, bv) = (self.channel_param(w, c, "weight")?, self.channel_param(b, c, "bias")?);
        if !(0.0..=1.0).contains(&momentum) {
            return value_err!("momentum: expected a number in [0, 1], got {momentum}");
        }
        let xe = self.entry(x, "input")?;
        let (y, mean, rstd) = norm::batch_norm_forward(&xe.value, lay, wv, bv, running, batch_stats, momentum, eps)?;
        let shape = xe.shape.clone();
        Ok(self.push(Op::BatchNorm(BatchNormOp { x, w, b, lay, mean, rstd, batch_stats }), y, shape))
    }

    fn rows_norm(&mut self, x: Var, w: Option<Var>, b: Option<Var>, lay: RowsLayout, eps: f64) -> Result<Var> {
        let (wv, bv) = (self.channel_param(w, lay.c, "weight")?, self.channel_param(b, lay.c, "bias")?);
        let xe = self.entry(x, "input")?;
        let (y, mean, rstd) = norm::rows_forward(&xe.value, lay, wv, bv, eps)?;
        let shape = xe.shape.clone();
        Ok(self.push(Op::RowsNorm(RowsNormOp { x, w, b, lay, mean, rstd }), y, shape))
    }

    /// torch.nn.functional.layer_norm over the trailing axes `normalized_shape`; weight
    /// and bias hold one value per normalized element.
    pub fn layer_norm(&mut self, x: Var, normalized_shape: &[usize], w: Option<Var>, b: Option<Var>, eps: f64) -> Result<Var> {
        let s = &self.entry(x, "input")?.shape;
        let k = normalized_shape.len();
        if k == 0 || s.len() < k || s[s.len() - k..] != *normalized_shape {
            return shape_err!("input: expected trailing dimensions {normalized_shape:?} (normalized_shape), got input of shape {s:?}");
        }
        let c: usize = normalized_shape.iter().product();
        let n = s[..s.len() - k].iter().product();
        self.rows_norm(x, w, b, RowsLayout { n, c, hw: 1, groups: 1 }, eps)
    }

    /// torch.nn.functional.group_norm on x (N, C, *): statistics per sample and group of
    /// C / groups consecutive channels; per-channel weight and bias.
    pub fn group_norm(&mut self, x: Var, groups: usize, w: Option<Var>, b: Option<Var>, eps: f64) -> Result<Var> {
        let (n, c, hw) = self.nc_rest(x, 2)?;
        self.rows_norm(x, w, b, RowsLayout { n, c, hw, groups }, eps)
    }

    /// torch.nn.functional.instance_norm with use_input_stats=True on x (N, C, *):
    /// group_norm with one channel per group; `running` (mean, var), when given, moves by
    /// `momentum` towards the batch average of the per-instance mean and unbiased variance,
    /// computed from the saved statistics in f64 exactly as `ops/norm.py` does.
    pub fn instance_norm(
        &mut self,
        x: Var,
        w: Option<Var>,
        b: Option<Var>,
        running: Option<Running<'_, T>>,
        momentum: f64,
        eps: f64,
    ) -> Result<Var> {
        let (n, c, hw) = self.nc_rest(x, 3)?;
        if hw <= 1 {
            return value_err!(
                "input: expected more than 1 spatial element when training, got input of shape {:?}",
                self.entry(x, "input")?.shape
            );
        }
        if let Some(r) = &running {
            if r.mean.len() != c || r.var.len() != c {
                return shape_err!(
                    "running_mean: expected {c} elements in running_mean and running_var, got {} and {}",
                    r.mean.len(),
                    r.var.len()
                );
            }
        }
        if !(0.0..=1.0).contains(&momentum) {
            return value_err!("momentum: expected a number in [0, 1], got {momentum}");
        }
        let y = self.group_norm(x, c, w, b, eps)?;
        if let (Some(r), Op::RowsNorm(op)) = (running, &self.entries[y.index()].op) {
            let unbias = hw as f64 / (hw as f64 - 1.0);
            for ch in 0..c {
                let (mut m, mut v) = (0.0f64, 0.0f64);
                for s in 0..n {
                    let rs = op.rstd[s * c + ch].to_f64();
                    m += op.mean[s * c + ch].to_f64();
                    // max(0) that keeps NaN: a NaN input must make running_var NaN
                    let var = 1.0 / (rs * rs) - eps;
                    v += if var < 0.0 { 0.0 } else { var } * unbias;
                }
                let (m, v) = (m / n as f64, v / n as f64);
                r.mean[ch] = T::c((1.0 - momentum) * r.mean[ch].to_f64() + momentum * m);
                r.var[ch] = T::c((1.0 - momentum) * r.var[ch].to_f64() + momentum * v);
            }
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::test_util::{assert_central_differences, lcg};

    /// Checks d(sum(y * u))/d(x, w, b) of `op` against central differences, where `op`
    /// records one normalization of x (shape `xs`) with weight and bias of `c` elements.
    fn check(xs: &[usize], c: usize, op: impl Fn(&mut Tape<f64>, Var, Var, Var) -> Var) {
        let mut s = 5;
        let n: usize = xs.iter().product();
        let mut vals = vec![lcg(&mut s, n), lcg(&mut s, c), lcg(&mut s, c)];
        let u = lcg(&mut s, n);
        let eval = |vals: &[Vec<f64>], grad: bool| {
            let mut t = Tape::new();
            let x = t.leaf(vals[0].clone(), xs).unwrap();
            let w = t.leaf(vals[1].clone(), &[c]).unwrap();
            let b = t.leaf(vals[2].clone(), &[c]).unwrap();
            let y = op(&mut t, x, w, b);
            let l: f64 = t.value(y).unwrap().iter().zip(&u).map(|(a, b)| a * b).sum();
            let g = if grad { t.backward(y, Some(&u)).unwrap() } else { vec![] };
            (l, g.get(x.index()).cloned().flatten(), g.get(w.index()).cloned().flatten(), g.get(b.index()).cloned().flatten())
        };
        let (_, gx, gw, gb) = eval(&vals, true);
        let analytic = [gx.unwrap(), gw.unwrap(), gb.unwrap()];
        assert_central_differences(&mut vals, &analytic, |v| eval(v, false).0, "input");
    }

    #[test]
    fn gradients_match_central_differences() {
        // batch_norm with batch statistics (1d: (N, C) and (N, C, L); 2d), and in eval mode
        check(&[5, 3], 3, |t, x, w, b| t.batch_norm(x, Some(w), Some(b), None, true, 0.1, 1e-5).unwrap());
        check(&[3, 2, 4], 2, |t, x, w, b| t.batch_norm(x, Some(w), Some(b), None, true, 0.1, 1e-5).unwrap());
        check(&[2, 3, 2, 3], 3, |t, x, w, b| t.batch_norm(x, Some(w), Some(b), None, true, 0.1, 1e-5).unwrap());
        check(&[2, 3, 2, 2], 3, |t, x, w, b| {
            let (mut m, mut v) = (vec![0.1, -0.2, 0.3], vec![0.5, 1.5, 2.0]);
            t.batch_norm(x, Some(w), Some(b), Some(Running { mean: &mut m, var: &mut v }), false, 0.1, 1e-5).unwrap()
        });
        check(&[3, 2, 4], 4, |t, x, w, b| t.layer_norm(x, &[4], Some(w), Some(b), 1e-5).unwrap());
        check(&[2, 6, 3], 6, |t, x, w, b| t.group_norm(x, 3, Some(w), Some(b), 1e-5).unwrap());
        check(&[2, 3, 2, 3], 3, |t, x, w, b| t.instance_norm(x, Some(w), Some(b), None, 0.1, 1e-5).unwrap());
        // only a bias: the kernels see a ones weight
        check(&[4, 2], 2, |t, x, w, b| {
            let y = t.batch_norm(x, None, Some(b), None, true, 0.1, 1e-5).unwrap();
            let y2 = t.layer_norm(y, &[2], Some(w), None, 1e-5).unwrap();
            t.add(y, y2).unwrap()
        });
    }

    #[test]
    fn running_statistics_move_like_pytorch() {
        let x: Vec<f64> = vec![1.0, 2.0, 3.0, 5.0, -1.0, 0.0, 2.0, 2.0]; // (2, 2, 2)
        let (mut m, mut v) = (vec![0.0, 0.0], vec![1.0, 1.0]);
        let mut t = Tape::new();
        let xv = t.constant(x.clone(), &[2, 2, 2]).unwrap();
        t.batch_norm(xv, None, None, Some(Running { mean: &mut m, var: &mut v }), true, 0.5, 1e-5).unwrap();
        // channel 0: 1, 2, -1, 0 -> mean 0.5, unbiased var 5/3; channel 1: 3, 5, 2, 2 -> 3, 2
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(m[0], 0.25) && close(m[1], 1.5), "{m:?}");
        assert!(close(v[0], 0.5 + 0.5 * 5.0 / 3.0) && close(v[1], 1.5), "{v:?}");
        let (mut m, mut v) = (vec![0.0, 0.0], vec![1.0, 1.0]);
        t.instance_norm(xv, None, None, Some(Running { mean: &mut m, var: &mut v }), 1.0, 0.0).unwrap();
        // per instance (channel 0): (1, 2) and (-1, 0): means 1.5, -0.5; unbiased vars 0.5, 0.5
        assert!(close(m[0], 0.5) && close(v[0], 0.5), "{m:?} {v:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut t = Tape::<f32>::new();
        let x = t.leaf(vec![0.0; 12], &[2, 3, 2]).unwrap();
        let w = t.leaf(vec![1.0; 2], &[2]).unwrap();
        assert!(t.batch_norm(x, Some(w), None, None, true, 0.1, 1e-5).is_err()); // 2 weights, 3 channels
        assert!(t.batch_norm(x, None, None, None, false, 0.1, 1e-5).is_err()); // eval needs running stats
        assert!(t.batch_norm(x, None, None, None, true, 1.5, 1e-5).is_err());
        let one = t.leaf(vec![0.0; 3], &[1, 3]).unwrap();
        assert!(t.batch_norm(one, None, None, None, true, 0.1, 1e-5).is_err()); // one value per channel
        assert!(t.layer_norm(x, &[3], None, None, 1e-5).is_err());
        assert!(t.group_norm(x, 2, None, None, 1e-5).is_err()); // 3 channels, 2 groups
        assert!(t.instance_norm(x, None, None, None, 0.1, 1e-5).is_ok());
        let flat = t.leaf(vec![0.0; 6], &[2, 3]).unwrap();
        assert!(t.instance_norm(flat, None, None, None, 0.1, 1e-5).is_err());
        let (mut m, mut v) = (vec![0.0f32; 2], vec![1.0f32; 2]);
        assert!(t.instance_norm(x, None, None, Some(Running { mean: &mut m, var: &mut v }), 0.1, 1e-5).is_err());
    }
}
