//! The posterior layer through the binary: the reference MCMC over a catalogue (through the
//! pipeline's ingest, with R-hat and ESS columns and 64-bit ids), its one-star JSON mode,
//! `compare-posteriors`, flow-only sampling, and the mode search finding a cool dwarf that
//! the flow misses.

use super::pipeline_util::*;
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sedflow::io::table::{write_columns, Column};
use sedflow::physics::ForwardModel;
use sedflow::pipeline::config::GaiaRelease;
use sedflow::pipeline::simulated::{catalogue_columns, simulate_catalogue};
use std::path::Path;
use std::sync::Arc;

/// Gaia ids exceed 2^53, where f64 would round them.
const BIG_ID: i64 = (1 << 60) + 3;

/// A simulated catalogue of `n` stars whose ids are BIG_ID + k.
fn catalogue(path: &Path, n: usize) {
    let fm = ForwardModel::embedded();
    let stars = simulate_catalogue(fm, n, 21, GaiaRelease::Dr3).unwrap();
    let mut cols = catalogue_columns(fm, &stars, GaiaRelease::Dr3).unwrap();
    cols[0] = Column::I64(
        "source_id".into(),
        (0..n as i64).map(|k| BIG_ID + k).collect(),
    );
    write_columns(path, &cols, &[]).unwrap();
}

