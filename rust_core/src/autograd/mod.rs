//! Automatic differentiation inside the crate.
//!
//! `dual`: forward mode with dual numbers, `Dual<T>`, generic over any [`dual::Scalar`]
//! (f32, f64 and `Dual` itself, so nesting gives higher derivatives).
//! `tape`: the native reverse-mode tape (a Wengert list over the crate's kernels); the
//! recording methods and backward of each further op family live beside it:
//! `tape_norm` (batch, layer, group and instance norm), `tape_dropout`, `tape_rnn`
//! (LSTM / GRU layers and the axis shuffles a stack of them needs), `tape_attention`
//! (multi-head self-attention: flash, or composed with dropout of the weights).

pub mod dual;
pub mod tape;
mod tape_attention;
mod tape_dropout;
mod tape_norm;
mod tape_rnn;
#[cfg(test)]
pub(crate) mod test_util;
