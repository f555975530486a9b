//! Flash attention (Dao et al. 2022) on the CPU: forward and backward.
//!
//! Each (batch, head) pair is one rayon task. Inside, query tiles of `BQ` rows meet key
//! tiles of `BK` rows; the tile products (scores, P @ V, and the four backward products)
//! are `gemm` calls on the tiles in place (transposes read through strides). The forward
//! keeps a running row max and sum (online softmax) and saves only the log-sum-exp per
//! row; the backward recomputes each score tile from q, k and the lse. Extra memory: a
//! few tiles per task, plus per-head key/value gradients that are summed over the query
//! heads of a group (grouped-query attention) — linear in the lengths.

use super::AttnDims;
use crate::alloc::zeroed;
use crate::error::Result;
use crate::ops::map::{detect_isa, wide};
use crate::real::Real;
use crate::safe_gemm::{self, Operand};
use gemm::Parallelism;
use rayon::prelude::*;

const BQ: usize = 128;
const BK: usize = 256;

/// dst (m x n, row stride `dst_rs`, column stride 1) := (acc ? dst : 0) + a @ b, with a
/// read at a[i * a_rs + p * a_cs] and b at b[p * b_rs + j * b_cs]; single-threaded (the
/// parallelism is over heads).
#[allow(clippy::too_many_arguments)]
/// The (bq, bk) tile of raw scores q k^T (q and k rows of length d, row-major), with
/// overflowing products summed exactly: a score whose float32 terms overflow (|q|, |k|
/// ~ 1e28) would otherwise be +inf, -inf or NaN by the GEMM's order; each non-finite
/// score of NaN-free rows is recomputed in f64 (the rule of `ops::linear::exact_nonfinite`,
/// and of the numpy reference). Costs one scan of the tile when nothing overflows.
fn score_tile<T: Real>(bq: usize, bk: usize, d: usize, st: &mut [T], q: &[T], k: &[T]) {
    gemm_tile(bq, bk, d, st, bk, false, q, 1, d, k, d, 1);
    if st[..bq * bk].iter().all(|v| v.is_finite_()) {
        return;
    }
    for r in 0..bq {
        let qr = &q[r * d..(r + 1) * d];
        if qr.iter().any(|v| v.is_nan_()) {
            continue;
        }
        for c in 0..bk {
            let sv = &mut st[r * bk + c];
            if sv.is_finite_() {
                continue;
            }
            let kr = &k[c * d..(c + 1) * d];
            if kr.iter().any(|v| v.is_nan_()) {
                continue;
            }
            *sv = T::c(qr.iter().zip(kr).map(|(a, b)| a.to_f64() * b.to_f64()).sum::<f64>());
        }
    }
}

fn gemm_tile<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    acc: bool,
    a: &[T],
    a_cs: usize,
    a_rs: usize,
    b: &[T],
    b_cs: usize,
    b_rs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].iter_mut().for_each(|x| *x = T::ZERO);
            }
        }
        return;
    }
    // every index the GEMM touches is checked against the slices by safe_gemm
    let (a, b) = (Operand::strided(a, a_rs, a_cs), Operand::strided(b, b_rs, b_cs));
    safe_gemm::gemm(m, n, k, dst, dst_rs, acc, a, b, Parallelism::None);
}

/// max(init, row) with 8 independent lanes, so that LLVM vectorizes it (a single
/// running max is a dependency chain). NaN wins (`v != v` takes it, and nothing is
/// greater than a NaN lane afterwards), as in torch.max: a row holding a NaN score must
/// not look fully hidden (max -inf) and come out as 0.
#[inline]
fn row_max<T: Real>(row: &[T], init: T) -> T {
    let mut lanes = [init; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            #[allow(clippy::eq_op)]
            let nan = v != v;
            *l = if v > *l || nan { v } else { *l };
        }
    }
    let mut mx = init;
    for &v in lanes.iter().chain(chunks.remainder()) {
        #[allow(clippy::eq_op)]
        if v > mx || v != v {
            mx = v;
        }
    }
    mx
}

