//! Per-star reddening priors from dust-map values.
//!
//! A map value is a measurement of the dust, not a replacement for the population: a star's
//! A_V prior is the population's A_V density times the map's likelihood, normalised
//! analytically on [0, A_V,max]:
//!
//! * `at_distance` (a 3D map evaluated at the star's distance): the map measures the star's
//!   own A_V, p(A_V | E) ~ p_pop(A_V) N(A_V; k E, sigma);
//! * `total_column` (a 2D map: all the dust along the line of sight): the star lies in front
//!   of part of it, so its A_V is anywhere below the column, with a soft edge from the map's
//!   error: p(A_V | E) ~ p_pop(A_V) Phi((k E - A_V) / sigma).
//!
//! k = (1 + kappa_map) * av_per_ebv is the map's A_V per unit E(B-V) with the relative scale
//! error kappa_map that `sedflow calibrate` fits, and sigma = hypot(s_map k sigma_E, floor)
//! with the fitted error scale s_map. A star without a (valid) map value keeps the population
//! prior. The same density is used by importance sampling, the MCMC reference and the
//! simulator (which draws map values the way this model says maps err).

use crate::util::rng::Rng;
use crate::util::special::{norm_cdf, norm_ppf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// `[prior]` of the pipeline configuration: how map values become A_V priors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReddeningConfig {
    /// How values of maps not listed in `maps` relate to A_V.
    pub reddening_kind: ReddeningKind,
    /// A_V per unit SFD-scale E(B-V) (Schlafly & Finkbeiner 2011: 2.742).
    pub av_per_ebv: f64,
    /// Floor added in quadrature to the A_V width \[mag\].
    pub av_sigma_floor: f64,
    /// Per-map settings, by the names in the map-source column. Maps the calibration fitted
    /// take its scale and error factors unless set here.
    pub maps: BTreeMap<String, MapConfig>,
}

impl Default for ReddeningConfig {
    fn default() -> Self {
        ReddeningConfig {
            reddening_kind: ReddeningKind::AtDistance,
            av_per_ebv: 2.742,
            av_sigma_floor: 0.03,
            maps: BTreeMap::new(),
        }
    }
}

/// `[prior.maps.NAME]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MapConfig {
    /// How this map's values relate to A_V (default: `reddening_kind`).
    pub kind: Option<ReddeningKind>,
    /// Relative scale error kappa: A_V per E(B-V) is (1 + kappa) av_per_ebv (default: the
    /// calibration's fitted value, else 0).
    pub scale_error: Option<f64>,
    /// Factor on the quoted errors (default: the calibration's fitted value, else 1).
    pub error_scale: Option<f64>,
}

impl ReddeningConfig {
    /// Reject settings that cannot describe a map.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.av_per_ebv.is_finite() && self.av_per_ebv > 0.0) {
            return Err("prior.av_per_ebv must be positive".into());
        }
        if !(self.av_sigma_floor.is_finite() && self.av_sigma_floor > 0.0) {
            return Err("prior.av_sigma_floor must be positive".into());
        }
        for (name, m) in &self.maps {
            if m.scale_error.is_some_and(|k| !(k.is_finite() && k > -1.0)) {
                return Err(format!("prior.maps.{name}.scale_error must be above -1"));
            }
            if m.error_scale.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                return Err(format!("prior.maps.{name}.error_scale must be positive"));
            }
        }
        Ok(())
    }
}

/// How a map value relates to the star's extinction.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReddeningKind {
    /// A 3D map's value at the star's distance: a measurement of the star's A_V.
    #[default]
    AtDistance,
    /// A 2D map's total column: an upper edge of the star's A_V.
    TotalColumn,
}

/// One map's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MapSettings {
    /// Map name (the values of the input's map-source column).
    pub name: String,
    /// How its values relate to A_V.
    pub kind: ReddeningKind,
    /// A_V per unit of the map's E(B-V), scale error included: (1 + kappa) av_per_ebv.
    pub av_per_ebv: f64,
    /// Factor on the quoted E(B-V) errors.
    pub error_scale: f64,
}

/// A star's map value, as read from the catalogue (validated by the ingest).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapReddening {
    /// E(B-V) on the map's scale \[mag\].
    pub ebv: f32,
    /// Its 1-sigma error \[mag\].
    pub error: f32,
    /// Index of the map in [`ReddeningModel::maps`]; [`MapReddening::DEFAULT_MAP`] for none.
    pub map: u16,
}

impl MapReddening {
    /// The map index of values whose map is not named (the model's default settings).
    pub const DEFAULT_MAP: u16 = u16::MAX;
}

/// Largest E(B-V) error that still carries information \[mag\]; larger errors are flagged.
pub const MAX_EBV_ERROR: f64 = 2.0;
/// Map values more than this many errors below zero are flagged (values near zero scatter
/// negative in maps that report noisy estimates).
pub const MAX_NEGATIVE_SIGMAS: f64 = 5.0;

