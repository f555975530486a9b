//! The crate's one entry to the `gemm` crate's matrix product: a safe wrapper that checks
//! every index the product touches against the slices, so that no kernel calls the
//! crate's `unsafe` `gemm::gemm` itself (linear, the recurrent layers, Winograd and flash
//! attention all come here).
//!
//! `gemm::gemm` takes raw pointers and strides and trusts them; an operand one row short
//! is an out-of-bounds read, a destination whose rows overlap is a data race between its
//! threads. Here the operands are slices with (row, column) strides ([`Operand`]), the
//! destination a mutable slice with unit column stride, and before the call the last
//! element each operand can reach, (rows - 1) * row_stride + (cols - 1) * col_stride,
//! must lie inside its slice (with checked arithmetic), and destination rows must not
//! overlap. These are a handful of integer operations per call, nothing beside a GEMM.
//! Mutable and shared borrows already rule out the destination aliasing an operand.
//!
//! A failed check is a bug in the calling kernel (the kernels validate the caller's
//! shapes before any product), so it panics with the dimensions rather than returning a
//! `FerroError`: the panic is where the out-of-bounds access would have been.
//!
//! ```
//! use _core::safe_gemm::{gemm, threads_for, Operand};
//! // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]]^T: b is read transposed through its strides
//! let (a, b) = ([1.0f64, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
//! let mut c = [0.0; 4];
//! gemm(2, 2, 2, &mut c, 2, false, Operand::rows(&a, 2), Operand::transposed(&b, 2), threads_for(2, 2, 2));
//! assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
//! // an operand too short for its dimensions panics instead of reading past it
//! let short = std::panic::catch_unwind(|| {
//!     let mut c = [0.0; 4];
//!     gemm(2, 2, 2, &mut c, 2, false, Operand::rows(&a[..3], 2), Operand::rows(&b, 2), threads_for(2, 2, 2));
//! });
//! assert!(short.is_err());
//! ```

use crate::real::Real;
use gemm::Parallelism;
use std::mem::MaybeUninit;

/// A matrix read from a slice through strides: element (i, j) is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> Operand<'a, T> {
    /// Rows `row_stride` elements apart, columns adjacent (row-major).
    pub fn rows(data: &'a [T], row_stride: usize) -> Self {
        Operand { data, row_stride, col_stride: 1 }
    }

    /// The transpose of a row-major matrix whose rows are `stored_row_stride` apart:
    /// element (i, j) is `data[j * stored_row_stride + i]`.
    pub fn transposed(data: &'a [T], stored_row_stride: usize) -> Self {
        Operand { data, row_stride: 1, col_stride: stored_row_stride }
    }

    pub fn strided(data: &'a [T], row_stride: usize, col_stride: usize) -> Self {
        Operand { data, row_stride, col_stride }
    }
}

/// The parallelism of the crate's threaded products: none below 2^18 multiply-adds
/// (about 64^3), where starting threads costs more than they save; all of rayon's
/// threads above.
pub fn threads_for(m: usize, n: usize, k: usize) -> Parallelism {
    if (m as u128) * (n as u128) * (k as u128) < 1 << 18 {
        Parallelism::None
    } else {
        Parallelism::Rayon(rayon::current_num_threads())
    }
}

/// The largest index a (rows x cols) matrix with these strides reaches (rows, cols >= 1),
/// None when it overflows.
fn last_index(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    (rows - 1).checked_mul(row_stride)?.checked_add((cols - 1).checked_mul(col_stride)?)
}

/// Panics unless every element of the (rows x cols) operand lies inside its slice and the
/// strides fit the `isize` the `gemm` crate takes.
fn check_operand<T>(name: &str, op: &Operand<'_, T>, rows: usize, cols: usize) {
    let fits = matches!(last_index(rows, cols, op.row_stride, op.col_stride), Some(i) if i < op.data.len());
    let strides_fit = op.row_stride <= isize::MAX as usize && op.col_stride <= isize::MAX as usize;
    assert!(
        fits && strides_fit,
        "gemm: {name} ({rows} x {cols}, row stride {}, column stride {}) does not fit in its {} elements",
        op.row_stride,
        op.col_stride,
        op.data.len()
    );
}

/// Panics unless the (m x n) destination with rows `row_stride` apart lies inside `len`
/// elements and its rows do not overlap (which would make two threads write one element).
fn check_destination(m: usize, n: usize, row_stride: usize, len: usize) {
    let fits = matches!(last_index(m, n, row_stride, 1), Some(i) if i < len);
    let disjoint_rows = m == 1 || row_stride >= n;
    assert!(
        fits && disjoint_rows && row_stride <= isize::MAX as usize,
        "gemm: the destination ({m} x {n}, row stride {row_stride}) does not fit in its {len} elements or its rows overlap"
    );
}

/// The one `gemm::gemm` call: dst := (read_dst ? dst : 0) + a @ b, dst with unit column
/// stride, on checked arguments (m, n, k >= 1).
///
/// # Safety
/// `dst` must be valid for writes (and, with `read_dst`, reads) of every element
/// (i, j) at `i * dst_row_stride + j` for i < m, j < n, no two of them the same, and
/// must not overlap `a` or `b`; `a` and `b` must hold their (m x k) and (k x n) elements
/// (what `check_operand` and `check_destination` establish).
#[allow(clippy::too_many_arguments)]
unsafe fn checked_call<T: Real>(m: usize, n: usize, k: usize, dst: *mut T, dst_row_stride: usize, read_dst: bool, a: Operand<'_, T>, b: Operand<'_, T>, parallelism: Parallelism) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row_stride as isize,
        read_dst,
        a.data.as_ptr(),
        a.col_stride as isize,
        a.row_stride as isize,
        b.data.as_ptr(),
        b.col_stride as isize,
        b.row_stride as isize,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        parallelism,
    )
}

