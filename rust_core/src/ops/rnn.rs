//! Recurrent layers: one LSTM or GRU layer in one direction over a time-major sequence
//! (x: T x N x I), forward and backward through time.
//!
//! The input projection of the whole sequence is one GEMM (`gemm` crate, biases pre-filled
//! and accumulated onto); each step is one GEMM of the state with all gates of `w_hh`
//! fused, then one fused pointwise pass (gate activations and state update). Backward is
//! the same shape: one fused pointwise pass and one GEMM per step, then three GEMMs for
//! the input gradient and both weight gradients over the whole sequence.
//!
//! The LSTM splits each step over the threads by hidden unit (`unit_blocks`): a task owns
//! a block of units, computes all four gates' pre-activations of its units with a
//! single-threaded GEMM (for f32 on AVX-512 our own kernel over weights packed once per
//! call, `avx512_step`, with the input projection fused in; else the `gemm` crate) and
//! runs their pointwise pass, so a step is one fork-join and the pointwise work is
//! parallel as well (backward: the task's gate gradients times the
//! matching rows of `w_hh` give a split-K share of the state gradient, summed by the
//! next step). The GRU keeps the whole-step GEMM (threaded inside the `gemm` crate).
//!
//! Gate order is PyTorch's (LSTM i, f, g, o; GRU r, z, n with b_hn inside the reset
//! product), so PyTorch weights load as they are.

use super::activation::sigmoid;
use super::map::{detect_isa, wide, Isa};
use super::reduce::column_sums;
use super::linear::{exact_nonfinite, Mat};
use crate::alloc::{self, checked_numel};
use crate::error::Result;
use crate::real::Real;
use crate::safe_gemm::{self, Operand};
use crate::shape_err;
use gemm::Parallelism;
use rayon::prelude::*;
use std::any::TypeId;

/// Sizes of one layer: sequence length, batch, input and hidden size.
#[derive(Clone, Copy, Debug)]
pub struct RnnDims {
    pub t: usize,
    pub n: usize,
    pub i: usize,
    pub h: usize,
}

/// dst (m x n) := (accumulate ? dst : 0) + op(a) @ op(b), a stored (m x k) or, transposed,
/// (k x m); b stored (k x n) or, transposed, (n x k). All row-major and contiguous.
#[allow(clippy::too_many_arguments)]
fn mm<T: Real>(dst: &mut [T], a: &[T], ta: bool, b: &[T], tb: bool, m: usize, n: usize, k: usize,
               accumulate: bool) {
    debug_assert!(dst.len() == m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = T::ZERO);
        }
        return;
    }
    let a = if ta { Operand::transposed(a, m) } else { Operand::rows(a, k) };
    let b = if tb { Operand::transposed(b, k) } else { Operand::rows(b, n) };
    safe_gemm::gemm(m, n, k, dst, n, accumulate, a, b, safe_gemm::threads_for(m, n, k));
}

fn check(name: &str, got: usize, want: usize, shape: &str) -> Result<()> {
    if got != want {
        return shape_err!("{name}: expected {want} elements {shape}, got {got}");
    }
    Ok(())
}

fn check_layer<T>(gates: usize, x: &[T], states: &[(&str, &[T])], w_ih: &[T], w_hh: &[T],
                  bias: Option<(&[T], &[T])>, d: RnnDims) -> Result<()> {
    let RnnDims { t, n, i, h } = d;
    if t == 0 || n == 0 || i == 0 || h == 0 {
        return shape_err!("x: expected a non-empty sequence, got T={t}, N={n}, I={i}, H={h}");
    }
    check("x", x.len(), t * n * i, &format!("(T={t}, N={n}, I={i})"))?;
    for (name, s) in states {
        check(name, s.len(), n * h, &format!("(N={n}, H={h})"))?;
    }
    check("w_ih", w_ih.len(), gates * h * i, &format!("({gates}*H, I) = ({}, {i})", gates * h))?;
    check("w_hh", w_hh.len(), gates * h * h, &format!("({gates}*H, H) = ({}, {h})", gates * h))?;
    if let Some((bi, bh)) = bias {
        check("b_ih", bi.len(), gates * h, "(gates*H,)")?;
        check("b_hh", bh.len(), gates * h, "(gates*H,)")?;
    }
    Ok(())
}

/// w (rows x cols, row-major) transposed: the per-step GEMMs read w_hh^T with unit column
/// stride, the layout the GEMM packs fastest.
fn transposed<T: Real>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    // 32 x 32 tiles: a plain loop strides 4 KiB for 1024 rows (cache-set and TLB thrash)
    const B: usize = 32;
    let mut t = crate::alloc::float_zeros_or_unwind::<T>(rows * cols, "a kernel buffer");
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for c in c0..(c0 + B).min(cols) {
                for r in r0..(r0 + B).min(rows) {
                    t[c * rows + r] = w[r * cols + c];
                }
            }
        }
    }
    t
}

/// Steps in processing order.
fn steps(t: usize, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
    if reverse {
        Box::new((0..t).rev())
    } else {
        Box::new(0..t)
    }
}

/// (T, N, H): the state each step started from (h0 for the first step processed).
fn prev_states<T: Real>(y: &[T], h0: &[T], d: RnnDims, reverse: bool) -> Vec<T> {
    let step = d.n * d.h;
    let mut out = Vec::with_capacity(d.t * step);
    if reverse {
        out.extend_from_slice(&y[step..]);
        out.extend_from_slice(h0);
    } else {
        out.extend_from_slice(h0);
        out.extend_from_slice(&y[..(d.t - 1) * step]);
    }
    out
}

/// x (T*N, I) @ w_ih^T (+ bias rows): the whole sequence's input projection.
fn input_projection<T: Real>(x: &[T], w_ih: &[T], bias: Option<Vec<T>>, d: RnnDims, g: usize) -> Result<Vec<T>> {
    let has_bias = bias.is_some();
    // (T*N, 4H): the sequence and the hidden size come from different arguments, so this
    // can be far larger than any of them: checked and allocated fallibly
    let n_out = checked_numel(&[d.t, d.n, g], "a recurrent layer's input projection")?;
    // overflowing products (weights ~1e30) summed exactly afterwards, as linear does
    let exact = |xp: &mut Vec<T>, bias: Option<&[T]>| {
        let (xm, wm) = (Mat::new(x, d.t * d.n, d.i, false), Mat::new(w_ih, g, d.i, true));
        exact_nonfinite(xp, xm, wm, |_, j| bias.map_or(T::ZERO, |b| b[j]));
    };
    let bias_row = bias.clone();
    let mut xp = match bias {
        Some(b) => {
            let mut v = alloc::with_capacity(n_out, "a recurrent layer's input projection")?;
            for _ in 0..d.t * d.n {
                v.extend_from_slice(&b);
            }
            v
        }
        None => {
            // the GEMM writes every element without reading dst: no zero-fill first
            let (m, k) = (d.t * d.n, d.i);
            let mut v: Vec<T> = alloc::with_capacity(n_out, "a recurrent layer's input projection")?;
            // x is (m, k) and w_ih (g, k) row-major, read as its transpose
            let (xs, ws) = (Operand::rows(x, k), Operand::transposed(w_ih, k));
            safe_gemm::gemm_uninit(m, g, k, &mut v.spare_capacity_mut()[..m * g], g, xs, ws, safe_gemm::threads_for(m, g, k));
            // SAFETY: gemm_uninit wrote every one of the first m*g elements
            unsafe { v.set_len(m * g) };
            exact(&mut v, None);
            return Ok(v);
        }
    };
    mm(&mut xp, x, false, w_ih, true, d.t * d.n, g, d.i, has_bias);
    exact(&mut xp, bias_row.as_deref());
    Ok(xp)
}

/// The results of a layer's forward: outputs (T, N, H), final states (N, H) and what
/// backward needs.
pub struct LstmForward<T> {
    pub y: Vec<T>,
    pub h_n: Vec<T>,
    pub c_n: Vec<T>,
    /// (T, N, 4H): activated gates i, f, g, o; empty without keep_for_backward
    pub gates: Vec<T>,
    /// (T, N, H): cell states; empty without keep_for_backward
    pub cells: Vec<T>,
}

