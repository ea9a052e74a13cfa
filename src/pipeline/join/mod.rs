//! `[[input.join]]` (steps 1-2 of the data path): tables left-joined to the primary table
//! at ingest, so that the Mapper sees one wide record batch per read batch, as if the
//! catalogue had been joined beforehand.
//!
//! - Planning ([`JoinPlan::prepare`]): each table is listed, text formats are converted once
//!   into Parquet spills (`tables.rs`), the columns to read and their names after `rename`
//!   are fixed, and a name clash or a missing key is an error before any work starts.
//! - Per row group of the primary ([`JoinPlan::load_part`]): its keys are the build side of
//!   a streaming polars inner join with each table's lazy scan, so only the rows it
//!   references are kept; keys that match several rows are ambiguous and dropped. Memory is
//!   bounded by a row group, never by the joined tables. The chain of joins runs on key
//!   columns only, giving for each table a row number (or null) per primary row.
//! - Per batch ([`PartJoin::widen`]): the joined columns are gathered (arrow `take`) by those
//!   row numbers; ambiguous stars get a reason naming the table.

mod bridge;
mod spill;

use super::config::{InputConfig, JoinConfig, S3Config};
use super::location;
use super::tables;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use polars::prelude::{
    col, lit, DataFrame, Engine, IntoLazy, JoinArgs, JoinBuildSide, JoinType, LazyFrame,
    MaintainOrderJoin, PlRefPath, ScanArgsParquet, Series,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the key column inside the joins' frames (cannot clash: sedflow's own prefix).
const KEY: &str = "__sedflow_key";
/// Name of the row-number column inside the joins' frames.
const ROW: &str = "__sedflow_row";

/// One joined table, planned.
#[derive(Debug)]
struct JoinTable {
    /// Name in flags and messages.
    name: String,
    left_on: String,
    right_on: String,
    /// Local Parquet files holding the table (the files themselves, or spills).
    files: Vec<PathBuf>,
    /// (column in the file, name after rename), key excluded.
    columns: Vec<(String, String)>,
    /// Arrow fields of the joined columns (names after rename).
    fields: Vec<Field>,
}

/// The joins of a run, planned.
#[derive(Debug)]
pub(crate) struct JoinPlan {
    tables: Vec<JoinTable>,
    /// Left keys that are columns of the primary table.
    primary_keys: Vec<String>,
    /// The listed files of every table (uri, size): the tables' identity in the resume
    /// fingerprint.
    identity: Vec<(String, u64)>,
    /// Spills live as long as the plan.
    _spill: tempfile::TempDir,
}

/// The table name of a join entry: its `name`, else the last path component without
/// extension or glob.
fn table_name(j: &JoinConfig) -> String {
    if let Some(n) = &j.name {
        return n.clone();
    }
    let p = j.path.trim_end_matches('/');
    let last = p.rsplit('/').find(|c| !c.contains(['*', '?', '[']));
    let last = last.unwrap_or(p);
    tables::TABLE_EXTENSIONS
        .iter()
        .find_map(|e| last.strip_suffix(e))
        .unwrap_or(last)
        .to_string()
}

fn is_int(dt: &DataType) -> bool {
    dt.is_integer()
}

