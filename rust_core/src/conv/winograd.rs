//! Winograd convolution for 3x3 kernels, stride 1, dilation 1 (any padding, groups):
//! F(2x2, 3x3) (4x4 input tiles, 16 transform points) and F(4x4, 3x3) (6x6 tiles, 36
//! points), Lavin & Gray 2015.
//!
//! One m x m output tile is Y = A^T [(G w G^T) .* (B^T d B)] A for the alpha x alpha input
//! patch d (alpha = m + 2). Per transform point the products over channels are a GEMM, so
//! a block of tiles runs as: gather the patches and transform them (V: points x C x tiles),
//! one GEMM per point and group (M = U @ V, the `gemm` crate single-threaded), transform
//! back and write the tiles. Blocks of ~`BLOCK_TILES` tiles (whole tile rows of one image)
//! keep V and M in L2; rayon runs blocks in parallel. The transforms work on all tiles of
//! a block at once (`apply2d`), so their inner loops are vector loops over tiles.
//!
//! Backward:
//! * input gradient: gx is the 3x3 stride-1 correlation of gy with the kernel flipped and
//!   its in/out channels swapped, padded by 2 - padding (negative = cropped), so it runs
//!   through the same forward code;
//! * weight gradient: the transposed algorithm. With T(gy, w, d) = sum_tiles <gy_tile,
//!   Y(w, d)> = sum_points (A gy A^T) .* U .* V, dT/dw = G^T [sum_tiles (A gy A^T) .* V] G:
//!   per point one GEMM that reduces over the tiles (GY_hat @ V^T), then one small
//!   transform of the (O, C/G) sums. Same transforms of x as the forward, 4x (F(4,3)) or
//!   2.25x (F(2,3)) fewer multiplies than im2col's dW GEMM.
//!
//! Accuracy: F(4,3)'s points (0, +-1, +-2, +-1/2) amplify rounding ~10x over a direct
//! sum; F(2,3) is as exact as im2col. Measured in f32 at 4x64x56x56, 64 3x3 filters
//! (max |error| / max |value| against float64): im2col 6e-7 / 2e-7 / 4e-7 (y / gx / gw),
//! F(2,3) 4e-7 / 4e-7 / 4e-7, F(4,3) 7e-6 / 6e-6 / 3e-6.

use super::{ConvGrads, Geom};
use crate::alloc::zeroed;
use crate::error::Result;
use crate::real::Real;
use crate::safe_gemm::{self, Operand};
use crate::value_err;
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::Mutex;

/// The most runs of blocks the weight gradient sums separately (see `weight_grad`).
const GW_CHUNKS: usize = 64;

/// The output tile size: F(2x2, 3x3) or F(4x4, 3x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinoTile {
    F2,
    F4,
}

/// Tiles per block: 64 tiles of F(4,3) with 64 channels make V and M 590 KB each.
const BLOCK_TILES: usize = 64;

#[cfg(test)] // the matrices bt2.. are written out from; checked there
#[rustfmt::skip]
const F2_BT: [f64; 16] = [
    1.0, 0.0, -1.0, 0.0,
    0.0, 1.0, 1.0, 0.0,
    0.0, -1.0, 1.0, 0.0,
    0.0, 1.0, 0.0, -1.0,
];
#[rustfmt::skip]
const F2_G: [f64; 12] = [
    1.0, 0.0, 0.0,
    0.5, 0.5, 0.5,
    0.5, -0.5, 0.5,
    0.0, 0.0, 1.0,
];
#[cfg(test)] // the matrices bt2.. are written out from; checked there
#[rustfmt::skip]
const F2_AT: [f64; 8] = [
    1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, -1.0,
];
#[cfg(test)] // the matrices bt2.. are written out from; checked there
#[rustfmt::skip]
const F4_BT: [f64; 36] = [
    4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
    0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
    0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
    0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
    0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
    0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
];
#[rustfmt::skip]
const F4_G: [f64; 18] = [
    1.0 / 4.0, 0.0, 0.0,
    -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
    -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
    1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
    1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
    0.0, 0.0, 1.0,
];
#[cfg(test)] // the matrices bt2.. are written out from; checked there
#[rustfmt::skip]
const F4_AT: [f64; 24] = [
    1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
    0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
];