/// A raw pointer that may cross threads: the step loops below hand each task its own
/// column range of shared (T, N, *) outputs, written through it; the ranges are disjoint.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: only used for writes to disjoint ranges (see each use).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the Send wrapper, not the raw field).
    fn at(&self, offset: usize) -> *mut T {
        // SAFETY: callers stay inside the allocation the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

/// The hidden units split into column blocks, one rayon task each per step: [j0, j1)
/// ranges, widths a multiple of 16 (AVX-512 lanes). `k` is the depth of the step's GEMM
/// (H, or I + H with the input projection fused in). One block when the step is too small
/// for a fork-join to pay (~2^18 multiply-adds, mm's threshold) or there is one thread.
fn unit_blocks(n: usize, h: usize, gates: usize, k: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let work = (n as u128) * (h as u128) * (gates as u128) * (k as u128);
    let parts = if work < 1 << 18 { 1 } else { threads.min(h.div_ceil(16)).max(1) };
    let width = h.div_ceil(parts).div_ceil(16) * 16;
    (0..h).step_by(width.max(1)).map(|j0| (j0, (j0 + width).min(h))).collect()
}

/// Weight matrices (gates*H, k_m) regrouped for unit block [j0, j1): the (sum k_m,
/// gates*bw) matrix whose columns are, gate after gate, rows j0..j1 of that gate's block
/// of each matrix, the matrices' parts stacked (so one GEMM of the matching concatenated
/// operand gives the block's pre-activations of every gate).
fn block_weights<T: Real>(mats: &[(&[T], usize)], h: usize, gates: usize, j0: usize, j1: usize) -> Vec<T> {
    // gathered straight from the weights in 16 x 16 tiles (a row-by-row walk would stride
    // k elements per read)
    const B: usize = 16;
    let depth: usize = mats.iter().map(|&(_, k)| k).sum();
    let (bw, cols) = (j1 - j0, gates * (j1 - j0));
    let mut out = crate::alloc::float_zeros_or_unwind::<T>(depth * cols, "a kernel buffer");
    let mut row0 = 0;
    for &(w, k) in mats {
        for q in 0..gates {
            for u0 in (0..bw).step_by(B) {
                for k0 in (0..k).step_by(B) {
                    for u in u0..(u0 + B).min(bw) {
                        let src = &w[(q * h + j0 + u) * k..][..k];
                        for kk in k0..(k0 + B).min(k) {
                            out[(row0 + kk) * cols + q * bw + u] = src[kk];
                        }
                    }
                }
            }
        }
        row0 += k;
    }
    out
}

/// `v` as f32 slices when T is f32.
fn as_f32<T: Real>(v: &[T]) -> Option<&[f32]> {
    // SAFETY: T and f32 are the same type here
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) })
}

fn as_f32_mut<T: Real>(v: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T and f32 are the same type here
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) })
}

/// A unit block's weights of the LSTM step GEMM, laid out for the kernel that runs it.
enum StepWeights<T> {
    /// (depth, 4*bw) row-major, for the `gemm` crate (`block_weights`)
    Plain(Vec<T>),
    /// f32 strips for `avx512_step::gemm_block` (made only for T = f32 on AVX-512)
    #[cfg(target_arch = "x86_64")]
    Packed(Vec<avx512_step::Line>),
}

impl<T: Real> StepWeights<T> {
    fn new(mats: &[(&[T], usize)], h: usize, j0: usize, j1: usize, isa: Isa) -> Self {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            let f32_mats: Option<Vec<(&[f32], usize)>> = mats.iter().map(|&(w, k)| as_f32(w).map(|w| (w, k))).collect();
            if let Some(m) = f32_mats {
                return StepWeights::Packed(avx512_step::pack(&m, h, j0, j1));
            }
        }
        let _ = isa;
        StepWeights::Plain(block_weights(mats, h, 4, j0, j1))
    }

    /// a (n x 4*bw) := [x_rows, h_rows] @ these weights, on the calling thread: x_rows
    /// (n x i) when the input projection is fused in (then the weights' depth is i + h),
    /// h_rows (n x h). The gemm crate's path joins the operands in `lhs` first.
    #[allow(clippy::too_many_arguments)]
    fn gemm(&self, a: &mut [T], x_rows: Option<&[T]>, h_rows: &[T], lhs: &mut Vec<T>, n: usize, bw: usize, i: usize,
            h: usize) {
        match self {
            StepWeights::Plain(w) => match x_rows {
                Some(xr) => {
                    lhs.clear();
                    for r in 0..n {
                        lhs.extend_from_slice(&xr[r * i..(r + 1) * i]);
                        lhs.extend_from_slice(&h_rows[r * h..(r + 1) * h]);
                    }
                    mm_serial(a, lhs, w, n, 4 * bw, i + h)
                }
                None => mm_serial(a, h_rows, w, n, 4 * bw, h),
            },
            #[cfg(target_arch = "x86_64")]
            StepWeights::Packed(p) => {
                let segs = match x_rows {
                    Some(xr) => [(as_f32(xr), i), (as_f32(h_rows), h)],
                    None => [(as_f32(h_rows), h), (Some(&[][..]), 0)],
                };
                if let (Some(a), [(Some(s0), k0), (Some(s1), k1)]) = (as_f32_mut(a), segs) {
                    // SAFETY: Packed is made only when the CPU has AVX-512 (and T is f32,
                    // so the casts succeed); the sizes are the block's, as packed.
                    unsafe { avx512_step::gemm_block(a, [(s0, k0), (s1, k1)], p, n, bw) }
                }
            }
        }
    }
}

/// dst (m x n) := a (m x k) @ b (k x n), row-major, on the calling thread.
fn mm_serial<T: Real>(dst: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize) {
    debug_assert!(dst.len() == m * n && a.len() >= m * k && b.len() >= k * n && k > 0);
    safe_gemm::gemm(m, n, k, dst, n, false, Operand::rows(a, k), Operand::rows(b, n), Parallelism::None);
}

/// The LSTM step GEMM for f32 on AVX-512: a block's weights are packed once per call in
/// strips of 16 units (the four gates' rows of those units side by side, 64 columns), and
/// a register tile of 4 batch rows x 64 columns (16 accumulators) runs down the whole
/// depth with 4 vector loads and 4 broadcasts per 16 FMAs, reading the operand rows (x_t
/// and h_prev) where they lie. Against the `gemm` crate on the step's shape (N = 32 rows,
/// a few hundred columns) this drops the per-call repacking of the operand and the
/// crate's 64 x 6 tile, whose 2-column tail at N = 32 runs at a fraction of the FMA rate.
#[cfg(target_arch = "x86_64")]
mod avx512_step {
    use std::arch::x86_64::*;

    /// Units per strip: a strip's four gates fill four 16-lane vectors.
    pub(super) const STRIP: usize = 16;

    /// One 64-byte line of a packed panel (the Vec's alignment keeps every vector load
    /// within one cache line).
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    pub(super) struct Line([f32; 16]);

    /// Block [j0, j1)'s weights for `gemm_block`: per strip of 16 units (the last one
    /// zero-padded), `depth` rows of 64 (row k: gate q's 16 units at q*16), the
    /// matrices (gates*H, k_m) stacked along the depth.
    pub(super) fn pack(mats: &[(&[f32], usize)], h: usize, j0: usize, j1: usize) -> Vec<Line> {
        let bw = j1 - j0;
        let depth: usize = mats.iter().map(|m| m.1).sum();
        let mut lines = vec![Line([0.0; 16]); bw.div_ceil(STRIP) * depth * 4];
        for (st, panel) in lines.chunks_mut(depth * 4).enumerate() {
            let (u0, sw) = (st * STRIP, STRIP.min(bw - st * STRIP));
            let mut row0 = 0;
            for &(w, k) in mats {
                for q in 0..4 {
                    // the strip's 16 rows of gate q, each k long
                    let rows = &w[(q * h + j0 + u0) * k..(q * h + j0 + u0 + sw) * k];
                    // SAFETY: the CPU has AVX-512F (Packed weights are only made then);
                    // `rows` holds sw rows of k.
                    unsafe { gather_columns(rows, k, sw, &mut panel[row0 * 4 + q..], 4) };
                }
                row0 += k;
            }
        }
        lines
    }