/// The sum of `row` over 8 independent lanes (vectorizes; the order differs from a
/// left-to-right sum only by rounding).
#[inline]
fn lane_sum<T: Real>(row: &[T]) -> T {
    let mut lanes = [T::ZERO; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    let mut s = T::ZERO;
    for &v in lanes.iter().chain(chunks.remainder()) {
        s += v;
    }
    s
}

/// The inputs of one (batch, head): q (Lq, D), k (Lk, D), v (Lk, Dv), mask (Lq, Lk).
struct Head<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    mask: Option<&'a [T]>,
}

fn head<'a, T: Real>(
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    mask: Option<&'a [T]>,
    dims: &AttnDims,
    bh: usize,
) -> Head<'a, T> {
    let (b, h) = (bh / dims.h, bh % dims.h);
    let hk = h / (dims.h / dims.hk);
    let kv = b * dims.hk + hk;
    let (lq, lk, d, dv) = (dims.lq, dims.lk, dims.d, dims.dv);
    Head {
        q: &q[bh * lq * d..(bh + 1) * lq * d],
        k: &k[kv * lk * d..(kv + 1) * lk * d],
        v: &v[kv * lk * dv..(kv + 1) * lk * dv],
        mask: mask.map(|m| {
            let o = dims.mask_offset(b, h);
            &m[o..o + lq * lk]
        }),
    }
}

/// s[r, c] := scale * s[r, c] + mask[i0 + r, j0 + c], -inf where causal hides the key.
#[allow(clippy::too_many_arguments)]
#[inline]
fn finish_scores<T: Real>(
    s: &mut [T],
    bq: usize,
    bk: usize,
    i0: usize,
    j0: usize,
    lk: usize,
    scale: T,
    mask: Option<&[T]>,
    causal: bool,
) {
    let neg_inf = T::c(f64::NEG_INFINITY);
    for r in 0..bq {
        let row = &mut s[r * bk..(r + 1) * bk];
        row.iter_mut().for_each(|x| *x *= scale);
        if let Some(m) = mask {
            let mr = &m[(i0 + r) * lk + j0..(i0 + r) * lk + j0 + bk];
            row.iter_mut().zip(mr).for_each(|(x, &a)| *x += a);
        }
        if causal {
            let first_hidden = (i0 + r + 1).saturating_sub(j0).min(bk);
            row[first_hidden..].iter_mut().for_each(|x| *x = neg_inf);
        }
    }
}

