//! Simulator of realistic observation sets: theta from the prior -> true magnitudes ->
//! which bands a survey delivers (footprints, magnitude limits, saturation, random
//! drop-outs) -> reported errors from each survey's error-vs-magnitude law -> noisy
//! magnitudes drawn from exactly the likelihood's observation model -> a Gaia-like parallax.
//!
//! Used on the fly by training (fresh data every step) and by `sedflow simulate`.

use crate::likelihood::{Measurement, NoiseModel, StarObs};
use crate::physics::{ForwardModel, Theta};
use crate::prior::reddening::{MapReddening, ReddeningModel};
use crate::prior::Prior;
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};

/// Detection and error model of one band of a survey.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BandModel {
    /// Band name in the registry.
    pub band: String,
    /// Magnitude at 50% detection probability.
    pub limit: f64,
    /// Width of the logistic detection fall-off \[mag\].
    pub limit_width: f64,
    /// Brighter than this, the band is saturated and missing (logistic, width 0.3 mag).
    pub saturation: f64,
    /// Reported-error floor \[mag\].
    pub err_floor: f64,
    /// Reported error at the reference magnitude \[mag\].
    pub err_ref: f64,
    /// Reference magnitude of `err_ref`.
    pub mag_ref: f64,
    /// Error slope: sigma ~ 10^(slope (m - mag_ref)) above the floor.
    pub err_slope: f64,
}

/// A survey: bands delivered together, a sky coverage and a drop-out rate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SurveyModel {
    /// Name.
    pub name: String,
    /// Fraction of stars inside the footprint.
    pub coverage: f64,
    /// Probability that a covered, detectable star is missing anyway (cross-match, flags).
    pub dropout: f64,
    /// Bands.
    pub bands: Vec<BandModel>,
}

/// The full observation simulator settings (serialised into model cards).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SimulatorConfig {
    /// Surveys. The first two must be Gaia DR3 and Gaia DR2 (exactly one is used per star).
    pub surveys: Vec<SurveyModel>,
    /// Probability that a star's Gaia photometry is DR2 rather than DR3.
    pub gaia_dr2_fraction: f64,
    /// Independent per-band drop-out probability.
    pub band_dropout: f64,
    /// Probability of keeping only a random subset (>= 2 bands) of what was observed.
    pub subset_fraction: f64,
    /// Probability that a star with G < `parallax_g_limit` has a parallax.
    pub parallax_fraction: f64,
    /// Faintest G with a parallax.
    pub parallax_g_limit: f64,
    /// Parallax error law: sqrt(floor^2 + (ref * 10^(slope (G - 20)))^2) \[mas\].
    pub parallax_err_floor: f64,
    /// Parallax error at G = 20 \[mas\].
    pub parallax_err_ref: f64,
    /// Slope of the parallax error law.
    pub parallax_err_slope: f64,
    /// Multiplier of parallax errors for DR2 stars.
    pub parallax_dr2_factor: f64,
    /// Share of stars given a dust-map value (drawn as [`Simulator::map_value`] says maps
    /// err; 0: none).
    #[serde(default)]
    pub reddening_fraction: f64,
    /// Quoted E(B-V) error law: hypot(floor, relative * E(B-V)) \[mag\], scattered by
    /// `err_scatter_dex`.
    #[serde(default = "default_ebv_error_floor")]
    pub reddening_error_floor: f64,
    /// Relative part of the quoted E(B-V) error law.
    #[serde(default = "default_ebv_error_relative")]
    pub reddening_error_relative: f64,
    /// Largest per-survey error floor of a catalogue: each star's survey gets a floor drawn
    /// uniformly in [0, this] \[mag\], already added in quadrature to the quoted errors (as
    /// real catalogues quote them); 0: none.
    #[serde(default)]
    pub quoted_floor_max: f64,
    /// Model-error augmentation: each observed magnitude is offset by a Gaussian of this
    /// many times the band's model-systematics floor, beyond the likelihood's own floor
    /// noise (training only: real stars sit slightly off the model); 0: none.
    #[serde(default)]
    pub model_error_scale: f64,
    /// Share of stars moved to a bright, precise regime: distance redrawn log-uniform in
    /// `bright_distance_pc` (training proposals that must cover parallax S/N up to ~1000).
    #[serde(default)]
    pub bright_fraction: f64,
    /// Distance range of the bright regime \[pc\].
    #[serde(default = "default_bright_distance")]
    pub bright_distance_pc: (f64, f64),
    /// Log-normal scatter (dex) of reported errors around the survey's law.
    pub err_scatter_dex: f64,
    /// Minimum number of bands for a star to enter the catalogue.
    pub min_bands: usize,
}

