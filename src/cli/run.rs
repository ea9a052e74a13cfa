//! `sedflow run`: the survey pipeline's command line (step 0 of the data path). Flags are
//! merged over `pipeline.toml` here, once; the work happens in [`crate::pipeline`].

use crate::pipeline::config::PipelineConfig;
use crate::pipeline::progress::ProgressMode;
use crate::pipeline::{self, shard, RunOptions};
use crate::prior::reddening::ReddeningModel;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// How to show progress.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProgressArg {
    /// A progress bar on a terminal, periodic lines otherwise.
    Auto,
    /// Periodic lines.
    Lines,
    /// Only warnings, errors and the final summary.
    Off,
}

impl From<ProgressArg> for ProgressMode {
    fn from(a: ProgressArg) -> ProgressMode {
        match a {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Lines => ProgressMode::Lines,
            ProgressArg::Off => ProgressMode::Off,
        }
    }
}

/// Arguments of `sedflow run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Pipeline configuration (default: the committed pipeline.toml, embedded).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input: a Parquet file, a directory (searched recursively), a glob, or s3://bucket/prefix.
    #[arg(long)]
    input: String,
    /// Output directory or s3://bucket/prefix (one posterior file per input part).
    #[arg(long)]
    output: String,
    /// Proposal samples per star [config: inference.samples, default 256].
    #[arg(long)]
    samples: Option<usize>,
    /// Resampled posterior draws per star written beside the output, to <output>.samples/
    /// [inference.write_samples].
    #[arg(long)]
    write_samples: Option<usize>,
    /// Comma-separated bands (any the model knows, observed or not) whose predicted
    /// magnitudes are written as pred_{band}_p16/p50/p84 [output.predict_bands].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    predict_bands: Option<Vec<String>>,
    /// Comma-separated input columns copied into the posterior table with their own types,
    /// e.g. ra,dec [output.keep_columns].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    keep_columns: Option<Vec<String>>,
    /// Run seed [inference.seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Stars per inference batch [batching.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// This process's shard (default: SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX or
    /// JOB_COMPLETION_INDEX; else 0).
    #[arg(long)]
    shard_index: Option<usize>,
    /// Number of shards (default: SLURM_ARRAY_TASK_COUNT, else shard.count; else 1).
    #[arg(long)]
    shard_count: Option<usize>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// Neural-posterior directory (weights.safetensors + card.json); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device of the neural posterior: cpu, cuda or cuda:N (overrides [inference] device;
    /// cuda needs a build with --features cuda).
    #[arg(long)]
    device: Option<String>,
    /// Also write the run's summary (counts, wall time, stage times, peak RSS) as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Run the pipeline; exit code 0 when every part was written or already done, 1 when some
/// input could not be processed (each named on stderr).
pub fn run(a: RunArgs) -> Result<i32> {
    let mut cfg = match &a.config {
        Some(p) => PipelineConfig::load(p)?,
        None => PipelineConfig::embedded_default(),
    };
    if let Some(n) = a.samples {
        cfg.inference.samples = n;
    }
    if let Some(k) = a.write_samples {
        cfg.inference.write_samples = k;
    }
    if let Some(b) = &a.predict_bands {
        cfg.output.predict_bands = b.iter().map(|s| s.trim().to_string()).collect();
    }
    if let Some(k) = &a.keep_columns {
        cfg.output.keep_columns = k.iter().map(|s| s.trim().to_string()).collect();
    }
    if let Some(s) = a.seed {
        cfg.inference.seed = s;
    }
    if let Some(d) = &a.device {
        cfg.inference.device = d.clone();
    }
    if let Some(b) = a.batch_size {
        cfg.batching.batch_size = b;
        cfg.batching.window = cfg.batching.window.max(b);
    }
    // every message leaving this command is redacted, errors included
    let redactor = crate::pipeline::config::Redactor::new(&cfg);
    let result = (|| -> Result<i32> {
        cfg.validate()?;
        let shard = shard::resolve(a.shard_index, a.shard_count, cfg.shard.count, |k| {
            std::env::var(k).ok()
        })?;
        // the embedded model unless --model names another
        let mut engine =
            crate::cli::engine::flow_engine_on(a.model.as_deref(), &cfg.inference.device)?;
        engine.reddening =
            ReddeningModel::for_model(&cfg.prior, &engine.fm, engine.prior.config.av_max);
        crate::cli::engine::check_settings(&engine, cfg.inference.flow_share)?;
        let opts = RunOptions {
            input: a.input.clone(),
            output: a.output.clone(),
            config: cfg.clone(),
            shard,
            progress: a.progress.into(),
        };
        let summary = pipeline::run(&opts, &engine)?;
        println!("{summary}");
        if let Some(p) = &a.summary_json {
            std::fs::write(p, serde_json::to_string_pretty(&summary)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(exit_code("sedflow run", &summary))
    })();
    result.map_err(|e| {
        let msg = crate::pipeline::storage_error::report(&e);
        anyhow::anyhow!("{}", redactor.redact(&msg))
    })
}

/// 0 when every part was written or already done; else 1, with each failed part named on
/// stderr.
pub fn exit_code(command: &str, summary: &pipeline::RunSummary) -> i32 {
    if summary.parts_failed == 0 {
        return 0;
    }
    eprintln!(
        "{command}: {} part(s) failed; rerun to retry them (finished parts are kept):",
        summary.parts_failed
    );
    for e in &summary.errors {
        eprintln!("  {e}");
    }
    1
}
