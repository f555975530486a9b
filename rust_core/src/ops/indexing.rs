//! Indexing's strided reads and writes (the contract's "indexing": basic indexing,
//! narrow, split, cat): element i of the view (shape, strides, offset) of a row-major
//! buffer is `buf[offset + sum_d i_d * strides[d]]`. Both kernels check that every
//! position lies inside the buffer, and the write also that the view never names one
//! position twice, so its rows can be written in parallel.

use crate::error::Result;
use crate::value_err;
use rayon::prelude::*;

/// Rows of at least this many elements in total per task: below it, a copy is cheaper
/// than waking a thread.
const ROWS_PER_TASK_ELEMS: usize = 1 << 15;

/// The number of elements of the view, and a check that its last position fits `len`.
fn check_view(len: usize, shape: &[usize], strides: &[usize], offset: usize, what: &str) -> Result<usize> {
    if shape.len() != strides.len() {
        return value_err!("strides: expected one per dimension of shape {shape:?}, got {strides:?}");
    }
    let n = crate::alloc::checked_numel(shape, what)?;
    if n == 0 {
        return Ok(0);
    }
    let mut last = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        last = (d - 1).checked_mul(s).and_then(|v| v.checked_add(last)).unwrap_or(usize::MAX);
    }
    if last >= len {
        return value_err!(
            "offset, strides: the view (shape {shape:?}, strides {strides:?}, offset {offset}) \
             reaches element {last} of a buffer of {len}"
        );
    }
    Ok(n)
}

/// The element offset of row `r` (all but the last axis) of the view.
#[inline]
fn row_offset(mut r: usize, shape: &[usize], strides: &[usize], offset: usize) -> usize {
    let mut off = offset;
    for ax in (0..shape.len() - 1).rev() {
        off += (r % shape[ax]) * strides[ax];
        r /= shape[ax];
    }
    off
}

/// A new row-major array of `shape` holding the view of `x`.
pub fn gather_strided<T: Copy + Send + Sync>(x: &[T], shape: &[usize], strides: &[usize], offset: usize) -> Result<Vec<T>> {
    let n = check_view(x.len(), shape, strides, offset, "an indexing result")?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if shape.is_empty() {
        return Ok(vec![x[offset]]);
    }
    let inner = shape[shape.len() - 1];
    let step = strides[shape.len() - 1];
    let mut out: Vec<T> = super::map::try_with_capacity(n, &format!("an indexing result of shape {shape:?}"))?;
    let rows_per_task = (ROWS_PER_TASK_ELEMS / inner).max(1);
    out.spare_capacity_mut()[..n].par_chunks_mut(rows_per_task * inner).enumerate().for_each(|(task, block)| {
        for (k, row) in block.chunks_mut(inner).enumerate() {
            let off = row_offset(task * rows_per_task + k, shape, strides, offset);
            if step == 1 {
                for (o, &v) in row.iter_mut().zip(&x[off..off + inner]) {
                    o.write(v);
                }
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    o.write(x[off + j * step]);
                }
            }
        }
    });
    // SAFETY: the tasks' blocks tile the n slots and every row of a block is written whole
    unsafe { out.set_len(n) };
    Ok(out)
}

/// True when no two positions of the view coincide: with its axes sorted by stride, each
/// stride passes the extent the smaller ones span (a sufficient condition, and the one
/// slices and cat's blocks satisfy).
fn is_injective(shape: &[usize], strides: &[usize]) -> bool {
    let mut axes: Vec<(usize, usize)> =
        shape.iter().zip(strides).filter(|(&d, _)| d > 1).map(|(&d, &s)| (s, d)).collect();
    axes.sort_unstable();
    let mut extent = 0usize; // the largest offset the smaller axes reach
    for (s, d) in axes {
        if s <= extent {
            return false;
        }
        extent = match (d - 1).checked_mul(s).and_then(|v| v.checked_add(extent)) {
            Some(e) => e,
            None => return false,
        };
    }
    true
}

/// A raw pointer handed to the tasks of one copy; see the SAFETY note at its use.
#[derive(Clone, Copy)]
struct Dst<T>(*mut T);
unsafe impl<T: Send> Send for Dst<T> {}
unsafe impl<T: Send> Sync for Dst<T> {}