/// Why a map value cannot be used (the star keeps the population prior and is flagged).
pub fn check_map_value(ebv: f64, error: f64, av_max: f64) -> Result<(), String> {
    if !ebv.is_finite() {
        return Err(format!("reddening prior E(B-V) {ebv} is not finite"));
    }
    if !(error.is_finite() && error > 0.0) {
        return Err(format!(
            "reddening prior error {error} is not positive and finite"
        ));
    }
    if error > MAX_EBV_ERROR {
        return Err(format!(
            "reddening prior error {error} mag is above {MAX_EBV_ERROR} mag"
        ));
    }
    if ebv < -MAX_NEGATIVE_SIGMAS * error {
        return Err(format!(
            "reddening prior E(B-V) {ebv} is negative beyond {MAX_NEGATIVE_SIGMAS} errors"
        ));
    }
    // A_V per E(B-V) is about 3; beyond the prior's support even at 5 sigma
    if ebv - MAX_NEGATIVE_SIGMAS * error > av_max / 2.0 {
        return Err(format!(
            "reddening prior E(B-V) {ebv} is beyond the prior's A_V range (0..{av_max})"
        ));
    }
    Ok(())
}

/// The settings that turn map values into A_V priors.
#[derive(Clone, Debug, PartialEq)]
pub struct ReddeningModel {
    /// Settings of values from an unnamed or unknown map.
    pub default: MapSettings,
    /// Named maps.
    pub maps: Vec<MapSettings>,
    /// Floor added in quadrature to the A_V width \[mag\].
    pub av_sigma_floor: f64,
    /// Upper end of the prior's A_V range \[mag\] (for the ingest's checks).
    pub av_max: f64,
}

impl Default for ReddeningModel {
    fn default() -> Self {
        ReddeningModel::new(&ReddeningConfig::default(), &[], &[], 10.0)
    }
}

impl ReddeningModel {
    /// Settings from the configuration, with the calibration's fitted per-map scale errors
    /// `fitted_scales` and error factors `fitted_errors` (map name, value) as defaults.
    pub fn new(
        cfg: &ReddeningConfig,
        fitted_scales: &[(String, f64)],
        fitted_errors: &[(String, f64)],
        av_max: f64,
    ) -> ReddeningModel {
        let mut names: Vec<&String> = cfg.maps.keys().collect();
        names.extend(fitted_scales.iter().chain(fitted_errors).map(|m| &m.0));
        names.sort();
        names.dedup();
        let fitted = |list: &[(String, f64)], n: &str| list.iter().find(|m| m.0 == n).map(|m| m.1);
        let maps = names
            .into_iter()
            .map(|name| {
                let c = cfg.maps.get(name).cloned().unwrap_or_default();
                let kappa = c.scale_error.or(fitted(fitted_scales, name)).unwrap_or(0.0);
                MapSettings {
                    name: name.clone(),
                    kind: c.kind.unwrap_or(cfg.reddening_kind),
                    av_per_ebv: (1.0 + kappa) * cfg.av_per_ebv,
                    error_scale: c.error_scale.or(fitted(fitted_errors, name)).unwrap_or(1.0),
                }
            })
            .collect();
        ReddeningModel {
            default: MapSettings {
                name: String::new(),
                kind: cfg.reddening_kind,
                av_per_ebv: cfg.av_per_ebv,
                error_scale: 1.0,
            },
            maps,
            av_sigma_floor: cfg.av_sigma_floor,
            av_max,
        }
    }

    /// Settings for a forward model: its calibration's fitted map factors as defaults.
    pub fn for_model(
        cfg: &ReddeningConfig,
        fm: &crate::physics::ForwardModel,
        av_max: f64,
    ) -> ReddeningModel {
        let (scales, errors) = fm
            .calibration()
            .map(|c| c.map_factors())
            .unwrap_or_default();
        ReddeningModel::new(cfg, &scales, &errors, av_max)
    }

    /// Index of a map name ([`MapReddening::DEFAULT_MAP`] if unknown).
    pub fn map_index(&self, name: &str) -> u16 {
        self.maps
            .iter()
            .position(|m| m.name == name)
            .map_or(MapReddening::DEFAULT_MAP, |i| i as u16)
    }

    /// Settings of a map index.
    pub fn map(&self, index: u16) -> &MapSettings {
        self.maps.get(index as usize).unwrap_or(&self.default)
    }

    /// The (kind, centre k E, width sigma) in A_V of a map value.
    pub fn av_measurement(&self, r: &MapReddening) -> (ReddeningKind, f64, f64) {
        let m = self.map(r.map);
        let k = m.av_per_ebv;
        let sigma = (m.error_scale * k * r.error as f64).hypot(self.av_sigma_floor);
        (m.kind, k * r.ebv as f64, sigma)
    }
}

