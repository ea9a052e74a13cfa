//! Hostile catalogue files and configurations built from arbitrary bytes, and the checks
//! every one of them must pass. Shared by the fuzz targets (`fuzz/`, coverage-guided bytes)
//! and the property tests (`tests/hostile_inputs.rs`, random bytes): one generator, one
//! oracle.
//!
//! A file gets a random schema over the column names `sedflow run` looks for (wide and long
//! format) and a few it does not, any Arrow type (integers of every width, floats, strings,
//! dictionaries, lists, structs, nulls, decimals, timestamps...), values drawn towards the
//! edges (nulls, NaN, infinities, extreme ids, repeated and interleaved stars), row groups
//! of any size (zero-row groups included) and random writer settings; then, maybe, it is
//! truncated or has bytes overwritten. The oracle: ingest never panics, errors name the
//! file, and each part that reads yields every input row exactly once.

use arbitrary::{Result as ArbResult, Unstructured};
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StringArray, StructArray,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use sedflow::pipeline::config::{BandColumn, InputFormat, PipelineConfig};
use sedflow::pipeline::memory_ingest::{ingest_parquet, MEMORY_URI};
use sedflow::prior::reddening::ReddeningModel;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// Column names of the wide format (and its neighbours) that files are built from.
const WIDE_NAMES: &[&str] = &[
    "source_id",
    "phot_g_mean_mag",
    "phot_g_mean_flux_over_error",
    "phot_g_mean_mag_error",
    "phot_bp_mean_mag",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_mag",
    "j_m",
    "j_msigcom",
    "w1mpro",
    "parallax",
    "parallax_error",
    "ebv_prior",
    "ebv_prior_error",
    "ebv_prior_source",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
    "astrometric_params_solved",
    "mystery",
];

/// Column names of the long format.
const LONG_NAMES: &[&str] = &["source_id", "band", "mag", "mag_error", "mystery"];

/// Band labels of long-format rows: known bands, the special rows, unknown ones.
const BAND_LABELS: &[&str] = &[
    "gaia_g",
    "gaia_bp",
    "gaia_rp",
    "tmass_j",
    "wise_w1",
    "ps1_g",
    "parallax",
    "ebv_prior",
    "G",
    "",
    "gaia_g ",
    "x\u{0}y",
    "ünïcödé",
];

/// Map names of `ebv_prior_source`.
const MAP_NAMES: &[&str] = &["sfd", "b19", "", "unknown-map"];

/// Floats drawn towards the edges.
const SPECIAL_F64: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    1e300,
    -1e300,
    f64::MIN_POSITIVE,
    -1.0,
    1e-12,
    99.0,
];

/// Arrow types a column may get.
fn data_type(u: &mut Unstructured) -> ArbResult<DataType> {
    let dict = |k: DataType, v: DataType| DataType::Dictionary(Box::new(k), Box::new(v));
    Ok(match u.int_in_range(0..=22)? {
        0 => DataType::Int8,
        1 => DataType::Int16,
        2 => DataType::Int32,
        3 | 4 => DataType::Int64,
        5 => DataType::UInt8,
        6 => DataType::UInt32,
        7 => DataType::UInt64,
        8 => DataType::Float16,
        9 => DataType::Float32,
        10 | 11 => DataType::Float64,
        12 => DataType::Boolean,
        13 => DataType::Utf8,
        14 => DataType::LargeUtf8,
        15 => dict(DataType::Int32, DataType::Utf8),
        16 => dict(DataType::Int8, DataType::Float64),
        17 => DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        18 => DataType::Struct(Fields::from(vec![Field::new("x", DataType::Float64, true)])),
        19 => DataType::Null,
        20 => DataType::Decimal128(12, 3),
        21 => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => DataType::Binary,
    })
}

/// An f64 drawn towards the edges, or any bit pattern, or a plausible magnitude.
fn float(u: &mut Unstructured) -> ArbResult<Option<f64>> {
    Ok(match u.int_in_range(0..=7)? {
        0 => None,
        1 | 2 => Some(*u.choose(SPECIAL_F64)?),
        3 => Some(f64::from_bits(u.arbitrary()?)),
        _ => Some(5.0 + f64::from(u.int_in_range(0..=2000u16)?) / 100.0),
    })
}

