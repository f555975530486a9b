//! Dropout and DropBlock masks from one counter-based random stream, Philox4x32-10
//! (Salmon et al. 2011, the generator curand uses), implemented identically in numpy,
//! Rust and CUDA so that a seed gives the same mask on every backend, bit for bit,
//! whatever the thread count or launch configuration.
//!
//! The stream: element `i` (C-order flat index) of a call with `(seed, offset)` takes word
//! `i % 4` of `philox4x32_10(ctr, key)` with
//! `ctr = (lo32(i / 4), hi32(i / 4), lo32(offset), hi32(offset))` and
//! `key = (lo32(seed), hi32(seed))`. Every call draws a fresh `offset` from the global
//! generator (`fg.manual_seed` resets it), so calls never share counters.
//!
//! Uniform: `u = (word >> 8) * 2^-24` in [0, 1). An element is *dropped* when `u < p`,
//! i.e. `(word >> 8) < threshold(p) = ceil(p * 2^24)` (integer test, no float rounding).

use crate::error::Result;
use crate::real::Real;
use crate::{shape_err, value_err};
use rayon::prelude::*;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds (Random123's philox4x32_R(10, ctr, key)).
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c0);
        let (hi1, lo1) = mulhilo(M1, c2);
        let n0 = hi1 ^ c1 ^ k0;
        let n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    [c0, c1, c2, c3]
}

