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
//! writer knows when a part is complete. Only this module knows about channels.

pub mod batcher;
pub mod catalogue;
pub mod config;
pub mod fingerprint;
pub mod ingest;
pub mod location;
pub mod memory_ingest;
pub mod parallax_zero_point;
pub mod progress;
pub mod shard;
pub mod simulated;
pub mod sink;
pub mod source;
mod stages;
pub mod storage_error;

use crate::posterior::{flags, Engine};
use anyhow::{bail, Context, Result};
use config::PipelineConfig;
use crossbeam_channel::bounded;
use futures::StreamExt;
use location::{InputObject, OutputTarget};
use progress::{ProgressMode, Reporter};
use shard::Shard;
use sink::{OutRow, PartSink, PosteriorLayout, SinkSettings};
use source::PartPlan;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
pub const FLAG_NAMES: [(u32, &str); 17] = [
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
];

/// Messages between the stages (control messages keep their order through every stage).
enum Msg {
    /// A part begins: open its output.
    Start {
        part: u32,
        name: String,
        meta: Vec<(String, String)>,
    },
    /// Ingested stars (reader -> batcher) or an inference batch (batcher -> inference).
    Stars(Vec<Ingested>),
    /// Output rows (inference -> writer): (part, row, row data).
    Results(Vec<(u32, u32, OutRow)>),
    /// The reader finished a part: it has this many output rows.
    End { part: u32, n_out: u32 },
    /// The part cannot be completed (bad input or write error); drop what was sent.
    Failed { part: u32, error: String },
}

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

struct Shared {
    reporter: Reporter,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, msg: String) {
        let msg = self.reporter.redact(&msg);
        self.reporter.log(&format!("error: {msg}"));
        self.errors.lock().unwrap().push(msg);
    }
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

