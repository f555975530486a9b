//! Recurrent layers: one LSTM or GRU layer in one direction over a time-major sequence
//! (x: T x N x I), forward and backward through time.
//!
//! The input projection of the whole sequence is one GEMM (`gemm` crate, biases pre-filled
//! and accumulated onto); each step is one GEMM of the state with all gates of `w_hh`
//! fused, then one fused pointwise pass (gate activations and state update). Backward is
//! the same shape: one fused pointwise pass and one GEMM per step, then three GEMMs for
//! the input gradient and both weight gradients over the whole sequence.
//!
//! Gate order is PyTorch's (LSTM i, f, g, o; GRU r, z, n with b_hn inside the reset
//! product), so PyTorch weights load as they are.

use super::activation::sigmoid;
use super::map::{detect_isa, Isa};
use super::reduce::column_sums;
use crate::error::Result;
use crate::real::Real;
use crate::shape_err;
use gemm::Parallelism;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs a step's pointwise loop (inlined into `f`) compiled for AVX-512 when the CPU has
/// it (16 f32 lanes for the polynomial exp/tanh), else for the crate's AVX2 baseline.
#[inline(always)]
fn wide<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: called only when the CPU reports these features.
        return unsafe { run_avx512(f) };
    }
    let _ = isa;
    f()
}

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
    let mut xp = vec![T::ZERO; d.t * d.n * g];
    let has_bias = bias.is_some();
    if let Some(b) = bias {
        for row in xp.chunks_mut(g) {
            row.copy_from_slice(&b);
        }
    }
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

/// One LSTM layer: c = f * c_prev + i * g, h = o * tanh(c).
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward<T: Real>(x: &[T], h0: &[T], c0: &[T], w_ih: &[T], w_hh: &[T],
                             bias: Option<(&[T], &[T])>, d: RnnDims, reverse: bool)
                             -> Result<LstmForward<T>> {
    check_layer(4, x, &[("h0", h0), ("c0", c0)], w_ih, w_hh, bias, d)?;
    let RnnDims { t, n, h, .. } = d;
    let g = 4 * h;
    let isa = detect_isa();
    let b = bias.map(|(bi, bh)| bi.iter().zip(bh).map(|(&a, &b)| a + b).collect());
    let xp = input_projection(x, w_ih, b, d, g);
    let (mut y, mut cells, mut gates) = (vec![T::ZERO; t * n * h], vec![T::ZERO; t * n * h],
                                         vec![T::ZERO; t * n * g]);
    let (mut hc, mut cc) = (h0.to_vec(), c0.to_vec());
    let mut a = vec![T::ZERO; n * g];
    let w_hh_t = transposed(w_hh, g, h);
    for s in steps(t, reverse) {
        // a = h @ w_hh^T; a + xp[s]: the step's pre-activations of all four gates
        mm(&mut a, &hc, false, &w_hh_t, false, n, g, h, false);
        let xs = &xp[s * n * g..(s + 1) * n * g];
        let gs = &mut gates[s * n * g..(s + 1) * n * g];
        wide(isa, || for (((ar, xr), gr), (cr, hr)) in a.chunks_exact(g).zip(xs.chunks_exact(g))
            .zip(gs.chunks_exact_mut(g)).zip(cc.chunks_exact_mut(h).zip(hc.chunks_exact_mut(h)))
        {
            // activations gate by gate (equal-length slices: the loops vectorize)
            for ((o, &v), &u) in gr.iter_mut().zip(ar).zip(xr) {
                *o = sigmoid(v + u);
            }
            for ((o, &v), &u) in gr[2 * h..3 * h].iter_mut().zip(&ar[2 * h..3 * h]).zip(&xr[2 * h..3 * h]) {
                *o = (v + u).tanh_();
            }
            // every slice re-cut to length h: the loop runs without bounds checks
            let (gi, gf, gg, go) = (&gr[..h], &gr[h..2 * h], &gr[2 * h..3 * h], &gr[3 * h..4 * h]);
            let (cr, hr) = (&mut cr[..h], &mut hr[..h]);
            for j in 0..h {
                let cn = gf[j] * cr[j] + gi[j] * gg[j];
                cr[j] = cn;
                hr[j] = go[j] * cn.tanh_();
            }
        });
        y[s * n * h..(s + 1) * n * h].copy_from_slice(&hc);
        cells[s * n * h..(s + 1) * n * h].copy_from_slice(&cc);
    }
    Ok(LstmForward { y, h_n: hc, c_n: cc, gates, cells })
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
    let (mut dh, mut dc) = (gh_n.to_vec(), gc_n.to_vec());
    let mut gpre = vec![T::ZERO; t * n * g];
    for s in steps(t, !reverse) {
        let p = if reverse { s + 1 } else { s.wrapping_sub(1) };
        let c_prev = if p < t { &cells[p * n * h..(p + 1) * n * h] } else { c0 };
        let (gs, cs, gys) = (&gates[s * n * g..(s + 1) * n * g], &cells[s * n * h..(s + 1) * n * h],
                             &gy[s * n * h..(s + 1) * n * h]);
        let gp = &mut gpre[s * n * g..(s + 1) * n * g];
        wide(isa, || for r in 0..n {
            let rows = r * h..(r + 1) * h;
            // every slice re-cut to length h: the loop below runs without bounds checks
            let (gr, gpr) = (&gs[r * g..(r + 1) * g], &mut gp[r * g..(r + 1) * g]);
            let (gi, gf, gg, go) = (&gr[..h], &gr[h..2 * h], &gr[2 * h..3 * h], &gr[3 * h..4 * h]);
            let (pi, rest) = gpr.split_at_mut(h);
            let (pf, rest) = rest.split_at_mut(h);
            let (pg, po) = rest.split_at_mut(h);
            let (pf, pg, po) = (&mut pf[..h], &mut pg[..h], &mut po[..h]);
            let (dhr, dcr) = (&dh[rows.clone()], &mut dc[rows.clone()]);
            let (csr, cpr, gyr) = (&cs[rows.clone()], &c_prev[rows.clone()], &gys[rows]);
            for j in 0..h {
                let (ig, fg, gv, og) = (gi[j], gf[j], gg[j], go[j]);
                let d_h = dhr[j] + gyr[j];
                let tc = csr[j].tanh_();
                let d_c = dcr[j] + d_h * og * (T::ONE - tc * tc);
                pi[j] = d_c * gv * ig * (T::ONE - ig);
                pf[j] = d_c * cpr[j] * fg * (T::ONE - fg);
                pg[j] = d_c * ig * (T::ONE - gv * gv);
                po[j] = d_h * tc * og * (T::ONE - og);
                dcr[j] = d_c * fg;
            }
        });
        // dh_{prev} = gpre[s] @ w_hh
        mm(&mut dh, gp, false, w_hh, false, n, h, g, false);
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
