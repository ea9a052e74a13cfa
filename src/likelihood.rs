//! Observations of a star and their likelihood p(observations | theta).
//!
//! Observation model (the simulator draws from exactly this, the importance weights and the
//! MCMC reference evaluate exactly this):
//!   m_obs,b = m_b(theta) + e_model + e_phot,  e_model ~ N(0, floor_b^2), e_phot ~ N(0, sigma_b^2)
//!   parallax_obs = 1000 / d\[pc\] + N(0, sigma_parallax^2)   \[mas\]
//! with sigma_b the reported error and floor_b a per-band model-systematics floor.

use crate::physics::{ForwardModel, Theta};
use serde::{Deserialize, Serialize};

/// One photometric measurement.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Band id in the forward model's registry.
    pub band: u16,
    /// Apparent magnitude.
    pub mag: f32,
    /// Reported 1-sigma error \[mag\].
    pub err: f32,
}

/// Everything observed of one star.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StarObs {
    /// Catalogue id.
    pub source_id: i64,
    /// Photometry (any subset of bands, any order).
    pub phot: Vec<Measurement>,
    /// Parallax and its error \[mas\], if measured.
    pub parallax: Option<(f32, f32)>,
    /// Dust-map reddening value, if the catalogue gives a valid one.
    #[serde(default)]
    pub reddening: Option<crate::prior::reddening::MapReddening>,
}

/// Per-band model-systematics floors added in quadrature to reported errors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NoiseModel {
    /// Floor per band id \[mag\].
    pub floor: Vec<f32>,
}

impl NoiseModel {
    /// The model's floors: where the forward model carries a calibration that estimated a
    /// band's floor (`sedflow calibrate`, maximum marginal likelihood on real stars), that
    /// floor; otherwise the defaults 0.02 mag, 0.04 mag in the u bands (model atmospheres
    /// are least reliable in the near-UV).
    pub fn default_for(fm: &ForwardModel) -> NoiseModel {
        let cal = fm.calibration();
        let floor = fm
            .bands()
            .all()
            .iter()
            .map(|b| match cal.and_then(|c| c.floor(b.id)) {
                Some(f) => f as f32,
                None if b.name.ends_with("_u") => 0.04,
                None => 0.02,
            })
            .collect();
        NoiseModel { floor }
    }

    /// The raw physical model's default floors (0.02 mag, 0.04 mag in the u bands),
    /// whatever calibration `fm` carries.
    pub fn defaults(fm: &ForwardModel) -> NoiseModel {
        let floor = fm
            .bands()
            .all()
            .iter()
            .map(|b| if b.name.ends_with("_u") { 0.04 } else { 0.02 })
            .collect();
        NoiseModel { floor }
    }
}

/// A star's observations in the form the likelihood evaluates quickly.
#[derive(Clone, Debug, Default)]
pub struct PreparedStar {
    /// Band ids.
    pub bands: Vec<usize>,
    /// Observed magnitudes.
    pub mags: Vec<f32>,
    /// 1 / (sigma^2 + floor^2).
    pub inv_var: Vec<f32>,
    /// Parallax \[mas\] and 1 / sigma^2.
    pub parallax: Option<(f64, f64)>,
    /// Sum of the Gaussian normalisation terms (-0.5 ln 2 pi var).
    pub log_norm: f64,
}

impl PreparedStar {
    /// Prepare a star; measurements must already be validated (finite, positive errors).
    pub fn new(star: &StarObs, noise: &NoiseModel) -> PreparedStar {
        let mut p = PreparedStar::default();
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        for m in &star.phot {
            let f = noise.floor[m.band as usize];
            let var = m.err * m.err + f * f;
            p.bands.push(m.band as usize);
            p.mags.push(m.mag);
            p.inv_var.push(1.0 / var);
            p.log_norm += -0.5 * (ln2pi + (var as f64).ln());
        }
        if let Some((plx, e)) = star.parallax {
            let var = (e as f64) * (e as f64);
            p.parallax = Some((plx as f64, 1.0 / var));
            p.log_norm += -0.5 * (ln2pi + var.ln());
        }
        p
    }

    /// log-likelihood given model magnitudes for `bands` (same order) and a distance.
    #[inline]
    pub fn log_likelihood_from_mags(&self, model_mags: &[f32], distance_pc: f64) -> f64 {
        let mut chi2 = 0.0f64;
        for ((&m, &o), &iv) in model_mags.iter().zip(&self.mags).zip(&self.inv_var) {
            let r = o - m;
            chi2 += (r * r * iv) as f64;
        }
        if let Some((plx, iv)) = self.parallax {
            let r = plx - 1000.0 / distance_pc;
            chi2 += r * r * iv;
        }
        if chi2.is_nan() {
            return f64::NEG_INFINITY;
        }
        -0.5 * chi2 + self.log_norm
    }

    /// log p(obs | theta); -inf if theta is outside the model.
    pub fn log_likelihood(&self, fm: &ForwardModel, t: &Theta, scratch: &mut Vec<f32>) -> f64 {
        scratch.resize(self.bands.len(), 0.0);
        if fm.magnitudes(t, &self.bands, scratch).is_err() {
            return f64::NEG_INFINITY;
        }
        self.log_likelihood_from_mags(scratch, t.distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likelihood_peaks_at_truth_and_is_normalised_gaussian() {
        let fm = ForwardModel::embedded_raw();
        let noise = NoiseModel::default_for(fm);
        let truth = Theta {
            teff: 5000.0,
            logg: 4.5,
            mh: -0.2,
            av: 0.3,
            rv: 3.1,
            distance: 200.0,
        };
        let bands = [0usize, 1, 2, 8];
        let mut m = vec![0f32; 4];
        fm.magnitudes(&truth, &bands, &mut m).unwrap();
        let star = StarObs {
            source_id: 1,
            phot: bands
                .iter()
                .zip(&m)
                .map(|(&b, &mag)| Measurement {
                    band: b as u16,
                    mag,
                    err: 0.01,
                })
                .collect(),
            parallax: Some((5.0, 0.05)),
            reddening: None,
        };
        let p = PreparedStar::new(&star, &noise);
        let mut s = Vec::new();
        let at_truth = p.log_likelihood(fm, &truth, &mut s);
        assert!((at_truth - p.log_norm).abs() < 1e-6);
        let off = Theta {
            teff: 5100.0,
            ..truth
        };
        assert!(p.log_likelihood(fm, &off, &mut s) < at_truth);
        let var = 0.01f64 * 0.01 + 0.02 * 0.02;
        let expect = 4.0 * -0.5 * ((2.0 * std::f64::consts::PI).ln() + var.ln())
            - 0.5 * ((2.0 * std::f64::consts::PI).ln() + (0.05f64 * 0.05).ln());
        assert!(
            (p.log_norm - expect).abs() < 1e-4,
            "{} vs {expect}",
            p.log_norm
        );
    }
}