/// Run the pipeline with `engine`.
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
    let band_names = engine.band_names();
    let mappings = ingest::band_mappings(&cfg.input, &band_names)?;
    let t_plan = Instant::now();

    // ---- plan ------------------------------------------------------------------------
    let inputs = rt.block_on(location::list_inputs(&opts.input, &cfg.s3))?;
    let target = OutputTarget::open(&opts.output, &cfg.s3)?;
    if let location::Uri::Local(out) = location::Uri::parse(&opts.output)? {
        let out = std::fs::canonicalize(&out).unwrap_or_else(|_| out.into());
        // outputs must never become inputs of a rerun
        if let location::Uri::Local(inp) = location::Uri::parse(&opts.input)? {
            if let Ok(inp) = std::fs::canonicalize(&inp) {
                if inp.is_dir() && out.starts_with(&inp) {
                    anyhow::bail!(
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
            anyhow::bail!(
                "input {} lies inside the output directory {}; use separate directories",
                i.uri,
                out.display()
            );
        }
    }
    let sh = &opts.shard;
    reporter.log(&format!(
        "{} input file(s); shard {}/{} ({})",
        inputs.len(),
        sh.index,
        sh.count,
        sh.source
    ));
    let mut units: Vec<Unit> = Vec::new();
    let footers = |files: Vec<usize>| -> Vec<(usize, Result<Vec<u64>>)> {
        rt.block_on(
            futures::stream::iter(files)
                .map(|f| {
                    let obj = &inputs[f];
                    async move {
                        let r = source::read_metadata(obj)
                            .await
                            .map(|m| source::row_group_rows(&m));
                        (f, r)
                    }
                })
                .buffered(PLAN_CONCURRENCY)
                .collect(),
        )
    };
    let plan_file = |f: usize, rg: Vec<u64>| {
        source::plan_parts(f, &inputs[f].stem, &rg, cfg.input.rows_per_part)
    };
    if sh.count == 1 || inputs.len() >= sh.count {
        // split by file, balanced by size: only this shard's footers are read
        let sizes: Vec<u64> = inputs.iter().map(|i| i.size).collect();
        let owner = shard::assign(&sizes, sh.count);
        let mine: Vec<usize> = (0..inputs.len())
            .filter(|&f| owner[f] == sh.index)
            .collect();
        for (f, r) in footers(mine) {
            match r {
                Ok(rg) => {
                    units.extend(plan_file(f, rg).into_iter().map(|plan| Unit::Part { plan }))
                }
                Err(e) => units.push(Unit::Broken {
                    error: storage_error::report(&e),
                }),
            }
        }
    } else {
        // fewer files than shards: split by parts (whole row groups), balanced by rows
        let mut all: Vec<Unit> = Vec::new();
        for (f, r) in footers((0..inputs.len()).collect()) {
            match r {
                Ok(rg) => all.extend(plan_file(f, rg).into_iter().map(|plan| Unit::Part { plan })),
                Err(e) => all.push(Unit::Broken {
                    error: storage_error::report(&e),
                }),
            }
        }
        let w: Vec<u64> = all
            .iter()
            .map(|u| match u {
                Unit::Part { plan } => plan.n_rows,
                Unit::Broken { .. } => 0,
            })
            .collect();
        let owner = shard::assign(&w, sh.count);
        units = all
            .into_iter()
            .zip(owner)
            .filter(|(_, o)| *o == sh.index)
            .map(|(u, _)| u)
            .collect();
    }

    let model_id = engine.model_id();
    let settings_now = fingerprint::settings(&model_id, cfg);
    let fp = fingerprint::fingerprint(&settings_now);
    let mut summary = RunSummary {
        files: inputs.len(),
        parts: units.len(),
        samples_per_star: cfg.inference.samples,
        ..Default::default()
    };
    // resume: parts whose posterior file exists are done (if made with the same settings)
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
    // one output of another shard too, so that a shard with nothing done yet cannot add
    // parts made with other settings beside them
    if let Some(first) = existing.iter().min() {
        if !done.iter().any(|(_, n)| *n == first.as_str()) {
            done.push((None, first.as_str()));
        }
    }
    let checks: Vec<(Option<usize>, Result<Reuse>)> = rt.block_on(
        futures::stream::iter(done)
            .map(|(k, name)| {
                let (target, fp, now) = (&target, &fp, &settings_now);
                async move { (k, check_existing(target, name, fp, now).await) }
            })
            .buffered(PLAN_CONCURRENCY)
            .collect(),
    );
    let mut skip: HashSet<usize> = HashSet::new();
    let mut mismatches: Vec<String> = Vec::new();
    for (k, r) in checks {
        match r {
            Ok(Reuse::Same) => {
                if let Some(k) = k {
                    skip.insert(k);
                    summary.parts_skipped += 1;
                }
            }
            Ok(Reuse::Differs(msg)) => mismatches.push(msg),
            Err(e) => {
                if let Some(k) = k {
                    skip.insert(k);
                    summary.parts_failed += 1;
                    shared.error(storage_error::report(&e));
                }
            }
        }
    }
    if let Some(first) = mismatches.first() {
        let more = match mismatches.len() {
            1 => String::new(),
            n => format!(" (and {} more output file(s) like it)", n - 1),
        };
        bail!("{first}{more}");
    }
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
    summary.plan_s = t_plan.elapsed().as_secs_f64();
    if summary.parts_skipped > 0 {
        reporter.log(&format!(
            "{} part(s) already done, skipped (resume)",
            summary.parts_skipped
        ));
    }
    let total_rows: u64 = todo.iter().map(|p| p.n_rows).sum();
    reporter.log(&format!(
        "{} part(s), {} input rows to process; model {}; {} samples per star",
        todo.len(),
        total_rows,
        model_id,
        cfg.inference.samples
    ));

    // ---- process ---------------------------------------------------------------------
    let mut common_meta = vec![
        (
            "sedflow.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("sedflow.model_id".to_string(), model_id.clone()),
        ("sedflow.config".to_string(), cfg.provenance_json()),
        (fingerprint::FINGERPRINT_KEY.to_string(), fp.clone()),
        (
            fingerprint::SETTINGS_KEY.to_string(),
            settings_now.to_string(),
        ),
        (
            "sedflow.flags".to_string(),
            serde_json::to_string(
                &FLAG_NAMES
                    .iter()
                    .map(|(b, n)| (n.to_string(), *b))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap(),
        ),
    ];
    common_meta.sort();
    let mut settings = cfg.inference.settings();
    settings.predict_bands = predict_band_ids(&cfg.output.predict_bands, &engine.band_names())?;
    let sink_settings = SinkSettings {
        layout: PosteriorLayout {
            chain_diagnostics: engine.chain_diagnostics(),
            predict_bands: cfg.output.predict_bands.clone(),
        },
        compression: cfg.output.compression,
        row_group_rows: cfg.output.row_group_rows,
        metadata: common_meta,
        samples: cfg.inference.write_samples > 0,
    };
    reporter.start(total_rows);
    let t0 = Instant::now();
    let (tx_read, rx_read) = bounded::<Msg>(READ_CHANNEL_CAP);
    let (tx_batch, rx_batch) = bounded::<Msg>(BATCH_CHANNEL_CAP);
    let (tx_res, rx_res) = bounded::<Msg>(RESULT_CHANNEL_CAP);
    let handle = rt.handle().clone();
    let (read_s, infer_out, write_out) = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("sedflow-read".into())
            .spawn_scoped(s, || {
                read_stage(
                    &handle,
                    &inputs,
                    &todo,
                    cfg,
                    &mappings,
                    (&band_names, engine.reddening()),
                    &shared,
                    tx_read,
                )
            })
            .expect("spawning the reader thread");
        let batcher = std::thread::Builder::new()
            .name("sedflow-batch".into())
            .spawn_scoped(s, || batch_stage(cfg, rx_read, tx_batch))
            .expect("spawning the batcher thread");
        let infer = std::thread::Builder::new()
            .name("sedflow-infer".into())
            .spawn_scoped(s, || infer_stage(engine, &settings, rx_batch, tx_res))
            .expect("spawning the inference thread");
        let writer = std::thread::Builder::new()
            .name("sedflow-write".into())
            .spawn_scoped(s, || {
                write_stage(&handle, &target, &sink_settings, &shared, rx_res)
            })
            .expect("spawning the writer thread");
        let r = join("reader", reader.join());
        let b = join("batcher", batcher.join());
        let i = join("inference", infer.join());
        let w = join("writer", writer.join());
        b?;
        Ok::<_, anyhow::Error>((r?, i?, w?))
    })?;
    let totals = infer_out?;
    let (infer_s, stars_inferred, samples_drawn) = (totals.busy, totals.inferred, totals.drawn);
    summary.effective_samples = totals.effective;
    let w = write_out;
    reporter.finish();
    summary.wall_s = t0.elapsed().as_secs_f64();
    summary.read_s = read_s.as_secs_f64();
    summary.infer_s = infer_s.as_secs_f64();
    summary.write_s = w.busy.as_secs_f64();
    summary.engine_stages = engine.stage_times();
    summary.parts_written = w.written;
    summary.parts_failed += w.failed;
    summary.rows = w.rows;
    summary.stars = w.stars;
    summary.stars_inferred = stars_inferred;
    summary.samples_drawn = samples_drawn;
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

/// A sender that measures how long it waits on a full channel (back-pressure), so that
/// stage busy times exclude it.
struct TimedSender {
    tx: Sender<Msg>,
    wait: std::cell::Cell<Duration>,
}

impl TimedSender {
    /// Send; false when the downstream stage has stopped.
    fn send(&self, m: Msg) -> bool {
        let t = Instant::now();
        let ok = self.tx.send(m).is_ok();
        self.wait.set(self.wait.get() + t.elapsed());
        ok
    }
}

/// A stage's thread result; a panic becomes an internal error.
fn join<T>(name: &str, r: std::thread::Result<T>) -> Result<T> {
    r.map_err(|p| {
        let m = source::panic_message(p.as_ref());
        anyhow!("internal error: the {name} stage panicked: {m}")
    })
}

/// Reader stage: parts -> ingested stars. Returns its busy time.
#[allow(clippy::too_many_arguments)]
fn read_stage(
    rt: &tokio::runtime::Handle,
    inputs: &[InputObject],
    todo: &[PartPlan],
    cfg: &PipelineConfig,
    mappings: &[(config::BandColumn, u16)],
    names: (&[String], &ReddeningModel),
    shared: &Shared,
    tx: Sender<Msg>,
) -> Duration {
    let t0 = Instant::now();
    let tx = TimedSender {
        tx,
        wait: std::cell::Cell::new(Duration::ZERO),
    };
    let mut reported_unused = false;
    for (part_id, plan) in todo.iter().enumerate() {
        let part = part_id as u32;
        let obj = &inputs[plan.file];
        let log = |m: &str| shared.reporter.log(m);
        let res = source::guard_decoder(&obj.uri, || {
            read_part(
                rt,
                (obj, plan, part),
                cfg,
                mappings,
                names,
                &log,
                &|m| tx.send(m),
                &mut reported_unused,
            )
        });
        let msg = match res {
            Ok(Some(n_out)) => Msg::End { part, n_out },
            Ok(None) => break, // downstream gone
            Err(e) => Msg::Failed {
                part,
                error: storage_error::report(&e),
            },
        };
        if !tx.send(msg) {
            break;
        }
    }
    t0.elapsed().saturating_sub(tx.wait.get())
}

/// The duplicate pre-pass over the source_id column of row groups `groups` (8 bytes per
/// row, freed before the rows are read). In long format a star is a duplicate when its rows
/// span several row groups, so each id counts once per row group.
pub(crate) fn read_duplicates(
    rt: &tokio::runtime::Handle,
    obj: &InputObject,
    meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    mapper: &Mapper,
    groups: &[usize],
) -> Result<Duplicates> {
    let mut ids: Vec<i64> = Vec::new();
    for &g in groups {
        let batches = rt.block_on(source::read_column_of_row_group(
            obj,
            meta,
            &mapper.source_id,
            g,
        ))?;
        let start = ids.len();
        for b in batches {
            let a = ingest::id_col(&b, &mapper.source_id)
                .with_context(|| format!("{}: row group {g}", obj.uri))?;
            ids.extend(a.iter().flatten());
        }
        if mapper.is_long() {
            let mut rg: Vec<i64> = ids.split_off(start);
            rg.sort_unstable();
            rg.dedup();
            ids.extend(rg);
        }
    }
    Ok(find_duplicates(ids))
}

/// Read one part; `Ok(None)` when the downstream stages have stopped.
#[allow(clippy::too_many_arguments)]
fn read_part(
    rt: &tokio::runtime::Handle,
    (obj, plan, part): (&InputObject, &PartPlan, u32),
    cfg: &PipelineConfig,
    mappings: &[(config::BandColumn, u16)],
    (band_names, reddening): (&[String], &ReddeningModel),
    log: &dyn Fn(&str),
    send: &dyn Fn(Msg) -> bool,
    reported_unused: &mut bool,
) -> Result<Option<u32>> {
    let meta = rt.block_on(source::read_metadata(obj))?;
    let rg_rows = source::row_group_rows(&meta);
    if plan.row_groups.iter().any(|&g| g >= rg_rows.len()) {
        anyhow::bail!(
            "{}: the file changed since the run started (fewer row groups)",
            obj.uri
        );
    }
    let mapper = Mapper::resolve(
        meta.schema(),
        &cfg.input,
        mappings,
        (band_names, reddening),
        &obj.uri,
    )?;
    if !*reported_unused && !mapper.unused.is_empty() {
        log(&format!(
            "{}: columns not used: {}",
            obj.uri,
            mapper.unused.join(", ")
        ));
        *reported_unused = true;
    }
    if !mapper.has_photometry() {
        log(&format!(
            "warning: {}: no photometry column recognised (see schemas/input.md and [[input.bands]]); every star will be flagged NO_USABLE_BANDS",
            obj.uri
        ));
    }
    let dups = read_duplicates(rt, obj, &meta, &mapper, &plan.row_groups)?;
    let mut extra = vec![
        ("sedflow.input".to_string(), obj.uri.clone()),
        (
            "sedflow.input_row_groups".to_string(),
            plan.row_groups
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("sedflow.input_rows".to_string(), plan.n_rows.to_string()),
    ];
    extra.sort();
    if !send(Msg::Start {
        part,
        name: plan.name.clone(),
        meta: extra,
    }) {
        return Ok(None);
    }
    let columns = mapper.columns();
    let mut next_idx: u32 = 0;
    let send_chunks = |stars: Vec<Ingested>| -> bool {
        let step = cfg.input.read_batch_rows.max(1);
        let mut it = stars.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Ingested> = it.by_ref().take(step).collect();
            if !send(Msg::Stars(chunk)) {
                return false;
            }
        }
        true
    };
    if mapper.is_long() {
        for &g in &plan.row_groups {
            let mut stream =
                source::open_stream(obj, &meta, &columns, vec![g], cfg.input.read_batch_rows)?;
            let mut grouper = LongGrouper::new(&mapper, part);
            while let Some(b) = rt.block_on(stream.next()) {
                let b = b.map_err(|e| {
                    source::read_error(
                        &format!("{}: row group {g}", obj.uri),
                        source::CANNOT_DECODE,
                        e,
                    )
                })?;
                grouper
                    .add(&b, &dups)
                    .with_context(|| format!("{}: row group {g}", obj.uri))?;
            }
            let stars = grouper.finish(next_idx);
            next_idx += stars.len() as u32;
            if !send_chunks(stars) {
                return Ok(None);
            }
        }
    } else {
        let mut stream = source::open_stream(
            obj,
            &meta,
            &columns,
            plan.row_groups.clone(),
            cfg.input.read_batch_rows,
        )?;
        // which row group a row belongs to, for messages
        let rg_of = |row: u64| {
            let mut acc = 0;
            for &g in &plan.row_groups {
                acc += rg_rows[g];
                if row < acc {
                    return g;
                }
            }
            *plan.row_groups.last().unwrap_or(&0)
        };
        while let Some(b) = rt.block_on(stream.next()) {
            let b = b.map_err(|e| {
                source::read_error(
                    &format!("{}: row group {}", obj.uri, rg_of(next_idx as u64)),
                    source::CANNOT_DECODE,
                    e,
                )
            })?;
            let stars = mapper
                .ingest_wide(&b, part, next_idx, &dups)
                .with_context(|| format!("{}: row group {}", obj.uri, rg_of(next_idx as u64)))?;
            next_idx += stars.len() as u32;
            if !send(Msg::Stars(stars)) {
                return Ok(None);
            }
        }
        if next_idx as u64 != plan.n_rows {
            anyhow::bail!(
                "{}: read {} rows but the footer promises {} (truncated?)",
                obj.uri,
                next_idx,
                plan.n_rows
            );
        }
    }
    Ok(Some(next_idx))
}

/// Batcher stage.
fn batch_stage(cfg: &PipelineConfig, rx: Receiver<Msg>, tx: Sender<Msg>) {
    let mut b = batcher::Batcher::new(cfg.batching.batch_size, cfg.batching.window);
    let mut out = Vec::new();
    for msg in rx.iter().map(Some).chain([None]) {
        batch_step(&mut b, msg, &mut out);
        for m in out.drain(..) {
            if tx.send(m).is_err() {
                return;
            }
        }
    }
}

/// One step of the batcher stage: a message in, the messages to pass on appended to `out`
/// (in order); `None` marks the end of the input and flushes every bucket.
fn batch_step(b: &mut batcher::Batcher, msg: Option<Msg>, out: &mut Vec<Msg>) {
    let mut batches = Vec::new();
    match msg {
        Some(Msg::Stars(stars)) => {
            for s in stars {
                b.push(s, &mut batches);
            }
        }
        Some(Msg::Failed { part, error }) => {
            b.purge_part(part);
            out.push(Msg::Failed { part, error });
        }
        Some(other) => out.push(other),
        None => b.flush(&mut batches),
    }
    out.extend(batches.into_iter().map(Msg::Stars));
}

fn join_reasons(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// What the inference stage did.
struct InferTotals {
    busy: Duration,
    inferred: u64,
    drawn: u64,
    effective: f64,
}

/// Inference stage: returns its totals or an internal error.
fn infer_stage(
    engine: &dyn Engine,
    settings: &InferSettings,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
) -> Result<InferTotals> {
    let mut busy = Duration::ZERO;
    let mut n_inferred = 0u64;
    let mut n_drawn = 0u64;
    let mut n_effective = 0f64;
    for msg in rx {
        let out = match msg {
            Msg::Stars(mut stars) => {
                let t = Instant::now();
                let todo: Vec<usize> = (0..stars.len())
                    .filter(|&i| !stars[i].null_id && !stars[i].obs.phot.is_empty())
                    .collect();
                let obs: Vec<_> = todo
                    .iter()
                    .map(|&i| std::mem::take(&mut stars[i].obs))
                    .collect();
                let results = if obs.is_empty() {
                    Vec::new()
                } else {
                    engine.infer(&obs, settings)
                };
                if results.len() != obs.len() {
                    return Err(anyhow!(
                        "internal error: the engine returned {} results for {} stars",
                        results.len(),
                        obs.len()
                    ));
                }
                n_inferred += obs.len() as u64;
                n_drawn += results.iter().map(|r| r.n_samples as u64).sum::<u64>();
                n_effective += results
                    .iter()
                    .map(|r| r.n_eff as f64)
                    .filter(|x| x.is_finite())
                    .sum::<f64>();
                let mut by_star: Vec<Option<StarResult>> = vec![None; stars.len()];
                for ((&i, r), o) in todo.iter().zip(results).zip(&obs) {
                    if r.source_id != o.source_id {
                        return Err(anyhow!(
                            "internal error: the engine returned source_id {} for star {}",
                            r.source_id,
                            o.source_id
                        ));
                    }
                    by_star[i] = Some(r);
                }
                let rows = stars
                    .into_iter()
                    .zip(by_star)
                    .map(|(s, r)| {
                        let res = match r {
                            Some(mut r) => {
                                r.flags |= s.flags;
                                r.flag_reason = join_reasons(&s.reason, &r.flag_reason);
                                r
                            }
                            None => {
                                let (f, why) = if s.null_id {
                                    (0, "")
                                } else {
                                    (flags::NO_USABLE_BANDS, "no usable photometric band")
                                };
                                StarResult::unprocessed(
                                    s.obs.source_id,
                                    s.flags | f,
                                    join_reasons(&s.reason, why),
                                )
                            }
                        };
                        (
                            s.part,
                            s.idx,
                            OutRow {
                                res,
                                null_id: s.null_id,
                                n_rows: s.n_rows,
                            },
                        )
                    })
                    .collect();
                busy += t.elapsed();
                Msg::Results(rows)
            }
            other => other,
        };
        if tx.send(out).is_err() {
            break;
        }
    }
    Ok(InferTotals {
        busy,
        inferred: n_inferred,
        drawn: n_drawn,
        effective: n_effective,
    })
}

struct WriteOut {
    busy: Duration,
    written: usize,
    failed: usize,
    rows: u64,
    stars: u64,
}

/// Writer stage.
fn write_stage(
    rt: &tokio::runtime::Handle,
    target: &OutputTarget,
    settings: &SinkSettings,
    shared: &Shared,
    rx: Receiver<Msg>,
) -> WriteOut {
    let mut out = WriteOut {
        busy: Duration::ZERO,
        written: 0,
        failed: 0,
        rows: 0,
        stars: 0,
    };
    let mut open: HashMap<u32, PartSink> = HashMap::new();
    let mut dead: HashSet<u32> = HashSet::new();
    let fail = |open: &mut HashMap<u32, PartSink>,
                dead: &mut HashSet<u32>,
                out: &mut WriteOut,
                part: u32,
                error: String| {
        if let Some(p) = open.remove(&part) {
            rt.block_on(p.abort());
        }
        if dead.insert(part) {
            out.failed += 1;
            shared.error(error);
        }
    };
    for msg in rx {
        let t = Instant::now();
        let mut touched: Vec<u32> = Vec::new();
        match msg {
            Msg::Start { part, name, meta } => match PartSink::open(target, &name, settings, &meta)
            {
                Ok(p) => {
                    open.insert(part, p);
                }
                Err(e) => fail(
                    &mut open,
                    &mut dead,
                    &mut out,
                    part,
                    storage_error::report(&e),
                ),
            },
            Msg::Results(rows) => {
                let (mut nr, mut ns) = (0u64, 0u64);
                for (part, idx, row) in rows {
                    if let Some(p) = open.get_mut(&part) {
                        nr += row.n_rows as u64;
                        ns += 1;
                        p.insert(idx, row);
                        if touched.last() != Some(&part) {
                            touched.push(part);
                        }
                    }
                }
                out.rows += nr;
                out.stars += ns;
                shared.reporter.advance(nr, ns);
            }
            Msg::End { part, n_out } => {
                if let Some(p) = open.get_mut(&part) {
                    p.set_expected(n_out);
                    touched.push(part);
                }
            }
            Msg::Failed { part, error } => fail(&mut open, &mut dead, &mut out, part, error),
            Msg::Stars(_) => unreachable!("stars reach the writer only as results"),
        }
        touched.sort_unstable();
        touched.dedup();
        for part in touched {
            let Some(p) = open.get_mut(&part) else {
                continue;
            };
            let complete = p.is_complete();
            if let Err(e) = rt.block_on(p.write_ready(complete)) {
                fail(
                    &mut open,
                    &mut dead,
                    &mut out,
                    part,
                    storage_error::report(&e),
                );
                continue;
            }
            if complete {
                let p = open.remove(&part).unwrap();
                let uri = p.uri.clone();
                match rt.block_on(p.commit()) {
                    Ok(()) => {
                        out.written += 1;
                        if shared.reporter.lines() {
                            shared.reporter.log(&format!("wrote {uri}"));
                        }
                    }
                    Err(e) => {
                        dead.insert(part);
                        out.failed += 1;
                        shared.error(storage_error::report(&e));
                    }
                }
            }
        }
        out.busy += t.elapsed();
    }
    // every part the reader finished must have completed
    for (_, p) in open.drain() {
        let msg = format!(
            "internal error: {} incomplete at the end of the run ({} rows waiting); not written",
            p.uri,
            p.pending()
        );
        rt.block_on(p.abort());
        out.failed += 1;
        shared.error(msg);
    }
    out
}
