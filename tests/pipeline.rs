//! `sedflow run` end to end on local files: row conservation with bad rows, corrupt inputs,
//! kill -9 and resume, concurrent shards, the long format, config switches, secrets.

use crate::pipeline_util::*;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use bytes::Bytes;
use sedflow::posterior::flags;
use std::sync::Arc;

fn f(v: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}

/// A catalogue with one bad row of each kind (row index -> expected flags).
fn bad_catalogue() -> (arrow::record_batch::RecordBatch, Vec<u32>) {
    let nan = f64::NAN;
    let b = batch(vec![
        (
            "source_id",
            Arc::new(Int64Array::from(vec![
                Some(11),
                Some(12),
                Some(13),
                Some(14),
                Some(11),
                None,
                Some(17),
                Some(18),
                Some(19),
            ])) as ArrayRef,
        ),
        (
            "phot_g_mean_mag",
            f(vec![
                Some(15.0),
                Some(nan),
                Some(15.0),
                None,
                Some(15.0),
                Some(15.0),
                Some(15.0),
                Some(14.0),
                Some(13.0),
            ]),
        ),
        (
            "phot_g_mean_flux_over_error",
            f(vec![
                Some(500.0),
                Some(500.0),
                Some(500.0),
                None,
                Some(500.0),
                Some(500.0),
                Some(0.0),
                Some(300.0),
                Some(300.0),
            ]),
        ),
        (
            "phot_bp_mean_mag",
            f(vec![
                Some(15.5),
                Some(15.5),
                Some(15.6),
                None,
                Some(15.5),
                None,
                None,
                Some(14.5),
                Some(13.4),
            ]),
        ),
        (
            "phot_bp_mean_mag_error",
            f(vec![
                Some(0.01),
                Some(0.01),
                Some(-0.01),
                None,
                Some(0.01),
                None,
                None,
                Some(0.01),
                Some(0.01),
            ]),
        ),
        (
            "j_m",
            f(vec![
                Some(13.9),
                None,
                None,
                None,
                Some(13.9),
                None,
                None,
                Some(12.8),
                Some(12.0),
            ]),
        ),
        (
            "j_msigcom",
            f(vec![
                Some(0.03),
                None,
                None,
                None,
                Some(0.03),
                None,
                None,
                Some(nan),
                Some(0.02),
            ]),
        ),
        (
            "parallax",
            f(vec![
                Some(1.0),
                Some(1.0),
                None,
                Some(2.0),
                Some(1.0),
                None,
                None,
                Some(nan),
                Some(0.5),
            ]),
        ),
        (
            "parallax_error",
            f(vec![
                Some(0.1),
                Some(0.1),
                None,
                Some(0.1),
                Some(0.1),
                None,
                None,
                Some(0.1),
                Some(-0.2),
            ]),
        ),
        (
            "some_unknown_column",
            Arc::new(StringArray::from(vec!["a"; 9])) as ArrayRef,
        ),
    ]);
    let expect = vec![
        flags::DUPLICATE_SOURCE_ID,                                       // 11
        flags::BAD_MAGNITUDE,                                             // 12: G NaN
        flags::BAD_ERROR,                                                 // 13: BP error < 0
        flags::NO_USABLE_BANDS | flags::NOT_PROCESSED,                    // 14: no band
        flags::DUPLICATE_SOURCE_ID,                                       // 11 again
        flags::NULL_SOURCE_ID | flags::NOT_PROCESSED,                     // null id
        flags::BAD_ERROR | flags::NO_USABLE_BANDS | flags::NOT_PROCESSED, // 17: foe 0
        flags::BAD_ERROR | flags::BAD_PARALLAX, // 18: J error NaN, parallax NaN
        flags::BAD_PARALLAX,                    // 19: parallax error < 0
    ];
    (b, expect)
}

const INGEST_FLAGS: u32 = flags::NO_USABLE_BANDS
    | flags::BAD_MAGNITUDE
    | flags::BAD_ERROR
    | flags::UNKNOWN_BAND
    | flags::BAD_PARALLAX
    | flags::DUPLICATE_SOURCE_ID
    | flags::NOT_PROCESSED
    | flags::NULL_SOURCE_ID
    | flags::DUPLICATE_BAND;

