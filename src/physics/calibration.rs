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

/// Correction of one band.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BandCorrection {
    /// Band name.
    pub band: String,
    /// Coefficients, one per polynomial term.
    pub coef: Vec<f64>,
    /// How the correction was obtained ("fitted", or "inherited from <band>").
    pub origin: String,
    /// Number of stars used (0 when inherited).
    pub n_stars: usize,
    /// Relative correction of the band's extinction: the model's A_b(theta) becomes
    /// A_b (1 + ext_kappa) (extinction-law mismatch of G23 in this band; 0: none).
    #[serde(default)]
    pub ext_kappa: f64,
    /// Model-systematics floor of the band [mag], added in quadrature to reported errors by
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
        self.ensure_resolved(reg);
        Ok(self)
    }

    /// Extinction factors 1 + ext_kappa per band id (resolved calibrations only; empty
    /// otherwise).
    #[inline]
    pub fn ext_factors(&self) -> &[f32] {
        &self.ext_factor
    }

    /// Whether any band's extinction is rescaled.
    pub fn scales_extinction(&self) -> bool {
        self.bands.iter().any(|b| b.ext_kappa != 0.0)
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

    /// Add corrections for `bands` to `out` (allocation-free: terms evaluated on the stack).
    // inlined into the forward model's hot loop (and its AVX2 variant): powers from a
    // table, four partial sums per band
    #[inline(always)]
    pub fn add_corrections(&self, lt: f64, logg: f64, mh: f64, bands: &[usize], out: &mut [f32]) {
        const MAX_TERMS: usize = 64;
        const MAX_POW: usize = 8;
        let raw = [lt, logg, mh];
        let mut pw = [[1f64; MAX_POW]; 3];
        let mut x = [0f64; 3];
        for a in 0..3 {
            x[a] = (raw[a].clamp(self.lo[a], self.hi[a]) - self.center[a]) / self.scale[a];
            for k in 1..MAX_POW {
                pw[a][k] = pw[a][k - 1] * x[a];
            }
        }
        let nt = self.terms.len().min(MAX_TERMS);
        let mut phi = [0f64; MAX_TERMS];
        for (p, e) in phi.iter_mut().zip(&self.terms[..nt]) {
            let (e0, e1, e2) = (e[0] as usize, e[1] as usize, e[2] as usize);
            *p = if e0.max(e1).max(e2) < MAX_POW {
                pw[0][e0] * pw[1][e1] * pw[2][e2]
            } else {
                x[0].powi(e0 as i32) * x[1].powi(e1 as i32) * x[2].powi(e2 as i32)
            };
        }
        let n4 = nt / 4 * 4;
        for (o, &b) in out.iter_mut().zip(bands) {
            if let Some(Some(i)) = self.resolved.get(b) {
                let c = &self.bands[*i].coef[..nt];
                let mut acc = [0f64; 4];
                for t in (0..n4).step_by(4) {
                    for l in 0..4 {
                        acc[l] += phi[t + l] * c[t + l];
                    }
                }
                let mut d = (acc[0] + acc[2]) + (acc[1] + acc[3]);
                for t in n4..nt {
                    d += phi[t] * c[t];
                }
                *o += d as f32;
            }
        }
    }
}