// tiles on the heap: BQ * BK f64 values would crowd a rayon worker's stack
#[allow(clippy::useless_vec)]
/// Writes one (batch, head)'s out (Lq, Dv; zero on entry) and lse (Lq).
fn head_forward<T: Real>(x: &Head<T>, dims: &AttnDims, scale: T, causal: bool, out: &mut [T], lse: &mut [T]) {
    let (lq, lk, d, dv) = (dims.lq, dims.lk, dims.d, dims.dv);
    let neg_inf = T::c(f64::NEG_INFINITY);
    let isa = detect_isa();
    let mut s = vec![T::ZERO; BQ * BK];
    let mut m = [neg_inf; BQ];
    let mut l = [T::ZERO; BQ];
    for i0 in (0..lq).step_by(BQ) {
        let bq = BQ.min(lq - i0);
        m[..bq].iter_mut().for_each(|v| *v = neg_inf);
        l[..bq].iter_mut().for_each(|v| *v = T::ZERO);
        let acc = &mut out[i0 * dv..(i0 + bq) * dv];
        let kend = if causal { lk.min(i0 + bq) } else { lk };
        for j0 in (0..kend).step_by(BK) {
            let bk = BK.min(lk - j0);
            let st = &mut s[..bq * bk];
            score_tile(bq, bk, d, st, &x.q[i0 * d..], &x.k[j0 * d..]);
            // the score passes run with 16 AVX-512 lanes where the CPU has them
            wide(isa, || {
                finish_scores(st, bq, bk, i0, j0, lk, scale, x.mask, causal);
                for r in 0..bq {
                    let row = &mut st[r * bk..(r + 1) * bk];
                    let mx = row_max(row, m[r]);
                    if mx == neg_inf {
                        // every key so far hidden: nothing to add
                        row.iter_mut().for_each(|v| *v = T::ZERO);
                        continue;
                    }
                    row.iter_mut().for_each(|v| *v = (*v - mx).exp_()); // a map: vectorizes
                    let sum = lane_sum(row);
                    let corr = (m[r] - mx).exp_(); // 0 when m was -inf
                    l[r] = l[r] * corr + sum;
                    m[r] = mx;
                    if corr != T::ONE {
                        acc[r * dv..(r + 1) * dv].iter_mut().for_each(|a| *a *= corr);
                    }
                }
            });
            gemm_tile(bq, dv, bk, acc, dv, true, st, 1, bk, &x.v[j0 * dv..], 1, dv);
        }
        for r in 0..bq {
            let row = &mut acc[r * dv..(r + 1) * dv];
            if l[r] > T::ZERO {
                let inv = T::ONE / l[r];
                row.iter_mut().for_each(|a| *a *= inv);
                lse[i0 + r] = m[r] + l[r].ln_();
                if row.iter().any(|a| !a.is_finite_()) && l[r].is_finite_() {
                    exact_output_row(x, dims, scale, causal, (i0 + r, kend), (m[r], inv), row);
                }
            } else if l[r].is_nan_() {
                // a NaN or +inf score (inf - inf in the exponent): PyTorch's softmax gives
                // NaN for the whole row, and so does the lse the backward reads
                row.iter_mut().for_each(|a| *a = T::c(f64::NAN));
                lse[i0 + r] = T::c(f64::NAN);
            } else {
                row.iter_mut().for_each(|a| *a = T::ZERO);
                lse[i0 + r] = neg_inf;
            }
        }
    }
}

/// One output row recomputed as sum_j p_j v_j with p_j = exp(s_j - m) / l rounded to T
/// (the reference's normalized softmax) and the sum in f64, rounded once. The online pass
/// sums exp(s_j - m) v_j before dividing by l >= 1, so values near float32's max overflow
/// there although the average of them does not. Runs only for a row that came out
/// non-finite (a +-inf or NaN in v stays so: inf * p is inf in f64 too).
fn exact_output_row<T: Real>(
    x: &Head<T>,
    dims: &AttnDims,
    scale: T,
    causal: bool,
    (i, kend): (usize, usize),
    (m, inv_l): (T, T),
    out: &mut [T],
) {
    let (lk, d, dv) = (dims.lk, dims.d, dims.dv);
    let mut s = vec![T::ZERO; BK];
    let mut acc = vec![0f64; dv];
    for j0 in (0..kend).step_by(BK) {
        let bk = BK.min(lk - j0);
        let st = &mut s[..bk];
        score_tile(1, bk, d, st, &x.q[i * d..], &x.k[j0 * d..]);
        finish_scores(st, 1, bk, i, j0, lk, scale, x.mask, causal);
        for (c, &sv) in st.iter().enumerate() {
            let p = ((sv - m).exp_() * inv_l).to_f64(); // 0 for a hidden key, as in p @ v
            let vr = &x.v[(j0 + c) * dv..(j0 + c + 1) * dv];
            acc.iter_mut().zip(vr).for_each(|(a, &v)| *a += p * v.to_f64());
        }
    }
    out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = T::c(a));
}

