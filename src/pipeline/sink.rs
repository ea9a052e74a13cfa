//! Writing (step 5 of the data path): the output schemas (declared once, documented in
//! `schemas/output.md`), one Parquet writer per output part that restores input row order,
//! and the atomic commit: an output file appears only when complete (object_store's
//! `BufWriter`: a staged local file renamed on completion, or a completed S3 multipart
//! upload), samples table first, posterior table last, so the posterior file marks the part
//! done for resumption.
//!
//! The samples tables live beside the output, in `<output>.samples/` (see
//! [`samples_location`]): the output directory holds the posterior tables only, so that
//! readers globbing it (`pyarrow.dataset`, polars, DuckDB `out/**/*.parquet`) get one table.

use super::config::Compression;
use super::describe::{self, StringLengths};
use super::keep::{self, KeptRow};
use super::location::OutputTarget;
use crate::physics::PARAM_NAMES;
use crate::posterior::derived::{DERIVED_SUFFIXES, EXTINCTION_NAMES, PHYSICAL_NAMES};
use crate::posterior::{StarResult, QUANTILE_SUFFIXES};
use anyhow::{Context, Result};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::buffered::BufWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Rows handed to the Parquet encoder at a time.
pub const WRITE_CHUNK_ROWS: usize = 4096;

/// Suffix of the samples location: the samples tables of output `out` are in
/// `out.samples/`, beside it, never inside.
pub const SAMPLES_SUFFIX: &str = ".samples";

/// Where the samples tables of the output `output` (a directory or `s3://bucket/prefix`,
/// as given to `--output`) are: `<output>.samples`, the output's trailing `/` dropped. A
/// local `.` or `..` is made absolute first; a bucket root has no sibling (an error).
pub fn samples_location(output: &str) -> anyhow::Result<String> {
    let trimmed = output.trim_end_matches('/');
    if let Some(rest) = trimmed.strip_prefix("s3://") {
        if !rest.contains('/') {
            anyhow::bail!(
                "--output {output}: the samples tables (--write-samples) go beside the output, in <output>{SAMPLES_SUFFIX}; write to a prefix (s3://bucket/name), not a bucket root"
            );
        }
        return Ok(format!("{trimmed}{SAMPLES_SUFFIX}"));
    }
    let p = std::path::Path::new(if trimmed.is_empty() { "." } else { trimmed });
    let named = p.file_name().is_some_and(|n| n != "." && n != "..");
    let p = if named {
        p.to_path_buf()
    } else {
        std::fs::canonicalize(p).with_context(|| format!("--output {output}"))?
    };
    if p.parent().is_none() {
        anyhow::bail!(
            "--output {output}: the samples tables need an output directory that has a parent"
        );
    }
    Ok(format!("{}{SAMPLES_SUFFIX}", p.display()))
}

/// One output row: the engine's result plus what only the pipeline knows.
#[derive(Clone, Debug)]
pub struct OutRow {
    /// Result (flags already merged with the ingest flags).
    pub res: StarResult,
    /// The input source_id was null.
    pub null_id: bool,
    /// Input rows this output row stands for.
    pub n_rows: u32,
    /// Its values of the kept input columns.
    pub kept: Option<KeptRow>,
}

/// What decides the posterior table's columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PosteriorLayout {
    /// `{p}_rhat` and `{p}_ess` for every parameter (reference MCMC).
    pub chain_diagnostics: bool,
    /// Bands with predicted magnitudes, `pred_{band}_p16/p50/p84` (`[output] predict_bands`).
    pub predict_bands: Vec<String>,
}

impl PosteriorLayout {
    /// Names of the columns, in order.
    pub fn columns(&self) -> Vec<String> {
        let mut v = vec!["source_id".to_string()];
        for p in PARAM_NAMES {
            for q in QUANTILE_SUFFIXES {
                v.push(format!("{p}_{q}"));
            }
            v.push(format!("{p}_mean"));
        }
        for d in PHYSICAL_NAMES.iter().chain(&EXTINCTION_NAMES) {
            v.extend(DERIVED_SUFFIXES.iter().map(|q| format!("{d}_{q}")));
        }
        for b in &self.predict_bands {
            v.extend(DERIVED_SUFFIXES.iter().map(|q| format!("pred_{b}_{q}")));
        }
        v.extend(SAMPLING_COLUMNS.iter().map(|c| c.to_string()));
        if self.chain_diagnostics {
            for p in PARAM_NAMES {
                v.push(format!("{p}_rhat"));
                v.push(format!("{p}_ess"));
            }
        }
        v
    }