/// dst (m x n, rows `dst_row_stride` apart, columns adjacent) := (accumulate ? dst : 0) +
/// a (m x k) @ b (k x n). With k = 0 the product is zero: dst is zeroed unless
/// accumulating.
///
/// # Panics
/// When an operand or the destination does not hold the elements its dimensions and
/// strides reach, or the destination's rows overlap.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(m: usize, n: usize, k: usize, dst: &mut [T], dst_row_stride: usize, accumulate: bool, a: Operand<'_, T>, b: Operand<'_, T>, parallelism: Parallelism) {
    if m == 0 || n == 0 {
        return;
    }
    check_destination(m, n, dst_row_stride, dst.len());
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| dst[i * dst_row_stride..i * dst_row_stride + n].iter_mut().for_each(|v| *v = T::ZERO));
        }
        return;
    }
    check_operand("lhs", &a, m, k);
    check_operand("rhs", &b, k, n);
    // SAFETY: checked above: every element of dst, a and b that the product reaches lies
    // inside its slice, dst's rows are disjoint, and dst (a mutable borrow) overlaps
    // neither shared operand.
    unsafe { checked_call(m, n, k, dst.as_mut_ptr(), dst_row_stride, accumulate, a, b, parallelism) }
}

/// [`gemm()`] into memory not yet initialised (a Vec's spare capacity): dst := a @ b, every
/// element of the (m x n) destination written, none read (the `gemm` crate does not read
/// dst when told not to accumulate), so the caller may then treat them as initialised.
///
/// # Panics
/// As [`gemm()`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_uninit<T: Real>(m: usize, n: usize, k: usize, dst: &mut [MaybeUninit<T>], dst_row_stride: usize, a: Operand<'_, T>, b: Operand<'_, T>, parallelism: Parallelism) {
    if m == 0 || n == 0 {
        return;
    }
    check_destination(m, n, dst_row_stride, dst.len());
    if k == 0 {
        (0..m).for_each(|i| dst[i * dst_row_stride..i * dst_row_stride + n].iter_mut().for_each(|v| {
            v.write(T::ZERO);
        }));
        return;
    }
    check_operand("lhs", &a, m, k);
    check_operand("rhs", &b, k, n);
    // SAFETY: as in `gemm`; with read_dst false the uninitialised elements are only
    // written (MaybeUninit<T> has T's layout).
    unsafe { checked_call(m, n, k, dst.as_mut_ptr() as *mut T, dst_row_stride, false, a, b, parallelism) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Operand<f64>, b: &Operand<f64>, m: usize, n: usize, k: usize) -> Vec<f64> {
        let at = |op: &Operand<f64>, i: usize, j: usize| op.data[i * op.row_stride + j * op.col_stride];
        (0..m * n).map(|ij| (0..k).map(|p| at(a, ij / n, p) * at(b, p, ij % n)).sum()).collect()
    }

    #[test]
    fn strided_products_match_the_definition() {
        let data: Vec<f64> = (0..200).map(|i| ((i * 7 % 13) as f64) - 6.0).collect();
        let (m, n, k) = (5, 4, 6);
        for (a, b) in [
            (Operand::rows(&data, k), Operand::rows(&data[50..], n)),
            (Operand::transposed(&data, m), Operand::transposed(&data[3..], k)),
            (Operand::strided(&data, 13, 2), Operand::strided(&data[1..], 3, 11)),
        ] {
            let mut c = vec![1.0; m * n];
            gemm(m, n, k, &mut c, n, true, a, b, threads_for(m, n, k));
            let e = naive(&a, &b, m, n, k);
            assert!(c.iter().zip(&e).all(|(c, e)| *c == e + 1.0));
            let mut u = vec![MaybeUninit::uninit(); m * n];
            gemm_uninit(m, n, k, &mut u, n, a, b, Parallelism::None);
            // SAFETY: gemm_uninit wrote every element
            assert!(u.iter().zip(&e).all(|(u, e)| unsafe { u.assume_init() } == *e));
        }
        // a destination with padded rows: the padding is left alone
        let mut c = vec![9.0; 2 * 5];
        gemm(2, 3, 0, &mut c, 5, false, Operand::rows(&[], 0), Operand::rows(&[], 3), Parallelism::None);
        assert_eq!(c, [0.0, 0.0, 0.0, 9.0, 9.0, 0.0, 0.0, 0.0, 9.0, 9.0]);
    }

    #[test]
    fn out_of_bounds_arguments_panic() {
        let data = vec![1.0f32; 12];
        let calls: [fn(&[f32]); 4] = [
            |d| gemm(3, 4, 1, &mut [0.0; 11], 4, false, Operand::rows(d, 1), Operand::rows(d, 4), Parallelism::None),
            |d| gemm(3, 4, 5, &mut [0.0; 12], 4, false, Operand::rows(d, 5), Operand::rows(d, 4), Parallelism::None),
            |d| gemm(2, 4, 1, &mut [0.0; 12], 3, false, Operand::rows(d, 1), Operand::rows(d, 4), Parallelism::None),
            |d| gemm(2, 2, 2, &mut [0.0; 4], 2, false, Operand::strided(d, usize::MAX, 1), Operand::rows(d, 2), Parallelism::None),
        ];
        for (i, call) in calls.iter().enumerate() {
            assert!(std::panic::catch_unwind(|| call(&data)).is_err(), "call {i} must panic");
        }
    }
}
