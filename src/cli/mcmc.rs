//! `sedflow mcmc`: the reference ensemble MCMC for one star of a catalogue (default input
//! columns), printing posterior quantiles, autocorrelation times and effective samples.

use super::simulate::catalogue_columns_map;
use crate::infer::mcmc::{self, McmcConfig};
use crate::infer::QUANTILES;
use crate::likelihood::{Measurement, NoiseModel, StarObs};
use crate::physics::{ForwardModel, PARAM_NAMES};
use crate::prior::{Prior, PriorConfig};
use crate::util::stats::weighted_quantiles;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `sedflow mcmc`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow simulate --stars 10 --output sim.parquet\n  sedflow mcmc --input sim.parquet --source-id 3"
)]
pub struct McmcArgs {
    /// Catalogue (CSV or Parquet) with the default input columns.
    #[arg(long)]
    input: PathBuf,
    /// source_id of the star.
    #[arg(long)]
    source_id: i64,
    /// Gaia columns hold DR2 photometry.
    #[arg(long)]
    gaia_dr2: bool,
    /// Walkers.
    #[arg(long, default_value_t = McmcConfig::default().walkers)]
    walkers: usize,
    /// Burn-in steps.
    #[arg(long, default_value_t = McmcConfig::default().burn)]
    burn: usize,
    /// Kept steps.
    #[arg(long, default_value_t = McmcConfig::default().steps)]
    steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use the raw physical model (no empirical calibration).
    #[arg(long)]
    raw: bool,
}

/// Read one star's observations from a catalogue in the default column contract.
pub fn read_star(
    path: &PathBuf,
    source_id: i64,
    gaia_dr2: bool,
    fm: &ForwardModel,
) -> Result<StarObs> {
    let (_, cols) = crate::io::table::read_numeric(path)?;
    let ids = cols
        .get("source_id")
        .with_context(|| format!("{}: no source_id column", path.display()))?;
    let row = ids
        .iter()
        .position(|&x| x as i64 == source_id)
        .with_context(|| format!("{}: no star with source_id {source_id}", path.display()))?;
    let mut phot = Vec::new();
    for (band, mag_col, err_col) in &catalogue_columns_map() {
        let name = if gaia_dr2 {
            band.replace("gaia_", "gaia_dr2_")
        } else {
            band.to_string()
        };
        if let (Some(m), Some(e)) = (cols.get(mag_col), cols.get(err_col)) {
            let (m, e) = (m[row], e[row]);
            if m.is_finite() && e.is_finite() && e > 0.0 {
                phot.push(Measurement {
                    band: fm.bands().id(&name)? as u16,
                    mag: m as f32,
                    err: e as f32,
                });
            }
        }
    }
    if phot.is_empty() {
        bail!(
            "star {source_id} has no usable photometry in {}",
            path.display()
        );
    }
    let parallax = match (cols.get("parallax"), cols.get("parallax_error")) {
        (Some(p), Some(e)) if p[row].is_finite() && e[row] > 0.0 => {
            Some((p[row] as f32, e[row] as f32))
        }
        _ => None,
    };
    Ok(StarObs {
        source_id,
        phot,
        parallax,
    })
}

/// Run `sedflow mcmc`.
pub fn run(a: McmcArgs) -> Result<i32> {
    let fm = if a.raw {
        ForwardModel::embedded_raw()
    } else {
        ForwardModel::embedded()
    };
    let star = read_star(&a.input, a.source_id, a.gaia_dr2, fm)?;
    let prior = Prior::new(fm, PriorConfig::default());
    let noise = NoiseModel::default_for(fm);
    let cfg = McmcConfig {
        walkers: a.walkers,
        burn: a.burn,
        steps: a.steps,
        seed: a.seed,
        ..Default::default()
    };
    let r = mcmc::run(&star, fm, &prior, &noise, &cfg);
    let w = vec![1.0; r.samples.len()];
    let mut order = Vec::new();
    let mut out = serde_json::Map::new();
    out.insert("source_id".into(), a.source_id.into());
    for (p, name) in PARAM_NAMES.iter().enumerate() {
        let vals: Vec<f64> = r.samples.iter().map(|x| x[p]).collect();
        let mut q = [0f64; 5];
        weighted_quantiles(&vals, &w, &QUANTILES, &mut q, &mut order);
        for (lvl, v) in ["p05", "p16", "p50", "p84", "p95"].iter().zip(q) {
            out.insert(format!("{name}_{lvl}"), v.into());
        }
    }
    out.insert("tau".into(), serde_json::to_value(r.tau)?);
    out.insert("n_eff".into(), r.n_eff.into());
    out.insert("acceptance".into(), r.acceptance.into());
    out.insert("seconds".into(), r.seconds.into());
    out.insert("log_posterior_evaluations".into(), r.evaluations.into());
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(out))?
    );
    Ok(0)
}
