//! Reading back posterior tables written by `sedflow run` or `sedflow mcmc` (a file or a
//! local output directory), for the commands that compare them (`compare-labels`,
//! `compare-posteriors`). Ids are read as integers (Gaia ids exceed 2^53).

use super::table::{read_i64, read_numeric};
use crate::physics::PARAM_NAMES;
use crate::posterior::{ParamSummary, QUANTILE_SUFFIXES};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One star's row of a posterior table.
#[derive(Clone, Debug)]
pub(crate) struct PosteriorRow {
    /// Star id.
    pub(crate) source_id: i64,
    /// Quantiles and means (NaN where the star has no posterior).
    pub(crate) params: [ParamSummary; 6],
    /// Flags.
    pub(crate) flags: u32,
    /// Samples drawn.
    pub(crate) n_samples: f64,
    /// Effective samples.
    pub(crate) n_eff: f64,
    /// Sampling efficiency.
    pub(crate) sample_efficiency: f64,
}

/// The posterior tables of a run: the file itself, or the `.parquet` files directly in the
/// directory (the samples tables are beside it, in `<dir>.samples/`), sorted.
pub(crate) fn posterior_files(p: &Path) -> Result<Vec<PathBuf>> {
    if p.is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.is_file() && f.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no Parquet files in {}", p.display());
    }
    Ok(v)
}

/// Every row with a source_id of every posterior table under `p`.
pub(crate) fn read_posteriors(p: &Path) -> Result<Vec<PosteriorRow>> {
    let mut out = Vec::new();
    for f in posterior_files(p)? {
        let ids = read_i64(&f, "source_id")?;
        let (_, cols) = read_numeric(&f)?;
        let col = |n: &str| -> Result<&Vec<f64>> {
            cols.get(n).with_context(|| {
                format!(
                    "{}: no column '{n}' (not a sedflow posterior table?)",
                    f.display()
                )
            })
        };
        let q: Vec<Vec<&Vec<f64>>> = PARAM_NAMES
            .iter()
            .map(|p| {
                let mut v: Vec<&Vec<f64>> = QUANTILE_SUFFIXES
                    .iter()
                    .map(|s| col(&format!("{p}_{s}")))
                    .collect::<Result<_>>()?;
                v.push(col(&format!("{p}_mean"))?);
                Ok(v)
            })
            .collect::<Result<_>>()?;
        let (fl, ns, ne, eff) = (
            col("flags")?,
            col("n_samples")?,
            col("n_eff")?,
            col("sample_efficiency")?,
        );
        for (k, id) in ids.iter().enumerate() {
            let Some(id) = *id else { continue };
            let params = std::array::from_fn(|p| ParamSummary {
                q: std::array::from_fn(|i| q[p][i][k] as f32),
                mean: q[p][5][k] as f32,
                q95: [f32::NAN; 2],
            });
            out.push(PosteriorRow {
                source_id: id,
                params,
                flags: fl[k] as u32,
                n_samples: ns[k],
                n_eff: ne[k],
                sample_efficiency: eff[k],
            });
        }
    }
    Ok(out)
}