    /// out[kk * stride].0[uu] = rows[uu * k + kk] for kk < k, uu < sw (lanes from sw on
    /// zero): 16 x 16 tiles loaded row by row (masked at the end of k) and transposed in
    /// registers, ~4x faster than a gather per line.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn gather_columns(rows: &[f32], k: usize, sw: usize, out: &mut [Line], stride: usize) {
        debug_assert!(rows.len() == sw * k && out.len() > (k - 1) * stride && sw <= STRIP);
        let (src, dst) = (rows.as_ptr(), out.as_mut_ptr());
        for k0 in (0..k).step_by(16) {
            let kn = 16.min(k - k0);
            let kmask: __mmask16 = if kn == 16 { 0xFFFF } else { (1u16 << kn) - 1 };
            let mut r = [_mm512_setzero_ps(); 16];
            for (uu, v) in r.iter_mut().enumerate().take(sw) {
                *v = _mm512_maskz_loadu_ps(kmask, src.add(uu * k + k0));
            }
            transpose16(&mut r);
            for (j, v) in r.iter().enumerate().take(kn) {
                _mm512_store_ps(dst.add((k0 + j) * stride) as *mut f32, *v);
            }
        }
    }

    /// r[j] := column j of the 16 x 16 matrix whose row i is r[i] (pairs, then quads of
    /// 32-bit lanes, then 128- and 256-bit halves swapped across).
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    #[inline]
    unsafe fn transpose16(r: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            r[4 * i] = _mm512_shuffle_ps::<0x44>(t[4 * i], t[4 * i + 2]);
            r[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * i], t[4 * i + 2]);
            r[4 * i + 2] = _mm512_shuffle_ps::<0x44>(t[4 * i + 1], t[4 * i + 3]);
            r[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * i + 1], t[4 * i + 3]);
        }
        for i in 0..2 {
            for j in 0..4 {
                t[8 * i + j] = _mm512_shuffle_f32x4::<0x88>(r[8 * i + j], r[8 * i + 4 + j]);
                t[8 * i + 4 + j] = _mm512_shuffle_f32x4::<0xDD>(r[8 * i + j], r[8 * i + 4 + j]);
            }
        }
        for j in 0..8 {
            r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
            r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
        }
    }

    /// a (n x 4*bw; row r holds gate q's units at q*bw..) := [seg0, seg1] @ the block
    /// weights `pack` made, where segment (rows, k) is an (n x k) row-major operand (the
    /// second may be empty, k = 0) and the packed depth is the sum of the k.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `a` has n*4*bw elements, segment (rows, k) n*k, `panels` is
    /// `pack`'s result for this bw and depth.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn gemm_block(a: &mut [f32], segs: [(&[f32], usize); 2], panels: &[Line], n: usize, bw: usize) {
        let depth = segs[0].1 + segs[1].1;
        debug_assert!(a.len() == n * 4 * bw && segs.iter().all(|&(s, k)| s.len() >= n * k)
                      && panels.len() == bw.div_ceil(STRIP) * depth * 4);
        let lda = 4 * bw;
        let (x0, k0, x1, k1) = (segs[0].0.as_ptr(), segs[0].1, segs[1].0.as_ptr(), segs[1].1);
        for st in 0..bw.div_ceil(STRIP) {
            let u0 = st * STRIP;
            let sw = STRIP.min(bw - u0);
            let mask: __mmask16 = if sw == STRIP { 0xFFFF } else { (1u16 << sw) - 1 };
            let panel = panels.as_ptr().add(st * depth * 4) as *const f32;
            let dst = a.as_mut_ptr().add(u0);
            let mut r = 0;
            macro_rules! tile {
                ($rows:literal) => {
                    tile::<$rows>(x0.add(r * k0), k0, x1.add(r * k1), k1, panel, dst.add(r * lda), lda, bw, mask)
                };
            }
            while r + 4 <= n {
                tile!(4);
                r += 4;
            }
            match n - r {
                3 => tile!(3),
                2 => tile!(2),
                1 => tile!(1),
                _ => {}
            }
        }
    }

    /// R operand rows times one packed strip: R x 4 accumulators over the whole depth
    /// (segment 0's k0 columns, then segment 1's k1), stored masked (the strip's real
    /// units) at dst + r*lda + q*bw.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(x0: *const f32, k0: usize, x1: *const f32, k1: usize, panel: *const f32,
                                   dst: *mut f32, lda: usize, bw: usize, mask: __mmask16) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (x, k, w0) in [(x0, k0, panel), (x1, k1, panel.add(k0 * 64))] {
            for kk in 0..k {
                let w = w0.add(kk * 64);
                let wv = [_mm512_load_ps(w), _mm512_load_ps(w.add(16)), _mm512_load_ps(w.add(32)),
                          _mm512_load_ps(w.add(48))];
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add(r * k + kk));
                    for (q, a) in acc_r.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(xv, wv[q], *a);
                    }
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (q, a) in acc_r.iter().enumerate() {
                _mm512_mask_storeu_ps(dst.add(r * lda + q * bw), mask, *a);
            }
        }
    }
}

/// One row's units [j0, j1) of an LSTM step: `a` holds the GEMM's pre-activations of the
/// block (gates i, f, g, o side by side, bw each) and `add[q]` what joins gate q (its
/// summed biases, or its row of the input projection with them); writes the new cell
/// state and output, and the activated gates when backward will need them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_units<T: Real>(a: &[T], bw: usize, add: [&[T]; 4], c_prev: &[T], c: &mut [T], hh: &mut [T],
                       gates: Option<[&mut [T]; 4]>) {
    // every slice re-cut to length bw: the loops below run without bounds checks
    let (ai, af, ag, ao) = (&a[..bw], &a[bw..2 * bw], &a[2 * bw..3 * bw], &a[3 * bw..4 * bw]);
    let (xi, xf, xg, xo) = (&add[0][..bw], &add[1][..bw], &add[2][..bw], &add[3][..bw]);
    let (cp, c, hh) = (&c_prev[..bw], &mut c[..bw], &mut hh[..bw]);
    // a macro, not a closure: a closure call is not always inlined, and an outlined one
    // keeps the loops scalar
    macro_rules! act {
        ($j:expr) => {
            (sigmoid(ai[$j] + xi[$j]), sigmoid(af[$j] + xf[$j]), (ag[$j] + xg[$j]).tanh_(), sigmoid(ao[$j] + xo[$j]))
        };
    }
    match gates {
        Some([gi, gf, gg, go]) => {
            let (gi, gf, gg, go) = (&mut gi[..bw], &mut gf[..bw], &mut gg[..bw], &mut go[..bw]);
            for j in 0..bw {
                let (ig, fg, gv, og) = act!(j);
                (gi[j], gf[j], gg[j], go[j]) = (ig, fg, gv, og);
                let cn = fg * cp[j] + ig * gv;
                c[j] = cn;
                hh[j] = og * cn.tanh_();
            }
        }
        None => {
            for j in 0..bw {
                let (ig, fg, gv, og) = act!(j);
                let cn = fg * cp[j] + ig * gv;
                c[j] = cn;
                hh[j] = og * cn.tanh_();
            }
        }
    }
}

/// A forward task's buffers: the block's pre-activations (N, 4*bw) and, where the gemm
/// crate runs a fused step, its operand [x_t, h_prev].
type StepScratch<T> = (Vec<T>, Vec<T>);

/// A block of a step's pointwise work (`LstmRows`, `LstmBackRows`) whose `run` is
/// `#[inline(always)]`, so that `run_widest` compiles it whole for AVX-512.
trait RowsKernel {
    /// # Safety
    /// As the implementor's inherent `run`.
    unsafe fn run_rows(&mut self);
}