/// An id: mostly a few small values (repeats, interleaved stars), sometimes extremes.
fn id(u: &mut Unstructured) -> ArbResult<Option<i64>> {
    Ok(match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(*u.choose(&[i64::MIN, i64::MAX, -1, 0])?),
        2 => Some(u.arbitrary()?),
        _ => Some(i64::from(u.int_in_range(1..=6u8)?)),
    })
}

fn text(u: &mut Unstructured, pool: &[&str]) -> ArbResult<Option<String>> {
    Ok(match u.int_in_range(0..=5)? {
        0 => None,
        1 => Some(u.arbitrary::<String>()?),
        _ => Some(u.choose(pool)?.to_string()),
    })
}

/// Values of a column named `name` with `n` rows, converted to `dt` (a value the type cannot
/// hold becomes null, as a writer would have it).
fn column(u: &mut Unstructured, name: &str, dt: &DataType, n: usize) -> ArbResult<ArrayRef> {
    let base: ArrayRef = if name == "source_id" || dt.is_integer() {
        Arc::new((0..n).map(|_| id(u)).collect::<ArbResult<Int64Array>>()?)
    } else if matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary)
        || matches!(dt, DataType::Dictionary(_, v) if **v == DataType::Utf8)
    {
        let pool = if name == "ebv_prior_source" {
            MAP_NAMES
        } else {
            BAND_LABELS
        };
        let v: Vec<Option<String>> = (0..n).map(|_| text(u, pool)).collect::<ArbResult<_>>()?;
        Arc::new(StringArray::from(v))
    } else {
        Arc::new(
            (0..n)
                .map(|_| float(u))
                .collect::<ArbResult<Float64Array>>()?,
        )
    };
    Ok(convert(base, dt))
}

fn convert(base: ArrayRef, dt: &DataType) -> ArrayRef {
    match dt {
        DataType::List(_) => {
            let f = base.as_primitive_opt::<Float64Type>();
            let lists = (0..base.len()).map(|i| {
                f.filter(|a| !a.is_null(i))
                    .map(|a| vec![Some(a.value(i)), None])
            });
            Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(lists))
        }
        DataType::Struct(fields) => {
            let inner = convert(base, &DataType::Float64);
            Arc::new(StructArray::new(fields.clone(), vec![inner], None))
        }
        _ => {
            let opts = CastOptions {
                safe: true,
                ..Default::default()
            };
            cast_with_options(&base, dt, &opts)
                .unwrap_or_else(|_| arrow::array::new_null_array(dt, base.len()))
        }
    }
}

/// Writer settings: codec, dictionary, page and row-group sizes, format version.
fn writer_props(u: &mut Unstructured, schema: &Schema) -> ArbResult<WriterProperties> {
    let codec = match u.int_in_range(0..=4)? {
        0 => Compression::UNCOMPRESSED,
        1 => Compression::SNAPPY,
        2 => Compression::ZSTD(ZstdLevel::default()),
        3 => Compression::LZ4_RAW,
        _ => Compression::GZIP(Default::default()),
    };
    let mut b = WriterProperties::builder()
        .set_compression(codec)
        .set_dictionary_enabled(u.arbitrary()?)
        .set_data_page_row_count_limit(usize::from(u.int_in_range(1..=64u8)?))
        .set_write_batch_size(usize::from(u.int_in_range(1..=64u8)?))
        .set_writer_version(if u.arbitrary()? {
            WriterVersion::PARQUET_2_0
        } else {
            WriterVersion::PARQUET_1_0
        })
        .set_statistics_enabled(*u.choose(&[
            EnabledStatistics::None,
            EnabledStatistics::Chunk,
            EnabledStatistics::Page,
        ])?);
    // non-default encodings, each only where the writer supports it (it panics otherwise),
    // on columns whose name is unique (settings go by name)
    let unique = |n: &str| schema.fields().iter().filter(|f| f.name() == n).count() == 1;
    for f in schema.fields().iter().filter(|f| unique(f.name())) {
        let options: &[Encoding] = match f.data_type() {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                &[Encoding::PLAIN, Encoding::BYTE_STREAM_SPLIT]
            }
            DataType::Int32 | DataType::Int64 => &[
                Encoding::PLAIN,
                Encoding::DELTA_BINARY_PACKED,
                Encoding::BYTE_STREAM_SPLIT,
            ],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary => &[
                Encoding::PLAIN,
                Encoding::DELTA_LENGTH_BYTE_ARRAY,
                Encoding::DELTA_BYTE_ARRAY,
            ],
            _ => &[],
        };
        if !options.is_empty() && u.ratio(1, 3)? {
            b = b.set_column_encoding(ColumnPath::from(f.name().as_str()), *u.choose(options)?);
        }
    }
    Ok(b.build())
}