#[test]
fn every_input_row_gets_one_output_row_and_corrupt_files_are_named() {
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let (bad, expect) = bad_catalogue();
    write_parquet(&input.join("a_bad.parquet"), &bad, 4);
    let good = wide_catalogue(1000, 50);
    write_parquet(&input.join("b_good.parquet"), &good, 16);
    // truncated: a good file cut in the middle; garbage: not Parquet at all
    let full = parquet_bytes(&wide_catalogue(5000, 50), 16);
    std::fs::write(input.join("c_truncated.parquet"), &full[..full.len() / 2]).unwrap();
    std::fs::write(input.join("d_garbage.parquet"), b"PAR1 this is not parquet").unwrap();
    let out = d.path().join("out");
    let o = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "16",
            "--write-samples",
            "3",
        ],
        &[],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for name in ["c_truncated.parquet", "d_garbage.parquet"] {
        assert!(
            t.lines().any(|l| l.contains("error") && l.contains(name)),
            "no error naming {name}:\n{t}"
        );
    }
    let rows = read_dir(&out);
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        ["a_bad.parquet", "b_good.parquet"],
        "{t}"
    );
    // one row per input row, in input order, with the expected ingest flags
    let a = &rows["a_bad.parquet"];
    assert_eq!(a.len(), 9);
    let ids: Vec<_> = a.iter().map(|r| r.source_id).collect();
    assert_eq!(
        ids,
        [
            Some(11),
            Some(12),
            Some(13),
            Some(14),
            Some(11),
            None,
            Some(17),
            Some(18),
            Some(19)
        ]
    );
    for (i, (r, &e)) in a.iter().zip(&expect).enumerate() {
        assert_eq!(r.flags as u32 & INGEST_FLAGS, e, "row {i}: {r:?}");
        assert!(!r.reason.is_empty(), "row {i} has flags but no reason");
        let processed = e & flags::NOT_PROCESSED == 0;
        // adaptive sampling: the flow pilot plus rounds, within the budget of 32 x 16
        let ok = if processed {
            (32..=512).contains(&r.n_samples)
        } else {
            r.n_samples == 0
        };
        assert!(ok, "row {i}: n_samples {}", r.n_samples);
        assert_eq!(r.floats[2].is_some(), processed, "teff_p50 of row {i}");
    }
    assert_eq!(a[0].n_bands, 3);
    assert!(a[0].has_parallax);
    assert_eq!(a[2].n_bands, 1, "BP dropped for its negative error");
    assert!(!a[7].has_parallax && a[7].n_bands == 2);
    let b = &rows["b_good.parquet"];
    assert_eq!(b.len(), 50);
    assert_eq!(
        b.iter().map(|r| r.source_id.unwrap()).collect::<Vec<_>>(),
        (1000..1050).collect::<Vec<_>>()
    );
    assert!(b.iter().all(|r| r.flags as u32 & INGEST_FLAGS == 0));
    // samples table, beside the output: same rows, K draws per processed star
    assert!(!out.join("samples").exists());
    let s = std::fs::read(samples_dir(&out).join("a_bad.parquet")).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(s))
        .unwrap()
        .build()
        .unwrap();
    let mut n = 0;
    for batch in r {
        let batch = batch.unwrap();
        let teff = batch.column_by_name("teff").unwrap();
        let l = arrow::array::AsArray::as_list::<i32>(teff);
        for i in 0..batch.num_rows() {
            let processed = expect[n + i] & flags::NOT_PROCESSED == 0;
            if processed && a[n + i].flags as u32 & flags::ALL_WEIGHTS_ZERO == 0 {
                assert_eq!(l.value(i).len(), 3, "row {}", n + i);
            } else {
                assert!(l.is_null(i), "row {}", n + i);
            }
        }
        n += batch.num_rows();
    }
    assert_eq!(n, 9);
    // metadata: model id and config
    let kv = kv_metadata(Bytes::from(
        std::fs::read(out.join("b_good.parquet")).unwrap(),
    ));
    assert!(kv["sedflow.model_id"].contains("forward"));
    assert!(kv["sedflow.config"].contains("\"samples\":16"));
    assert_eq!(kv["sedflow.input_rows"], "50");
    // rerun: the finished parts are skipped, the broken ones fail again
    let o2 = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "16",
            "--write-samples",
            "3",
        ],
        &[],
    );
    let t2 = text(&o2);
    assert_eq!(o2.status.code(), Some(1), "{t2}");
    assert!(t2.contains("0 written, 2 already done, 2 failed"), "{t2}");
    // and a rerun with other settings refuses to mix results
    let o3 = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "17",
        ],
        &[],
    );
    let t3 = text(&o3);
    // the whole run refuses (issue 22): no part is written beside outputs of other settings
    assert_eq!(o3.status.code(), Some(2), "{t3}");
    assert!(t3.contains("made with other settings"), "{t3}");
    assert!(t3.contains("config.inference.samples"), "{t3}");
    assert_eq!(read_dir(&out), rows);
}