/// (out (B, H, Lq, Dv), lse (B, H, Lq)) of softmax(scale * q k^T + mask) v.
pub fn forward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[T]>,
    dims: AttnDims,
    scale: T,
    causal: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    dims.check(q.len(), k.len(), v.len(), mask.map(|m| m.len()))?;
    // each head writes its rows of the outputs in place (no per-head buffers to gather)
    let mut out = zeroed::<T>(dims.b * dims.h * dims.lq * dims.dv, "scaled_dot_product_attention")?;
    let mut lse = zeroed::<T>(dims.b * dims.h * dims.lq, "scaled_dot_product_attention")?;
    let bh = dims.b * dims.h;
    blocks(&mut out, dims.lq * dims.dv, bh)
        .into_par_iter()
        .zip(blocks(&mut lse, dims.lq, bh))
        .enumerate()
        .for_each(|(i, (o, l))| head_forward(&head(q, k, v, mask, &dims, i), &dims, scale, causal, o, l));
    Ok((out, lse))
}

/// (gq (Lq, D), gk (Lk, D), gv (Lk, Dv)) of one (batch, head).
#[allow(clippy::useless_vec)]
fn head_backward<T: Real>(
    x: &Head<T>,
    dims: &AttnDims,
    scale: T,
    causal: bool,
    out: &[T],
    lse: &[T],
    gout: &[T],
    (gq, gk, gv): (&mut [T], &mut [T], &mut [T]),
) {
    let (lq, lk, d, dv) = (dims.lq, dims.lk, dims.d, dims.dv);
    let neg_inf = T::c(f64::NEG_INFINITY);
    // delta_i = sum_c gout[i, c] out[i, c] = sum_j p_ij dp_ij
    let delta: Vec<T> = (0..lq)
        .map(|i| {
            let mut acc = T::ZERO;
            for c in 0..dv {
                acc += gout[i * dv + c] * out[i * dv + c];
            }
            acc
        })
        .collect();
    let isa = detect_isa();
    let mut p = vec![T::ZERO; BQ * BK];
    let mut dp = vec![T::ZERO; BQ * BK];
    let mut exact = ExactRows { m: [neg_inf; BQ], inv_l: [T::ZERO; BQ], delta: [T::ZERO; BQ] };
    for i0 in (0..lq).step_by(BQ) {
        let bq = BQ.min(lq - i0);
        let kend = if causal { lk.min(i0 + bq) } else { lk };
        let go = &gout[i0 * dv..];
        let use_exact = lse[i0..i0 + bq].iter().any(|&li| lse_too_coarse(li));
        if use_exact {
            exact_rows(x, dims, scale, causal, (i0, bq, kend), go, (&mut p, &mut dp), &mut exact);
        }
        for j0 in (0..kend).step_by(BK) {
            let bk = BK.min(lk - j0);
            let pt = &mut p[..bq * bk];
            score_tile(bq, bk, d, pt, &x.q[i0 * d..], &x.k[j0 * d..]);
            wide(isa, || {
                finish_scores(pt, bq, bk, i0, j0, lk, scale, x.mask, causal);
                for r in 0..bq {
                    let row = &mut pt[r * bk..(r + 1) * bk];
                    // hidden keys (-inf) get p = 0 even in a NaN row (whose lse is NaN)
                    if use_exact {
                        let (mr, inv) = (exact.m[r], exact.inv_l[r]);
                        if mr == neg_inf {
                            row.iter_mut().for_each(|v| *v = T::ZERO);
                        } else {
                            row.iter_mut()
                                .for_each(|v| *v = if *v == neg_inf { T::ZERO } else { (*v - mr).exp_() * inv });
                        }
                        continue;
                    }
                    let li = lse[i0 + r];
                    if li == neg_inf {
                        row.iter_mut().for_each(|v| *v = T::ZERO);
                    } else {
                        row.iter_mut().for_each(|v| *v = if *v == neg_inf { T::ZERO } else { (*v - li).exp_() });
                    }
                }
            });
            // gv_j += p^T @ gout_i
            gemm_tile(bk, dv, bq, &mut gv[j0 * dv..], dv, true, pt, bk, 1, go, 1, dv);
            // dp = gout_i @ v_j^T
            let dpt = &mut dp[..bq * bk];
            gemm_tile(bq, bk, dv, dpt, bk, false, go, 1, dv, &x.v[j0 * dv..], dv, 1);
            // ds = scale * p * (dp - delta), stored in dp
            wide(isa, || for r in 0..bq {
                let dl = if use_exact { exact.delta[r] } else { delta[i0 + r] };
                let (dr, pr) = (&mut dpt[r * bk..(r + 1) * bk], &pt[r * bk..(r + 1) * bk]);
                let hidden = if use_exact { exact.m[r] == neg_inf } else { lse[i0 + r] == neg_inf };
                if hidden {
                    // every key hidden: the output is the constant 0, so no gradient (not
                    // 0 * a NaN dp from a NaN v)
                    dr.iter_mut().for_each(|v| *v = T::ZERO);
                } else {
                    dr.iter_mut().zip(pr).for_each(|(dv_, &pv)| *dv_ = scale * pv * (*dv_ - dl));
                }
            });
            // gq_i += ds @ k_j ; gk_j += ds^T @ q_i
            gemm_tile(bq, d, bk, &mut gq[i0 * d..], d, true, dpt, 1, bk, &x.k[j0 * d..], 1, d);
            gemm_tile(bk, d, bq, &mut gk[j0 * d..], d, true, dpt, bk, 1, &x.q[i0 * d..], 1, d);
        }
    }
}

