//! Multivariate Student-t components in the sampling coordinates s (`coords::s_of`): the
//! adaptive proposals placed at posterior modes. Sampling is exact for any degrees of
//! freedom (the chi^2 mixing variable is a Gamma deviate), and the density is normalised;
//! as proposals of theta the components are folded at A_V = 0 ([`FOLD`]).

use super::coords::{log_ds_dtheta, theta_of_s, DIM};
use crate::physics::Theta;
use crate::util::rng::Rng;
use crate::util::special::{fast_exp, fast_ln};

const D: usize = DIM;

/// The coordinate at which components are folded: A_V (in s) cannot be negative, and a
/// low-extinction posterior piles up against A_V = 0, so draws are reflected there instead
/// of wasted (the folded density is the sum of the t at s and at its mirror image).
pub const FOLD: usize = 3;

/// A multivariate Student-t in s.
#[derive(Clone, Debug, PartialEq)]
pub struct StudentT {
    /// Location.
    pub mean: [f64; D],
    /// Lower Cholesky factor of the scale matrix.
    pub chol: [[f64; D]; D],
    /// Degrees of freedom.
    pub nu: f64,
    /// log normalising constant (depends on nu and the scale's determinant).
    log_norm: f64,
    /// L^-1 e_FOLD: the whitened change of a point mirrored at A_V = 0 is -2 s[FOLD] times it.
    fold_dir: [f64; D],
}

/// Cholesky factor of a symmetric positive-definite matrix (None if it is not).
pub fn cholesky(a: &[[f64; D]; D]) -> Option<[[f64; D]; D]> {
    let mut flat = [0f64; D * D];
    for (f, x) in flat.iter_mut().zip(a.iter().flatten()) {
        *f = *x;
    }
    if !crate::util::linalg::cholesky(&mut flat, D) {
        return None;
    }
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| flat[i * D + j])
    }))
}

/// ln Gamma(x) for x > 0 (Lanczos, g = 7; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
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
    /// A t with location `mean`, scale matrix `scale` (symmetric positive definite) and
    /// `nu` degrees of freedom; None if the scale is not positive definite.
    pub fn new(mean: [f64; D], scale: &[[f64; D]; D], nu: f64) -> Option<StudentT> {
        let chol = cholesky(scale)?;
        let log_det = 2.0 * (0..D).map(|i| chol[i][i].ln()).sum::<f64>();
        if !mean.iter().all(|x| x.is_finite()) || !log_det.is_finite() || !(nu > 0.0) {
            return None;
        }
        let p = D as f64;
        let log_norm = ln_gamma((nu + p) / 2.0)
            - ln_gamma(nu / 2.0)
            - 0.5 * p * (nu * std::f64::consts::PI).ln()
            - 0.5 * log_det;
        let mut fold_dir = [0f64; D];
        for i in 0..D {
            let mut s = if i == FOLD { 1.0 } else { 0.0 };
            for j in 0..i {
                s -= chol[i][j] * fold_dir[j];
            }
            fold_dir[i] = s / chol[i][i];
        }
        Some(StudentT {
            mean,
            chol,
            nu,
            log_norm,
            fold_dir,
        })
    }

    /// The scale matrix L L^T.
    pub fn scale(&self) -> [[f64; D]; D] {
        std::array::from_fn(|i| {
            std::array::from_fn(|j| (0..D).map(|k| self.chol[i][k] * self.chol[j][k]).sum())
        })
    }

    /// Draw v: mean + L z / sqrt(chi^2_nu / nu).
    pub fn sample(&self, rng: &mut Rng) -> [f64; D] {
        let z: [f64; D] = std::array::from_fn(|_| rng.normal());
        // chi^2_nu = 2 Gamma(nu / 2): exact for any nu
        let chi2 = 2.0 * rng.gamma(0.5 * self.nu);
        let s = (chi2 / self.nu).sqrt().max(1e-300);
        let mut v = self.mean;
        for i in 0..D {
            for j in 0..=i {
                v[i] += self.chol[i][j] * z[j] / s;
            }
        }
        v
    }

    /// Whitened offset L^-1 (v - mean).
    #[inline]
    fn whiten(&self, v: &[f64; D]) -> [f64; D] {
        let mut y = [0f64; D];
        for i in 0..D {
            let mut s = v[i] - self.mean[i];
            for j in 0..i {
                s -= self.chol[i][j] * y[j];
            }
            y[i] = s / self.chol[i][i];
        }
        y
    }

    /// Squared Mahalanobis distance of v from the location under the scale matrix.
    #[inline]
    pub fn mahalanobis2(&self, v: &[f64; D]) -> f64 {
        self.whiten(v).iter().map(|x| x * x).sum()
    }

    /// log density at v.
    #[inline]
    pub fn log_pdf(&self, v: &[f64; D]) -> f64 {
        let m = self.mahalanobis2(v);
        self.log_norm - 0.5 * (self.nu + D as f64) * (m / self.nu).ln_1p()
    }

    /// log density of the t folded at A_V = 0 (`FOLD`), at s with s[FOLD] >= 0:
    /// q(s) + q(s reflected). -inf where s[FOLD] < 0.
    /// The mirror image's Mahalanobis distance comes from the whitened offset at no
    /// second solve, and its term is skipped where it is below 1e-16 of the first.
    #[inline]
    pub fn log_pdf_folded(&self, s: &[f64; D]) -> f64 {
        if !(s[FOLD] >= 0.0) {
            return f64::NEG_INFINITY;
        }
        let y = self.whiten(s);
        let k = -2.0 * s[FOLD];
        let (mut m, mut mr) = (0.0, 0.0);
        for i in 0..D {
            m += y[i] * y[i];
            let yr = y[i] + k * self.fold_dir[i];
            mr += yr * yr;
        }
        let h = 0.5 * (self.nu + D as f64);
        let a = -h * fast_ln(1.0 + m / self.nu);
        // the mirror term relative to the first: ((1 + m / nu) / (1 + mr / nu))^h
        let ratio_log = h * fast_ln((self.nu + m) / (self.nu + mr));
        let fold = if ratio_log > -37.0 { fast_ln(1.0 + fast_exp(ratio_log)) } else { 0.0 };
        self.log_norm + a + fold
    }

    /// log density of theta = theta(s) in the physical parameters, for the folded t.
    #[inline]
    pub fn log_density_theta(&self, s: &[f64; D], t: &Theta) -> f64 {
        self.log_pdf_folded(s) + log_ds_dtheta(t)
    }

    /// Draw theta from the folded t with its s and its log density in physical units.
    pub fn sample_theta(&self, rng: &mut Rng) -> (Theta, [f64; D], f64) {
        let mut s = self.sample(rng);
        s[FOLD] = s[FOLD].abs();
        let t = theta_of_s(&s);
        (t, s, self.log_density_theta(&s, &t))
    }
}

