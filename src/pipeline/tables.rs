//! Input tables in the archive formats (step 1 of the data path): Parquet is read where it
//! lies; CSV and ECSV, plain or gzipped, are converted once per run into a temporary Parquet
//! file (a "spill"), so that every later step (row groups, parts, shards, resume, the
//! joins' filtered scans) sees Parquet. The conversion streams: memory holds one batch of
//! rows, never the file. Text is parsed by arrow's CSV reader, with the types of the ECSV
//! header (`ecsv.rs`) or, for plain CSV, types inferred from the whole file.

use super::ecsv;
use super::location::InputObject;
use anyhow::{anyhow, bail, Context, Result};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group of a spill: the unit of parts and of the joins' scans.
pub(crate) const SPILL_ROW_GROUP_ROWS: usize = 65_536;
/// Rows parsed at a time while converting.
const SPILL_BATCH_ROWS: usize = 8192;

/// A table file's format, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableFormat {
    /// `*.parquet`, `*.pq`.
    Parquet,
    /// `*.csv`, `*.csv.gz`: a header line of column names, comma-separated.
    Csv { gzip: bool },
    /// `*.ecsv`, `*.ecsv.gz`: the `# %ECSV` YAML header, then CSV.
    Ecsv { gzip: bool },
}

/// The extensions of table files, longest first (for stripping).
pub(crate) const TABLE_EXTENSIONS: [&str; 6] =
    [".ecsv.gz", ".csv.gz", ".parquet", ".ecsv", ".csv", ".pq"];

impl TableFormat {
    /// The format of a file name (`None`: not a table).
    pub(crate) fn of(name: &str) -> Option<TableFormat> {
        let n = name.to_ascii_lowercase();
        Some(if n.ends_with(".parquet") || n.ends_with(".pq") {
            TableFormat::Parquet
        } else if n.ends_with(".csv") {
            TableFormat::Csv { gzip: false }
        } else if n.ends_with(".csv.gz") {
            TableFormat::Csv { gzip: true }
        } else if n.ends_with(".ecsv") {
            TableFormat::Ecsv { gzip: false }
        } else if n.ends_with(".ecsv.gz") {
            TableFormat::Ecsv { gzip: true }
        } else {
            return None;
        })
    }

    fn gzip(self) -> bool {
        matches!(
            self,
            TableFormat::Csv { gzip: true } | TableFormat::Ecsv { gzip: true }
        )
    }
}

/// A local path of `obj` (an S3 object is first copied into `dir`).
pub(crate) async fn local_copy(obj: &InputObject, dir: &Path, k: usize) -> Result<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(&obj.uri) {
        if !obj.uri.starts_with("s3://") {
            return Ok(p);
        }
    }
    let name = obj.uri.rsplit('/').next().unwrap_or("table");
    let dest = dir.join(format!("fetched-{k}-{name}"));
    let mut file =
        std::fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut stream = obj
        .store
        .get(&obj.path)
        .await
        .with_context(|| format!("{}: reading failed", obj.uri))?
        .into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("{}: reading failed", obj.uri))?;
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    Ok(dest)
}

/// A local Parquet file holding `obj`'s rows: a local Parquet input itself, else a spill
/// written into `dir` (`k` keeps the names of several spills apart).
pub(crate) async fn local_parquet(obj: &InputObject, dir: &Path, k: usize) -> Result<PathBuf> {
    let format = TableFormat::of(&obj.uri)
        .ok_or_else(|| anyhow!("{}: not a table (.parquet, .csv[.gz], .ecsv[.gz])", obj.uri))?;
    let local = local_copy(obj, dir, k).await?;
    if format == TableFormat::Parquet {
        return Ok(local);
    }
    let dest = dir.join(format!("spill-{k}.parquet"));
    let uri = obj.uri.clone();
    let d = dest.clone();
    tokio::task::spawn_blocking(move || text_to_parquet(&local, format, &uri, &d))
        .await
        .map_err(|e| anyhow!("internal error: converting {}: {e}", obj.uri))??;
    Ok(dest)
}

/// The bytes of a text table, decompressed.
fn open_text(path: &Path, gzip: bool) -> Result<Box<dyn BufRead + Send>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            BufReader::new(f),
        )))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// Whether a text file starts with the ECSV signature line.
fn starts_like_ecsv(path: &Path, gzip: bool) -> Result<bool> {
    let mut first = String::new();
    // an unreadable start is reported by the CSV reader, with the line
    let _ = open_text(path, gzip)?.read_line(&mut first);
    Ok(first.starts_with("# %ECSV"))
}

