//! The survey pipeline behind `sedflow run`: Parquet catalogues (local or S3) in, per-star
//! posterior Parquet out, sharded, resumable, one output row per input row.
//!
//! Data path and threads, joined by bounded crossbeam channels (capacities below, counted in
//! messages) so that memory stays flat whatever the catalogue size:
//!
//! ```text
//! plan (list inputs, footers, shard split, skip parts already done)
//!   reader:    Parquet row groups -> ingest (validate, flag)      --READ_CHANNEL_CAP-->
//!   batcher:   stars grouped by set size, <= batch_size           --BATCH_CHANNEL_CAP-->
//!   inference: Engine::infer (rayon inside), flags merged         --RESULT_CHANNEL_CAP-->
//!   writer:    reorder to input order per part, Parquet, atomic commit
//! ```
//!
//! Control messages (part start, end, failure) travel the same channels in order, so the
//! writer knows when a part is complete. This module plans and wires; the stages are in
//! `stages.rs`. Only these two files know about channels.

pub(crate) mod batcher;
pub(crate) mod catalogue;
pub mod config;
pub(crate) mod describe;
pub(crate) mod ecsv;
pub(crate) mod fingerprint;
pub mod ingest;
pub(crate) mod join;
pub(crate) mod keep;
pub(crate) mod location;
pub(crate) mod masks;
pub mod memory_ingest;
pub(crate) mod parallax_zero_point;
pub mod progress;
pub mod shard;
pub mod simulated;
pub mod sink;
pub mod source;
mod stages;
pub(crate) mod storage_error;
pub(crate) mod tables;

