//! CSV through arrow-csv, the one CSV parser and writer of the project: quoted fields,
//! commas and newlines inside quotes, `#` comment lines. Used by the table readers
//! (`io::table`), the embedded tables (standards, pivot wavelengths) and the checks.
//!
//! [`TextTable`] reads every field as text, so that the caller decides how to parse it
//! (integers above 2^53 never pass through f64); [`write()`] writes a record batch.

use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray, StringArray};
use arrow::csv::reader::{Format, ReaderBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// The CSV dialect read everywhere: a header line, `#` comment lines.
pub(crate) fn format() -> Format {
    Format::default().with_header(true).with_comment(b'#')
}

/// A CSV table, every column as text (an empty field is null).
#[derive(Debug)]
pub(crate) struct TextTable {
    origin: String,
    names: Vec<String>,
    columns: Vec<StringArray>,
}

impl TextTable {
    /// Read a file.
    pub(crate) fn read(path: &Path) -> Result<TextTable> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        TextTable::parse(&path.display().to_string(), &bytes)
    }

    /// Parse CSV text; `origin` names it in errors.
    pub(crate) fn parse(origin: &str, bytes: &[u8]) -> Result<TextTable> {
        // the header only: names as the parser reads them (quotes removed)
        let (header, _) = format()
            .infer_schema(Cursor::new(bytes), Some(0))
            .with_context(|| format!("{origin}: not a readable CSV file"))?;
        let names: Vec<String> = header
            .fields()
            .iter()
            .map(|f| f.name().trim().to_string())
            .collect();
        if names.is_empty() || names.iter().all(String::is_empty) {
            bail!("{origin}: empty file (no header line)");
        }
        let schema = Schema::new(
            header
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        );
        let reader = ReaderBuilder::new(Arc::new(schema))
            .with_format(format())
            .build(Cursor::new(bytes))
            .with_context(|| format!("{origin}: not a readable CSV file"))?;
        let mut parts: Vec<Vec<StringArray>> = vec![Vec::new(); names.len()];
        for batch in reader {
            let batch = batch.with_context(|| format!("reading {origin}"))?;
            for (p, c) in parts.iter_mut().zip(batch.columns()) {
                p.push(c.as_string::<i32>().clone());
            }
        }
        let columns = parts
            .into_iter()
            .map(|p| {
                let refs: Vec<&dyn Array> = p.iter().map(|a| a as &dyn Array).collect();
                if refs.is_empty() {
                    StringArray::from(Vec::<Option<&str>>::new())
                } else {
                    arrow::compute::concat(&refs)
                        .expect("string arrays concatenate")
                        .as_string::<i32>()
                        .clone()
                }
            })
            .collect();
        Ok(TextTable {
            origin: origin.to_string(),
            names,
            columns,
        })
    }

    /// Column names (trimmed), in file order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Rows.
    pub(crate) fn len(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }

    /// A column by name; the error names the table and the column.
    pub(crate) fn column(&self, name: &str) -> Result<&StringArray> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
            .with_context(|| format!("{}: no column '{name}'", self.origin))
    }

    /// A column by position.
    pub(crate) fn column_at(&self, i: usize) -> &StringArray {
        &self.columns[i]
    }

    /// A column as f64: empty, `null` or `nan` fields are NaN, anything else that does not
    /// parse as a number is NaN too when `lenient`, an error naming the row otherwise.
    pub(crate) fn f64s(&self, name: &str, lenient: bool) -> Result<Vec<f64>> {
        let c = self.column(name)?;
        (0..c.len())
            .map(|i| {
                let s = if c.is_valid(i) { c.value(i).trim() } else { "" };
                match parse_f64(s) {
                    Some(x) => Ok(x),
                    None if lenient => Ok(f64::NAN),
                    None => bail!(
                        "{} row {}: column '{name}': '{s}' is not a number",
                        self.origin,
                        i + 1
                    ),
                }
            })
            .collect()
    }

    /// A column as i64 (parsed from the text: ids above 2^53 stay exact); empty or
    /// unparsable fields are None.
    pub(crate) fn i64s(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let c = self.column(name)?;
        Ok((0..c.len())
            .map(|i| {
                c.is_valid(i)
                    .then(|| c.value(i).trim().parse::<i64>().ok())
                    .flatten()
            })
            .collect())
    }
}

/// A number from a trimmed field: empty, `null` and `nan` (any case) are NaN.
fn parse_f64(s: &str) -> Option<f64> {
    if s.is_empty() || s.eq_ignore_ascii_case("null") || s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    s.parse::<f64>().ok()
}

/// Write a record batch as CSV (header line; nulls as empty fields; strings quoted where
/// they need it, `"` doubled).
pub(crate) fn write(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::BufWriter::new(file));
    w.write(batch)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut inner = w.into_inner();
    std::io::Write::flush(&mut inner).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_newlines_and_comments() {
        let text = "# a comment\nid,\"na,me\",x\n1,\"a, \"\"b\"\"\nc\",2.5\n2,,nan\n";
        let t = TextTable::parse("t", text.as_bytes()).unwrap();
        assert_eq!(t.names(), ["id", "na,me", "x"]);
        assert_eq!(t.len(), 2);
        let c = t.column("na,me").unwrap();
        assert_eq!(c.value(0), "a, \"b\"\nc");
        assert!(c.is_null(1));
        let x = t.f64s("x", false).unwrap();
        assert_eq!(x[0], 2.5);
        assert!(x[1].is_nan());
        assert_eq!(t.i64s("id").unwrap(), vec![Some(1), Some(2)]);
        let e = t.column("y").unwrap_err().to_string();
        assert!(e.contains("t: no column 'y'"), "{e}");
        let e = TextTable::parse("u", b"a\nfoo\n").unwrap().f64s("a", false);
        assert!(format!("{:#}", e.unwrap_err()).contains("u row 1"));
    }
}