/// ECSV: the header and the number of lines before the column-name line.
fn read_ecsv_header(path: &Path, gzip: bool, uri: &str) -> Result<(ecsv::EcsvHeader, usize)> {
    let mut r = open_text(path, gzip)?;
    let mut lines = Vec::new();
    let names = loop {
        let mut l = String::new();
        let n = r
            .read_line(&mut l)
            .map_err(|e| anyhow!("{uri}: line {}: {}", lines.len() + 1, io_reason(&e)))?;
        if n == 0 || !l.starts_with('#') {
            break l;
        }
        lines.push(l.trim_end_matches(['\n', '\r']).to_string());
    };
    let header = ecsv::parse_header(&lines, uri)?;
    // the column-name line must list the header's columns, in order
    let mut rdr = csv_core_names(&names, header.delimiter);
    rdr.retain(|s| !s.is_empty() || header.delimiter != b' ');
    let want: Vec<&str> = header
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    if rdr != want {
        bail!(
            "{uri}: line {}: the column names ({}) do not match the ECSV header ({})",
            lines.len() + 1,
            rdr.join(", "),
            want.join(", ")
        );
    }
    Ok((header, lines.len()))
}

/// The fields of one CSV line (quotes honoured), through the csv crate.
fn csv_core_names(line: &str, delimiter: u8) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    rdr.records()
        .next()
        .and_then(|r| r.ok())
        .map(|r| r.iter().map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// Missing values: empty fields and the archive's `null`.
fn null_regex() -> regex::Regex {
    regex::Regex::new("^(null|NULL|)$").expect("constant regex")
}

/// What went wrong reading compressed or plain bytes.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "truncated (unexpected end of the data)".into(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            format!("cannot decompress or decode ({e}; corrupt gzip?)")
        }
        _ => e.to_string(),
    }
}

/// An arrow CSV error with the file, the file's line (`first_line`: that of the first data
/// line) and the column named where the message gives its index.
fn csv_error(uri: &str, schema: &SchemaRef, e: ArrowError, first_line: usize) -> anyhow::Error {
    let msg = match &e {
        ArrowError::IoError(_, io) => io_reason(io),
        ArrowError::ExternalError(x) => match x.downcast_ref::<std::io::Error>() {
            Some(io) => io_reason(io),
            None => e.to_string(),
        },
        _ => e.to_string(),
    };
    let re = regex::Regex::new(r"column (\d+)").expect("constant regex");
    let column = re
        .captures(&msg)
        .and_then(|c| c[1].parse::<usize>().ok())
        .and_then(|i| schema.fields().get(i))
        .map(|f| format!(" (column {})", f.name()))
        .unwrap_or_default();
    // arrow counts data lines from 1; say the file's line
    let line_re = regex::Regex::new(r"at line (\d+)").expect("constant regex");
    let msg = line_re.replace(&msg, |c: &regex::Captures| {
        let n: usize = c[1].parse().unwrap_or(0);
        format!("at line {}", n + first_line - 1)
    });
    anyhow!("{uri}: {msg}{column}")
}

/// Record batches of a text table.
pub(crate) type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// The schema of a CSV or ECSV file (maybe gzipped): the ECSV header's, or for CSV types
/// inferred from the whole file. Also the delimiter and the comment lines before the names.
fn text_schema(path: &Path, format: TableFormat, uri: &str) -> Result<(SchemaRef, u8, usize)> {
    let gzip = format.gzip();
    // the archive's bulk files are ECSV named *.csv.gz: the content decides
    let format = match format {
        TableFormat::Csv { gzip } if starts_like_ecsv(path, gzip)? => TableFormat::Ecsv { gzip },
        f => f,
    };
    let (schema, delimiter, comment_lines) = match format {
        TableFormat::Ecsv { .. } => {
            let (h, n) = read_ecsv_header(path, gzip, uri)?;
            (Arc::new(h.schema), h.delimiter, n)
        }
        TableFormat::Csv { .. } => {
            let fmt = arrow::csv::reader::Format::default()
                .with_header(true)
                .with_null_regex(null_regex());
            let (s, _) = fmt
                .infer_schema(open_text(path, gzip)?, None)
                .map_err(|e| csv_error(uri, &Arc::new(arrow::datatypes::Schema::empty()), e, 1))?;
            (Arc::new(s), b',', 0)
        }
        TableFormat::Parquet => bail!("internal error: {uri} is Parquet already"),
    };
    if schema.fields().is_empty() {
        bail!("{uri}: no columns");
    }
    Ok((schema, delimiter, comment_lines))
}

