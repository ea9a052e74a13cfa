//! Hostile inputs, generated (issue 15): short property-test runs over catalogue ingest and
//! `pipeline.toml` with the generators and oracles of the fuzz targets
//! (`tests/hostile_gen.rs`), and a replay of every input a fuzzer once failed on
//! (`tests/fixtures/fuzz-regressions/<target>/`). The long coverage-guided runs are in
//! `fuzz/` (README there).

use crate::hostile_gen::*;
use crate::pipeline_util::{parquet_bytes, wide_catalogue};
use arbitrary::Unstructured;
use proptest::collection::vec;
use proptest::prelude::*;
use sedflow::pipeline::config::{InputFormat, PipelineConfig};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A long-format catalogue whose stars' rows are interleaved, in row groups of `rows_per_group`.
fn interleaved_long(n_stars: i64, rows_per_group: usize) -> Vec<u8> {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;
    let bands = ["gaia_g", "gaia_bp", "gaia_rp", "parallax"];
    let (mut id, mut band, mut mag, mut err) = (vec![], vec![], vec![], vec![]);
    for b in bands {
        for s in 0..n_stars {
            id.push(s + 1);
            band.push(b);
            mag.push(if b == "parallax" {
                1.0
            } else {
                14.0 + s as f64 * 0.1
            });
            err.push(0.02);
        }
    }
    let batch = crate::pipeline_util::batch(vec![
        ("source_id", Arc::new(Int64Array::from(id)) as ArrayRef),
        ("band", Arc::new(StringArray::from(band))),
        ("mag", Arc::new(Float64Array::from(mag))),
        ("mag_error", Arc::new(Float64Array::from(err))),
    ]);
    parquet_bytes(&batch, rows_per_group)
}

proptest! {
    #![proptest_config(cases(300))]

    /// Files with arbitrary schemas, types, values and row groups, maybe corrupted.
    #[test]
    fn generated_catalogues_are_ingested_row_for_row(data in vec(any::<u8>(), 0..3000)) {
        fuzz_parquet_structured(&data);
    }

    /// Arbitrary bytes as a catalogue.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..600)) {
        fuzz_parquet_bytes(&data);
    }

    /// Generated and arbitrary `pipeline.toml` texts.
    #[test]
    fn generated_configs_parse_or_fail_cleanly(data in vec(any::<u8>(), 0..400)) {
        fuzz_pipeline_toml(&data);
    }
}

proptest! {
    #![proptest_config(cases(150))]

    /// A real wide catalogue, truncated anywhere or with bytes overwritten anywhere: an error
    /// naming the file, or every row once.
    #[test]
    fn corrupted_wide_catalogues_fail_cleanly(
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        part_rows in 1u64..80,
        seed in vec(any::<u8>(), 4),
    ) {
        let mut bytes = parquet_bytes(&wide_catalogue(1, 60), 16);
        let n = bytes.len();
        for (at, v) in flips {
            bytes[at.index(n)] = v;
        }
        if cut.index(4) == 0 {
            bytes.truncate(cut.index(n));
        }
        let mut cfg = run_config(&mut Unstructured::new(&seed)).unwrap();
        cfg.input.rows_per_part = part_rows;
        check_ingest(&bytes, &cfg, None);
    }

    /// Long format, stars interleaved across the file and split by row groups: every
    /// observation row is accounted for by exactly one output row.
    #[test]
    fn interleaved_long_format_accounts_for_every_row(
        n_stars in 1i64..30,
        rows_per_group in 1usize..40,
        seed in vec(any::<u8>(), 4),
    ) {
        let bytes = interleaved_long(n_stars, rows_per_group);
        let mut cfg = run_config(&mut Unstructured::new(&seed)).unwrap();
        cfg.input.format = InputFormat::Auto;
        cfg.input.bands.clear();
        cfg.input.default_columns = true;
        check_ingest(&bytes, &cfg, Some(4 * n_stars as usize));
    }
}

/// The oracle itself must fail on a broken pipeline: a file whose footer promises rows it
/// does not hold is refused, and an intact file read in full passes with every row once.
#[test]
fn the_oracle_passes_an_intact_catalogue_and_notices_a_missing_row() {
    let bytes = parquet_bytes(&wide_catalogue(1, 50), 7);
    let mut cfg = PipelineConfig::default();
    cfg.input.rows_per_part = 20;
    check_ingest(&bytes, &cfg, Some(50));
    let r = std::panic::catch_unwind(|| check_ingest(&bytes, &cfg, Some(51)));
    assert!(r.is_err(), "the oracle must notice a missing row");
}

/// Every input a fuzzer found a failure with, replayed through its target (the files are
/// the fuzzers' artifacts, named after the bug they found).
#[test]
fn fuzz_regressions_stay_fixed() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 2] = [
        ("parquet_ingest", fuzz_parquet_ingest),
        ("pipeline_toml", fuzz_pipeline_toml),
    ];
    let mut n = 0;
    for (name, target) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for f in dir {
            let p = f.unwrap().path();
            eprintln!("replaying {}", p.display());
            target(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    eprintln!("{n} fuzz regression input(s) replayed");
}

/// `sedflow run` over files on which the Parquet decoder panics (fuzzer finds): each is
/// reported as a bad file, and the run completes the good one instead of stopping.
#[test]
fn decoder_panics_fail_their_file_not_the_run() {
    let d = crate::pipeline_util::tmp();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let regressions = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-regressions/parquet_ingest");
    let bad = [
        "decoder-panic-missing-dictionary",
        "decoder-panic-negative-column-start",
    ];
    for name in bad {
        // raw-bytes inputs: a mode byte and four configuration bytes, then the file
        let bytes = std::fs::read(regressions.join(name)).unwrap();
        std::fs::write(input.join(format!("{name}.parquet")), &bytes[5..]).unwrap();
    }
    crate::pipeline_util::write_parquet(&input.join("good.parquet"), &wide_catalogue(1, 30), 10);
    let cfg = crate::pipeline_util::config(d.path(), "[inference]\nrefine = false\n");
    let out = d.path().join("out");
    let o = crate::pipeline_util::run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--samples",
            "8",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    let t = crate::pipeline_util::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(!t.contains("internal error"), "{t}");
    for name in bad {
        let line = t
            .lines()
            .find(|l| l.contains("error:") && l.contains(&format!("{name}.parquet")))
            .unwrap_or_else(|| panic!("no error for {name}: {t}"));
        assert!(line.contains("corrupt or truncated"), "{line}");
    }
    let rows = crate::pipeline_util::read_dir(&out);
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["good.parquet"], "{t}");
    assert_eq!(rows["good.parquet"].len(), 30);
}
