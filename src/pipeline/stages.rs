//! The stages of `sedflow run` (steps 1-4 of the data path), each on its own thread,
//! joined by bounded channels with one message type each: reader (Parquet row groups ->
//! ingested stars), batcher (stars -> batches by set size), inference (batches -> output
//! rows) and writer (rows -> one Parquet file per part, committed atomically). Control
//! messages (part start, end, failure) travel in order with the data.

use super::config::{self, PipelineConfig};
use super::ingest::{self, find_duplicates, Duplicates, Ingested, LongGrouper, Mapper};
use super::join::{JoinPlan, PartJoin};
use super::location::{InputObject, OutputTarget};
use super::progress::Reporter;
use super::sink::{OutRow, PartSink, SinkSettings};
use super::source::{self, PartPlan};
use super::{batcher, keep, storage_error};
use crate::posterior::{flags, Engine, InferSettings, StarResult};
use crate::prior::reddening::ReddeningModel;
use anyhow::{anyhow, Context, Result};
use arrow::datatypes::Fields;
use crossbeam_channel::{Receiver, Sender};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Control messages. They travel every channel in order with the data, so that the
/// writer knows when a part is complete.
pub(super) enum Control {
    /// A part begins: open its output.
    Start {
        part: u32,
        name: String,
        meta: Vec<(String, String)>,
        /// The part's kept input columns.
        kept: Fields,
    },
    /// The reader finished a part: it has this many output rows.
    End { part: u32, n_out: u32 },
    /// The part cannot be completed (bad input or write error); drop what was sent.
    Failed { part: u32, error: String },
}

/// A message on a channel whose data is `T`: the data, or a control message.
pub(super) enum Msg<T> {
    /// The channel's data.
    Data(T),
    /// Part start, end or failure.
    Control(Control),
}

/// Reader -> batcher (chunks of ingested stars) and batcher -> inference (batches).
pub(super) type StarsMsg = Msg<Vec<Ingested>>;
/// Inference -> writer: output rows as (part, row, row data).
pub(super) type RowsMsg = Msg<Vec<(u32, u32, OutRow)>>;

/// What the stages share: the progress reporter and the errors, one per failed part.
pub(super) struct Shared {
    pub(super) reporter: Reporter,
    pub(super) errors: Mutex<Vec<String>>,
}

impl Shared {
    pub(super) fn error(&self, msg: String) {
        let msg = self.reporter.redact(&msg);
        self.reporter.log(&format!("error: {msg}"));
        self.errors.lock().unwrap().push(msg);
    }
}

/// A sender that measures how long it waits on a full channel (back-pressure), so that
/// stage busy times exclude it.
struct TimedSender {
    tx: Sender<StarsMsg>,
    wait: std::cell::Cell<Duration>,
}

impl TimedSender {
    /// Send; false when the downstream stage has stopped.
    fn send(&self, m: StarsMsg) -> bool {
        let t = Instant::now();
        let ok = self.tx.send(m).is_ok();
        self.wait.set(self.wait.get() + t.elapsed());
        ok
    }
}

/// A stage's thread result; a panic becomes an internal error.
pub(super) fn join<T>(name: &str, r: std::thread::Result<T>) -> Result<T> {
    r.map_err(|p| {
        let m = source::panic_message(p.as_ref());
        anyhow!("internal error: the {name} stage panicked: {m}")
    })
}