/// The schema of a local table file of any format.
pub(crate) fn schema_of(path: &Path, format: TableFormat, uri: &str) -> Result<SchemaRef> {
    if format == TableFormat::Parquet {
        let f = std::fs::File::open(path).with_context(|| format!("opening {uri}"))?;
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).map_err(
            |e| anyhow!("{uri}: not a readable Parquet file (corrupt or truncated?): {e}"),
        )?;
        return Ok(b.schema().clone());
    }
    Ok(text_schema(path, format, uri)?.0)
}

/// The rows of a local table file of any format, `columns` only (in the file's order),
/// [`SPILL_BATCH_ROWS`] at a time; errors name `uri`, the line or row group, the column.
pub(crate) fn batches(
    path: &Path,
    format: TableFormat,
    uri: &str,
    columns: &[String],
) -> Result<(SchemaRef, Batches)> {
    let full = schema_of(path, format, uri)?;
    let idx: Vec<usize> = (0..full.fields().len())
        .filter(|&i| columns.contains(full.field(i).name()))
        .collect();
    let schema = Arc::new(full.project(&idx)?);
    if format == TableFormat::Parquet {
        let f = std::fs::File::open(path).with_context(|| format!("opening {uri}"))?;
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)?;
        let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), idx);
        let r = b
            .with_projection(mask)
            .with_batch_size(SPILL_BATCH_ROWS)
            .build()?;
        let u = uri.to_string();
        let it = r.map(move |b| b.map_err(|e| anyhow!("{u}: {CANNOT_DECODE_PARQUET}: {e}")));
        return Ok((schema, Box::new(it)));
    }
    let (_, delimiter, comment_lines) = text_schema(path, format, uri)?;
    let gzip = format.gzip();
    let ecsv = comment_lines > 0 || matches!(format, TableFormat::Ecsv { .. });
    let mut builder = arrow::csv::ReaderBuilder::new(full.clone())
        .with_header(true)
        .with_delimiter(delimiter)
        .with_null_regex(null_regex())
        .with_batch_size(SPILL_BATCH_ROWS)
        .with_projection(idx);
    if ecsv {
        builder = builder.with_comment(b'#');
    }
    let reader = builder
        .build(open_text(path, gzip)?)
        .map_err(|e| csv_error(uri, &full, e, comment_lines + 2))?;
    let u = uri.to_string();
    let it = reader.map(move |b| b.map_err(|e| csv_error(&u, &full, e, comment_lines + 2)));
    Ok((schema, Box::new(it)))
}

/// What a decoding error of a Parquet table says.
const CANNOT_DECODE_PARQUET: &str = "cannot decode (corrupt or truncated?)";

/// Convert a CSV or ECSV file (maybe gzipped) into a Parquet file at `dest` (arrow-rs's
/// writer: the primary table's spills are read by arrow-rs); errors name `uri`, the line
/// and the column.
pub(crate) fn text_to_parquet(
    path: &Path,
    format: TableFormat,
    uri: &str,
    dest: &Path,
) -> Result<u64> {
    let all: Vec<String> = schema_of(path, format, uri)?
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (schema, reader) = batches(path, format, uri, &all)?;
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(SPILL_ROW_GROUP_ROWS))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))
        .with_context(|| format!("{}: writing the spill", dest.display()))?;
    let mut rows = 0u64;
    for b in reader {
        let b = b?;
        rows += b.num_rows() as u64;
        w.write(&b)
            .with_context(|| format!("{}: writing the spill", dest.display()))?;
    }
    w.close()
        .with_context(|| format!("{}: writing the spill", dest.display()))?;
    Ok(rows)
}

/// A local file made an [`InputObject`] (for spills of text inputs: the store is the local
/// file system, the uri stays the original's, for messages and output names).
pub(crate) fn spilled_object(orig: &InputObject, local: &Path) -> Result<InputObject> {
    let size = std::fs::metadata(local)
        .with_context(|| format!("{}", local.display()))?
        .len();
    Ok(InputObject {
        store: Arc::new(object_store::local::LocalFileSystem::new()),
        path: object_store::path::Path::from_absolute_path(local)
            .with_context(|| format!("{}: unsupported path", local.display()))?,
        uri: orig.uri.clone(),
        size,
        stem: orig.stem.clone(),
    })
}