/// The transform matrices of one tile size, row-major, in T.
struct Transforms<T> {
    tile: WinoTile,
    m: usize,
    alpha: usize,
    /// alpha x 3: U = G w G^T
    g: Vec<T>,
    /// 3 x alpha: dW = G^T S G
    gt: Vec<T>,
}

fn transpose(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols * rows)
        .map(|i| v[(i % rows) * cols + i / rows])
        .collect()
}

impl<T: Real> Transforms<T> {
    fn new(tile: WinoTile) -> Self {
        let (m, g): (usize, &[f64]) = match tile {
            WinoTile::F2 => (2, &F2_G),
            WinoTile::F4 => (4, &F4_G),
        };
        let alpha = m + 2;
        let cv = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
        Transforms {
            tile,
            m,
            alpha,
            g: cv(g),
            gt: cv(&transpose(g, alpha, 3)),
        }
    }
}

/// out[(i p + j) os + t] = sum_{r,s} l[i][r] l[j][s] inp[(r q + s) is + t], t < nt, for the
/// p x q matrix l (both axes of a q x q grid of points, for nt tiles at once). `tmp` holds
/// p * q * nt values. Zero coefficients are skipped (the transforms are sparse).
#[allow(clippy::too_many_arguments)]
fn apply2d<T: Real>(
    l: &[T],
    p: usize,
    q: usize,
    inp: &[T],
    is: usize,
    out: &mut [T],
    os: usize,
    nt: usize,
    tmp: &mut [T],
) {
    for i in 0..p {
        for s in 0..q {
            let terms = (0..q).map(|r| (l[i * q + r], &inp[(r * q + s) * is..][..nt]));
            combine(&mut tmp[(i * q + s) * nt..][..nt], terms);
        }
    }
    for i in 0..p {
        for j in 0..p {
            let terms = (0..q).map(|s| (l[j * q + s], &tmp[(i * q + s) * nt..][..nt]));
            combine(&mut out[(i * p + j) * os..][..nt], terms);
        }
    }
}

