//! Forward-mode automatic differentiation with dual numbers.
//!
//! A dual number `a + b ε` with `ε² = 0` carries a value `a` and a tangent `b`. Evaluating
//! `f(x + 1 ε)` gives `f(x) + f'(x) ε`: each operation applies the chain rule to the
//! tangent as it computes the value (one forward pass, no tape). `Dual<T>` is generic over
//! [`Scalar`], which f32, f64 and `Dual<T>` itself implement, so `Dual<Dual<f64>>` seeded
//! with `x + ε1 + ε2` yields the second derivative in its `eps.eps` part.
//!
//! Functions: + - * / and negation (between duals and with constants through
//! [`Dual::constant`]), exp, ln, sin, cos, tanh, powf, sqrt. Domains follow the float
//! functions: `ln` of a negative value is NaN in both parts, `sqrt(0)` has an infinite
//! derivative.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// What a dual number can be built over: a field with the elementary functions.
pub trait Scalar:
    Copy
    + Debug
    + PartialEq
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    /// The real part all the way down (the value of a nested dual).
    fn value(self) -> f64;
    /// True when every component is zero (a constant exponent in `powf`).
    fn is_zero(self) -> bool;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn powf(self, e: Self) -> Self;
}

macro_rules! float_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn value(self) -> f64 {
                self as f64
            }
            #[inline]
            fn is_zero(self) -> bool {
                self == 0.0
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
        }
    };
}
float_scalar!(f32);
float_scalar!(f64);

/// `re + eps ε` with `ε² = 0`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Dual<T> {
    pub re: T,
    pub eps: T,
}

impl<T: Scalar> Dual<T> {
    pub fn new(re: T, eps: T) -> Self {
        Dual { re, eps }
    }
    /// A constant: tangent zero.
    pub fn constant(re: T) -> Self {
        Dual { re, eps: T::from_f64(0.0) }
    }
    /// The independent variable: tangent one.
    pub fn variable(re: T) -> Self {
        Dual { re, eps: T::from_f64(1.0) }
    }
}

impl<T: Scalar> Add for Dual<T> {
    type Output = Self;
    #[inline]
    fn add(self, o: Self) -> Self {
        Dual { re: self.re + o.re, eps: self.eps + o.eps }
    }
}

impl<T: Scalar> Sub for Dual<T> {
    type Output = Self;
    #[inline]
    fn sub(self, o: Self) -> Self {
        Dual { re: self.re - o.re, eps: self.eps - o.eps }
    }
}

impl<T: Scalar> Mul for Dual<T> {
    type Output = Self;
    #[inline]
    fn mul(self, o: Self) -> Self {
        Dual { re: self.re * o.re, eps: self.re * o.eps + self.eps * o.re }
    }
}

impl<T: Scalar> Div for Dual<T> {
    type Output = Self;
    /// (a/b)' = (a' b - a b') / b² = (a' - (a/b) b') / b
    #[inline]
    fn div(self, o: Self) -> Self {
        let q = self.re / o.re;
        Dual { re: q, eps: (self.eps - q * o.eps) / o.re }
    }
}

impl<T: Scalar> Neg for Dual<T> {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        Dual { re: -self.re, eps: -self.eps }
    }
}

