//! S3 under faults (issue 15): `sedflow run` reads its catalogue from and writes its
//! posteriors to moto through the fault-injecting proxy of `tests/fault_proxy.rs`. Every
//! fault type (dropped connections, stalls, resets in the middle of an upload or an answer,
//! bursts of 5xx answers, lost answers) is injected into reads and into writes:
//!
//! * transient faults within the retry budget: the run succeeds and its outputs are those of
//!   a fault-free run, row for row;
//! * faults that outlast the retries, and permanent ones: the run fails with an error that
//!   names the object and says whether retrying helps; no partial or corrupt object is
//!   visible; a rerun without faults completes the catalogue, nothing lost or duplicated.
//!
//! Timeouts are short through `[s3]` (request 2 s, 5 retries) so that the whole matrix
//! takes well under a minute of waiting; outputs use small multipart parts (moto is told to
//! accept them) so that writes go through multipart uploads as large outputs do.

use crate::fault_proxy::{Fault, FaultProxy, Op, Rule};
use crate::pipeline_util::*;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX: usize = usize::MAX;

/// Short timeouts and few retries (the defaults are 30 s and 10), small upload parts.
const CONFIG: &str = r#"
[inference]
refine = false
[s3]
max_retries = 5
retry_timeout_s = 30
connect_timeout_s = 1
request_timeout_s = 2
upload_part_bytes = 4096
"#;

/// A stall longer than the request timeout.
const STALL: Fault = Fault::Stall(Duration::from_secs(4));

const READS: &[Op] = &[Op::Get];
const WRITES: &[Op] = &[Op::Put, Op::UploadPart];

/// One output object's content: posterior rows, or the samples table's batches.
#[derive(Debug, PartialEq)]
enum Content {
    Posterior(Vec<Row>),
    Samples(Vec<RecordBatch>),
}

fn content(name: &str, bytes: Bytes) -> Content {
    if name.starts_with("samples/") {
        let r = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        Content::Samples(r.map(|b| b.unwrap()).collect())
    } else {
        Content::Posterior(read_rows(bytes))
    }
}

struct Bench {
    moto: Moto,
    proxy: FaultProxy,
    output: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.proxy.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "AKIDFAULTS0001".into()),
            ("AWS_SECRET_ACCESS_KEY", "fault-secret-never-print".into()),
        ]
    }

    /// `sedflow run` through the proxy into `s3://results/<prefix>`.
    fn run(&self, prefix: &str) -> (Option<i32>, String) {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = format!("s3://results/{prefix}");
        let args = [
            "--input",
            "s3://survey/dr3",
            "--output",
            &out,
            "--samples",
            "8",
            "--write-samples",
            "2",
            "--config",
            self.config.to_str().unwrap(),
        ];
        let o = run(&args, &env);
        (o.status.code(), text(&o))
    }

    /// Every object under `results/<prefix>/`, read directly from moto: name -> content.
    fn outputs(&self, prefix: &str) -> BTreeMap<String, Content> {
        output_objects(&self.rt, &self.output, prefix)
            .into_iter()
            .map(|(name, bytes)| {
                let c = content(&name, bytes);
                (name, c)
            })
            .collect()
    }

    /// Multipart uploads started under `results/<prefix>/` or its samples location
    /// `results/<prefix>.samples/` and never completed nor aborted.
    fn open_uploads(&self, prefix: &str) -> usize {
        self.open_uploads_under(&format!("{prefix}/"))
            + self.open_uploads_under(&format!("{prefix}.samples/"))
    }

    /// Multipart uploads started under `results/<dir>` and never completed nor aborted.
    fn open_uploads_under(&self, prefix: &str) -> usize {
        use std::io::{Read, Write};
        let addr = self.moto.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /results?uploads&prefix={prefix} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        resp.matches("<UploadId>").count()
    }
}

