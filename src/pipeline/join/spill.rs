//! The joined tables' spills (`[[input.join]]`, planning): each file of a joined table is
//! rewritten once per run, with only the columns the join reads, into a local Parquet file
//! written by polars, which the per-part scans then read. Text formats need this anyway;
//! Parquet files need it because polars 0.53 cannot read the footers that newer writers
//! (arrow-rs 60 among them) give float columns (the IEEE 754 total-order column order),
//! and reading only the needed columns keeps the scans small. Streams: one batch in memory.

use super::bridge;
use crate::pipeline::tables::{self, TableFormat};
use anyhow::{anyhow, Context, Result};
use arrow::record_batch::RecordBatch;
use polars::prelude::{ParquetCompression, ParquetWriter};
use std::path::Path;

/// Write `columns` of the table file at `local` (`uri` names it in errors) to `dest`.
pub(crate) fn write(
    local: &Path,
    format: TableFormat,
    uri: &str,
    columns: &[String],
    dest: &Path,
) -> Result<u64> {
    let (schema, batches) = tables::batches(local, format, uri, columns)?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let empty = bridge::to_frame(&RecordBatch::new_empty(schema.clone()), &names)?;
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let spill_err =
        |e: polars::prelude::PolarsError| anyhow!("{}: writing the spill: {e}", dest.display());
    let mut w = ParquetWriter::new(file)
        .with_compression(ParquetCompression::Snappy)
        .batched(empty.schema())
        .map_err(spill_err)?;
    let mut rows = 0u64;
    for b in batches {
        let b = b?;
        rows += b.num_rows() as u64;
        let df = bridge::to_frame(&b, &names)?;
        w.write_batch(&df).map_err(spill_err)?;
    }
    w.finish().map_err(spill_err)?;
    Ok(rows)
}