#[test]
fn example_catalogue_runs_with_the_default_config() {
    let d = tmp();
    let cat = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalogue.parquet");
    let out = d.path().join("out");
    let o = run(
        &[
            "--input",
            cat,
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "16",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_dir(&out);
    let r = &rows["catalogue.parquet"];
    assert_eq!(r.len(), 200);
    assert!(r
        .iter()
        .all(|x| x.n_bands >= 1 && (32..=512).contains(&x.n_samples)));
    // `sedflow simulate` gives most, not all, stars a parallax
    let with_plx = r.iter().filter(|x| x.has_parallax).count();
    assert!(with_plx > 100 && with_plx < 200, "{with_plx}");
}

/// An intrinsic flow (issue 24; the committed models/training/intrinsic-r1) runs flow-only
/// end to end, its draws completed by the closed form: one row per star, every star with
/// weighted samples. With flow_share > 0, which such a flow cannot honour yet, the run
/// stops before any work with the reason.
#[test]
fn intrinsic_flow_runs_flow_only_and_refuses_a_flow_share() {
    // an affine flow and a spline flow
    for name in ["intrinsic-r1", "intrinsic-spline-s1"] {
        intrinsic_flow_only(&format!(
            "{}/models/training/{name}",
            env!("CARGO_MANIFEST_DIR")
        ));
    }
}

fn intrinsic_flow_only(model: &str) {
    let d = tmp();
    let cat = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalogue.parquet");
    let out = d.path().join("out");
    let cfg = config(d.path(), "[inference]\nrefine = false\nsamples = 64\n");
    let args = |out: &std::path::Path, cfg: &std::path::Path| {
        let (o, c) = (
            out.to_str().unwrap().to_string(),
            cfg.to_str().unwrap().to_string(),
        );
        [
            "--input", cat, "--model", model, "--output", &o, "--config", &c,
        ]
        .map(String::from)
    };
    let a = args(&out, &cfg);
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = &read_dir(&out)["catalogue.parquet"];
    assert_eq!(r.len(), 200);
    assert!(
        r.iter().all(|x| x.n_samples == 64),
        "flow-only: 64 draws each"
    );
    let unweighted = (flags::ALL_WEIGHTS_ZERO | flags::NOT_PROCESSED) as i64;
    let weighted = r.iter().filter(|x| x.flags & unweighted == 0).count();
    assert!(
        weighted > 190,
        "{model}: {weighted} of 200 stars with a posterior"
    );
    let cfg = config(d.path(), "[inference]\nflow_share = 0.1\n");
    let a = args(&d.path().join("out2"), &cfg);
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("intrinsic flow"), "{}", text(&o));
    assert!(!d.path().join("out2").exists() || read_dir(&d.path().join("out2")).is_empty());
}

fn multi_file_input(dir: &std::path::Path, files: usize, rows: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..files {
        let b = wide_catalogue(100_000 * (k as i64 + 1), rows);
        write_parquet(&dir.join(format!("cat{k:02}.parquet")), &b, 500);
    }
}

#[test]
fn kill_9_then_rerun_equals_an_uninterrupted_run() {
    let d = tmp();
    let input = d.path().join("in");
    multi_file_input(&input, 6, 3000);
    let cfg = config(
        d.path(),
        "[input]\nrows_per_part = 1000\n[batching]\nbatch_size = 64\nwindow = 256\n",
    );
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "48",
            "--progress",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = d.path().join("full");
    let o = sedflow().args(args(&full)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let expected = read_dir(&full);
    assert_eq!(expected.len(), 18, "6 files x 3 parts");

    let killed = d.path().join("killed");
    let mut child = sedflow()
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_dir(&killed)
            .map(|r| {
                r.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".parquet")
                })
                .count()
            })
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(t0.elapsed().as_secs() < 120, "no output appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGKILL: no chance to clean up
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = read_dir(&killed);
    assert!(
        partial.len() < expected.len(),
        "the run finished before the kill; the test needs a slower run"
    );
    // whatever is visible is complete and correct
    for (name, rows) in &partial {
        assert_eq!(rows, &expected[name], "{name} differs after the kill");
    }
    let o = sedflow().args(args(&killed)).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} already done", partial.len())),
        "rerun did not skip the finished parts:\n{t}"
    );
    let resumed = read_dir(&killed);
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, rows) in &expected {
        assert_eq!(&resumed[name], rows, "{name}");
        // same command, same input: byte-identical files (no timestamps, no run ids)
        assert!(
            std::fs::read(full.join(name)).unwrap() == std::fs::read(killed.join(name)).unwrap(),
            "{name}: bytes differ"
        );
    }
    let mut ids: Vec<i64> = resumed
        .values()
        .flatten()
        .map(|r| r.source_id.unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate rows after resume");
    assert_eq!(n, 18_000);
}

