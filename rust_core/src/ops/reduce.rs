//! Sums: pairwise (so float32 sums of millions of elements stay accurate), over any set
//! of axes, and `sum_to_shape`, the adjoint of broadcasting used by every backward.

use crate::error::Result;
use crate::real::Real;
use crate::shape_err;
use rayon::prelude::*;

/// Below this length a block is summed directly with 8 independent accumulators (which
/// LLVM vectorizes); above it, the halves are summed separately and added: the error
/// grows like log(n) instead of n.
const PAIRWISE_BLOCK: usize = 128;
/// Above this length the two halves are summed on rayon's threads.
const PARALLEL_SUM: usize = 1 << 16;

pub fn pairwise_sum<T: Real>(x: &[T]) -> T {
    if x.len() <= PAIRWISE_BLOCK {
        let mut acc = [T::ZERO; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..8 {
                acc[k] += c[k];
            }
        }
        let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for &v in rest {
            s += v;
        }
        return s;
    }
    let mid = x.len() / 2;
    let (a, b) = x.split_at(mid);
    if x.len() >= PARALLEL_SUM {
        let (sa, sb) = rayon::join(|| pairwise_sum(a), || pairwise_sum(b));
        sa + sb
    } else {
        pairwise_sum(a) + pairwise_sum(b)
    }
}

/// Sums of the `rows` rows of a row-major (rows, cols) matrix: out[j] = sum_i x[i, j].
/// Rows are split in halves recursively (pairwise across rows), columns in parallel.
pub fn column_sums<T: Real>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    const COL_BLOCK: usize = 256;
    out.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, o)| {
        let c0 = b * COL_BLOCK;
        column_sums_block(x, cols, 0, rows, c0, o);
    });
    out
}

fn column_sums_block<T: Real>(x: &[T], cols: usize, r0: usize, r1: usize, c0: usize, out: &mut [T]) {
    let w = out.len();
    if r1 - r0 <= 16 {
        out.iter_mut().for_each(|o| *o = T::ZERO);
        for r in r0..r1 {
            let row = &x[r * cols + c0..r * cols + c0 + w];
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        return;
    }
    let mid = r0 + (r1 - r0) / 2;
    let mut tmp = vec![T::ZERO; w];
    column_sums_block(x, cols, r0, mid, c0, out);
    column_sums_block(x, cols, mid, r1, c0, &mut tmp);
    for (o, t) in out.iter_mut().zip(tmp) {
        *o += t;
    }
}

/// Copy of x (row-major, `shape`) with its axes reordered by `perm` (result axis i is
/// input axis perm[i]), contiguous.
pub fn permute_copy<T: Real>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let nd = shape.len();
    let mut strides = vec![1usize; nd];
    for i in (0..nd.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let pstrides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let n = x.len();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(x[off]);
        // increment the multi-index, last axis fastest
        let mut ax = nd;
        while ax > 0 {
            ax -= 1;
            idx[ax] += 1;
            off += pstrides[ax];
            if idx[ax] < pshape[ax] {
                break;
            }
            off -= pstrides[ax] * pshape[ax];
            idx[ax] = 0;
        }
    }
    out
}

/// Sum of x (row-major, `shape`) over `axes` (sorted, unique, in range). The result has
/// the kept axes in order (keepdims is a reshape the caller does).
pub fn sum_axes<T: Real>(x: &[T], shape: &[usize], axes: &[usize]) -> Result<Vec<T>> {
    let nd = shape.len();
    for (i, &a) in axes.iter().enumerate() {
        if a >= nd || (i > 0 && axes[i - 1] >= a) {
            return shape_err!(
                "axes: expected sorted unique axes below {nd} for a {nd}-D array, got {axes:?}"
            );
        }
    }
    let reduced: usize = axes.iter().map(|&a| shape[a]).product();
    let kept_axes: Vec<usize> = (0..nd).filter(|a| !axes.contains(a)).collect();
    let kept: usize = kept_axes.iter().map(|&a| shape[a]).product();
    if axes.is_empty() {
        return Ok(x.to_vec());
    }
    if reduced == 0 || kept == 0 {
        // an empty input can still keep a huge shape ((10**12, 0) summed over axis 1)
        return crate::alloc::zeroed(kept, "sum's result");
    }
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == nd - axes.len() + i);
    let leading = axes.iter().enumerate().all(|(i, &a)| a == i);
    if leading && !trailing {
        return Ok(column_sums(x, reduced, kept));
    }
    let run = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if run && !trailing {
        // a run of middle axes: x is (outer, reduced, inner) and each outer block's
        // result is the column sums of a (reduced, inner) matrix, read row by row (a
        // permuted copy first would walk x with the reduced axes' strides)
        let inner: usize = shape[axes[axes.len() - 1] + 1..].iter().product();
        let mut out = crate::alloc::zeroed(kept, "sum's result")?;
        const COL_BLOCK: usize = 256;
        out.par_chunks_mut(inner).enumerate().for_each(|(o, dst)| {
            let block = &x[o * reduced * inner..(o + 1) * reduced * inner];
            dst.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, d)| {
                column_sums_block(block, inner, 0, reduced, b * COL_BLOCK, d);
            });
        });
        return Ok(out);
    }
    let data: std::borrow::Cow<[T]> = if trailing {
        std::borrow::Cow::Borrowed(x)
    } else {
        let perm: Vec<usize> = kept_axes.iter().chain(axes.iter()).copied().collect();
        std::borrow::Cow::Owned(permute_copy(x, shape, &perm))
    };
    if kept == 1 {
        return Ok(vec![pairwise_sum(&data)]);
    }
    Ok(data.par_chunks(reduced).map(pairwise_sum).collect())
}