/// dst = sum of c * src over the terms, skipping zero coefficients (the transform
/// matrices are sparse).
#[inline(always)]
fn combine<'a, T: Real + 'a>(dst: &mut [T], terms: impl Iterator<Item = (T, &'a [T])>) {
    dst.iter_mut().for_each(|v| *v = T::ZERO);
    for (c, src) in terms {
        if c != T::ZERO {
            dst.iter_mut().zip(src).for_each(|(d, &x)| *d += c * x);
        }
    }
}

// The 1-D transforms written out (the generic `apply2d` multiplies by every zero and
// makes a memory pass per coefficient; these make one pass and no wasted flops).
#[inline(always)]
fn bt2<T: Real>(d: [T; 4]) -> [T; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}
#[inline(always)]
fn at2<T: Real>(m: [T; 4]) -> [T; 2] {
    [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
}
#[inline(always)]
fn a2<T: Real>(y: [T; 2]) -> [T; 4] {
    [y[0], y[0] + y[1], y[0] - y[1], -y[1]]
}
#[inline(always)]
fn bt4<T: Real>(d: [T; 6]) -> [T; 6] {
    let (c2, c4, c5) = (T::c(2.0), T::c(4.0), T::c(5.0));
    let (p, q) = (d[4] - c4 * d[2], d[3] - c4 * d[1]);
    let (r, s) = (d[4] - d[2], c2 * (d[3] - d[1]));
    [
        c4 * d[0] - c5 * d[2] + d[4],
        p + q,
        p - q,
        r + s,
        r - s,
        c4 * d[1] - c5 * d[3] + d[5],
    ]
}
#[inline(always)]
fn at4<T: Real>(m: [T; 6]) -> [T; 4] {
    let (c2, c4, c8) = (T::c(2.0), T::c(4.0), T::c(8.0));
    let (s1, d1, s2, d2) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
    [
        m[0] + s1 + s2,
        d1 + c2 * d2,
        s1 + c4 * s2,
        d1 + c8 * d2 + m[5],
    ]
}
#[inline(always)]
fn a4<T: Real>(y: [T; 4]) -> [T; 6] {
    let (c2, c4, c8) = (T::c(2.0), T::c(4.0), T::c(8.0));
    let (e, o) = (y[0] + y[2], y[1] + y[3]);
    let (e2, o2) = (y[0] + c4 * y[2], c2 * y[1] + c8 * y[3]);
    [y[0], e + o, e - o, e2 + o2, e2 - o2, y[3]]
}

/// dst[i dst_st + t] = f(src[0 src_st + t], .., src[(Q-1) src_st + t])[i] for t < nt:
/// one pass, vectorized over t.
#[inline(always)]
fn rows1d<T: Real, const Q: usize, const P: usize>(
    f: impl Fn([T; Q]) -> [T; P],
    src: &[T],
    src_st: usize,
    dst: &mut [T],
    dst_st: usize,
    nt: usize,
) {
    assert!(src.len() >= (Q - 1) * src_st + nt && dst.len() >= (P - 1) * dst_st + nt);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for t in 0..nt {
        // SAFETY: the indices are within the lengths asserted above.
        unsafe {
            let v: [T; Q] = std::array::from_fn(|r| *sp.add(r * src_st + t));
            let o = f(v);
            for (i, &x) in o.iter().enumerate() {
                *dp.add(i * dst_st + t) = x;
            }
        }
    }
}

/// `apply2d` with the 1-D transform `f` (Q points in, P out) on both axes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn apply2d_fn<T: Real, const Q: usize, const P: usize>(
    f: impl Fn([T; Q]) -> [T; P] + Copy,
    inp: &[T],
    is: usize,
    out: &mut [T],
    os: usize,
    nt: usize,
    tmp: &mut [T],
) {
    // tmp[(i Q + s) nt + t] = f over r of inp[(r Q + s) is + t]
    for s in 0..Q {
        rows1d(f, &inp[s * is..], Q * is, &mut tmp[s * nt..], Q * nt, nt);
    }
    // out[(i P + j) os + t] = f over s of tmp[(i Q + s) nt + t]
    for i in 0..P {
        rows1d(f, &tmp[i * Q * nt..], nt, &mut out[i * P * os..], os, nt);
    }
}

/// The three per-tile transforms of the hot loops, by tile size.
#[derive(Clone, Copy)]
enum Pass {
    /// B^T d B (alpha^2 in, alpha^2 out)
    Input,
    /// A^T M A (alpha^2 in, m^2 out)
    Output,
    /// A gy A^T (m^2 in, alpha^2 out)
    GradOut,
}

#[allow(clippy::too_many_arguments)]
fn transform<T: Real>(
    tile: WinoTile,
    pass: Pass,
    inp: &[T],
    is: usize,
    out: &mut [T],
    os: usize,
    nt: usize,
    tmp: &mut [T],
) {
    match (tile, pass) {
        (WinoTile::F2, Pass::Input) => apply2d_fn(bt2::<T>, inp, is, out, os, nt, tmp),
        (WinoTile::F2, Pass::Output) => apply2d_fn(at2::<T>, inp, is, out, os, nt, tmp),
        (WinoTile::F2, Pass::GradOut) => apply2d_fn(a2::<T>, inp, is, out, os, nt, tmp),
        (WinoTile::F4, Pass::Input) => apply2d_fn(bt4::<T>, inp, is, out, os, nt, tmp),
        (WinoTile::F4, Pass::Output) => apply2d_fn(at4::<T>, inp, is, out, os, nt, tmp),
        (WinoTile::F4, Pass::GradOut) => apply2d_fn(a4::<T>, inp, is, out, os, nt, tmp),
    }
}

/// A pointer that rayon tasks may share: each task writes a disjoint part.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

/// The stride-1 3x3 correlation that every pass runs: x (N, C, H, W) read at
/// (row - ph, col - pw) with zeros outside, y (N, O, OH, OW).
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    groups: usize,
    ph: isize,
    pw: isize,
    oh: usize,
    ow: usize,
    /// tile rows / columns per image, tile rows per block
    th: usize,
    tw: usize,
    rows: usize,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        m: usize,
        n: usize,
        c: usize,
        (h, w): (usize, usize),
        o: usize,
        groups: usize,
        (ph, pw): (isize, isize),
        (oh, ow): (usize, usize),
    ) -> Plan {
        let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
        let rows = (BLOCK_TILES / tw.max(1)).clamp(1, th.max(1));
        Plan {
            n,
            c,
            h,
            w,
            o,
            groups,
            ph,
            pw,
            oh,
            ow,
            th,
            tw,
            rows,
        }
    }
    /// (image, first tile row, tile rows) of every block
    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        for n in 0..self.n {
            let mut r = 0;
            while r < self.th {
                let k = self.rows.min(self.th - r);
                v.push((n, r, k));
                r += k;
            }
        }
        v
    }
}

