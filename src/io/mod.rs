//! Input and output: Parquet/CSV tables, object stores, schemas, partitioned writing.

pub mod columns;
pub mod posteriors;
pub mod table;