fn column_names(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn reference_mcmc_through_the_pipeline_and_compare_posteriors() {
    let d = tmp();
    let cat = d.path().join("cat.parquet");
    catalogue(&cat, 5);
    let (refdir, rundir) = (d.path().join("ref"), d.path().join("run"));
    let o = sedflow()
        .args([
            "mcmc",
            "--input",
            cat.to_str().unwrap(),
            "--output",
            refdir.to_str().unwrap(),
        ])
        .args([
            "--limit",
            "2",
            "--walkers",
            "16",
            "--burn",
            "300",
            "--steps",
            "1500",
            "--progress",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_dir(&refdir);
    let r = &rows["cat.parquet"];
    assert_eq!(r.len(), 5, "one row per input row");
    let chained: Vec<_> = r.iter().filter(|x| x.flags & 512 == 0).collect();
    assert_eq!(chained.len(), 2, "--limit 2");
    assert_eq!(chained[0].source_id, Some(BIG_ID), "64-bit ids survive");
    assert!(chained.iter().all(|x| x.n_samples > 0));
    let names = column_names(&refdir.join("cat.parquet"));
    for c in [
        "teff_rhat",
        "teff_ess",
        "distance_rhat",
        "pareto_k",
        "log_evidence_se",
    ] {
        assert!(names.iter().any(|n| n == c), "no column {c}");
    }
    let o = run(
        &[
            "--input",
            cat.to_str().unwrap(),
            "--output",
            rundir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = d.path().join("cmp.json");
    let o = sedflow()
        .args([
            "compare-posteriors",
            "--reference",
            refdir.to_str().unwrap(),
            "--test",
            rundir.to_str().unwrap(),
        ])
        .args([
            "--include-unconverged",
            "--report",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("within 0.5"), "{}", text(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(j["compared"], 2);
    assert!(j["agreement"]["median"].as_f64().unwrap().is_finite());
}

#[test]
fn mcmc_one_star_json_reads_through_the_pipeline_ingest() {
    let d = tmp();
    let cat = d.path().join("cat.parquet");
    catalogue(&cat, 3);
    let id = (BIG_ID + 1).to_string();
    let o = sedflow()
        .args(["mcmc", "--input", cat.to_str().unwrap(), "--source-id", &id])
        .args(["--walkers", "16", "--burn", "200", "--steps", "800"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["source_id"].as_i64(), Some(BIG_ID + 1));
    assert!(j["teff_p50"].as_f64().unwrap() > 3000.0);
    assert!(j["teff_rhat"].as_f64().unwrap() > 0.9);
    // an id that is not there is an error that names it
    let o = sedflow()
        .args([
            "mcmc",
            "--input",
            cat.to_str().unwrap(),
            "--source-id",
            "12",
        ])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("no star with source_id 12"),
        "{}",
        text(&o)
    );
}

#[test]
fn flow_only_sampling_still_works() {
    let d = tmp();
    let cat = d.path().join("cat.parquet");
    catalogue(&cat, 20);
    let cfg = config(d.path(), "[inference]\nrefine = false\n");
    let out = d.path().join("out");
    let o = run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            cat.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "64",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_dir(&out);
    let r = &rows["cat.parquet"];
    assert_eq!(r.len(), 20);
    assert!(
        r.iter().all(|x| x.n_samples == 64),
        "flow samples only, exactly --samples of them"
    );
}

/// Distant cool M dwarfs whose colours hotter, reddened stars mimic (stars 57 and 316 of
/// `sedflow simulate --stars 400 --seed 202 --likelihood-consistent`): the flow's pilot
/// lands on the mimics, and the mode search's temperature profile must find the cool
/// solutions the reference MCMC finds (3688 K and 3664 K; without the profile the run gave
/// 4923 K and 6860 K).
#[test]
fn temperature_profile_finds_the_cool_dwarfs_the_flow_misses() {
    let d = tmp();
    let (sim, out) = (d.path().join("sim.parquet"), d.path().join("out"));
    let o = sedflow()
        .args([
            "simulate",
            "--stars",
            "400",
            "--seed",
            "202",
            "--likelihood-consistent",
        ])
        .args(["--output", sim.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(
        &[
            "--input",
            sim.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, truth) = sedflow::io::table::read_numeric(&sim).unwrap();
    let (_, post) = sedflow::io::table::read_numeric(&out.join("sim.parquet")).unwrap();
    for id in [57.0, 316.0] {
        let t = truth["source_id"].iter().position(|&s| s == id).unwrap();
        let p = post["source_id"].iter().position(|&s| s == id).unwrap();
        let (true_teff, teff) = (truth["true_teff"][t], post["teff_p50"][p]);
        assert!(
            (teff - true_teff).abs() < 200.0,
            "star {id}: teff p50 {teff}, truth {true_teff}"
        );
    }
}

/// A long-format catalogue (one row per observation) read for one star: its several rows
/// are one star, not a duplicated source_id (the pipeline's duplicate rule: an id counts
/// once per row group), and a star split across row groups is still flagged.
#[test]
fn mcmc_one_star_long_format_is_not_a_duplicate() {
    let d = tmp();
    let cat = d.path().join("long.parquet");
    let b = batch(vec![
        (
            "source_id",
            Arc::new(Int64Array::from(vec![1, 1, 1, 2, 2, 2])) as ArrayRef,
        ),
        (
            "band",
            Arc::new(StringArray::from(
                ["gaia_g", "gaia_bp", "gaia_rp"].repeat(2),
            )) as ArrayRef,
        ),
        (
            "mag",
            Arc::new(Float64Array::from(vec![15.0, 15.5, 14.3, 16.0, 16.6, 15.2])) as ArrayRef,
        ),
        (
            "mag_error",
            Arc::new(Float64Array::from(vec![0.01; 6])) as ArrayRef,
        ),
    ]);
    // star 1 in the first row group, star 2 split over the second and third
    write_parquet(&cat, &b, 4);
    let flags_of = |id: &str| {
        let o = sedflow()
            .args(["mcmc", "--input", cat.to_str().unwrap(), "--source-id", id])
            .args(["--walkers", "16", "--burn", "100", "--steps", "200"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j["ingest_flags"].as_u64().unwrap()
    };
    assert_eq!(flags_of("1"), 0, "three observation rows of one star");
    assert_eq!(
        flags_of("2") & 32,
        32,
        "a star split across row groups is flagged DUPLICATE_SOURCE_ID"
    );
}

/// Per-star reddening priors through `simulate` and `run`: map values drawn from the prior's
/// measurement model narrow the A_V posteriors against the same stars without them, the
/// truth stays inside the intervals, and an unusable value is flagged, not dropped.
#[test]
fn reddening_priors_narrow_extinction_and_bad_values_are_flagged() {
    let d = tmp();
    let sim = d.path().join("sim.parquet");
    let o = sedflow()
        .args(["simulate", "--stars", "80", "--seed", "31"])
        .args(["--likelihood-consistent", "--reddening-fraction", "1"])
        .args(["--output", sim.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let no_prior = config(
        d.path(),
        "[input]\nebv_prior_column = \"not_in_the_file\"\n",
    );
    let width_and_cover = |out: &Path, cfg: Option<&Path>| {
        let mut args = vec![
            "--input",
            sim.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        if let Some(c) = cfg {
            args.extend(["--config", c.to_str().unwrap()]);
        }
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let (_, truth) = sedflow::io::table::read_numeric(&sim).unwrap();
        let (_, post) = sedflow::io::table::read_numeric(&out.join("sim.parquet")).unwrap();
        let n = post["source_id"].len();
        let mut widths: Vec<f64> = (0..n)
            .map(|k| post["av_p84"][k] - post["av_p16"][k])
            .collect();
        widths.sort_by(f64::total_cmp);
        let covered = (0..n)
            .filter(|&k| {
                let t = truth["true_av"][k];
                post["av_p05"][k] <= t && t <= post["av_p95"][k]
            })
            .count();
        (widths[n / 2], covered as f64 / n as f64)
    };
    let (w_with, cover) = width_and_cover(&d.path().join("with"), None);
    let (w_without, _) = width_and_cover(&d.path().join("without"), Some(&no_prior));
    assert!(
        w_with < 0.7 * w_without,
        "A_V widths: {w_with} with, {w_without} without"
    );
    assert!(cover >= 0.8, "90% intervals cover the true A_V for {cover}");

    let cat = d.path().join("bad.parquet");
    let b = wide_catalogue(1, 3);
    let schema = b.schema();
    let mut cols: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .zip(b.columns().iter().cloned())
        .collect();
    cols.push((
        "ebv_prior",
        Arc::new(Float64Array::from(vec![Some(0.1), Some(-2.0), None])),
    ));
    cols.push((
        "ebv_prior_error",
        Arc::new(Float64Array::from(vec![0.02, 0.02, 0.02])),
    ));
    write_parquet(&cat, &batch(cols), 10);
    let out = d.path().join("bad");
    let o = run(
        &[
            "--input",
            cat.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = &read_dir(&out)["bad.parquet"];
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].flags & 65536, 0);
    assert_ne!(rows[1].flags & 65536, 0, "{}", rows[1].reason);
    assert!(
        rows[1].reason.contains("reddening prior"),
        "{}",
        rows[1].reason
    );
    assert_eq!(
        rows[2].flags & 65536,
        0,
        "a null map value keeps the population prior"
    );
}
