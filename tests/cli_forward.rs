//! `sedflow forward` from the command line: single theta, files, bad input.

use std::process::Command;

fn sedflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sedflow"))
}

#[test]
fn single_theta_prints_json_of_requested_bands() {
    let out = sedflow()
        .args([
            "forward",
            "--teff",
            "5772",
            "--logg",
            "4.44",
            "--mh",
            "0",
            "--av",
            "0",
            "--rv",
            "3.1",
            "--distance",
            "10",
            "--bands",
            "gaia_g,tmass_ks",
            "--raw",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = v["gaia_g"].as_f64().unwrap();
    assert!((g - 4.67).abs() < 0.03);
    assert_eq!(v.as_object().unwrap().len(), 2);
}

#[test]
fn bad_theta_and_unknown_band_give_clear_errors() {
    let out = sedflow()
        .args(["forward", "--teff", "5772", "--logg", "NaN", "--mh", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logg"), "{err}");
    let out = sedflow()
        .args([
            "forward", "--teff", "5772", "--logg", "4.4", "--mh", "0", "--rv", "9",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("rv = 9"));
    let out = sedflow()
        .args([
            "forward",
            "--teff",
            "5772",
            "--logg",
            "4.4",
            "--mh",
            "0",
            "--bands",
            "gaia_g,bogus",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("tmass_ks"), "{err}");
}

#[test]
fn outside_support_gives_nulls() {
    let out = sedflow()
        .args([
            "forward", "--teff", "30000", "--logg", "1.0", "--mh", "0", "--bands", "gaia_g",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["gaia_g"].is_null());
}

#[test]
fn file_mode_csv_and_parquet_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("thetas.csv");
    std::fs::write(
        &input,
        "teff,logg,mh,av,rv,distance\n5772,4.44,0,0,3.1,10\n4700,2.5,-0.5,1.2,3.1,2000\nnan,4,0,0,3.1,10\n30000,1.0,0,0,3.1,10\n",
    )
    .unwrap();
    for ext in ["csv", "parquet"] {
        let output = dir.path().join(format!("mags.{ext}"));
        let out = sedflow()
            .args([
                "forward",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--bands",
                "gaia_g,wise_w2",
                "--raw",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (names, cols) = sedflow::io::table::read_numeric(&output).unwrap();
        assert!(names.iter().any(|n| n == "gaia_g") && names.iter().any(|n| n == "wise_w2"));
        let g = &cols["gaia_g"];
        assert_eq!(g.len(), 4, "every input row has an output row");
        assert!((g[0] - 4.67).abs() < 0.03);
        assert!(g[1].is_finite() && g[2].is_nan() && g[3].is_nan());
    }
}

/// The input's other columns (ids beyond 2^53, names) reach the output unchanged, in both
/// formats; an input column named like an output band is refused, not overwritten.
#[test]
fn file_mode_passes_the_other_input_columns_through() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("thetas.csv");
    std::fs::write(
        &input,
        "# thetas with ids\nsource_id,name,teff,logg,mh,av,rv,distance\n\
         5853498713190525696,Sun,5772,4.44,0,0,3.1,10\n\
         9007199254740993,giant,4700,2.5,-0.5,1.2,3.1,2000\n",
    )
    .unwrap();
    let forward = |input: &std::path::Path, output: &std::path::Path, bands: &str| {
        sedflow()
            .args(["forward", "--input", input.to_str().unwrap()])
            .args(["--output", output.to_str().unwrap(), "--bands", bands])
            .output()
            .unwrap()
    };
    let parquet = dir.path().join("mags.parquet");
    for output in [parquet.clone(), dir.path().join("mags.csv")] {
        let o = forward(&input, &output, "gaia_g");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ids = sedflow::io::table::read_i64(&output, "source_id").unwrap();
        assert_eq!(ids, [Some(5853498713190525696), Some(9007199254740993)]);
        let (names, cols) = sedflow::io::table::read_numeric(&output).unwrap();
        assert_eq!(
            names[..3],
            ["source_id", "name", "teff"].map(String::from)[..]
        );
        assert!((cols["gaia_g"][0] - 4.73).abs() < 0.05);
    }
    let names = sedflow::io::table::read_strings(&parquet, "name").unwrap();
    assert_eq!(names, [Some("Sun".to_string()), Some("giant".to_string())]);
    // a second pass over the output would overwrite its gaia_g column: refused
    let o = forward(&parquet, &dir.path().join("again.parquet"), "gaia_g");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("input column 'gaia_g' would be overwritten"),
        "{err}"
    );
}
