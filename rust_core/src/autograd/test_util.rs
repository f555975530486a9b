//! Helpers of the tape's unit tests: a seeded generator of values in [-1, 1) and the
//! central-difference check every op family's gradient test runs.

/// `n` values in [-1, 1) from a 64-bit LCG (deterministic, no dependency).
pub(crate) fn lcg(seed: &mut u64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Asserts that `analytic[k][j]` is the derivative of `loss` in `vals[k][j]`: the central
/// difference with step 1e-6, within 1e-6 (1 + |difference|), for every k and j. `vals`
/// is restored after each probe; `what` names the case in a failure.
pub(crate) fn assert_central_differences(
    vals: &mut [Vec<f64>],
    analytic: &[Vec<f64>],
    mut loss: impl FnMut(&[Vec<f64>]) -> f64,
    what: &str,
) {
    for k in 0..vals.len() {
        for j in 0..vals[k].len() {
            let (h, orig) = (1e-6, vals[k][j]);
            vals[k][j] = orig + h;
            let lp = loss(vals);
            vals[k][j] = orig - h;
            let lm = loss(vals);
            vals[k][j] = orig;
            let fd = (lp - lm) / (2.0 * h);
            assert!((analytic[k][j] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "{what} value {k}[{j}]: {} vs {fd}", analytic[k][j]);
        }
    }
}
