//! Parameter initialisation: a small seeded generator and PyTorch's default schemes.
//!
//! PyTorch initialises most layers' weights and biases from U(-b, b) with
//! b = 1 / sqrt(fan_in) (`kaiming_uniform_(a=sqrt(5))` works out to that bound for the
//! weight), recurrent layers with b = 1 / sqrt(hidden_size), and MultiheadAttention's
//! fused input projection with Xavier's b = sqrt(6 / (fan_in + fan_out)). The draws come
//! from [`Rng`], so a seed gives the same parameters on every run and machine (not
//! PyTorch's numbers: its generator is another).

use crate::real::Real;
use ndarray::{Array, Dimension, ShapeBuilder};

/// SplitMix64 (Steele, Lea and Flood 2014): a 64-bit state stepped by a constant and
/// mixed by two multiply-xorshift rounds. Statistically sound for initialisation and
/// synthetic data, tiny, and with no dependency; not for cryptography.
///
/// ```rust
/// use _core::layers::init::Rng;
///
/// let (mut a, mut b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64()); // a seed gives one sequence
/// let u = a.uniform(-2.0, 3.0);
/// assert!((-2.0..3.0).contains(&u));
/// let n = a.normal();
/// assert!(n.is_finite());
/// ```
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in [low, high): the top 53 bits as a fraction, so every value is
    /// an exact multiple of 2^-53 of the range.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        low + (high - low) * unit
    }

    /// A standard normal value (Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.uniform(0.0, 1.0), self.uniform(0.0, 1.0));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A value below `n` (n > 0), without modulo bias worth measuring for n far below 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// An array of `shape` drawn from U(-bound, bound), in row-major order.
pub fn uniform<T: Real, D: Dimension, Sh: ShapeBuilder<Dim = D>>(shape: Sh, bound: f64, rng: &mut Rng) -> Array<T, D> {
    Array::from_shape_simple_fn(shape, || T::c(rng.uniform(-bound, bound)))
}

/// PyTorch's bound for a layer with `fan_in` inputs per output: 1 / sqrt(fan_in), 0 for
/// an empty fan-in (PyTorch's `_calculate_fan_in_and_fan_out` then skips the draw; the
/// parameter of no element, or all zeros, is the same thing).
pub fn fan_in_bound(fan_in: usize) -> f64 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f64).sqrt()
    }
}