/// A generated catalogue file.
#[derive(Debug)]
pub struct Hostile {
    /// The file's bytes (possibly corrupted).
    pub bytes: Vec<u8>,
    /// Rows written before any corruption.
    pub rows: usize,
    /// The bytes were truncated or overwritten after writing.
    pub corrupted: bool,
}

/// A schema, its batch and its row-group sizes (some empty).
fn table(u: &mut Unstructured) -> ArbResult<(RecordBatch, Vec<usize>)> {
    let long = u.arbitrary::<bool>()?;
    let pool = if long { LONG_NAMES } else { WIDE_NAMES };
    let n = usize::from(u.int_in_range(0..=48u8)?);
    let mut names: Vec<&str> = Vec::new();
    if u.ratio(9, 10)? {
        names.push("source_id");
    }
    if long && u.ratio(4, 5)? {
        names.extend(["band", "mag", "mag_error"]);
    }
    for _ in 0..u.int_in_range(0..=6)? {
        names.push(u.choose(pool)?); // duplicates allowed: hostile files have them
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for name in names {
        let dt = match name {
            "source_id" if u.ratio(3, 4)? => DataType::Int64,
            "band" if u.ratio(3, 4)? => u
                .choose(&[
                    DataType::Utf8,
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                ])?
                .clone(),
            "ebv_prior_source" if u.ratio(3, 4)? => DataType::Utf8,
            _ if u.ratio(1, 2)? => DataType::Float64,
            _ => data_type(u)?,
        };
        let a = column(u, name, &dt, n)?;
        fields.push(Field::new(name, a.data_type().clone(), true));
        cols.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = match RecordBatch::try_new(schema.clone(), cols) {
        Ok(b) => b,
        Err(_) => RecordBatch::new_empty(schema),
    };
    let mut groups = Vec::new();
    let mut left = batch.num_rows();
    while left > 0 || (groups.len() < 2 && u.ratio(1, 3)?) {
        let k = usize::from(u.int_in_range(0..=16u8)?).min(left);
        groups.push(k);
        left -= k;
        if u.is_empty() && left > 0 {
            groups.push(left);
            left = 0;
        }
    }
    Ok((batch, groups))
}

/// Write `batch` with one row group per entry of `groups` (row counts, zeros allowed).
fn write(batch: &RecordBatch, groups: &[usize], props: WriterProperties) -> Option<Vec<u8>> {
    let w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).ok()?;
    let (mut file, factory) = w.into_serialized_writer().ok()?;
    let mut start = 0;
    for (g, &k) in groups.iter().enumerate() {
        let mut writers = factory.create_column_writers(g).ok()?;
        let rows = batch.slice(start, k);
        start += k;
        let mut leaves = Vec::new();
        for (f, c) in batch.schema().fields().iter().zip(rows.columns()) {
            leaves.extend(compute_leaves(f, c).ok()?);
        }
        let mut rg = file.next_row_group().ok()?;
        for (w, leaf) in writers.iter_mut().zip(&leaves) {
            w.write(leaf).ok()?;
        }
        for w in writers {
            w.close().ok()?.append_to_row_group(&mut rg).ok()?;
        }
        rg.close().ok()?;
    }
    file.into_inner().ok()
}

/// Truncate, overwrite or zero some bytes (or nothing).
fn corrupt(u: &mut Unstructured, bytes: &mut Vec<u8>) -> ArbResult<bool> {
    if bytes.is_empty() {
        return Ok(false);
    }
    match u.int_in_range(0..=5)? {
        0 => {
            let at = u.int_in_range(0..=bytes.len() - 1)?;
            bytes.truncate(at);
        }
        1 | 2 => {
            for _ in 0..u.int_in_range(1..=8)? {
                let at = u.int_in_range(0..=bytes.len() - 1)?;
                bytes[at] = u.arbitrary()?;
            }
        }
        3 => {
            let at = u.int_in_range(0..=bytes.len() - 1)?;
            let k = u.int_in_range(1..=64usize)?.min(bytes.len() - at);
            bytes[at..at + k].fill(0);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A hostile catalogue file from arbitrary bytes (`None`: the writer refused the table).
pub fn hostile_parquet(u: &mut Unstructured) -> ArbResult<Option<Hostile>> {
    let (batch, groups) = table(u)?;
    let props = writer_props(u, &batch.schema())?;
    let Some(mut bytes) = write(&batch, &groups, props) else {
        return Ok(None);
    };
    let corrupted = corrupt(u, &mut bytes)?;
    Ok(Some(Hostile {
        bytes,
        rows: batch.num_rows(),
        corrupted,
    }))
}

/// A run configuration from arbitrary bytes: format, part and batch sizes, mappings.
pub fn run_config(u: &mut Unstructured) -> ArbResult<PipelineConfig> {
    let mut cfg = PipelineConfig::default();
    cfg.input.format = *u.choose(&[InputFormat::Auto, InputFormat::Wide, InputFormat::Long])?;
    cfg.input.rows_per_part = u64::from(u.int_in_range(1..=64u8)?);
    cfg.input.read_batch_rows = usize::from(u.int_in_range(1..=64u8)?);
    cfg.batching.batch_size = usize::from(u.int_in_range(1..=16u8)?);
    cfg.batching.window = cfg.batching.batch_size + usize::from(u.int_in_range(0..=32u8)?);
    if u.ratio(1, 4)? {
        cfg.input.default_columns = u.arbitrary()?;
        cfg.input.bands.push(BandColumn {
            column: "mag".into(),
            band: "gaia_g".into(),
            error: Some("mag_error".into()),
            flux_over_error: None,
            error_floor: 0.01,
            mask: None,
        });
    }
    Ok(cfg)
}

/// The embedded model's band names and the reddening settings `sedflow run` uses with it.
pub fn model_inputs() -> &'static (Vec<String>, ReddeningModel) {
    static M: OnceLock<(Vec<String>, ReddeningModel)> = OnceLock::new();
    M.get_or_init(|| {
        let fm = sedflow::physics::ForwardModel::embedded();
        let names = fm.bands().names().into_iter().map(String::from).collect();
        let cfg = PipelineConfig::default();
        let red = ReddeningModel::for_model(
            &cfg.prior,
            fm,
            sedflow::prior::PriorConfig::default().av_max,
        );
        (names, red)
    })
}

/// The oracle: ingest `bytes` as `sedflow run` would and check that nothing panics (the
/// caller's harness catches that), every error names the file, and every part that reads
/// yields each of its input rows exactly once, numbered 0..n in the output. `intact_rows`:
/// the rows written, when the file is known to be intact (it must then be readable, with no
/// decoding error, and its parts must cover every row).
pub fn check_ingest(bytes: &[u8], cfg: &PipelineConfig, intact_rows: Option<usize>) {
    let (names, red) = model_inputs();
    let parts = match ingest_parquet(bytes::Bytes::copy_from_slice(bytes), cfg, names, red) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains(MEMORY_URI),
                "an error that does not name the file: {msg}"
            );
            assert!(intact_rows.is_none(), "an intact file was refused: {msg}");
            return;
        }
    };
    assert!(
        !parts.is_empty(),
        "every file has at least one (maybe empty) part"
    );
    let planned: u64 = parts.iter().map(|p| p.plan.n_rows).sum();
    if let Some(n) = intact_rows {
        assert_eq!(
            planned, n as u64,
            "the parts must cover every row of an intact file"
        );
    }
    for (k, p) in parts.iter().enumerate() {
        if let Some(e) = &p.error {
            assert!(
                e.contains(MEMORY_URI),
                "an error that does not name the file: {e}"
            );
            assert!(
                intact_rows.is_none() || !e.contains("corrupt or truncated"),
                "an intact file read as corrupt: {e}"
            );
            assert!(p.stars.is_empty());
            continue;
        }
        let n_out = p.n_out.expect("a part that did not fail has ended") as usize;
        assert_eq!(
            p.stars.len(),
            n_out,
            "part {k}: stars out of the batcher vs announced"
        );
        let idx: HashSet<u32> = p.stars.iter().map(|s| s.idx).collect();
        assert_eq!(idx.len(), n_out, "part {k}: an output row twice");
        assert!(
            idx.iter().all(|&i| (i as usize) < n_out),
            "part {k}: row numbers 0..n"
        );
        assert!(p.stars.iter().all(|s| s.part == k as u32));
        let rows: u64 = p.stars.iter().map(|s| u64::from(s.n_rows)).sum();
        assert_eq!(
            rows, p.plan.n_rows,
            "part {k}: input rows accounted for by its stars"
        );
        for s in &p.stars {
            assert!(s.n_rows >= 1);
            for m in &s.obs.phot {
                assert!(
                    m.mag.is_finite() && m.err.is_finite() && m.err > 0.0,
                    "{m:?}"
                );
            }
            if let Some((p, e)) = s.obs.parallax {
                assert!(
                    p.is_finite() && e.is_finite() && e > 0.0,
                    "parallax {p} +- {e}"
                );
            }
            if let Some(r) = s.obs.reddening {
                assert!(
                    r.ebv.is_finite() && r.error.is_finite() && r.error > 0.0,
                    "{r:?}"
                );
            }
        }
    }
}

