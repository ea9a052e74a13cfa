//! Double submission (cron fired twice, a task resubmitted while its first run still goes):
//! two `sedflow run` processes on the same output, no sharding, started together or one
//! after the other has committed parts. Both succeed and the output is byte for byte a
//! single run's, every star once, posterior and samples tables alike (schemas/output.md,
//! "Double submission": commits are atomic and their bytes deterministic, so the second
//! writer of a part replaces it with identical bytes).

use crate::pipeline_util::*;
use bytes::Bytes;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILES: usize = 4;
const ROWS: usize = 400;
const CONFIG: &str = "[input]\nrows_per_part = 100\n";

fn catalogue(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..FILES {
        let b = wide_catalogue(2_000_000 * (k as i64 + 1), ROWS);
        write_parquet(&dir.join(format!("cat{k}.parquet")), &b, 100);
    }
}

fn start(input: &str, output: &str, cfg: &str, env: &[(&str, &str)]) -> Child {
    let mut c = sedflow();
    c.args(["run", "--input", input, "--output", output, "--config", cfg])
        .args([
            "--samples",
            "8",
            "--write-samples",
            "2",
            "--progress",
            "lines",
        ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a run; it must succeed. Returns its output text.
fn finish(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// `N` in the summary field `N <what>` (`N parts: W written, D already done, F failed`).
fn summary_count(t: &str, what: &str) -> usize {
    let line = t.lines().find(|l| l.contains(" parts: ")).unwrap();
    line.split([':', ','])
        .find_map(|f| f.trim().strip_suffix(what))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{what}' in {line}"))
}

/// Every file under a local output directory (relative name -> bytes).
fn local_files(dir: &Path) -> BTreeMap<String, Bytes> {
    let mut m = BTreeMap::new();
    for (sub, d) in [("", dir.to_path_buf()), ("samples/", samples_dir(dir))] {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let name = format!("{sub}{}", p.file_name().unwrap().to_string_lossy());
                m.insert(name, Bytes::from(std::fs::read(&p).unwrap()));
            }
        }
    }
    m
}

/// Every object under an S3 prefix (name relative to the prefix -> bytes).
fn s3_files(s: &Arc<dyn ObjectStore>, prefix: &str) -> BTreeMap<String, Bytes> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    output_objects(&rt, s, prefix)
}

/// The output is exactly the reference: same files (no staging leftovers), same bytes, each
/// file decodes completely, every star once.
fn assert_like_single_run(got: &BTreeMap<String, Bytes>, want: &BTreeMap<String, Bytes>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        want.len(),
        2 * FILES * ROWS / 100,
        "posterior + samples per part"
    );
    let mut ids = Vec::new();
    for (name, bytes) in got {
        assert!(
            bytes == &want[name],
            "{name}: bytes differ from a single run"
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .build()
            .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 100, "{name}");
        if !name.starts_with("samples/") {
            ids.extend(read_rows(bytes.clone()).into_iter().map(|r| r.source_id));
        }
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (ids.len(), n),
        (FILES * ROWS, FILES * ROWS),
        "stars lost or twice"
    );
}

/// Until `count()` reaches `n` (the first run has committed parts); panics after 2 minutes.
fn wait_until(n: usize, count: impl Fn() -> usize, first: &mut Child) {
    let t0 = Instant::now();
    while count() < n {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended too soon"
        );
        assert!(t0.elapsed().as_secs() < 120, "no output appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_runs_on_one_local_output_give_one_runs_bytes() {
    let d = tmp();
    let input = d.path().join("in");
    catalogue(&input);
    let cfg = config(d.path(), CONFIG);
    let (input, cfg) = (input.to_str().unwrap(), cfg.to_str().unwrap());
    let single = d.path().join("single");
    finish(start(input, single.to_str().unwrap(), cfg, &[]));
    let want = local_files(&single);
    let n_parts = want.len() / 2;

    // started together: both do (nearly) every part; the later commit replaces the earlier
    let out = d.path().join("together");
    let out_s = out.to_str().unwrap();
    let (a, b) = (start(input, out_s, cfg, &[]), start(input, out_s, cfg, &[]));
    let (ta, tb) = (finish(a), finish(b));
    let written = summary_count(&ta, "written") + summary_count(&tb, "written");
    assert!(written > n_parts, "the runs did not overlap:\n{ta}\n{tb}");
    assert_like_single_run(&local_files(&out), &want);

    // the second starts while the first is committing: it skips what is done, races the rest
    let out = d.path().join("staggered");
    let out_s = out.to_str().unwrap();
    let mut a = start(input, out_s, cfg, &[]);
    let posteriors = || {
        std::fs::read_dir(&out)
            .map(|r| {
                r.filter(|e| {
                    let n = e.as_ref().unwrap().file_name();
                    n.to_string_lossy().ends_with(".parquet")
                })
                .count()
            })
            .unwrap_or(0)
    };
    wait_until(3, posteriors, &mut a);
    let b = start(input, out_s, cfg, &[]);
    let (ta, tb) = (finish(a), finish(b));
    assert!(summary_count(&tb, "already done") >= 3, "{tb}");
    assert_eq!(summary_count(&ta, "written"), n_parts, "{ta}");
    assert_like_single_run(&local_files(&out), &want);
}

#[test]
fn two_runs_on_one_s3_output_give_one_runs_bytes() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("results");
    let store = moto.store("results");
    let d = tmp();
    let input = d.path().join("in");
    catalogue(&input);
    let cfg = config(d.path(), CONFIG);
    let (input, cfg) = (input.to_str().unwrap(), cfg.to_str().unwrap());
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    finish(start(input, "s3://results/single", cfg, &env));
    let want = s3_files(&store, "single");
    let n_parts = want.len() / 2;

    let (a, b) = (
        start(input, "s3://results/together", cfg, &env),
        start(input, "s3://results/together", cfg, &env),
    );
    let (ta, tb) = (finish(a), finish(b));
    let written = summary_count(&ta, "written") + summary_count(&tb, "written");
    assert!(written > n_parts, "the runs did not overlap:\n{ta}\n{tb}");
    assert_like_single_run(&s3_files(&store, "together"), &want);

    let mut a = start(input, "s3://results/staggered", cfg, &env);
    let posteriors = || {
        s3_files(&store, "staggered")
            .keys()
            .filter(|k| !k.starts_with("samples/"))
            .count()
    };
    wait_until(3, posteriors, &mut a);
    let b = start(input, "s3://results/staggered", cfg, &env);
    let (ta, tb) = (finish(a), finish(b));
    assert!(summary_count(&tb, "already done") >= 3, "{tb}");
    assert_eq!(summary_count(&ta, "written"), n_parts, "{ta}");
    assert_like_single_run(&s3_files(&store, "staggered"), &want);
}