/// One thread's buffers: gathered patches, the transform's temporary, V, M (or GY_hat),
/// the output tiles (or gy patches) and a padded input row (the weight gradient's sums
/// live per run of blocks, see `weight_grad`). Allocated once per thread and call, not per rayon job:
/// fresh megabyte buffers cost a page fault per 4 KiB.
struct Scratch<T> {
    patch: Vec<T>,
    tmp: Vec<T>,
    v: Vec<T>,
    mm: Vec<T>,
    small: Vec<T>,
    row: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(tf: &Transforms<T>, p: &Plan, ch_out: usize) -> Result<Self> {
        let nt = p.rows * p.tw;
        let a2 = tf.alpha * tf.alpha;
        // sizes from the caller's shape (a padding of 10**6 makes rows of 5e5 tiles):
        // fallible, and with checked products
        let z = |dims: &[usize]| {
            crate::alloc::checked_numel(dims, "conv2d (winograd workspace)")
                .and_then(|n| zeroed::<T>(n, "conv2d (winograd workspace)"))
        };
        Ok(Scratch {
            patch: z(&[a2, nt])?,
            tmp: z(&[a2, nt])?,
            v: z(&[a2, p.c, nt])?,
            mm: z(&[a2, ch_out, nt])?,
            small: z(&[tf.m, tf.m, nt])?,
            row: z(&[p.tw + 1, tf.m])?,
        })
    }
}

/// One scratch per rayon thread; a task takes its thread's (uncontended lock).
struct Pool<T>(Vec<Mutex<Scratch<T>>>);

impl<T: Real> Pool<T> {
    fn new(tf: &Transforms<T>, p: &Plan, ch_out: usize) -> Result<Self> {
        let n = rayon::current_num_threads().max(1);
        Ok(Pool(
            (0..n)
                .map(|_| Scratch::new(tf, p, ch_out).map(Mutex::new))
                .collect::<Result<_>>()?,
        ))
    }
    fn with<R>(&self, f: impl FnOnce(&mut Scratch<T>) -> R) -> R {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        let mut guard = self.0[i].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// The t < count with 0 <= t * m + off < len, as a range lo..hi.
fn valid(len: usize, off: isize, m: usize, count: usize) -> (usize, usize) {
    let m_ = m as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off + m_ - 1) / m_) as usize
    };
    let rest = len as isize - off;
    let hi = if rest <= 0 {
        0
    } else {
        ((rest + m_ - 1) / m_) as usize
    };
    let lo = lo.min(count);
    (lo, hi.clamp(lo, count))
}

/// dst[s dst_st + t] = src[t M + s] for s < S, t < len (S <= 2 M): the S patch columns of
/// one row of tiles, read from the zero-padded input row with every offset known at
/// compile time (no bounds checks, no per-column calls).
#[inline(always)]
fn split_row<T: Real, const M: usize, const S: usize>(
    src: &[T],
    dst: &mut [T],
    dst_st: usize,
    len: usize,
) {
    assert!(src.len() >= len * M + S - M && dst.len() >= (S - 1) * dst_st + len);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for t in 0..len {
        for s in 0..S {
            // SAFETY: t M + s < len M + S - M and s dst_st + t < (S - 1) dst_st + len.
            unsafe { *dp.add(s * dst_st + t) = *sp.add(t * M + s) };
        }
    }
}

/// dst[t M + j] = src[j stride + t] for j < M, t < len: the inverse of [`deinterleave`].
#[inline(always)]
fn interleave<T: Real, const M: usize>(src: &[T], stride: usize, dst: &mut [T], len: usize) {
    assert!(src.len() >= (M - 1) * stride + len && dst.len() >= len * M);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for t in 0..len {
        for j in 0..M {
            // SAFETY: within the asserted lengths.
            unsafe { *dp.add(t * M + j) = *sp.add(j * stride + t) };
        }
    }
}

