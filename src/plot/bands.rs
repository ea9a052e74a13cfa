//! Pivot wavelengths of the registry's bands (models/filters/pivot_wavelengths.csv, made
//! from the band curves by scripts/pivot_wavelengths.py), to place bands on an SED's axis.

use anyhow::{Context, Result};

const TABLE: &str = include_str!("../../models/filters/pivot_wavelengths.csv");

/// Pivot wavelength of `band` \[um\].
pub(crate) fn pivot_wavelength_um(band: &str) -> Result<f64> {
    let t = crate::util::csv::TextTable::parse("pivot_wavelengths.csv", TABLE.as_bytes())?;
    let bands = t.column("band")?;
    let pivots = t.f64s("pivot_angstrom", false)?;
    (0..t.len())
        .find(|&i| bands.value(i).trim() == band)
        .map(|i| pivots[i])
        .filter(|v| v.is_finite())
        .map(|angstrom| angstrom * 1e-4)
        .with_context(|| {
            format!("no pivot wavelength for band {band} (rerun scripts/pivot_wavelengths.py)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::ForwardModel;

    /// lambda_p = sqrt(int R l dl / int R / l dl) from the committed curve, trapezoidal.
    fn pivot_from_curve(file: &str) -> f64 {
        let path = format!("{}/models/filters/{file}", env!("CARGO_MANIFEST_DIR"));
        let t = crate::util::csv::TextTable::read(std::path::Path::new(&path)).unwrap();
        let (l, r) = (t.column_at(0), t.column_at(1));
        let rows: Vec<(f64, f64)> = (0..t.len())
            .map(|i| (l.value(i).parse().unwrap(), r.value(i).parse().unwrap()))
            .collect();
        let (mut num, mut den) = (0.0, 0.0);
        for w in rows.windows(2) {
            let ((l0, r0), (l1, r1)) = (w[0], w[1]);
            num += 0.5 * (l1 - l0) * (r0 * l0 + r1 * l1);
            den += 0.5 * (l1 - l0) * (r0 / l0 + r1 / l1);
        }
        (num / den).sqrt()
    }

    #[test]
    fn every_band_has_the_pivot_of_its_curve() {
        for b in ForwardModel::embedded().bands().all() {
            let table = pivot_wavelength_um(&b.name).unwrap() * 1e4;
            let curve = pivot_from_curve(&format!("{}.csv", b.name));
            assert!(
                (table - curve).abs() < 0.01,
                "{}: {table} vs {curve}",
                b.name
            );
        }
        assert!((pivot_wavelength_um("gaia_g").unwrap() - 0.6218).abs() < 0.001);
    }
}
