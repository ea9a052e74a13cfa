//! `sedflow simulate`: a Parquet catalogue of synthetic stars in the pipeline's input
//! contract (Gaia-archive column names) plus truth columns; the work is in
//! [`crate::pipeline::simulated`].

use crate::io::table::write_columns;
use crate::physics::ForwardModel;
pub use crate::pipeline::config::GaiaRelease;
pub use crate::pipeline::simulated::{
    catalogue_columns, simulate_catalogue, simulate_catalogue_with, CatalogueMix, Pattern,
};
use crate::prior::PriorConfig;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `sedflow simulate`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  sedflow simulate --stars 250000 --seed 1 --output sim.parquet")]
pub(crate) struct SimulateArgs {
    /// Number of catalogue stars.
    #[arg(long)]
    stars: usize,
    /// Seed (the same seed gives the same catalogue).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output Parquet file.
    #[arg(long)]
    output: PathBuf,
    /// Gaia release of the Gaia columns.
    #[arg(long, value_enum, default_value_t = GaiaRelease::Dr3)]
    gaia_release: GaiaRelease,
    /// Simulate from the raw physical model (no empirical calibration).
    #[arg(long)]
    raw: bool,
    /// Band patterns kept: `any` (the survey model's) or `full` (all 13 bands and a
    /// parallax).
    #[arg(long, value_enum, default_value_t = Pattern::Any)]
    pattern: Pattern,
    /// Draw the observations from exactly the likelihood: each star's theta from the prior,
    /// observed with the bands, reported errors and parallax error of an independent
    /// survey-model star (the survey model itself makes them depend on the true magnitudes).
    /// This is the catalogue on which exact posteriors have nominal coverage.
    #[arg(long)]
    likelihood_consistent: bool,
    #[command(flatten)]
    mix: CatalogueMix,
}

/// Run `sedflow simulate`.
pub(crate) fn run(a: SimulateArgs) -> Result<i32> {
    let fm = if a.raw {
        ForwardModel::embedded_raw()
    } else {
        ForwardModel::embedded()
    };
    let t0 = std::time::Instant::now();
    let stars = simulate_catalogue_with(
        fm,
        a.stars,
        a.seed,
        a.gaia_release,
        a.pattern,
        a.likelihood_consistent,
        a.mix,
    )?;
    let cols = catalogue_columns(fm, &stars, a.gaia_release)?;
    let meta = vec![
        ("sedflow.simulate.seed".to_string(), a.seed.to_string()),
        (
            "sedflow.simulate.gaia_release".to_string(),
            format!("{:?}", a.gaia_release).to_lowercase(),
        ),
        ("sedflow.forward_model".to_string(), fm.id()),
        (
            "sedflow.simulate.pattern".to_string(),
            format!("{:?}", a.pattern).to_lowercase(),
        ),
        (
            "sedflow.simulate.likelihood_consistent".to_string(),
            a.likelihood_consistent.to_string(),
        ),
        (
            "sedflow.simulate.reddening_fraction".to_string(),
            a.mix.reddening_fraction.to_string(),
        ),
        (
            "sedflow.simulate.bright_fraction".to_string(),
            a.mix.bright_fraction.to_string(),
        ),
        (
            "sedflow.prior".to_string(),
            serde_json::to_string(&PriorConfig::default())?,
        ),
    ];
    write_columns(&a.output, &cols, &meta)?;
    eprintln!(
        "sedflow simulate: {} stars -> {} in {:.1} s",
        stars.len(),
        a.output.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}