/// Gathers the `size` x `size` patches at stride m (size <= 2 m) of `plane` (rows x cols)
/// for the tiles of block rows tr0.. (k rows of tw tiles), offset by (-ph, -pw), zero
/// outside, into patch[(r size + s) nt + t]. Each input row is copied once into `row`
/// (zero-padded), then split into the patch columns without bounds logic.
#[allow(clippy::too_many_arguments)]
fn gather<T: Real>(
    plane: &[T],
    (rows, cols): (usize, usize),
    (ph, pw): (isize, isize),
    m: usize,
    size: usize,
    (tr0, k, tw): (usize, usize, usize),
    sc: &mut Scratch<T>,
    patch_is_small: bool,
) {
    let nt = k * tw;
    let span = (tw + 1) * m;
    let row = &mut sc.row[..span];
    let patch = if patch_is_small {
        &mut sc.small
    } else {
        &mut sc.patch
    };
    // row[q] = plane[hr][q - pw] for the q inside the input
    let (lo, hi) = valid(cols, -pw, 1, span);
    for ti in 0..k {
        for r in 0..size {
            let hr = ((tr0 + ti) * m + r) as isize - ph;
            if hr < 0 || hr as usize >= rows {
                for s in 0..size {
                    patch[(r * size + s) * nt + ti * tw..][..tw]
                        .iter_mut()
                        .for_each(|v| *v = T::ZERO);
                }
                continue;
            }
            row[..lo].iter_mut().for_each(|v| *v = T::ZERO);
            row[hi..].iter_mut().for_each(|v| *v = T::ZERO);
            if lo < hi {
                let first = (lo as isize - pw) as usize;
                row[lo..hi].copy_from_slice(&plane[hr as usize * cols + first..][..hi - lo]);
            }
            let dst = &mut patch[r * size * nt + ti * tw..];
            match (m, size) {
                (2, 2) => split_row::<T, 2, 2>(row, dst, nt, tw),
                (2, _) => split_row::<T, 2, 4>(row, dst, nt, tw),
                (4, 4) => split_row::<T, 4, 4>(row, dst, nt, tw),
                _ => split_row::<T, 4, 6>(row, dst, nt, tw),
            }
        }
    }
}

/// V[(point) C nt + c nt + t] = B^T d B for every channel of image `n` in the block.
fn input_transform<T: Real>(
    tf: &Transforms<T>,
    x: &[T],
    p: &Plan,
    blk: (usize, usize, usize),
    sc: &mut Scratch<T>,
) {
    let (n, tr0, k) = blk;
    let nt = k * p.tw;
    let hw = p.h * p.w;
    let os = p.c * nt;
    for c in 0..p.c {
        let plane = &x[(n * p.c + c) * hw..][..hw];
        gather(
            plane,
            (p.h, p.w),
            (p.ph, p.pw),
            tf.m,
            tf.alpha,
            (tr0, k, p.tw),
            sc,
            false,
        );
        transform(
            tf.tile,
            Pass::Input,
            &sc.patch,
            nt,
            &mut sc.v[c * nt..],
            os,
            nt,
            &mut sc.tmp,
        );
    }
}

/// U[point][o][c/g] = G w G^T for w (O, C/G, 3, 3).
fn weight_transform<T: Real>(tf: &Transforms<T>, w: &[T], o: usize, cg: usize) -> Vec<T> {
    let oc = o * cg;
    let a2 = tf.alpha * tf.alpha;
    // (O C/G, 9) -> (9, O C/G): the points axis first, as apply2d reads it
    let mut wt = vec![T::ZERO; 9 * oc];
    for (i, tap) in w.chunks_exact(9).enumerate() {
        for (t, &v) in tap.iter().enumerate() {
            wt[t * oc + i] = v;
        }
    }
    let mut u = vec![T::ZERO; a2 * oc];
    let mut tmp = vec![T::ZERO; tf.alpha * 3 * oc];
    apply2d(&tf.g, tf.alpha, 3, &wt, oc, &mut u, oc, oc, &mut tmp);
    u
}

