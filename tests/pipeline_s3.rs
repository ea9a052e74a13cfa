//! `sedflow run` against a real S3-compatible server (moto, started here on a free port):
//! read input, write output, resume, and no credential in anything the run produced.

use crate::pipeline_util::*;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn put(rt: &tokio::runtime::Runtime, s: &Arc<dyn ObjectStore>, key: &str, data: Vec<u8>) {
    rt.block_on(s.put(&ObjPath::from(key), PutPayload::from(data)))
        .unwrap();
}

#[test]
fn s3_input_output_resume_and_no_secret_leaks() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("survey");
    moto.create_bucket("results");
    let rt = rt();
    let input = moto.store("survey");
    let output = moto.store("results");
    let d = tmp();
    let local_in = d.path().join("in");
    std::fs::create_dir(&local_in).unwrap();
    for k in 0..3 {
        let bytes = parquet_bytes(&wide_catalogue(10_000 * (k + 1), 120), 40);
        std::fs::write(local_in.join(format!("part-{k}.parquet")), &bytes).unwrap();
        put(&rt, &input, &format!("dr3/part-{k}.parquet"), bytes);
    }
    put(&rt, &input, "dr3/readme.txt", b"not a catalogue".to_vec());
    let secret = "S3SECRET-9a8b7c6d5e4f-never-print";
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDS3TEST0001"),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    let mut everything = String::new();
    let args = [
        "--input",
        "s3://survey/dr3/*.parquet",
        "--output",
        "s3://results/run1",
        "--samples",
        "8",
        "--write-samples",
        "2",
    ];
    let o = run(&args, &env);
    everything += &text(&o);
    assert!(o.status.success(), "{}", text(&o));
    let got = objects(&rt, &output, "run1");
    let names: Vec<_> = got.keys().cloned().collect();
    // the samples tables go beside the output prefix, not into it
    assert_eq!(
        names,
        [
            "run1/part-0.parquet",
            "run1/part-1.parquet",
            "run1/part-2.parquet",
        ]
    );
    let samples: Vec<_> = objects(&rt, &output, "run1.samples").into_keys().collect();
    assert_eq!(
        samples,
        [
            "run1.samples/part-0.parquet",
            "run1.samples/part-1.parquet",
            "run1.samples/part-2.parquet"
        ]
    );
    // the same run on local files gives the same rows
    let local_out = d.path().join("local");
    let o = run(
        &[
            "--input",
            local_in.to_str().unwrap(),
            "--output",
            local_out.to_str().unwrap(),
            "--samples",
            "8",
            "--write-samples",
            "2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let local = read_dir(&local_out);
    for k in 0..3 {
        let rows = read_rows(got[&format!("run1/part-{k}.parquet")].clone());
        assert_eq!(rows.len(), 120);
        assert_eq!(rows, local[&format!("part-{k}.parquet")], "part-{k}");
    }
    // resume: remove one output, rerun: only that one is written again, identical
    rt.block_on(output.delete(&ObjPath::from("run1/part-1.parquet")))
        .unwrap();
    let o = run(&args, &env);
    let t = text(&o);
    everything += &t;
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 written, 2 already done, 0 failed"), "{t}");
    let again = objects(&rt, &output, "run1");
    assert_eq!(
        read_rows(again["run1/part-1.parquet"].clone()),
        read_rows(got["run1/part-1.parquet"].clone())
    );
    // a prefix (not a glob) lists recursively and skips non-Parquet objects
    let o = run(
        &[
            "--input",
            "s3://survey/dr3",
            "--output",
            "s3://results/run2",
            "--samples",
            "8",
        ],
        &env,
    );
    everything += &text(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(objects(&rt, &output, "run2").len(), 3);
    // failure paths print errors: a missing bucket, a corrupt object
    put(&rt, &input, "bad/x.parquet", b"PAR1 garbage".to_vec());
    let o = run(
        &[
            "--input",
            "s3://survey/bad",
            "--output",
            "s3://results/run3",
            "--samples",
            "8",
        ],
        &env,
    );
    let t = text(&o);
    everything += &t;
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("s3://survey/bad/x.parquet"), "{t}");
    let o = run(
        &[
            "--input",
            "s3://no-such-bucket/x",
            "--output",
            "s3://results/run4",
        ],
        &env,
    );
    everything += &text(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for b in objects(&rt, &output, "").values() {
        everything += &String::from_utf8_lossy(b);
    }
    assert!(everything.contains("sedflow.model_id"));
    for s in [secret, "AKIDS3TEST0001"] {
        assert!(!everything.contains(s), "{s} leaked");
    }
}
