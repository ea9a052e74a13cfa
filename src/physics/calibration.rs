//! Empirical per-band corrections delta_b(Teff, log g, [M/H]) added to the physical model.
//!
//! A correction is a low-order polynomial in standardised (log10 Teff, log g, [M/H]),
//! evaluated at the point clamped into the box covered by the calibration stars, so that it
//! never extrapolates a polynomial beyond its data. Fitted by `sedflow calibrate`
//! (`crate::calib`), stored as JSON under `models/calibration/`.

use super::bands::BandRegistry;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The calibration embedded in the binary: fitted by `sedflow calibrate` on the benchmark
/// stars (see its card and models/calibration/report.txt).
const EMBEDDED_JSON: Option<&str> = Some(include_str!("../../models/calibration/calibration.json"));

/// Per-map values (map name, value) from a calibration card.
pub type MapFactors = Vec<(String, f64)>;

/// Most polynomial terms a calibration may have (the hot loop keeps them on the stack).
pub const MAX_TERMS: usize = 128;
/// Powers of each coordinate run from 0 to MAX_POW - 1.
pub const MAX_POW: usize = 8;

/// Correction of one band.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BandCorrection {
    /// Band name.
    pub band: String,
    /// Coefficients, one per polynomial term.
    pub coef: Vec<f64>,
    /// How the correction was obtained (`"fitted"`, or `"inherited from <band>"`).
    pub origin: String,
    /// Number of stars used (0 when inherited).
    pub n_stars: usize,
    /// Relative correction of the band's extinction: the model's A_b(theta) becomes
    /// A_b (1 + ext_kappa) (extinction-law mismatch of G23 in this band; 0: none).
    #[serde(default)]
    pub ext_kappa: f64,
    /// Model-systematics floor of the band \[mag\], added in quadrature to reported errors by
    /// the likelihood (`NoiseModel::default_for`); None: the default floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
}

/// A set of per-band corrections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    /// Identifier written into output metadata.
    pub id: String,
    /// Polynomial terms as exponents of (x, y, z) = standardised (log10 Teff, log g, [M/H]).
    pub terms: Vec<[u8; 3]>,
    /// Centre of the standardisation.
    pub center: [f64; 3],
    /// Scale of the standardisation.
    pub scale: [f64; 3],
    /// Lower corner of the clamp box (raw coordinates: log10 Teff, log g, [M/H]).
    pub lo: [f64; 3],
    /// Upper corner of the clamp box.
    pub hi: [f64; 3],
    /// Per-band corrections.
    pub bands: Vec<BandCorrection>,
    /// Free-form description (data set, fit settings, validation summary).
    #[serde(default)]
    pub card: serde_json::Value,
    /// Band ids resolved against a registry (not serialised).
    #[serde(skip)]
    resolved: Vec<Option<usize>>,
    /// 1 + ext_kappa per band id of the registry (not serialised).
    #[serde(skip)]
    ext_factor: Vec<f32>,
}

