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
//! single-threaded GEMM and runs their pointwise pass, so a step is one fork-join and
//! the pointwise work is parallel as well (backward: the task's gate gradients times the
//! matching rows of `w_hh` give a split-K share of the state gradient, summed by the
//! next step). The GRU keeps the whole-step GEMM (threaded inside the `gemm` crate).
//!
//! Gate order is PyTorch's (LSTM i, f, g, o; GRU r, z, n with b_hn inside the reset
//! product), so PyTorch weights load as they are.

use super::activation::sigmoid;
use super::map::{detect_isa, wide};
use super::reduce::column_sums;
use crate::error::Result;
use crate::real::Real;
use crate::shape_err;
use gemm::Parallelism;
use rayon::prelude::*;

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
    // (column stride, row stride) of op(a) and op(b)
    let (a_cs, a_rs) = if ta { (m as isize, 1) } else { (1, k as isize) };
    let (b_cs, b_rs) = if tb { (k as isize, 1) } else { (1, n as isize) };
    let par = if (m as u128) * (n as u128) * (k as u128) < 1 << 18 {
        Parallelism::None
    } else {
        Parallelism::Rayon(rayon::current_num_threads())
    };
    // SAFETY: a, b and dst cover m*k, k*n and m*n elements with these strides (checked by
    // the callers' length checks), and dst never aliases a or b.
    unsafe {
        gemm::gemm(m, n, k, dst.as_mut_ptr(), 1, n as isize, accumulate, a.as_ptr(), a_cs, a_rs,
                   b.as_ptr(), b_cs, b_rs, T::ONE, T::ONE, false, false, false, par)
    }
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
    let mut t = vec![T::ZERO; rows * cols];
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
fn input_projection<T: Real>(x: &[T], w_ih: &[T], bias: Option<Vec<T>>, d: RnnDims, g: usize) -> Vec<T> {
    let has_bias = bias.is_some();
    let mut xp = match bias {
        Some(b) => {
            let mut v = Vec::with_capacity(d.t * d.n * g);
            for _ in 0..d.t * d.n {
                v.extend_from_slice(&b);
            }
            v
        }
        None => {
            // the GEMM writes every element without reading dst: no zero-fill first
            let (m, k) = (d.t * d.n, d.i);
            let mut v: Vec<T> = Vec::with_capacity(m * g);
            let par = if (m as u128) * (g as u128) * (k as u128) < 1 << 18 {
                Parallelism::None
            } else {
                Parallelism::Rayon(rayon::current_num_threads())
            };
            // SAFETY: v has capacity m*g; x is (m, k) and w_ih (g, k) row-major (read as
            // its transpose); dst is not read (read_dst = false), every element written.
            unsafe {
                gemm::gemm(m, g, k, v.as_mut_ptr(), 1, g as isize, false, x.as_ptr(), 1, k as isize,
                           w_ih.as_ptr(), k as isize, 1, T::ONE, T::ONE, false, false, false, par);
                v.set_len(m * g);
            }
            return v;
        }
    };
    mm(&mut xp, x, false, w_ih, true, d.t * d.n, g, d.i, has_bias);
    xp
}

