//! Helpers for the `sedflow run` tests: tiny Gaia-style catalogues, running the binary,
//! reading the outputs back row by row (exact values), and a moto S3 server.

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Float32Type, Int16Type, Int32Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

/// The binary under test.
pub fn sedflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sedflow"))
}

/// Run `sedflow run` with args and extra env; returns the process output.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = sedflow();
    c.arg("run").args(args).arg("--progress").arg("lines");
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "JOB_COMPLETION_INDEX",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running sedflow")
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A simple wide catalogue: `n` stars with ids from `first_id`, Gaia G/BP/RP (flux over
/// error), 2MASS J and a parallax, plausible main-sequence-like colours.
pub fn wide_catalogue(first_id: i64, n: usize) -> RecordBatch {
    let mut ids = Vec::new();
    let (mut g, mut bp, mut rp, mut foe, mut j, mut je, mut plx, mut plxe) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for i in 0..n {
        let x = ((i as f64 + first_id as f64) * 0.618_033_988_75).fract();
        let y = ((i as f64 + first_id as f64) * 0.414_213_562_37).fract();
        let gm = 12.0 + 6.0 * x;
        let col = 0.6 + 1.2 * y;
        ids.push(first_id + i as i64);
        g.push(Some(gm));
        bp.push(Some(gm + 0.45 * col));
        rp.push(Some(gm - 0.55 * col));
        foe.push(Some(2000.0 / (1.0 + x * 20.0)));
        j.push(if i % 3 == 0 {
            None
        } else {
            Some(gm - 1.4 * col)
        });
        je.push(if i % 3 == 0 { None } else { Some(0.03) });
        plx.push(Some(0.3 + 2.0 * (1.0 - x)));
        plxe.push(Some(0.05 + 0.1 * x));
    }
    let f = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
    batch(vec![
        ("source_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("phot_g_mean_mag", f(g)),
        ("phot_g_mean_flux_over_error", f(foe.clone())),
        ("phot_bp_mean_mag", f(bp)),
        ("phot_bp_mean_flux_over_error", f(foe.clone())),
        ("phot_rp_mean_mag", f(rp)),
        ("phot_rp_mean_flux_over_error", f(foe)),
        ("j_m", f(j)),
        ("j_msigcom", f(je)),
        ("parallax", f(plx)),
        ("parallax_error", f(plxe)),
    ])
}

/// A record batch from named columns (all nullable).
pub fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// Parquet bytes of a batch with `rows_per_group` rows per row group.
pub fn parquet_bytes(b: &RecordBatch, rows_per_group: usize) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, b.schema(), Some(props)).unwrap();
    w.write(b).unwrap();
    w.close().unwrap();
    buf
}

/// Write a batch as a Parquet file.
pub fn write_parquet(path: &Path, b: &RecordBatch, rows_per_group: usize) {
    std::fs::write(path, parquet_bytes(b, rows_per_group)).unwrap();
}

/// One output row with exact values (floats as bit patterns, None = null).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub source_id: Option<i64>,
    pub floats: Vec<Option<u32>>,
    pub n_bands: i16,
    pub has_parallax: bool,
    pub n_samples: i32,
    pub flags: i64,
    pub reason: String,
}

/// Rows of a posterior Parquet file, in file order.
/// All batches of a Parquet file.
pub fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let b = Bytes::from(std::fs::read(path).unwrap());
    ParquetRecordBatchReaderBuilder::try_new(b)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

pub fn read_rows(bytes: Bytes) -> Vec<Row> {
    let r = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let sid = b
            .column_by_name("source_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let floats: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.data_type() == &DataType::Float32)
            .map(|(i, _)| b.column(i).as_primitive::<Float32Type>().clone())
            .collect();
        let nb = b
            .column_by_name("n_bands")
            .unwrap()
            .as_primitive::<Int16Type>();
        let hp = b.column_by_name("has_parallax").unwrap().as_boolean();
        let ns = b
            .column_by_name("n_samples")
            .unwrap()
            .as_primitive::<Int32Type>();
        let fl = b
            .column_by_name("flags")
            .unwrap()
            .as_primitive::<Int64Type>();
        let fr = b.column_by_name("flag_reason").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push(Row {
                source_id: (!sid.is_null(i)).then(|| sid.value(i)),
                floats: floats
                    .iter()
                    .map(|c| (!c.is_null(i)).then(|| c.value(i).to_bits()))
                    .collect(),
                n_bands: nb.value(i),
                has_parallax: hp.value(i),
                n_samples: ns.value(i),
                flags: fl.value(i),
                reason: fr.value(i).to_string(),
            });
        }
    }
    out
}

/// All `*.parquet` files directly in a local output directory: name -> rows.
pub fn read_dir(dir: &Path) -> BTreeMap<String, Vec<Row>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_file() && name.ends_with(".parquet") {
            m.insert(name, read_rows(Bytes::from(std::fs::read(&p).unwrap())));
        }
    }
    m
}

/// Key-value metadata of a Parquet file.
pub fn kv_metadata(bytes: Bytes) -> BTreeMap<String, String> {
    let r = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    r.metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh temporary directory.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Write a config file and return its path.
pub fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A running moto S3 server (killed on drop).
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Start moto on a free port; None (with a loud message) when it is not installed,
    /// unless SEDFLOW_REQUIRE_S3_TESTS is set (CI), where that is a failure.
    pub fn start() -> Option<Moto> {
        Moto::start_with_env(&[])
    }

    /// [`Moto::start`] with extra environment for the server (e.g. moto's
    /// `S3_UPLOAD_PART_MIN_SIZE`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Option<Moto> {
        let bin = std::env::var("SEDFLOW_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "S3 TEST SKIPPED: cannot start moto_server ({bin}): {e}. Run ./scripts/test.sh, which installs moto[server] into target/test-venv."
                );
                if std::env::var_os("SEDFLOW_REQUIRE_S3_TESTS").is_some() {
                    panic!("{msg} (SEDFLOW_REQUIRE_S3_TESTS is set)");
                }
                eprintln!("\n!!!!! {msg}\n");
                return None;
            }
        };
        let m = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed().as_secs() < 60,
                "moto_server did not start listening on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(m)
    }

    /// Create a bucket (plain HTTP PUT; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
    }

    /// An object_store client for a bucket.
    pub fn store(&self, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(bucket)
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .build()
                .unwrap(),
        )
    }
}

/// The samples location beside a local output directory (`<out>.samples`).
pub fn samples_dir(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.samples", out.display()))
}

/// The objects of an S3 output `prefix` and of its samples location `<prefix>.samples`,
/// named relative to them, samples tables as `samples/<name>`.
pub fn output_objects(
    rt: &tokio::runtime::Runtime,
    s: &Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> BTreeMap<String, Bytes> {
    let mut m = BTreeMap::new();
    for (dir, name_prefix) in [
        (prefix.to_string(), ""),
        (format!("{prefix}.samples"), "samples/"),
    ] {
        for (key, b) in objects(rt, s, &dir) {
            let name = key.strip_prefix(&format!("{dir}/")).unwrap();
            m.insert(format!("{name_prefix}{name}"), b);
        }
    }
    m
}

/// Every object under an S3 prefix: key -> bytes.
pub fn objects(
    rt: &tokio::runtime::Runtime,
    s: &Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> BTreeMap<String, Bytes> {
    use futures::TryStreamExt;
    rt.block_on(async {
        let metas: Vec<_> = s
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        let mut m = BTreeMap::new();
        for meta in metas {
            let b = object_store::ObjectStoreExt::get(s.as_ref(), &meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            m.insert(meta.location.to_string(), b);
        }
        m
    })
}