fn bm(
    band: &str,
    limit: f64,
    sat: f64,
    floor: f64,
    err_ref: f64,
    mag_ref: f64,
    slope: f64,
) -> BandModel {
    BandModel {
        band: band.into(),
        limit,
        limit_width: 0.15,
        saturation: sat,
        err_floor: floor,
        err_ref,
        mag_ref,
        err_slope: slope,
    }
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        let gaia = |g: &str, bp: &str, rp: &str, name: &str, f: f64| SurveyModel {
            name: name.into(),
            coverage: 1.0,
            dropout: 0.0,
            bands: vec![
                bm(g, 20.9, 3.0, 0.0003 * f, 0.006 * f, 20.0, 0.3),
                bm(bp, 20.6, 3.0, 0.001 * f, 0.08 * f, 20.0, 0.35),
                bm(rp, 20.3, 3.0, 0.001 * f, 0.05 * f, 20.0, 0.35),
            ],
        };
        SimulatorConfig {
            surveys: vec![
                gaia("gaia_g", "gaia_bp", "gaia_rp", "Gaia DR3", 1.0),
                gaia("gaia_dr2_g", "gaia_dr2_bp", "gaia_dr2_rp", "Gaia DR2", 1.5),
                SurveyModel {
                    name: "2MASS".into(),
                    coverage: 1.0,
                    dropout: 0.02,
                    bands: vec![
                        bm("tmass_j", 16.6, -5.0, 0.02, 0.15, 16.6, 0.4),
                        bm("tmass_h", 16.0, -5.0, 0.02, 0.15, 16.0, 0.4),
                        bm("tmass_ks", 15.5, -5.0, 0.02, 0.15, 15.5, 0.4),
                    ],
                },
                SurveyModel {
                    name: "AllWISE".into(),
                    coverage: 1.0,
                    dropout: 0.05,
                    bands: vec![
                        bm("wise_w1", 17.0, 2.0, 0.02, 0.2, 17.0, 0.4),
                        bm("wise_w2", 15.9, 1.5, 0.02, 0.2, 15.9, 0.4),
                    ],
                },
                SurveyModel {
                    name: "Pan-STARRS1".into(),
                    coverage: 0.75,
                    dropout: 0.02,
                    bands: vec![
                        bm("ps1_g", 22.5, 14.0, 0.01, 0.12, 22.5, 0.4),
                        bm("ps1_r", 22.3, 14.0, 0.01, 0.12, 22.3, 0.4),
                        bm("ps1_i", 22.0, 14.0, 0.01, 0.12, 22.0, 0.4),
                        bm("ps1_z", 21.4, 13.5, 0.01, 0.12, 21.4, 0.4),
                        bm("ps1_y", 20.5, 12.5, 0.01, 0.12, 20.5, 0.4),
                    ],
                },
                SurveyModel {
                    name: "SDSS".into(),
                    coverage: 0.3,
                    dropout: 0.03,
                    bands: vec![
                        bm("sdss_u", 22.0, 13.0, 0.02, 0.1, 22.0, 0.4),
                        bm("sdss_g", 22.2, 14.0, 0.01, 0.1, 22.2, 0.4),
                        bm("sdss_r", 22.2, 14.0, 0.01, 0.1, 22.2, 0.4),
                        bm("sdss_i", 21.3, 14.0, 0.01, 0.1, 21.3, 0.4),
                        bm("sdss_z", 20.5, 12.5, 0.01, 0.1, 20.5, 0.4),
                    ],
                },
                SurveyModel {
                    name: "LSST".into(),
                    coverage: 0.2,
                    dropout: 0.02,
                    bands: vec![
                        bm("lsst_u", 23.8, 15.0, 0.005, 0.2, 23.8, 0.4),
                        bm("lsst_g", 24.5, 16.5, 0.005, 0.2, 24.5, 0.4),
                        bm("lsst_r", 24.0, 16.5, 0.005, 0.2, 24.0, 0.4),
                        bm("lsst_i", 23.4, 16.5, 0.005, 0.2, 23.4, 0.4),
                        bm("lsst_z", 22.8, 16.0, 0.005, 0.2, 22.8, 0.4),
                        bm("lsst_y", 22.0, 15.0, 0.005, 0.2, 22.0, 0.4),
                    ],
                },
            ],
            gaia_dr2_fraction: 0.3,
            band_dropout: 0.03,
            subset_fraction: 0.15,
            parallax_fraction: 0.9,
            parallax_g_limit: 21.0,
            parallax_err_floor: 0.015,
            parallax_err_ref: 0.5,
            parallax_err_slope: 0.28,
            parallax_dr2_factor: 1.6,
            reddening_fraction: 0.0,
            reddening_error_floor: default_ebv_error_floor(),
            reddening_error_relative: default_ebv_error_relative(),
            quoted_floor_max: 0.0,
            model_error_scale: 0.0,
            bright_fraction: 0.0,
            bright_distance_pc: default_bright_distance(),
            err_scatter_dex: 0.08,
            min_bands: 2,
        }
    }
}