/// The results of a layer's forward: outputs (T, N, H), final states (N, H) and what
/// backward needs.
pub struct LstmForward<T> {
    pub y: Vec<T>,
    pub h_n: Vec<T>,
    pub c_n: Vec<T>,
    /// (T, N, 4H): activated gates i, f, g, o
    pub gates: Vec<T>,
    /// (T, N, H): cell states
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
/// ranges, widths a multiple of 16 (AVX-512 lanes). One block when the step is too small
/// for a fork-join to pay (~2^18 multiply-adds, mm's threshold) or there is one thread.
fn unit_blocks(n: usize, h: usize, gates: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let work = (n as u128) * (h as u128) * (gates as u128) * (h as u128);
    let parts = if work < 1 << 18 { 1 } else { threads.min(h.div_ceil(16)).max(1) };
    let width = h.div_ceil(parts).div_ceil(16) * 16;
    (0..h).step_by(width.max(1)).map(|j0| (j0, (j0 + width).min(h))).collect()
}

/// w_hh (gates*H, H) regrouped per unit block: block [j0, j1) gets the (H, gates*bw)
/// matrix whose columns are, gate after gate, rows j0..j1 of that gate's block of w_hh
/// (so one GEMM of the state gives the block's pre-activations of every gate).
fn block_weights<T: Real>(w_hh: &[T], h: usize, gates: usize, blocks: &[(usize, usize)]) -> Vec<Vec<T>> {
    // gathered straight from w_hh in 16 x 16 tiles (a row-by-row walk would stride H
    // elements per read)
    const B: usize = 16;
    blocks
        .iter()
        .map(|&(j0, j1)| {
            let (bw, cols) = (j1 - j0, gates * (j1 - j0));
            let mut out = vec![T::ZERO; h * cols];
            for q in 0..gates {
                for u0 in (0..bw).step_by(B) {
                    for k0 in (0..h).step_by(B) {
                        for u in u0..(u0 + B).min(bw) {
                            let src = &w_hh[(q * h + j0 + u) * h..][..h];
                            for k in k0..(k0 + B).min(h) {
                                out[k * cols + q * bw + u] = src[k];
                            }
                        }
                    }
                }
            }
            out
        })
        .collect()
}

/// dst (m x n) := a (m x k) @ b (k x n), row-major, on the calling thread.
fn mm_serial<T: Real>(dst: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize) {
    debug_assert!(dst.len() == m * n && a.len() >= m * k && b.len() >= k * n && k > 0);
    // SAFETY: a, b and dst cover m*k, k*n and m*n elements with these strides, dst is
    // a distinct mutable slice.
    unsafe {
        gemm::gemm(m, n, k, dst.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize,
                   b.as_ptr(), 1, n as isize, T::ONE, T::ONE, false, false, false, Parallelism::None)
    }
}

/// One LSTM layer: c = f * c_prev + i * g, h = o * tanh(c).
///
/// Each step splits the hidden units into column blocks (`unit_blocks`), one rayon task
/// each: the task multiplies the previous state by its block of w_hh (all four gates,
/// single-threaded GEMM) and runs the gate activations and the state update of its units,
/// so the pointwise pass is parallel too and a step costs one fork-join. The state lives
/// in the outputs: step s reads h, c of the previous step from y and cells.
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward<T: Real>(x: &[T], h0: &[T], c0: &[T], w_ih: &[T], w_hh: &[T],
                             bias: Option<(&[T], &[T])>, d: RnnDims, reverse: bool)
                             -> Result<LstmForward<T>> {
    check_layer(4, x, &[("h0", h0), ("c0", c0)], w_ih, w_hh, bias, d)?;
    let RnnDims { t, n, h, .. } = d;
    let g = 4 * h;
    let isa = detect_isa();
    // the summed biases join in the pointwise pass (a 4H row in cache) rather than being
    // written into all T*N rows of the projection before the GEMM accumulates onto them
    let b: Vec<T> = match bias {
        Some((bi, bh)) => bi.iter().zip(bh).map(|(&a, &b)| a + b).collect(),
        None => vec![T::ZERO; g],
    };
    let xp = input_projection(x, w_ih, None, d, g);
    // every element of y, cells and gates is written by exactly one step's tasks: no
    // zero-filling first (9.7 MB at the benchmark's size)
    let (mut y, mut cells, mut gates) = (Vec::<T>::with_capacity(t * n * h), Vec::<T>::with_capacity(t * n * h),
                                         Vec::<T>::with_capacity(t * n * g));
    let blocks = unit_blocks(n, h, 4);
    let wb = block_weights(w_hh, h, 4, &blocks);
    let mut scratch: Vec<Vec<T>> = blocks.iter().map(|&(j0, j1)| vec![T::ZERO; n * 4 * (j1 - j0)]).collect();
    let (yp, cp, gp) = (SharedMut(y.as_mut_ptr()), SharedMut(cells.as_mut_ptr()), SharedMut(gates.as_mut_ptr()));
    let mut prev: Option<usize> = None;
    for s in steps(t, reverse) {
        // SAFETY: step `p` of y / cells was completed by the previous fork-join and is
        // only read during this one, which writes step s (p != s) alone.
        let (h_prev, c_prev): (&[T], &[T]) = match prev {
            Some(p) => unsafe {
                (std::slice::from_raw_parts(yp.at(p * n * h), n * h),
                 std::slice::from_raw_parts(cp.at(p * n * h), n * h))
            },
            None => (h0, c0),
        };
        let xs = &xp[s * n * g..(s + 1) * n * g];
        let task = |(&(j0, j1), (w, a)): (&(usize, usize), (&Vec<T>, &mut Vec<T>))| {
            let bw = j1 - j0;
            // a = h_prev @ [w_i w_f w_g w_o] of this block: (N, 4*bw)
            mm_serial(a, h_prev, w, n, 4 * bw, h);
            wide(isa, || for r in 0..n {
                let ar = &mut a[r * 4 * bw..(r + 1) * 4 * bw];
                let xr = &xs[r * g..(r + 1) * g];
                for q in 0..4 {
                    let cols = q * h + j0..q * h + j1;
                    let (av, xv, bv) = (&mut ar[q * bw..(q + 1) * bw], &xr[cols.clone()], &b[cols]);
                    if q == 2 {
                        av.iter_mut().zip(xv).zip(bv).for_each(|((o, &u), &c)| *o = (*o + (u + c)).tanh_());
                    } else {
                        av.iter_mut().zip(xv).zip(bv).for_each(|((o, &u), &c)| *o = sigmoid(*o + (u + c)));
                    }
                }
                let row = (s * n + r) * h + j0;
                // SAFETY: this task alone writes units [j0, j1) of row r of step s (the
                // blocks are disjoint), inside the (T, N, H) / (T, N, 4H) buffers.
                let (hr, cr) = unsafe {
                    (std::slice::from_raw_parts_mut(yp.at(row), bw),
                     std::slice::from_raw_parts_mut(cp.at(row), bw))
                };
                for q in 0..4 {
                    // SAFETY: as above, gate q's units [j0, j1) of row r of step s
                    let gr = unsafe {
                        std::slice::from_raw_parts_mut(gp.at((s * n + r) * g + q * h + j0), bw)
                    };
                    gr.copy_from_slice(&ar[q * bw..(q + 1) * bw]);
                }
                let (gi, gf, gg, go) = (&ar[..bw], &ar[bw..2 * bw], &ar[2 * bw..3 * bw], &ar[3 * bw..4 * bw]);
                let cpr = &c_prev[r * h + j0..r * h + j1];
                for jj in 0..bw {
                    let cn = gf[jj] * cpr[jj] + gi[jj] * gg[jj];
                    cr[jj] = cn;
                    hr[jj] = go[jj] * cn.tanh_();
                }
            });
        };
        if blocks.len() == 1 {
            task((&blocks[0], (&wb[0], &mut scratch[0])));
        } else {
            blocks.par_iter().zip(wb.par_iter().zip(scratch.par_iter_mut())).for_each(task);
        }
        prev = Some(s);
    }
    // SAFETY: the t steps wrote every (step, row, unit) of the three buffers (the blocks
    // cover [0, H)), and T is a plain float.
    unsafe {
        y.set_len(t * n * h);
        cells.set_len(t * n * h);
        gates.set_len(t * n * g);
    }
    let last = prev.expect("t > 0 was checked");
    let h_n = y[last * n * h..(last + 1) * n * h].to_vec();
    let c_n = cells[last * n * h..(last + 1) * n * h].to_vec();
    Ok(LstmForward { y, h_n, c_n, gates, cells })
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
    let blocks = unit_blocks(n, h, 4);
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
    let mut scratch: Vec<Vec<T>> = blocks.iter().map(|&(j0, j1)| vec![T::ZERO; n * 4 * (j1 - j0)]).collect();
    let mut shares: [Vec<Vec<T>>; 2] = [(0..nb).map(|_| vec![T::ZERO; n * h]).collect(),
                                        (0..nb).map(|_| vec![T::ZERO; n * h]).collect()];
    // every element of gpre is written by one step's tasks: no zero-filling first
    let mut gpre: Vec<T> = Vec::with_capacity(t * n * g);
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
            wide(isa, || for r in 0..n {
                let (gr, ar) = (&gs[r * g..(r + 1) * g], &mut a[r * 4 * bw..(r + 1) * 4 * bw]);
                let (gi, gf, gg, go) = (&gr[j0..j1], &gr[h + j0..h + j1], &gr[2 * h + j0..2 * h + j1],
                                        &gr[3 * h + j0..3 * h + j1]);
                let (pi, rest) = ar.split_at_mut(bw);
                let (pf, rest) = rest.split_at_mut(bw);
                let (pg, po) = rest.split_at_mut(bw);
                let (pf, pg, po) = (&mut pf[..bw], &mut pg[..bw], &mut po[..bw]);
                let units = r * h + j0..r * h + j1;
                let dcr = &mut dcb[r * bw..(r + 1) * bw];
                let (csr, cpr, gyr) = (&cs[units.clone()], &c_prev[units.clone()], &gys[units.clone()]);
                for jj in 0..bw {
                    // dh of this unit: gh_n at the first step, else the sum of the shares
                    let mut d_h = gyr[jj];
                    if first {
                        d_h += gh_n[r * h + j0 + jj];
                    } else {
                        for sh in read.iter() {
                            d_h += sh[r * h + j0 + jj];
                        }
                    }
                    let (ig, fg, gv, og) = (gi[jj], gf[jj], gg[jj], go[jj]);
                    let tc = csr[jj].tanh_();
                    let d_c = dcr[jj] + d_h * og * (T::ONE - tc * tc);
                    pi[jj] = d_c * gv * ig * (T::ONE - ig);
                    pf[jj] = d_c * cpr[jj] * fg * (T::ONE - fg);
                    pg[jj] = d_c * ig * (T::ONE - gv * gv);
                    po[jj] = d_h * tc * og * (T::ONE - og);
                    dcr[jj] = d_c * fg;
                }
                for q in 0..4 {
                    // SAFETY: this task alone writes gate q's units [j0, j1) of row r of
                    // step s, inside gpre's (T, N, 4H) capacity.
                    let dst = unsafe { std::slice::from_raw_parts_mut(gpp.at((s * n + r) * g + q * h + j0), bw) };
                    dst.copy_from_slice(&ar[q * bw..(q + 1) * bw]);
                }
            });
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
    let mut dc = vec![T::ZERO; n * h];
    for (&(j0, j1), dcb) in blocks.iter().zip(&dc_blocks) {
        let bw = j1 - j0;
        for r in 0..n {
            dc[r * h + j0..r * h + j1].copy_from_slice(&dcb[r * bw..(r + 1) * bw]);
        }
    }
    let mut gx = vec![T::ZERO; t * n * i];
    mm(&mut gx, &gpre, false, w_ih, false, t * n, i, g, false);
    let mut gw_ih = vec![T::ZERO; g * i];
    mm(&mut gw_ih, &gpre, true, x, false, g, i, t * n, false);
    let hp = prev_states(y, h0, d, reverse);
    let mut gw_hh = vec![T::ZERO; g * h];
    mm(&mut gw_hh, &gpre, true, &hp, false, g, h, t * n, false);
    let gb = has_bias.then(|| column_sums(&gpre, t * n, g));
    Ok((gx, dh, dc, gw_ih, gw_hh, gb))
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
    let xp = input_projection(x, w_ih, bias.map(|(bi, _)| bi.to_vec()), d, g);
    let (mut y, mut gates) = (vec![T::ZERO; t * n * h], vec![T::ZERO; t * n * 4 * h]);
    let mut hc = h0.to_vec();
    let mut hp = vec![T::ZERO; n * g];
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
        wide(isa, || for r in 0..n {
            let (xr, hr) = (&xs[r * g..(r + 1) * g], &hp[r * g..(r + 1) * g]);
            let gr = &mut gs[r * 4 * h..(r + 1) * 4 * h];
            let st = &mut hc[r * h..(r + 1) * h];
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
        });
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
    let (mut gi, mut gh) = (vec![T::ZERO; t * n * g], vec![T::ZERO; t * n * g]);
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
    let mut gx = vec![T::ZERO; t * n * i];
    mm(&mut gx, &gi, false, w_ih, false, t * n, i, g, false);
    let mut gw_ih = vec![T::ZERO; g * i];
    mm(&mut gw_ih, &gi, true, x, false, g, i, t * n, false);
    let mut gw_hh = vec![T::ZERO; g * h];
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
                        let f = lstm_forward(x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
                        dot(&f.y, &u) + dot(&f.h_n, &v) + dot(&f.c_n, &w)
                    } else {
                        let (y, hn, _) = gru_forward(x, &h0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
                        dot(&y, &u) + dot(&hn, &v)
                    }
                };
                let gx = if lstm {
                    let f = lstm_forward(&x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
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
            let f = lstm_forward(&x, &h0, &c0, &w_ih, &w_hh, Some((&bi, &bh)), d, reverse).unwrap();
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
                let f = lstm_forward(&a[0], &a[1], &a[2], &a[3], &a[4], Some((&bi, &bh)), d, reverse).unwrap();
                dot(&f.y, &u) + dot(&f.h_n, &v) + dot(&f.c_n, &w)
            };
            let f = lstm_forward(&ins[0], &ins[1], &ins[2], &ins[3], &ins[4], Some((&bi, &bh)), d, reverse).unwrap();
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

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let d = RnnDims { t: 2, n: 1, i: 2, h: 2 };
        let x = vec![0.0f64; 4];
        let s = vec![0.0f64; 2];
        assert!(lstm_forward(&x, &s, &s, &[0.0; 15], &[0.0; 16], None, d, false).is_err());
        assert!(gru_forward(&x[..3], &s, &[0.0; 12], &[0.0; 12], None, d, false).is_err());
        let empty = RnnDims { t: 0, ..d };
        assert!(gru_forward(&x, &s, &[0.0; 12], &[0.0; 12], None, empty, false).is_err());
    }
}
