//! Calibration step, external check: the forward model (raw and calibrated) against the Sun
//! and the mean F0V-K5V dwarf sequence of Mamajek (version 2022.04.16; Pecaut & Mamajek
//! 2013) in Gaia DR2 BP-RP, M_G and 2MASS M_Ks. Not a fit input: it tests whether the
//! calibration moved the model towards or away from standard stars.
//!
//! The model is evaluated at [M/H] = 0, A_V = 0, 10 pc, at each row's Teff and a log g
//! derived from Mamajek's mass and radius (see the table's header); its radius is the
//! model's own (MIST mass at that Teff and log g), as for any star.

use crate::physics::{ForwardModel, Theta};
use anyhow::{bail, Result};
use serde::Serialize;

/// The committed table (models/calibration/standards/mamajek2022_dwarfs.csv).
const TABLE: &str = include_str!("../../models/calibration/standards/mamajek2022_dwarfs.csv");

/// The Sun: Teff 5772 K (IAU 2015 nominal) and log g 4.44, [M/H] 0 (the values of the
/// issue's `sedflow forward` check).
pub(crate) const SUN: (f64, f64) = (5772.0, 4.44);
/// Solar absolute magnitudes and colour: M_G and BP-RP (Gaia DR2; Casagrande & VandenBerg
/// 2018, MNRAS 479, L102), M_Ks (2MASS; Willmer 2018, ApJS 236, 47).
pub(crate) const SUN_REFERENCE: [f64; 3] = [0.82, 4.67, 3.27];
/// Tolerances of the Sun check (BP-RP, M_G, M_Ks) \[mag\].
pub(crate) const SUN_TOLERANCE: [f64; 3] = [0.02, 0.03, 0.05];
/// Tolerance of the dwarf-sequence BP-RP check \[mag\].
pub(crate) const SEQUENCE_BP_RP_TOLERANCE: f64 = 0.04;
/// Quantities compared.
pub(crate) const QUANTITIES: [&str; 3] = ["BP-RP", "M_G", "M_Ks"];
/// Bands (BP, RP, G, Ks) of the Gaia release named.
fn bands(release: &str) -> [&'static str; 4] {
    if release == "dr3" {
        ["gaia_bp", "gaia_rp", "gaia_g", "tmass_ks"]
    } else {
        ["gaia_dr2_bp", "gaia_dr2_rp", "gaia_dr2_g", "tmass_ks"]
    }
}

/// One row of the dwarf sequence.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Standard {
    /// Spectral type.
    pub(crate) spt: String,
    /// Teff \[K\].
    pub(crate) teff: f64,
    /// log g derived from Mamajek's mass and radius.
    pub(crate) logg: f64,
    /// Tabulated BP-RP, M_G, M_Ks.
    pub(crate) observed: [f64; 3],
}

/// The embedded dwarf sequence.
pub(crate) fn dwarf_sequence() -> Result<Vec<Standard>> {
    let t = crate::util::csv::TextTable::parse("dwarf-sequence table", TABLE.as_bytes())?;
    let num = |c: &str| t.f64s(c, false);
    let (teff, logg) = (num("teff")?, num("logg")?);
    let observed = [num("bp_rp")?, num("m_g")?, num("m_ks")?];
    let spt = t.column_at(0);
    let out: Vec<Standard> = (0..t.len())
        .map(|i| Standard {
            spt: spt.value(i).to_string(),
            teff: teff[i],
            logg: logg[i],
            observed: observed.each_ref().map(|c| c[i]),
        })
        .collect();
    if out.is_empty() {
        bail!("dwarf-sequence table has no rows");
    }
    Ok(out)
}

/// Model BP-RP, M_G, M_Ks at (Teff, log g), [M/H] 0, A_V 0, 10 pc, in a Gaia release's
/// bands; None outside the model.
pub(crate) fn model_values(
    fm: &ForwardModel,
    teff: f64,
    logg: f64,
    release: &str,
) -> Option<[f64; 3]> {
    let ids: Vec<usize> = bands(release)
        .iter()
        .map(|b| fm.bands().id(b).ok())
        .collect::<Option<_>>()?;
    let t = Theta {
        teff,
        logg,
        mh: 0.0,
        av: 0.0,
        rv: 3.1,
        distance: 10.0,
    };
    let mut m = [0f32; 4];
    fm.magnitudes(&t, &ids, &mut m).ok()?;
    let m = m.map(|x| x as f64);
    Some([m[0] - m[1], m[2], m[3]])
}

/// The Sun in one release's bands, raw and calibrated.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SunCheck {
    /// Gaia release of the G/BP/RP bands ("dr2" or "dr3").
    pub(crate) release: String,
    /// Raw model BP-RP, M_G, M_Ks.
    pub(crate) raw: Option<[f64; 3]>,
    /// Calibrated model.
    pub(crate) calibrated: Option<[f64; 3]>,
}

