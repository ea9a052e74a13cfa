//! Small-table helpers for the auxiliary commands (`forward`, `simulate`, `evaluate`):
//! read named numeric columns from CSV or Parquet, write f64/f32/i64/string columns back.
//! The survey pipeline streams through `io::source`/`io::sink` instead.

use crate::util::column;
use crate::util::csv::TextTable;
use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, Float32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A column to write.
pub enum Column {
    /// Nullable f64 (NaN written as null).
    F64(String, Vec<f64>),
    /// Nullable f32 (NaN written as null).
    F32(String, Vec<f32>),
    /// i64.
    I64(String, Vec<i64>),
    /// Nullable string (None = null).
    Str(String, Vec<Option<String>>),
    /// Any Arrow array, written with its own type (e.g. columns passed through).
    Arrow(String, ArrayRef),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Column::F64(n, _)
            | Column::F32(n, _)
            | Column::I64(n, _)
            | Column::Str(n, _)
            | Column::Arrow(n, _) => n,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::F64(_, v) => v.len(),
            Column::F32(_, v) => v.len(),
            Column::I64(_, v) => v.len(),
            Column::Str(_, v) => v.len(),
            Column::Arrow(_, a) => a.len(),
        }
    }
}

/// Column names in file order, and each column's values as f64 (nulls as NaN).
pub type NumericTable = (Vec<String>, HashMap<String, Vec<f64>>);

/// Whether a path names a Parquet file (by extension).
pub fn is_parquet(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("parquet") | Some("pq")
    )
}

/// Read all columns that can be cast to f64 from a CSV or Parquet file. Nulls become NaN.
pub fn read_numeric(path: &Path) -> Result<NumericTable> {
    if is_parquet(path) {
        read_parquet_numeric(path)
    } else {
        read_csv_numeric(path)
    }
}

/// A Parquet reader builder for a local file (its footer read), with errors that name it.
pub fn parquet_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))
}

fn read_parquet_numeric(path: &Path) -> Result<NumericTable> {
    let reader = parquet_builder(path)?.build()?;
    let mut names = Vec::new();
    let mut cols: HashMap<String, Vec<f64>> = HashMap::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let Ok(c) = column::f64s(col, f.name()) else {
                continue;
            };
            let entry = cols.entry(f.name().clone()).or_insert_with(|| {
                names.push(f.name().clone());
                Vec::new()
            });
            entry.extend(column::nan_for_null(&c));
        }
    }
    Ok((names, cols))
}

fn read_csv_numeric(path: &Path) -> Result<NumericTable> {
    let t = TextTable::read(path)?;
    let mut map = HashMap::new();
    for n in t.names() {
        // text that is not a number (a name column) reads as NaN, as in Parquet's casts
        map.insert(n.clone(), t.f64s(n, true)?);
    }
    Ok((t.names().to_vec(), map))
}

/// Every column of a CSV (types inferred, `#` comment lines skipped) or Parquet file, with
/// its own type, in file order.
pub fn read_all_columns(path: &Path) -> Result<Vec<(String, ArrayRef)>> {
    let batches: Vec<RecordBatch> = if is_parquet(path) {
        parquet_builder(path)?
            .build()?
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {}", path.display()))?
    } else {
        read_csv_batches(path)?
    };
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let table = arrow::compute::concat_batches(&schema, &batches)?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .zip(table.columns().iter().cloned())
        .collect())
}

fn read_csv_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    use arrow::csv::reader::ReaderBuilder;
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let format = crate::util::csv::format();
    let (schema, _) = format
        .infer_schema(open()?, None)
        .with_context(|| format!("{}: not a readable CSV file", path.display()))?;
    ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(open()?)?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))
}

/// Write columns to CSV or Parquet (by extension), with optional Parquet key-value metadata.
pub fn write_columns(path: &Path, columns: &[Column], metadata: &[(String, String)]) -> Result<()> {
    let n = columns.first().map(|c| c.len()).unwrap_or(0);
    for c in columns {
        if c.len() != n {
            bail!("column {} has {} rows, expected {n}", c.name(), c.len());
        }
    }
    if is_parquet(path) {
        write_parquet(path, columns, metadata)
    } else {
        write_csv(path, columns)
    }
}

