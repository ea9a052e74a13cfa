//! Adaptive refinement of the proposal (one population-Monte-Carlo step): after a first
//! round of importance sampling from the neural posterior, a multivariate Student-t is fitted
//! to the weighted samples in the unbounded coordinates v = (log10 Teff, log g, [M/H],
//! softplus^-1 A_V, logit R_V, log10 d) and a second round is drawn from it. Both rounds are
//! valid self-normalised importance samplers of the same posterior; they are combined with
//! weights proportional to their effective sample sizes. This recovers efficiency where the
//! flow is broader than the posterior (e.g. precise parallaxes) without ever biasing it.

use crate::nn::param::ParamTransform;
use crate::physics::Theta;
use crate::util::rng::Rng;

const D: usize = 6;

/// A multivariate Student-t in v-space.
#[derive(Clone, Debug)]
pub struct StudentT {
    mean: [f64; D],
    /// Lower Cholesky factor of the scale matrix.
    chol: [[f64; D]; D],
    log_det: f64,
    nu: f64,
}

const IDENTITY: ParamTransform = ParamTransform {
    mean: [0.0; D],
    scale: [1.0; D],
};

/// Cholesky factor of a symmetric positive definite matrix (None if not SPD), through the
/// project's dense SPD routine.
fn cholesky(a: &[[f64; D]; D]) -> Option<[[f64; D]; D]> {
    let mut flat = [0f64; D * D];
    for (f, x) in flat.iter_mut().zip(a.iter().flatten()) {
        *f = *x;
    }
    if !crate::calib::linalg::cholesky(&mut flat, D) {
        return None;
    }
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| flat[i * D + j])
    }))
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7), accurate to ~1e-15 for x > 0
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

impl StudentT {
    /// Fit to weighted samples (v-space): weighted mean and covariance, shrunk towards a
    /// quarter of the unweighted spread of the samples in proportion to how few effective
    /// samples there are, then inflated (so the proposal stays wider than the posterior).
    pub fn fit(v: &[[f64; D]], w: &[f64], n_eff: f64, nu: f64) -> Option<StudentT> {
        let n = v.len() as f64;
        let mut mw = [0f64; D];
        let mut mu = [0f64; D];
        for (x, &wi) in v.iter().zip(w) {
            for d in 0..D {
                mw[d] += wi * x[d];
                mu[d] += x[d] / n;
            }
        }
        // weighted covariance (upper triangle, mirrored) and the unweighted variances
        let mut cw = [[0f64; D]; D];
        let mut cu = [[0f64; D]; D];
        for (x, &wi) in v.iter().zip(w) {
            for a in 0..D {
                let da = wi * (x[a] - mw[a]);
                for b in a..D {
                    cw[a][b] += da * (x[b] - mw[b]);
                }
                cu[a][a] += (x[a] - mu[a]) * (x[a] - mu[a]) / n;
            }
        }
        for a in 0..D {
            for b in 0..a {
                cw[a][b] = cw[b][a];
            }
        }
        // shrinkage: k0 pseudo-samples of a diagonal prior covariance (the flow's spread / 4)
        let k0 = 2.0 * D as f64;
        let inflate = 1.5f64 * 1.5;
        let mut c = [[0f64; D]; D];
        for a in 0..D {
            for b in 0..D {
                let prior = if a == b { cu[a][a] / 4.0 } else { 0.0 };
                c[a][b] = inflate * (n_eff * cw[a][b] + k0 * prior) / (n_eff + k0);
            }
            c[a][a] += 1e-10;
        }
        let chol = cholesky(&c)?;
        let log_det = 2.0 * (0..D).map(|i| chol[i][i].ln()).sum::<f64>();
        if !mw.iter().all(|x| x.is_finite()) || !log_det.is_finite() {
            return None;
        }
        Some(StudentT {
            mean: mw,
            chol,
            log_det,
            nu,
        })
    }

    /// Draw v.
    pub fn sample(&self, rng: &mut Rng) -> [f64; D] {
        let z: [f64; D] = std::array::from_fn(|_| rng.normal());
        // chi^2_nu / nu from nu (integer part) squared normals and a gamma remainder
        let k = self.nu.round() as usize;
        let chi2: f64 = (0..k).map(|_| rng.normal().powi(2)).sum();
        let s = (chi2 / k as f64).sqrt().max(1e-12);
        let mut v = self.mean;
        for i in 0..D {
            for j in 0..=i {
                v[i] += self.chol[i][j] * z[j] / s;
            }
        }
        v
    }

    /// log density at v.
    pub fn log_pdf(&self, v: &[f64; D]) -> f64 {
        // solve L y = v - mean
        let mut y = [0f64; D];
        for i in 0..D {
            let mut s = v[i] - self.mean[i];
            for j in 0..i {
                s -= self.chol[i][j] * y[j];
            }
            y[i] = s / self.chol[i][i];
        }
        let m: f64 = y.iter().map(|x| x * x).sum();
        let nu = self.nu;
        let p = D as f64;
        ln_gamma((nu + p) / 2.0)
            - ln_gamma(nu / 2.0)
            - 0.5 * p * (nu * std::f64::consts::PI).ln()
            - 0.5 * self.log_det
            - 0.5 * (nu + p) * (1.0 + m / nu).ln()
    }

    /// Draw theta with its log density in physical units.
    pub fn sample_theta(&self, rng: &mut Rng) -> (Theta, f64) {
        let v = self.sample(rng);
        let t = ParamTransform::theta_of_v(&v);
        // q(theta) = q(v) |dv/dtheta|
        (t, self.log_pdf(&v) + IDENTITY.log_jacobian(&t))
    }
}

/// v-coordinates of a theta.
pub fn v_of(t: &Theta) -> [f64; D] {
    ParamTransform::v(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_density_integrates_and_matches_its_samples() {
        let mut rng = Rng::new(3);
        let pts: Vec<[f64; D]> = (0..4000)
            .map(|_| std::array::from_fn(|i| 0.3 * rng.normal() + i as f64))
            .collect();
        let w = vec![1.0 / 4000.0; 4000];
        let t = StudentT::fit(&pts, &w, 4000.0, 5.0).unwrap();
        // E_t[exp(log_pdf_g - log_pdf_t)] for a Gaussian g equals 1 (importance sampling)
        let sd = 0.3 * 1.5;
        let mut acc = 0.0;
        let m = 200_000;
        for _ in 0..m {
            let v = t.sample(&mut rng);
            let lg: f64 = (0..D)
                .map(|i| {
                    -0.5 * ((v[i] - i as f64) / sd).powi(2)
                        - (sd * (2.0 * std::f64::consts::PI).sqrt()).ln()
                })
                .sum();
            acc += (lg - t.log_pdf(&v)).exp();
        }
        let est = acc / m as f64;
        assert!((est - 1.0).abs() < 0.02, "normalisation estimate {est}");
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }
}
