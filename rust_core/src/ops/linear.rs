//! Matrix products on the `gemm` crate (a tuned, multithreaded GEMM): matmul (2-D or
//! batched 3-D, with optional transposes read through strides, never copied) and the
//! Linear layer's forward (bias pre-filled, GEMM accumulates onto it) and backward.

use super::reduce::column_sums;
use crate::alloc::{checked_numel, zeroed};
use crate::error::Result;
use crate::real::Real;
use crate::safe_gemm::{self, Operand};
use crate::shape_err;

/// A row-major matrix, possibly read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    /// rows and cols as stored
    pub rows: usize,
    pub cols: usize,
    /// read as its transpose
    pub trans: bool,
}

impl<'a, T> Mat<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize, trans: bool) -> Self {
        Mat { data, rows, cols, trans }
    }
    /// (rows, cols) of the matrix as read
    fn dims(&self) -> (usize, usize) {
        if self.trans {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// The matrix as read, as a GEMM operand (a transpose is read through its strides)
    fn operand(&self) -> Operand<'a, T> {
        if self.trans {
            Operand::transposed(self.data, self.cols)
        } else {
            Operand::rows(self.data, self.cols)
        }
    }
    /// element (i, j) of the matrix as read
    #[inline]
    fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        if self.trans {
            self.data[j * self.cols + i]
        } else {
            self.data[i * self.cols + j]
        }
    }
}

/// max |v| over `v` in f64, NaN if `v` holds an inf or NaN: one pass of 16 independent
/// lanes (max and a sum of v * 0, which is NaN exactly for non-finite v) that LLVM
/// turns into SIMD registers.
pub(crate) fn amax<T: Real>(v: &[T]) -> f64 {
    const L: usize = 16;
    let (mut mx, mut bad) = ([T::ZERO; L], [T::ZERO; L]);
    let chunks = v.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            let a = c[k].abs_();
            mx[k] = if a > mx[k] { a } else { mx[k] };
            bad[k] += c[k] * T::ZERO;
        }
    }
    let mut m = 0f64;
    let mut b = 0f64;
    for k in 0..L {
        m = m.max(mx[k].to_f64());
        b += bad[k].to_f64();
    }
    for &x in rest {
        m = m.max(x.abs_().to_f64());
        b += (x * T::ZERO).to_f64();
    }
    if b.is_nan() { f64::NAN } else { m }
}

/// Whether a product of k terms with factors bounded by `amax_a` and `amax_b` can hold a
/// spurious NaN (an infinite or overflowing term; NaN bounds count as yes): callers that
/// know cheap bounds skip `exact_nonfinite`' scan of the output when it cannot.
pub(crate) fn may_overflow<T: Real>(amax_a: f64, amax_b: f64, k: usize) -> bool {
    let max = if std::mem::size_of::<T>() == 4 { f32::MAX as f64 } else { f64::MAX };
    !(amax_a * amax_b * k as f64 <= max)
}

/// Recomputes, in f64 with exact products, every non-finite value (NaN or ±inf) of dst
/// (m x n) = init + a @ b whose row of `a` and column of `b` hold no NaN. Why: a product
/// of finite f32 values can overflow (1e10 * -1e30), and what the sum then becomes depends
/// on the GEMM's accumulation order and use of FMA: fma(1e10, -1e30, inf) is inf, an
/// accumulator that reached -inf first gives inf - inf = NaN, and a row whose exact sum
/// is -inf can come out +inf when a large positive term overflowed first. OpenBLAS (numpy)
/// and the gemm crate order differently, and each differs by shape; in f64 no product of
/// f32 values overflows, so the f64 sum rounded to f32 is the one answer independent of
/// order (finite, or ±inf with the right sign, or NaN for genuine +inf and -inf terms or
/// 0 * inf). The numpy backend applies the same rule (`backends/_exact.py`). Cost: one
/// vectorized scan of dst; the NaN tables and f64 sums only when dst holds a non-finite.
pub(crate) fn exact_nonfinite<T: Real>(dst: &mut [T], a: Mat<T>, b: Mat<T>, init: impl Fn(usize, usize) -> T) {
    let (m, k) = a.dims();
    let (_, n) = b.dims();
    // v - v is NaN exactly for NaN and ±inf
    #[allow(clippy::eq_op)]
    let any_bad = dst.iter().fold(false, |acc, &v| acc | ((v - v) != (v - v)));
    if !any_bad || k == 0 {
        return;
    }
    #[allow(clippy::eq_op)]
    let a_nan: Vec<bool> = (0..m).map(|i| (0..k).any(|p| { let v = a.at(i, p); v != v })).collect();
    #[allow(clippy::eq_op)]
    let b_nan: Vec<bool> = (0..n).map(|j| (0..k).any(|p| { let v = b.at(p, j); v != v })).collect();
    for i in 0..m {
        if a_nan[i] {
            continue;
        }
        for j in 0..n {
            let d = &mut dst[i * n + j];
            #[allow(clippy::eq_op)]
            let finite = (*d - *d) == (*d - *d);
            if finite || b_nan[j] {
                continue;
            }
            let mut s = init(i, j).to_f64();
            for p in 0..k {
                // an f32 product is exact in f64 (and f64 * f64 overflows only past 1e308)
                s += a.at(i, p).to_f64() * b.at(p, j).to_f64();
            }
            *d = T::c(s);
        }
    }
}