/// Per-row softmax statistics of one query tile, recomputed by the backward (see
/// `lse_too_coarse`): the row max, 1 / (sum of exp(s - max)) and delta = sum_j p dp.
struct ExactRows<T> {
    m: [T; BQ],
    inv_l: [T; BQ],
    delta: [T; BQ],
}

/// Whether exp(s - lse) would mis-normalize a row: lse = max + ln(sum) is one number of
/// T, and once |lse| is large (1e30 scores: ulp 7e22) ln(sum) is rounded away, so rows
/// of identical keys sum to their key count. Such rows get their max and sum recomputed
/// (one more pass over the keys); all others keep the one-pass flash backward.
#[inline]
fn lse_too_coarse<T: Real>(li: T) -> bool {
    let eps = if std::mem::size_of::<T>() == 4 { f32::EPSILON as f64 } else { f64::EPSILON };
    let a = li.to_f64().abs();
    a.is_finite() && a * eps > 1.0 / 1024.0
}

/// Fills `ex` for query rows i0..i0+bq by an online pass over the key tiles up to
/// `kend`: the max and sum as the forward computed them, and delta = sum_j p_ij dp_ij
/// from the same dp tiles the main pass multiplies (not rowsum(gout * out)), so a
/// one-hot row (|scores| ~ 1e30) has dp - delta exactly 0 and zero gradients, as
/// PyTorch's math path gives, instead of a rounding difference times 1e30.
#[allow(clippy::too_many_arguments)]
fn exact_rows<T: Real>(
    x: &Head<T>,
    dims: &AttnDims,
    scale: T,
    causal: bool,
    (i0, bq, kend): (usize, usize, usize),
    go: &[T],
    (p, dp): (&mut [T], &mut [T]),
    ex: &mut ExactRows<T>,
) {
    let (lk, d, dv) = (dims.lk, dims.d, dims.dv);
    let neg_inf = T::c(f64::NEG_INFINITY);
    let mut l = [T::ZERO; BQ];
    let mut dl = [T::ZERO; BQ];
    ex.m[..bq].iter_mut().for_each(|v| *v = neg_inf);
    for j0 in (0..kend).step_by(BK) {
        let bk = BK.min(lk - j0);
        let (pt, dpt) = (&mut p[..bq * bk], &mut dp[..bq * bk]);
        score_tile(bq, bk, d, pt, &x.q[i0 * d..], &x.k[j0 * d..]);
        finish_scores(pt, bq, bk, i0, j0, lk, scale, x.mask, causal);
        gemm_tile(bq, bk, dv, dpt, bk, false, go, 1, dv, &x.v[j0 * dv..], dv, 1);
        for r in 0..bq {
            let (row, dr) = (&pt[r * bk..(r + 1) * bk], &dpt[r * bk..(r + 1) * bk]);
            let mx = row_max(row, ex.m[r]);
            if mx == neg_inf {
                continue;
            }
            let corr = (ex.m[r] - mx).exp_();
            let (mut sl, mut sd) = (T::ZERO, T::ZERO);
            for (&v, &g) in row.iter().zip(dr) {
                if v != neg_inf {
                    let e = (v - mx).exp_();
                    sl += e;
                    sd += e * g;
                } else {
                    // a hidden key's p is 0, but 0 * a NaN dp (NaN in v) is NaN here as in
                    // the forward's p @ v and in rowsum(gout * out): PyTorch's answer
                    sd += T::ZERO * g;
                }
            }
            l[r] = l[r] * corr + sl;
            dl[r] = dl[r] * corr + sd;
            ex.m[r] = mx;
        }
    }
    for r in 0..bq {
        let inv = if l[r] > T::ZERO { T::ONE / l[r] } else { T::ZERO };
        ex.inv_l[r] = if l[r].is_nan_() { l[r] } else { inv };
        ex.delta[r] = dl[r] * ex.inv_l[r];
    }
}