fn setup() -> Option<Bench> {
    let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", "256")])?;
    moto.create_bucket("survey");
    moto.create_bucket("results");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = moto.store("survey");
    for k in 0..3 {
        let bytes = parquet_bytes(&wide_catalogue(1000 * (k + 1), 30), 10);
        let key = ObjPath::from(format!("dr3/part-{k}.parquet"));
        rt.block_on(input.put(&key, PutPayload::from(bytes)))
            .unwrap();
    }
    let proxy = FaultProxy::start(&moto.endpoint);
    let dir = tmp();
    let config = config(dir.path(), CONFIG);
    Some(Bench {
        output: moto.store("results"),
        moto,
        proxy,
        rt,
        config,
        _dir: dir,
    })
}

/// One line of the fault matrix.
struct Case {
    name: &'static str,
    rules: Vec<Rule>,
    /// The run must fail, with an error about `object` saying `hint`; a rerun then completes.
    fails: Option<(&'static str, &'static str)>,
}

fn case(name: &'static str, rules: Vec<Rule>) -> Case {
    Case {
        name,
        rules,
        fails: None,
    }
}

fn failing(name: &'static str, rules: Vec<Rule>, object: &'static str, hint: &'static str) -> Case {
    Case {
        name,
        rules,
        fails: Some((object, hint)),
    }
}

const TRANSIENT: &str = "transient storage failure";
const PERMANENT: &str = "permanent storage failure";

fn matrix() -> Vec<Case> {
    let on = |ops: &[Op], f: Fault, n: usize| Rule::new(ops, f, n);
    vec![
        case("read: dropped connections", vec![on(READS, Fault::Drop, 3)]),
        case("read: stalls", vec![on(READS, STALL, 2)]),
        case(
            "read: answers cut short",
            vec![on(READS, Fault::Reset, 3).after(3)],
        ),
        case(
            "read: 5xx burst",
            vec![
                on(READS, Fault::Status(503), 4),
                on(&[Op::List], Fault::Status(500), 2),
            ],
        ),
        case(
            "write: dropped connections",
            vec![on(
                &[Op::Put, Op::UploadPart, Op::CreateUpload],
                Fault::Drop,
                3,
            )],
        ),
        case("write: stalls", vec![on(WRITES, STALL, 2)]),
        case(
            "write: mid-upload resets",
            vec![on(WRITES, Fault::Reset, 3)],
        ),
        case(
            "write: 5xx burst",
            vec![on(
                &[
                    Op::Put,
                    Op::UploadPart,
                    Op::CreateUpload,
                    Op::CompleteUpload,
                ],
                Fault::Status(503),
                4,
            )],
        ),
        case(
            "write: completion answer lost",
            vec![on(&[Op::CompleteUpload], Fault::LoseAnswer, 1)],
        ),
        failing(
            "read: 5xx beyond the retries",
            vec![on(READS, Fault::Status(503), MAX).on_key("dr3/part-1")],
            "s3://survey/dr3/part-1.parquet",
            TRANSIENT,
        ),
        failing(
            "read: permanent 403",
            vec![on(READS, Fault::Status(403), MAX).on_key("dr3/part-2")],
            "s3://survey/dr3/part-2.parquet",
            PERMANENT,
        ),
        failing(
            "write: mid-upload resets beyond the retries",
            vec![on(WRITES, Fault::Reset, MAX).on_key("/part-1.parquet")],
            "part-1.parquet",
            TRANSIENT,
        ),
        failing(
            "write: 5xx beyond the retries on completion",
            vec![on(&[Op::CompleteUpload], Fault::Status(500), MAX).on_key("/part-0.parquet")],
            "part-0.parquet",
            TRANSIENT,
        ),
        failing(
            "write: permanent 403",
            vec![on(WRITES, Fault::Status(403), MAX).on_key("/part-2.parquet")],
            "part-2.parquet",
            PERMANENT,
        ),
    ]
}