/// `rows.run_rows()` compiled for AVX-512 when the CPU has it: a closure handed to `wide`
/// was not inlined there and ran on 8-lane vectors.
///
/// # Safety
/// As `rows.run_rows`.
unsafe fn run_widest<K: RowsKernel>(rows: &mut K, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return run_avx512(rows);
    }
    let _ = isa;
    rows.run_rows()
}

/// # Safety
/// As `rows.run_rows`, on a CPU with these features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn run_avx512<K: RowsKernel>(rows: &mut K) {
    rows.run_rows()
}

/// The pointwise pass of one unit block [j0, j0 + bw) over the N rows of a step.
struct LstmRows<'a, T> {
    /// (N, 4*bw): the step GEMM's pre-activations, gates i, f, g, o side by side per row
    a: &'a [T],
    /// (N, 4H): the step's input projection with the biases, or None when the GEMM
    /// included x (then `b`, the summed biases (4H), joins here)
    xs: Option<&'a [T]>,
    b: &'a [T],
    /// (N, H)
    c_prev: &'a [T],
    /// the step's rows: y (N, H), the cell state written (N, H), gates (N, 4H)
    y: SharedMut<T>,
    c: SharedMut<T>,
    gates: Option<SharedMut<T>>,
    n: usize,
    h: usize,
    j0: usize,
    bw: usize,
}

impl<T: Real> LstmRows<'_, T> {
    /// # Safety
    /// The caller alone writes units [j0, j0 + bw) of the N rows of y, c and gates, which
    /// lie inside their buffers.
    #[inline(always)]
    unsafe fn run(&self) {
        let Self { a, xs, b, c_prev, y, c, gates, n, h, j0, bw } = *self;
        let g = 4 * h;
        for r in 0..n {
            let add = |q: usize| -> &[T] {
                match xs {
                    Some(xs) => &xs[r * g + q * h + j0..][..bw],
                    None => &b[q * h + j0..][..bw],
                }
            };
            let (hr, cr) = (std::slice::from_raw_parts_mut(y.at(r * h + j0), bw),
                            std::slice::from_raw_parts_mut(c.at(r * h + j0), bw));
            let gr = gates.map(|gp| [0, 1, 2, 3].map(|q| std::slice::from_raw_parts_mut(gp.at(r * g + q * h + j0), bw)));
            lstm_units(&a[r * 4 * bw..(r + 1) * 4 * bw], bw, [add(0), add(1), add(2), add(3)],
                       &c_prev[r * h + j0..][..bw], cr, hr, gr);
        }
    }

}

impl<T: Real> RowsKernel for LstmRows<'_, T> {
    #[inline(always)]
    unsafe fn run_rows(&mut self) {
        self.run()
    }
}

/// One LSTM layer: c = f * c_prev + i * g, h = o * tanh(c).
///
/// Each step splits the hidden units into column blocks (`unit_blocks`), one rayon task
/// each: the task multiplies [x_t, h_prev] by its block of [w_ih w_hh]^T (all four gates,
/// single-threaded GEMM over weights regrouped once per call) and runs the gate
/// activations and the state update of its units, so a step costs one fork-join and the
/// input projection needs no (T, N, 4H) buffer written once and read once. When the step
/// is one block (small layers, one thread), the input projection of the whole sequence is
/// one threaded GEMM first instead, so it still uses every core. The state lives in the
/// outputs: step s reads h of the previous step from y, c from cells (or, when
/// `keep_for_backward` is false, from two (N, H) buffers used in turn: then gates and
/// cells, which only backward needs, are neither stored nor returned).
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward<T: Real>(x: &[T], h0: &[T], c0: &[T], w_ih: &[T], w_hh: &[T],
                             bias: Option<(&[T], &[T])>, d: RnnDims, reverse: bool,
                             keep_for_backward: bool) -> Result<LstmForward<T>> {
    check_layer(4, x, &[("h0", h0), ("c0", c0)], w_ih, w_hh, bias, d)?;
    let RnnDims { t, n, i, h } = d;
    let g = 4 * h;
    let keep = keep_for_backward;
    let isa = detect_isa();
    // the summed biases join in the pointwise pass (a 4H row in cache)
    let b: Vec<T> = match bias {
        Some((bi, bh)) => bi.iter().zip(bh).map(|(&a, &b)| a + b).collect(),
        None => crate::alloc::float_zeros_or_unwind::<T>(g, "a kernel buffer"),
    };
    let blocks = unit_blocks(n, h, 4, i + h);
    let fused = blocks.len() > 1;
    let (xp, mats) = if fused {
        (None, vec![(w_ih, i), (w_hh, h)])
    } else {
        (Some(input_projection(x, w_ih, Some(b.clone()), d, g)?), vec![(w_hh, h)])
    };
    // each block's weights gathered by the thread that will use them (into its cache)
    let wb: Vec<StepWeights<T>> = blocks.par_iter().map(|&(j0, j1)| StepWeights::new(&mats, h, j0, j1, isa)).collect();
    // every element of y, cells and gates is written by exactly one step's tasks: no
    // zero-filling first
    let (tc, tg) = if keep { (t * n * h, t * n * g) } else { (0, 0) };
    let (mut y, mut cells, mut gates) = (alloc::with_capacity::<T>(t * n * h, "lstm output")?,
                                         alloc::with_capacity::<T>(tc, "lstm cells")?,
                                         alloc::with_capacity::<T>(tg, "lstm gates")?);
    let mut c_pair = if keep { Vec::new() } else { crate::alloc::float_zeros_or_unwind::<T>(2 * n * h, "a kernel buffer") };
    // per task: the block's pre-activations (N, 4*bw) and room for the operand [x_t,
    // h_prev] where the gemm crate runs the fused step
    let mut scratch: Vec<StepScratch<T>> = blocks.iter().map(|&(j0, j1)| (crate::alloc::float_zeros_or_unwind::<T>(n * 4 * (j1 - j0), "a kernel buffer"), Vec::new())).collect();
    let (yp, cp, gp, pp) = (SharedMut(y.as_mut_ptr()), SharedMut(cells.as_mut_ptr()), SharedMut(gates.as_mut_ptr()),
                            SharedMut(c_pair.as_mut_ptr()));
    // (N, H) at offset `o` of a buffer, read-only
    // SAFETY (callers): the range was completed by an earlier fork-join and is not written
    // during this one.
    let state = |p: SharedMut<T>, o: usize| unsafe { std::slice::from_raw_parts(p.at(o) as *const T, n * h) };
    let mut prev: Option<usize> = None;
    for (idx, s) in steps(t, reverse).enumerate() {
        // the previous step's h and c (written by the previous fork-join; this one writes
        // step s, or the other half of c_pair)
        let (h_prev, c_prev): (&[T], &[T]) = match prev {
            Some(p) => (state(yp, p * n * h), if keep { state(cp, p * n * h) } else { state(pp, ((idx - 1) % 2) * n * h) }),
            None => (h0, c0),
        };
        let c_dst = if keep { SharedMut(cp.at(s * n * h)) } else { SharedMut(pp.at((idx % 2) * n * h)) };
        let task = |(&(j0, j1), (w, (a, lhs))): (&(usize, usize), (&StepWeights<T>, &mut StepScratch<T>))| {
            let bw = j1 - j0;
            let x_rows = fused.then(|| &x[s * n * i..(s + 1) * n * i]);
            w.gemm(a, x_rows, h_prev, lhs, n, bw, i, h);
            let mut rows = LstmRows { a, xs: xp.as_ref().map(|xp| &xp[s * n * g..(s + 1) * n * g]), b: &b, c_prev,
                                  y: SharedMut(yp.at(s * n * h)), c: c_dst, gates: keep.then(|| SharedMut(gp.at(s * n * g))),
                                  n, h, j0, bw };
            // SAFETY: as `LstmRows::run` asks: this task alone writes units [j0, j1) of
            // step s's rows of y (and gates) and of the cell state being written (the
            // blocks are disjoint); gates is only set when its buffer was allocated (keep).
            unsafe { run_widest(&mut rows, isa) };
        };
        if blocks.len() == 1 {
            task((&blocks[0], (&wb[0], &mut scratch[0])));
        } else {
            blocks.par_iter().zip(wb.par_iter().zip(scratch.par_iter_mut())).for_each(task);
        }
        prev = Some(s);
    }
    // SAFETY: the t steps wrote every (step, row, unit) of y, and with keep of cells and
    // gates (the blocks cover [0, H)); T is a plain float.
    unsafe {
        y.set_len(t * n * h);
        cells.set_len(tc);
        gates.set_len(tg);
    }
    let last = prev.expect("t > 0 was checked");
    let h_n = y[last * n * h..(last + 1) * n * h].to_vec();
    let c_n = if keep {
        cells[last * n * h..(last + 1) * n * h].to_vec()
    } else {
        c_pair[((t - 1) % 2) * n * h..][..n * h].to_vec()
    };
    Ok(LstmForward { y, h_n, c_n, gates, cells })
}

