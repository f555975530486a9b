//! Parallel elementwise maps: the engine of every bandwidth-bound kernel.
//!
//! The output is written once into uninitialised memory (no zero-fill pass), in chunks of
//! `CHUNK` elements spread over rayon's threads. Each chunk runs through a copy of the loop
//! compiled for the widest vector unit the CPU has (chosen once at run time, so one wheel
//! serves every x86-64 machine): AVX-512 (16 f32 lanes), else AVX2+FMA (8 lanes), else the
//! baseline SSE2 copy. The transcendental kernels (exp, tanh, erfc) are compute-bound, so
//! the lane count shows directly in their time.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel task: large enough to amortise scheduling, small enough that
/// two threads stay balanced on the benchmark sizes.
pub const CHUNK: usize = 1 << 15;

/// An elementwise function of one input. Closures implement it; heavy kernels are
/// structs whose `f` is `#[inline(always)]`, because LLVM will not inline a large closure
/// into the vectorized loop by itself (a call per element, measured 10x slower).
pub trait Map1<T>: Sync {
    fn f(&self, x: T) -> T;
}

/// An elementwise function of two inputs (forward input and upstream gradient).
pub trait Map2<T>: Sync {
    fn f(&self, x: T, y: T) -> T;
}

impl<T, F: Fn(T) -> T + Sync> Map1<T> for F {
    #[inline(always)]
    fn f(&self, x: T) -> T {
        self(x)
    }
}

impl<T, F: Fn(T, T) -> T + Sync> Map2<T> for F {
    #[inline(always)]
    fn f(&self, x: T, y: T) -> T {
        self(x, y)
    }
}

/// Elements per unrolled block of the loops below. The transcendental kernels are long
/// chains of dependent FMAs; with one vector per iteration the loop runs well below the
/// FMA units' throughput, as if bound by the chains' latency.
/// A fixed-size inner block of 64 is vectorized as 4 (f32 AVX-512) to 16 (f64 SSE)
/// independent chains per iteration, interleaved by LLVM (measured single-threaded on
/// 4M f32: exact GELU 1.2x faster than one vector per iteration, sigmoid and tanh ~8%).
const BLOCK: usize = 64;

#[inline(always)]
fn apply1<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    let mut ob = out.chunks_exact_mut(BLOCK);
    let mut xb = x.chunks_exact(BLOCK);
    for (o, xs) in (&mut ob).zip(&mut xb) {
        for i in 0..BLOCK {
            o[i].write(f.f(xs[i]));
        }
    }
    for (o, &v) in ob.into_remainder().iter_mut().zip(xb.remainder()) {
        o.write(f.f(v));
    }
}