/// y (N, O, OH, OW) = bias + the 3x3 correlation of x by the transformed kernel `u`.
fn forward_core<T: Real>(
    tf: &Transforms<T>,
    x: &[T],
    u: &[T],
    bias: Option<&[T]>,
    p: &Plan,
) -> Result<Vec<T>> {
    let (o, m, a2) = (p.o, tf.m, tf.alpha * tf.alpha);
    let (cg, og) = (p.c / p.groups, p.o / p.groups);
    let ohw = p.oh * p.ow;
    let mut y = super::zeros::<T>(p.n * o * ohw, "conv2d")?;
    let yp = SyncPtr(y.as_mut_ptr());
    let pool = Pool::new(tf, p, o)?;
    p.blocks().into_par_iter().for_each(|blk| {
        pool.with(|sc| {
            let (n, tr0, k) = blk;
            let nt = k * p.tw;
            input_transform(tf, x, p, blk, sc);
            for pt in 0..a2 {
                for gi in 0..p.groups {
                    // M[pt][group rows] (og x nt) = U[pt][group] (og x cg) @ V[pt][group
                    // channels] (cg x nt), single-threaded (the blocks run in parallel)
                    let mm = &mut sc.mm[(pt * o + gi * og) * nt..];
                    let ug = Operand::rows(&u[(pt * o + gi * og) * cg..], cg);
                    let vg = Operand::rows(&sc.v[(pt * p.c + gi * cg) * nt..], nt);
                    safe_gemm::gemm(og, nt, cg, mm, nt, false, ug, vg, Parallelism::None);
                }
            }
            let y = yp;
            for oc in 0..o {
                transform(
                    tf.tile,
                    Pass::Output,
                    &sc.mm[oc * nt..],
                    o * nt,
                    &mut sc.small,
                    nt,
                    nt,
                    &mut sc.tmp,
                );
                let b = bias.map_or(T::ZERO, |b| b[oc]);
                let base = (n * o + oc) * ohw;
                let row = &mut sc.row[..(p.tw + 1) * m];
                for ti in 0..k {
                    for i in 0..m {
                        let r = (tr0 + ti) * m + i;
                        if r >= p.oh {
                            break;
                        }
                        // row[tj m + j] = tile (ti, tj)'s output (i, j)
                        let src = &sc.small[i * m * nt + ti * p.tw..];
                        match m {
                            2 => interleave::<T, 2>(src, nt, row, p.tw),
                            _ => interleave::<T, 4>(src, nt, row, p.tw),
                        }
                        // SAFETY: block (n, rows tr0..tr0+k) owns output row r of every
                        // channel of image n; no other task writes it.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(y.0.add(base + r * p.ow), p.ow)
                        };
                        for (d, &v) in dst.iter_mut().zip(row.iter()) {
                            *d = v + b;
                        }
                    }
                }
            }
        })
    });
    Ok(y)
}

fn check_geom(g: &Geom) -> Result<()> {
    if (g.kh, g.kw) != (3, 3) || g.stride != (1, 1) || g.dilation != (1, 1) {
        return value_err!(
            "algo: 'winograd' needs a 3x3 kernel with stride 1 and dilation 1, got kernel ({}, {}), stride {:?}, dilation {:?}",
            g.kh,
            g.kw,
            g.stride,
            g.dilation
        );
    }
    Ok(())
}

/// y (N, O, OH, OW) = conv(x, w) + bias by Winograd `tile` (a result that is not finite
/// everywhere is the direct sum's: `super::direct_if_nonfinite`).
pub fn winograd_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Geom,
    tile: WinoTile,
) -> Result<Vec<T>> {
    let y = winograd_tiles_forward(x, w, bias, g, tile)?;
    super::direct_if_nonfinite_forward(y, x, w, bias, g)
}

fn winograd_tiles_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Geom,
    tile: WinoTile,
) -> Result<Vec<T>> {
    check_geom(g)?;
    super::check_args(x, w, bias, None, g)?;
    let tf = Transforms::<T>::new(tile);
    let u = weight_transform(&tf, w, g.o, g.c / g.groups);
    let p = Plan::new(
        tf.m,
        g.n,
        g.c,
        (g.h, g.w),
        g.o,
        g.groups,
        (g.padding.0 as isize, g.padding.1 as isize),
        (g.oh, g.ow),
    );
    forward_core(&tf, x, &u, bias, &p)
}