fn is_str(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

impl JoinPlan {
    /// Plan the joins of `cfg` against the primary table's `primary` schema (`None`: no
    /// joins). Lists and converts the tables; every configuration error names the table.
    pub(crate) fn prepare(
        rt: &tokio::runtime::Runtime,
        cfg: &InputConfig,
        s3: &S3Config,
        primary: &Schema,
    ) -> Result<Option<JoinPlan>> {
        if cfg.join.is_empty() {
            return Ok(None);
        }
        let spill = tempfile::Builder::new()
            .prefix("sedflow-join-")
            .tempdir()
            .context("creating a directory for the joined tables' spills")?;
        // name -> which table it comes from ("the primary table" first)
        let mut known: Vec<(String, DataType, String)> = primary
            .fields()
            .iter()
            .map(|f| {
                let t = "the primary table".to_string();
                (f.name().clone(), f.data_type().clone(), t)
            })
            .collect();
        let mut out = JoinPlan {
            tables: Vec::new(),
            primary_keys: Vec::new(),
            identity: Vec::new(),
            _spill: spill,
        };
        for (k, j) in cfg.join.iter().enumerate() {
            let name = table_name(j);
            let what = format!("input.join '{name}' ({})", j.path);
            let objs = rt
                .block_on(location::list_inputs(&j.path, s3))
                .with_context(|| what.clone())?;
            let mut local = Vec::with_capacity(objs.len());
            for (f, o) in objs.iter().enumerate() {
                let p = rt.block_on(tables::local_copy(o, out._spill.path(), 1000 * k + f))?;
                let format = tables::TableFormat::of(&o.uri)
                    .ok_or_else(|| anyhow!("{}: not a table", o.uri))?;
                out.identity.push((o.uri.clone(), o.size));
                local.push((p, format, o.uri.clone()));
            }
            let schema = tables::schema_of(&local[0].0, local[0].1, &local[0].2)?;
            let table = plan_table(j, name, &schema, &known, &what)?;
            let mut read: Vec<String> = vec![j.right_on.clone()];
            read.extend(table.columns.iter().map(|c| c.0.clone()));
            let mut files = Vec::with_capacity(local.len());
            for (f, (p, format, uri)) in local.iter().enumerate() {
                let dest = out._spill.path().join(format!("join-{k}-{f}.parquet"));
                spill::write(p, *format, uri, &read, &dest)?;
                files.push((dest, uri.clone()));
            }
            for (src, dst) in &table.columns {
                let f = schema.field_with_name(src).expect("checked");
                known.push((dst.clone(), f.data_type().clone(), table.name.clone()));
            }
            if primary.field_with_name(&j.left_on).is_ok()
                && !out.primary_keys.contains(&j.left_on)
                && !out
                    .tables
                    .iter()
                    .any(|t| t.columns.iter().any(|c| c.1 == j.left_on))
            {
                out.primary_keys.push(j.left_on.clone());
            }
            out.tables.push(JoinTable {
                files: files.into_iter().map(|f| f.0).collect(),
                ..table
            });
        }
        Ok(Some(out))
    }

    /// The joined columns (names after rename), to add to the primary table's schema.
    pub(crate) fn fields(&self) -> Vec<Field> {
        self.tables
            .iter()
            .flat_map(|t| t.fields.iter().cloned())
            .collect()
    }

    /// The primary table's schema with the joined columns appended: the wide schema the
    /// `Mapper` and the kept columns see.
    pub(crate) fn wide_schema(primary: &Schema, joined: &[Field]) -> Schema {
        let fields = primary.fields().iter().map(|f| f.as_ref().clone());
        Schema::new(fields.chain(joined.iter().cloned()).collect::<Vec<Field>>())
    }

    /// The primary columns the joins need (their left keys).
    pub(crate) fn primary_keys(&self) -> &[String] {
        &self.primary_keys
    }

    /// The listed files of every joined table, as JSON, for the resume fingerprint.
    pub(crate) fn identity(&self) -> serde_json::Value {
        serde_json::json!(self
            .identity
            .iter()
            .map(|(u, s)| serde_json::json!([u, s]))
            .collect::<Vec<_>>())
    }

    /// The primary table's `schema` must have the left keys and no column a join adds.
    pub(crate) fn check_primary(&self, schema: &Schema, uri: &str) -> Result<()> {
        for k in &self.primary_keys {
            if schema.field_with_name(k).is_err() {
                bail!("{uri}: no column {k} (a key of input.join)");
            }
        }
        for f in self.fields() {
            if schema.field_with_name(f.name()).is_ok() {
                bail!(
                    "{uri}: column {} is also added by input.join; rename it there",
                    f.name()
                );
            }
        }
        Ok(())
    }

    /// What the tables hold for one part, given its primary key columns (`keys`, in the
    /// part's row order).
    pub(crate) fn load_part(&self, keys: &RecordBatch) -> Result<PartJoin> {
        let names: Vec<&str> = self.primary_keys.iter().map(|s| s.as_str()).collect();
        let mut known = bridge::to_frame(keys, &names)?;
        let rows = keys.num_rows();
        let mut tables = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let (unique, ambiguous) = t.matches(&known)?;
            let later: Vec<&str> = self
                .tables
                .iter()
                .map(|u| u.left_on.as_str())
                .filter(|l| t.columns.iter().any(|c| c.1 == *l))
                .collect();
            let mut right = vec![col(KEY), col(ROW)];
            right.extend(later.iter().map(|c| col(*c)));
            let amb = lit(ambiguous).implode();
            let joined = known
                .lazy()
                .join(
                    unique
                        .clone()
                        .lazy()
                        .with_row_index(ROW, None)
                        .select(right),
                    [col(t.left_on.as_str())],
                    [col(KEY)],
                    JoinArgs {
                        maintain_order: MaintainOrderJoin::Left,
                        ..JoinArgs::new(JoinType::Left)
                    },
                )
                .with_column(
                    col(t.left_on.as_str())
                        .is_in(amb, false)
                        .alias("__sedflow_amb"),
                )
                .collect()
                .map_err(|e| anyhow!("joining {}: {e}", t.name))?;
            if joined.height() != rows {
                bail!(
                    "internal error: the join with {} changed the row count",
                    t.name
                );
            }
            let row = bridge::to_arrow(joined.column(ROW)?.as_materialized_series())?;
            let row = arrow::compute::cast(&row, &DataType::UInt32)?;
            let amb = bridge::to_arrow(joined.column("__sedflow_amb")?.as_materialized_series())?;
            let amb = amb
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| anyhow!("internal error: is_in gave no booleans"))?
                .clone();
            known = joined.drop_many([ROW, "__sedflow_amb"]);
            tables.push(PartTable {
                name: t.name.clone(),
                left_on: t.left_on.clone(),
                matched: t.to_batch(&unique)?,
                rows: row
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("cast to u32")
                    .clone(),
                ambiguous: amb,
            });
        }
        Ok(PartJoin { tables })
    }
}