impl Calibration {
    /// A calibration from its parts (band ids are resolved when attached to a model).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        terms: Vec<[u8; 3]>,
        center: [f64; 3],
        scale: [f64; 3],
        lo: [f64; 3],
        hi: [f64; 3],
        bands: Vec<BandCorrection>,
        card: serde_json::Value,
    ) -> Calibration {
        Calibration {
            id,
            terms,
            center,
            scale,
            lo,
            hi,
            bands,
            card,
            resolved: Vec::new(),
            ext_factor: Vec::new(),
        }
    }

    /// The embedded default calibration, if the project ships one.
    pub fn embedded() -> Option<Result<Calibration>> {
        EMBEDDED_JSON.map(Calibration::from_json)
    }

    /// Parse from JSON text.
    pub fn from_json(s: &str) -> Result<Calibration> {
        let c: Calibration = serde_json::from_str(s).context("parsing calibration JSON")?;
        for b in &c.bands {
            if b.coef.len() != c.terms.len() {
                bail!(
                    "calibration band {} has {} coefficients for {} terms",
                    b.band,
                    b.coef.len(),
                    c.terms.len()
                );
            }
        }
        Ok(c)
    }

    /// Load from a JSON file.
    pub fn load(path: &std::path::Path) -> Result<Calibration> {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Calibration::from_json(&s)
            .with_context(|| format!("loading calibration {}", path.display()))
    }

    /// Check band names against a registry and remember their ids.
    pub fn check_bands(&self, reg: &BandRegistry) -> Result<()> {
        for b in &self.bands {
            reg.id(&b.band)?;
        }
        Ok(())
    }

    fn ensure_resolved(&mut self, reg: &BandRegistry) {
        if self.resolved.len() != reg.len() {
            self.resolved = (0..reg.len())
                .map(|id| self.bands.iter().position(|b| b.band == reg.name(id)))
                .collect();
            self.ext_factor = self
                .resolved
                .iter()
                .map(|r| r.map_or(1.0, |i| (1.0 + self.bands[i].ext_kappa) as f32))
                .collect();
        }
    }

    /// Resolve band ids for fast lookups (done once when attached to a model).
    pub fn resolved_for(mut self, reg: &BandRegistry) -> Result<Calibration> {
        self.check_bands(reg)?;
        if self.terms.len() > MAX_TERMS {
            bail!(
                "calibration has {} polynomial terms; at most {MAX_TERMS} are supported",
                self.terms.len()
            );
        }
        if let Some(e) = self
            .terms
            .iter()
            .find(|e| e.iter().any(|&p| p as usize >= MAX_POW))
        {
            bail!(
                "calibration term {e:?} has a power above the supported {}",
                MAX_POW - 1
            );
        }
        self.ensure_resolved(reg);
        Ok(self)
    }

    /// Extinction factors 1 + ext_kappa per band id (resolved calibrations only; empty
    /// otherwise).
    #[inline]
    pub fn ext_factors(&self) -> &[f32] {
        &self.ext_factor
    }

    /// The reddening maps' fitted (relative scale errors, error factors) from the card's
    /// `fit.map_scales` / `fit.map_error_scales` (map name, value); empty where absent.
    pub fn map_factors(&self) -> (MapFactors, MapFactors) {
        let read = |key: &str| -> MapFactors {
            self.card["fit"][key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        (read("map_scales"), read("map_error_scales"))
    }

    /// Model-systematics floor of a band id, if the calibration estimated one.
    pub fn floor(&self, band_id: usize) -> Option<f64> {
        let Some(Some(i)) = self.resolved.get(band_id) else {
            return None;
        };
        self.bands[*i].floor
    }

    /// Polynomial basis values at (log10 Teff, log g, [M/H]) after clamping.
    pub fn basis(&self, lt: f64, logg: f64, mh: f64, out: &mut Vec<f64>) {
        let raw = [lt, logg, mh];
        let mut x = [0f64; 3];
        for a in 0..3 {
            x[a] = (raw[a].clamp(self.lo[a], self.hi[a]) - self.center[a]) / self.scale[a];
        }
        out.clear();
        for e in &self.terms {
            out.push(x[0].powi(e[0] as i32) * x[1].powi(e[1] as i32) * x[2].powi(e[2] as i32));
        }
    }

    /// Correction of band `id` at a point (0 for bands without a correction).
    pub fn delta(&self, band_id: usize, lt: f64, logg: f64, mh: f64) -> f64 {
        let Some(Some(i)) = self.resolved.get(band_id) else {
            return 0.0;
        };
        let mut phi = Vec::with_capacity(self.terms.len());
        self.basis(lt, logg, mh, &mut phi);
        phi.iter()
            .zip(&self.bands[*i].coef)
            .map(|(p, c)| p * c)
            .sum()
    }

    /// Coefficients of band id `band_id` (resolved calibrations only; None: no correction).
    pub fn band_coef(&self, band_id: usize) -> Option<&[f64]> {
        match self.resolved.get(band_id) {
            Some(Some(i)) => Some(&self.bands[*i].coef),
            _ => None,
        }
    }

    /// Values of the polynomial terms at (log10 Teff, log g, [M/H]) (clamped) into
    /// `phi[..terms.len()]`, as f32 for the forward model's vectorised sum over bands
    /// (terms and coefficients are O(1): rounding stays below 1e-6 mag). Allocation-free
    /// and inlined into the forward model's hot loop: powers from small tables.
    #[inline(always)]
    pub fn terms_into(&self, lt: f64, logg: f64, mh: f64, phi: &mut [f32]) {
        let raw = [lt, logg, mh];
        let mut pw = [[1f64; MAX_POW]; 3];
        for a in 0..3 {
            let x = (raw[a].clamp(self.lo[a], self.hi[a]) - self.center[a]) / self.scale[a];
            for k in 1..MAX_POW {
                pw[a][k] = pw[a][k - 1] * x;
            }
        }
        for (f, e) in phi.iter_mut().zip(&self.terms) {
            // powers < MAX_POW (checked in `resolved_for`); the mask only spares bounds checks
            let p = |a: usize| pw[a][e[a] as usize & (MAX_POW - 1)];
            *f = (p(0) * p(1) * p(2)) as f32;
        }
    }
}