use crate::posterior::{flags, Engine};
use anyhow::{bail, Context, Result};
use config::PipelineConfig;
use crossbeam_channel::bounded;
use futures::StreamExt;
use location::{InputObject, OutputTarget};
use progress::{ProgressMode, Reporter};
use shard::Shard;
use sink::{PosteriorLayout, SinkSettings};
use source::PartPlan;
pub(crate) use stages::read_duplicates;
use stages::{
    batch_stage, infer_stage, join as join_thread, read_stage, write_stage, RowsMsg, Shared,
    StarsMsg,
};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// Reader -> batcher channel capacity (messages of up to `read_batch_rows` stars).
pub const READ_CHANNEL_CAP: usize = 4;
/// Batcher -> inference channel capacity (batches).
pub const BATCH_CHANNEL_CAP: usize = 2;
/// Inference -> writer channel capacity (result batches).
pub const RESULT_CHANNEL_CAP: usize = 4;
/// Footers or output checks fetched concurrently while planning.
pub const PLAN_CONCURRENCY: usize = 16;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Input URI (file, directory, glob, s3://...).
    pub input: String,
    /// Output directory or s3:// prefix.
    pub output: String,
    /// Merged configuration.
    pub config: PipelineConfig,
    /// This process's shard.
    pub shard: Shard,
    /// Progress display.
    pub progress: ProgressMode,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    /// Input files listed (all shards).
    pub files: usize,
    /// Parts assigned to this shard.
    pub parts: usize,
    /// Parts written by this run.
    pub parts_written: usize,
    /// Parts skipped because their output already existed.
    pub parts_skipped: usize,
    /// Parts (or files) that failed.
    pub parts_failed: usize,
    /// Input rows processed.
    pub rows: u64,
    /// Output rows written.
    pub stars: u64,
    /// Stars that went through the engine.
    pub stars_inferred: u64,
    /// Proposal samples drawn and weighed in all (refinement can add samples for hard stars).
    pub samples_drawn: u64,
    /// Effective samples in all (sum of n_eff).
    pub effective_samples: f64,
    /// Median over inferred stars of the sample efficiency (ESS / every sample drawn), to
    /// 0.001; None when no star was inferred.
    pub median_efficiency: Option<f64>,
    /// Proposal samples per star.
    pub samples_per_star: usize,
    /// Wall time of the processing phase \[s\].
    pub wall_s: f64,
    /// Wall time of planning (listing, footers, resume checks) \[s\].
    pub plan_s: f64,
    /// Busy time of the reader stage (read + decode + ingest) \[s\].
    pub read_s: f64,
    /// Busy time of the inference stage \[s\].
    pub infer_s: f64,
    /// Busy time of the writer stage (reorder + encode + upload) \[s\].
    pub write_s: f64,
    /// CPU seconds per inference sub-stage reported by the engine (summed over threads).
    pub engine_stages: Vec<(&'static str, f64)>,
    /// The engine's work counters, e.g. the mode search's forward-model evaluations per star.
    pub engine_counters: Vec<(&'static str, f64)>,
    /// Error messages (already redacted), one per failed part or file.
    pub errors: Vec<String>,
    /// Peak resident set size of the process [bytes], where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.stars as f64 / self.wall_s.max(1e-9);
        let srate = self.samples_drawn as f64 / self.wall_s.max(1e-9);
        writeln!(
            f,
            "sedflow run: {} parts: {} written, {} already done, {} failed",
            self.parts, self.parts_written, self.parts_skipped, self.parts_failed
        )?;
        writeln!(
            f,
            "sedflow run: {} input rows -> {} stars ({} inferred, {:.1} samples each on average) in {:.2} s (+{:.2} s planning): {:.1} stars/s, {:.4e} proposal samples/s",
            self.rows, self.stars, self.stars_inferred, self.samples_drawn as f64 / self.stars_inferred.max(1) as f64, self.wall_s, self.plan_s, rate, srate
        )?;
        if let Some(e) = self.median_efficiency {
            writeln!(
                f,
                "sedflow run: median sample efficiency {e:.3} (effective samples / samples drawn per star), {:.1} effective samples per star on average",
                self.effective_samples / self.stars_inferred.max(1) as f64
            )?;
        }
        write!(
            f,
            "sedflow run: stage busy time: read+ingest {:.2} s, inference {:.2} s, write {:.2} s",
            self.read_s, self.infer_s, self.write_s
        )?;
        if !self.engine_stages.is_empty() {
            let total: f64 = self
                .engine_stages
                .iter()
                .map(|s| s.1)
                .sum::<f64>()
                .max(1e-12);
            write!(f, "\nsedflow run: inference CPU time by sub-stage:")?;
            for (name, s) in &self.engine_stages {
                write!(f, " {name} {s:.2} s ({:.0}%)", 100.0 * s / total)?;
            }
        }
        for (name, v) in &self.engine_counters {
            write!(f, "\nsedflow run: {name}: {v:.1}")?;
        }
        if let Some(r) = self.peak_rss_bytes {
            write!(f, "\nsedflow run: peak RSS {:.1} MiB", r as f64 / 1048576.0)?;
        }
        Ok(())
    }
}

/// Peak resident set size of this process (Linux: VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Names of the flag bits, written into the output metadata (`sedflow.flags`).
pub const FLAG_NAMES: [(u32, &str); 19] = [
    (flags::NO_USABLE_BANDS, "NO_USABLE_BANDS"),
    (flags::BAD_MAGNITUDE, "BAD_MAGNITUDE"),
    (flags::BAD_ERROR, "BAD_ERROR"),
    (flags::UNKNOWN_BAND, "UNKNOWN_BAND"),
    (flags::BAD_PARALLAX, "BAD_PARALLAX"),
    (flags::DUPLICATE_SOURCE_ID, "DUPLICATE_SOURCE_ID"),
    (flags::LOW_NEFF, "LOW_NEFF"),
    (flags::LOW_EFFICIENCY, "LOW_EFFICIENCY"),
    (flags::POOR_FIT, "POOR_FIT"),
    (flags::NOT_PROCESSED, "NOT_PROCESSED"),
    (flags::ALL_WEIGHTS_ZERO, "ALL_WEIGHTS_ZERO"),
    (flags::SINGLE_BAND, "SINGLE_BAND"),
    (flags::NULL_SOURCE_ID, "NULL_SOURCE_ID"),
    (flags::DUPLICATE_BAND, "DUPLICATE_BAND"),
    (flags::HIGH_PARETO_K, "HIGH_PARETO_K"),
    (flags::NOT_CONVERGED, "NOT_CONVERGED"),
    (flags::BAD_REDDENING_PRIOR, "BAD_REDDENING_PRIOR"),
    (flags::AMBIGUOUS_MATCH, "AMBIGUOUS_MATCH"),
    (flags::MASKED_BAND, "MASKED_BAND"),
];

/// A unit of work of this shard.
enum Unit {
    Part {
        plan: PartPlan,
    },
    /// A file whose footer could not be read: reported, not processed.
    Broken {
        /// The error, naming the file.
        error: String,
    },
}

/// Band ids of `[output] predict_bands` (an unknown or repeated name is an error).
fn predict_band_ids(names: &[String], known: &[String]) -> Result<Vec<usize>> {
    let mut ids = Vec::with_capacity(names.len());
    for n in names {
        let Some(id) = known.iter().position(|k| k == n) else {
            bail!(
                "[output] predict_bands: unknown band '{n}' (known: {})",
                known.join(", ")
            );
        };
        if ids.contains(&id) {
            bail!("[output] predict_bands: band '{n}' given twice");
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Run the pipeline with `engine`: plan (list inputs, split shards, check what is done),
/// then process what is left.
pub fn run(opts: &RunOptions, engine: &dyn Engine) -> Result<RunSummary> {
    let cfg = &opts.config;
    cfg.validate()?;
    let redactor = config::Redactor::new(cfg);
    let reporter = Reporter::new(opts.progress, cfg.progress.log_interval_s, redactor);
    let shared = Shared {
        reporter: reporter.clone(),
        errors: Mutex::new(Vec::new()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("sedflow-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    // configuration errors first, before any input is listed
    let band_names = engine.band_names();
    let mappings = ingest::band_mappings(&cfg.input, &band_names)?;
    keep::check_names(
        &cfg.output.keep_columns,
        &posterior_layout(engine, cfg).columns(),
    )?;
    let t_plan = Instant::now();
    let plan = plan(&rt, opts, engine, &shared)?;
    let mut summary = plan.summary.clone();
    summary.plan_s = t_plan.elapsed().as_secs_f64();
    let columns = (band_names.as_slice(), mappings.as_slice());
    process(&rt, opts, (engine, columns), &shared, plan, summary)
}

/// The posterior table's own columns (the kept input columns follow them).
fn posterior_layout(engine: &dyn Engine, cfg: &PipelineConfig) -> PosteriorLayout {
    PosteriorLayout {
        chain_diagnostics: engine.chain_diagnostics(),
        predict_bands: cfg.output.predict_bands.clone(),
    }
}

/// The engine's band names and the input columns mapped to them.
type BandColumns<'a> = (&'a [String], &'a [(config::BandColumn, u16)]);

/// What planning decided.
struct Plan {
    inputs: Vec<InputObject>,
    /// The joined tables (`[[input.join]]`), planned.
    join: Option<join::JoinPlan>,
    /// Parquet spills of text inputs: they live as long as the run.
    _spill: Option<tempfile::TempDir>,
    target: OutputTarget,
    /// Where the samples tables go (`--write-samples`), beside `target`.
    samples: Option<OutputTarget>,
    /// Parts to process, in order.
    todo: Vec<PartPlan>,
    model_id: String,
    /// The settings of this run and their fingerprint (written into every output).
    settings: serde_json::Value,
    fingerprint: String,
    /// Counts so far (files, parts, skipped, failed).
    summary: RunSummary,
}

/// List the inputs, split them between shards, and skip the parts already done (refusing
/// outputs made with other settings).
fn plan(
    rt: &tokio::runtime::Runtime,
    opts: &RunOptions,
    engine: &dyn Engine,
    shared: &Shared,
) -> Result<Plan> {
    let cfg = &opts.config;
    let inputs = rt.block_on(location::list_inputs(&opts.input, &cfg.s3))?;
    let target = OutputTarget::open(&opts.output, &cfg.s3)?;
    let samples_uri = match cfg.inference.write_samples {
        0 => None,
        _ => Some(sink::samples_location(&opts.output)?),
    };
    check_separate(opts, &inputs)?;
    let (inputs, spill) = tables::spill_text_inputs(rt, inputs)?;
    let join = match cfg.input.join.is_empty() {
        true => None,
        false => {
            let first = rt.block_on(source::read_metadata(&inputs[0]))?;
            join::JoinPlan::prepare(rt, &cfg.input, &cfg.s3, first.schema())?
        }
    };
    let sh = &opts.shard;
    shared.reporter.log(&format!(
        "{} input file(s); shard {}/{} ({})",
        inputs.len(),
        sh.index,
        sh.count,
        sh.source
    ));
    let joined_fields = join.as_ref().map(|j| j.fields()).unwrap_or_default();
    let units = shard_units(rt, &inputs, sh, cfg, &joined_fields)?;
    let model_id = engine.model_id();
    let mut settings = fingerprint::settings(&model_id, cfg);
    if let Some(j) = &join {
        settings["joined_files"] = j.identity();
    }
    let fp = fingerprint::fingerprint(&settings);
    let mut summary = RunSummary {
        files: inputs.len(),
        parts: units.len(),
        samples_per_star: cfg.inference.samples,
        ..Default::default()
    };
    let skip = resume_checks(rt, &target, &units, (&fp, &settings), shared, &mut summary)?;
    // created only once the run is known to go ahead
    let samples = samples_uri
        .map(|uri| OutputTarget::open(&uri, &cfg.s3))
        .transpose()?;
    let mut todo: Vec<PartPlan> = Vec::new();
    for (k, u) in units.into_iter().enumerate() {
        match u {
            Unit::Part { plan } if !skip.contains(&k) => todo.push(plan),
            Unit::Part { .. } => {}
            Unit::Broken { error } => {
                summary.parts_failed += 1;
                shared.error(error);
            }
        }
    }
    if summary.parts_skipped > 0 {
        shared.reporter.log(&format!(
            "{} part(s) already done, skipped (resume)",
            summary.parts_skipped
        ));
    }
    Ok(Plan {
        inputs,
        join,
        _spill: spill,
        target,
        samples,
        todo,
        model_id,
        settings,
        fingerprint: fp,
        summary,
    })
}

/// Outputs must never become inputs of a rerun: refuse an output directory inside the
/// input directory, or an input inside the output directory.
fn check_separate(opts: &RunOptions, inputs: &[InputObject]) -> Result<()> {
    check_separate_from(opts, inputs, &opts.output)?;
    if opts.config.inference.write_samples > 0 {
        check_separate_from(opts, inputs, &sink::samples_location(&opts.output)?)?;
    }
    Ok(())
}

/// [`check_separate`] for one output location `output`.
fn check_separate_from(opts: &RunOptions, inputs: &[InputObject], output: &str) -> Result<()> {
    let location::Uri::Local(out) = location::Uri::parse(output)? else {
        return Ok(());
    };
    let out = std::fs::canonicalize(&out).unwrap_or_else(|_| out.into());
    if let location::Uri::Local(inp) = location::Uri::parse(&opts.input)? {
        if let Ok(inp) = std::fs::canonicalize(&inp) {
            if inp.is_dir() && out.starts_with(&inp) {
                bail!(
                    "the output directory {} lies inside the input directory {}; use separate directories",
                    out.display(),
                    inp.display()
                );
            }
        }
    }
    if let Some(i) = inputs.iter().find(|i| {
        std::fs::canonicalize(&i.uri)
            .map(|p| p.starts_with(&out))
            .unwrap_or(false)
    }) {
        bail!(
            "input {} lies inside the output directory {}; use separate directories",
            i.uri,
            out.display()
        );
    }
    Ok(())
}

/// This shard's units of work: by file (balanced by size; only this shard's footers are
/// read) when there are at least as many files as shards, else by part (whole row groups,
/// balanced by rows). A kept column missing from a file read (with the joined tables'
/// columns, `joined`) is an error before any work.
fn shard_units(
    rt: &tokio::runtime::Runtime,
    inputs: &[InputObject],
    sh: &Shard,
    cfg: &PipelineConfig,
    joined: &[arrow::datatypes::Field],
) -> Result<Vec<Unit>> {
    type Footer = (Vec<u64>, Result<arrow::datatypes::Fields>);
    let footers = |files: Vec<usize>| -> Vec<(usize, Result<Footer>)> {
        rt.block_on(
            futures::stream::iter(files)
                .map(|f| {
                    let obj = &inputs[f];
                    async move {
                        let r = source::read_metadata(obj).await.map(|m| {
                            let wide = join::JoinPlan::wide_schema(m.schema(), joined);
                            let kept = keep::fields(&cfg.output.keep_columns, &wide, &obj.uri);
                            (source::row_group_rows(&m), kept)
                        });
                        (f, r)
                    }
                })
                .buffered(PLAN_CONCURRENCY)
                .collect(),
        )
    };
    let units_of = |files: Vec<usize>| -> Result<Vec<Unit>> {
        let mut units = Vec::new();
        let mut first_kept: Option<(arrow::datatypes::Fields, usize)> = None;
        for (f, r) in footers(files) {
            match r {
                Ok((rg, kept)) => {
                    let kept = kept?;
                    match &first_kept {
                        Some((k, g)) => {
                            keep::check_same_types((k, &inputs[*g].uri), &kept, &inputs[f].uri)?
                        }
                        None => first_kept = Some((kept, f)),
                    }
                    units.extend(
                        source::plan_parts(f, &inputs[f].stem, &rg, cfg.input.rows_per_part)
                            .into_iter()
                            .map(|plan| Unit::Part { plan }),
                    )
                }
                Err(e) => units.push(Unit::Broken {
                    error: storage_error::report(&e),
                }),
            }
        }
        Ok(units)
    };
    if sh.count == 1 || inputs.len() >= sh.count {
        let sizes: Vec<u64> = inputs.iter().map(|i| i.size).collect();
        let owner = shard::assign(&sizes, sh.count);
        return units_of(
            (0..inputs.len())
                .filter(|&f| owner[f] == sh.index)
                .collect(),
        );
    }
    let all = units_of((0..inputs.len()).collect())?;
    let w: Vec<u64> = all
        .iter()
        .map(|u| match u {
            Unit::Part { plan } => plan.n_rows,
            Unit::Broken { .. } => 0,
        })
        .collect();
    let owner = shard::assign(&w, sh.count);
    Ok(all
        .into_iter()
        .zip(owner)
        .filter(|(_, o)| *o == sh.index)
        .map(|(u, _)| u)
        .collect())
}

/// Resume: the units whose output exists and was made with these settings (skipped) or
/// cannot be read (failed); any output made with other settings refuses the whole run.
/// One output of another shard is checked too, so that a shard with nothing done yet
/// cannot add parts made with other settings beside them.
fn resume_checks(
    rt: &tokio::runtime::Runtime,
    target: &OutputTarget,
    units: &[Unit],
    (fp, settings): (&str, &serde_json::Value),
    shared: &Shared,
    summary: &mut RunSummary,
) -> Result<HashSet<usize>> {
    let existing = rt.block_on(target.existing())?;
    let mut done: Vec<(Option<usize>, &str)> = units
        .iter()
        .enumerate()
        .filter_map(|(k, u)| match u {
            Unit::Part { plan } if existing.contains(&plan.name) => {
                Some((Some(k), plan.name.as_str()))
            }
            _ => None,
        })
        .collect();
    if let Some(first) = existing.iter().min() {
        if !done.iter().any(|(_, n)| *n == first.as_str()) {
            done.push((None, first.as_str()));
        }
    }
    let checks: Vec<(Option<usize>, Result<Reuse>)> = rt.block_on(
        futures::stream::iter(done)
            .map(|(k, name)| async move { (k, check_existing(target, name, fp, settings).await) })
            .buffered(PLAN_CONCURRENCY)
            .collect(),
    );
    let mut skip: HashSet<usize> = HashSet::new();
    let mut mismatches: Vec<String> = Vec::new();
    for (k, r) in checks {
        match (k, r) {
            (_, Ok(Reuse::Differs(msg))) => mismatches.push(msg),
            (Some(k), Ok(Reuse::Same)) => {
                skip.insert(k);
                summary.parts_skipped += 1;
            }
            (Some(k), Err(e)) => {
                skip.insert(k);
                summary.parts_failed += 1;
                shared.error(storage_error::report(&e));
            }
            (None, _) => {}
        }
    }
    if let Some(first) = mismatches.first() {
        let more = match mismatches.len() {
            1 => String::new(),
            n => format!(" (and {} more output file(s) like it)", n - 1),
        };
        bail!("{first}{more}");
    }
    Ok(skip)
}

/// Metadata common to every output file: version, model, config, settings, fingerprint,
/// flag names.
fn common_metadata(plan: &Plan, cfg: &PipelineConfig) -> Vec<(String, String)> {
    let flag_names: std::collections::BTreeMap<String, u32> = FLAG_NAMES
        .iter()
        .map(|(b, n)| (n.to_string(), *b))
        .collect();
    let mut meta = vec![
        (
            "sedflow.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("sedflow.model_id".to_string(), plan.model_id.clone()),
        ("sedflow.config".to_string(), cfg.provenance_json()),
        (
            fingerprint::FINGERPRINT_KEY.to_string(),
            plan.fingerprint.clone(),
        ),
        (
            fingerprint::SETTINGS_KEY.to_string(),
            plan.settings.to_string(),
        ),
        (
            "sedflow.flags".to_string(),
            serde_json::to_string(&flag_names).expect("flag names serialise"),
        ),
    ];
    meta.sort();
    meta
}

/// Process the planned parts: the four stages on their own threads, joined by bounded
/// channels; the summary completed with what they did.
fn process(
    rt: &tokio::runtime::Runtime,
    opts: &RunOptions,
    (engine, (band_names, mappings)): (&dyn Engine, BandColumns),
    shared: &Shared,
    plan: Plan,
    mut summary: RunSummary,
) -> Result<RunSummary> {
    let cfg = &opts.config;
    let total_rows: u64 = plan.todo.iter().map(|p| p.n_rows).sum();
    shared.reporter.log(&format!(
        "{} part(s), {} input rows to process; model {}; {} samples per star",
        plan.todo.len(),
        total_rows,
        plan.model_id,
        cfg.inference.samples
    ));
    let mut settings = cfg.inference.settings();
    settings.predict_bands = predict_band_ids(&cfg.output.predict_bands, band_names)?;
    settings.gaia_passbands = cfg.input.gaia_release.passbands();
    let sink_settings = SinkSettings {
        layout: posterior_layout(engine, cfg),
        compression: cfg.output.compression,
        row_group_rows: cfg.output.row_group_rows,
        metadata: common_metadata(&plan, cfg),
        samples: plan.samples.clone(),
    };
    shared.reporter.start(total_rows);
    let t0 = Instant::now();
    let (tx_read, rx_read) = bounded::<StarsMsg>(READ_CHANNEL_CAP);
    let (tx_batch, rx_batch) = bounded::<StarsMsg>(BATCH_CHANNEL_CAP);
    let (tx_res, rx_res) = bounded::<RowsMsg>(RESULT_CHANNEL_CAP);
    let handle = rt.handle().clone();
    let (inputs, todo, target) = (&plan.inputs, &plan.todo, &plan.target);
    let (read_s, infer_out, write_out) = std::thread::scope(|s| {
        let spawn = |name: &str| std::thread::Builder::new().name(format!("sedflow-{name}"));
        let reader = spawn("read")
            .spawn_scoped(s, || {
                read_stage(
                    &handle,
                    inputs,
                    todo,
                    cfg,
                    mappings,
                    (band_names, engine.reddening()),
                    plan.join.as_ref(),
                    shared,
                    tx_read,
                )
            })
            .expect("spawning the reader thread");
        let batcher = spawn("batch")
            .spawn_scoped(s, || batch_stage(cfg, rx_read, tx_batch))
            .expect("spawning the batcher thread");
        let infer = spawn("infer")
            .spawn_scoped(s, || infer_stage(engine, &settings, rx_batch, tx_res))
            .expect("spawning the inference thread");
        let writer = spawn("write")
            .spawn_scoped(s, || {
                write_stage(&handle, target, &sink_settings, shared, rx_res)
            })
            .expect("spawning the writer thread");
        let r = join_thread("reader", reader.join());
        let b = join_thread("batcher", batcher.join());
        let i = join_thread("inference", infer.join());
        let w = join_thread("writer", writer.join());
        b?;
        Ok::<_, anyhow::Error>((r?, i?, w?))
    })?;
    let totals = infer_out?;
    shared.reporter.finish();
    summary.wall_s = t0.elapsed().as_secs_f64();
    summary.read_s = read_s.as_secs_f64();
    summary.infer_s = totals.busy.as_secs_f64();
    summary.write_s = write_out.busy.as_secs_f64();
    summary.engine_stages = engine.stage_times();
    summary.engine_counters = engine.counters();
    summary.parts_written = write_out.written;
    summary.parts_failed += write_out.failed;
    summary.rows = write_out.rows;
    summary.stars = write_out.stars;
    summary.stars_inferred = totals.inferred;
    summary.samples_drawn = totals.drawn;
    summary.effective_samples = totals.effective;
    summary.median_efficiency = totals.efficiency.median();
    summary.errors = shared.errors.lock().unwrap().clone();
    summary.peak_rss_bytes = peak_rss_bytes();
    Ok(summary)
}

/// Whether an existing output can stand for its part in this run.
enum Reuse {
    /// Made with this run's settings.
    Same,
    /// Made with other settings: the message names the file and the changed keys.
    Differs(String),
}

async fn check_existing(
    target: &OutputTarget,
    name: &str,
    fp: &str,
    now: &serde_json::Value,
) -> Result<Reuse> {
    use object_store::ObjectStoreExt;
    let path = target.path(name);
    let uri = target.uri(name);
    let meta = target
        .store
        .head(&path)
        .await
        .with_context(|| format!("{uri}: reading existing output"))?;
    let obj = InputObject {
        store: target.store.clone(),
        path,
        uri: uri.clone(),
        size: meta.size,
        stem: String::new(),
    };
    let md = source::read_metadata(&obj).await?;
    let kv = md.metadata().file_metadata().key_value_metadata();
    let value = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|k| k.key == key))
            .and_then(|k| k.value.clone())
    };
    Ok(match value(fingerprint::FINGERPRINT_KEY) {
        Some(f) if f == fp => Reuse::Same,
        _ => Reuse::Differs(fingerprint::mismatch(
            &uri,
            value(fingerprint::SETTINGS_KEY).as_deref(),
            now,
        )),
    })
}
