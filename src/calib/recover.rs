//! Calibration step, validation measures: Teff recovery of a labelled star with log g and
//! [M/H] fixed at its labels, and its colour residuals at the labels.
//!
//! The objective is the pipeline's observation model (`likelihood`): Gaussian photometry
//! with reported errors plus the per-band model floors, the exact Gaussian parallax
//! likelihood (zero-point corrected; its variance includes the label log g error propagated
//! through the radius, since log g is held at a label that has errors), and A_V under its
//! prior (Gaussian truncated at 0), R_V fixed. For a trial Teff the best (distance modulus, A_V) is found by Gauss-Newton
//! (extinction re-linearised each step, parallax linearised in mu); Teff is located on a grid
//! in log10 Teff and refined by golden-section search. Trial points outside the model's
//! support count as impossible.

use super::data::LabelledStar;
use super::{distance_of_mu, CalibSettings, NuisancePrior};
use crate::likelihood::NoiseModel;
use crate::physics::{ForwardModel, Theta};
use serde::Serialize;

/// Teff grid of the recovery: log10 Teff from 3500 K to 15000 K.
const GRID_LT: (f64, f64, f64) = (3.544_068, 4.176_091, 0.005);
/// Gauss-Newton steps per trial Teff on the grid (warm-started) and in the refinement.
const GRID_STEPS: usize = 3;
const FINE_STEPS: usize = 5;
/// Golden-section iterations (bracket 0.01 dex -> ~1e-6 dex).
const GOLDEN_ITERS: usize = 28;
/// A_V step of the extinction derivative.
const AV_STEP: f64 = 0.02;
/// Bounds of the distance modulus (the forward model's distance range is wider).
const MU_RANGE: (f64, f64) = (-10.0, 25.0);

/// Best fit of one star at fixed log g and [M/H].
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct StarFit {
    /// Teff \[K\].
    pub teff: f64,
    /// A_V \[mag\].
    pub av: f64,
    /// Distance modulus \[mag\].
    pub mu: f64,
    /// -2 log posterior (up to constants): photometry + parallax + A_V prior.
    pub chi2: f64,
}

/// The objective for one star.
pub struct Objective<'a> {
    fm: &'a ForwardModel,
    star: &'a LabelledStar,
    bands: Vec<usize>,
    obs: Vec<f64>,
    iv: Vec<f64>,
    prior: NuisancePrior,
    rv: f64,
    radius_rel_err: f64,
}

impl<'a> Objective<'a> {
    /// Objective of `star` under the model `fm`, with the reddening maps' scale errors.
    pub fn new(
        fm: &'a ForwardModel,
        star: &'a LabelledStar,
        s: &CalibSettings,
        noise: &NoiseModel,
        map_scales: &[(String, f64)],
    ) -> Self {
        Objective::with_map_errors(fm, star, s, noise, map_scales, &[])
    }

    /// As [`Objective::new`], with the maps' fitted error scales (see
    /// [`NuisancePrior::with_map_errors`]).
    pub fn with_map_errors(
        fm: &'a ForwardModel,
        star: &'a LabelledStar,
        s: &CalibSettings,
        noise: &NoiseModel,
        map_scales: &[(String, f64)],
        err_scales: &[(String, f64)],
    ) -> Self {
        let bands = star.phot.iter().map(|m| m.band as usize).collect();
        let obs = star.phot.iter().map(|m| m.mag as f64).collect();
        let iv = star
            .phot
            .iter()
            .map(|m| {
                let f = noise.floor[m.band as usize] as f64;
                1.0 / ((m.err as f64).powi(2) + f * f)
            })
            .collect();
        Objective {
            fm,
            star,
            bands,
            obs,
            iv,
            prior: NuisancePrior::with_map_errors(star, s, map_scales, err_scales),
            rv: s.rv,
            radius_rel_err: 0.5
                * std::f64::consts::LN_10
                * star.label_err[1].hypot(s.label_err_floor[1]),
        }
    }

    fn theta(&self, teff: f64, av: f64, mu: f64) -> Theta {
        Theta {
            teff,
            logg: self.star.labels[1],
            mh: self.star.labels[2],
            av,
            rv: self.rv,
            distance: distance_of_mu(mu),
        }
    }

    /// Model magnitudes at (Teff, A_V, mu); None outside the model.
    pub fn model(&self, teff: f64, av: f64, mu: f64, out: &mut [f32]) -> Option<()> {
        self.fm
            .magnitudes(&self.theta(teff, av, mu), &self.bands, out)
            .ok()
    }

    /// Variance of the parallax residual: the measurement error plus the label log g error
    /// propagated through the radius (R ~ g^-1/2 at fixed mass, so d ln(distance) = ln 10 / 2
    /// d log g). Without it a log g label error would be absorbed by Teff via the surface
    /// brightness.
    #[inline]
    fn parallax_var(&self, e: f64, pi: f64) -> f64 {
        e * e + (pi * self.radius_rel_err).powi(2)
    }

    fn chi2(&self, model: &[f32], av: f64, mu: f64) -> f64 {
        let mut c: f64 = model
            .iter()
            .zip(&self.obs)
            .zip(&self.iv)
            .map(|((m, o), iv)| (o - *m as f64).powi(2) * iv)
            .sum();
        if let Some((p, e)) = self.prior.parallax {
            let pi = 10f64.powf(0.2 * (10.0 - mu));
            c += (p - pi).powi(2) / self.parallax_var(e, pi);
        }
        c + ((av - self.prior.av.0) / self.prior.av.1).powi(2)
    }