/// One row's units of a backward step: pi holds dh on entry and, like pf, pg, po, the
/// gate pre-activation gradient on exit; dc is the carried cell gradient (updated); gi,
/// gf, gg, go the activated gates. Every slice a parameter of its own: references are
/// noalias only as direct arguments (not inside arrays), and without that LLVM left this
/// loop scalar.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_unit_grads<T: Real>(pi: &mut [T], pf: &mut [T], pg: &mut [T], po: &mut [T], dc: &mut [T], gi: &[T],
                            gf: &[T], gg: &[T], go: &[T], cells: &[T], c_prev: &[T]) {
    let bw = dc.len();
    let (pi, pf, pg, po) = (&mut pi[..bw], &mut pf[..bw], &mut pg[..bw], &mut po[..bw]);
    let (gi, gf, gg, go, cs, cp) = (&gi[..bw], &gf[..bw], &gg[..bw], &go[..bw], &cells[..bw], &c_prev[..bw]);
    for j in 0..bw {
        let d_h = pi[j];
        let (ig, fg, gv, og) = (gi[j], gf[j], gg[j], go[j]);
        let tc = cs[j].tanh_();
        let d_c = dc[j] + d_h * og * (T::ONE - tc * tc);
        pi[j] = d_c * gv * ig * (T::ONE - ig);
        pf[j] = d_c * cp[j] * fg * (T::ONE - fg);
        pg[j] = d_c * ig * (T::ONE - gv * gv);
        po[j] = d_h * tc * og * (T::ONE - og);
        dc[j] = d_c * fg;
    }
}

/// Where a backward step's dh comes from: gh_n at the first step processed, else the
/// sum of the blocks' split-K shares of the last step's GEMM.
#[derive(Clone, Copy)]
enum DhFrom<'a, T> {
    Final(&'a [T]),
    Shares(&'a [Vec<T>]),
}

/// The pointwise pass of one unit block [j0, j0 + bw) over the N rows of a backward step:
/// the gate pre-activation gradients into `pre` (N, 4*bw) and gpre's step rows, the cell
/// gradient carried in `dc` (N, bw).
struct LstmBackRows<'a, T> {
    /// the step's (N, 4H) gates, (N, H) cells, previous cells and output gradient
    gates: &'a [T],
    cells: &'a [T],
    c_prev: &'a [T],
    gy: &'a [T],
    dh: DhFrom<'a, T>,
    pre: &'a mut [T],
    dc: &'a mut [T],
    gpre: SharedMut<T>,
    n: usize,
    h: usize,
    j0: usize,
    bw: usize,
}

impl<T: Real> LstmBackRows<'_, T> {
    /// # Safety
    /// The caller alone writes units [j0, j0 + bw) of the N rows of gpre (N, 4H), which
    /// lie inside its buffer.
    #[inline(always)]
    unsafe fn run(&mut self) {
        let (n, h, j0, bw) = (self.n, self.h, self.j0, self.bw);
        let g = 4 * h;
        for r in 0..n {
            let gr = &self.gates[r * g..(r + 1) * g];
            // every slice re-cut to length bw: the loops below run without bounds checks
            let (gi, gf, gg, go) = (&gr[j0..][..bw], &gr[h + j0..][..bw], &gr[2 * h + j0..][..bw], &gr[3 * h + j0..][..bw]);
            let ar = &mut self.pre[r * 4 * bw..(r + 1) * 4 * bw];
            let (pi, rest) = ar.split_at_mut(bw);
            let (pf, rest) = rest.split_at_mut(bw);
            let (pg, po) = rest.split_at_mut(bw);
            let (pi, pf, pg, po) = (&mut pi[..bw], &mut pf[..bw], &mut pg[..bw], &mut po[..bw]);
            let u = r * h + j0;
            let dcr = &mut self.dc[r * bw..(r + 1) * bw];
            let (csr, cpr, gyr) = (&self.cells[u..][..bw], &self.c_prev[u..][..bw], &self.gy[u..][..bw]);
            // dh of the row's units, gathered in pi first (read there before it is
            // overwritten), so each loop is a plain vector loop
            match self.dh {
                DhFrom::Final(gh_n) => {
                    for ((d, &a), &b) in pi.iter_mut().zip(gyr).zip(&gh_n[u..][..bw]) {
                        *d = a + b;
                    }
                }
                DhFrom::Shares(shares) => {
                    pi.copy_from_slice(gyr);
                    for sh in shares {
                        for (d, &v) in pi.iter_mut().zip(&sh[u..][..bw]) {
                            *d += v;
                        }
                    }
                }
            }
            lstm_unit_grads(pi, pf, pg, po, dcr, gi, gf, gg, go, csr, cpr);
            for q in 0..4 {
                let dst = std::slice::from_raw_parts_mut(self.gpre.at(r * g + q * h + j0), bw);
                dst.copy_from_slice(&ar[q * bw..(q + 1) * bw]);
            }
        }
    }

}

impl<T: Real> RowsKernel for LstmBackRows<'_, T> {
    #[inline(always)]
    unsafe fn run_rows(&mut self) {
        self.run()
    }
}

/// Gradients of one LSTM layer: (gx, gh0, gc0, gw_ih, gw_hh, gb), gb the gradient of
/// b_ih and of b_hh alike.
pub type LstmGrads<T> = (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Vec<T>, Option<Vec<T>>);