/// The gradients of a float32 head that overflow, recomputed in float64 end to end (the
/// forward's statistics included) and rounded once. Terms such as ds * q of 1e25-1e30
/// values overflow float32 in an order-dependent way (+inf, -inf or NaN by tile and lane
/// order); in float64 they do not, so the answer is the exact one, the numpy reference's
/// (`_attention.plain_backward` does the same). Only heads with a non-finite gradient pay.
fn exact_head_backward<T: Real>(
    x: &Head<T>,
    dims: &AttnDims,
    scale: T,
    causal: bool,
    gout: &[T],
    (gq, gk, gv): (&mut [T], &mut [T], &mut [T]),
) {
    let up = |s: &[T]| s.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
    let (q, k, v, go) = (up(x.q), up(x.k), up(x.v), up(gout));
    let mask = x.mask.map(up);
    let x64 = Head { q: &q, k: &k, v: &v, mask: mask.as_deref() };
    let (mut out, mut lse) = (vec![0f64; dims.lq * dims.dv], vec![0f64; dims.lq]);
    head_forward(&x64, dims, scale.to_f64(), causal, &mut out, &mut lse);
    let (mut a, mut b, mut c) = (vec![0f64; gq.len()], vec![0f64; gk.len()], vec![0f64; gv.len()]);
    head_backward(&x64, dims, scale.to_f64(), causal, &out, &lse, &go, (&mut a, &mut b, &mut c));
    for (dst, src) in [(gq, &a), (gk, &b), (gv, &c)] {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = T::c(s));
    }
}

/// `v` cut into `n` consecutive blocks of `len` elements (`len` may be 0).
fn blocks<T>(mut v: &mut [T], len: usize, n: usize) -> Vec<&mut [T]> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (head, rest) = std::mem::take(&mut v).split_at_mut(len);
        out.push(head);
        v = rest;
    }
    out
}