/// The A_V factor of one star's prior.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AvPrior {
    /// The population's A_V prior.
    Population,
    /// The population times a map measurement (see the module docs).
    Map {
        /// How the map value relates to A_V.
        kind: ReddeningKind,
        /// k E \[mag\].
        centre: f64,
        /// Width \[mag\].
        sigma: f64,
        /// log of the normalisation on [0, A_V,max].
        log_norm: f64,
    },
}

/// Population A_V prior: mixture of exponentials truncated to [0, av_max].
/// `comps` holds (weight / (scale * truncation mass), scale).
pub(crate) struct AvPopulation<'a> {
    pub comps: &'a [(f64, f64)],
    pub av_max: f64,
}

/// int_0^A e^{-a/s} N(a; m, sigma) da.
fn exp_gauss_integral(s: f64, m: f64, sigma: f64, a_max: f64) -> f64 {
    let shifted = m - sigma * sigma / s;
    let mass = norm_cdf((a_max - shifted) / sigma) - norm_cdf(-shifted / sigma);
    (-m / s + 0.5 * (sigma / s).powi(2)).exp() * mass
}

/// int_0^A e^{-a/s} Phi((m - a) / sigma) da (by parts, through `exp_gauss_integral`).
fn exp_edge_integral(s: f64, m: f64, sigma: f64, a_max: f64) -> f64 {
    s * (norm_cdf(m / sigma)
        - (-a_max / s).exp() * norm_cdf((m - a_max) / sigma)
        - exp_gauss_integral(s, m, sigma, a_max))
}

impl AvPopulation<'_> {
    /// Mass of exponential component (c, s) times the map factor.
    fn mass(&self, (c, s): (f64, f64), kind: ReddeningKind, m: f64, sigma: f64) -> f64 {
        let i = match kind {
            ReddeningKind::AtDistance => exp_gauss_integral(s, m, sigma, self.av_max),
            ReddeningKind::TotalColumn => exp_edge_integral(s, m, sigma, self.av_max),
        };
        c * i.max(0.0)
    }

    /// The population density at `av` (normalised on [0, av_max]; no range check).
    pub fn density(&self, av: f64) -> f64 {
        self.comps.iter().map(|&(c, s)| c * (-av / s).exp()).sum()
    }

    /// log of the normalisation of the population times the map factor (-inf where it
    /// underflows: the caller then keeps the population prior).
    pub fn log_norm(&self, kind: ReddeningKind, m: f64, sigma: f64) -> f64 {
        let total: f64 = self
            .comps
            .iter()
            .map(|&c| self.mass(c, kind, m, sigma))
            .sum();
        total.ln()
    }

    /// log p(A_V) of the population times the map factor, with `log_norm` from
    /// [`AvPopulation::log_norm`].
    pub fn log_prob(&self, av: f64, kind: ReddeningKind, m: f64, sigma: f64, log_norm: f64) -> f64 {
        if !(0.0..=self.av_max).contains(&av) {
            return f64::NEG_INFINITY;
        }
        let log_factor = match kind {
            ReddeningKind::AtDistance => {
                let z = (av - m) / sigma;
                -0.5 * z * z - (sigma * (2.0 * PI).sqrt()).ln()
            }
            ReddeningKind::TotalColumn => norm_cdf((m - av) / sigma).ln(),
        };
        self.density(av).ln() + log_factor - log_norm
    }

    /// Draw A_V from the population times the map factor.
    pub fn sample(&self, rng: &mut Rng, kind: ReddeningKind, m: f64, sigma: f64) -> f64 {
        let total: f64 = self
            .comps
            .iter()
            .map(|&c| self.mass(c, kind, m, sigma))
            .sum();
        let mut u = rng.uniform() * total;
        let mut s = self.comps[self.comps.len() - 1].1;
        for &c in self.comps {
            let w = self.mass(c, kind, m, sigma);
            if u < w {
                s = c.1;
                break;
            }
            u -= w;
        }
        match kind {
            // e^{-a/s} N(a; m, sigma) is a Gaussian at m - sigma^2 / s
            ReddeningKind::AtDistance => {
                truncated_normal(rng, m - sigma * sigma / s, sigma, self.av_max)
            }
            ReddeningKind::TotalColumn => self.sample_below_edge(rng, s, m, sigma),
        }
    }

    /// e^{-a/s} Phi((m - a) / sigma) on [0, A]: a truncated exponential, accepted with
    /// probability Phi. Proposals stop 8 sigma past the edge (mass beyond: < 1e-15).
    fn sample_below_edge(&self, rng: &mut Rng, s: f64, m: f64, sigma: f64) -> f64 {
        let hi = (m + 8.0 * sigma).clamp(sigma, self.av_max);
        let tail = 1.0 - (-hi / s).exp();
        loop {
            let a = -s * (1.0 - rng.uniform() * tail).ln();
            if rng.uniform() < norm_cdf((m - a) / sigma) {
                return a;
            }
        }
    }
}