/// Weighted mean and covariance of points (weights need not be normalised; zero weights
/// ignored). Returns None when the weights sum to zero.
pub fn weighted_moments(
    v: &[[f64; D]],
    w: impl Fn(usize) -> f64,
) -> Option<([f64; D], [[f64; D]; D], f64)> {
    let mut sw = 0.0;
    let mut sw2 = 0.0;
    let mut mean = [0f64; D];
    for (i, x) in v.iter().enumerate() {
        let wi = w(i);
        if wi > 0.0 {
            sw += wi;
            sw2 += wi * wi;
            for d in 0..D {
                mean[d] += wi * x[d];
            }
        }
    }
    if !(sw > 0.0) {
        return None;
    }
    mean.iter_mut().for_each(|m| *m /= sw);
    let mut cov = [[0f64; D]; D];
    for (i, x) in v.iter().enumerate() {
        let wi = w(i);
        if wi > 0.0 {
            for a in 0..D {
                let da = wi * (x[a] - mean[a]);
                for b in a..D {
                    cov[a][b] += da * (x[b] - mean[b]);
                }
            }
        }
    }
    for a in 0..D {
        for b in a..D {
            cov[a][b] /= sw;
            cov[b][a] = cov[a][b];
        }
    }
    Some((mean, cov, sw * sw / sw2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_t(nu: f64) -> StudentT {
        let mut s = [[0f64; D]; D];
        for i in 0..D {
            for j in 0..D {
                s[i][j] = if i == j { 0.04 * (1 + i) as f64 } else { 0.01 };
            }
        }
        let mean = std::array::from_fn(|i| i as f64);
        StudentT::new(mean, &s, nu).unwrap()
    }

    /// E_t[g / t] = 1 for a normalised density g: checks the t's normalisation (against a
    /// Gaussian g of the same scale) for integer and fractional nu.
    #[test]
    fn density_is_normalised_for_any_nu() {
        for nu in [3.0, 4.5, 7.25] {
            let t = test_t(nu);
            let g = test_t(1e7); // a t with huge nu: the Gaussian with the same scale
            let mut rng = Rng::new(3);
            let m = 200_000;
            let mut acc = 0.0;
            for _ in 0..m {
                let v = t.sample(&mut rng);
                acc += (g.log_pdf(&v) - t.log_pdf(&v)).exp();
            }
            let est = acc / m as f64;
            assert!((est - 1.0).abs() < 0.02, "nu {nu}: normalisation {est}");
        }
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    /// Samples have the t's covariance nu / (nu - 2) x scale, also for fractional nu (the
    /// old sampler rounded nu and was exact only for integers).
    #[test]
    fn samples_have_the_t_covariance() {
        for nu in [5.0, 6.5] {
            let t = test_t(nu);
            let mut rng = Rng::new(9);
            let pts: Vec<[f64; D]> = (0..400_000).map(|_| t.sample(&mut rng)).collect();
            let (mean, cov, _) = weighted_moments(&pts, |_| 1.0).unwrap();
            let s = t.scale();
            let f = nu / (nu - 2.0);
            for i in 0..D {
                assert!((mean[i] - i as f64).abs() < 0.01, "nu {nu}: mean {mean:?}");
                let rel = cov[i][i] / (f * s[i][i]);
                assert!((rel - 1.0).abs() < 0.04, "nu {nu}: var {i} ratio {rel}");
            }
        }
    }

    /// The folded density integrates to one over A_V >= 0 (importance sampling from the
    /// plain t, which covers the mirror image too).
    #[test]
    fn folded_density_is_normalised() {
        let mut s = [[0f64; D]; D];
        for i in 0..D {
            s[i][i] = 0.04;
        }
        let mut mean = [0.1; D];
        mean[FOLD] = 0.05;
        let t = StudentT::new(mean, &s, 5.0).unwrap();
        let mut rng = Rng::new(8);
        let m = 200_000;
        let mut acc = 0.0;
        for _ in 0..m {
            let x = t.sample(&mut rng);
            let f = t.log_pdf_folded(&x);
            if f.is_finite() {
                acc += (f - t.log_pdf(&x)).exp();
            }
        }
        let est = acc / m as f64;
        assert!((est - 1.0).abs() < 0.01, "folded normalisation {est}");
        // a folded draw is never negative in A_V
        assert!((0..1000).all(|_| t.sample_theta(&mut rng).1[FOLD] >= 0.0));
    }
}
