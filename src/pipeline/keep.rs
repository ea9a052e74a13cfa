//! Kept columns (`[output] keep_columns`, `--keep-columns ra,dec,...`): input columns copied
//! into the posterior table with their own arrow types, null where the input is null.
//!
//! They ride along the data path without being copied per star: the reader takes the named
//! columns of each record batch it ingests (any source: the batch the ingest reads), and
//! every star holds a [`KeptRow`], a shared handle on that batch and its row. The writer
//! gathers the rows of a chunk in output order with one `interleave` per column. In the
//! long format a star's values are those of its first observation row.

use super::ingest::Ingested;
use anyhow::{bail, Context, Result};
use arrow::array::{new_null_array, Array, ArrayRef};
use arrow::compute::interleave;
use arrow::datatypes::{Field, FieldRef, Fields, Schema};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::Arc;

/// One star's kept values: row `row` of a batch of the kept columns.
#[derive(Clone, Debug)]
pub struct KeptRow {
    batch: Arc<RecordBatch>,
    row: u32,
}

impl KeptRow {
    /// Row `row` of `batch`.
    pub(crate) fn new(batch: &Arc<RecordBatch>, row: usize) -> KeptRow {
        KeptRow {
            batch: batch.clone(),
            row: row as u32,
        }
    }
}

/// Check the configured names before any work: none empty, none twice, none the name of an
/// output column.
pub(crate) fn check_names(names: &[String], output_columns: &[String]) -> Result<()> {
    for (k, n) in names.iter().enumerate() {
        if n.is_empty() {
            bail!("output.keep_columns: an empty column name");
        }
        if names[..k].contains(n) {
            bail!("output.keep_columns: column {n} given twice");
        }
        if output_columns.contains(n) {
            bail!(
                "output.keep_columns: {n} is also a column of the posterior table; rename it in the input, or drop it from keep_columns"
            );
        }
    }
    Ok(())
}

/// The kept columns' fields in `schema` (the input file's, `file` names it), nullable, in
/// the configured order; a missing column is an error.
pub(crate) fn fields(names: &[String], schema: &Schema, file: &str) -> Result<Fields> {
    let mut out: Vec<FieldRef> = Vec::with_capacity(names.len());
    for n in names {
        let Ok(f) = schema.field_with_name(n) else {
            bail!("{file}: no column '{n}' to keep (output.keep_columns / --keep-columns)");
        };
        out.push(Arc::new(Field::new(n, f.data_type().clone(), true)));
    }
    Ok(out.into())
}

/// Every part's kept columns must have one type, so that the output reads as one table:
/// `kept` of `file` against those of `first` (fields, file).
pub(crate) fn check_same_types(first: (&Fields, &str), kept: &Fields, file: &str) -> Result<()> {
    for (a, b) in first.0.iter().zip(kept.iter()) {
        if a.data_type() != b.data_type() {
            bail!(
                "kept column {} has type {} in {file} but {} in {}; the output parts would not read as one table (cast it in the input)",
                a.name(),
                b.data_type(),
                a.data_type(),
                first.1
            );
        }
    }
    Ok(())
}