fn shard_run(
    input: &str,
    out: &str,
    cfg: &str,
    i: usize,
    n: usize,
    slurm: bool,
) -> std::process::Child {
    let mut c = sedflow();
    c.args([
        "run",
        "--config",
        cfg,
        "--input",
        input,
        "--output",
        out,
        "--samples",
        "8",
        "--progress",
        "off",
    ]);
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "JOB_COMPLETION_INDEX",
    ] {
        c.env_remove(k);
    }
    if slurm {
        // an array declared as --array=1-N
        c.env("SLURM_ARRAY_TASK_ID", (i + 1).to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", n.to_string());
    } else {
        c.args([
            "--shard-index",
            &i.to_string(),
            "--shard-count",
            &n.to_string(),
        ]);
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn four_concurrent_shards_cover_every_star_exactly_once() {
    let d = tmp();
    // (a) more files than shards: split by file; (b) one file: split by row groups
    let many = d.path().join("many");
    multi_file_input(&many, 7, 400);
    let one = d.path().join("one");
    std::fs::create_dir(&one).unwrap();
    write_parquet(
        &one.join("big.parquet"),
        &wide_catalogue(7_000_000, 2000),
        250,
    );
    let cfg = config(d.path(), "[input]\nrows_per_part = 250\n");
    let cfg = cfg.to_str().unwrap();
    for (input, n_rows) in [(&many, 2800usize), (&one, 2000)] {
        let single = d.path().join(format!(
            "{}-single",
            input.file_name().unwrap().to_string_lossy()
        ));
        let o = shard_run(
            input.to_str().unwrap(),
            single.to_str().unwrap(),
            cfg,
            0,
            1,
            false,
        )
        .wait_with_output()
        .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let sharded = d.path().join(format!(
            "{}-sharded",
            input.file_name().unwrap().to_string_lossy()
        ));
        let children: Vec<_> = (0..4)
            .map(|i| {
                shard_run(
                    input.to_str().unwrap(),
                    sharded.to_str().unwrap(),
                    cfg,
                    i,
                    4,
                    i >= 2,
                )
            })
            .collect();
        let mut written = 0;
        for c in children {
            let o = c.wait_with_output().unwrap();
            let t = text(&o);
            assert!(o.status.success(), "{t}");
            let w: usize = t
                .lines()
                .find_map(|l| l.split(" parts: ").nth(1))
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no summary in {t}"));
            written += w;
            assert!(w > 0, "a shard got no work: {t}");
        }
        let a = read_dir(&single);
        let b = read_dir(&sharded);
        assert_eq!(written, a.len(), "every part written by exactly one shard");
        assert_eq!(a, b, "sharded output differs from the single-process run");
        let mut ids: Vec<i64> = b.values().flatten().map(|r| r.source_id.unwrap()).collect();
        assert_eq!(ids.len(), n_rows);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n_rows, "a star was processed twice");
    }
}

#[test]
fn long_format_groups_observations_per_star() {
    let d = tmp();
    let input = d.path().join("long.parquet");
    let ids = vec![
        Some(5),
        Some(6),
        Some(5),
        Some(5),
        Some(6),
        Some(7),
        None,
        Some(8),
        Some(8),
    ];
    let bands = vec![
        "gaia_g",
        "gaia_g",
        "gaia_bp",
        "parallax",
        "nonsense_band",
        "tmass_ks",
        "gaia_g",
        "gaia_g",
        "G_alias",
    ];
    let mags = vec![15.0, 16.0, 15.4, 1.2, 3.0, 11.0, 14.0, 13.0, 13.05];
    let errs = vec![0.01, 0.01, 0.02, 0.1, 0.1, f64::NAN, 0.01, 0.01, 0.01];
    let b = batch(vec![
        ("source_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("band", Arc::new(StringArray::from(bands)) as ArrayRef),
        ("mag", Arc::new(Float64Array::from(mags)) as ArrayRef),
        ("mag_error", Arc::new(Float64Array::from(errs)) as ArrayRef),
    ]);
    write_parquet(&input, &b, 1000);
    let cfg = config(
        d.path(),
        "[input.long]\nband_aliases = { G_alias = \"gaia_g\" }\n",
    );
    let out = d.path().join("out");
    let o = run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "8",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = &read_dir(&out)["long.parquet"];
    let got: Vec<_> = r
        .iter()
        .map(|x| {
            (
                x.source_id,
                x.n_bands,
                x.has_parallax,
                x.flags as u32 & INGEST_FLAGS,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(5), 2, true, 0),
            (Some(6), 1, false, flags::UNKNOWN_BAND),
            (
                Some(7),
                0,
                false,
                flags::BAD_ERROR | flags::NO_USABLE_BANDS | flags::NOT_PROCESSED
            ),
            (None, 0, false, flags::NULL_SOURCE_ID | flags::NOT_PROCESSED),
            (Some(8), 1, false, flags::DUPLICATE_BAND),
        ]
    );
    assert!(r[1].reason.contains("nonsense_band"), "{}", r[1].reason);
}

#[test]
fn dr2_switch_and_column_mapping_change_the_bands_used() {
    let d = tmp();
    let input = d.path().join("c.parquet");
    let mut cols: Vec<(&str, ArrayRef)> = Vec::new();
    let base = wide_catalogue(1, 20);
    for (i, fld) in base.schema().fields().iter().enumerate() {
        cols.push((
            Box::leak(fld.name().clone().into_boxed_str()),
            base.column(i).clone(),
        ));
    }
    cols.push(("my_u", f(vec![Some(19.0); 20])));
    cols.push(("my_u_err", f(vec![Some(0.05); 20])));
    write_parquet(&input, &batch(cols), 100);
    let go = |name: &str, toml: &str| {
        let cfg = config(d.path(), toml);
        let out = d.path().join(name);
        let o = run(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--samples",
                "8",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        let kv = kv_metadata(Bytes::from(std::fs::read(out.join("c.parquet")).unwrap()));
        (read_dir(&out).remove("c.parquet").unwrap(), kv)
    };
    let (dr3, _) = go("dr3", "");
    let (dr2, kv2) = go("dr2", "[input]\ngaia_release = \"dr2\"\n");
    assert!(kv2["sedflow.config"].contains("\"gaia_release\":\"dr2\""));
    assert_eq!(dr3.len(), 20);
    assert!(dr3.iter().zip(&dr2).all(|(a, b)| a.n_bands == b.n_bands));
    assert_ne!(dr3, dr2, "DR2 passbands give other posteriors");
    let (sdss, _) = go(
        "sdss",
        "[[input.bands]]\ncolumn = \"my_u\"\nerror = \"my_u_err\"\nband = \"sdss_u\"\n",
    );
    assert!(dr3
        .iter()
        .zip(&sdss)
        .all(|(a, b)| b.n_bands == a.n_bands + 1));
    // a mapping to a band the model does not have is a configuration error before any work
    let cfg = config(
        d.path(),
        "[[input.bands]]\ncolumn = \"my_u\"\nband = \"hst_f999w\"\n",
    );
    let o = run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            d.path().join("x").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("hst_f999w") && text(&o).contains("gaia_g"),
        "{}",
        text(&o)
    );
}

#[test]
fn results_do_not_depend_on_batch_size_and_repeat_exactly() {
    let d = tmp();
    let input = d.path().join("c.parquet");
    write_parquet(&input, &wide_catalogue(42, 300), 64);
    let go = |name: &str, bs: &str, seed: &str| {
        let out = d.path().join(name);
        let o = run(
            &[
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--samples",
                "8",
                "--batch-size",
                bs,
                "--seed",
                seed,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        read_dir(&out)
    };
    let a = go("a", "7", "1");
    assert_eq!(a, go("b", "512", "1"));
    assert_ne!(a, go("c", "7", "2"));
}

#[test]
fn secrets_never_appear_in_output_logs_or_metadata() {
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_parquet(&input.join("a.parquet"), &wide_catalogue(1, 30), 10);
    std::fs::write(input.join("broken.parquet"), b"garbage").unwrap();
    let env_secret = "ENVSECRET-7f3a9c1e-do-not-print";
    let toml_secret = "TOMLSECRET-b4d2e8f0-do-not-print";
    let token = "TOKENSECRET-1c9e-do-not-print";
    let cfg = config(
        d.path(),
        &format!(
            "[s3]\naccess_key_id = \"AKIDTOML0001\"\nsecret_access_key = \"{toml_secret}\"\nsession_token = \"{token}\"\nmax_retries = 0\n"
        ),
    );
    let out = d.path().join("out");
    let out2 = d.path().join("out2");
    let mut everything = String::new();
    for (dir, extra) in [(&out, vec![]), (&out2, vec!["--write-samples", "2"])] {
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            dir.to_str().unwrap(),
            "--samples",
            "8",
        ];
        args.extend(extra);
        let o = run(
            &args,
            &[
                ("AWS_SECRET_ACCESS_KEY", env_secret),
                ("AWS_SESSION_TOKEN", token),
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        everything += &text(&o);
    }
    // an error that echoes the configuration: an s3 input that cannot be reached
    let o = run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            &format!("s3://{toml_secret}/x"),
            "--output",
            out.to_str().unwrap(),
        ],
        &[
            ("AWS_SECRET_ACCESS_KEY", env_secret),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(
        t.contains("***"),
        "the bucket name (planted secret) is redacted: {t}"
    );
    everything += &t;
    let mut files = 0;
    for dir in [out.clone(), out2.clone(), samples_dir(&out2)] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                files += 1;
                everything += &String::from_utf8_lossy(&std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(files >= 3);
    for s in [env_secret, toml_secret, token, "AKIDTOML0001"] {
        assert!(!everything.contains(s), "secret {s} leaked");
    }
    // the files are really there and readable
    assert!(everything.contains("sedflow.config"));
}

#[test]
fn schemas_document_every_column_flag_and_default_mapping() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::fs::read_to_string(format!("{root}/schemas/output.md")).unwrap();
    for (bit, name) in sedflow::pipeline::FLAG_NAMES {
        let row = format!("| {} | {bit} | `{name}` |", bit.trailing_zeros());
        assert!(
            out.contains(&row),
            "schemas/output.md lacks the flag row {row}"
        );
    }
    let layout = sedflow::pipeline::sink::PosteriorLayout {
        chain_diagnostics: true,
        predict_bands: vec!["lsst_g".into()],
    };
    let derived = sedflow::posterior::derived::PHYSICAL_NAMES;
    let extinction = sedflow::posterior::derived::EXTINCTION_NAMES;
    for c in layout.columns() {
        let documented = out.contains(&format!("`{c}`"))
            || c.split_once('_').is_some_and(|(p, s)| {
                sedflow::physics::PARAM_NAMES.contains(&p) && out.contains(&format!("{{p}}_{s}"))
            })
            || c.rsplit_once('_')
                .is_some_and(|(d, s)| derived.contains(&d) && out.contains(&format!("{{d}}_{s}")))
            || c.rsplit_once('_').is_some_and(|(x, s)| {
                extinction.contains(&x) && out.contains(&format!("{{x}}_{s}"))
            })
            || c.strip_prefix("pred_lsst_g_")
                .is_some_and(|s| out.contains(&format!("pred_{{band}}_{s}")));
        assert!(documented, "schemas/output.md does not document column {c}");
    }
    let inp = std::fs::read_to_string(format!("{root}/schemas/input.md")).unwrap();
    for b in
        sedflow::pipeline::config::default_band_columns(sedflow::pipeline::config::GaiaRelease::Dr3)
    {
        let ps1 = b.column.ends_with("_mean_psf_mag");
        assert!(
            ps1 || (inp.contains(&format!("`{}`", b.column))
                && inp.contains(&format!("`{}`", b.band))),
            "schemas/input.md lacks {} -> {}",
            b.column,
            b.band
        );
        if let Some(e) = &b.error {
            assert!(
                ps1 || inp.contains(&format!("`{e}`")),
                "schemas/input.md lacks {e}"
            );
        }
    }
}

#[test]
fn committed_example_configs_parse_and_resolve() {
    let root = env!("CARGO_MANIFEST_DIR");
    let names: Vec<String> = sedflow::physics::ForwardModel::embedded()
        .bands()
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    for f in ["pipeline.toml", "scripts/pipeline-gaia-dr2.toml"] {
        let c =
            sedflow::pipeline::config::PipelineConfig::load(&std::path::Path::new(root).join(f))
                .unwrap_or_else(|e| panic!("{f}: {e:#}"));
        c.validate().unwrap();
        sedflow::pipeline::ingest::band_mappings(&c.input, &names)
            .unwrap_or_else(|e| panic!("{f}: {e:#}"));
    }
}

#[test]
fn corrupt_data_page_names_the_file_and_row_group_and_writes_nothing_for_it() {
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_parquet(&input.join("a_ok.parquet"), &wide_catalogue(1, 40), 10);
    // zstd pages, 4 row groups; garbage in row group 2, footer intact
    let b = wide_catalogue(100, 400);
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(100))
        .build();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, b.schema(), Some(props)).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let md = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(
        buf.clone(),
    ))
    .unwrap()
    .metadata()
    .clone();
    let rg2 = md.row_group(2).column(1);
    let (start, len) = rg2.byte_range();
    // the page header (thrift) at the start of the chunk: undecodable for any reader (garbage
    // inside plain float data could not be detected without page checksums)
    for k in 0..len.min(16) {
        buf[(start + k) as usize] ^= 0x5A;
    }
    std::fs::write(input.join("b_corrupt.parquet"), &buf).unwrap();
    let out = d.path().join("out");
    let o = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "8",
        ],
        &[],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.lines().any(|l| l.contains("error")
            && l.contains("b_corrupt.parquet")
            && l.contains("row group 2")),
        "{t}"
    );
    let rows = read_dir(&out);
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["a_ok.parquet"]);
    assert_eq!(rows["a_ok.parquet"].len(), 40);
    // nothing staged is left visible, and a rerun retries only the broken file
    let o = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "8",
        ],
        &[],
    );
    assert!(
        text(&o).contains("0 written, 1 already done, 1 failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn output_inside_the_input_directory_is_refused() {
    let d = tmp();
    write_parquet(&d.path().join("a.parquet"), &wide_catalogue(1, 5), 10);
    let o = run(
        &[
            "--input",
            d.path().to_str().unwrap(),
            "--output",
            d.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("inside the input directory"),
        "{}",
        text(&o)
    );
}

#[test]
fn bench_pipeline_runs_simulate_then_run_and_reports_every_figure() {
    let d = tmp();
    let work = d.path().join("bench");
    let o = sedflow()
        .args([
            "bench",
            "pipeline",
            "--stars",
            "300",
            "--samples",
            "16",
            "--mcmc",
            "1",
        ])
        .arg("--work-dir")
        .arg(&work)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for needle in [
        "stars/s",
        "proposal samples/s",
        "peak RSS",
        "busy time by stage: read",
        "flow pilot",
        "mode search",
        "likelihood+mixture",
        "write",
        "effective samples/s",
        "time per effective sample",
        "within 0.5",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    // the run wrote one row per catalogue star
    let rows = read_dir(&work.join("run-300-seed11-16"));
    assert_eq!(rows["simulate-300-seed11-full.parquet"].len(), 300);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("run-summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["stars"], 300);
}
