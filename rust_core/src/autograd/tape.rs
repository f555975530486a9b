//! The native reverse-mode tape: a Wengert list over the crate's kernels.
//!
//! Each op appends one entry holding its output and the indices of its inputs (what its
//! backward needs: the inputs' values stay on the tape); `backward` walks the list once
//! in reverse, calls the op's backward kernel (`ops::linear`, `ops::activation`,
//! `ops::loss`, `ops::elementwise` semantics) with the summed gradient of its output,
//! accumulates into the inputs' gradients and drops each intermediate gradient once
//! used. Leaves (inputs, parameters) keep theirs. All shapes are checked when an op is
//! recorded and errors are `FerroError`s, never panics.
//!
//! The op set is what an MLP needs (linear, the activations, add for residuals, mse and
//! cross-entropy losses); a new op (a convolution) is one `Op` variant, one recording
//! method and one arm in `backward`.

use crate::error::{FerroError, Result};
use crate::ops::activation::{self, Gelu};
use crate::ops::linear;
use crate::ops::loss::{self, Reduction};
use crate::real::Real;
use crate::{shape_err, value_err};

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

    fn backward<T: Real>(self, x: &[T], gy: &[T]) -> Result<Vec<T>> {
        match self {
            Activation::Relu => activation::relu_backward(x, gy),
            Activation::LeakyRelu(s) => activation::leaky_relu_backward(x, gy, s),
            Activation::Sigmoid => activation::sigmoid_backward(x, gy),
            Activation::Tanh => activation::tanh_backward(x, gy),
            Activation::Gelu(a) => activation::gelu_backward(x, gy, a),
            Activation::Swish(b) => activation::swish_backward(x, gy, b),
        }
    }
}

/// A value recorded on a tape (its index in the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(usize);

impl Var {
    pub fn index(self) -> usize {
        self.0
    }
}

enum Op<T> {
    Leaf,
    Linear { x: Var, w: Var, b: Option<Var>, n: usize, fin: usize, fout: usize },
    Act { x: Var, f: Activation },
    Add { a: Var, b: Var },
    Mse { x: Var, target: Vec<T>, reduction: Reduction },
    CrossEntropy { logits: Var, target: Vec<i64>, n: usize, c: usize, reduction: Reduction },
}

struct Entry<T> {
    op: Op<T>,
    value: Vec<T>,
    shape: Vec<usize>,
}

/// The Wengert list.
pub struct Tape<T> {
    entries: Vec<Entry<T>>,
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

    fn entry(&self, v: Var, name: &str) -> Result<&Entry<T>> {
        self.entries.get(v.0).ok_or_else(|| {
            FerroError::Value(format!(
                "{name}: expected a value of this tape (index < {}), got index {}",
                self.entries.len(),
                v.0
            ))
        })
    }

    fn push(&mut self, op: Op<T>, value: Vec<T>, shape: Vec<usize>) -> Var {
        self.entries.push(Entry { op, value, shape });
        Var(self.entries.len() - 1)
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

    /// `x @ w.T + b` for x (n, fin), w (fout, fin), b (fout,).
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xe, we) = (self.entry(x, "input")?, self.entry(w, "weight")?);
        if xe.shape.len() != 2 || we.shape.len() != 2 || xe.shape[1] != we.shape[1] {
            return shape_err!(
                "input: expected (n, in_features) with in_features = weight.shape[1] for weight \
                 {:?}, got {:?}",
                we.shape,
                xe.shape
            );
        }
        let (n, fin, fout) = (xe.shape[0], xe.shape[1], we.shape[0]);
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
        Ok(self.push(Op::Linear { x, w, b, n, fin, fout }, y, vec![n, fout]))
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
            if matches!(e.op, Op::Leaf) {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            match &e.op {
                Op::Leaf => {}
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
                    let gx = f.backward(&self.entries[x.0].value, &g)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::Add { a, b } => {
                    accumulate(&mut grads, *a, g.clone());
                    accumulate(&mut grads, *b, g);
                }
                Op::Mse { x, target, reduction } => {
                    let gx = loss::mse_loss_backward(&self.entries[x.0].value, target, &g, *reduction)?;
                    accumulate(&mut grads, *x, gx);
                }
                Op::CrossEntropy { logits, target, n, c, reduction } => {
                    let lv = &self.entries[logits.0].value;
                    let gl = loss::cross_entropy_backward(lv, *n, *c, target, &g, *reduction)?;
                    accumulate(&mut grads, *logits, gl);
                }
            }
        }
        Ok(grads)
    }
}