/// (gq, gk, gv) of `forward` for the output gradient `gout`, recomputing the scores.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[T]>,
    dims: AttnDims,
    scale: T,
    causal: bool,
    out: &[T],
    lse: &[T],
    gout: &[T],
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    dims.check(q.len(), k.len(), v.len(), mask.map(|m| m.len()))?;
    let (b, h, hk, lq, lk, d, dv) = (dims.b, dims.h, dims.hk, dims.lq, dims.lk, dims.d, dims.dv);
    for (name, got, n) in [("out", out.len(), b * h * lq * dv), ("lse", lse.len(), b * h * lq),
                           ("gout", gout.len(), b * h * lq * dv)] {
        if got != n {
            return crate::shape_err!("{name}: expected {n} elements for sizes {dims:?}, got {got}");
        }
    }
    let what = "scaled_dot_product_attention backward";
    let mut gq = zeroed::<T>(b * h * lq * d, what)?;
    let mut gk = zeroed::<T>(b * hk * lk * d, what)?;
    let mut gv = zeroed::<T>(b * hk * lk * dv, what)?;
    if b * h == 0 || lq == 0 {
        return Ok((gq, gk, gv));
    }
    let run = |bh: usize, (gq_, gk_, gv_): (&mut [T], &mut [T], &mut [T])| {
        let x = head(q, k, v, mask, &dims, bh);
        let go = &gout[bh * lq * dv..(bh + 1) * lq * dv];
        head_backward(&x, &dims, scale, causal, &out[bh * lq * dv..(bh + 1) * lq * dv],
                      &lse[bh * lq..(bh + 1) * lq], go, (&mut *gq_, &mut *gk_, &mut *gv_));
        let finite = |g: &[T]| g.iter().all(|v| v.is_finite_());
        if std::mem::size_of::<T>() == 4 && !(finite(gq_) && finite(gk_) && finite(gv_)) {
            exact_head_backward(&x, &dims, scale, causal, go, (gq_, gk_, gv_));
        }
    };
    if hk == h {
        // one query head per key/value head: every head writes its own gradient blocks in place
        blocks(&mut gq, lq * d, b * h)
            .into_par_iter()
            .zip(blocks(&mut gk, lk * d, b * h).into_par_iter().zip(blocks(&mut gv, lk * dv, b * h)))
            .enumerate()
            .for_each(|(bh, (gq_, (gk_, gv_)))| run(bh, (gq_, gk_, gv_)));
    } else {
        // grouped-query: per-head key/value gradients, summed over each group's query heads
        let parts: Vec<(Vec<T>, Vec<T>)> = blocks(&mut gq, lq * d, b * h)
            .into_par_iter()
            .enumerate()
            .map(|(bh, gq_)| {
                let (mut k_, mut v_) = (vec![T::ZERO; lk * d], vec![T::ZERO; lk * dv]);
                run(bh, (gq_, &mut k_, &mut v_));
                (k_, v_)
            })
            .collect();
        let group = h / hk;
        for (bh, (k_, v_)) in parts.into_iter().enumerate() {
            let kv = (bh / h) * hk + (bh % h) / group;
            gk[kv * lk * d..(kv + 1) * lk * d].iter_mut().zip(&k_).for_each(|(a, &g)| *a += g);
            gv[kv * lk * dv..(kv + 1) * lk * dv].iter_mut().zip(&v_).for_each(|(a, &g)| *a += g);
        }
    }
    Ok((gq, gk, gv))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// softmax(scale q k^T + mask) v row by row, in f64.
    fn naive(q: &[f64], k: &[f64], v: &[f64], mask: Option<&[f64]>, d: &AttnDims, scale: f64, causal: bool) -> Vec<f64> {
        let mut out = vec![0.0; d.b * d.h * d.lq * d.dv];
        for bh in 0..d.b * d.h {
            let x = head(q, k, v, mask, d, bh);
            for i in 0..d.lq {
                let s: Vec<f64> = (0..d.lk)
                    .map(|j| {
                        let mut t = 0.0;
                        for c in 0..d.d {
                            t += x.q[i * d.d + c] * x.k[j * d.d + c];
                        }
                        let t = t * scale + x.mask.map_or(0.0, |m| m[i * d.lk + j]);
                        if causal && j > i { f64::NEG_INFINITY } else { t }
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    continue;
                }
                let e: Vec<f64> = s.iter().map(|t| (t - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..d.lk {
                    for c in 0..d.dv {
                        out[(bh * d.lq + i) * d.dv + c] += e[j] / z * x.v[j * d.dv + c];
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn flash_matches_naive_across_tiles() {
        for &(b, h, hk, lq, lk, dd, dv, causal, masked) in &[
            (1, 2, 1, 70, 130, 8, 5, false, true),
            (2, 2, 2, 65, 65, 3, 3, true, false),
            (1, 1, 1, 1, 1, 4, 4, false, false),
            (1, 3, 3, 129, 7, 16, 16, false, true),
        ] {
            let dims = AttnDims { b, h, hk, lq, lk, d: dd, dv, mask_batch: false, mask_heads: true };
            let q = values(b * h * lq * dd, 1);
            let k = values(b * hk * lk * dd, 2);
            let v = values(b * hk * lk * dv, 3);
            let mut mask = values(dims.mask_len(), 4);
            mask.iter_mut().enumerate().for_each(|(i, m)| if i % 3 == 1 { *m = f64::NEG_INFINITY });
            let mask = if masked { Some(&mask[..]) } else { None };
            let (out, lse) = forward(&q, &k, &v, mask, dims, 0.5, causal).unwrap();
            let want = naive(&q, &k, &v, mask, &dims, 0.5, causal);
            for (a, e) in out.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "{a} vs {e} for {dims:?}");
            }
            let gout = values(out.len(), 5);
            let (gq, gk, gv) = backward(&q, &k, &v, mask, dims, 0.5, causal, &out, &lse, &gout).unwrap();
            assert_eq!((gq.len(), gk.len(), gv.len()), (q.len(), k.len(), v.len()));
            // directional derivative check on v: d<gout, out>/dv . dir
            let dir = values(v.len(), 6);
            let eps = 1e-6;
            let vp: Vec<f64> = v.iter().zip(&dir).map(|(a, b)| a + eps * b).collect();
            let vm: Vec<f64> = v.iter().zip(&dir).map(|(a, b)| a - eps * b).collect();
            let f = |vv: &[f64]| -> f64 {
                naive(&q, &k, vv, mask, &dims, 0.5, causal).iter().zip(&gout).map(|(a, b)| a * b).sum()
            };
            let num = (f(&vp) - f(&vm)) / (2.0 * eps);
            let ana: f64 = gv.iter().zip(&dir).map(|(a, b)| a * b).sum();
            assert!((num - ana).abs() < 1e-6 * (1.0 + num.abs()), "{num} vs {ana}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let dims = AttnDims { b: 1, h: 3, hk: 2, lq: 2, lk: 2, d: 2, dv: 2, mask_batch: false, mask_heads: false };
        assert!(forward(&[0.0f32; 12], &[0.0; 8], &[0.0; 8], None, dims, 1.0, false).is_err());
        let dims = AttnDims { hk: 1, ..dims };
        assert!(forward(&[0.0f32; 11], &[0.0; 4], &[0.0; 4], None, dims, 1.0, false).is_err());
        assert!(forward(&[0.0f32; 12], &[0.0; 4], &[0.0; 4], Some(&[0.0; 3]), dims, 1.0, false).is_err());
    }

    #[test]
    fn fully_hidden_rows_are_zero() {
        let dims = AttnDims { b: 1, h: 1, hk: 1, lq: 2, lk: 3, d: 2, dv: 2, mask_batch: false, mask_heads: false };
        let ninf = f64::NEG_INFINITY;
        let mask = [0.0, ninf, 0.0, ninf, ninf, ninf];
        let (q, k, v) = (values(4, 1), values(6, 2), values(6, 3));
        let (out, lse) = forward(&q, &k, &v, Some(&mask), dims, 1.0, false).unwrap();
        assert_eq!(&out[2..], &[0.0, 0.0]);
        assert_eq!(lse[1], ninf);
        let (gq, _, _) = backward(&q, &k, &v, Some(&mask), dims, 1.0, false, &out, &lse, &[1.0; 4]).unwrap();
        assert_eq!(&gq[2..], &[0.0, 0.0]);
        assert!(gq.iter().all(|g| g.is_finite()));
    }
}