/// gw (O, C/G, 3, 3) = sum over images and tiles, by the transposed algorithm.
/// Blocks are cut into at most `GW_CHUNKS` runs of consecutive blocks, a count that
/// depends on the shape only: each run sums into its own accumulator, sequentially, and
/// the runs' sums are added in run order. So the result is the same bits on every call
/// and thread count (per-thread accumulators would depend on which thread ran which
/// block: 4 different results in 300 calls, differences ~1e-4).
fn weight_grad<T: Real>(tf: &Transforms<T>, x: &[T], gy: &[T], g: &Geom) -> Result<Vec<T>> {
    let (m, a2) = (tf.m, tf.alpha * tf.alpha);
    let (o, cg, og) = (g.o, g.c / g.groups, g.o / g.groups);
    let p = Plan::new(
        m,
        g.n,
        g.c,
        (g.h, g.w),
        g.o,
        g.groups,
        (g.padding.0 as isize, g.padding.1 as isize),
        (g.oh, g.ow),
    );
    let ohw = g.oh * g.ow;
    let oc = o * cg;
    let pool = Pool::new(tf, &p, o)?;
    let blocks = p.blocks();
    let acc_len = a2 * oc;
    // fewer runs when each accumulator is large (at most ~256 MiB of them in all)
    let budget = ((256usize << 20) / (acc_len.max(1) * std::mem::size_of::<T>())).max(1);
    let runs = blocks.len().min(GW_CHUNKS).min(budget).max(1);
    let per_run = blocks.len().div_ceil(runs).max(1);
    let parts: Vec<Vec<T>> = blocks.par_chunks(per_run).map(|run| {
        let mut acc = zeroed::<T>(acc_len, "conv2d backward (winograd sums)")?;
        pool.with(|sc| for &blk in run {
            let (n, tr0, k) = blk;
            let nt = k * p.tw;
            input_transform(tf, x, &p, blk, sc);
            // GY_hat[pt][o][t] = A gy_tile A^T (gy zero outside OH x OW)
            for oi in 0..o {
                let plane = &gy[(n * o + oi) * ohw..][..ohw];
                gather(plane, (g.oh, g.ow), (0, 0), m, m, (tr0, k, p.tw), sc, true);
                transform(
                    tf.tile,
                    Pass::GradOut,
                    &sc.small,
                    nt,
                    &mut sc.mm[oi * nt..],
                    o * nt,
                    nt,
                    &mut sc.tmp,
                );
            }
            for pt in 0..a2 {
                for gi in 0..g.groups {
                    // acc[pt][group] (og x cg) += GY_hat[pt][group rows] (og x nt) @
                    // V[pt][group channels]^T (cg x nt read transposed), single-threaded
                    let dst = &mut acc[pt * oc + gi * og * cg..];
                    let gy_hat = Operand::rows(&sc.mm[(pt * o + gi * og) * nt..], nt);
                    let vt = Operand::transposed(&sc.v[(pt * g.c + gi * cg) * nt..], nt);
                    safe_gemm::gemm(og, cg, nt, dst, cg, true, gy_hat, vt, Parallelism::None);
                }
            }
        });
        Ok(acc)
    }).collect::<Result<_>>()?;
    let mut sums = vec![T::ZERO; acc_len];
    for part in &parts {
        sums.iter_mut().zip(part).for_each(|(s, &v)| *s += v);
    }
    // gw = G^T S G, then (9, O C/G) -> (O, C/G, 3, 3)
    let mut taps = vec![T::ZERO; 9 * oc];
    let mut tmp = vec![T::ZERO; 3 * tf.alpha * oc];
    apply2d(&tf.gt, 3, tf.alpha, &sums, oc, &mut taps, oc, oc, &mut tmp);
    let mut gw = vec![T::ZERO; 9 * oc];
    for (t, row) in taps.chunks_exact(oc).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            gw[i * 9 + t] = v;
        }
    }
    Ok(gw)
}

/// (gx, gw, gb) by Winograd `tile`: gx by the forward code on gy with the flipped kernel,
/// gw by the transposed algorithm; gb is None unless `with_bias` (gradients that are not
/// finite everywhere are the direct sum's: `super::direct_if_nonfinite`).
pub fn winograd_backward<T: Real>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    tile: WinoTile,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    let grads = winograd_tiles_backward(x, w, gy, g, tile, with_bias)?;
    super::direct_if_nonfinite_backward(grads, x, w, gy, g)
}