/// The inputs with every text table replaced by a Parquet spill (`None`: no text input, no
/// spill directory). The spills carry the original uri and stem, so that messages and output
/// names are the text file's; their row groups ([`SPILL_ROW_GROUP_ROWS`]) make the parts.
pub(crate) fn spill_text_inputs(
    rt: &tokio::runtime::Runtime,
    inputs: Vec<InputObject>,
) -> Result<(Vec<InputObject>, Option<tempfile::TempDir>)> {
    let text = |o: &InputObject| TableFormat::of(&o.uri).is_some_and(|f| f != TableFormat::Parquet);
    if !inputs.iter().any(text) {
        return Ok((inputs, None));
    }
    let dir = tempfile::Builder::new()
        .prefix("sedflow-input-")
        .tempdir()
        .context("creating a directory for the text inputs' Parquet spills")?;
    let mut out = Vec::with_capacity(inputs.len());
    for (k, o) in inputs.into_iter().enumerate() {
        if text(&o) {
            let local = rt.block_on(local_parquet(&o, dir.path(), k))?;
            out.push(spilled_object(&o, &local)?);
        } else {
            out.push(o);
        }
    }
    Ok((out, Some(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::io::Write;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn read(dest: &Path) -> arrow::record_batch::RecordBatch {
        let f = std::fs::File::open(dest).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        let bs: Vec<_> = r.map(|b| b.unwrap()).collect();
        arrow::compute::concat_batches(&bs[0].schema(), &bs).unwrap()
    }

    const ECSV: &str = "# %ECSV 1.0\n# ---\n# delimiter: ','\n# datatype:\n\
        # - {name: source_id, datatype: int64}\n# - {name: j_m, datatype: float64}\n\
        # - {name: ph_qual, datatype: string}\nsource_id,j_m,ph_qual\n\
        1,10.5,AAA\n2,null,\"B,C\"\n3,11.25,null\n";

    #[test]
    fn ecsv_gz_and_csv_become_typed_parquet_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t.ecsv.gz");
        std::fs::write(&src, gz(ECSV)).unwrap();
        let dest = dir.path().join("o.parquet");
        let fmt = TableFormat::of("t.ecsv.gz").unwrap();
        assert_eq!(text_to_parquet(&src, fmt, "t.ecsv.gz", &dest).unwrap(), 3);
        let b = read(&dest);
        assert_eq!(b.schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(2), 3);
        let j = b.column(1).as_primitive::<Float64Type>();
        assert!(j.is_null(1) && j.value(2) == 11.25);
        let q = b.column(2).as_string::<i32>();
        assert_eq!(q.value(1), "B,C");
        assert!(q.is_null(2));
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "source_id,w1mpro,cc_flags\n5,9.5,0000\n6,,00d0\n").unwrap();
        let fmt = TableFormat::of("t.csv").unwrap();
        text_to_parquet(&csv, fmt, "t.csv", &dest).unwrap();
        let b = read(&dest);
        assert_eq!(b.schema().field(0).data_type(), &DataType::Int64);
        assert!(b.column(1).is_null(1));
    }

    #[test]
    fn malformed_text_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("o.parquet");
        let fmt = TableFormat::of("a.ecsv").unwrap();
        // wrong type
        let src = dir.path().join("a.ecsv");
        std::fs::write(&src, ECSV.replace("11.25", "eleven")).unwrap();
        let e = format!(
            "{:#}",
            text_to_parquet(&src, fmt, "a.ecsv", &dest).unwrap_err()
        );
        assert!(
            e.contains("a.ecsv") && e.contains("(column j_m)") && e.contains("line"),
            "{e}"
        );
        // names line disagrees with the header
        std::fs::write(
            &src,
            ECSV.replace("source_id,j_m,ph_qual", "source_id,h_m,ph_qual"),
        )
        .unwrap();
        let e = format!(
            "{:#}",
            text_to_parquet(&src, fmt, "a.ecsv", &dest).unwrap_err()
        );
        assert!(e.contains("a.ecsv: line 8") && e.contains("h_m"), "{e}");
        // truncated gzip
        let src = dir.path().join("a.ecsv.gz");
        let bytes = gz(&ECSV.replace("3,11.25,null\n", &"3,11.25,null\n".repeat(2000)));
        std::fs::write(&src, &bytes[..bytes.len() / 2]).unwrap();
        let fmt = TableFormat::of("a.ecsv.gz").unwrap();
        let e = format!(
            "{:#}",
            text_to_parquet(&src, fmt, "a.ecsv.gz", &dest).unwrap_err()
        );
        assert!(e.contains("a.ecsv.gz") && e.contains("truncated"), "{e}");
    }
}