/// Reader stage: parts -> ingested stars. Returns its busy time.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_stage(
    rt: &tokio::runtime::Handle,
    inputs: &[InputObject],
    todo: &[PartPlan],
    cfg: &PipelineConfig,
    mappings: &[(config::BandColumn, u16)],
    names: (&[String], &ReddeningModel),
    join: Option<&JoinPlan>,
    shared: &Shared,
    tx: Sender<StarsMsg>,
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
                (mappings, join),
                names,
                &log,
                &|m| tx.send(m),
                &mut reported_unused,
            )
        });
        let msg = match res {
            Ok(Some(n_out)) => Msg::Control(Control::End { part, n_out }),
            Ok(None) => break, // downstream gone
            Err(e) => Msg::Control(Control::Failed {
                part,
                error: storage_error::report(&e),
            }),
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
pub(super) fn read_part(
    rt: &tokio::runtime::Handle,
    (obj, plan, part): (&InputObject, &PartPlan, u32),
    cfg: &PipelineConfig,
    (mappings, join): (&[(config::BandColumn, u16)], Option<&JoinPlan>),
    (band_names, reddening): (&[String], &ReddeningModel),
    log: &dyn Fn(&str),
    send: &dyn Fn(StarsMsg) -> bool,
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
    let wide = match join {
        Some(j) => {
            j.check_primary(meta.schema(), &obj.uri)?;
            std::sync::Arc::new(JoinPlan::wide_schema(meta.schema(), &j.fields()))
        }
        None => meta.schema().clone(),
    };
    let mapper = Mapper::resolve(
        &wide,
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
    // kept columns may come from the joined tables too
    let kept = keep::fields(&cfg.output.keep_columns, &wide, &obj.uri)?;
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
    if !send(Msg::Control(Control::Start {
        part,
        name: plan.name.clone(),
        meta: extra,
        kept: kept.clone(),
    })) {
        return Ok(None);
    }
    let mut columns = mapper.columns();
    for f in kept.iter() {
        if !columns.contains(f.name()) {
            columns.push(f.name().clone());
        }
    }
    if let Some(j) = join {
        if mapper.is_long() {
            anyhow::bail!(
                "{}: input.join needs the wide format (one row per star)",
                obj.uri
            );
        }
        // the primary's own columns are read; the joins add theirs per batch
        columns.retain(|c| meta.schema().field_with_name(c).is_ok());
        for k in j.primary_keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let mut next_idx: u32 = 0;
    let send_chunks = |stars: Vec<Ingested>| -> bool {
        let step = cfg.input.read_batch_rows.max(1);
        let mut it = stars.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Ingested> = it.by_ref().take(step).collect();
            if !send(Msg::Data(chunk)) {
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
                grouper.set_kept(keep::take(&b, &kept)?);
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
        // with joins, one row group at a time: the joined tables' rows for its keys only
        let segments: Vec<Vec<usize>> = match join {
            Some(_) => plan.row_groups.iter().map(|&g| vec![g]).collect(),
            None => vec![plan.row_groups.clone()],
        };
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
        for groups in segments {
            let part_join = match join {
                Some(j) => Some(read_part_join(rt, obj, &meta, &groups, j)?),
                None => None,
            };
            let mut stream =
                source::open_stream(obj, &meta, &columns, groups, cfg.input.read_batch_rows)?;
            let mut offset = 0usize;
            while let Some(b) = rt.block_on(stream.next()) {
                let b = b.map_err(|e| {
                    source::read_error(
                        &format!("{}: row group {}", obj.uri, rg_of(next_idx as u64)),
                        source::CANNOT_DECODE,
                        e,
                    )
                })?;
                let (b, ambiguous) = match &part_join {
                    Some(pj) => {
                        let (w, r) = pj.widen(&b, offset)?;
                        (w, Some(r))
                    }
                    None => (b, None),
                };
                offset += b.num_rows();
                let mut stars =
                    mapper
                        .ingest_wide(&b, part, next_idx, &dups)
                        .with_context(|| {
                            format!("{}: row group {}", obj.uri, rg_of(next_idx as u64))
                        })?;
                if let Some(reasons) = ambiguous {
                    flag_ambiguous(&mut stars, reasons);
                }
                keep::attach(&mut stars, keep::take(&b, &kept)?.as_ref());
                next_idx += stars.len() as u32;
                if !send(Msg::Data(stars)) {
                    return Ok(None);
                }
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

/// The joined tables' rows for some row groups of a part: their primary keys are read
/// first (a pre-pass, like the duplicate check's).
fn read_part_join(
    rt: &tokio::runtime::Handle,
    obj: &InputObject,
    meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    groups: &[usize],
    join: &JoinPlan,
) -> Result<PartJoin> {
    let mut s = source::open_stream(obj, meta, join.primary_keys(), groups.to_vec(), 65536)?;
    let mut batches = Vec::new();
    while let Some(b) = rt.block_on(s.next()) {
        batches.push(b.map_err(|e| source::read_error(&obj.uri, source::CANNOT_DECODE, e))?);
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => std::sync::Arc::new(
            meta.schema().project(
                &join
                    .primary_keys()
                    .iter()
                    .map(|k| meta.schema().index_of(k))
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            )?,
        ),
    };
    let keys = arrow::compute::concat_batches(&schema, &batches)?;
    join.load_part(&keys)
        .with_context(|| format!("{}: joining", obj.uri))
}

/// Mark the stars whose key matched several rows of a joined table.
fn flag_ambiguous(stars: &mut [Ingested], reasons: Vec<String>) {
    for (s, r) in stars.iter_mut().zip(reasons) {
        if r.is_empty() {
            continue;
        }
        s.flags |= flags::AMBIGUOUS_MATCH;
        if !s.reason.is_empty() {
            s.reason.push_str("; ");
        }
        s.reason.push_str(&r);
    }
}

/// Batcher stage.
pub(super) fn batch_stage(cfg: &PipelineConfig, rx: Receiver<StarsMsg>, tx: Sender<StarsMsg>) {
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
pub(super) fn batch_step(b: &mut batcher::Batcher, msg: Option<StarsMsg>, out: &mut Vec<StarsMsg>) {
    let mut batches = Vec::new();
    match msg {
        Some(Msg::Data(stars)) => {
            for s in stars {
                b.push(s, &mut batches);
            }
        }
        Some(Msg::Control(Control::Failed { part, error })) => {
            b.purge_part(part);
            out.push(Msg::Control(Control::Failed { part, error }));
        }
        Some(other) => out.push(other),
        None => b.flush(&mut batches),
    }
    out.extend(batches.into_iter().map(Msg::Data));
}

fn join_reasons(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// What the inference stage did.
pub(super) struct InferTotals {
    pub(super) busy: Duration,
    pub(super) inferred: u64,
    pub(super) drawn: u64,
    pub(super) effective: f64,
    pub(super) efficiency: EfficiencyHistogram,
}

/// Per-star sample efficiencies (ESS / samples drawn, in [0, 1]) counted in bins of 0.001,
/// so that the run can report their median in constant memory.
#[derive(Clone, Debug)]
pub(super) struct EfficiencyHistogram(Vec<u64>);

impl Default for EfficiencyHistogram {
    fn default() -> Self {
        EfficiencyHistogram(vec![0; Self::BINS])
    }
}

impl EfficiencyHistogram {
    const BINS: usize = 1000;

    /// Count one star (non-finite values, stars without samples, are skipped).
    pub(super) fn add(&mut self, eff: f64) {
        if eff.is_finite() {
            let k = (eff.clamp(0.0, 1.0) * Self::BINS as f64) as usize;
            self.0[k.min(Self::BINS - 1)] += 1;
        }
    }

    /// The median, to the bin width (the middle of its bin); None without any star.
    pub(super) fn median(&self) -> Option<f64> {
        let n: u64 = self.0.iter().sum();
        let mut seen = 0;
        let k = self.0.iter().position(|&c| {
            seen += c;
            n > 0 && 2 * seen >= n
        })?;
        Some((k as f64 + 0.5) / Self::BINS as f64)
    }
}

/// Inference stage: returns its totals or an internal error.
pub(super) fn infer_stage(
    engine: &dyn Engine,
    settings: &InferSettings,
    rx: Receiver<StarsMsg>,
    tx: Sender<RowsMsg>,
) -> Result<InferTotals> {
    let mut busy = Duration::ZERO;
    let mut n_inferred = 0u64;
    let mut n_drawn = 0u64;
    let mut n_effective = 0f64;
    let mut efficiency = EfficiencyHistogram::default();
    for msg in rx {
        let out = match msg {
            Msg::Data(mut stars) => {
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
                for r in &results {
                    efficiency.add(r.sample_efficiency as f64);
                }
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
                                kept: s.kept,
                            },
                        )
                    })
                    .collect();
                busy += t.elapsed();
                Msg::Data(rows)
            }
            Msg::Control(c) => Msg::Control(c),
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
        efficiency,
    })
}

/// What the writer stage did.
pub(super) struct WriteOut {
    pub(super) busy: Duration,
    pub(super) written: usize,
    pub(super) failed: usize,
    pub(super) rows: u64,
    pub(super) stars: u64,
}

/// Writer stage.
pub(super) fn write_stage(
    rt: &tokio::runtime::Handle,
    target: &OutputTarget,
    settings: &SinkSettings,
    shared: &Shared,
    rx: Receiver<RowsMsg>,
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
            Msg::Control(Control::Start {
                part,
                name,
                meta,
                kept,
            }) => match PartSink::open(target, &name, settings, (&meta, &kept)) {
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
            Msg::Data(rows) => {
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
            Msg::Control(Control::End { part, n_out }) => {
                if let Some(p) = open.get_mut(&part) {
                    p.set_expected(n_out);
                    touched.push(part);
                }
            }
            Msg::Control(Control::Failed { part, error }) => {
                fail(&mut open, &mut dead, &mut out, part, error)
            }
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

#[cfg(test)]
mod tests {
    use super::EfficiencyHistogram;

    /// The histogram's median agrees with the exact median to the bin width, ignores
    /// non-finite values, and is None when empty.
    #[test]
    fn efficiency_median_to_the_bin_width() {
        let mut h = EfficiencyHistogram::default();
        assert_eq!(h.median(), None);
        let mut r = crate::util::rng::Rng::new(8);
        let mut v: Vec<f64> = (0..10_001).map(|_| r.uniform().powi(3)).collect();
        for &x in &v {
            h.add(x);
        }
        h.add(f64::NAN);
        v.sort_by(f64::total_cmp);
        let exact = v[v.len() / 2];
        let m = h.median().unwrap();
        assert!((m - exact).abs() <= 0.001, "{m} vs {exact}");
        let mut ends = EfficiencyHistogram::default();
        ends.add(1.0);
        ends.add(1.0);
        ends.add(0.0);
        assert_eq!(ends.median(), Some(0.9995));
    }
}
