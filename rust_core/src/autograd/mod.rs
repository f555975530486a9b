//! Automatic differentiation inside the crate.
//!
//! `dual`: forward mode with dual numbers, `Dual<T>`, generic over any [`dual::Scalar`]
//! (f32, f64 and `Dual` itself, so nesting gives higher derivatives).
//! The native reverse-mode tape is a separate file (`tape.rs`) when it lands.

pub mod dual;
