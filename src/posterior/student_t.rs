//! Multivariate Student-t components in the sampling coordinates s (`coords::s_of`): the
//! adaptive proposals placed at posterior modes. Sampling is exact for any degrees of
//! freedom (the chi^2 mixing variable is a Gamma deviate), and the density is normalised;
//! as proposals of theta the components are folded at A_V = 0 ([`FOLD`]).

use super::coords::{log_ds_dtheta, theta_of_s, DIM};
use crate::physics::Theta;
use crate::util::rng::Rng;
use crate::util::special::{fast_exp, fast_ln, ln_gamma};

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
    /// L^-1, row-major lower triangle: whitening without divisions.
    chol_inv: [[f64; D]; D],
    /// |L^-1 e_FOLD|^2.
    fold_norm2: f64,
    /// The density's exponent (nu + D) / 2.
    half_nu_d: f64,
    /// The mirror term is negligible (below e^-37 of the first) where
    /// nu + m_mirror > (nu + m) * this.
    fold_cut: f64,
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

/// Inverse of a lower-triangular matrix with a positive diagonal (forward substitution).
fn lower_inverse(l: &[[f64; D]; D]) -> [[f64; D]; D] {
    let mut inv = [[0f64; D]; D];
    for c in 0..D {
        for i in c..D {
            let mut acc = if i == c { 1.0 } else { 0.0 };
            for j in c..i {
                acc -= l[i][j] * inv[j][c];
            }
            inv[i][c] = acc / l[i][i];
        }
    }
    inv
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
        let chol_inv = lower_inverse(&chol);
        let fold_dir: [f64; D] = std::array::from_fn(|i| chol_inv[i][FOLD]);
        let half_nu_d = 0.5 * (nu + p);
        Some(StudentT {
            mean,
            chol,
            nu,
            log_norm,
            fold_dir,
            chol_inv,
            fold_norm2: fold_dir.iter().map(|x| x * x).sum(),
            half_nu_d,
            fold_cut: (37.0 / half_nu_d).exp(),
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
        std::array::from_fn(|i| {
            (0..=i)
                .map(|j| self.chol_inv[i][j] * (v[j] - self.mean[j]))
                .sum()
        })
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
    /// The mirror image's Mahalanobis distance follows from the whitened offset
    /// (|y + k f|^2 = m + 2k y.f + k^2 |f|^2, k = -2 s[FOLD], f = L^-1 e_FOLD) at no second
    /// solve, and its term is skipped where it is below e^-37 of the first.
    #[inline]
    pub fn log_pdf_folded(&self, s: &[f64; D]) -> f64 {
        if !(s[FOLD] >= 0.0) {
            return f64::NEG_INFINITY;
        }
        let y = self.whiten(s);
        let m: f64 = y.iter().map(|x| x * x).sum();
        let yf: f64 = y.iter().zip(&self.fold_dir).map(|(a, b)| a * b).sum();
        if !m.is_finite() {
            return f64::NEG_INFINITY;
        }
        let k = -2.0 * s[FOLD];
        let mr = (m + k * (2.0 * yf + k * self.fold_norm2)).max(0.0);
        let (base, mirror) = (self.nu + m, self.nu + mr);
        let a = -self.half_nu_d * fast_ln(base / self.nu);
        let fold = if mirror > base * self.fold_cut {
            0.0
        } else {
            // ln(1 + ((nu + m) / (nu + m_mirror))^h)
            fast_ln(1.0 + self.ratio_pow(base / mirror))
        };
        self.log_norm + a + fold
    }

    /// r^((nu + D) / 2) for r > 0: powi and one square root for integer nu (the usual case),
    /// exp-log otherwise.
    #[inline]
    fn ratio_pow(&self, r: f64) -> f64 {
        let h = self.half_nu_d;
        let whole = h.floor();
        if h - whole == 0.5 && whole < 32.0 {
            r.powi(whole as i32) * r.sqrt()
        } else if h == whole && whole < 32.0 {
            r.powi(whole as i32)
        } else {
            fast_exp(h * fast_ln(r))
        }
    }

    /// [`StudentT::log_pdf_folded`] at many points, appended to `out` (four points at a
    /// time in AVX2 lanes where the CPU has them and nu is an integer; equal to the scalar
    /// form to ~1e-14).
    pub fn log_pdf_folded_many(&self, s: &[[f64; D]], out: &mut Vec<f64>) {
        let from = out.len();
        #[cfg(target_arch = "x86_64")]
        if self.integer_nu() && crate::util::has_avx2_fma() {
            out.resize(from + s.len(), 0.0);
            // SAFETY: the CPU supports avx2 and fma (checked at run time).
            unsafe { simd::log_pdf_folded_avx2(self, s, &mut out[from..]) };
            return;
        }
        out.extend(s.iter().map(|v| self.log_pdf_folded(v)));
    }

    /// Whether (nu + D) / 2 is an integer or half-integer below 32 (`ratio_pow`'s fast path).
    fn integer_nu(&self) -> bool {
        let h = self.half_nu_d;
        let f = h - h.floor();
        (f == 0.0 || f == 0.5) && h < 32.0
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

/// The AVX2 kernel of [`StudentT::log_pdf_folded_many`].
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{StudentT, D, FOLD};
    use std::arch::x86_64::*;

    /// ln x in four lanes for positive, finite, normal x (the scalar `fast_ln`'s series).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn ln4(x: __m256d) -> __m256d {
        let bits = _mm256_castpd_si256(x);
        let mantissa = _mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi64x(0x000f_ffff_ffff_ffff)),
            _mm256_set1_epi64x(0x3ff0_0000_0000_0000),
        );
        let m1 = _mm256_castsi256_pd(mantissa);
        let big = _mm256_cmp_pd::<_CMP_GT_OQ>(m1, _mm256_set1_pd(std::f64::consts::SQRT_2));
        let m = _mm256_blendv_pd(m1, _mm256_mul_pd(m1, _mm256_set1_pd(0.5)), big);
        // the biased exponent as a double: its bits under 2^52's, minus 2^52
        let biased = _mm256_or_si256(
            _mm256_srli_epi64::<52>(bits),
            _mm256_set1_epi64x(0x4330_0000_0000_0000),
        );
        let e = _mm256_sub_pd(
            _mm256_castsi256_pd(biased),
            _mm256_set1_pd(4_503_599_627_370_496.0 + 1023.0),
        );
        let e = _mm256_add_pd(e, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
        let one = _mm256_set1_pd(1.0);
        let s = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
        let s2 = _mm256_mul_pd(s, s);
        let mut p = _mm256_set1_pd(1.0 / 17.0);
        for c in [15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
            p = _mm256_fmadd_pd(p, s2, _mm256_set1_pd(1.0 / c));
        }
        let two_s = _mm256_add_pd(s, s);
        _mm256_fmadd_pd(
            two_s,
            p,
            _mm256_mul_pd(e, _mm256_set1_pd(std::f64::consts::LN_2)),
        )
    }

    /// Folded log densities at `s` into `out` (same length); nu must pass `integer_nu`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn log_pdf_folded_avx2(t: &StudentT, s: &[[f64; D]], out: &mut [f64]) {
        let chunks = s.len() / 4;
        let whole = t.half_nu_d.floor() as usize;
        let half = t.half_nu_d - t.half_nu_d.floor() == 0.5;
        let nu = _mm256_set1_pd(t.nu);
        for k in 0..chunks {
            let p = &s[4 * k..4 * k + 4];
            let lane = |j: usize| _mm256_set_pd(p[3][j], p[2][j], p[1][j], p[0][j]);
            let d: [__m256d; D] =
                std::array::from_fn(|j| _mm256_sub_pd(lane(j), _mm256_set1_pd(t.mean[j])));
            let (mut m, mut yf) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            for i in 0..D {
                let mut y = _mm256_setzero_pd();
                for (j, dj) in d.iter().enumerate().take(i + 1) {
                    y = _mm256_fmadd_pd(_mm256_set1_pd(t.chol_inv[i][j]), *dj, y);
                }
                m = _mm256_fmadd_pd(y, y, m);
                yf = _mm256_fmadd_pd(y, _mm256_set1_pd(t.fold_dir[i]), yf);
            }
            let sf = lane(FOLD);
            let kk = _mm256_mul_pd(_mm256_set1_pd(-2.0), sf);
            // m_mirror = m + k (2 y.f + k |f|^2)
            let inner = _mm256_fmadd_pd(kk, _mm256_set1_pd(t.fold_norm2), _mm256_add_pd(yf, yf));
            let mr = _mm256_max_pd(_mm256_fmadd_pd(kk, inner, m), _mm256_setzero_pd());
            let (base, mirror) = (_mm256_add_pd(nu, m), _mm256_add_pd(nu, mr));
            let a = _mm256_mul_pd(_mm256_set1_pd(-t.half_nu_d), ln4(_mm256_div_pd(base, nu)));
            let r = _mm256_div_pd(base, mirror);
            let mut pw = if half {
                _mm256_sqrt_pd(r)
            } else {
                _mm256_set1_pd(1.0)
            };
            for _ in 0..whole {
                pw = _mm256_mul_pd(pw, r);
            }
            let pw = _mm256_min_pd(pw, _mm256_set1_pd(1e300));
            let fold = ln4(_mm256_add_pd(_mm256_set1_pd(1.0), pw));
            let negligible = _mm256_cmp_pd::<_CMP_GT_OQ>(
                mirror,
                _mm256_mul_pd(base, _mm256_set1_pd(t.fold_cut)),
            );
            let fold = _mm256_andnot_pd(negligible, fold);
            let res = _mm256_add_pd(_mm256_add_pd(_mm256_set1_pd(t.log_norm), a), fold);
            // -inf where s[FOLD] < 0 (or NaN) or the distance is not finite
            let ok = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GE_OQ>(sf, _mm256_setzero_pd()),
                _mm256_cmp_pd::<_CMP_LT_OQ>(m, _mm256_set1_pd(f64::INFINITY)),
            );
            let res = _mm256_blendv_pd(_mm256_set1_pd(f64::NEG_INFINITY), res, ok);
            _mm256_storeu_pd(out.as_mut_ptr().add(4 * k), res);
        }
        for i in 4 * chunks..s.len() {
            out[i] = t.log_pdf_folded(&s[i]);
        }
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

    /// The folded density equals the sum of the t at s and at its mirror image, for
    /// integer and fractional nu, near and far from the fold.
    #[test]
    fn folded_density_is_the_sum_of_both_images() {
        for nu in [5.0, 4.3] {
            let t = test_t(nu);
            let mut rng = Rng::new(4);
            for _ in 0..2000 {
                let mut v = t.sample(&mut rng);
                v[FOLD] = v[FOLD].abs() * if rng.uniform() < 0.5 { 0.01 } else { 1.0 };
                let mut mirror = v;
                mirror[FOLD] = -v[FOLD];
                let (a, b) = (t.log_pdf(&v), t.log_pdf(&mirror));
                let direct = a.max(b) + (1.0 + (-(a - b).abs()).exp()).ln();
                let got = t.log_pdf_folded(&v);
                assert!(
                    (got - direct).abs() < 1e-9,
                    "nu {nu}: {got} vs {direct} at {v:?}"
                );
            }
        }
    }

    /// The batched (AVX2) densities equal the scalar ones, also at the fold, far out, and
    /// at A_V < 0 (-inf).
    #[test]
    fn batched_folded_density_equals_the_scalar_form() {
        let t = test_t(5.0);
        let mut rng = Rng::new(6);
        let mut pts: Vec<[f64; D]> = (0..203).map(|_| t.sample(&mut rng)).collect();
        pts[0][FOLD] = -0.1;
        pts[1][FOLD] = 0.0;
        pts[2] = [1e6; D];
        pts[3][FOLD] = 1e-4;
        let mut out = vec![7.0];
        t.log_pdf_folded_many(&pts, &mut out);
        assert_eq!(out.len(), 204);
        for (v, got) in pts.iter().zip(&out[1..]) {
            let want = t.log_pdf_folded(v);
            let close = (got - want).abs() < 1e-11 * (1.0 + want.abs()) || *got == want;
            assert!(close, "{got} vs {want} at {v:?}");
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