/// dst (m x n, row-major) := (accumulate ? dst : 0) + a @ b
pub(crate) fn gemm_into<T: Real>(dst: &mut [T], a: Mat<T>, b: Mat<T>, accumulate: bool) {
    let (m, k) = a.dims();
    let (_, n) = b.dims();
    debug_assert_eq!(dst.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = T::ZERO);
        }
        return;
    }
    safe_gemm::gemm(m, n, k, dst, n, accumulate, a.operand(), b.operand(), safe_gemm::threads_for(m, n, k))
}

/// op(a) @ op(b) for `batch` pairs of matrices stored one after the other
/// (a: batch x rows_a x cols_a, b likewise). Returns (values, m, n).
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    a: &[T],
    a_dims: (usize, usize),
    b: &[T],
    b_dims: (usize, usize),
    batch: usize,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<(Vec<T>, usize, usize)> {
    let (ra, ca) = a_dims;
    let (rb, cb) = b_dims;
    if a.len() != batch * ra * ca || b.len() != batch * rb * cb {
        return shape_err!("a, b: element counts do not match the given dimensions");
    }
    let (m, ka) = if transpose_a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if transpose_b { (cb, rb) } else { (rb, cb) };
    if ka != kb {
        return shape_err!("b: inner dimensions differ: a gives {ka}, b gives {kb}");
    }
    let mut out = zeroed::<T>(checked_numel(&[batch, m, n], "matmul")?, "matmul")?;
    for i in 0..batch {
        let am = Mat::new(&a[i * ra * ca..(i + 1) * ra * ca], ra, ca, transpose_a);
        let bm = Mat::new(&b[i * rb * cb..(i + 1) * rb * cb], rb, cb, transpose_b);
        gemm_into(&mut out[i * m * n..(i + 1) * m * n], am, bm, false);
        exact_nonfinite(&mut out[i * m * n..(i + 1) * m * n], am, bm, |_, _| T::ZERO);
    }
    Ok((out, m, n))
}

fn check_linear<T>(x: &[T], n: usize, fin: usize, w: &[T], fout: usize) -> Result<()> {
    if x.len() != n * fin {
        return shape_err!("input: {} elements do not fill ({n}, {fin})", x.len());
    }
    if w.len() != fout * fin {
        return shape_err!("weight: expected shape ({fout}, {fin}), got {} elements", w.len());
    }
    Ok(())
}

/// y = x @ w.T + bias; x: (n, fin), w: (fout, fin), bias: (fout,).
pub fn linear_forward<T: Real>(
    x: &[T],
    n: usize,
    fin: usize,
    w: &[T],
    fout: usize,
    bias: Option<&[T]>,
) -> Result<Vec<T>> {
    check_linear(x, n, fin, w, fout)?;
    let mut y = zeroed::<T>(checked_numel(&[n, fout], "linear")?, "linear")?;
    if let Some(b) = bias {
        if b.len() != fout {
            return shape_err!("bias: expected shape ({fout},), got {} elements", b.len());
        }
        // pre-fill each row with the bias and let GEMM accumulate onto it: no extra pass
        for row in y.chunks_mut(fout.max(1)) {
            row.copy_from_slice(b);
        }
    }
    let (xm, wm) = (Mat::new(x, n, fin, false), Mat::new(w, fout, fin, true));
    gemm_into(&mut y, xm, wm, bias.is_some());
    exact_nonfinite(&mut y, xm, wm, |_, j| bias.map_or(T::ZERO, |b| b[j]));
    Ok(y)
}