/// Run one case into its own prefix; Err says what went wrong.
fn run_case(
    b: &Bench,
    k: usize,
    c: &Case,
    reference: &BTreeMap<String, Content>,
) -> Result<String, String> {
    let prefix = format!("case{k}");
    b.proxy.set_rules(c.rules.clone());
    let t = Instant::now();
    let (code, out) = b.run(&prefix);
    let secs = t.elapsed().as_secs_f64();
    let injected = b.proxy.injected();
    b.proxy.set_rules(Vec::new());
    if injected.contains(&0) {
        return Err(format!(
            "a rule injected nothing ({injected:?}): the case tests nothing\n{out}"
        ));
    }
    let got = b.outputs(&prefix);
    // whatever is visible is complete and right
    for (name, c) in &got {
        if reference.get(name) != Some(c) {
            return Err(format!(
                "{name}: visible but not the fault-free content\n{out}"
            ));
        }
    }
    if b.open_uploads(&prefix) != 0 {
        return Err(format!("multipart uploads left open under {prefix}\n{out}"));
    }
    match c.fails {
        None => {
            if code != Some(0) {
                return Err(format!("exit {code:?}\n{out}"));
            }
            if got.len() != reference.len() {
                return Err(format!(
                    "{} of {} objects\n{out}",
                    got.len(),
                    reference.len()
                ));
            }
            Ok(format!(
                "pass: exit 0, {} faults, identical outputs, {secs:.1} s",
                injected.iter().sum::<usize>()
            ))
        }
        Some((object, hint)) => {
            if code != Some(1) {
                return Err(format!("expected exit 1, got {code:?}\n{out}"));
            }
            let line = out
                .lines()
                .find(|l| l.contains("error:") && l.contains(object))
                .ok_or_else(|| format!("no error naming {object}\n{out}"))?;
            if !line.contains(hint) {
                return Err(format!("the error does not say '{hint}': {line}"));
            }
            if got.len() >= reference.len() {
                return Err(format!("the failed part is visible\n{out}"));
            }
            let (code2, out2) = b.run(&prefix);
            if code2 != Some(0) || b.outputs(&prefix) != *reference {
                return Err(format!(
                    "the rerun did not complete the catalogue: {code2:?}\n{out2}"
                ));
            }
            let done = out2
                .lines()
                .find(|l| l.contains("written,"))
                .unwrap_or("")
                .trim()
                .to_string();
            Ok(format!(
                "pass: exit 1 naming {object} ({hint}), {} faults, {secs:.1} s; rerun: {done}",
                injected.iter().sum::<usize>()
            ))
        }
    }
}

#[test]
fn s3_fault_matrix() {
    let Some(b) = setup() else { return };
    let t0 = Instant::now();
    // the fault-free reference, through the same proxy
    let (code, out) = b.run("reference");
    assert_eq!(code, Some(0), "{out}");
    let reference = b.outputs("reference");
    assert_eq!(reference.len(), 6, "{:?}", reference.keys());
    let ops: Vec<Op> = b.proxy.seen().into_iter().map(|(op, _)| op).collect();
    for op in [
        Op::Get,
        Op::List,
        Op::CreateUpload,
        Op::UploadPart,
        Op::CompleteUpload,
    ] {
        assert!(
            ops.contains(&op),
            "the fault-free run sent no {op:?}: {ops:?}"
        );
    }
    let mut report = Vec::new();
    let mut failed = 0;
    for (k, c) in matrix().iter().enumerate() {
        let r = run_case(&b, k, c, &reference);
        failed += r.is_err() as usize;
        report.push(format!(
            "{:48} {}",
            c.name,
            r.unwrap_or_else(|e| format!("FAIL: {e}"))
        ));
    }
    eprintln!(
        "S3 fault matrix ({:.0} s in all):\n{}",
        t0.elapsed().as_secs_f64(),
        report.join("\n")
    );
    assert_eq!(failed, 0, "fault cases failed:\n{}", report.join("\n"));
}
