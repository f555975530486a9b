//! Fallible allocation of caller-sized buffers.
//!
//! `vec![0; n]` and `Vec::with_capacity(n)` abort the whole process when the system
//! refuses the memory (Rust's default `handle_alloc_error`), and panic on a byte count
//! past `isize::MAX`. A size that comes from a caller (a tensor's shape, a padding, an
//! output size) goes through these functions instead, so that an impossible request
//! becomes a [`FerroError::Memory`] (Python's MemoryError) or, for a size that cannot be
//! represented at all, a [`FerroError::Value`] (ValueError), as numpy raises them.
//!
//! ```
//! use _core::alloc::{zeroed, checked_numel};
//! let v: Vec<f32> = zeroed(4, "example").unwrap();
//! assert_eq!(v, vec![0.0; 4]);
//! // 2^62 float32 elements are more bytes than an address space holds
//! assert!(zeroed::<f32>(1 << 62, "example").is_err());
//! assert!(checked_numel(&[1 << 40, 1 << 40], "example").is_err());
//! ```

use crate::error::{FerroError, Result};

/// The byte count of `n` elements of T, or a ValueError naming `what` when it does not
/// fit in `isize` (the most any allocation can hold).
pub fn checked_bytes<T>(n: usize, what: &str) -> Result<usize> {
    n.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            FerroError::Value(format!(
                "{what}: {n} elements of {} bytes do not fit in memory's address space",
                std::mem::size_of::<T>()
            ))
        })
}

/// The product of `dims`, or a ValueError naming `what` and the shape when it overflows.
pub fn checked_numel(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| FerroError::Value(format!("{what}: the shape {dims:?} has more elements than fit in memory")))
}

/// The machine's memory (RAM plus swap, from /proc/meminfo; None where unknown): no
/// request above it can ever be met. Under `vm.overcommit_memory = 1` (common on GPU
/// hosts) the kernel grants any size lazily and kills the process once the pages are
/// touched, so such a request is refused here instead, as the default heuristic
/// overcommit mode refuses it.
fn memory_limit() -> Option<usize> {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |key: &str| -> Option<usize> {
            let line = info.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)).saturating_mul(1024))
    })
}

/// MemoryError for a request of more bytes than the machine has (see `memory_limit`).
fn check_fits(what: &str, n: usize, bytes: usize) -> Result<()> {
    match memory_limit() {
        Some(limit) if bytes > limit => Err(memory_error(what, n, bytes)),
        _ => Ok(()),
    }
}

/// An empty vector with room for `n` elements, or MemoryError (ValueError past isize).
pub fn with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let bytes = checked_bytes::<T>(n, what)?;
    check_fits(what, n, bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| memory_error(what, n, bytes))?;
    Ok(v)
}

/// `n` copies of `value`, allocated fallibly.
pub fn filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// `n` zeros (`T::default()`), allocated fallibly: the replacement for `vec![ZERO; n]`.
pub fn zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    filled(n, T::default(), what)
}

/// The panic payload of a refused allocation in a kernel whose signature cannot carry a
/// `Result` (the elementwise maps' outputs, written from inside rayon tasks). It unwinds
/// like a panic, but the Python bindings' `run` recognises it and raises the error it
/// holds (MemoryError / ValueError) instead of reporting a bug, and the panic hook they
/// install prints nothing for it. Rust users see an ordinary panic they can catch.
#[derive(Debug)]
pub struct AllocFailure(pub FerroError);

/// [`with_capacity`] for infallible signatures: unwinds with [`AllocFailure`] instead of
/// aborting the process (Rust's default on a refused allocation).
pub fn with_capacity_or_unwind<T>(n: usize, what: &str) -> Vec<T> {
    match with_capacity(n, what) {
        Ok(v) => v,
        Err(e) => std::panic::panic_any(AllocFailure(e)),
    }
}

/// `n` zeros of a float type, zero-allocated (calloc: fresh pages come zeroed from the
/// kernel, no fill pass, as `vec![0.0; n]` does), or MemoryError / ValueError.
pub fn float_zeros<T: crate::real::Real>(n: usize, what: &str) -> Result<Vec<T>> {
    let bytes = checked_bytes::<T>(n, what)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    check_fits(what, n, bytes)?;
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| memory_error(what, n, bytes))?;
    // SAFETY: layout has a non-zero size (n > 0, T is f32 or f64).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if p.is_null() {
        return Err(memory_error(what, n, bytes));
    }
    // SAFETY: p holds n elements allocated by the global allocator with T's array layout,
    // and all-zero bits are 0.0 for f32 and f64 (the only Real types).
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// [`float_zeros`] for infallible signatures (see [`AllocFailure`]).
pub fn float_zeros_or_unwind<T: crate::real::Real>(n: usize, what: &str) -> Vec<T> {
    float_zeros(n, what).unwrap_or_else(|e| std::panic::panic_any(AllocFailure(e)))
}

/// The error for a refused allocation of `n` elements (`bytes` bytes) for `what`.
pub fn memory_error(what: &str, n: usize, bytes: usize) -> FerroError {
    FerroError::Memory(format!(
        "{what}: cannot allocate {n} elements ({}) for the result",
        human_bytes(bytes)
    ))
}

/// `1.5 GiB`-style sizes for error messages, as numpy prints them.
fn human_bytes(bytes: usize) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.3} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_sizes_are_errors_not_aborts() {
        // past isize::MAX bytes: ValueError
        assert!(matches!(zeroed::<f64>(usize::MAX / 4, "t"), Err(FerroError::Value(_))));
        // representable but larger than any machine: MemoryError
        assert!(matches!(zeroed::<f32>((isize::MAX as usize) / 8, "t"), Err(FerroError::Memory(_))));
        assert!(matches!(checked_numel(&[usize::MAX, 2], "t"), Err(FerroError::Value(_))));
        assert_eq!(checked_numel(&[3, 0, 5], "t").unwrap(), 0);
        assert_eq!(filled(3, 7u8, "t").unwrap(), vec![7, 7, 7]);
    }

    #[test]
    fn more_than_the_machine_holds_is_refused_before_the_kernel_is_asked() {
        // under vm.overcommit_memory = 1 the allocation itself would succeed and touching
        // its pages would get the process killed: refused from the machine's size instead
        if let Some(limit) = memory_limit() {
            let n = limit / 4 + 1;
            assert!(matches!(float_zeros::<f32>(n, "t"), Err(FerroError::Memory(_))));
            assert!(matches!(with_capacity::<f32>(n, "t"), Err(FerroError::Memory(_))));
        }
    }

    #[test]
    fn an_infallible_signature_unwinds_with_the_error() {
        let r = std::panic::catch_unwind(|| with_capacity_or_unwind::<f32>((isize::MAX as usize) / 8, "t"));
        let payload = r.expect_err("the allocation must be refused");
        assert!(matches!(payload.downcast_ref::<AllocFailure>(), Some(AllocFailure(FerroError::Memory(_)))));
        assert_eq!(float_zeros::<f64>(3, "t").unwrap(), vec![0.0; 3]);
        assert!(float_zeros::<f32>((isize::MAX as usize) / 8, "t").is_err());
    }

    #[test]
    fn messages_name_the_op_and_bytes() {
        let e = memory_error("conv2d", 10, 40 << 30);
        assert_eq!(e.to_string(), "conv2d: cannot allocate 10 elements (40.000 GiB) for the result");
    }
}