impl<T: Scalar> Scalar for Dual<T> {
    fn from_f64(v: f64) -> Self {
        Dual::constant(T::from_f64(v))
    }
    fn value(self) -> f64 {
        self.re.value()
    }
    fn is_zero(self) -> bool {
        self.re.is_zero() && self.eps.is_zero()
    }
    fn exp(self) -> Self {
        let e = self.re.exp();
        Dual { re: e, eps: e * self.eps }
    }
    fn ln(self) -> Self {
        Dual { re: self.re.ln(), eps: self.eps / self.re }
    }
    fn sin(self) -> Self {
        Dual { re: self.re.sin(), eps: self.re.cos() * self.eps }
    }
    fn cos(self) -> Self {
        Dual { re: self.re.cos(), eps: -(self.re.sin() * self.eps) }
    }
    fn tanh(self) -> Self {
        let t = self.re.tanh();
        Dual { re: t, eps: (T::from_f64(1.0) - t * t) * self.eps }
    }
    fn sqrt(self) -> Self {
        let s = self.re.sqrt();
        Dual { re: s, eps: self.eps / (T::from_f64(2.0) * s) }
    }
    /// `a^n`: d = n a^(n-1) a' + a^n ln(a) n'. With a constant exponent (n' = 0) the
    /// second term is left out, so negative bases with constant exponents work as in
    /// `powf` (no `0 * ln(negative) = NaN`).
    fn powf(self, n: Self) -> Self {
        let re = self.re.powf(n.re);
        let one = T::from_f64(1.0);
        let mut eps = n.re * self.re.powf(n.re - one) * self.eps;
        if !n.eps.is_zero() {
            eps = eps + re * self.re.ln() * n.eps;
        }
        Dual { re, eps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type D = Dual<f64>;
    type DD = Dual<Dual<f64>>;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
    }

    /// d/dx of f at x by central differences (f evaluated on plain f64).
    fn fd(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-6;
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn arithmetic_rules() {
        let x = D::variable(1.5);
        let c = D::constant(2.0);
        // product, quotient, difference, negation against the analytic derivatives
        let y = x * x * c - x / c + (-x);
        close(y.re, 1.5 * 1.5 * 2.0 - 0.75 - 1.5, 1e-15);
        close(y.eps, 4.0 * 1.5 - 0.5 - 1.0, 1e-15);
        let q = c / x; // 2/x -> -2/x²
        close(q.eps, -2.0 / (1.5 * 1.5), 1e-15);
        let d = x - c;
        assert_eq!((d.re, d.eps), (-0.5, 1.0));
    }

    #[test]
    fn elementary_functions_match_analytic_and_finite_differences() {
        for &x0 in &[-1.3, -0.2, 0.4, 0.9, 2.7] {
            let x = D::variable(x0);
            let cases: Vec<(D, f64, f64)> = vec![
                (x.exp(), x0.exp(), x0.exp()),
                (x.sin(), x0.sin(), x0.cos()),
                (x.cos(), x0.cos(), -x0.sin()),
                (x.tanh(), x0.tanh(), 1.0 - x0.tanh().powi(2)),
            ];
            for (d, v, dv) in cases {
                close(d.re, v, 1e-14);
                close(d.eps, dv, 1e-14);
            }
            let a = x0.abs() + 0.1;
            let xa = D::variable(a);
            close(xa.ln().eps, 1.0 / a, 1e-14);
            close(xa.sqrt().eps, 0.5 / a.sqrt(), 1e-14);
            close(xa.powf(D::constant(2.5)).eps, 2.5 * a.powf(1.5), 1e-14);
            // variable exponent: d/dx x^x = x^x (ln x + 1)
            close(xa.powf(xa).eps, a.powf(a) * (a.ln() + 1.0), 1e-13);
            // a composite against central differences
            let f = |t: f64| (t.sin() * t.exp() + (t * t + 1.0).sqrt()).tanh() / (t * t + 2.0).ln();
            let g = {
                let one = D::constant(1.0);
                let two = D::constant(2.0);
                (x.sin() * x.exp() + (x * x + one).sqrt()).tanh() / (x * x + two).ln()
            };
            close(g.re, f(x0), 1e-14);
            close(g.eps, fd(f, x0), 1e-7);
        }
    }

    #[test]
    fn constant_exponent_on_negative_base() {
        // (-2)^3 with a constant exponent: derivative 3 * 4 = 12, no NaN from ln(-2)
        let y = D::variable(-2.0).powf(D::constant(3.0));
        assert_eq!(y.re, -8.0);
        close(y.eps, 12.0, 1e-15);
        // a variable exponent on a negative base is NaN, as ln(-2) is
        assert!(D::variable(-2.0).powf(D::variable(3.0)).eps.is_nan());
    }

    #[test]
    fn partial_derivatives_by_seeding() {
        // f(x, y) = x * sin(y) + exp(x * y); df/dx = sin y + y e^{xy}, df/dy = x cos y + x e^{xy}
        let f = |x: D, y: D| x * y.sin() + (x * y).exp();
        let (x0, y0) = (0.7, -1.1);
        let dx = f(D::variable(x0), D::constant(y0)).eps;
        let dy = f(D::constant(x0), D::variable(y0)).eps;
        close(dx, y0.sin() + y0 * (x0 * y0).exp(), 1e-14);
        close(dy, x0 * y0.cos() + x0 * (x0 * y0).exp(), 1e-14);
    }

    /// x + ε1 + ε2 (outer ε over inner ε): f(x) = re.re, f'(x) = re.eps = eps.re, f''(x) = eps.eps.
    fn seed2(x: f64) -> DD {
        Dual::new(D::variable(x), D::constant(1.0))
    }

    #[test]
    fn nested_second_derivatives() {
        for &x0 in &[-0.8, 0.3, 1.9] {
            let x = seed2(x0);
            // sin(x) e^x: f'' = 2 e^x cos x
            let y = x.sin() * x.exp();
            close(y.re.re, x0.sin() * x0.exp(), 1e-14);
            close(y.re.eps, x0.exp() * (x0.sin() + x0.cos()), 1e-14);
            close(y.eps.re, y.re.eps, 1e-15);
            close(y.eps.eps, 2.0 * x0.exp() * x0.cos(), 1e-13);
            // tanh'' = -2 tanh (1 - tanh²)
            let t = x0.tanh();
            close(x.tanh().eps.eps, -2.0 * t * (1.0 - t * t), 1e-13);
            // x^3 -> 6x; cos'' = -cos
            close(x.powf(DD::from_f64(3.0)).eps.eps, 6.0 * x0, 1e-12);
            close(x.cos().eps.eps, -x0.cos(), 1e-14);
            // (1/x)'' = 2/x³
            close((DD::from_f64(1.0) / x).eps.eps, 2.0 / x0.powi(3), 1e-12);
        }
        let a = seed2(2.3);
        close(a.ln().eps.eps, -1.0 / (2.3 * 2.3), 1e-14);
        close(a.sqrt().eps.eps, -0.25 * 2.3f64.powf(-1.5), 1e-14);
    }

    #[test]
    fn third_derivative_by_triple_nesting() {
        // exp(2x)''' = 8 exp(2x)
        let x0 = 0.35;
        let x: Dual<Dual<Dual<f64>>> =
            Dual::new(Dual::new(D::variable(x0), D::constant(1.0)), Dual::constant(D::constant(1.0)));
        let y = (Dual::from_f64(2.0) * x).exp();
        close(y.eps.eps.eps, 8.0 * (2.0 * x0).exp(), 1e-13);
        assert_eq!(y.value(), (2.0 * x0).exp());
    }

    #[test]
    fn float32_duals() {
        let x = Dual::<f32>::variable(0.5);
        let y = x.tanh() * x.exp();
        let t = 0.5f64.tanh();
        let expected = 0.5f64.exp() * (t + 1.0 - t * t);
        assert!((y.eps as f64 - expected).abs() < 1e-6, "{} vs {expected}", y.eps);
    }

    #[test]
    fn domain_edges_follow_the_floats() {
        assert!(D::variable(-1.0).ln().re.is_nan());
        assert!(D::variable(0.0).sqrt().eps.is_infinite());
        assert!(D::variable(1.0).is_zero() == false && D::constant(0.0).is_zero());
    }
}
