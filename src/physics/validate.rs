//! Accuracy checks of the forward model against direct integration of CK04 spectra.
//!
//! * Leave-out interpolation test: along each axis, every other node is removed from the
//!   surface-magnitude table (doubling the local grid step) and the runtime interpolation on
//!   the decimated grid is compared with the left-out models' own band integrals.
//! * Extinction test: the runtime A_b against direct integration of extinguished spectra at
//!   random (A_V, R_V) (`models/forward/extinction_check.csv`, written by the build script).

use super::forward::{ForwardModel, Theta};
use super::interp::{cubic, Stencil};
use crate::util::stats::percentile;
use anyhow::{bail, Result};

/// Error statistics of one band \[mag\].
#[derive(Debug, Clone, serde::Serialize)]
pub struct BandErrors {
    /// Band name.
    pub band: String,
    /// Number of comparisons.
    pub n: usize,
    /// Median |error|.
    pub p50: f64,
    /// 95th percentile |error|.
    pub p95: f64,
    /// Maximum |error|.
    pub max: f64,
}

fn summarise(model: &ForwardModel, errs: &[Vec<f64>]) -> Vec<BandErrors> {
    errs.iter()
        .enumerate()
        .map(|(b, e)| BandErrors {
            band: model.bands().name(b).to_string(),
            n: e.len(),
            p50: percentile(e, 50.0),
            p95: percentile(e, 95.0),
            max: e.iter().cloned().fold(0.0, f64::max),
        })
        .collect()
}

/// Leave-out interpolation errors along `axis` (0 = Teff, 1 = log g, 2 = [M/H]) for
/// left-out models with Teff >= `teff_min`.
pub fn leave_out_errors(model: &ForwardModel, axis: usize, teff_min: f64) -> Vec<BandErrors> {
    let grid = model.surface_grid();
    let nb = grid.width;
    let dims = [
        grid.nodes[0].len(),
        grid.nodes[1].len(),
        grid.nodes[2].len(),
    ];
    let cols: Vec<usize> = (0..nb).map(|b| model.lane(b)).collect();
    let mut errs = vec![Vec::new(); nb];
    let mut out = vec![0f32; nb];
    for parity in 0..2 {
        let keep: Vec<usize> = (0..dims[axis]).filter(|i| i % 2 != parity).collect();
        let dec = grid.take_nodes(axis, &keep);
        for i in 0..dims[0] {
            for j in 0..dims[1] {
                for k in 0..dims[2] {
                    let idx = [i, j, k];
                    let r = idx[axis];
                    if r % 2 != parity || r == 0 || r == dims[axis] - 1 {
                        continue;
                    }
                    if 10f64.powf(grid.nodes[0][i]) < teff_min - 1e-6
                        || !model.model_exists(i, j, k)
                    {
                        continue;
                    }
                    // the two bracketing (kept) models must be real, as the support requires
                    let mut lo = idx;
                    let mut hi = idx;
                    lo[axis] = r - 1;
                    hi[axis] = r + 1;
                    if !model.model_exists(lo[0], lo[1], lo[2])
                        || !model.model_exists(hi[0], hi[1], hi[2])
                    {
                        continue;
                    }
                    let mut s: [Stencil; 3] =
                        [0, 1, 2].map(|a| cubic(&dec.nodes[a], grid.nodes[a][idx[a]]));
                    // along the other axes the stencil must hit the node itself
                    for a in 0..3 {
                        if a != axis {
                            s[a] = cubic(&dec.nodes[a], dec.nodes[a][idx[a]]);
                        }
                    }
                    out.iter_mut().for_each(|o| *o = 0.0);
                    dec.accumulate(&s, &cols, &mut out);
                    let truth = &grid.data[grid.offset(i, j, k)..grid.offset(i, j, k) + nb];
                    for b in 0..nb {
                        errs[b].push((out[b] - truth[cols[b]]).abs() as f64);
                    }
                }
            }
        }
    }
    summarise(model, &errs)
}

/// Runtime extinction vs direct integration (CSV from the build script).
pub fn extinction_errors(
    model: &ForwardModel,
    csv_path: &std::path::Path,
) -> Result<Vec<BandErrors>> {
    let table = crate::util::csv::TextTable::read(csv_path)?;
    let header = table.names();
    if header.len() < 6 || header[..5] != ["teff", "logg", "mh", "av", "rv"] {
        bail!("{}: unexpected header", csv_path.display());
    }
    let bands: Vec<usize> = header[5..]
        .iter()
        .map(|h| model.bands().id(h.trim_start_matches("A_")))
        .collect::<Result<_, _>>()?;
    let cols: Vec<Vec<f64>> = header
        .iter()
        .map(|h| table.f64s(h, false))
        .collect::<Result<_>>()?;
    let mut errs = vec![Vec::new(); model.bands().len()];
    let mut out = vec![0f32; bands.len()];
    for i in 0..table.len() {
        let t = Theta {
            teff: cols[0][i],
            logg: cols[1][i],
            mh: cols[2][i],
            av: cols[3][i],
            rv: cols[4][i],
            distance: 10.0,
        };
        model.extinction(&t, &bands, &mut out);
        for (n, &b) in bands.iter().enumerate() {
            errs[b].push((out[n] as f64 - cols[5 + n][i]).abs());
        }
    }
    Ok(summarise(model, &errs))
}