fn to_batch(columns: &[Column]) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in columns {
        match c {
            Column::F64(n, v) => {
                fields.push(Field::new(n, DataType::Float64, true));
                arrays.push(Arc::new(Float64Array::from_iter(
                    v.iter().map(|x| x.is_finite().then_some(*x)),
                )));
            }
            Column::F32(n, v) => {
                fields.push(Field::new(n, DataType::Float32, true));
                arrays.push(Arc::new(Float32Array::from_iter(
                    v.iter().map(|x| x.is_finite().then_some(*x)),
                )));
            }
            Column::I64(n, v) => {
                fields.push(Field::new(n, DataType::Int64, false));
                arrays.push(Arc::new(Int64Array::from(v.clone())));
            }
            Column::Str(n, v) => {
                fields.push(Field::new(n, DataType::Utf8, true));
                arrays.push(Arc::new(StringArray::from(v.clone())));
            }
            Column::Arrow(n, a) => {
                fields.push(Field::new(n, a.data_type().clone(), true));
                arrays.push(a.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

fn write_parquet(path: &Path, columns: &[Column], metadata: &[(String, String)]) -> Result<()> {
    let batch = to_batch(columns)?;
    let tmp = path.with_extension("parquet.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // row groups of 64k rows, like survey archives: readers stream them one at a time
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 << 16))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    for (k, v) in metadata {
        w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(k.clone(), v.clone()));
    }
    w.write(&batch)?;
    w.close()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn write_csv(path: &Path, columns: &[Column]) -> Result<()> {
    crate::util::csv::write(path, &to_batch(columns)?)
}

/// Read an integer column (e.g. source_id: Gaia ids exceed 2^53, so never through f64) of
/// a Parquet or CSV file; nulls as None.
pub fn read_i64(path: &Path, column: &str) -> Result<Vec<Option<i64>>> {
    if !is_parquet(path) {
        return TextTable::read(path)?.i64s(column);
    }
    let mut out = Vec::new();
    for batch in one_column(path, column)? {
        let batch = batch?;
        let what = format!("{}: column '{column}'", path.display());
        out.extend(&column::i64s(batch.column(0), &what)?);
    }
    Ok(out)
}

/// A reader of one column of a Parquet file, in record batches.
fn one_column(
    path: &Path,
    column: &str,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let builder = parquet_builder(path)?;
    let idx = builder
        .schema()
        .index_of(column)
        .with_context(|| format!("{}: no column '{column}'", path.display()))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
    Ok(builder.with_projection(mask).build()?)
}

/// Read a string column of a Parquet or CSV file (nulls and empty CSV fields as None).
pub fn read_strings(path: &Path, column: &str) -> Result<Vec<Option<String>>> {
    if !is_parquet(path) {
        let c = TextTable::read(path)?.column(column)?.clone();
        return Ok(c.iter().map(|v| v.map(str::to_string)).collect());
    }
    let mut out = Vec::new();
    for batch in one_column(path, column)? {
        let batch = batch?;
        let what = format!("{}: column '{column}'", path.display());
        let c = column::strings(batch.column(0), &what)?;
        out.extend(c.iter().map(|v| v.map(str::to_string)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: CSV was split on commas by hand and `"` written as `'`.
    #[test]
    fn issue22_csv_round_trip_keeps_quotes_commas_newlines_and_large_ids() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.csv");
        let ids = vec![(1i64 << 53) + 1, i64::MAX, -(1i64 << 60) - 3, 7];
        let names = vec![
            Some("say \"hi\", then go".to_string()),
            Some("two\nlines, one \"field\"".to_string()),
            None,
            Some("#not a comment".to_string()),
        ];
        let x = vec![1.5, f64::NAN, -2.25e-7, 1e300];
        write_columns(
            &path,
            &[
                Column::I64("source_id".into(), ids.clone()),
                Column::Str("name, quoted".into(), names.clone()),
                Column::F64("x".into(), x.clone()),
            ],
            &[],
        )
        .unwrap();
        let got = read_i64(&path, "source_id").unwrap();
        assert_eq!(got, ids.iter().map(|&i| Some(i)).collect::<Vec<_>>());
        assert_eq!(read_strings(&path, "name, quoted").unwrap(), names);
        let (cols, num) = read_numeric(&path).unwrap();
        assert_eq!(cols, ["source_id", "name, quoted", "x"]);
        for (a, b) in num["x"].iter().zip(&x) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
        }
        // the typed reader agrees
        let all = read_all_columns(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].1.len(), 4);
    }
}