/// Check one join entry against the table's schema and the columns joined so far.
fn plan_table(
    j: &JoinConfig,
    name: String,
    schema: &Schema,
    known: &[(String, DataType, String)],
    what: &str,
) -> Result<JoinTable> {
    let has = |c: &str| schema.field_with_name(c).ok();
    let Some(right) = has(&j.right_on) else {
        bail!("{what}: no key column {}", j.right_on);
    };
    let Some((_, left_type, _)) = known.iter().find(|k| k.0 == j.left_on) else {
        bail!(
            "{what}: left_on {} is not a column of the tables joined so far",
            j.left_on
        );
    };
    let rt = right.data_type();
    if !(is_int(left_type) && is_int(rt) || is_str(left_type) && is_str(rt)) {
        bail!(
            "{what}: the key types differ: {} is {left_type}, {} is {rt}",
            j.left_on,
            j.right_on
        );
    }
    for old in j.rename.keys() {
        if has(old).is_none() {
            bail!("{what}: rename: no column {old}");
        }
    }
    let wanted: Vec<String> = match &j.columns {
        Some(c) => c.clone(),
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let mut columns = Vec::new();
    let mut fields = Vec::new();
    for c in wanted.into_iter().filter(|c| *c != j.right_on) {
        let Some(f) = has(&c) else {
            bail!("{what}: columns: no column {c}");
        };
        let out = j.rename.get(&c).cloned().unwrap_or_else(|| c.clone());
        if let Some((_, _, from)) = known.iter().find(|k| k.0 == out) {
            bail!("{what}: column {out} clashes with a column of {from}; rename one of them");
        }
        if columns.iter().any(|(_, o)| *o == out) {
            bail!("{what}: two columns are renamed to {out}");
        }
        fields.push(Field::new(out.clone(), f.data_type().clone(), true));
        columns.push((c, out));
    }
    Ok(JoinTable {
        name,
        left_on: j.left_on.clone(),
        right_on: j.right_on.clone(),
        files: Vec::new(),
        columns,
        fields,
    })
}

impl JoinTable {
    /// The table's rows whose key is among `known`'s left keys: those matched once
    /// (key column [`KEY`], then the joined columns), and the keys matched more than once.
    fn matches(&self, known: &DataFrame) -> Result<(DataFrame, Series)> {
        let left = known.column(&self.left_on)?.as_materialized_series();
        let keys = left.drop_nulls().unique()?;
        let paths: Vec<PlRefPath> = self
            .files
            .iter()
            .map(|p| PlRefPath::try_from_path(p))
            .collect::<polars::prelude::PolarsResult<_>>()?;
        let mut exprs = vec![col(self.right_on.as_str())
            .strict_cast(left.dtype().clone())
            .alias(KEY)];
        exprs.extend(
            self.columns
                .iter()
                .map(|(src, out)| col(src.as_str()).alias(out.as_str())),
        );
        // polars 0.53 cannot parse the statistics arrow-rs 60 writes for string columns
        // ("Invalid thrift"); the filter is applied to the decoded rows instead
        let args = ScanArgsParquet {
            use_statistics: false,
            ..Default::default()
        };
        let scan = LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map_err(|e| anyhow!("{}: {e}", self.name))?;
        // the part's keys are the join's build side; the table streams past them (a filter
        // with an `is_in` literal of a million keys rebuilt its hash set per morsel: 18 s)
        let keys = DataFrame::new(keys.len(), vec![keys.with_name(KEY.into()).into()])?;
        let m = scan
            .select(exprs)
            .join(
                keys.lazy(),
                [col(KEY)],
                [col(KEY)],
                JoinArgs {
                    build_side: Some(JoinBuildSide::ForceRight),
                    ..JoinArgs::new(JoinType::Inner)
                },
            )
            .collect_with_engine(Engine::Streaming)
            .map_err(|e| anyhow!("reading {}: {e}", self.name))?;
        const N: &str = "__sedflow_n";
        let counts = m
            .clone()
            .lazy()
            .group_by([col(KEY)])
            .agg([col(KEY).count().alias(N)])
            .collect()?;
        let once = counts
            .clone()
            .lazy()
            .filter(col(N).eq(lit(1u32)))
            .select([col(KEY)]);
        let ambiguous = counts
            .lazy()
            .filter(col(N).gt(lit(1u32)))
            .collect()?
            .column(KEY)?
            .as_materialized_series()
            .clone();
        let unique = m
            .lazy()
            .join(once, [col(KEY)], [col(KEY)], JoinArgs::new(JoinType::Inner))
            .collect()?;
        Ok((unique, ambiguous))
    }

    /// The joined columns of `unique` as an arrow-rs batch (types as planned).
    fn to_batch(&self, unique: &DataFrame) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let a = bridge::to_arrow(unique.column(f.name())?.as_materialized_series())?;
            let a = if a.data_type() == f.data_type() {
                a
            } else {
                arrow::compute::cast(&a, f.data_type())
                    .with_context(|| format!("{}: column {}", self.name, f.name()))?
            };
            cols.push(a);
        }
        let schema = Arc::new(Schema::new(self.fields.clone()));
        Ok(RecordBatch::try_new_with_options(
            schema,
            cols,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(unique.height())),
        )?)
    }
}

