//! Automatic differentiation inside the crate.
//!
//! `dual`: forward mode with dual numbers, `Dual<T>`, generic over any [`dual::Scalar`]
//! (f32, f64 and `Dual` itself, so nesting gives higher derivatives).
//! `tape`: the native reverse-mode tape (a Wengert list over the crate's kernels).

pub mod dual;
pub mod tape;
