//! Streaming a few columns of local Parquet files batch by batch, for the commands that
//! summarise whole runs (`sedflow plot kiel`, `sedflow report`): memory is bounded by one
//! batch of the projected columns, whatever the number of rows.

use super::table::parquet_builder;
use crate::util::column;
use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef};
use parquet::arrow::ProjectionMask;
use std::path::Path;

/// Rows per decoded batch.
pub(crate) const BATCH_ROWS: usize = 65_536;

/// One decoded batch of the requested columns, in the order they were requested.
pub(crate) struct ColumnBatch {
    columns: Vec<ArrayRef>,
    names: Vec<String>,
}

impl ColumnBatch {
    /// Rows in the batch.
    pub(crate) fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }

    fn column(&self, name: &str) -> Result<&ArrayRef> {
        let k = self
            .names
            .iter()
            .position(|n| n == name)
            .with_context(|| format!("column '{name}' was not requested (bug)"))?;
        Ok(&self.columns[k])
    }

    /// A numeric column as f64, nulls as NaN.
    pub(crate) fn f64(&self, name: &str) -> Result<Vec<f64>> {
        let c = column::f64s(self.column(name)?, &format!("column '{name}'"))?;
        Ok(column::nan_for_null(&c).collect())
    }

    /// An integer column (ids, flags), nulls as None.
    pub(crate) fn i64(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let c = column::i64s(self.column(name)?, &format!("column '{name}'"))?;
        Ok(c.iter().collect())
    }

    /// A string column, nulls as "".
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>> {
        let c = column::strings(self.column(name)?, &format!("column '{name}'"))?;
        Ok(c.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }

    /// The raw array of a column (e.g. list columns of the samples table).
    pub(crate) fn array(&self, name: &str) -> Result<&ArrayRef> {
        self.column(name)
    }
}

/// Call `f` on every batch of `columns` of the Parquet file `path`, in row order.
pub(crate) fn for_each_batch(
    path: &Path,
    columns: &[&str],
    mut f: impl FnMut(&ColumnBatch) -> Result<()>,
) -> Result<()> {
    let builder = parquet_builder(path)?;
    let idx: Vec<usize> = columns
        .iter()
        .map(|c| {
            builder.schema().index_of(c).with_context(|| {
                format!(
                    "{}: no column '{c}' (not a sedflow posterior table?)",
                    path.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()?;
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        // the projection keeps file order; hand the columns back in the requested order
        let schema = batch.schema();
        let cols = columns
            .iter()
            .map(|c| Ok(batch.column(schema.index_of(c)?).clone()))
            .collect::<Result<Vec<_>>>()?;
        f(&ColumnBatch {
            columns: cols,
            names: columns.iter().map(|c| c.to_string()).collect(),
        })
        .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

/// The key-value metadata of a Parquet file's footer.
pub(crate) fn key_value_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let builder = parquet_builder(path)?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// Rows of a Parquet file from its footer.
pub(crate) fn row_count(path: &Path) -> Result<u64> {
    let builder = parquet_builder(path)?;
    Ok(builder.metadata().file_metadata().num_rows() as u64)
}