/// (gx, gw, gb): gy @ w, gy.T @ x, column sums of gy.
#[allow(clippy::type_complexity)]
pub fn linear_backward<T: Real>(
    x: &[T],
    n: usize,
    fin: usize,
    w: &[T],
    fout: usize,
    gy: &[T],
    has_bias: bool,
) -> Result<(Vec<T>, Vec<T>, Option<Vec<T>>)> {
    check_linear(x, n, fin, w, fout)?;
    if gy.len() != n * fout {
        return shape_err!("gy: expected shape ({n}, {fout}), got {} elements", gy.len());
    }
    let mut gx = zeroed::<T>(n * fin, "linear backward")?;
    let (gym, wm) = (Mat::new(gy, n, fout, false), Mat::new(w, fout, fin, false));
    gemm_into(&mut gx, gym, wm, false);
    exact_nonfinite(&mut gx, gym, wm, |_, _| T::ZERO);
    let mut gw = zeroed::<T>(fout * fin, "linear backward")?;
    let (gyt, xm) = (Mat::new(gy, n, fout, true), Mat::new(x, n, fin, false));
    gemm_into(&mut gw, gyt, xm, false);
    exact_nonfinite(&mut gw, gyt, xm, |_, _| T::ZERO);
    let gb = if has_bias { Some(column_sums(gy, n, fout)) } else { None };
    Ok((gx, gw, gb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }

    #[test]
    fn matmul_with_transposes_matches_naive() {
        let (m, k, n) = (37, 65, 29);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 13 % 7) as f64) - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64) - 5.0).collect();
        let e = naive(&a, &b, m, k, n);
        let (c, _, _) = matmul(&a, (m, k), &b, (k, n), 1, false, false).unwrap();
        assert_eq!(c, e);
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        let (c2, mm, nn) = matmul(&at, (k, m), &bt, (n, k), 1, true, true).unwrap();
        assert_eq!((mm, nn), (m, n));
        assert_eq!(c2, e);
        assert!(matmul(&a, (m, k), &a, (m, k), 1, false, false).is_err());
    }

    #[test]
    fn overflowing_products_give_the_exact_sum_not_nan() {
        // 1e10 * -1e30 overflows f32; the exact sum with the +inf term is +inf in any order
        let x = [1.0f32, 1e10, 1.0, 1e10, 1.0, 0.0];
        let w = [f32::INFINITY, -1e30, -1e30, -1e30, f32::INFINITY, 0.0];
        let y = linear_forward(&x, 2, 3, &w, 2, None).unwrap();
        assert_eq!(y[0], f32::INFINITY, "{y:?}");
        // both products overflow f32; their exact sum -1e40 is -inf, whatever came first
        let y = linear_forward(&[1e20f32, 1e20], 1, 2, &[1e20, -2e20], 1, None).unwrap();
        assert_eq!(y[0], f32::NEG_INFINITY);
        // genuine NaN stays: +inf and -inf terms, and a NaN input
        let w2 = [f32::INFINITY, f32::NEG_INFINITY, 0.0];
        assert!(linear_forward(&[1.0f32, 1.0, 0.0], 1, 3, &w2, 1, None).unwrap()[0].is_nan());
        assert!(linear_forward(&[f32::NAN, 1.0, 0.0], 1, 3, &[1.0, 1.0, 1.0], 1, None).unwrap()[0].is_nan());
    }

    #[test]
    fn linear_backward_matches_its_definition() {
        let (n, fin, fout) = (5, 4, 3);
        let x: Vec<f64> = (0..n * fin).map(|i| i as f64 * 0.5).collect();
        let w: Vec<f64> = (0..fout * fin).map(|i| 1.0 - i as f64 * 0.25).collect();
        let b = [1.0, 2.0, 3.0];
        let y = linear_forward(&x, n, fin, &w, fout, Some(&b)).unwrap();
        let e = naive(&x, &transpose(&w, fout, fin), n, fin, fout);
        for i in 0..n * fout {
            assert_eq!(y[i], e[i] + b[i % fout]);
        }
        let gy: Vec<f64> = (0..n * fout).map(|i| (i % 4) as f64).collect();
        let (gx, gw, gb) = linear_backward(&x, n, fin, &w, fout, &gy, true).unwrap();
        assert_eq!(gx, naive(&gy, &w, n, fout, fin));
        assert_eq!(gw, naive(&transpose(&gy, n, fout), &x, fout, n, fin));
        assert_eq!(gb.unwrap(), column_sums(&gy, n, fout));
    }
}
