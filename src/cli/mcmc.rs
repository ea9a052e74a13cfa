//! `sedflow mcmc`: the reference ensemble MCMC. On a catalogue it runs through the
//! pipeline (the same ingest, column mapping, error floors, parallax zero point, sharding,
//! resumption and output table as `sedflow run`, plus split-R-hat and ESS columns); with
//! `--source-id` it prints one star's posterior as JSON.

use crate::cli::run::{exit_code, ProgressArg};
use crate::likelihood::NoiseModel;
use crate::physics::{ForwardModel, PARAM_NAMES};
use crate::pipeline::catalogue::read_catalogue;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::config::Redactor;
use crate::pipeline::{self, shard, RunOptions};
use crate::posterior::mcmc::{McmcConfig, McmcEngine, Selection};
use crate::posterior::{band_names, QUANTILE_SUFFIXES};
use crate::prior::reddening::ReddeningModel;
use crate::prior::{Prior, PriorConfig};
use crate::util::rng::derive_seed;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `sedflow mcmc`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sedflow mcmc --input catalogue.parquet --output ref/ --random 200 --seed 1\n  sedflow mcmc --input catalogue.parquet --output ref/ --config scripts/pipeline-dr2-labelled.toml --limit 50\n  sedflow mcmc --input catalogue.parquet --source-id 3"
)]
pub struct McmcArgs {
    /// Catalogue: a Parquet file, directory, glob or s3:// prefix (as for `sedflow run`).
    #[arg(long)]
    input: String,
    /// Output directory or s3:// prefix: one posterior table per input part, as `sedflow
    /// run` writes it, plus `{p}_rhat` and `{p}_ess` columns.
    #[arg(long, required_unless_present = "source_id")]
    output: Option<String>,
    /// Pipeline configuration ([input] mapping, zero point, ...; default: the committed
    /// pipeline.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only the first N stars (input order) get a chain; the others get NOT_PROCESSED rows.
    #[arg(long, conflicts_with = "random")]
    limit: Option<usize>,
    /// Only N stars chosen at random (by a hash of the seed and source_id) get a chain.
    #[arg(long)]
    random: Option<usize>,
    /// Print one star's posterior as JSON instead of writing a table.
    #[arg(long)]
    source_id: Option<i64>,
    /// Walkers.
    #[arg(long, default_value_t = McmcConfig::default().walkers)]
    walkers: usize,
    /// Burn-in steps.
    #[arg(long, default_value_t = McmcConfig::default().burn)]
    burn: usize,
    /// Kept steps.
    #[arg(long, default_value_t = McmcConfig::default().steps)]
    steps: usize,
    /// Seed (of the chains and of --random).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use the raw physical model (no empirical calibration).
    #[arg(long)]
    raw: bool,
    /// Kept draws per star (evenly spaced over the chains) written to <output>.samples/, in
    /// `sedflow run --write-samples`'s format (for `sedflow plot star --reference`).
    #[arg(long, default_value_t = 0)]
    write_samples: usize,
    /// Progress display of the catalogue run.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

fn engine(a: &McmcArgs, cfg: &PipelineConfig, selection: Selection) -> McmcEngine {
    let fm = if a.raw {
        ForwardModel::embedded_raw()
    } else {
        ForwardModel::embedded()
    }
    .clone();
    let prior = PriorConfig::default();
    McmcEngine {
        reddening: ReddeningModel::for_model(&cfg.prior, &fm, prior.av_max),
        prior: Prior::new(&fm, prior),
        noise: NoiseModel::default_for(&fm),
        fm,
        cfg: McmcConfig {
            walkers: a.walkers,
            burn: a.burn,
            steps: a.steps,
            seed: a.seed,
            ..Default::default()
        },
        selection,
        keep_samples: a.write_samples,
    }
}

/// Run `sedflow mcmc`.
pub fn run(a: McmcArgs) -> Result<i32> {
    if a.walkers < 12 || !a.walkers.is_multiple_of(2) {
        bail!("--walkers must be even and at least 12 (twice the dimension)");
    }
    let mut cfg = match &a.config {
        Some(p) => PipelineConfig::load(p)?,
        None => PipelineConfig::embedded_default(),
    };
    cfg.inference.write_samples = a.write_samples;
    // every message leaving this command is redacted, errors included (as for `run`)
    let redactor = Redactor::new(&cfg);
    let result = match (cfg.validate(), a.source_id) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(id)) => one_star(&a, &cfg, id),
        (Ok(()), None) => catalogue(&a, cfg),
    };
    result.map_err(|e| anyhow::anyhow!("{}", redactor.redact(&format!("{e:#}"))))
}

/// The selected source ids: the first `limit` or `random` stars of the catalogue.
fn selection(
    a: &McmcArgs,
    cfg: &PipelineConfig,
    band_names: &[String],
    reddening: &ReddeningModel,
) -> Result<Selection> {
    if a.limit.is_none() && a.random.is_none() {
        return Ok(Selection::All);
    }
    let stars = read_catalogue(&a.input, cfg, band_names, reddening)?;
    let mut ids: Vec<i64> = stars
        .iter()
        .filter(|s| !s.null_id)
        .map(|s| s.obs.source_id)
        .collect();
    if let Some(n) = a.random {
        ids.sort_by_key(|&id| derive_seed(a.seed, &[id as u64, 0x5E1E]));
        ids.truncate(n);
    } else if let Some(n) = a.limit {
        ids.truncate(n);
    }
    Ok(Selection::Ids(ids.into_iter().collect()))
}

fn catalogue(a: &McmcArgs, cfg: PipelineConfig) -> Result<i32> {
    let probe = engine(a, &cfg, Selection::All);
    let sel = selection(a, &cfg, &band_names(&probe.fm), &probe.reddening)?;
    let eng = McmcEngine {
        selection: sel,
        ..probe
    };
    let shard = shard::resolve(None, None, cfg.shard.count, |k| std::env::var(k).ok())?;
    let opts = RunOptions {
        input: a.input.clone(),
        output: a.output.clone().context("--output is required")?,
        config: cfg,
        shard,
        progress: a.progress.into(),
    };
    let summary = pipeline::run(&opts, &eng)?;
    println!("{summary}");
    Ok(exit_code("sedflow mcmc", &summary))
}

fn one_star(a: &McmcArgs, cfg: &PipelineConfig, id: i64) -> Result<i32> {
    let eng = engine(a, cfg, Selection::All);
    let stars = read_catalogue(&a.input, cfg, &band_names(&eng.fm), &eng.reddening)?;
    let star = stars
        .iter()
        .find(|s| !s.null_id && s.obs.source_id == id)
        .with_context(|| format!("{}: no star with source_id {id}", a.input))?;
    if star.obs.phot.is_empty() {
        bail!("star {id} has no usable photometry ({})", star.reason);
    }
    let r = eng.chain(&star.obs);
    let mut out = serde_json::Map::new();
    out.insert("source_id".into(), id.into());
    let summaries = r.summaries();
    for (p, name) in PARAM_NAMES.iter().enumerate() {
        let s = summaries[p];
        for (lvl, v) in QUANTILE_SUFFIXES.iter().zip(s.q) {
            out.insert(format!("{name}_{lvl}"), (v as f64).into());
        }
        out.insert(format!("{name}_rhat"), r.rhat[p].into());
        out.insert(format!("{name}_ess"), r.ess[p].into());
    }
    out.insert("ingest_flags".into(), star.flags.into());
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