/// The four words of block `b` (elements 4b..4b+3) of the stream `(seed, offset)`.
#[inline(always)]
pub fn block_words(seed: u64, offset: u64, b: u64) -> [u32; 4] {
    philox4x32_10(
        [b as u32, (b >> 32) as u32, offset as u32, (offset >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// `ceil(p * 2^24)` clamped to [0, 2^24]: elements whose `word >> 8` is below it drop.
pub fn threshold(p: f64) -> Result<u32> {
    if !(0.0..=1.0).contains(&p) {
        return value_err!("p: expected a probability in [0, 1], got {p}");
    }
    Ok((p * 16_777_216.0).ceil().min(16_777_216.0) as u32)
}

/// `n_blocks` blocks of 4 words starting at block `first`, row-major (tests, reference).
pub fn philox_words(seed: u64, offset: u64, first: u64, n_blocks: usize) -> Vec<u32> {
    let mut out = vec![0u32; n_blocks * 4];
    out.par_chunks_mut(4 * 4096).enumerate().for_each(|(ci, chunk)| {
        for (j, w) in chunk.chunks_mut(4).enumerate() {
            let b = first.wrapping_add((ci * 4096 + j) as u64);
            w.copy_from_slice(&block_words(seed, offset, b));
        }
    });
    out
}

/// Elements per parallel task (a multiple of 4: a task starts on a block boundary).
const CHUNK: usize = 1 << 15;

/// Blocks computed together: the rounds run lane by lane over `LANES` counters, which
/// LLVM turns into SIMD (32 x 32 -> 64-bit multiplies, 4 per AVX2 instruction).
const LANES: usize = 8;

/// Philox4x32-10 of the blocks `b0 .. b0 + LANES`: word k of block b0 + l is `w[k][l]`.
#[inline(always)]
fn philox_lanes(b0: u64, seed: u64, offset: u64) -> [[u32; LANES]; 4] {
    let mut c0 = [0u32; LANES];
    let mut c1 = [0u32; LANES];
    let mut c2 = [offset as u32; LANES];
    let mut c3 = [(offset >> 32) as u32; LANES];
    for l in 0..LANES {
        let b = b0.wrapping_add(l as u64);
        c0[l] = b as u32;
        c1[l] = (b >> 32) as u32;
    }
    let (mut k0, mut k1) = (seed as u32, (seed >> 32) as u32);
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        for l in 0..LANES {
            let p0 = (M0 as u64) * (c0[l] as u64);
            let p1 = (M1 as u64) * (c2[l] as u64);
            let n0 = ((p1 >> 32) as u32) ^ c1[l] ^ k0;
            let n2 = ((p0 >> 32) as u32) ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = p1 as u32;
            c2[l] = n2;
            c3[l] = p0 as u32;
        }
    }
    [c0, c1, c2, c3]
}

/// One task's elements: `x` starts at block `first`; groups of LANES blocks, then the
/// leftover blocks one by one (the same words either way).
#[inline(always)]
fn apply_chunk<T: Real>(x: &[T], o: &mut [T], first: u64, t: u32, scale: T, seed: u64, offset: u64) {
    let group = 4 * LANES;
    let full = x.len() / group;
    for g in 0..full {
        let w = philox_lanes(first + (g * LANES) as u64, seed, offset);
        let (xg, og) = (&x[g * group..(g + 1) * group], &mut o[g * group..(g + 1) * group]);
        for l in 0..LANES {
            for k in 0..4 {
                let m = if (w[k][l] >> 8) >= t { scale } else { T::ZERO };
                og[4 * l + k] = xg[4 * l + k] * m;
            }
        }
    }
    let rest = full * group;
    for (j, (ob, xb)) in o[rest..].chunks_mut(4).zip(x[rest..].chunks(4)).enumerate() {
        let w = block_words(seed, offset, first + (full * LANES + j) as u64);
        for k in 0..ob.len() {
            let m = if (w[k] >> 8) >= t { scale } else { T::ZERO };
            ob[k] = xb[k] * m;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_chunk_avx2<T: Real>(x: &[T], o: &mut [T], first: u64, t: u32, scale: T, seed: u64, offset: u64) {
    apply_chunk(x, o, first, t, scale, seed, offset)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x * m` with `m = scale` where kept and 0 where dropped (PyTorch multiplies too, so
/// NaN and inf in dropped places give NaN). Dropout forward on x and backward on gy.
pub fn dropout_apply<T: Real>(x: &[T], p: f64, seed: u64, offset: u64) -> Result<Vec<T>> {
    let t = threshold(p)?;
    let scale = if p < 1.0 { T::c(1.0 / (1.0 - p)) } else { T::ZERO };
    let mut out = crate::alloc::float_zeros_or_unwind::<T>(x.len(), "a kernel buffer");
    let avx2 = has_avx2();
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(ci, (o, xs))| {
        let first = (ci * CHUNK / 4) as u64;
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: only called when the CPU reports AVX2 and FMA.
            return unsafe { apply_chunk_avx2(xs, o, first, t, scale, seed, offset) };
        }
        let _ = avx2;
        apply_chunk(xs, o, first, t, scale, seed, offset)
    });
    Ok(out)
}

/// DropBlock's multiplier for an (N, C, H, W) input: `keep * numel / count(keep)` (0
/// everywhere when nothing is kept).
///
/// Block seeds: element (n, c, i, j) with `i <= H - b`, `j <= W - b` (a block that fits)
/// is a seed when its stream word says drop with probability `gamma`; a seed drops the
/// b x b block whose top-left corner it is (torchvision's padding + max-pool expansion,
/// written as a window). `b = block_size` must be in [1, min(H, W)].
pub fn dropblock_mask<T: Real>(
    shape: &[usize],
    gamma: f64,
    block_size: usize,
    seed: u64,
    offset: u64,
) -> Result<Vec<T>> {
    let (h, w) = match *shape {
        [_, _, h, w] => (h, w),
        _ => return shape_err!("input: expected a 4-D shape (N, C, H, W), got {shape:?}"),
    };
    let b = block_size;
    if b == 0 || b > h || b > w {
        return value_err!("block_size: expected 1 <= block_size <= min(H, W) = {}, got {b}", h.min(w));
    }
    let t = threshold(gamma.min(1.0))?;
    let hw = h * w;
    // the shape comes from the caller (a broadcast view's logical shape): checked, fallible
    let total = crate::alloc::checked_numel(shape, "dropblock2d mask")?;
    let mut keep = crate::alloc::zeroed(total, &format!("dropblock2d mask of shape {shape:?}"))?;
    if total == 0 {
        return Ok(keep);
    }
    let kept: usize = keep
        .par_chunks_mut(hw)
        .enumerate()
        .map(|(p, kp)| {
            // seeds of this plane, then a separable sliding-window OR: rows, then columns
            let base = (p * hw) as u64;
            let mut seeds = vec![false; hw];
            for i in 0..=(h - b) {
                for j in 0..=(w - b) {
                    let e = base + (i * w + j) as u64;
                    let word = block_words(seed, offset, e / 4)[(e % 4) as usize];
                    seeds[i * w + j] = (word >> 8) < t;
                }
            }
            let mut rows = vec![false; hw]; // dropped by a seed in [j - b + 1, j] of its row
            for i in 0..h {
                for j in 0..w {
                    let lo = j.saturating_sub(b - 1);
                    rows[i * w + j] = seeds[i * w + lo..=i * w + j].iter().any(|&s| s);
                }
            }
            let mut n_kept = 0;
            for i in 0..h {
                let lo = i.saturating_sub(b - 1);
                for j in 0..w {
                    let dropped = (lo..=i).any(|r| rows[r * w + j]);
                    if !dropped {
                        kp[i * w + j] = T::ONE;
                        n_kept += 1;
                    }
                }
            }
            n_kept
        })
        .sum();
    if kept > 0 {
        let scale = T::c(total as f64 / kept as f64);
        keep.par_iter_mut().for_each(|v| *v *= scale);
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Random123's kat_vectors for philox4x32_10
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn dropout_keeps_about_1_minus_p_and_scales() {
        let x = vec![1.0f64; 100_003];
        let y = dropout_apply(&x, 0.3, 7, 1).unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64;
        assert!((kept / x.len() as f64 - 0.7).abs() < 0.01);
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.7));
        assert!(dropout_apply(&x, 0.0, 7, 1).unwrap().iter().all(|&v| v == 1.0));
        assert!(dropout_apply(&x, 1.0, 7, 1).unwrap().iter().all(|&v| v == 0.0));
        assert!(dropout_apply(&x, 1.5, 7, 1).is_err());
        // a chunk boundary does not change the stream: element i uses block i / 4
        let y2 = dropout_apply(&x[..CHUNK + 6], 0.3, 7, 1).unwrap();
        assert_eq!(&y[..CHUNK + 6], &y2[..]);
    }

    #[test]
    fn the_lane_philox_matches_the_scalar_one() {
        let w = philox_lanes(u64::MAX - 3, 0x1234_5678_9abc_def0, 77);
        for l in 0..LANES {
            let b = block_words(0x1234_5678_9abc_def0, 77, (u64::MAX - 3).wrapping_add(l as u64));
            for k in 0..4 {
                assert_eq!(w[k][l], b[k]);
            }
        }
        // every length: groups of LANES blocks, leftover blocks and a partial last block
        for n in [0usize, 1, 3, 4, 31, 32, 33, 100, 4 * LANES * 3 + 5] {
            let x: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
            let y = dropout_apply(&x, 0.4, 3, 9).unwrap();
            for (i, (&v, &yv)) in x.iter().zip(&y).enumerate() {
                let word = block_words(3, 9, (i / 4) as u64)[i % 4];
                let keep = (word >> 8) >= threshold(0.4).unwrap();
                assert_eq!(yv, if keep { v * (1.0 / 0.6f64) as f32 } else { 0.0 });
            }
        }
    }

    #[test]
    fn dropblock_drops_whole_blocks() {
        let m = dropblock_mask::<f64>(&[2, 3, 9, 9], 0.05, 3, 1, 0).unwrap();
        let kept = m.iter().filter(|&&v| v != 0.0).count();
        let scale = m.iter().cloned().fold(0.0, f64::max);
        assert!((scale * kept as f64 - m.len() as f64).abs() < 1e-9);
        assert!(dropblock_mask::<f32>(&[1, 1, 4, 4], 0.1, 5, 1, 0).is_err());
        let all = dropblock_mask::<f32>(&[1, 1, 4, 4], 1.0, 2, 1, 0).unwrap();
        assert!(all.iter().all(|&v| v == 0.0));
    }
}
