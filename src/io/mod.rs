//! Input and output: Parquet/CSV tables, object stores, schemas, partitioned writing.

pub(crate) mod columns;
pub(crate) mod posteriors;
pub mod table;