#[allow(clippy::too_many_arguments)]
pub fn lstm_backward<T: Real>(x: &[T], h0: &[T], c0: &[T], w_ih: &[T], w_hh: &[T], y: &[T],
                              gates: &[T], cells: &[T], gy: &[T], gh_n: &[T], gc_n: &[T],
                              has_bias: bool, d: RnnDims, reverse: bool) -> Result<LstmGrads<T>> {
    check_layer(4, x, &[("h0", h0), ("c0", c0), ("gh_n", gh_n), ("gc_n", gc_n)], w_ih, w_hh, None, d)?;
    let RnnDims { t, n, i, h } = d;
    let g = 4 * h;
    let isa = detect_isa();
    check("y", y.len(), t * n * h, "(T, N, H)")?;
    check("cells", cells.len(), t * n * h, "(T, N, H)")?;
    check("gy", gy.len(), t * n * h, "(T, N, H)")?;
    check("gates", gates.len(), t * n * g, "(T, N, 4H)")?;
    // Steps split the hidden units into blocks as in the forward, one task each: the task
    // runs its units' pointwise pass, then multiplies its gate-gradient columns by the
    // matching rows of w_hh, a split-K share (N, H) of dh_prev. The next step sums the
    // shares of its units. Shares are double-buffered (a step reads the last step's while
    // writing its own), so a step is one fork-join.
    let blocks = unit_blocks(n, h, 4, h);
    let nb = blocks.len();
    // rows q*H + j0..j1 of w_hh for the four gates, stacked: (4*bw, H)
    let wb: Vec<Vec<T>> = blocks
        .iter()
        .map(|&(j0, j1)| (0..4).flat_map(|q| w_hh[(q * h + j0) * h..(q * h + j1) * h].iter().copied()).collect())
        .collect();
    let mut dc_blocks: Vec<Vec<T>> = blocks
        .iter()
        .map(|&(j0, j1)| (0..n).flat_map(|r| gc_n[r * h + j0..r * h + j1].iter().copied()).collect())
        .collect();
    let mut scratch: Vec<Vec<T>> = blocks.iter().map(|&(j0, j1)| crate::alloc::float_zeros_or_unwind::<T>(n * 4 * (j1 - j0), "a kernel buffer")).collect();
    let mut shares: [Vec<Vec<T>>; 2] = [(0..nb).map(|_| crate::alloc::float_zeros_or_unwind::<T>(n * h, "a kernel buffer")).collect(),
                                        (0..nb).map(|_| crate::alloc::float_zeros_or_unwind::<T>(n * h, "a kernel buffer")).collect()];
    // every element of gpre is written by one step's tasks: no zero-filling first
    let mut gpre: Vec<T> = alloc::with_capacity(checked_numel(&[t, n, g], "lstm gradient")?, "lstm gradient")?;
    let gpp = SharedMut(gpre.as_mut_ptr());
    let mut first = true;
    let mut parity = 0;
    for s in steps(t, !reverse) {
        let p = if reverse { s + 1 } else { s.wrapping_sub(1) };
        let c_prev = if p < t { &cells[p * n * h..(p + 1) * n * h] } else { c0 };
        let (gs, cs, gys) = (&gates[s * n * g..(s + 1) * n * g], &cells[s * n * h..(s + 1) * n * h],
                             &gy[s * n * h..(s + 1) * n * h]);
        let (read, write) = if parity == 0 {
            let [a, b] = &mut shares;
            (&*a, b)
        } else {
            let [a, b] = &mut shares;
            (&*b, a)
        };
        let task = |(&(j0, j1), (w, (a, (dcb, out)))): (&(usize, usize), (&Vec<T>, (&mut Vec<T>, (&mut Vec<T>, &mut Vec<T>))))| {
            let bw = j1 - j0;
            let mut rows = LstmBackRows { gates: gs, cells: cs, c_prev, gy: gys, dh: if first { DhFrom::Final(gh_n) } else { DhFrom::Shares(read) },
                                          pre: &mut a[..], dc: &mut dcb[..], gpre: SharedMut(gpp.at(s * n * g)), n, h, j0, bw };
            // SAFETY: this task alone writes units [j0, j1) of step s's rows of gpre (the
            // blocks are disjoint), inside its (T, N, 4H) capacity.
            unsafe { run_widest(&mut rows, isa) };
            // this block's share of dh_prev: (N, 4*bw) @ (4*bw, H)
            mm_serial(out, a, w, n, h, 4 * bw);
        };
        let work = blocks.iter().zip(wb.iter().zip(scratch.iter_mut().zip(dc_blocks.iter_mut().zip(write.iter_mut()))));
        if nb == 1 {
            work.for_each(task);
        } else {
            blocks.par_iter()
                .zip(wb.par_iter().zip(scratch.par_iter_mut().zip(dc_blocks.par_iter_mut().zip(write.par_iter_mut()))))
                .for_each(task);
        }
        first = false;
        parity ^= 1;
    }
    // SAFETY: the t steps wrote every (step, row, gate, unit) of gpre.
    unsafe { gpre.set_len(t * n * g) };
    let last = &shares[parity]; // a step of parity p writes shares[1 - p]; parity flipped since
    let dh: Vec<T> = (0..n * h).map(|e| last.iter().fold(T::ZERO, |acc, sh| acc + sh[e])).collect();
    let mut dc = crate::alloc::float_zeros_or_unwind::<T>(n * h, "a kernel buffer");
    for (&(j0, j1), dcb) in blocks.iter().zip(&dc_blocks) {
        let bw = j1 - j0;
        for r in 0..n {
            dc[r * h + j0..r * h + j1].copy_from_slice(&dcb[r * bw..(r + 1) * bw]);
        }
    }
    let mut gx = crate::alloc::float_zeros_or_unwind::<T>(t * n * i, "a kernel buffer");
    mm(&mut gx, &gpre, false, w_ih, false, t * n, i, g, false);
    let mut gw_ih = crate::alloc::float_zeros_or_unwind::<T>(g * i, "a kernel buffer");
    mm(&mut gw_ih, &gpre, true, x, false, g, i, t * n, false);
    let hp = prev_states(y, h0, d, reverse);
    let mut gw_hh = crate::alloc::float_zeros_or_unwind::<T>(g * h, "a kernel buffer");
    mm(&mut gw_hh, &gpre, true, &hp, false, g, h, t * n, false);
    let gb = has_bias.then(|| column_sums(&gpre, t * n, g));
    Ok((gx, dh, dc, gw_ih, gw_hh, gb))
}

/// A GRU step's pointwise pass over its N rows: xs, hp (N, 3H) the input and state
/// projections (biases in), gates (N, 4H) written [r, z, n, hp_n], state (N, H) updated.
#[inline(always)]
fn gru_rows<T: Real>(xs: &[T], hp: &[T], gates: &mut [T], state: &mut [T], n: usize, h: usize) {
    let g = 3 * h;
    for r in 0..n {
        let (xr, hr) = (&xs[r * g..(r + 1) * g], &hp[r * g..(r + 1) * g]);
        let gr = &mut gates[r * 4 * h..(r + 1) * 4 * h];
        let st = &mut state[r * h..(r + 1) * h];
        for ((o, &a), &b) in gr[..2 * h].iter_mut().zip(&xr[..2 * h]).zip(&hr[..2 * h]) {
            *o = sigmoid(a + b);
        }
        let (rz, rest) = gr.split_at_mut(2 * h);
        let (gn, ghn) = rest.split_at_mut(h);
        let (rg, zg) = rz.split_at(h);
        let (xn, hn) = (&xr[2 * h..3 * h], &hr[2 * h..3 * h]);
        ghn.copy_from_slice(hn);
        for (((o, &x), &hv), &rv) in gn.iter_mut().zip(xn).zip(hn).zip(rg) {
            *o = (x + rv * hv).tanh_();
        }
        for ((sv, &z), &nv) in st.iter_mut().zip(zg).zip(gn.iter()) {
            *sv = (T::ONE - z) * nv + z * *sv;
        }
    }
}

/// `gru_rows` compiled for AVX-512 when the CPU has it (a closure handed to `wide` was
/// not inlined there and ran on 8-lane vectors).
fn gru_rows_widest<T: Real>(isa: Isa, xs: &[T], hp: &[T], gates: &mut [T], state: &mut [T], n: usize, h: usize) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
        unsafe fn gru_rows_avx512<T: Real>(xs: &[T], hp: &[T], gates: &mut [T], state: &mut [T], n: usize, h: usize) {
            gru_rows(xs, hp, gates, state, n, h)
        }
        // SAFETY: the CPU reports these features.
        return unsafe { gru_rows_avx512(xs, hp, gates, state, n, h) };
    }
    let _ = isa;
    gru_rows(xs, hp, gates, state, n, h)
}

/// One GRU layer's forward: outputs (T, N, H), h_n and the saved gates (T, N, 4H) =
/// [r, z, n, W_hn h_prev + b_hn].
pub type GruForward<T> = (Vec<T>, Vec<T>, Vec<T>);

