//! Calibration step, label-source systematics: a smooth Teff offset per survey (low-order
//! polynomial in standardised log10 Teff and log g) and optionally a log g offset of its
//! dwarfs, fitted jointly with the band corrections (`fit`).
//!
//! Convention: label = true + offset, so the anchored labels are label - offset. Without
//! these terms a survey's Teff or log g systematics are absorbed by the band corrections as
//! "model errors" (90% of the benchmark labels are LAMOST). An offset common to all
//! surveys is degenerate with the corrections' own Teff dependence; the IRFM anchor
//! (`irfm`) fixes it.

use super::data::LabelledStar;
use serde::{Deserialize, Serialize};

/// Fitted label offsets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabelOffsets {
    /// Label sources, in parameter order.
    pub sources: Vec<String>,
    /// Exponents of standardised (log10 Teff, log g) of the Teff-offset polynomial.
    pub teff_terms: Vec<[u8; 2]>,
    /// Centre of the standardisation (log10 Teff, log g).
    pub center: [f64; 2],
    /// Scale of the standardisation.
    pub scale: [f64; 2],
    /// Clamp box, lower corner (log10 Teff, log g): no polynomial extrapolation.
    pub lo: [f64; 2],
    /// Clamp box, upper corner.
    pub hi: [f64; 2],
    /// Teff-offset coefficients per source \[K\].
    pub teff_coef: Vec<Vec<f64>>,
    /// Dwarf log g offset per source \[dex\]: coefficients of 1, x, x^2 ... in standardised
    /// log10 Teff x (empty: not modelled).
    pub logg_coef: Vec<Vec<f64>>,
    /// log g over which the dwarf weight of the log g offset rises from 0 to 1 (a ramp, so
    /// the offset is continuous in log g).
    pub dwarf_ramp: (f64, f64),
}

impl LabelOffsets {
    /// Teff-offset terms of total degree <= `degree`, at most 1 in log g, fixed order.
    pub fn terms(degree: u8) -> Vec<[u8; 2]> {
        let mut t = Vec::new();
        for total in 0..=degree {
            for j in 0..=total.min(1) {
                t.push([total - j, j]);
            }
        }
        t
    }

    /// Values of the Teff-offset terms at a star's labels (clamped into the box).
    pub fn teff_basis(&self, labels: [f64; 3]) -> Vec<f64> {
        let raw = [labels[0].log10(), labels[1]];
        let x: [f64; 2] =
            [0, 1].map(|a| (raw[a].clamp(self.lo[a], self.hi[a]) - self.center[a]) / self.scale[a]);
        self.teff_terms
            .iter()
            .map(|e| x[0].powi(e[0] as i32) * x[1].powi(e[1] as i32))
            .collect()
    }

    /// Values of the dwarf log g offset's terms (dwarf weight x powers of standardised
    /// log10 Teff, clamped) at a star's labels.
    pub fn logg_basis(&self, labels: [f64; 3]) -> Vec<f64> {
        let n = self.logg_coef.first().map_or(0, |c| c.len());
        let x = (labels[0].log10().clamp(self.lo[0], self.hi[0]) - self.center[0]) / self.scale[0];
        let w = self.dwarf_weight(labels[1]);
        (0..n).map(|k| w * x.powi(k as i32)).collect()
    }

    /// Weight of the dwarf log g offset at a label log g (0 for giants, 1 for dwarfs).
    pub fn dwarf_weight(&self, logg: f64) -> f64 {
        let (a, b) = self.dwarf_ramp;
        ((logg - a) / (b - a)).clamp(0.0, 1.0)
    }

    /// Offset (Teff \[K\], log g \[dex\]) of a star's labels; zero for sources not fitted.
    pub fn offset(&self, star: &LabelledStar) -> [f64; 2] {
        let Some(s) = self.sources.iter().position(|x| *x == star.label_source) else {
            return [0.0, 0.0];
        };
        let phi = self.teff_basis(star.labels);
        let dt = phi.iter().zip(&self.teff_coef[s]).map(|(p, c)| p * c).sum();
        let dg = self.logg_coef.get(s).map_or(0.0, |c| {
            let w = self.logg_basis(star.labels);
            c.iter().zip(&w).map(|(c, w)| c * w).sum()
        });
        [dt, dg]
    }

    /// The star with anchored labels (label - offset); [M/H] unchanged.
    pub fn anchored(&self, star: &LabelledStar) -> LabelledStar {
        let o = self.offset(star);
        let mut st = star.clone();
        st.labels[0] -= o[0];
        st.labels[1] -= o[1];
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn star(src: &str, teff: f64, logg: f64) -> LabelledStar {
        LabelledStar {
            source_id: 1,
            labels: [teff, logg, 0.0],
            label_err: [50.0, 0.1, 0.05],
            label_source: src.into(),
            parallax: None,
            ebv: (None, None),
            ebv_source: "map".into(),
            phot: Vec::new(),
        }
    }

    #[test]
    fn terms_and_offsets() {
        assert_eq!(
            LabelOffsets::terms(2),
            vec![[0, 0], [1, 0], [0, 1], [2, 0], [1, 1]]
        );
        let o = LabelOffsets {
            sources: vec!["a".into(), "b".into()],
            teff_terms: LabelOffsets::terms(1),
            center: [3.7, 4.0],
            scale: [0.1, 1.0],
            lo: [3.5, 0.0],
            hi: [3.9, 5.0],
            teff_coef: vec![vec![100.0, 50.0, 0.0], vec![-20.0, 0.0, 0.0]],
            logg_coef: vec![vec![0.1], vec![0.0]],
            dwarf_ramp: (3.5, 4.0),
        };
        // log10 5012 = 3.7: x_T = 0
        let a = o.anchored(&star("a", 5011.87, 4.5));
        assert!((a.labels[0] - 4911.87).abs() < 1e-3);
        assert!((a.labels[1] - 4.4).abs() < 1e-12);
        // giant: no log g offset; Teff clamped at the box edge (x_T = 2)
        let g = o.offset(&star("a", 10f64.powf(4.2), 2.0));
        assert!((g[0] - 200.0).abs() < 1e-9 && g[1] == 0.0);
        assert_eq!(o.offset(&star("unknown", 5000.0, 4.0)), [0.0, 0.0]);
        assert!((o.dwarf_weight(3.75) - 0.5).abs() < 1e-12);
    }
}