fn winograd_tiles_backward<T: Real>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    tile: WinoTile,
    with_bias: bool,
) -> Result<ConvGrads<T>> {
    check_geom(g)?;
    super::check_args(x, w, None, Some(gy), g)?;
    let tf = Transforms::<T>::new(tile);
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    // wf (C, O/G, 3, 3): wf[g cg + ci][oi][a][b] = w[g og + oi][ci][2 - a][2 - b]
    let mut wf = vec![T::ZERO; g.c * og * 9];
    for gi in 0..g.groups {
        for oi in 0..og {
            for ci in 0..cg {
                let src = &w[((gi * og + oi) * cg + ci) * 9..][..9];
                let dst = &mut wf[((gi * cg + ci) * og + oi) * 9..][..9];
                for t in 0..9 {
                    dst[t] = src[8 - t];
                }
            }
        }
    }
    let u = weight_transform(&tf, &wf, g.c, og);
    let p = Plan::new(
        tf.m,
        g.n,
        g.o,
        (g.oh, g.ow),
        g.c,
        g.groups,
        (2 - g.padding.0 as isize, 2 - g.padding.1 as isize),
        (g.h, g.w),
    );
    let gx = forward_core(&tf, gy, &u, None, &p)?;
    let gw = weight_grad(&tf, x, gy, g)?;
    let gb = with_bias.then(|| super::bias_grad(gy, g));
    Ok((gx, gw, gb))
}

#[cfg(test)]
mod tests {
    use super::super::naive;
    use super::super::tests::{case, geoms_3x3, vals};
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn winograd_matches_naive_f64() {
        for tile in [WinoTile::F2, WinoTile::F4] {
            for g in geoms_3x3() {
                let (x, w, b, gy) = case(&g);
                let what = format!("{tile:?} {g:?}");
                let y = winograd_forward(&x, &w, Some(&b), &g, tile).unwrap();
                close(
                    &y,
                    &naive::naive_forward(&x, &w, Some(&b), &g).unwrap(),
                    1e-12,
                    &what,
                );
                let (gx, gw, gb) = winograd_backward(&x, &w, &gy, &g, tile, true).unwrap();
                let (ex, ew, eb) = naive::naive_backward(&x, &w, &gy, &g, true).unwrap();
                close(&gx, &ex, 1e-12, &format!("{what} gx"));
                close(&gw, &ew, 1e-11, &format!("{what} gw"));
                close(&gb.unwrap(), &eb.unwrap(), 1e-12, &format!("{what} gb"));
            }
        }
    }

    #[test]
    fn winograd_f4_f32_is_accurate() {
        let g = Geom::new([2, 16, 13, 11], [8, 16, 3, 3], (1, 1), (1, 1), (1, 1), 1).unwrap();
        let x = vals(g.n * g.c * g.h * g.w, 5);
        let w = vals(g.o * g.k(), 6);
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let y = winograd_forward(&xf, &wf, None, &g, WinoTile::F4).unwrap();
        let e = naive::naive_forward(&x, &w, None, &g).unwrap();
        // the sums have K = 144 terms of size <= 1
        for (a, b) in y.iter().zip(&e) {
            assert!((*a as f64 - b).abs() < 144.0 * 1e-6, "{a} vs {b}");
        }
    }

    /// The written-out 1-D transforms are the matrices B^T, A^T and A.
    #[test]
    fn explicit_transforms_are_the_matrices() {
        fn check<const Q: usize, const P: usize>(f: impl Fn([f64; Q]) -> [f64; P], mat: &[f64]) {
            for k in 0..Q {
                let mut e = [0.0; Q];
                e[k] = 1.0;
                let col = f(e);
                for i in 0..P {
                    assert_eq!(col[i], mat[i * Q + k], "row {i} col {k}");
                }
            }
        }
        check(bt2::<f64>, &F2_BT);
        check(at2::<f64>, &F2_AT);
        check(a2::<f64>, &transpose(&F2_AT, 2, 4));
        check(bt4::<f64>, &F4_BT);
        check(at4::<f64>, &F4_AT);
        check(a4::<f64>, &transpose(&F4_AT, 4, 6));
    }

    #[test]
    fn winograd_rejects_other_kernels() {
        let g = Geom::new([1, 1, 6, 6], [1, 1, 3, 3], (2, 2), (0, 0), (1, 1), 1).unwrap();
        assert!(winograd_forward(&[0.0f32; 36], &[0.0; 9], None, &g, WinoTile::F2).is_err());
        let g = Geom::new([1, 1, 6, 6], [1, 1, 5, 5], (1, 1), (0, 0), (1, 1), 1).unwrap();
        assert!(winograd_forward(&[0.0f32; 36], &[0.0; 25], None, &g, WinoTile::F4).is_err());
    }
}