/// One dwarf-sequence row, model minus table.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SequenceRow {
    /// Spectral type.
    pub(crate) spt: String,
    /// Teff \[K\] and log g of the row.
    pub(crate) teff: f64,
    /// log g.
    pub(crate) logg: f64,
    /// Model - table (BP-RP, M_G, M_Ks), raw model \[mag\].
    pub(crate) raw: Option<[f64; 3]>,
    /// The same, calibrated \[mag\].
    pub(crate) calibrated: Option<[f64; 3]>,
}

/// The whole check.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StandardsCheck {
    /// Reference solar BP-RP, M_G, M_Ks.
    pub(crate) sun_reference: [f64; 3],
    /// Sun tolerances.
    pub(crate) sun_tolerance: [f64; 3],
    /// Sun in DR2 and DR3 Gaia bands.
    pub(crate) sun: Vec<SunCheck>,
    /// Dwarf sequence rows (Gaia DR2 bands).
    pub(crate) sequence: Vec<SequenceRow>,
    /// Largest |model - table| over the rows (BP-RP, M_G, M_Ks), raw.
    pub(crate) max_abs_raw: [f64; 3],
    /// The same, calibrated.
    pub(crate) max_abs_calibrated: [f64; 3],
    /// Median model - table over the rows, raw.
    pub(crate) median_raw: [f64; 3],
    /// The same, calibrated.
    pub(crate) median_calibrated: [f64; 3],
}

fn residual(fm: &ForwardModel, st: &Standard) -> Option<[f64; 3]> {
    let m = model_values(fm, st.teff, st.logg, "dr2")?;
    Some([0, 1, 2].map(|q| m[q] - st.observed[q]))
}

/// Largest |x| and median of each quantity over rows (rows outside the model skipped).
fn summarise(rows: &[Option<[f64; 3]>]) -> ([f64; 3], [f64; 3]) {
    let mut mx = [f64::NAN; 3];
    let mut md = [f64::NAN; 3];
    for q in 0..3 {
        let v: Vec<f64> = rows.iter().flatten().map(|r| r[q]).collect();
        if !v.is_empty() {
            mx[q] = v.iter().fold(0.0, |a: f64, x| a.max(x.abs()));
            md[q] = crate::util::stats::median(&v);
        }
    }
    (mx, md)
}

/// Check the raw and the calibrated model against the Sun and the dwarf sequence.
pub(crate) fn check(raw: &ForwardModel, cal: &ForwardModel) -> Result<StandardsCheck> {
    let seq = dwarf_sequence()?;
    let sun = ["dr2", "dr3"]
        .iter()
        .map(|r| SunCheck {
            release: r.to_string(),
            raw: model_values(raw, SUN.0, SUN.1, r),
            calibrated: model_values(cal, SUN.0, SUN.1, r),
        })
        .collect();
    let sequence: Vec<SequenceRow> = seq
        .iter()
        .map(|st| SequenceRow {
            spt: st.spt.clone(),
            teff: st.teff,
            logg: st.logg,
            raw: residual(raw, st),
            calibrated: residual(cal, st),
        })
        .collect();
    let (max_abs_raw, median_raw) = summarise(&sequence.iter().map(|r| r.raw).collect::<Vec<_>>());
    let (max_abs_calibrated, median_calibrated) =
        summarise(&sequence.iter().map(|r| r.calibrated).collect::<Vec<_>>());
    Ok(StandardsCheck {
        sun_reference: SUN_REFERENCE,
        sun_tolerance: SUN_TOLERANCE,
        sun,
        sequence,
        max_abs_raw,
        max_abs_calibrated,
        median_raw,
        median_calibrated,
    })
}

impl StandardsCheck {
    /// Whether the calibrated model meets the Sun tolerances (DR2 and DR3 bands) and the
    /// sequence's BP-RP tolerance.
    pub(crate) fn passed(&self) -> bool {
        let sun_ok = self.sun.iter().all(|s| {
            s.calibrated.is_some_and(|c| {
                (0..3).all(|q| (c[q] - SUN_REFERENCE[q]).abs() <= SUN_TOLERANCE[q])
            })
        });
        sun_ok && self.max_abs_calibrated[0] <= SEQUENCE_BP_RP_TOLERANCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_with_solar_row() {
        let seq = dwarf_sequence().unwrap();
        assert_eq!(seq.len(), 27);
        assert_eq!(seq[0].spt, "F0V");
        assert_eq!(seq.last().unwrap().spt, "K5V");
        let g2 = seq.iter().find(|s| s.spt == "G2V").unwrap();
        assert!((g2.logg - 4.43).abs() < 0.02, "{}", g2.logg);
        assert!((g2.observed[0] - 0.823).abs() < 1e-9);
    }

    #[test]
    fn raw_model_is_near_the_sun() {
        let raw = ForwardModel::embedded_raw();
        let m = model_values(raw, SUN.0, SUN.1, "dr2").unwrap();
        for q in 0..3 {
            assert!(
                (m[q] - SUN_REFERENCE[q]).abs() < 0.1,
                "{}: {}",
                QUANTITIES[q],
                m[q]
            );
        }
    }
}