/// r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in +
/// r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
#[allow(clippy::too_many_arguments)]
pub fn gru_forward<T: Real>(x: &[T], h0: &[T], w_ih: &[T], w_hh: &[T], bias: Option<(&[T], &[T])>,
                            d: RnnDims, reverse: bool) -> Result<GruForward<T>> {
    check_layer(3, x, &[("h0", h0)], w_ih, w_hh, bias, d)?;
    let RnnDims { t, n, h, .. } = d;
    let g = 3 * h;
    let isa = detect_isa();
    let xp = input_projection(x, w_ih, bias.map(|(bi, _)| bi.to_vec()), d, g)?;
    let (mut y, mut gates) = (alloc::zeroed(t * n * h, "gru output")?,
                              alloc::zeroed(checked_numel(&[t, n, 4 * h], "gru gates")?, "gru gates")?);
    let mut hc = h0.to_vec();
    let mut hp = crate::alloc::float_zeros_or_unwind::<T>(n * g, "a kernel buffer");
    let w_hh_t = transposed(w_hh, g, h);
    for s in steps(t, reverse) {
        // hp = h @ w_hh^T + b_hh (kept apart from xp: its n part is scaled by r)
        if let Some((_, bh)) = bias {
            for row in hp.chunks_mut(g) {
                row.copy_from_slice(bh);
            }
        }
        mm(&mut hp, &hc, false, &w_hh_t, false, n, g, h, bias.is_some());
        let xs = &xp[s * n * g..(s + 1) * n * g];
        let gs = &mut gates[s * n * 4 * h..(s + 1) * n * 4 * h];
        gru_rows_widest(isa, xs, &hp, gs, &mut hc, n, h);
        y[s * n * h..(s + 1) * n * h].copy_from_slice(&hc);
    }
    Ok((y, hc, gates))
}

/// Gradients of one GRU layer: (gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh).
pub type GruGrads<T> = (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Option<Vec<T>>, Option<Vec<T>>);