/// The config oracle: parsing and validating any text never panics, errors name the
/// origin, and a configuration that validates gives the objects `sedflow run` builds from it
/// (band mappings, reddening model, inference settings, provenance) without panicking.
pub fn check_config(text: &str) {
    let cfg = match PipelineConfig::from_toml(text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => {
            assert!(format!("{e:#}").contains("fuzz.toml"), "{e:#}");
            return;
        }
    };
    let _ = cfg.provenance_json();
    let redactor = sedflow::pipeline::config::Redactor::new(&cfg);
    for s in cfg.secrets().iter().filter(|s| s.len() >= 4) {
        assert!(!redactor.redact(&format!("x{s}x")).contains(s.as_str()));
    }
    if cfg.validate().is_err() {
        return;
    }
    let (names, _) = model_inputs();
    let _ = cfg.inference.settings();
    let _ = sedflow::pipeline::ingest::band_mappings(&cfg.input, names);
    let fm = sedflow::physics::ForwardModel::embedded();
    let _ = ReddeningModel::for_model(
        &cfg.prior,
        fm,
        sedflow::prior::PriorConfig::default().av_max,
    );
}

/// `pipeline.toml` sections and their keys (the real ones and a few that are not).
const TOML_KEYS: &[(&str, &[&str])] = &[
    (
        "inference",
        &[
            "samples",
            "write_samples",
            "seed",
            "min_efficiency",
            "refine",
            "pilot_samples",
            "max_sample_factor",
            "target_n_eff",
            "defensive_fraction",
            "flow_share",
            "device",
            "sample",
        ],
    ),
    ("batching", &["batch_size", "window"]),
    (
        "input",
        &[
            "format",
            "source_id_column",
            "gaia_release",
            "default_columns",
            "parallax_column",
            "parallax_error_column",
            "ebv_prior_column",
            "ebv_prior_error_column",
            "ebv_prior_map_column",
            "rows_per_part",
            "read_batch_rows",
            "parallax_zero_point",
        ],
    ),
    (
        "input.parallax",
        &["zero_point", "error_scale", "error_floor"],
    ),
    (
        "input.long",
        &["band_column", "mag_column", "error_column", "band_aliases"],
    ),
    (
        "[input.bands]",
        &["column", "band", "error", "flux_over_error", "error_floor"],
    ),
    ("prior", &["reddening_kind", "av_per_ebv", "av_sigma_floor"]),
    ("prior.maps.sfd", &["kind", "scale_error", "error_scale"]),
    ("prior.maps.x", &["kind", "scale_error", "error_scale"]),
    ("output", &["compression", "row_group_rows", "keep_columns"]),
    ("shard", &["count"]),
    ("progress", &["log_interval_s"]),
    (
        "s3",
        &[
            "endpoint",
            "region",
            "allow_http",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "max_retries",
            "retry_timeout_s",
            "connect_timeout_s",
            "request_timeout_s",
        ],
    ),
];

