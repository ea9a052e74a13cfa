//! arrow-rs <-> polars through the Arrow C Data Interface (the joins of `[[input.join]]`):
//! both libraries export and import the same `#[repr(C)]` structs, so a column crosses
//! without copying its buffers; the exporting side's release callback travels with it.

use anyhow::{anyhow, Result};
use arrow::array::{make_array, Array, ArrayRef};
use arrow::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow::record_batch::RecordBatch;
use polars::prelude::{Column, CompatLevel, DataFrame, Series};
use polars_arrow::ffi as pffi;

/// An arrow-rs column as a polars Series named `name`.
pub(crate) fn to_series(name: &str, a: &dyn Array) -> Result<Series> {
    let (array, schema) = to_ffi(&a.to_data())?;
    // SAFETY: both types are the C Data Interface's ArrowArray / ArrowSchema (same
    // #[repr(C)] layout); ownership moves, and polars calls arrow-rs's release callbacks.
    let (array, schema) = unsafe {
        (
            std::mem::transmute::<FFI_ArrowArray, pffi::ArrowArray>(array),
            std::mem::transmute::<FFI_ArrowSchema, pffi::ArrowSchema>(schema),
        )
    };
    let field = unsafe { pffi::import_field_from_c(&schema) }?;
    let imported = unsafe { pffi::import_array_from_c(array, field.dtype.clone()) }?;
    Ok(Series::from_arrow(name.into(), imported)?)
}

/// A polars Series as one arrow-rs array.
pub(crate) fn to_arrow(s: &Series) -> Result<ArrayRef> {
    let s = s.rechunk();
    let chunk = match s.n_chunks() {
        0 => Series::new_empty(s.name().clone(), s.dtype()).to_arrow(0, CompatLevel::newest()),
        _ => s.to_arrow(0, CompatLevel::newest()),
    };
    let field = polars_arrow::datatypes::Field::new(s.name().clone(), chunk.dtype().clone(), true);
    let schema = pffi::export_field_to_c(&field);
    let array = pffi::export_array_to_c(chunk);
    // SAFETY: as in to_series, the other way round.
    let (array, schema) = unsafe {
        (
            std::mem::transmute::<pffi::ArrowArray, FFI_ArrowArray>(array),
            std::mem::transmute::<pffi::ArrowSchema, FFI_ArrowSchema>(schema),
        )
    };
    let data =
        unsafe { from_ffi(array, &schema) }.map_err(|e| anyhow!("column {}: {e}", s.name()))?;
    Ok(make_array(data))
}

/// Some columns of a RecordBatch as a polars DataFrame.
pub(crate) fn to_frame(batch: &RecordBatch, columns: &[&str]) -> Result<DataFrame> {
    let mut cols = Vec::with_capacity(columns.len());
    for c in columns {
        let a = batch
            .column_by_name(c)
            .ok_or_else(|| anyhow!("column {c} missing from batch"))?;
        cols.push(Column::from(to_series(c, a.as_ref())?));
    }
    Ok(DataFrame::new(batch.num_rows(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};

    #[test]
    fn columns_cross_both_ways_with_values_and_nulls() {
        let i = Int64Array::from(vec![Some(1), None, Some(3)]);
        let f = Float64Array::from(vec![Some(1.5), Some(2.5), None]);
        let s = StringArray::from(vec![Some("a"), None, Some("ccc")]);
        for a in [&i as &dyn Array, &f, &s] {
            let series = to_series("x", a).unwrap();
            assert_eq!(series.len(), 3);
            assert_eq!(series.null_count(), 1);
            let back = to_arrow(&series).unwrap();
            let back = arrow::compute::cast(&back, a.data_type()).unwrap();
            assert_eq!(back.to_data(), a.to_data().slice(0, 3));
        }
        // a sliced array keeps its offset
        let sl = i.slice(1, 2);
        let series = to_series("y", &sl).unwrap();
        assert_eq!(series.i64().unwrap().get(1), Some(3));
    }
}