#[allow(clippy::too_many_arguments)]
pub fn gru_backward<T: Real>(x: &[T], h0: &[T], w_ih: &[T], w_hh: &[T], y: &[T], gates: &[T],
                             gy: &[T], gh_n: &[T], has_bias: bool, d: RnnDims, reverse: bool)
                             -> Result<GruGrads<T>> {
    check_layer(3, x, &[("h0", h0), ("gh_n", gh_n)], w_ih, w_hh, None, d)?;
    let RnnDims { t, n, i, h } = d;
    let g = 3 * h;
    let isa = detect_isa();
    check("y", y.len(), t * n * h, "(T, N, H)")?;
    check("gy", gy.len(), t * n * h, "(T, N, H)")?;
    check("gates", gates.len(), t * n * 4 * h, "(T, N, 4H)")?;
    let hp_all = prev_states(y, h0, d, reverse);
    let mut dh = gh_n.to_vec();
    let n_g = checked_numel(&[t, n, g], "gru gradient")?;
    let (mut gi, mut gh) = (alloc::zeroed(n_g, "gru gradient")?, alloc::zeroed(n_g, "gru gradient")?);
    for s in steps(t, !reverse) {
        let (gs, gys) = (&gates[s * n * 4 * h..(s + 1) * n * 4 * h], &gy[s * n * h..(s + 1) * n * h]);
        let hps = &hp_all[s * n * h..(s + 1) * n * h];
        let gis = &mut gi[s * n * g..(s + 1) * n * g];
        let ghs = &mut gh[s * n * g..(s + 1) * n * g];
        wide(isa, || for r in 0..n {
            let rows = r * h..(r + 1) * h;
            // every slice re-cut to length h: the loop below runs without bounds checks
            let gr = &gs[r * 4 * h..(r + 1) * 4 * h];
            let (gr_, gz, gn, ghn) = (&gr[..h], &gr[h..2 * h], &gr[2 * h..3 * h], &gr[3 * h..4 * h]);
            let (ir, rest) = gis[r * g..(r + 1) * g].split_at_mut(h);
            let (iz, in_) = rest.split_at_mut(h);
            let (iz, in_) = (&mut iz[..h], &mut in_[..h]);
            let (hr_, rest) = ghs[r * g..(r + 1) * g].split_at_mut(h);
            let (hz, hn_) = rest.split_at_mut(h);
            let (hz, hn_) = (&mut hz[..h], &mut hn_[..h]);
            let (dhr, gyr, hpr) = (&mut dh[rows.clone()], &gys[rows.clone()], &hps[rows]);
            for j in 0..h {
                let (rg, zg, nv, hn) = (gr_[j], gz[j], gn[j], ghn[j]);
                let d_h = dhr[j] + gyr[j];
                let dan = d_h * (T::ONE - zg) * (T::ONE - nv * nv);
                let daz = d_h * (hpr[j] - nv) * zg * (T::ONE - zg);
                let dar = dan * hn * rg * (T::ONE - rg);
                ir[j] = dar;
                iz[j] = daz;
                in_[j] = dan;
                hr_[j] = dar;
                hz[j] = daz;
                hn_[j] = dan * rg;
                dhr[j] = d_h * zg;
            }
        });
        // dh_prev = z * dh + gh[s] @ w_hh
        mm(&mut dh, ghs, false, w_hh, false, n, h, g, true);
    }
    let mut gx = crate::alloc::float_zeros_or_unwind::<T>(t * n * i, "a kernel buffer");
    mm(&mut gx, &gi, false, w_ih, false, t * n, i, g, false);
    let mut gw_ih = crate::alloc::float_zeros_or_unwind::<T>(g * i, "a kernel buffer");
    mm(&mut gw_ih, &gi, true, x, false, g, i, t * n, false);
    let mut gw_hh = crate::alloc::float_zeros_or_unwind::<T>(g * h, "a kernel buffer");
    mm(&mut gw_hh, &gh, true, &hp_all, false, g, h, t * n, false);
    let (gb_ih, gb_hh) = if has_bias {
        (Some(column_sums(&gi, t * n, g)), Some(column_sums(&gh, t * n, g)))
    } else {
        (None, None)
    };
    Ok((gx, dh, gw_ih, gw_hh, gb_ih, gb_hh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(len: usize, seed: u64) -> Vec<f64> {
        // a small deterministic generator: values in [-1, 1)
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// loss = <y, u> + <h_n, v> (+ <c_n, w>); its gradient w.r.t. x checked by central
    /// differences, for both directions and both cells.
    #[test]
    fn gradients_match_finite_differences() {
        let d = RnnDims { t: 3, n: 2, i: 3, h: 2 };
        let eps = 1e-6;
        for lstm in [true, false] {
            for reverse in [false, true] {
                let gates = if lstm { 4 } else { 3 };
                let x = seq(d.t * d.n * d.i, 1);
                let h0 = seq(d.n * d.h, 2);
                let c0 = seq(d.n * d.h, 3);
                let w_ih = seq(gates * d.h * d.i, 4);
                let w_hh = seq(gates * d.h * d.h, 5);
                let (bi, bh) = (seq(gates * d.h, 6), seq(gates * d.h, 7));
                let u = seq(d.t * d.n * d.h, 8);
                let v = seq(d.n * d.h, 9);
                let w = seq(d.n * d.h, 10);
                let loss = |x: &[f64]| -> f64 {
                    if lstm {
                        let f = lstm_forward(x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse, true).unwrap();
                        dot(&f.y, &u) + dot(&f.h_n, &v) + dot(&f.c_n, &w)
                    } else {
                        let (y, hn, _) = gru_forward(x, &h0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
                        dot(&y, &u) + dot(&hn, &v)
                    }
                };
                let gx = if lstm {
                    let f = lstm_forward(&x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse, true).unwrap();
                    lstm_backward(&x, &h0, &c0, &w_ih, &w_hh, &f.y, &f.gates, &f.cells, &u, &v, &w,
                                  true, d, reverse).unwrap().0
                } else {
                    let (y, _, g) = gru_forward(&x, &h0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
                    gru_backward(&x, &h0, &w_ih, &w_hh, &y, &g, &u, &v, true, d, reverse).unwrap().0
                };
                for k in 0..x.len() {
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[k] += eps;
                    xm[k] -= eps;
                    let num = (loss(&xp) - loss(&xm)) / (2.0 * eps);
                    assert!((num - gx[k]).abs() < 1e-7, "lstm={lstm} reverse={reverse} k={k}: {num} vs {}", gx[k]);
                }
            }
        }
    }

    /// The step loop split into unit blocks (h = 100 and n = 8 make two uneven blocks on
    /// two threads) against a plain per-unit LSTM, both directions.
    #[test]
    fn blocked_lstm_forward_matches_plain_loops() {
        let d = RnnDims { t: 3, n: 8, i: 5, h: 100 };
        let RnnDims { t, n, i, h } = d;
        let (x, h0, c0) = (seq(t * n * i, 1), seq(n * h, 2), seq(n * h, 3));
        let (w_ih, w_hh) = (seq(4 * h * i, 4), seq(4 * h * h, 5));
        let (bi, bh) = (seq(4 * h, 6), seq(4 * h, 7));
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        for reverse in [false, true] {
            let f = lstm_forward(&x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse, true).unwrap();
            let (mut hc, mut cc) = (h0.clone(), c0.clone());
            let order: Vec<usize> = if reverse { (0..t).rev().collect() } else { (0..t).collect() };
            for s in order {
                let (mut hn, mut cn) = (vec![0.0; n * h], vec![0.0; n * h]);
                for r in 0..n {
                    let pre = |q: usize, j: usize| -> f64 {
                        let row = q * h + j;
                        let mut a = bi[row] + bh[row];
                        for c in 0..i {
                            a += w_ih[row * i + c] * x[(s * n + r) * i + c];
                        }
                        for c in 0..h {
                            a += w_hh[row * h + c] * hc[r * h + c];
                        }
                        a
                    };
                    for j in 0..h {
                        let (ig, fg, gg, og) = (sig(pre(0, j)), sig(pre(1, j)), pre(2, j).tanh(), sig(pre(3, j)));
                        cn[r * h + j] = fg * cc[r * h + j] + ig * gg;
                        hn[r * h + j] = og * cn[r * h + j].tanh();
                        let gs = &f.gates[(s * n + r) * 4 * h..];
                        for (q, want) in [ig, fg, gg, og].into_iter().enumerate() {
                            assert!((gs[q * h + j] - want).abs() < 1e-12, "gate {q} unit {j}");
                        }
                    }
                }
                hc = hn;
                cc = cn;
                for (a, b) in f.y[s * n * h..(s + 1) * n * h].iter().zip(&hc) {
                    assert!((a - b).abs() < 1e-12, "reverse={reverse} step {s}: {a} vs {b}");
                }
                for (a, b) in f.cells[s * n * h..(s + 1) * n * h].iter().zip(&cc) {
                    assert!((a - b).abs() < 1e-12);
                }
            }
            for (a, b) in f.h_n.iter().chain(&f.c_n).zip(hc.iter().chain(&cc)) {
                assert!((a - b).abs() < 1e-12, "final state: {a} vs {b}");
            }
        }
    }

    /// The blocked backward (two uneven unit blocks, split-K shares of dh) against central
    /// differences of every input, along random directions, both directions of time.
    #[test]
    fn blocked_lstm_backward_matches_finite_differences() {
        let d = RnnDims { t: 3, n: 8, i: 5, h: 100 };
        let RnnDims { t, n, i, h } = d;
        let ins = [seq(t * n * i, 1), seq(n * h, 2), seq(n * h, 3), seq(4 * h * i, 4), seq(4 * h * h, 5)];
        let (bi, bh) = (seq(4 * h, 6), seq(4 * h, 7));
        let (u, v, w) = (seq(t * n * h, 8), seq(n * h, 9), seq(n * h, 10));
        for reverse in [false, true] {
            let loss = |a: &[Vec<f64>]| -> f64 {
                let f = lstm_forward(&a[0], &a[1], &a[2], &a[3], &a[4], Some((&bi, &bh)), d, reverse, true).unwrap();
                dot(&f.y, &u) + dot(&f.h_n, &v) + dot(&f.c_n, &w)
            };
            let f = lstm_forward(&ins[0], &ins[1], &ins[2], &ins[3], &ins[4], Some((&bi, &bh)), d, reverse, true).unwrap();
            let (gx, gh0, gc0, gw_ih, gw_hh, _) = lstm_backward(&ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &f.y,
                                                                 &f.gates, &f.cells, &u, &v, &w, true, d, reverse).unwrap();
            for (k, grad) in [gx, gh0, gc0, gw_ih, gw_hh].iter().enumerate() {
                let dir = seq(grad.len(), 20 + k as u64);
                let eps = 1e-6;
                let (mut plus, mut minus) = (ins.to_vec(), ins.to_vec());
                plus[k].iter_mut().zip(&dir).for_each(|(a, b)| *a += eps * b);
                minus[k].iter_mut().zip(&dir).for_each(|(a, b)| *a -= eps * b);
                let num = (loss(&plus) - loss(&minus)) / (2.0 * eps);
                let ana = dot(grad, &dir);
                assert!((num - ana).abs() < 1e-6 * (1.0 + num.abs()), "input {k} reverse={reverse}: {num} vs {ana}");
            }
        }
    }

    /// The f32 forward (on AVX-512: packed weights, the 4-row register tile, the input
    /// projection fused into the step GEMM when the step splits into blocks) against the
    /// f64 one (the `gemm` crate) on shapes with partly filled 16-unit strips and batch
    /// tails; without keep_for_backward the same outputs, bit for bit, and no gates/cells.
    #[test]
    fn f32_forward_matches_f64_on_uneven_shapes() {
        for &(n, i, h) in &[(7, 9, 100), (1, 50, 300), (5, 2, 1), (3, 3, 17), (32, 24, 64)] {
            let d = RnnDims { t: 3, n, i, h };
            let scaled = |v: Vec<f64>, k: usize| -> Vec<f64> { v.iter().map(|a| a * 2.0 / (k as f64).sqrt()).collect() };
            let (x, h0, c0) = (seq(d.t * n * i, 1), seq(n * h, 2), seq(n * h, 3));
            let (w_ih, w_hh) = (scaled(seq(4 * h * i, 4), i), scaled(seq(4 * h * h, 5), h));
            let (bi, bh) = (seq(4 * h, 6), seq(4 * h, 7));
            let f32s = |v: &Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (x32, h032, c032, wi32, wh32, bi32, bh32) =
                (f32s(&x), f32s(&h0), f32s(&c0), f32s(&w_ih), f32s(&w_hh), f32s(&bi), f32s(&bh));
            for reverse in [false, true] {
                let want = lstm_forward(&x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse, true).unwrap();
                let got = lstm_forward(&x32, &h032, &c032, &wi32, &wh32, Some((&bi32, &bh32)), d, reverse, true).unwrap();
                let pairs = [(&got.y, &want.y), (&got.h_n, &want.h_n), (&got.c_n, &want.c_n), (&got.gates, &want.gates),
                             (&got.cells, &want.cells)];
                for (k, (a, b)) in pairs.into_iter().enumerate() {
                    assert_eq!(a.len(), b.len());
                    for (e, (&u, &v)) in a.iter().zip(b.iter()).enumerate() {
                        assert!((u as f64 - v).abs() < 2e-5 * (1.0 + v.abs()), "n={n} i={i} h={h} result {k}[{e}]: {u} vs {v}");
                    }
                }
                let bare = lstm_forward(&x32, &h032, &c032, &wi32, &wh32, Some((&bi32, &bh32)), d, reverse, false).unwrap();
                assert!(bare.gates.is_empty() && bare.cells.is_empty());
                assert!(bare.y == got.y && bare.h_n == got.h_n && bare.c_n == got.c_n, "n={n} h={h}: keep changed the values");
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let d = RnnDims { t: 2, n: 1, i: 2, h: 2 };
        let x = vec![0.0f64; 4];
        let s = vec![0.0f64; 2];
        assert!(lstm_forward(&x, &s, &s, &[0.0; 15], &[0.0; 16], None, d, false, false).is_err());
        assert!(gru_forward(&x[..3], &s, &[0.0; 12], &[0.0; 12], None, d, false).is_err());
        let empty = RnnDims { t: 0, ..d };
        assert!(gru_forward(&x, &s, &[0.0; 12], &[0.0; 12], None, empty, false).is_err());
    }
}