/// TOML values towards the edges: numbers of every sign and size, special floats, the
/// enumerations' words and others, arrays, inline tables, bad syntax.
const TOML_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "7",
    "512",
    "8192",
    "1000000",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "0.0",
    "-0.0",
    "0.5",
    "1.0",
    "0.999999",
    "-0.017",
    "1e308",
    "1e-320",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"auto\"",
    "\"wide\"",
    "\"long\"",
    "\"dr2\"",
    "\"dr3\"",
    "\"cpu\"",
    "\"cuda:7\"",
    "\"zstd\"",
    "\"none\"",
    "\"at_distance\"",
    "\"total_column\"",
    "\"gaia_g\"",
    "\"sdss_q\"",
    "\"\"",
    "\"source_id\"",
    "\"s3cr3t-k3y-value\"",
    "[]",
    "[1, 2]",
    "{}",
    "{ G = \"gaia_g\" }",
    "{ G = \"nope\" }",
    "\"\\u0000\"",
    "1979-05-27",
    "'''x'''",
    "=",
    "[",
    "\"unterminated",
];

/// A `pipeline.toml` built from sections, keys and values above (structure-aware input for
/// the config fuzz target and property test).
pub fn hostile_toml(u: &mut Unstructured) -> ArbResult<String> {
    let mut text = String::new();
    for _ in 0..u.int_in_range(0..=12)? {
        let (section, keys) = u.choose(TOML_KEYS)?;
        if u.ratio(7, 8)? {
            text += &format!("[{section}]\n"); // "[input.bands]" becomes an array of tables
        }
        for _ in 0..u.int_in_range(0..=4)? {
            let key = u.choose(keys)?;
            let value = if u.ratio(1, 10)? {
                format!("{:?}", u.arbitrary::<String>()?)
            } else {
                u.choose(TOML_VALUES)?.to_string()
            };
            text += &format!("{key} = {value}\n");
        }
    }
    Ok(text)
}