/// Write `src` (row-major, `shape`) into the view (shape, strides, offset) of `dst`.
pub fn copy_strided<T: Copy + Send + Sync>(
    dst: &mut [T],
    src: &[T],
    shape: &[usize],
    strides: &[usize],
    offset: usize,
) -> Result<()> {
    let n = check_view(dst.len(), shape, strides, offset, "a strided copy")?;
    if src.len() != n {
        return value_err!("src: expected {n} elements for shape {shape:?}, got {}", src.len());
    }
    if n == 0 {
        return Ok(());
    }
    if shape.is_empty() {
        dst[offset] = src[0];
        return Ok(());
    }
    if !is_injective(shape, strides) {
        return value_err!("strides: the view (shape {shape:?}, strides {strides:?}) names a position twice");
    }
    let inner = shape[shape.len() - 1];
    let step = strides[shape.len() - 1];
    let rows_per_task = (ROWS_PER_TASK_ELEMS / inner).max(1);
    let base = Dst(dst.as_mut_ptr());
    src.par_chunks(rows_per_task * inner).enumerate().for_each(|(task, block)| {
        let base = base;
        for (k, row) in block.chunks(inner).enumerate() {
            let off = row_offset(task * rows_per_task + k, shape, strides, offset);
            // SAFETY (both branches): check_view put every position of the view inside
            // dst, and is_injective proved no two (row, j) pairs share one, so the tasks'
            // writes are in bounds and disjoint; dst is borrowed mutably throughout, and
            // src is a different slice (a shared borrow), so the row copy cannot overlap
            if step == 1 {
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), base.0.add(off), inner) };
            } else {
                for (j, &v) in row.iter().enumerate() {
                    unsafe { *base.0.add(off + j * step) = v };
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_copy_are_adjoint_on_a_slice() {
        // x of shape (4, 6); the view x[1:4:2, 1::2] -> shape (2, 3), strides (12, 2), offset 7
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let y = gather_strided(&x, &[2, 3], &[12, 2], 7).unwrap();
        assert_eq!(y, vec![7.0, 9.0, 11.0, 19.0, 21.0, 23.0]);
        let mut g = vec![0.0f32; 24];
        copy_strided(&mut g, &y, &[2, 3], &[12, 2], 7).unwrap();
        for (i, &v) in g.iter().enumerate() {
            assert_eq!(v, if y.contains(&(i as f32)) { i as f32 } else { 0.0 });
        }
    }

    #[test]
    fn views_outside_the_buffer_or_overlapping_are_refused() {
        let x = vec![0.0f64; 10];
        assert!(gather_strided(&x, &[3], &[4], 2).is_err()); // reaches 10
        assert!(gather_strided(&x, &[2, 2], &[usize::MAX, 1], 0).is_err());
        let mut d = vec![0.0f64; 10];
        assert!(copy_strided(&mut d, &[1.0, 2.0, 3.0, 4.0], &[2, 2], &[1, 1], 0).is_err()); // overlap
        assert!(copy_strided(&mut d, &[1.0], &[2], &[1], 0).is_err()); // src size
        assert_eq!(gather_strided(&x, &[0, 5], &[100, 1], 99).unwrap().len(), 0);
        assert!(is_injective(&[3, 1, 4], &[8, 0, 2]) && !is_injective(&[2, 3], &[2, 1]));
    }

    #[test]
    fn many_rows_in_parallel_match_a_serial_loop() {
        let (r, c) = (3000usize, 50usize);
        let x: Vec<f32> = (0..r * c * 2).map(|v| (v % 977) as f32).collect();
        let y = gather_strided(&x, &[r, c], &[2 * c, 2], 1).unwrap();
        for i in 0..r {
            for j in 0..c {
                assert_eq!(y[i * c + j], x[1 + i * 2 * c + 2 * j]);
            }
        }
        let mut d = vec![0.0f32; r * c * 2];
        copy_strided(&mut d, &y, &[r, c], &[2 * c, 2], 1).unwrap();
        assert!((0..r * c * 2).all(|k| d[k] == if k % 2 == 1 { x[k] } else { 0.0 }));
    }
}