/// N(mu, sigma) truncated to [0, hi]: rejection where the interval holds most of the mass,
/// the inverse CDF elsewhere.
fn truncated_normal(rng: &mut Rng, mu: f64, sigma: f64, hi: f64) -> f64 {
    let (p0, p1) = (norm_cdf(-mu / sigma), norm_cdf((hi - mu) / sigma));
    if p1 - p0 > 0.3 {
        loop {
            let a = mu + sigma * rng.normal();
            if (0.0..=hi).contains(&a) {
                return a;
            }
        }
    }
    let u = (p0 + rng.uniform() * (p1 - p0)).clamp(1e-300, 1.0 - 1e-16);
    (mu + sigma * norm_ppf(u)).clamp(0.0, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integral(f: impl Fn(f64) -> f64) -> f64 {
        let n = 400_000;
        let h = 10.0 / n as f64;
        (0..n).map(|i| f((i as f64 + 0.5) * h).exp() * h).sum()
    }

    #[test]
    fn map_priors_integrate_to_one() {
        let pop = crate::prior::Prior::default_embedded().av_population();
        for kind in [ReddeningKind::AtDistance, ReddeningKind::TotalColumn] {
            for (m, s) in [
                (0.0, 0.03),
                (0.2, 0.05),
                (1.5, 0.1),
                (-0.05, 0.03),
                (9.9, 0.5),
            ] {
                let ln = pop.log_norm(kind, m, s);
                let z = integral(|a| pop.log_prob(a, kind, m, s, ln));
                assert!((z - 1.0).abs() < 1e-4, "{kind:?} m {m} s {s}: {z}");
            }
        }
    }

    #[test]
    fn samples_follow_the_density() {
        let pop = crate::prior::Prior::default_embedded().av_population();
        let mut rng = Rng::new(5);
        for kind in [ReddeningKind::AtDistance, ReddeningKind::TotalColumn] {
            for (m, s) in [(0.05, 0.03), (0.6, 0.08), (2.0, 0.3)] {
                let n = 200_000;
                let cut = m;
                let frac = (0..n)
                    .filter(|_| pop.sample(&mut rng, kind, m, s) < cut)
                    .count() as f64
                    / n as f64;
                let h = cut / 20_000.0;
                let ln = pop.log_norm(kind, m, s);
                let mass: f64 = (0..20_000)
                    .map(|i| pop.log_prob((i as f64 + 0.5) * h, kind, m, s, ln).exp() * h)
                    .sum();
                let se = (mass * (1.0 - mass) / n as f64).sqrt();
                assert!(
                    (frac - mass).abs() < 5.0 * se + 1e-4,
                    "{kind:?} {m}: {frac} vs {mass}"
                );
            }
        }
    }

    #[test]
    fn bad_map_values_are_rejected() {
        assert!(check_map_value(0.1, 0.02, 10.0).is_ok());
        assert!(check_map_value(-0.01, 0.02, 10.0).is_ok());
        assert!(check_map_value(-0.5, 0.02, 10.0).is_err());
        assert!(check_map_value(f64::NAN, 0.02, 10.0).is_err());
        assert!(check_map_value(0.1, 0.0, 10.0).is_err());
        assert!(check_map_value(0.1, -1.0, 10.0).is_err());
        assert!(check_map_value(0.1, 4.8, 10.0).is_err());
        assert!(check_map_value(9.0, 0.1, 10.0).is_err());
    }

    #[test]
    fn unknown_maps_take_the_default_settings() {
        let mut cfg = ReddeningConfig::default();
        cfg.maps.insert(
            "sfd".into(),
            MapConfig {
                kind: Some(ReddeningKind::TotalColumn),
                scale_error: None,
                error_scale: Some(0.8),
            },
        );
        let fitted = [("sfd".to_string(), -0.1)];
        let r = ReddeningModel::new(&cfg, &fitted, &[("sfd".to_string(), 0.5)], 10.0);
        assert_eq!(r.map_index("sfd"), 0);
        assert_eq!(r.map_index("b19"), MapReddening::DEFAULT_MAP);
        let v = MapReddening {
            ebv: 0.1,
            error: 0.02,
            map: 0,
        };
        let (kind, c, s) = r.av_measurement(&v);
        assert_eq!(kind, ReddeningKind::TotalColumn);
        assert!((c - 0.24678).abs() < 1e-4);
        assert!((s - (0.8f64 * 2.742 * 0.9 * 0.02).hypot(0.03)).abs() < 1e-6);
    }
}