fn accumulate<T: Real>(grads: &mut [Option<Vec<T>>], v: Var, g: Vec<T>) {
    match &mut grads[v.0] {
        Some(acc) => acc.iter_mut().zip(g).for_each(|(a, b)| *a += b),
        slot => *slot = Some(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::optim::Sgd;

    fn rand(seed: &mut u64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

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
        Mlp { params: shapes.iter().map(|sh| (rand(&mut s, sh.iter().product()), sh.to_vec())).collect(), acts }
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
            let x = rand(&mut s, n * 3);
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
        let x = rand(&mut s, 8 * 3);
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
}

/// The loss closing a sequential model, with its target.
pub enum LossTarget<'a, T> {
    Mse(&'a [T], Reduction),
    CrossEntropy(&'a [i64], Reduction),
}

/// Forward and backward of `layers` on input `x` (shape `x_shape`, (n, features)) under
/// `loss`, recorded on one tape: returns the scalar loss and the gradient of every
/// parameter, in order. `params[i]` is `(values, shape)`.
pub fn sequential_grads<T: Real>(
    layers: &[Layer],
    params: &[(&[T], &[usize])],
    x: &[T],
    x_shape: &[usize],
    loss: LossTarget<'_, T>,
) -> Result<(T, Vec<Vec<T>>)> {
    let mut t = Tape::new();
    let mut h = t.leaf(x.to_vec(), x_shape)?;
    let mut vars = Vec::with_capacity(params.len());
    let mut next = 0usize;
    for (i, layer) in layers.iter().enumerate() {
        h = match *layer {
            Layer::Linear { bias } => {
                let need = if bias { 2 } else { 1 };
                if next + need > params.len() {
                    return value_err!("params: layer {i} (linear) needs {need} more parameters, {} left", params.len() - next);
                }
                let w = t.leaf(params[next].0.to_vec(), params[next].1)?;
                vars.push(w);
                let b = if bias {
                    let b = t.leaf(params[next + 1].0.to_vec(), params[next + 1].1)?;
                    vars.push(b);
                    Some(b)
                } else {
                    None
                };
                next += need;
                t.linear(h, w, b)?
            }
            Layer::Act(f) => t.activation(h, f)?,
        };
    }
    if next != params.len() {
        return value_err!("params: the layers use {next} parameters, got {}", params.len());
    }
    let l = match loss {
        LossTarget::Mse(target, r) => t.mse_loss(h, target, r)?,
        LossTarget::CrossEntropy(target, r) => t.cross_entropy(h, target, r)?,
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

    #[test]
    fn sequential_matches_a_hand_built_tape_and_checks_params() {
        let w1 = [0.5, -0.3, 0.8, 0.1, 0.2, -0.7];
        let b1 = [0.05, -0.1];
        let w2 = [0.3, -0.6];
        let x = [1.0, 2.0, -1.0, 0.5, 0.0, 1.5];
        let layers = [Layer::Linear { bias: true }, Layer::Act(Activation::Tanh), Layer::Linear { bias: false }];
        let params: [(&[f64], &[usize]); 3] = [(&w1, &[2, 3]), (&b1, &[2]), (&w2, &[1, 2])];
        let target = [0.2, -0.4];
        let (l, g) = sequential_grads(&layers, &params, &x, &[2, 3], LossTarget::Mse(&target, Reduction::Mean)).unwrap();
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
        assert!(sequential_grads(&layers, &params[..2], &x, &[2, 3], LossTarget::Mse(&target, Reduction::Mean)).is_err());
        let extra: [(&[f64], &[usize]); 4] = [params[0], params[1], params[2], (&b1, &[2])];
        assert!(sequential_grads(&layers, &extra, &x, &[2, 3], LossTarget::Mse(&target, Reduction::Mean)).is_err());
        assert!(sequential_grads(&layers, &params, &x, &[2, 3], LossTarget::Mse(&target, Reduction::None)).is_err());
    }
}
