//! Small-table helpers for the auxiliary commands (`forward`, `simulate`, `evaluate`):
//! read named numeric columns from CSV or Parquet, write f64/f32/i64/string columns back.
//! The survey pipeline streams through `io::source`/`io::sink` instead.

use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, Float32Array, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
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

/// Whether a path names a Parquet file (by extension).
pub fn is_parquet(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("parquet") | Some("pq")
    )
}

/// Read all columns that can be cast to f64 from a CSV or Parquet file. Nulls become NaN.
pub fn read_numeric(path: &Path) -> Result<(Vec<String>, HashMap<String, Vec<f64>>)> {
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

fn read_parquet_numeric(path: &Path) -> Result<(Vec<String>, HashMap<String, Vec<f64>>)> {
    let reader = parquet_builder(path)?.build()?;
    let mut names = Vec::new();
    let mut cols: HashMap<String, Vec<f64>> = HashMap::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let Ok(c) = cast(col, &DataType::Float64) else {
                continue;
            };
            let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
            let entry = cols.entry(f.name().clone()).or_insert_with(|| {
                names.push(f.name().clone());
                Vec::new()
            });
            entry.extend((0..c.len()).map(|i| if c.is_null(i) { f64::NAN } else { c.value(i) }));
        }
    }
    Ok((names, cols))
}

fn read_csv_numeric(path: &Path) -> Result<(Vec<String>, HashMap<String, Vec<f64>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header: Vec<String> = lines
        .next()
        .with_context(|| format!("{}: empty file", path.display()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); header.len()];
    for (ln, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != header.len() {
            bail!(
                "{} line {}: {} fields, header has {}",
                path.display(),
                ln + 2,
                fields.len(),
                header.len()
            );
        }
        for (c, f) in cols.iter_mut().zip(fields) {
            let f = f.trim();
            c.push(
                if f.is_empty() || f.eq_ignore_ascii_case("null") || f.eq_ignore_ascii_case("nan") {
                    f64::NAN
                } else {
                    f.parse::<f64>().unwrap_or(f64::NAN)
                },
            );
        }
    }
    let map = header.iter().cloned().zip(cols).collect();
    Ok((header, map))
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
    use arrow::csv::reader::{Format, ReaderBuilder};
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let format = Format::default().with_header(true).with_comment(b'#');
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
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use std::fmt::Write as _;
    let n = columns.first().map(|c| c.len()).unwrap_or(0);
    let options = FormatOptions::default();
    let formatters = columns
        .iter()
        .map(|c| match c {
            Column::Arrow(_, a) => ArrayFormatter::try_new(a.as_ref(), &options).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = String::new();
    s.push_str(
        &columns
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(","),
    );
    s.push('\n');
    for i in 0..n {
        for (k, c) in columns.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            match c {
                Column::F64(_, v) if v[i].is_finite() => write!(s, "{}", v[i]).unwrap(),
                Column::F32(_, v) if v[i].is_finite() => write!(s, "{:.5}", v[i]).unwrap(),
                Column::I64(_, v) => write!(s, "{}", v[i]).unwrap(),
                Column::Str(_, v) => {
                    if let Some(x) = &v[i] {
                        write!(s, "\"{}\"", x.replace('"', "'")).unwrap()
                    }
                }
                Column::Arrow(_, a) if a.is_valid(i) => {
                    let f = formatters[k].as_ref().unwrap();
                    let text = f.value(i).to_string();
                    if matches!(a.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
                        write!(s, "\"{}\"", text.replace('"', "'")).unwrap()
                    } else {
                        s.push_str(&text)
                    }
                }
                _ => {}
            }
        }
        s.push('\n');
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// Read an integer column (e.g. source_id: Gaia ids exceed 2^53, so never through f64) of
/// a Parquet or CSV file; nulls as None.
pub fn read_i64(path: &Path, column: &str) -> Result<Vec<Option<i64>>> {
    if !is_parquet(path) {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
        let header = lines
            .next()
            .with_context(|| format!("{}: empty file", path.display()))?;
        let idx = header
            .split(',')
            .position(|h| h.trim() == column)
            .with_context(|| format!("{}: no column '{column}'", path.display()))?;
        return Ok(lines
            .map(|l| {
                l.split(',')
                    .nth(idx)
                    .and_then(|f| f.trim().parse::<i64>().ok())
            })
            .collect());
    }
    let mut out = Vec::new();
    for batch in one_column(path, column)? {
        let batch = batch?;
        let c = cast(batch.column(0), &DataType::Int64).with_context(|| {
            format!(
                "{}: column '{column}' is not an integer column",
                path.display()
            )
        })?;
        let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend((0..c.len()).map(|i| (!c.is_null(i)).then(|| c.value(i))));
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

/// Read a string column of a Parquet file (nulls as None).
pub fn read_strings(path: &Path, column: &str) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    for batch in one_column(path, column)? {
        let batch = batch?;
        let c = cast(batch.column(0), &DataType::Utf8)?;
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..c.len()).map(|i| (!c.is_null(i)).then(|| c.value(i).to_string())));
    }
    Ok(out)
}