/// Sum `g` (row-major, `g_shape`) over the axes broadcasting added or stretched so that
/// the result has `shape`.
pub fn sum_to_shape<T: Real>(g: &[T], g_shape: &[usize], shape: &[usize]) -> Result<Vec<T>> {
    if g_shape == shape {
        return Ok(super::map::map1(g, |v: T| v)); // a parallel copy
    }
    if shape.len() > g_shape.len() {
        return shape_err!("shape: cannot sum {g_shape:?} to {shape:?}: too many axes");
    }
    let lead = g_shape.len() - shape.len();
    let mut axes: Vec<usize> = (0..lead).collect();
    for (i, &n) in shape.iter().enumerate() {
        let m = g_shape[lead + i];
        if n == 1 && m != 1 {
            axes.push(lead + i);
        } else if n != m {
            return shape_err!("shape: cannot sum {g_shape:?} to {shape:?}: axis {i} differs");
        }
    }
    sum_axes(g, g_shape, &axes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_over_middle_axes_matches_a_direct_loop() {
        let shape = [3usize, 4, 5, 6];
        let x: Vec<f64> = (0..360).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        for axes in [vec![1usize], vec![1, 2], vec![2]] {
            let got = sum_axes(&x, &shape, &axes).unwrap();
            let kept: Vec<usize> = (0..4).filter(|a| !axes.contains(a)).collect();
            let mut want = vec![0.0; got.len()];
            for (flat, &v) in x.iter().enumerate() {
                let idx = [flat / 120, flat / 30 % 4, flat / 6 % 5, flat % 6];
                let k = kept.iter().fold(0, |acc, &a| acc * shape[a] + idx[a]);
                want[k] += v;
            }
            assert_eq!(got, want, "axes {axes:?}");
        }
    }

    #[test]
    fn pairwise_sum_of_many_float32_ones_is_exact() {
        let x = vec![1.0f32; 10_000_000];
        assert_eq!(pairwise_sum(&x), 10_000_000.0);
        let y = vec![0.1f32; 1 << 22];
        let s = pairwise_sum(&y) as f64;
        let e = 0.1f32 as f64 * (1 << 22) as f64;
        assert!((s - e).abs() / e < 1e-6, "{s} vs {e}");
    }

    #[test]
    fn sum_axes_matches_a_direct_loop_on_every_axis_set() {
        let shape = [3usize, 4, 5];
        let x: Vec<f64> = (0..60).map(|i| (i * 7 % 11) as f64).collect();
        let at = |i: usize, j: usize, k: usize| x[i * 20 + j * 5 + k];
        let s01 = sum_axes(&x, &shape, &[0, 1]).unwrap();
        for k in 0..5 {
            let e: f64 = (0..3).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| at(i, j, k)).sum();
            assert_eq!(s01[k], e);
        }
        let s1 = sum_axes(&x, &shape, &[1]).unwrap();
        for i in 0..3 {
            for k in 0..5 {
                assert_eq!(s1[i * 5 + k], (0..4).map(|j| at(i, j, k)).sum::<f64>());
            }
        }
        let s02 = sum_axes(&x, &shape, &[0, 2]).unwrap();
        for j in 0..4 {
            let e: f64 = (0..3).flat_map(|i| (0..5).map(move |k| (i, k))).map(|(i, k)| at(i, j, k)).sum();
            assert_eq!(s02[j], e);
        }
        assert_eq!(sum_axes(&x, &shape, &[0, 1, 2]).unwrap(), vec![x.iter().sum::<f64>()]);
        assert!(sum_axes(&x, &shape, &[3]).is_err());
        assert!(sum_axes(&x, &shape, &[1, 0]).is_err());
    }

    #[test]
    fn sum_to_shape_undoes_broadcasting() {
        let g = vec![1.0f32; 2 * 3 * 4];
        assert_eq!(sum_to_shape(&g, &[2, 3, 4], &[3, 1]).unwrap(), vec![8.0; 3]);
        assert_eq!(sum_to_shape(&g, &[2, 3, 4], &[]).unwrap(), vec![24.0]);
        assert!(sum_to_shape(&g, &[2, 3, 4], &[2, 4]).is_err());
    }
}