#[inline(always)]
fn apply2<T: Copy, F: Map2<T>>(x: &[T], y: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    let mut ob = out.chunks_exact_mut(BLOCK);
    let mut xb = x.chunks_exact(BLOCK);
    let mut yb = y.chunks_exact(BLOCK);
    for ((o, xs), ys) in (&mut ob).zip(&mut xb).zip(&mut yb) {
        for i in 0..BLOCK {
            o[i].write(f.f(xs[i], ys[i]));
        }
    }
    let tail = ob.into_remainder();
    for ((o, &a), &b) in tail.iter_mut().zip(xb.remainder()).zip(yb.remainder()) {
        o.write(f.f(a, b));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply1_avx2<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    apply1(x, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply2_avx2<T: Copy, F: Map2<T>>(
    x: &[T],
    y: &[T],
    out: &mut [MaybeUninit<T>],
    f: &F,
) {
    apply2(x, y, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn apply1_avx512<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    apply1(x, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn apply2_avx512<T: Copy, F: Map2<T>>(
    x: &[T],
    y: &[T],
    out: &mut [MaybeUninit<T>],
    f: &F,
) {
    apply2(x, y, out, f)
}

/// The instruction set a map's loop runs with, detected once per call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

#[inline]
pub fn detect_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512dq") && has!("avx512vl") && has!("avx512bw") && has!("fma") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The widest instruction set the CPU has, but AVX2 where it has AVX-512.
fn at_most_avx2() -> Isa {
    match detect_isa() {
        Isa::Avx512 => Isa::Avx2,
        other => other,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn call_avx512<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

/// Run `f` compiled for the widest vector unit the CPU has: the AVX-512 copy when
/// available, else the crate's x86-64-v3 baseline. Whatever `f` calls must be
/// `#[inline(always)]` (closures too) to be compiled inside that copy.
#[inline(always)]
pub fn with_widest_isa<R, F: FnOnce() -> R>(f: F) -> R {
    #[cfg(target_arch = "x86_64")]
    if detect_isa() == Isa::Avx512 {
        // SAFETY: the CPU reports the AVX-512 features the copy is compiled for.
        return unsafe { call_avx512(f) };
    }
    f()
}

fn run1<T: Copy, F: Map1<T>>(x: &[T], out: &mut [MaybeUninit<T>], f: &F, isa: Isa) {
    // SAFETY: each accelerated copy is only called when the CPU reports its features.
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return unsafe { apply1_avx512(x, out, f) },
        Isa::Avx2 => return unsafe { apply1_avx2(x, out, f) },
        Isa::Baseline => {}
    }
    let _ = isa;
    apply1(x, out, f)
}

fn run2<T: Copy, F: Map2<T>>(x: &[T], y: &[T], out: &mut [MaybeUninit<T>], f: &F, isa: Isa) {
    // SAFETY: each accelerated copy is only called when the CPU reports its features.
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return unsafe { apply2_avx512(x, y, out, f) },
        Isa::Avx2 => return unsafe { apply2_avx2(x, y, out, f) },
        Isa::Baseline => {}
    }
    let _ = isa;
    apply2(x, y, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs a pointwise loop (inlined into `f`) compiled for AVX-512 when the CPU has
/// it (16 f32 lanes for the polynomial exp/tanh), else for the crate's AVX2 baseline.
#[inline(always)]
pub fn wide<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: called only when the CPU reports these features.
        return unsafe { run_avx512(f) };
    }
    let _ = isa;
    f()
}

/// An empty vector with room for `n` elements, backed by transparent huge pages when it is
/// at least 32 MiB (what numpy does for its arrays). glibc serves such sizes from fresh
/// mmap'ed memory every time (32 MiB is its largest mmap threshold), whose first touch
/// faults once per 4 KiB page: on the 2-core VM ~1.8 us each, 23 ms for a 51 MB gradient,
/// against ~1 ms with 2 MiB pages. Smaller buffers are reused from glibc's heap without
/// faults, and advising those made a 4M-element relu 30% slower (measured), so they are
/// left alone.
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    // refused: unwinds with alloc::AllocFailure (MemoryError in Python), not an abort
    advise_huge_pages(crate::alloc::with_capacity_or_unwind(n, "a kernel's output"))
}

/// [`with_capacity`] for a caller-sized buffer (an output larger than any input: a pool's
/// or a padded conv's): MemoryError (ValueError past isize) instead of an abort.
pub fn try_with_capacity<T>(n: usize, what: &str) -> crate::Result<Vec<T>> {
    Ok(advise_huge_pages(crate::alloc::with_capacity(n, what)?))
}

/// [`zeros`], allocated fallibly (see [`try_with_capacity`]).
pub fn try_zeros<T: Copy + Send + Sync + Default>(n: usize, what: &str) -> crate::Result<Vec<T>> {
    Ok(fill_default(try_with_capacity(n, what)?, n))
}

fn advise_huge_pages<T>(mut v: Vec<T>) -> Vec<T> {
    #[cfg(target_os = "linux")]
    {
        const HUGE_FROM: usize = 32 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes >= HUGE_FROM {
            const PAGE: usize = 4096;
            let start = v.as_mut_ptr() as usize;
            let first = (start + PAGE - 1) & !(PAGE - 1);
            let len = (start + bytes - first) & !(PAGE - 1);
            // SAFETY: the range lies inside the allocation just made; MADV_HUGEPAGE only
            // changes how the kernel backs it, and a failure (THP disabled) is harmless.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// How long the pool's other workers keep polling for work after a parallel map.
const LINGER: std::time::Duration = std::time::Duration::from_micros(300);

/// After a parallel map, keep another worker polling for work (stealing it when it comes)
/// for [`LINGER`] instead of letting it fall asleep. rayon's idle workers sleep after a
/// few dozen yields; waking one for the next op takes 10-30 us on the VM, during which
/// the caller works alone. With Python between two ops (10-50 us), a 4M-element relu on
/// 2 threads took 0.186 ms after 20 us gaps and 0.202 ms after 50 us, against 0.159 ms
/// back to back; with the linger 0.163 and 0.169 ms. PyTorch's OpenMP workers spin
/// after each op for the same reason (for milliseconds; this is 0.3 ms).
pub fn linger() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static LINGERING: AtomicBool = AtomicBool::new(false);
    if rayon::current_num_threads() < 2 || LINGERING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawner = rayon::current_thread_index();
    rayon::spawn(move || {
        // run by the spawning thread itself (it found its own deque's job while waiting
        // in the next op), lingering would only hold that op up
        if rayon::current_thread_index() != spawner {
            let start = std::time::Instant::now();
            while start.elapsed() < LINGER {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        }
        LINGERING.store(false, Ordering::Release);
    });
}

/// `f` applied to every element of `x`, in parallel.
pub fn map1<T, F>(x: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map1<T>,
{
    map1_isa(x, f, detect_isa())
}

/// [`map1`] with AVX2 at most, for relu's forward. On the Zen 5 VM the AVX2 loop of a
/// 4M-element relu was as fast or faster than the AVX-512 one in every comparison:
/// 0.266-0.283 vs 0.292-0.293 ms in a Rust loop on 2 threads, 0.258-0.263 vs
/// 0.276-0.285 ms alternating through Python. Not a rule for every cheap map: leaky_relu's
/// forward went the other way (AVX-512 0.23-0.26 ms, AVX2 0.265), so it keeps map1.
pub fn map1_avx2<T, F>(x: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map1<T>,
{
    map1_isa(x, f, at_most_avx2())
}

fn map1_isa<T, F>(x: &[T], f: F, isa: Isa) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map1<T>,
{
    let n = x.len();
    let mut out: Vec<T> = with_capacity(n);
    {
        let spare = &mut out.spare_capacity_mut()[..n];
        if n <= CHUNK {
            run1(x, spare, &f, isa);
        } else {
            spare
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(o, xi)| run1(xi, o, &f, isa));
            linger();
        }
    }
    // SAFETY: every one of the n slots was written above.
    unsafe { out.set_len(n) };
    out
}

/// `f(x[i], y[i])` for every i, in parallel; `x` and `y` have the same length.
pub fn map2<T, F>(x: &[T], y: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map2<T>,
{
    map2_isa(x, y, f, detect_isa())
}

/// [`map2`] run at most with AVX2, for a selection between a loaded element and zero
/// (`if a > 0 { b } else { 0 }`). With AVX-512, LLVM turns that into a load of `y` under
/// a zeroing mask, whatever way the selection is written (as a bit mask too), and on the
/// 2-core Zen 5 VM such a loop ran 18-25% slower than the AVX2 one's compare and `and`:
/// relu backward on 4M float32, 0.68 vs 0.57 ms, where every other backward map runs
/// as fast with AVX-512 as with AVX2.
pub fn map2_unmasked<T, F>(x: &[T], y: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map2<T>,
{
    map2_isa(x, y, f, at_most_avx2())
}

fn map2_isa<T, F>(x: &[T], y: &[T], f: F, isa: Isa) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Map2<T>,
{
    assert_eq!(x.len(), y.len(), "map2: operands of different lengths");
    let n = x.len();
    let mut out: Vec<T> = with_capacity(n);
    {
        let spare = &mut out.spare_capacity_mut()[..n];
        if n <= CHUNK {
            run2(x, y, spare, &f, isa);
        } else {
            spare
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
                .for_each(|(o, (xi, yi))| run2(xi, yi, o, &f, isa));
            linger();
        }
    }
    // SAFETY: every one of the n slots was written above.
    unsafe { out.set_len(n) };
    out
}

/// `n` zeros, written in parallel rather than calloc'ed. `vec![0; n]` of more than a few
/// MB is fresh mmap'ed memory that the kernel maps to its shared zero page on a first read;
/// a kernel that reads before it writes (a scatter `+=`) then takes a copy-on-write fault
/// per page, each with a TLB shoot-down across the process's threads: measured 40 ms for a
/// 51 MB pooling gradient on the 2-core VM, against a few ms for writing the zeros first.
pub fn zeros<T: Copy + Send + Sync + Default>(n: usize) -> Vec<T> {
    fill_default(with_capacity(n), n)
}

/// Writes `n` defaults into `out`'s spare room (it has at least n) in parallel.
fn fill_default<T: Copy + Send + Sync + Default>(mut out: Vec<T>, n: usize) -> Vec<T> {
    out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            v.write(T::default());
        }
    });
    // SAFETY: every one of the n slots was written above.
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map1_and_map2_cover_every_element_across_chunks() {
        for n in [0usize, 1, 7, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let y = map1(&x, |v| 2.0 * v + 1.0);
            assert!(y.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f64 + 1.0));
            let z = map2(&x, &y, |a, b| b - a);
            assert!(z.iter().enumerate().all(|(i, &v)| v == i as f64 + 1.0));
            let w = map2_unmasked(&x, &y, |a, b| if a > 2.0 { b } else { 0.0 });
            assert!(w.iter().enumerate().all(|(i, &v)| v == if i > 2 { y[i] } else { 0.0 }));
            assert!(zeros::<f32>(n).iter().all(|&v| v == 0.0) && zeros::<f32>(n).len() == n);
        }
    }
}
