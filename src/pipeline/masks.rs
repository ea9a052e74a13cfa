//! Photometric quality masks (step 2 of the data path, inside ingest): rules that drop a
//! band of a star before inference, each drop flagged `MASKED_BAND` with a reason naming the
//! band and the rule. A masked band is treated exactly as an absent one.
//!
//! - Per-band character rules (`mask` of `[[input.bands]]`): the band is kept only where
//!   character `position` of a flag column is accepted, e.g. 2MASS `ph_qual` A-C, AllWISE
//!   `cc_flags` '0'. A null flag, or one too short, cannot vouch for the band: masked.
//! - Gaia DR3 BP/RP flux excess (Riello et al. 2021): C* = C - f(BP-RP) (their eq. 6 and
//!   table 2) against sigma_C*(G) = 0.0059898 + 8.817481e-12 G^7.618399 (eq. 18); BP and
//!   RP are dropped where |C*| > N sigma_C*. Stars without C, G, BP or RP keep their bands.

use super::config::{GaiaRelease, InputConfig, QualityMask};
use crate::util::column;
use anyhow::{bail, Result};
use arrow::array::{Array, Float64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

/// The Gaia columns of the excess rule.
pub(crate) const EXCESS_COLUMNS: [&str; 4] = [
    "phot_bp_rp_excess_factor",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
];

/// Riello et al. (2021) eq. 6 with table 2: the expected excess factor at colour BP-RP.
pub(crate) fn expected_excess(bp_rp: f64) -> f64 {
    let x = bp_rp;
    if x < 0.5 {
        1.154360 + 0.033772 * x + 0.032277 * x * x
    } else if x < 4.0 {
        1.162004 + 0.011464 * x + 0.049255 * x * x - 0.005879 * x * x * x
    } else {
        1.057572 + 0.140537 * x
    }
}

/// Riello et al. (2021) eq. 18: the 1-sigma scatter of C* for normal sources at magnitude G.
pub(crate) fn sigma_c_star(g: f64) -> f64 {
    0.0059898 + 8.817481e-12 * g.powf(7.618399)
}

/// The rules that apply to one file, resolved against its columns.
#[derive(Clone, Debug, Default)]
pub struct Masks {
    /// (band id, band name, rule) per masked band.
    chars: Vec<(u16, String, QualityMask)>,
    /// The excess rule: N and the (id, name) of the bands BP and RP map to.
    excess: Option<(f64, Vec<(u16, String)>)>,
}

/// A mapped band of a file, as the masks see it.
pub(crate) struct BandRef {
    /// Magnitude column.
    pub(crate) column: String,
    /// Band id and registry name.
    pub(crate) id: u16,
    pub(crate) name: String,
    /// Its character rule, if any.
    pub(crate) mask: Option<QualityMask>,
    /// Configured by the user (its flag column must exist), not a default.
    pub(crate) required: bool,
}

/// A mask's flag column must be a string column.
fn check_string(dt: &DataType, column: &str, file: &str) -> Result<()> {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => Ok(()),
        _ => bail!("{file}: mask column {column} has type {dt}; expected strings"),
    }
}

impl Masks {
    /// The masks of the mapped bands `(column, band id, band name, mask)` whose flag columns
    /// the file has; `required` masks (the user's own) must find their column. The excess
    /// rule applies with DR3 passbands when the file has its four columns.
    pub(crate) fn resolve(
        bands: &[BandRef],
        cfg: &InputConfig,
        has: &dyn Fn(&str) -> Option<DataType>,
        file: &str,
        used: &mut Vec<String>,
    ) -> Result<Masks> {
        let mut m = Masks::default();
        for b in bands {
            let Some(mask) = &b.mask else { continue };
            match has(&mask.column) {
                Some(dt) => {
                    check_string(&dt, &mask.column, file)?;
                    used.push(mask.column.clone());
                    m.chars.push((b.id, b.name.clone(), mask.clone()));
                }
                None if b.required => bail!(
                    "{file}: no column {} (the quality mask of band {})",
                    mask.column,
                    b.name
                ),
                None => {}
            }
        }
        let gaia_bp_rp: Vec<(u16, String)> = bands
            .iter()
            .filter(|b| b.column == "phot_bp_mean_mag" || b.column == "phot_rp_mean_mag")
            .map(|b| (b.id, b.name.clone()))
            .collect();
        let all = EXCESS_COLUMNS.iter().all(|c| has(c).is_some());
        if cfg.bp_rp_excess_sigma > 0.0
            && cfg.gaia_release == GaiaRelease::Dr3
            && all
            && !gaia_bp_rp.is_empty()
        {
            used.extend(EXCESS_COLUMNS.iter().map(|c| c.to_string()));
            m.excess = Some((cfg.bp_rp_excess_sigma, gaia_bp_rp));
        }
        Ok(m)
    }