/// What one joined table holds for one part.
struct PartTable {
    name: String,
    left_on: String,
    /// The matched rows (each key once), joined columns only.
    matched: RecordBatch,
    /// Per primary row of the part: its row in `matched`, or null.
    rows: UInt32Array,
    /// Per primary row: its key matched several rows.
    ambiguous: BooleanArray,
}

/// What the joined tables hold for one part.
pub(crate) struct PartJoin {
    tables: Vec<PartTable>,
}

impl PartJoin {
    /// `batch` (rows `offset..` of the part) with the joined columns added, and per row the
    /// reason of an ambiguous match (empty when none).
    pub(crate) fn widen(
        &self,
        batch: &RecordBatch,
        offset: usize,
    ) -> Result<(RecordBatch, Vec<String>)> {
        let n = batch.num_rows();
        let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        let mut reasons = vec![String::new(); n];
        for t in &self.tables {
            if offset + n > t.rows.len() {
                bail!("internal error: batch beyond the part's keys");
            }
            let idx = t.rows.slice(offset, n);
            for (f, c) in t.matched.schema().fields().iter().zip(t.matched.columns()) {
                cols.push(arrow::compute::take(c.as_ref(), &idx, None)?);
                fields.push(f.clone());
            }
            for (i, r) in reasons.iter_mut().enumerate() {
                if t.ambiguous.is_valid(offset + i) && t.ambiguous.value(offset + i) {
                    if !r.is_empty() {
                        r.push_str("; ");
                    }
                    r.push_str(&format!(
                        "ambiguous match in {}: its {} matches several rows; none of the table's values used",
                        t.name, t.left_on
                    ));
                }
            }
        }
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        Ok((b, reasons))
    }
}
