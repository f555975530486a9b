//! Losses: mean squared error and cross-entropy from logits (log-sum-exp, so any finite
//! logits give a finite loss), with PyTorch's reductions.

use super::map::map2;
use super::reduce::pairwise_sum;
use super::softmax::{log_softmax_forward, softmax_forward};
use crate::error::Result;
use crate::real::Real;
use crate::{shape_err, value_err};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
    None,
}

impl Reduction {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            "none" => Reduction::None,
            _ => return value_err!("reduction: expected 'mean', 'sum' or 'none', got {s:?}"),
        })
    }

    /// The reduced values (one element unless `None`). The mean of nothing is NaN, as in PyTorch.
    fn apply<T: Real>(self, v: Vec<T>) -> Vec<T> {
        match self {
            Reduction::None => v,
            Reduction::Sum => vec![pairwise_sum(&v)],
            Reduction::Mean => vec![pairwise_sum(&v) / T::c(v.len() as f64)],
        }
    }
}

pub fn mse_loss_forward<T: Real>(x: &[T], target: &[T], reduction: Reduction) -> Result<Vec<T>> {
    if x.len() != target.len() {
        return shape_err!("target: expected {} elements like input, got {}", x.len(), target.len());
    }
    Ok(reduction.apply(map2(x, target, |a, b| (a - b) * (a - b))))
}

/// d loss / d x; `gy` has one element unless reduction is None (then x's length).
pub fn mse_loss_backward<T: Real>(x: &[T], target: &[T], gy: &[T], reduction: Reduction) -> Result<Vec<T>> {
    if x.len() != target.len() {
        return shape_err!("target: expected {} elements like input, got {}", x.len(), target.len());
    }
    match reduction {
        Reduction::None => {
            if gy.len() != x.len() {
                return shape_err!("gy: expected {} elements, got {}", x.len(), gy.len());
            }
            let d = map2(x, target, |a, b| T::c(2.0) * (a - b));
            Ok(map2(&d, gy, |d, g| d * g))
        }
        _ => {
            if gy.len() != 1 {
                return shape_err!("gy: expected one element for a reduced loss, got {}", gy.len());
            }
            let scale = if reduction == Reduction::Mean { 2.0 / x.len() as f64 } else { 2.0 };
            let s = T::c(scale) * gy[0];
            Ok(map2(x, target, move |a, b| s * (a - b)))
        }
    }
}

fn check_targets(n: usize, c: usize, target: &[i64]) -> Result<()> {
    if target.len() != n {
        return shape_err!("target: expected shape ({n},), got {} elements", target.len());
    }
    if let Some(&bad) = target.iter().find(|&&t| t < 0 || t as usize >= c) {
        return value_err!("target: expected class indices in [0, {c}), got {bad}");
    }
    Ok(())
}

/// -log_softmax(logits)[i, target[i]] for (n, c) logits, reduced.
pub fn cross_entropy_forward<T: Real>(
    logits: &[T],
    n: usize,
    c: usize,
    target: &[i64],
    reduction: Reduction,
) -> Result<Vec<T>> {
    if logits.len() != n * c {
        return shape_err!("input: {} elements do not fill ({n}, {c})", logits.len());
    }
    check_targets(n, c, target)?;
    let logp = log_softmax_forward(logits, c)?;
    let nll: Vec<T> = (0..n).map(|i| -logp[i * c + target[i] as usize]).collect();
    Ok(reduction.apply(nll))
}

/// (softmax(logits) - onehot(target)) times gy (per row for None, / n for Mean).
pub fn cross_entropy_backward<T: Real>(
    logits: &[T],
    n: usize,
    c: usize,
    target: &[i64],
    gy: &[T],
    reduction: Reduction,
) -> Result<Vec<T>> {
    if logits.len() != n * c {
        return shape_err!("input: {} elements do not fill ({n}, {c})", logits.len());
    }
    check_targets(n, c, target)?;
    let expected = if reduction == Reduction::None { n } else { 1 };
    if gy.len() != expected {
        return shape_err!("gy: expected {expected} elements, got {}", gy.len());
    }
    let mut g = softmax_forward(logits, c)?;
    for i in 0..n {
        g[i * c + target[i] as usize] -= T::ONE;
        let s = match reduction {
            Reduction::None => gy[i],
            Reduction::Sum => gy[0],
            Reduction::Mean => gy[0] / T::c(n as f64),
        };
        g[i * c..(i + 1) * c].iter_mut().for_each(|v| *v *= s);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_finite_for_huge_logits_and_checks_targets() {
        let logits = [1e4f32, -1e4, 0.0, 0.0];
        let l = cross_entropy_forward(&logits, 2, 2, &[1, 0], Reduction::None).unwrap();
        assert_eq!(l[0], 2e4);
        assert!((l[1] - std::f32::consts::LN_2).abs() < 1e-6);
        assert!(cross_entropy_forward(&logits, 2, 2, &[2, 0], Reduction::Mean).is_err());
        assert!(cross_entropy_forward(&logits, 2, 2, &[-1, 0], Reduction::Mean).is_err());
        let g = cross_entropy_backward(&logits, 2, 2, &[1, 0], &[1.0], Reduction::Mean).unwrap();
        assert_eq!(g, vec![0.5, -0.5, -0.25, 0.25]);
    }

    #[test]
    fn mse_reductions() {
        let x = [1.0f64, 2.0, 3.0];
        let t = [0.0, 0.0, 0.0];
        assert_eq!(mse_loss_forward(&x, &t, Reduction::Sum).unwrap(), vec![14.0]);
        assert_eq!(mse_loss_backward(&x, &t, &[1.0], Reduction::Mean).unwrap(), vec![2.0 / 3.0, 4.0 / 3.0, 2.0]);
    }
}
