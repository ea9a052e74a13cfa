//! Reading Parquet (step 1 of the data path): footers, the split of each input file into
//! output parts of whole row groups, and streams of record batches over any `object_store`
//! (local files and S3 alike). Every error names the file, and the row group where known.

use super::location::InputObject;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use std::sync::Arc;

/// An [`AsyncFileReader`] over one object of an [`ObjectStore`] whose size is known from
/// the listing (no extra request for the footer position).
#[derive(Clone, Debug)]
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    size: u64,
}

impl ObjectReader {
    /// Reader for an input object.
    pub(crate) fn new(obj: &InputObject) -> ObjectReader {
        ObjectReader {
            store: obj.store.clone(),
            path: obj.path.clone(),
            size: obj.size,
        }
    }
}

fn to_parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl ObjectReader {
    /// A range outside the object comes from a corrupt footer: a decoding error, not a
    /// storage failure (and no request is sent for it).
    fn check(&self, r: &Range<u64>) -> parquet::errors::Result<()> {
        if r.start > r.end || r.end > self.size {
            return Err(ParquetError::General(format!(
                "the footer points at bytes {}..{} of a {}-byte file",
                r.start, r.end, self.size
            )));
        }
        Ok(())
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.check(&range)?;
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            for r in &ranges {
                self.check(r)?;
            }
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

/// An error reading `place` (a file, maybe with its row group): a storage failure keeps its
/// cause, so that the report can say whether retrying helps
/// ([`super::storage_error::report`]); any other error means the bytes are not valid
/// Parquet, and is reported as `place: invalid: error`.
pub(crate) fn read_error(place: &str, invalid: &str, e: ParquetError) -> anyhow::Error {
    let e = anyhow::Error::new(e);
    if super::storage_error::storage_failure(&e).is_some() {
        e.context(format!("{place}: reading failed"))
    } else {
        anyhow!("{place}: {invalid}: {e:#}")
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Run a step that decodes `uri`, turning a panic into an error of that file. The Parquet
/// decoder panics on some corrupt files (found by fuzzing: negative column chunk offsets,
/// dictionary pages missing, empty bit-packed runs); one bad file must not stop the run.
pub(crate) fn guard_decoder<T>(uri: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|p| {
        bail!(
            "{uri}: {CANNOT_DECODE}: the Parquet decoder failed: {}",
            panic_message(p.as_ref())
        )
    })
}

/// What a decoding error of a row group says.
pub(crate) const CANNOT_DECODE: &str = "cannot decode (corrupt or truncated?)";

/// Read an input's footer; the error says the file is not valid Parquet, or that reading
/// it failed.
pub(crate) async fn read_metadata(obj: &InputObject) -> Result<ArrowReaderMetadata> {
    const INVALID: &str = "not a readable Parquet file (corrupt or truncated?)";
    let mut r = ObjectReader::new(obj);
    // the footer parser can panic on corrupt files too (see guard_decoder)
    let load = std::panic::AssertUnwindSafe(ArrowReaderMetadata::load_async(
        &mut r,
        ArrowReaderOptions::new(),
    ));
    match load.catch_unwind().await {
        Ok(res) => res.map_err(|e| read_error(&obj.uri, INVALID, e)),
        Err(p) => bail!(
            "{}: {INVALID}: the footer parser failed: {}",
            obj.uri,
            panic_message(p.as_ref())
        ),
    }
}

/// One output part: consecutive whole row groups of one input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartPlan {
    /// Index of the input file in the sorted input list.
    pub file: usize,
    /// Part number within the file.
    pub index: usize,
    /// Row groups of the file in this part.
    pub row_groups: Vec<usize>,
    /// Input rows in this part.
    pub n_rows: u64,
    /// Output file name (`<stem>.parquet`, or `<stem>.part-NNNN.parquet` when the file has
    /// several parts).
    pub name: String,
}

/// Split a file's row groups (given their row counts) into parts of about `rows_per_part`
/// rows. Depends only on the file and the setting, never on the shard count, so output names
/// are stable across reruns with different sharding.
pub(crate) fn plan_parts(
    file: usize,
    stem: &str,
    rg_rows: &[u64],
    rows_per_part: u64,
) -> Vec<PartPlan> {
    let mut groups: Vec<(Vec<usize>, u64)> = Vec::new();
    let mut cur: (Vec<usize>, u64) = (Vec::new(), 0);
    for (i, &n) in rg_rows.iter().enumerate() {
        if !cur.0.is_empty() && cur.1 + n > rows_per_part {
            groups.push(std::mem::take(&mut cur));
        }
        cur.0.push(i);
        cur.1 += n;
    }
    if !cur.0.is_empty() || groups.is_empty() {
        groups.push(cur); // an empty file still gets an (empty) output file
    }
    let many = groups.len() > 1;
    groups
        .into_iter()
        .enumerate()
        .map(|(index, (row_groups, n_rows))| PartPlan {
            file,
            index,
            row_groups,
            n_rows,
            name: if many {
                format!("{stem}.part-{index:04}.parquet")
            } else {
                format!("{stem}.parquet")
            },
        })
        .collect()
}

/// Row counts of every row group.
pub(crate) fn row_group_rows(meta: &ArrowReaderMetadata) -> Vec<u64> {
    meta.metadata()
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows().max(0) as u64)
        .collect()
}

/// A stream of record batches of some columns of some row groups of one input.
pub(crate) fn open_stream(
    obj: &InputObject,
    meta: &ArrowReaderMetadata,
    columns: &[String],
    row_groups: Vec<usize>,
    batch_rows: usize,
) -> Result<ParquetRecordBatchStream<ObjectReader>> {
    let schema = meta.schema();
    let mut idx = Vec::with_capacity(columns.len());
    for c in columns {
        match schema.index_of(c) {
            Ok(i) => idx.push(i),
            Err(_) => bail!("{}: no column {c}", obj.uri),
        }
    }
    let mask = ProjectionMask::roots(meta.parquet_schema(), idx);
    ParquetRecordBatchStreamBuilder::new_with_metadata(ObjectReader::new(obj), meta.clone())
        .with_projection(mask)
        .with_row_groups(row_groups)
        .with_batch_size(batch_rows)
        .build()
        .with_context(|| format!("{}: opening the Parquet reader", obj.uri))
}

/// Read every record batch of one row group of one column (the duplicate pre-pass).
pub(crate) async fn read_column_of_row_group(
    obj: &InputObject,
    meta: &ArrowReaderMetadata,
    column: &str,
    row_group: usize,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let mut s = open_stream(obj, meta, &[column.to_string()], vec![row_group], 65536)?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b.map_err(|e| {
            read_error(
                &format!("{}: row group {row_group}", obj.uri),
                CANNOT_DECODE,
                e,
            )
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_whole_row_groups_and_cover_the_file() {
        let p = plan_parts(3, "x", &[400, 400, 400, 100], 800);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].row_groups, vec![0, 1]);
        assert_eq!(p[1].row_groups, vec![2, 3]);
        assert_eq!(p[0].name, "x.part-0000.parquet");
        assert_eq!(p.iter().map(|q| q.n_rows).sum::<u64>(), 1300);
        // one part: named after the input
        let p = plan_parts(0, "y", &[10, 20], 1000);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "y.parquet");
        // an oversized row group is a part of its own
        let p = plan_parts(0, "z", &[5000, 10], 100);
        assert_eq!(p.len(), 2);
        // empty file: one empty part
        let p = plan_parts(0, "e", &[], 100);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].n_rows, 0);
    }
}
