//! Student-t components over the intrinsic coordinates y = (log10 Teff, log g, [M/H], R_V)
//! (part of step 3, infer): with distance and extinction drawn from their closed-form
//! conditional (`conditional`), the adaptive mixture's components live in these four
//! dimensions. Sampling is exact for any degrees of freedom and the density normalised.

use super::conditional::{INTRINSIC, NY};
use crate::util::linalg::cholesky;
use crate::util::rng::Rng;
use crate::util::special::ln_gamma;

/// A multivariate Student-t in y.
#[derive(Clone, Debug, PartialEq)]
pub struct IntrinsicT {
    /// Location.
    pub mean: [f64; NY],
    /// Lower Cholesky factor of the scale matrix.
    chol: [[f64; NY]; NY],
    /// Degrees of freedom.
    pub nu: f64,
    log_norm: f64,
}

impl IntrinsicT {
    /// A t with location `mean`, scale matrix `scale` and `nu` degrees of freedom; None if
    /// the scale is not positive definite.
    pub fn new(mean: [f64; NY], scale: &[[f64; NY]; NY], nu: f64) -> Option<IntrinsicT> {
        let mut flat = [0f64; NY * NY];
        for (f, x) in flat.iter_mut().zip(scale.iter().flatten()) {
            *f = *x;
        }
        if !cholesky(&mut flat, NY) || !mean.iter().all(|x| x.is_finite()) || !(nu > 0.0) {
            return None;
        }
        let chol: [[f64; NY]; NY] =
            std::array::from_fn(|i| std::array::from_fn(|j| flat[i * NY + j]));
        let log_det = 2.0 * (0..NY).map(|i| chol[i][i].ln()).sum::<f64>();
        let p = NY as f64;
        let log_norm = ln_gamma((nu + p) / 2.0)
            - ln_gamma(nu / 2.0)
            - 0.5 * p * (nu * std::f64::consts::PI).ln()
            - 0.5 * log_det;
        log_norm.is_finite().then_some(IntrinsicT {
            mean,
            chol,
            nu,
            log_norm,
        })
    }

    /// The t at the intrinsic block of a point and scale matrix in s (the marginal of a
    /// t in s over y).
    pub fn from_s_block(s: &[f64; 6], scale: &[[f64; 6]; 6], nu: f64) -> Option<IntrinsicT> {
        let mean = INTRINSIC.map(|i| s[i]);
        let block = INTRINSIC.map(|i| INTRINSIC.map(|j| scale[i][j]));
        IntrinsicT::new(mean, &block, nu)
    }

    /// The scale matrix L L^T.
    pub fn scale(&self) -> [[f64; NY]; NY] {
        std::array::from_fn(|i| {
            std::array::from_fn(|j| (0..NY).map(|k| self.chol[i][k] * self.chol[j][k]).sum())
        })
    }

    /// Draw y: mean + L z / sqrt(chi^2_nu / nu).
    pub fn sample(&self, rng: &mut Rng) -> [f64; NY] {
        let z: [f64; NY] = std::array::from_fn(|_| rng.normal());
        let s = (2.0 * rng.gamma(0.5 * self.nu) / self.nu)
            .sqrt()
            .max(1e-300);
        let mut y = self.mean;
        for i in 0..NY {
            for j in 0..=i {
                y[i] += self.chol[i][j] * z[j] / s;
            }
        }
        y
    }

    /// The antithetic partner of a draw: y reflected through the location. It has the
    /// same distribution as y (the t is symmetric), and pairs of them cancel the odd part
    /// of an integrand, so medians and means of near-symmetric posteriors converge faster.
    pub fn reflect(&self, y: &[f64; NY]) -> [f64; NY] {
        std::array::from_fn(|i| 2.0 * self.mean[i] - y[i])
    }

    /// log density at y.
    pub fn log_pdf(&self, y: &[f64; NY]) -> f64 {
        let mut w = [0f64; NY];
        for i in 0..NY {
            let mut acc = y[i] - self.mean[i];
            for j in 0..i {
                acc -= self.chol[i][j] * w[j];
            }
            w[i] = acc / self.chol[i][i];
        }
        let m2: f64 = w.iter().map(|x| x * x).sum();
        if !m2.is_finite() {
            return f64::NEG_INFINITY;
        }
        self.log_norm - 0.5 * (self.nu + NY as f64) * (m2 / self.nu).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The density integrates to one over a grid and agrees with the draws' moments.
    #[test]
    fn normalised_and_consistent_with_its_draws() {
        let scale = [
            [0.04, 0.01, 0.0, 0.0],
            [0.01, 0.09, 0.02, 0.0],
            [0.0, 0.02, 0.16, 0.01],
            [0.0, 0.0, 0.01, 0.25],
        ];
        // a grid integral (+-8 scales per axis) of a t with light tails
        let light = IntrinsicT::new([3.7, 4.4, -0.1, 3.1], &scale, 30.0).unwrap();
        let n: usize = 48;
        let sd: [f64; NY] = std::array::from_fn(|i| scale[i][i].sqrt());
        let h: [f64; NY] = std::array::from_fn(|i| 16.0 * sd[i] / n as f64);
        let mut total = 0.0;
        for idx in 0..n.pow(4) {
            let y: [f64; NY] = std::array::from_fn(|i| {
                let k = (idx / n.pow(i as u32)) % n;
                light.mean[i] - 8.0 * sd[i] + (k as f64 + 0.5) * h[i]
            });
            total += light.log_pdf(&y).exp();
        }
        let integral = total * h.iter().product::<f64>();
        assert!((integral - 1.0).abs() < 2e-3, "integral {integral}");
        let t = IntrinsicT::new([3.7, 4.4, -0.1, 3.1], &scale, 5.0).unwrap();
        let mut rng = Rng::new(5);
        // covariance of the draws is nu / (nu - 2) times the scale
        let draws: Vec<[f64; NY]> = (0..100_000).map(|_| t.sample(&mut rng)).collect();
        let m1: f64 = draws.iter().map(|y| y[1]).sum::<f64>() / draws.len() as f64;
        let v1: f64 = draws.iter().map(|y| (y[1] - m1).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((v1 / (0.09 * 5.0 / 3.0) - 1.0).abs() < 0.05, "var {v1}");
        assert!((t.scale()[1][2] - 0.02).abs() < 1e-12);
    }
}