/// Fuzz target `parquet_ingest`: an odd first byte drives the structure-aware generator
/// ([`fuzz_parquet_structured`]), anything else is read as raw bytes
/// ([`fuzz_parquet_bytes`]). One target for both, so that one 30-minute run covers both
/// and the two modes share a corpus (a generated file's bytes are good raw seeds).
pub fn fuzz_parquet_ingest(data: &[u8]) {
    match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => fuzz_parquet_structured(rest),
        Some((_, rest)) => fuzz_parquet_bytes(rest),
        None => {}
    }
}

/// Raw bytes: the first four bytes choose the run configuration, the rest is read as the
/// catalogue file.
pub fn fuzz_parquet_bytes(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(4));
    if let Ok(cfg) = run_config(&mut Unstructured::new(head)) {
        check_ingest(body, &cfg, None);
    }
}

/// Structure-aware: a configuration and a hostile file built from the bytes.
pub fn fuzz_parquet_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cfg) = run_config(&mut u) else {
        return;
    };
    if let Ok(Some(file)) = hostile_parquet(&mut u) {
        check_ingest(&file.bytes, &cfg, (!file.corrupted).then_some(file.rows));
    }
}

/// Fuzz target `pipeline_toml`: an odd first byte drives the structure-aware generator,
/// anything else is read as text.
pub fn fuzz_pipeline_toml(data: &[u8]) {
    match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => {
            if let Ok(text) = hostile_toml(&mut Unstructured::new(rest)) {
                check_config(&text);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                check_config(text);
            }
        }
    }
}