fn default_ebv_error_floor() -> f64 {
    0.02
}

fn default_ebv_error_relative() -> f64 {
    0.1
}

fn default_bright_distance() -> (f64, f64) {
    (10.0, 500.0)
}

/// A simulated star: its truth and what a catalogue would hold.
#[derive(Clone, Debug)]
pub struct SimStar {
    /// True parameters.
    pub theta: Theta,
    /// Observations.
    pub obs: StarObs,
    /// Whether the Gaia photometry is DR2.
    pub gaia_dr2: bool,
}

/// Simulator bound to a forward model, prior and noise model.
pub struct Simulator<'a> {
    /// Forward model (calibrated, as used by inference).
    pub fm: &'a ForwardModel,
    /// Prior.
    pub prior: &'a Prior,
    /// Model-systematics floors (added noise, as in the likelihood).
    pub noise: &'a NoiseModel,
    /// Settings.
    pub config: SimulatorConfig,
    /// How map values relate to A_V (unnamed maps: the default settings, as in `run`).
    pub reddening: ReddeningModel,
    band_ids: Vec<Vec<usize>>,
    all_bands: Vec<usize>,
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl<'a> Simulator<'a> {
    /// Build; fails if the config names a band the model lacks.
    pub fn new(
        fm: &'a ForwardModel,
        prior: &'a Prior,
        noise: &'a NoiseModel,
        config: SimulatorConfig,
    ) -> anyhow::Result<Self> {
        let band_ids = config
            .surveys
            .iter()
            .map(|s| {
                s.bands
                    .iter()
                    .map(|b| fm.bands().id(&b.band))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut all_bands: Vec<usize> = band_ids.iter().flatten().copied().collect();
        all_bands.sort_unstable();
        all_bands.dedup();
        Ok(Simulator {
            fm,
            prior,
            noise,
            config,
            reddening: ReddeningModel::default(),
            band_ids,
            all_bands,
        })
    }

    /// Simulate one star with the given id; None if it would not enter a catalogue
    /// (fewer than `min_bands` bands observed).
    pub fn simulate_one(&self, rng: &mut Rng, source_id: i64) -> Option<SimStar> {
        let mut theta = self.prior.sample(rng);
        let c = &self.config;
        if c.bright_fraction > 0.0 && rng.chance(c.bright_fraction) {
            let (lo, hi) = c.bright_distance_pc;
            theta.distance = (lo.ln() + (hi / lo).ln() * rng.uniform()).exp();
        }
        self.observe(rng, theta, source_id)
    }

    /// Observe a given theta (None if it yields fewer than `min_bands` bands).
    pub fn observe(&self, rng: &mut Rng, theta: Theta, source_id: i64) -> Option<SimStar> {
        let c = &self.config;
        let mut true_mags = [0f32; crate::physics::forward::MAX_BANDS];
        let nb = self.all_bands.len();
        if self
            .fm
            .magnitudes(&theta, &self.all_bands, &mut true_mags[..nb])
            .is_err()
        {
            return None;
        }
        let mag_of = |id: usize| true_mags[self.all_bands.binary_search(&id).unwrap()] as f64;
        let gaia_dr2 = rng.chance(c.gaia_dr2_fraction);
        let mut phot = Vec::new();
        for (s, survey) in c.surveys.iter().enumerate() {
            if (s == 0 && gaia_dr2) || (s == 1 && !gaia_dr2) {
                continue;
            }
            if !rng.chance(survey.coverage) || rng.chance(survey.dropout) {
                continue;
            }
            // (no draw when off: the default catalogues' random streams stay as they were)
            let quoted_floor = if c.quoted_floor_max > 0.0 {
                c.quoted_floor_max * rng.uniform()
            } else {
                0.0
            };
            for (b, model) in survey.bands.iter().enumerate() {
                let id = self.band_ids[s][b];
                let m = mag_of(id);
                let p_det = logistic((model.limit - m) / model.limit_width)
                    * logistic((m - model.saturation) / 0.3);
                if !rng.chance(p_det) || rng.chance(c.band_dropout) {
                    continue;
                }
                let law = (model.err_floor.powi(2)
                    + (model.err_ref * 10f64.powf(model.err_slope * (m - model.mag_ref))).powi(2))
                .sqrt();
                let err = (law * 10f64.powf(c.err_scatter_dex * rng.normal()))
                    .hypot(quoted_floor)
                    .clamp(1e-4, 1.0);
                let offset = if c.model_error_scale > 0.0 {
                    c.model_error_scale * self.noise.floor[id] as f64 * rng.normal()
                } else {
                    0.0
                };
                phot.push(Measurement {
                    band: id as u16,
                    mag: self.observed_mag(rng, id, m + offset, err),
                    err: err as f32,
                });
            }
        }
        if phot.len() >= 3 && rng.chance(c.subset_fraction) {
            // keep a random subset of size k in [2, n]
            let k = 2 + rng.below(phot.len() - 1);
            for i in 0..k {
                let j = i + rng.below(phot.len() - i);
                phot.swap(i, j);
            }
            phot.truncate(k);
            phot.sort_by_key(|m| m.band);
        }
        if phot.len() < c.min_bands {
            return None;
        }
        let g_id = if gaia_dr2 {
            self.band_ids[1][0]
        } else {
            self.band_ids[0][0]
        };
        let g = mag_of(g_id);
        let parallax = if g < c.parallax_g_limit && rng.chance(c.parallax_fraction) {
            let mut e = (c.parallax_err_floor.powi(2)
                + (c.parallax_err_ref * 10f64.powf(c.parallax_err_slope * (g - 20.0))).powi(2))
            .sqrt();
            if gaia_dr2 {
                e *= c.parallax_dr2_factor;
            }
            e *= 10f64.powf(c.err_scatter_dex * rng.normal());
            let plx = 1000.0 / theta.distance + e * rng.normal();
            Some((plx as f32, e as f32))
        } else {
            None
        };
        // (no draw when off: the default catalogues' random streams stay as they were)
        let with_map = c.reddening_fraction > 0.0 && rng.chance(c.reddening_fraction);
        let reddening = with_map.then(|| self.map_value(rng, theta.av, None));
        Some(SimStar {
            theta,
            obs: StarObs {
                source_id,
                phot,
                parallax,
                reddening,
            },
            gaia_dr2,
        })
    }

    /// A dust-map value for a star of extinction `av`, drawn from the measurement model the
    /// prior uses (an `at_distance` map: E = A_V / k plus Gaussian noise of width
    /// hypot(k sigma_E, floor) / k). `quoted` keeps a template's (error, map); otherwise the
    /// error comes from the configured error law and the map is unnamed.
    pub fn map_value(&self, rng: &mut Rng, av: f64, quoted: Option<(f32, u16)>) -> MapReddening {
        let c = &self.config;
        let (error, map) = quoted.unwrap_or_else(|| {
            let m = &self.reddening.default;
            let e = av / m.av_per_ebv;
            let law = c
                .reddening_error_floor
                .hypot(c.reddening_error_relative * e);
            let scatter = 10f64.powf(c.err_scatter_dex * rng.normal());
            ((law * scatter) as f32, MapReddening::DEFAULT_MAP)
        });
        let m = self.reddening.map(map);
        let sigma_av =
            (m.error_scale * m.av_per_ebv * error as f64).hypot(self.reddening.av_sigma_floor);
        let ebv = (av + sigma_av * rng.normal()) / m.av_per_ebv;
        MapReddening {
            ebv: ebv as f32,
            error,
            map,
        }
    }

    /// A magnitude drawn from the likelihood's noise model: the true one plus the band's
    /// model-systematics floor and the reported error, both Gaussian.
    fn observed_mag(&self, rng: &mut Rng, band: usize, truth: f64, err: f64) -> f32 {
        let floor = self.noise.floor[band] as f64;
        (truth + floor * rng.normal() + err * rng.normal()) as f32
    }

    /// Observe theta with exactly another star's observation pattern: its bands, reported
    /// errors and parallax error, none of which then depends on theta. Data drawn so come
    /// from exactly the likelihood the posterior uses (the survey model's detections,
    /// saturation and error laws depend on the true magnitudes, i.e. on theta, which a
    /// likelihood that conditions on the reported pattern and errors does not model), so
    /// an exact sampler's intervals cover the truth at their nominal rate (simulation-based
    /// calibration). None if theta is outside the model.
    pub fn observe_like(
        &self,
        rng: &mut Rng,
        theta: Theta,
        template: &StarObs,
        source_id: i64,
    ) -> Option<SimStar> {
        let bands: Vec<usize> = template.phot.iter().map(|m| m.band as usize).collect();
        let mut mags = vec![0f32; bands.len()];
        self.fm.magnitudes(&theta, &bands, &mut mags).ok()?;
        let phot = template
            .phot
            .iter()
            .zip(&mags)
            .map(|(m, &truth)| {
                let mag = self.observed_mag(rng, m.band as usize, truth as f64, m.err as f64);
                Measurement {
                    band: m.band,
                    mag,
                    err: m.err,
                }
            })
            .collect();
        let parallax = template.parallax.map(|(_, e)| {
            (
                (1000.0 / theta.distance + e as f64 * rng.normal()) as f32,
                e,
            )
        });
        let reddening = template
            .reddening
            .map(|r| self.map_value(rng, theta.av, Some((r.error, r.map))));
        Some(SimStar {
            theta,
            obs: StarObs {
                source_id,
                phot,
                parallax,
                reddening,
            },
            gaia_dr2: false,
        })
    }

    /// Fresh thetas from the prior observed with the patterns of `templates`
    /// ([`Simulator::observe_like`]), deterministically from `seed`.
    pub fn observe_many_like(&self, templates: &[SimStar], seed: u64) -> Vec<SimStar> {
        use rayon::prelude::*;
        templates
            .par_iter()
            .enumerate()
            .map(|(k, t)| {
                let mut rng = Rng::for_keys(seed, &[k as u64, 0xCA1]);
                loop {
                    let theta = self.prior.sample(&mut rng);
                    if let Some(s) = self.observe_like(&mut rng, theta, &t.obs, k as i64 + 1) {
                        return SimStar {
                            gaia_dr2: t.gaia_dr2,
                            ..s
                        };
                    }
                }
            })
            .collect()
    }

    /// Simulate `n` catalogue stars deterministically from `seed` (star k uses its own
    /// stream, so results do not depend on threads). Source ids are 1..=n. (Tests; callers
    /// use [`Simulator::simulate_many_where`].)
    #[cfg(test)]
    pub fn simulate_many(&self, n: usize, seed: u64) -> Vec<SimStar> {
        self.simulate_many_where(n, seed, |_| true)
    }

    /// `n` stars that satisfy `keep` (drawn until one does, star by star), e.g. only stars
    /// observed in every band of a survey set.
    pub fn simulate_many_where(
        &self,
        n: usize,
        seed: u64,
        keep: impl Fn(&SimStar) -> bool + Sync,
    ) -> Vec<SimStar> {
        use rayon::prelude::*;
        (0..n)
            .into_par_iter()
            .map(|k| {
                let mut rng = Rng::for_keys(seed, &[k as u64, 0x51A]);
                loop {
                    if let Some(s) = self.simulate_one(&mut rng, k as i64 + 1) {
                        if keep(&s) {
                            return s;
                        }
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean squared residual of the observed magnitudes in units of the reported error
    /// and the model floor (1 when the noise is what the likelihood assumes).
    fn residual_variance(fm: &ForwardModel, noise: &NoiseModel, stars: &[SimStar]) -> f64 {
        let mut z = Vec::new();
        for s in stars {
            let bands: Vec<usize> = s.obs.phot.iter().map(|m| m.band as usize).collect();
            let mut m = vec![0f32; bands.len()];
            fm.magnitudes(&s.theta, &bands, &mut m).unwrap();
            for (o, t) in s.obs.phot.iter().zip(&m) {
                let v = (o.err as f64).powi(2) + (noise.floor[o.band as usize] as f64).powi(2);
                z.push((o.mag as f64 - *t as f64) / v.sqrt());
            }
        }
        z.iter().map(|x| x * x).sum::<f64>() / z.len() as f64
    }

    #[test]
    fn simulated_catalogue_is_realistic() {
        let fm = ForwardModel::embedded_raw();
        let prior = Prior::default_embedded();
        let noise = NoiseModel::default_for(fm);
        let sim = Simulator::new(fm, prior, &noise, SimulatorConfig::default()).unwrap();
        let stars = sim.simulate_many(3000, 1);
        let n_plx = stars.iter().filter(|s| s.obs.parallax.is_some()).count();
        let n_neg = stars
            .iter()
            .filter(|s| s.obs.parallax.is_some_and(|p| p.0 < 0.0))
            .count();
        let n_sizes: Vec<usize> = stars.iter().map(|s| s.obs.phot.len()).collect();
        assert!(n_plx > 1500 && n_plx < 3000, "parallaxes {n_plx}");
        assert!(n_neg > 10, "negative parallaxes must occur: {n_neg}");
        assert!(n_sizes.contains(&2) && n_sizes.iter().any(|&k| k >= 15));
        // the noise added matches the error reported (plus the model floor)
        let var = residual_variance(fm, &noise, &stars[..500]);
        assert!(
            (var - 1.0).abs() < 0.1,
            "normalised residual variance {var}"
        );
        // determinism
        let again = sim.simulate_many(50, 1);
        for (a, b) in again.iter().zip(&stars) {
            assert_eq!(a.obs, b.obs);
        }
    }

    /// Training options: quoted floors raise the smallest quoted errors and keep residuals
    /// normalised by them; model-error augmentation adds scatter beyond the quoted errors;
    /// the bright regime moves stars to 10-500 pc; map values follow the measurement model.
    #[test]
    fn training_options_do_what_they_say() {
        let fm = ForwardModel::embedded_raw();
        let prior = Prior::default_embedded();
        let noise = NoiseModel::default_for(fm);
        let residual_var = |cfg: SimulatorConfig| {
            let sim = Simulator::new(fm, prior, &noise, cfg).unwrap();
            let stars = sim.simulate_many(600, 3);
            let min_err = stars
                .iter()
                .flat_map(|s| s.obs.phot.iter().map(|m| m.err))
                .fold(f32::INFINITY, f32::min);
            (residual_variance(fm, &noise, &stars), min_err, stars)
        };
        let (v0, e0, _) = residual_var(SimulatorConfig::default());
        let floors = SimulatorConfig {
            quoted_floor_max: 0.05,
            ..Default::default()
        };
        let (v1, e1, _) = residual_var(floors);
        assert!(
            (v1 - 1.0).abs() < 0.1 && e1 > e0,
            "quoted floors: var {v1}, min error {e1} vs {e0}"
        );
        let augmented = SimulatorConfig {
            model_error_scale: 3.0,
            ..Default::default()
        };
        let (v2, _, _) = residual_var(augmented);
        assert!(v2 > v0 + 0.2, "augmentation: {v2} vs {v0}");
        let bright = SimulatorConfig {
            bright_fraction: 1.0,
            reddening_fraction: 1.0,
            ..Default::default()
        };
        let (_, _, stars) = residual_var(bright);
        assert!(stars
            .iter()
            .all(|s| (10.0..=500.0).contains(&s.theta.distance)));
        let z: Vec<f64> = stars
            .iter()
            .map(|s| {
                let r = s.obs.reddening.expect("every star has a map value");
                let sigma = (2.742 * r.error as f64).hypot(0.03) / 2.742;
                (r.ebv as f64 - s.theta.av / 2.742) / sigma
            })
            .collect();
        let var = z.iter().map(|x| x * x).sum::<f64>() / z.len() as f64;
        assert!(
            (var - 1.0).abs() < 0.15,
            "map values: normalised variance {var}"
        );
    }
}
