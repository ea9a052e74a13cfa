//! The posterior table as its readers see it (issue 23): kept input columns, the extinction
//! columns, units and descriptions for astropy, and the output directory read whole by
//! pyarrow, polars and DuckDB (pinned, installed by scripts/test.sh into
//! target/readers-venv; without them that test skips loudly, unless
//! SEDFLOW_REQUIRE_READER_TESTS is set (CI), where it fails).

use crate::pipeline_util::*;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    UInt8Array,
};
use arrow::datatypes::Float32Type;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// Columns kept in these tests: one of each kind, with nulls.
const KEPT: [&str; 6] = [
    "ra",
    "designation",
    "in_cluster",
    "quality",
    "tile",
    "phot_g_mean_mag",
];

/// [`wide_catalogue`] plus columns of several types, with nulls.
fn catalogue(first_id: i64, n: usize) -> RecordBatch {
    let base = wide_catalogue(first_id, n);
    let mut cols: Vec<(String, ArrayRef)> = base
        .schema()
        .fields()
        .iter()
        .zip(base.columns())
        .map(|(f, a)| (f.name().clone(), a.clone()))
        .collect();
    let ids = 0..n as i64;
    let extra: [(&str, ArrayRef); 5] = [
        (
            "ra",
            Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|i| i as f64 * 0.5),
            )),
        ),
        (
            "designation",
            Arc::new(StringArray::from_iter(ids.clone().map(|i| {
                (i % 4 != 1).then(|| format!("Gaia DR3 {}", first_id + i))
            }))),
        ),
        (
            "in_cluster",
            Arc::new(BooleanArray::from_iter(
                ids.clone().map(|i| (i % 5 != 2).then_some(i % 2 == 0)),
            )),
        ),
        (
            "quality",
            Arc::new(Int32Array::from_iter(
                ids.clone().map(|i| (i % 3 != 0).then_some(i as i32 - 7)),
            )),
        ),
        (
            "tile",
            Arc::new(UInt8Array::from_iter_values(ids.map(|i| (i % 7) as u8))),
        ),
    ];
    cols.extend(extra.into_iter().map(|(n, a)| (n.to_string(), a)));
    batch(cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())
}

/// Column `name` of the posterior parts `names` of `out`, concatenated.
fn column(out: &Path, names: &[String], name: &str) -> ArrayRef {
    let mut parts = Vec::new();
    for n in names {
        for b in read_batches(&out.join(n)) {
            parts.push(b.column_by_name(name).unwrap().clone());
        }
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    arrow::compute::concat(&refs).unwrap()
}

fn run_args<'a>(input: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--input", input, "--output", out, "--samples", "8"];
    v.extend(extra);
    v
}

#[test]
fn kept_columns_keep_their_types_and_nulls_and_survive_resume() {
    let d = tmp();
    let input = d.path().join("cat.parquet");
    let cat = catalogue(1, 30);
    write_parquet(&input, &cat, 10);
    let cfg = config(d.path(), "[input]\nrows_per_part = 10\n");
    let out = d.path().join("out");
    let (i, o_s, c) = (
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    let keep = KEPT.join(",");
    let args = run_args(i, o_s, &["--config", c, "--keep-columns", &keep]);
    let o = run(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = (0..3).map(|k| format!("cat.part-{k:04}.parquet")).collect();
    let check = || {
        for k in KEPT {
            let got = column(&out, &names, k);
            let want = cat.column_by_name(k).unwrap();
            assert_eq!(got.data_type(), want.data_type(), "{k}");
            assert_eq!(got.as_ref(), want.as_ref(), "{k}: values or nulls differ");
        }
        // after the posterior table's own columns, in the order asked for
        let schema = read_batches(&out.join(&names[0]))[0].schema();
        let n = schema.fields().len();
        let tail: Vec<&str> = schema.fields()[n - KEPT.len()..]
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(tail, KEPT);
    };
    check();
    // resume: a lost part is rewritten with its kept columns, the others are reused
    std::fs::remove_file(out.join(&names[1])).unwrap();
    let o = run(&args, &[]);
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("1 written, 2 already done"),
        "{t}"
    );
    check();
    // another list of kept columns is another table: the rerun refuses, naming the key
    let o = run(
        &run_args(i, o_s, &["--config", c, "--keep-columns", "ra"]),
        &[],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("config.output.keep_columns"), "{t}");
}

#[test]
fn kept_columns_that_clash_or_are_missing_are_errors_before_any_work() {
    let d = tmp();
    let input = d.path().join("cat.parquet");
    write_parquet(&input, &catalogue(1, 5), 10);
    let i = input.to_str().unwrap();
    for (keep, named) in [
        ("ra,teff_p50", "teff_p50"),
        ("ag_p50", "ag_p50"),
        ("source_id", "source_id"),
        ("ra,no_such_column", "no_such_column"),
        ("ra,ra", "ra"),
    ] {
        let out = d.path().join(format!("out-{named}"));
        let o = run(
            &run_args(i, out.to_str().unwrap(), &["--keep-columns", keep]),
            &[],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{keep}: {t}");
        assert!(t.contains(named), "{keep}: {t}");
        if named == "no_such_column" {
            assert!(t.contains("cat.parquet"), "the file is named: {t}");
        }
        let written = std::fs::read_dir(&out).map(|r| r.count()).unwrap_or(0);
        assert_eq!(written, 0, "{keep}: nothing written");
    }
}

#[test]
fn a_kept_column_must_have_one_type_in_every_input_file() {
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let a = catalogue(1, 5);
    write_parquet(&input.join("a.parquet"), &a, 10);
    // b.parquet: the same catalogue with `quality` as int64
    let schema = a.schema();
    let cols: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .zip(a.columns())
        .map(|(f, c)| match f.name().as_str() {
            "quality" => (
                "quality",
                arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).unwrap(),
            ),
            n => (n, c.clone()),
        })
        .collect();
    write_parquet(&input.join("b.parquet"), &batch(cols), 10);
    let out = d.path().join("out");
    let o = run(
        &run_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            &["--keep-columns", "ra,quality"],
        ),
        &[],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("quality") && t.contains("b.parquet") && t.contains("a.parquet"),
        "{t}"
    );
    // the same column kept from files that agree is fine
    let o = run(
        &run_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            &["--keep-columns", "ra"],
        ),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn long_format_keeps_the_first_observation_rows_values() {
    let d = tmp();
    let input = d.path().join("long.parquet");
    let ids = vec![Some(5), Some(6), Some(5), None, Some(6)];
    let b = batch(vec![
        ("source_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        (
            "band",
            Arc::new(StringArray::from(vec![
                "gaia_g", "gaia_g", "gaia_bp", "gaia_g", "gaia_rp",
            ])) as ArrayRef,
        ),
        (
            "mag",
            Arc::new(Float64Array::from(vec![15.0, 16.0, 15.4, 14.0, 15.2])) as ArrayRef,
        ),
        (
            "mag_error",
            Arc::new(Float64Array::from(vec![0.01; 5])) as ArrayRef,
        ),
        (
            "field",
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("c"),
                Some("d"),
                Some("e"),
            ])) as ArrayRef,
        ),
    ]);
    write_parquet(&input, &b, 100);
    let out = d.path().join("out");
    let o = run(
        &run_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            &["--keep-columns", "field"],
        ),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let got = column(&out, &["long.parquet".into()], "field");
    // stars 5, 6 and the null-id row, in order of first appearance
    let got: Vec<Option<&str>> = got.as_string::<i32>().iter().collect();
    assert_eq!(got, [Some("a"), None, Some("d")]);
}