/// The kept columns of a batch the reader decoded (None when nothing is kept).
pub(crate) fn take(batch: &RecordBatch, kept: &Fields) -> Result<Option<Arc<RecordBatch>>> {
    if kept.is_empty() {
        return Ok(None);
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(kept.len());
    for f in kept.iter() {
        let a = batch
            .column_by_name(f.name())
            .with_context(|| format!("column {} missing from the batch read", f.name()))?;
        if a.data_type() != f.data_type() {
            bail!(
                "column {} has type {} in this batch, {} in the file's schema",
                f.name(),
                a.data_type(),
                f.data_type()
            );
        }
        cols.push(a.clone());
    }
    let schema = Arc::new(Schema::new(kept.clone()));
    let b = RecordBatch::try_new(schema, cols).context("kept columns (bug)")?;
    Ok(Some(Arc::new(b)))
}

/// Wide format: star `i` of `stars` is row `i` of `kept`.
pub(crate) fn attach(stars: &mut [Ingested], kept: Option<&Arc<RecordBatch>>) {
    if let Some(b) = kept {
        for (i, s) in stars.iter_mut().enumerate() {
            s.kept = Some(KeptRow::new(b, i));
        }
    }
}

/// The kept columns of `rows` (in that order), typed as `kept`; a row without values (a
/// star that no batch carried) is null.
pub(crate) fn columns<'a>(
    rows: impl Iterator<Item = Option<&'a KeptRow>>,
    kept: &Fields,
) -> Result<Vec<ArrayRef>> {
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    // the distinct batches, by identity; the last source is a null row
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut slot: HashMap<*const RecordBatch, usize> = HashMap::new();
    let mut index: Vec<(usize, usize)> = Vec::new();
    let mut missing = Vec::new();
    for (k, r) in rows.enumerate() {
        match r {
            Some(r) => {
                let s = *slot.entry(Arc::as_ptr(&r.batch)).or_insert_with(|| {
                    batches.push(&r.batch);
                    batches.len() - 1
                });
                index.push((s, r.row as usize));
            }
            None => {
                missing.push(k);
                index.push((usize::MAX, 0));
            }
        }
    }
    let null_slot = batches.len();
    for k in missing {
        index[k].0 = null_slot;
    }
    kept.iter()
        .enumerate()
        .map(|(c, f)| {
            let nulls = new_null_array(f.data_type(), 1);
            let mut sources: Vec<&dyn Array> = batches
                .iter()
                .map(|b| b.column(c).as_ref() as &dyn Array)
                .collect();
            sources.push(nulls.as_ref());
            interleave(&sources, &index)
                .with_context(|| format!("gathering kept column {}", f.name()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int32Array, StringArray, UInt8Array};
    use arrow::datatypes::DataType;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None])) as ArrayRef,
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
            ),
            ("u", Arc::new(UInt8Array::from(vec![7, 8, 9])) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn names_are_checked_against_the_output_columns() {
        let out = vec!["source_id".to_string(), "teff_p50".to_string()];
        assert!(check_names(&["ra".into(), "dec".into()], &out).is_ok());
        let e = check_names(&["ra".into(), "teff_p50".into()], &out).unwrap_err();
        assert!(e.to_string().contains("teff_p50"), "{e}");
        assert!(check_names(&["ra".into(), "ra".into()], &out).is_err());
        assert!(check_names(&["".into()], &out).is_err());
    }

    #[test]
    fn fields_keep_their_types_and_a_missing_column_names_the_file() {
        let b = batch();
        let f = fields(&["u".into(), "name".into()], &b.schema(), "x.parquet").unwrap();
        assert_eq!(f[0].data_type(), &DataType::UInt8);
        assert_eq!(f[1].data_type(), &DataType::Utf8);
        assert!(f.iter().all(|f| f.is_nullable()));
        let e = fields(&["ra".into()], &b.schema(), "x.parquet").unwrap_err();
        assert!(e.to_string().contains("x.parquet") && e.to_string().contains("'ra'"));
        // the same names with another type in another file
        assert!(check_same_types((&f, "x"), &f, "y").is_ok());
        let other = Schema::new(vec![
            Field::new("u", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let g = fields(&["u".into(), "name".into()], &other, "y.parquet").unwrap();
        let e = check_same_types((&f, "x.parquet"), &g, "y.parquet").unwrap_err();
        assert!(
            e.to_string().contains("y.parquet") && e.to_string().contains("UInt8"),
            "{e}"
        );
    }

    #[test]
    fn rows_are_gathered_in_output_order_with_nulls_kept() {
        let b = batch();
        let names: Vec<String> = ["name", "n", "ok", "u"].map(String::from).into();
        let f = fields(&names, &b.schema(), "x").unwrap();
        let k1 = take(&b, &f).unwrap().unwrap();
        let k2 = take(&b.slice(1, 2), &f).unwrap().unwrap();
        let rows = [
            Some(KeptRow::new(&k2, 1)), // row 2 of the file
            Some(KeptRow::new(&k1, 0)),
            None,
            Some(KeptRow::new(&k1, 1)),
        ];
        let cols = columns(rows.iter().map(|r| r.as_ref()), &f).unwrap();
        let out = RecordBatch::try_new(Arc::new(Schema::new(f.clone())), cols).unwrap();
        let names = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            [Some("c"), Some("a"), None, None]
        );
        let n = out.column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(n.iter().collect::<Vec<_>>(), [None, Some(1), None, Some(2)]);
        let ok = out
            .column(2)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(
            ok.iter().collect::<Vec<_>>(),
            [Some(true), Some(true), None, Some(false)]
        );
        assert_eq!(out.column(3).data_type(), &DataType::UInt8);
        assert!(take(&b, &Fields::empty()).unwrap().is_none());
        assert!(columns(rows.iter().map(|r| r.as_ref()), &Fields::empty())
            .unwrap()
            .is_empty());
    }
}
