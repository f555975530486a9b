//! rust_core: ferrograd's Rust backend.
//!
//! The kernels live in `ops/<family>.rs`, one file per op family with the same names as
//! the kernel contract (`python/ferrograd/backends/base.py`). They work on contiguous
//! slices in row-major order, are generic over f32/f64 through [`real::Real`], run in
//! parallel with rayon, and validate their arguments (returning [`error::FerroError`]).
//! The PyO3 bindings (feature `python`, module `ferrograd._core`) are in `python/`.
//!
//! For Rust programs, [`layers`] wraps the kernels as PyTorch-style layers over `ndarray`
//! arrays (Linear, Conv2d, the norms, pools, dropout, LSTM / GRU, multi-head attention),
//! each with `forward` and `backward`, and re-exports the reverse-mode tape
//! ([`autograd::tape::Tape`]) and dual numbers ([`autograd::dual::Dual`]); the example
//! `train_mlp` trains on the tape. Neither the bindings nor the buffer-cache allocator
//! comes with the crate unless asked for (features `python`, `buffer-cache`).

pub mod alloc;
pub mod attention;
pub mod autograd;
pub mod buffer_cache;
pub mod conv;
pub mod error;
pub mod layers;
pub mod ops;
pub mod real;
pub mod safe_gemm;

#[cfg(feature = "python")]
mod python;

/// Large freed buffers are kept for the next request of their size (see buffer_cache.rs).
/// Only with the `buffer-cache` feature (which `python` enables): a Rust program that
/// uses the crate keeps its own allocator unless it asks for this one.
#[cfg(feature = "buffer-cache")]
#[global_allocator]
static ALLOCATOR: buffer_cache::CachingAllocator = buffer_cache::CachingAllocator;

pub use error::{FerroError, Result};
pub use real::Real;