    /// Best (mu, A_V) at a trial Teff, starting from `start` (mu NaN: from the data).
    /// Returns the fit, or None outside the model.
    pub fn inner(&self, teff: f64, start: (f64, f64), steps: usize) -> Option<StarFit> {
        let n = self.bands.len();
        let mut m0 = [0f32; 64];
        let mut m1 = [0f32; 64];
        let (mut mu, mut av) = (start.0, start.1.max(0.0));
        let (ap, sa) = self.prior.av;
        for _ in 0..steps {
            self.model(teff, av, 0.0, &mut m0[..n])?;
            self.model(teff, av + AV_STEP, 0.0, &mut m1[..n])?;
            if !mu.is_finite() {
                let sw: f64 = self.iv.iter().sum();
                mu = (0..n)
                    .map(|b| self.iv[b] * (self.obs[b] - m0[b] as f64))
                    .sum::<f64>()
                    / sw;
                mu = mu.clamp(MU_RANGE.0, MU_RANGE.1);
            }
            // unknowns (dmu, dA); model y_b = obs_b - m_b(mu=0) - mu ~ dmu + k_b dA
            let (mut h00, mut h01, mut h11, mut g0, mut g1) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for b in 0..n {
                let k = (m1[b] - m0[b]) as f64 / AV_STEP;
                let y = self.obs[b] - m0[b] as f64 - mu;
                let w = self.iv[b];
                h00 += w;
                h01 += w * k;
                h11 += w * k * k;
                g0 += w * y;
                g1 += w * k * y;
            }
            h11 += 1.0 / (sa * sa);
            g1 += (ap - av) / (sa * sa);
            if let Some((p, e)) = self.prior.parallax {
                let pi = 10f64.powf(0.2 * (10.0 - mu));
                let dpi = -0.2 * std::f64::consts::LN_10 * pi;
                let var = self.parallax_var(e, pi);
                h00 += dpi * dpi / var;
                g0 += dpi * (p - pi) / var;
            }
            let det = h00 * h11 - h01 * h01;
            let (mut dmu, mut da) = if det > 0.0 {
                ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det)
            } else {
                (g0 / h00, 0.0)
            };
            if av + da < 0.0 {
                da = -av;
                dmu = (g0 - h01 * da) / h00;
            }
            mu = (mu + dmu).clamp(MU_RANGE.0, MU_RANGE.1);
            av = (av + da).clamp(0.0, 11.9);
        }
        self.model(teff, av, mu, &mut m0[..n])?;
        Some(StarFit {
            teff,
            av,
            mu,
            chi2: self.chi2(&m0[..n], av, mu),
        })
    }

    /// Recover Teff with log g and [M/H] at the labels; None if no trial Teff is inside the
    /// model.
    pub fn recover(&self) -> Option<StarFit> {
        let (lt0, lt1, step) = GRID_LT;
        let n = ((lt1 - lt0) / step).round() as usize + 1;
        let mut best: Option<(usize, StarFit)> = None;
        let mut start = (f64::NAN, self.prior.av.0);
        for i in 0..n {
            let teff = 10f64.powf(lt0 + step * i as f64);
            if let Some(f) = self.inner(teff, start, GRID_STEPS) {
                start = (f.mu, f.av);
                if best.as_ref().is_none_or(|b| f.chi2 < b.1.chi2) {
                    best = Some((i, f));
                }
            } else {
                start = (f64::NAN, self.prior.av.0);
            }
        }
        let (i, grid_best) = best?;
        let s0 = (grid_best.mu, grid_best.av);
        let eval = |lt: f64| -> f64 {
            self.inner(10f64.powf(lt), s0, FINE_STEPS)
                .map(|f| f.chi2)
                .unwrap_or(f64::INFINITY)
        };
        let centre = lt0 + step * i as f64;
        let (mut a, mut b) = (centre - step, centre + step);
        let gr = 0.5 * (5f64.sqrt() - 1.0);
        let mut c = b - gr * (b - a);
        let mut d = a + gr * (b - a);
        let (mut fc, mut fd) = (eval(c), eval(d));
        for _ in 0..GOLDEN_ITERS {
            if fc < fd {
                b = d;
                d = c;
                fd = fc;
                c = b - gr * (b - a);
                fc = eval(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + gr * (b - a);
                fd = eval(d);
            }
        }
        let lt = if fc < fd { c } else { d };
        let fine = self.inner(10f64.powf(lt), s0, FINE_STEPS);
        let grid_fine = self.inner(grid_best.teff, s0, FINE_STEPS);
        [fine, grid_fine, Some(grid_best)]
            .into_iter()
            .flatten()
            .fold(None, |acc: Option<StarFit>, f| match acc {
                Some(a) if a.chi2 <= f.chi2 => Some(a),
                _ => Some(f),
            })
    }

    /// Residuals obs - model per measurement (star's photometry order) at the labels, with
    /// (mu, A_V) fitted; None if the labels are outside the model.
    pub fn residuals_at_labels(&self) -> Option<(StarFit, Vec<f64>)> {
        let f = self.inner(self.star.labels[0], (f64::NAN, self.prior.av.0), 8)?;
        let mut m = vec![0f32; self.bands.len()];
        self.model(f.teff, f.av, f.mu, &mut m)?;
        Some((
            f,
            self.obs
                .iter()
                .zip(&m)
                .map(|(o, m)| o - *m as f64)
                .collect(),
        ))
    }
}