    /// The table's schema with the kept input columns (`kept`) at the end.
    pub fn schema_with(&self, kept: &Fields) -> SchemaRef {
        let mut fields: Vec<_> = self.schema().fields().iter().cloned().collect();
        fields.extend(kept.iter().cloned());
        Arc::new(Schema::new(fields))
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .into_iter()
            .map(|name| {
                let dt = match name.as_str() {
                    "source_id" | "flags" => DataType::Int64,
                    "n_bands" | "n_modes" => DataType::Int16,
                    "has_parallax" => DataType::Boolean,
                    "n_samples" => DataType::Int32,
                    "flag_reason" => DataType::Utf8,
                    _ => DataType::Float32,
                };
                let nullable = !matches!(
                    name.as_str(),
                    "flags" | "flag_reason" | "n_bands" | "has_parallax" | "n_samples" | "n_modes"
                );
                Field::new(name, dt, nullable)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// The per-star sampling columns after the summaries.
const SAMPLING_COLUMNS: [&str; 12] = [
    "n_bands",
    "has_parallax",
    "n_samples",
    "n_eff",
    "sample_efficiency",
    "log_evidence",
    "log_evidence_se",
    "pareto_k",
    "n_modes",
    "best_fit_chi2",
    "flags",
    "flag_reason",
];

fn f32_opt(x: f32) -> Option<f32> {
    if x.is_nan() {
        None
    } else {
        Some(x)
    }
}

/// Posterior rows as a record batch of `schema` (`layout`'s, then the kept columns; NaN is
/// written as null).
pub fn posterior_batch(
    rows: &[OutRow],
    layout: &PosteriorLayout,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = rows.len();
    let float_col = |f: &dyn Fn(&StarResult) -> f32| -> ArrayRef {
        let mut b = Float32Builder::with_capacity(n);
        for r in rows {
            b.append_option(f32_opt(f(&r.res)));
        }
        Arc::new(b.finish())
    };
    let mut cols: Vec<ArrayRef> = Vec::new();
    let mut ids = Int64Builder::with_capacity(n);
    for r in rows {
        ids.append_option((!r.null_id).then_some(r.res.source_id));
    }
    cols.push(Arc::new(ids.finish()));
    for p in 0..PARAM_NAMES.len() {
        for q in 0..QUANTILE_SUFFIXES.len() {
            cols.push(float_col(&|r| r.params[p].q[q]));
        }
        cols.push(float_col(&|r| r.params[p].mean));
    }
    for d in 0..PHYSICAL_NAMES.len() {
        for q in 0..DERIVED_SUFFIXES.len() {
            cols.push(float_col(&|r| {
                r.derived.as_ref().map_or(f32::NAN, |x| x.physical[d][q])
            }));
        }
    }
    for x in 0..EXTINCTION_NAMES.len() {
        for q in 0..DERIVED_SUFFIXES.len() {
            cols.push(float_col(&|r| {
                r.derived.as_ref().map_or(f32::NAN, |d| d.extinction[x][q])
            }));
        }
    }
    for b in 0..layout.predict_bands.len() {
        for q in 0..DERIVED_SUFFIXES.len() {
            cols.push(float_col(&|r| {
                r.derived
                    .as_ref()
                    .and_then(|x| x.predicted.get(b))
                    .map_or(f32::NAN, |m| m[q])
            }));
        }
    }
    cols.extend(sampling_columns(rows, &float_col));
    if layout.chain_diagnostics {
        for p in 0..PARAM_NAMES.len() {
            cols.push(float_col(&|r| r.chain.map_or(f32::NAN, |c| c.rhat[p])));
            cols.push(float_col(&|r| r.chain.map_or(f32::NAN, |c| c.ess[p])));
        }
    }
    let kept: Fields = schema.fields().iter().skip(cols.len()).cloned().collect();
    cols.extend(keep::columns(rows.iter().map(|r| r.kept.as_ref()), &kept)?);
    RecordBatch::try_new(schema.clone(), cols).context("building the posterior batch (bug)")
}

/// Builds a nullable float column from a per-star value.
type FloatColumn<'a> = dyn Fn(&dyn Fn(&StarResult) -> f32) -> ArrayRef + 'a;

/// The arrays of [`SAMPLING_COLUMNS`].
fn sampling_columns(rows: &[OutRow], float_col: &FloatColumn) -> Vec<ArrayRef> {
    let n = rows.len();
    let mut nb = Int16Builder::with_capacity(n);
    let mut hp = BooleanBuilder::with_capacity(n);
    let mut ns = Int32Builder::with_capacity(n);
    let mut nm = Int16Builder::with_capacity(n);
    let mut fl = Int64Builder::with_capacity(n);
    let mut fr = StringBuilder::with_capacity(n, 16 * n);
    for r in rows {
        nb.append_value(r.res.n_bands as i16);
        hp.append_value(r.res.has_parallax);
        ns.append_value(r.res.n_samples as i32);
        nm.append_value(r.res.n_modes as i16);
        fl.append_value(r.res.flags as i64);
        fr.append_value(&r.res.flag_reason);
    }
    vec![
        Arc::new(nb.finish()),
        Arc::new(hp.finish()),
        Arc::new(ns.finish()),
        float_col(&|r| r.n_eff),
        float_col(&|r| r.sample_efficiency),
        float_col(&|r| r.log_evidence),
        float_col(&|r| r.log_evidence_se),
        float_col(&|r| r.pareto_k),
        Arc::new(nm.finish()),
        float_col(&|r| r.best_fit_chi2),
        Arc::new(fl.finish()),
        Arc::new(fr.finish()),
    ]
}

/// The samples table's schema: source_id and one list column per parameter.
pub fn samples_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields = vec![Field::new("source_id", DataType::Int64, true)];
        for p in PARAM_NAMES {
            fields.push(Field::new(
                p,
                DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
                true,
            ));
        }
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// Samples rows as a record batch (null lists for stars without samples).
pub fn samples_batch(rows: &[OutRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let mut ids = Int64Builder::with_capacity(n);
    for r in rows {
        ids.append_option((!r.null_id).then_some(r.res.source_id));
    }
    cols.push(Arc::new(ids.finish()));
    for p in 0..PARAM_NAMES.len() {
        let mut b = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
            "item",
            DataType::Float32,
            false,
        )));
        for r in rows {
            match &r.res.samples {
                Some(s) => {
                    for d in s {
                        b.values().append_value(d[p]);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        cols.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(samples_schema(), cols).context("building the samples batch (bug)")
}

/// Metadata and encoding shared by all output files of a run.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// Codec.
    pub compression: Compression,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Key-value metadata common to every file (model id, config, fingerprint...).
    pub metadata: Vec<(String, String)>,
    /// Where to write the samples tables (None: not written).
    pub(crate) samples: Option<OutputTarget>,
    /// The posterior table's columns.
    pub layout: PosteriorLayout,
}

impl SinkSettings {
    /// The posterior table's `table_meta_yaml` (units and descriptions, for astropy); the
    /// table's meta holds the version, the model and the flag names.
    fn table_meta_yaml(&self, schema: &Schema) -> String {
        let meta = self
            .metadata
            .iter()
            .filter(|(k, _)| {
                ["sedflow.version", "sedflow.model_id", "sedflow.flags"].contains(&k.as_str())
            })
            .cloned()
            .collect();
        let own = self.layout.columns();
        let doc = |c: &str| match own.iter().any(|o| o == c) {
            true => describe::posterior_column_doc(c).unwrap_or((None, String::new())),
            false => describe::kept_column_doc(c),
        };
        describe::table_meta_yaml(schema, doc, &meta)
    }

    fn props(&self, extra: &[(String, String)]) -> WriterProperties {
        let codec = match self.compression {
            Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::Lz4 => parquet::basic::Compression::LZ4_RAW,
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
        };
        let kv = self
            .metadata
            .iter()
            .chain(extra)
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        // Dictionary encoding only where values repeat (flags, reasons, counts): for the
        // float summaries it would only cost memory and time before falling back to plain.
        let mut b = WriterProperties::builder().set_dictionary_enabled(false);
        for c in ["flags", "flag_reason", "n_bands", "n_samples"] {
            b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
        }
        b.set_compression(codec)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_key_value_metadata(Some(kv))
            .build()
    }
}

type Writer = AsyncArrowWriter<BufWriter>;

/// The `sedflow.table` entry naming a file's table.
fn table_kind(kind: &str) -> Vec<(String, String)> {
    vec![("sedflow.table".to_string(), kind.to_string())]
}

/// One output part being written: reorders results into input order and streams them out.
pub(crate) struct PartSink {
    /// Output file name.
    pub name: String,
    /// Output URI (for messages).
    pub uri: String,
    main: Writer,
    samples: Option<Writer>,
    layout: PosteriorLayout,
    schema: SchemaRef,
    string_lengths: StringLengths,
    next: u32,
    pending: BTreeMap<u32, OutRow>,
    ready: Vec<OutRow>,
    expected: Option<u32>,
    /// Input rows written so far.
    pub rows_done: u64,
}

impl PartSink {
    /// Start writing part `name`, whose kept input columns are `kept` (nothing is visible in
    /// the output until [`commit`]).
    ///
    /// [`commit`]: PartSink::commit
    pub fn open(
        target: &OutputTarget,
        name: &str,
        settings: &SinkSettings,
        (extra, kept): (&[(String, String)], &Fields),
    ) -> Result<PartSink> {
        let mk = |target: &OutputTarget, schema: SchemaRef, kv: Vec<(String, String)>| {
            let buf = BufWriter::with_capacity(
                target.store.clone(),
                target.path(name),
                target.part_bytes,
            );
            let mut kv = [extra, &kv].concat();
            kv.sort();
            // No embedded arrow schema: with one, pyarrow (and so astropy) takes the table's
            // metadata from it, which cannot hold what is known only at the end (the string
            // lengths); without it, from the file's key-value metadata. Every column type
            // written here round-trips through Parquet's own logical types.
            let options = ArrowWriterOptions::new()
                .with_properties(settings.props(&kv))
                .with_skip_arrow_metadata(true);
            AsyncArrowWriter::try_new_with_options(buf, schema, options)
                .with_context(|| format!("{}: creating the Parquet writer", target.uri(name)))
        };
        let samples = match &settings.samples {
            Some(t) => Some(mk(t, samples_schema(), table_kind("samples"))?),
            None => None,
        };
        let schema = settings.layout.schema_with(kept);
        let mut kv = table_kind("posterior");
        kv.push((
            describe::TABLE_META_YAML_KEY.to_string(),
            settings.table_meta_yaml(&schema),
        ));
        Ok(PartSink {
            name: name.to_string(),
            uri: target.uri(name),
            main: mk(target, schema.clone(), kv)?,
            samples,
            layout: settings.layout.clone(),
            schema,
            string_lengths: StringLengths::default(),
            next: 0,
            pending: BTreeMap::new(),
            ready: Vec::new(),
            expected: None,
            rows_done: 0,
        })
    }

    /// Add the row for output position `idx`.
    pub fn insert(&mut self, idx: u32, row: OutRow) {
        debug_assert!(idx >= self.next, "row {idx} of {} twice", self.name);
        self.pending.insert(idx, row);
        while let Some(r) = self.pending.remove(&self.next) {
            self.ready.push(r);
            self.next += 1;
        }
    }

    /// The reader has finished the part: it has `n` output rows.
    pub fn set_expected(&mut self, n: u32) {
        self.expected = Some(n);
    }

    /// All rows have arrived.
    pub fn is_complete(&self) -> bool {
        self.expected == Some(self.next)
    }

    /// Rows waiting for an earlier row (reorder buffer).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Encode the rows that are in order; all of them when `force`, else whole chunks.
    pub async fn write_ready(&mut self, force: bool) -> Result<()> {
        while self.ready.len() >= WRITE_CHUNK_ROWS || (force && !self.ready.is_empty()) {
            let k = self.ready.len().min(WRITE_CHUNK_ROWS);
            let rows: Vec<OutRow> = self.ready.drain(..k).collect();
            let b = posterior_batch(&rows, &self.layout, &self.schema)?;
            self.string_lengths.add(&b);
            self.main
                .write(&b)
                .await
                .with_context(|| format!("writing {}", self.uri))?;
            if let Some(s) = &mut self.samples {
                let b = samples_batch(&rows)?;
                s.write(&b)
                    .await
                    .with_context(|| format!("writing samples for {}", self.uri))?;
            }
            self.rows_done += rows.iter().map(|r| r.n_rows as u64).sum::<u64>();
        }
        Ok(())
    }

    /// Finish and publish: the samples table first, then the posterior table. On failure
    /// nothing new is visible but, maybe, the samples table: the posterior table, which
    /// marks the part done, is the last object to appear (a failed completion aborts its own
    /// multipart upload; a table not yet completed is aborted here).
    pub async fn commit(mut self) -> Result<()> {
        if let Err(e) = self.write_ready(true).await {
            self.abort().await;
            return Err(e);
        }
        for (k, v) in self.string_lengths.metadata() {
            self.main.append_key_value_metadata(KeyValue::new(k, v));
        }
        if let Some(mut s) = self.samples.take() {
            if let Err(e) = s.finish().await {
                let _ = self.main.into_inner().abort().await;
                return Err(
                    anyhow::Error::new(e).context(format!("completing samples for {}", self.uri))
                );
            }
        }
        self.main
            .finish()
            .await
            .with_context(|| format!("completing {}", self.uri))?;
        Ok(())
    }

    /// Give up on the part: abort the uploads (nothing appears in the output).
    pub async fn abort(self) {
        if let Some(s) = self.samples {
            let _ = s.into_inner().abort().await;
        }
        let _ = self.main.into_inner().abort().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posterior::flags;

    #[test]
    fn samples_go_beside_the_output() {
        assert_eq!(samples_location("runs/dr3/").unwrap(), "runs/dr3.samples");
        assert_eq!(
            samples_location("s3://b/x/y").unwrap(),
            "s3://b/x/y.samples"
        );
        assert_eq!(samples_location("s3://b/x/").unwrap(), "s3://b/x.samples");
        assert!(samples_location("s3://b").is_err());
        assert!(samples_location("s3://b/").is_err());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            samples_location(".").unwrap(),
            format!("{}.samples", cwd.display())
        );
    }

    #[test]
    fn schema_matches_batches_and_nan_is_null() {
        let mut r = StarResult::unprocessed(5, flags::NO_USABLE_BANDS, "none".into());
        r.samples = Some(vec![[1.0; 6], [2.0; 6]]);
        let rows = vec![
            OutRow {
                res: r.clone(),
                null_id: false,
                n_rows: 1,
                kept: None,
            },
            OutRow {
                res: StarResult::unprocessed(0, flags::NULL_SOURCE_ID, "null".into()),
                null_id: true,
                n_rows: 1,
                kept: None,
            },
        ];
        let plain = PosteriorLayout::default();
        let b = posterior_batch(&rows, &plain, &plain.schema()).unwrap();
        // parameters, physical and extinction quantities, sampling columns
        assert_eq!(b.num_columns(), 1 + 6 * 6 + 8 * 3 + 12);
        assert_eq!(b.column(0).null_count(), 1);
        assert_eq!(b.column(1).null_count(), 2);
        // the reference MCMC's table adds R-hat and ESS per parameter, null without chains
        let chains = PosteriorLayout {
            chain_diagnostics: true,
            predict_bands: vec!["lsst_g".into()],
        };
        let c = posterior_batch(&rows, &chains, &chains.schema()).unwrap();
        assert_eq!(c.num_columns(), 1 + 6 * 6 + 8 * 3 + 3 + 12 + 12);
        assert!(c.schema().index_of("pred_lsst_g_p84").is_ok());
        assert!(c.schema().index_of("abs_g_p50").is_ok());
        assert!(c.schema().index_of("ebpminrp_p84").is_ok());
        assert_eq!(
            c.schema().field(c.num_columns() - 2).name(),
            "distance_rhat"
        );
        assert_eq!(c.column(c.num_columns() - 1).null_count(), 2);
        let s = samples_batch(&rows).unwrap();
        assert_eq!(s.column(1).null_count(), 1);
    }
}