    /// Columns the rules read.
    pub(crate) fn columns(&self) -> Vec<String> {
        let mut v: Vec<String> = self.chars.iter().map(|c| c.2.column.clone()).collect();
        if self.excess.is_some() {
            v.extend(EXCESS_COLUMNS.iter().map(|c| c.to_string()));
        }
        v
    }

    /// The rules' columns of one batch.
    pub(crate) fn read(&self, batch: &RecordBatch) -> Result<MaskColumns<'_>> {
        let get = |c: &str| {
            batch
                .column_by_name(c)
                .ok_or_else(|| anyhow::anyhow!("column {c} missing from batch"))
        };
        let mut chars = Vec::with_capacity(self.chars.len());
        for (id, name, rule) in &self.chars {
            let a = column::strings(
                get(&rule.column)?.as_ref(),
                &format!("column {}", rule.column),
            )?;
            chars.push((*id, name.as_str(), rule, a));
        }
        let excess = match &self.excess {
            Some((n, ids)) => {
                let mut cols = Vec::with_capacity(4);
                for c in EXCESS_COLUMNS {
                    cols.push(column::f64s(get(c)?.as_ref(), &format!("column {c}"))?);
                }
                Some((*n, ids.as_slice(), cols))
            }
            None => None,
        };
        Ok(MaskColumns { chars, excess })
    }
}

/// The excess rule's columns of one batch: N, the (id, name) of BP and RP, and the values of
/// [`EXCESS_COLUMNS`].
type ExcessColumns<'a> = (f64, &'a [(u16, String)], Vec<Float64Array>);

/// The columns of the rules for one batch.
pub(crate) struct MaskColumns<'a> {
    chars: Vec<(u16, &'a str, &'a QualityMask, StringArray)>,
    excess: Option<ExcessColumns<'a>>,
}

fn value(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i) && a.value(i).is_finite()).then(|| a.value(i))
}

impl MaskColumns<'_> {
    /// Why band `band` of row `i` is masked (`None`: kept).
    pub(crate) fn why_masked(&self, band: u16, i: usize) -> Option<String> {
        for (id, name, rule, flags) in &self.chars {
            if *id != band {
                continue;
            }
            let ch = (!flags.is_null(i))
                .then(|| flags.value(i).chars().nth(rule.position - 1))
                .flatten();
            if !ch.is_some_and(|c| rule.accept.contains(c)) {
                let got = match ch {
                    Some(c) => format!("'{c}'"),
                    None => "missing".to_string(),
                };
                return Some(format!(
                    "{name} masked: {}[{}] {got} not in '{}'",
                    rule.column, rule.position, rule.accept
                ));
            }
        }
        if let Some((n, ids, cols)) = &self.excess {
            if let Some((_, band_name)) = ids.iter().find(|(id, _)| *id == band) {
                let vals: Option<Vec<f64>> = cols.iter().map(|c| value(c, i)).collect();
                if let Some(&[c, g, bp, rp]) = vals.as_deref() {
                    let c_star = c - expected_excess(bp - rp);
                    let s = sigma_c_star(g);
                    if c_star.abs() > n * s {
                        return Some(format!(
                            "{band_name} masked: BP/RP flux excess |C*| = {:.3} > {n} sigma_C* ({:.3}) (Riello et al. 2021)",
                            c_star.abs(),
                            n * s
                        ));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riello_polynomials_are_continuous_where_the_paper_says() {
        // table 2's pieces meet at BP-RP = 0.5 to 1e-3 (the paper's fit, not exact)
        assert!((expected_excess(0.5 - 1e-9) - expected_excess(0.5)).abs() < 2e-3);
        assert!((expected_excess(1.0) - (1.162004 + 0.011464 + 0.049255 - 0.005879)).abs() < 1e-12);
        // eq. 18 at G = 15 and G = 20
        assert!(
            (sigma_c_star(15.0) - (0.0059898 + 8.817481e-12 * 15f64.powf(7.618399))).abs() < 1e-15
        );
        assert!(sigma_c_star(20.0) > sigma_c_star(15.0));
    }
}