#[test]
fn extinction_columns_are_ordered_and_units_are_in_the_metadata() {
    let d = tmp();
    let input = d.path().join("cat.parquet");
    write_parquet(&input, &wide_catalogue(1, 12), 100);
    let out = d.path().join("out");
    let o = run(
        &run_args(input.to_str().unwrap(), out.to_str().unwrap(), &[]),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let names = ["cat.parquet".to_string()];
    let q = |c: &str| -> Vec<f32> {
        column(&out, &names, c)
            .as_primitive::<Float32Type>()
            .iter()
            .map(|x| x.expect("every star has a posterior"))
            .collect()
    };
    let [ag, abp, arp, e] = ["ag", "abp", "arp", "ebpminrp"].map(|x| {
        let v = [
            q(&format!("{x}_p16")),
            q(&format!("{x}_p50")),
            q(&format!("{x}_p84")),
        ];
        for (i, ((lo, mid), hi)) in v[0].iter().zip(&v[1]).zip(&v[2]).enumerate() {
            assert!(lo <= mid && mid <= hi, "{x} quantiles of star {i}");
        }
        v
    });
    for i in 0..ag[1].len() {
        assert!(arp[1][i] >= 0.0 && ag[1][i] >= arp[1][i] && abp[1][i] >= ag[1][i]);
        assert!(e[1][i] >= 0.0 && e[1][i] <= abp[2][i]);
    }
    let kv = kv_metadata(Bytes::from(std::fs::read(out.join(&names[0])).unwrap()));
    let yaml = &kv["table_meta_yaml"];
    for want in [
        r#"{name: "teff_p50", datatype: float32, unit: "K", "#,
        r#"{name: "ag_p50", datatype: float32, unit: "mag", "#,
        r#"{name: "luminosity_p50", datatype: float32, unit: "solLum", "#,
        r#"{name: "flags", datatype: int64, description: "#,
    ] {
        assert!(yaml.contains(want), "{want} not in\n{yaml}");
    }
    assert!(kv["table::len::flag_reason"].parse::<usize>().unwrap() >= 1);
}

/// The pinned readers' Python (scripts/test.sh exports it), or None with a loud message.
fn readers_python() -> Option<String> {
    let py = std::env::var("SEDFLOW_READERS_PYTHON").ok();
    let ok = py.as_ref().is_some_and(|p| {
        std::process::Command::new(p)
            .args(["-c", "import astropy, pyarrow, polars, duckdb"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if ok {
        return py;
    }
    let msg = format!(
        "READERS TEST SKIPPED: no Python with astropy, pyarrow, polars and duckdb (SEDFLOW_READERS_PYTHON={py:?}). Run ./scripts/test.sh, which installs them into target/readers-venv."
    );
    if std::env::var_os("SEDFLOW_REQUIRE_READER_TESTS").is_some() {
        panic!("{msg} (SEDFLOW_REQUIRE_READER_TESTS is set)");
    }
    eprintln!("\n!!!!! {msg}\n");
    None
}

#[test]
fn the_output_directory_reads_as_the_posterior_table_in_pyarrow_polars_duckdb_and_astropy() {
    let Some(py) = readers_python() else { return };
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_parquet(&input.join("a.parquet"), &catalogue(1, 25), 10);
    write_parquet(&input.join("b.parquet"), &catalogue(100, 7), 10);
    let cfg = config(d.path(), "[input]\nrows_per_part = 10\n");
    let out = d.path().join("out");
    let keep = KEPT.join(",");
    let o = run(
        &run_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--keep-columns",
                &keep,
                "--write-samples",
                "4",
            ],
        ),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(samples_dir(&out).join("a.part-0000.parquet").is_file());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/readers/check_outputs.py"
    );
    let o = std::process::Command::new(&py)
        .args([script, out.to_str().unwrap(), "32", &keep])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("readers: all checks passed"), "{t}");
}
