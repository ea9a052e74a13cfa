//! `sedflow plot`: every kind writes a decodable PNG / a parseable SVG with its axis labels,
//! and the axis ranges the figures report match the data they were made from.

use crate::pipeline_util::{sedflow, text, tmp};
use sedflow::plot::canvas::{render, Format};
use std::path::{Path, PathBuf};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalogue.parquet");

/// `sedflow run` on the bundled example catalogue with posterior draws.
pub fn example_run(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("run");
    let o = sedflow()
        .args(["run", "--input", EXAMPLE, "--output"])
        .arg(&out)
        .args(["--write-samples", "200", "--progress", "off"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// Width and height of a PNG (after decoding all of it).
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

/// The text of every <text> element of an SVG (which must parse).
fn svg_texts(path: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&s).expect("SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn plot(args: &[&str]) -> String {
    let o = sedflow().arg("plot").args(args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn assert_sane_png(path: &Path, size: (u32, u32)) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(png_size(&bytes), size);
    assert!(
        bytes.len() > 5_000 && bytes.len() < 2_000_000,
        "{} bytes",
        bytes.len()
    );
}

/// Posterior medians of the run's table, read independently of the plotting code.
fn medians(run: &Path, col: &str) -> Vec<f64> {
    let f = run.join("catalogue.parquet");
    let (_, cols) = sedflow::io::table::read_numeric(&f).unwrap();
    cols[col]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect()
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, -f64::INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

#[test]
fn kiel_png_svg_and_axis_ranges() {
    let d = tmp();
    let run = example_run(d.path(), &[]);
    let png = d.path().join("kiel.png");
    let svg = d.path().join("kiel.svg");
    plot(&[
        "kiel",
        run.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--width",
        "1000",
        "--height",
        "450",
    ]);
    assert_sane_png(&png, (1000, 450));
    plot(&[
        "kiel",
        run.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--colour",
        "metallicity",
    ]);
    let texts = svg_texts(&svg);
    for label in ["Teff [K]", "log g [dex]", "mean [M/H] [dex]"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no '{label}' in {texts:?}"
        );
    }
    // ranges: the medians' extremes, padded by PAD on each side; Teff reversed, log g down
    use sedflow::plot::kiel::{kiel_data, KielColour, PAD};
    let files = vec![run.join("catalogue.parquet")];
    let data = kiel_data(&files, u64::MAX, KielColour::Density).unwrap();
    let (t, g) = (
        min_max(&medians(&run, "teff_p50")),
        min_max(&medians(&run, "logg_p50")),
    );
    assert!((data.teff_data.0 - t.0).abs() < 1e-3 && (data.teff_data.1 - t.1).abs() < 1e-3);
    assert!((data.logg_data.0 - g.0).abs() < 1e-6 && (data.logg_data.1 - g.1).abs() < 1e-6);
    let axes = render(&data, (800, 400), Format::Png).unwrap().out;
    let pad_t = PAD * (t.1 - t.0);
    assert!(
        (axes.teff.0 - (t.1 + pad_t)).abs() < 1e-6 * t.1,
        "{axes:?} vs {t:?}"
    );
    assert!(
        (axes.teff.1 - (t.0 - pad_t)).abs() < 1e-6 * t.1,
        "{axes:?} vs {t:?}"
    );
    let pad_g = PAD * (g.1 - g.0);
    assert!(
        (axes.logg.0 - (g.0 - pad_g)).abs() < 1e-9 && (axes.logg.1 - (g.1 + pad_g)).abs() < 1e-9
    );
    // every star with a posterior is counted once, flagged or not
    assert_eq!(
        data.good.total() + data.flagged.total(),
        medians(&run, "teff_p50").len() as u64
    );
}

#[test]
fn star_plot_with_reference_and_sed() {
    let d = tmp();
    let run = example_run(d.path(), &[]);
    let reference = d.path().join("ref");
    let o = sedflow()
        .args(["mcmc", "--input", EXAMPLE, "--output"])
        .arg(&reference)
        .args([
            "--limit",
            "2",
            "--write-samples",
            "150",
            "--burn",
            "1500",
            "--steps",
            "3000",
            "--progress",
            "off",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(reference
        .with_extension("samples")
        .join("catalogue.parquet")
        .is_file());
    let ids = sedflow::io::table::read_i64(&run.join("catalogue.parquet"), "source_id").unwrap();
    let id = ids[0].unwrap();
    let png = d.path().join("star.png");
    let out = plot(&[
        "star",
        run.to_str().unwrap(),
        "--source-id",
        &id.to_string(),
        "--reference",
        reference.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(out.contains("200 draws (150 reference draws)"), "{out}");
    assert_sane_png(&png, (1500, 860));
    let svg = d.path().join("star.svg");
    plot(&[
        "star",
        run.to_str().unwrap(),
        "--source-id",
        &id.to_string(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    let texts = svg_texts(&svg);
    for label in [
        "Teff [K]",
        "distance [pc]",
        "pivot wavelength [um]",
        "observed - model [mag]",
    ] {
        assert!(texts.iter().any(|t| t == label), "no '{label}'");
    }
    // axis ranges cover every draw; the SED has the star's bands with the model between
    let fig = sedflow::plot::star::star_figure(&run, id, Some(&reference)).unwrap();
    assert_eq!(fig.draws.len(), 200);
    let axes = render(&fig, (900, 600), Format::Png).unwrap().out;
    for p in 0..6 {
        let all: Vec<f64> = fig
            .draws
            .iter()
            .chain(fig.reference.iter().flatten())
            .map(|d| d[p])
            .collect();
        let (lo, hi) = min_max(&all);
        assert!(
            axes.params[p].0 <= lo && hi <= axes.params[p].1,
            "param {p}"
        );
        assert!(
            axes.params[p].1 - axes.params[p].0 < 1.2 * (hi - lo) + 1.0,
            "param {p} too wide"
        );
    }
    assert!(!fig.sed.is_empty());
    for s in &fig.sed {
        assert!(
            s.predicted[0] <= s.predicted[1] && s.predicted[1] <= s.predicted[2],
            "{s:?}"
        );
        assert!(axes.mag.0 <= s.mag - s.err && s.mag + s.err <= axes.mag.1);
        assert!(axes.wavelength_um.0 < s.wavelength_um && s.wavelength_um < axes.wavelength_um.1);
        let r = s.mag - s.predicted[1];
        assert!(axes.residual.0 <= r - s.err && r + s.err <= axes.residual.1);
        // a posterior fitted to these magnitudes predicts them within a few errors
        assert!(r.abs() < 5.0 * s.err + 0.1, "{s:?}");
    }
}

#[test]
fn star_plot_needs_samples() {
    let d = tmp();
    let out = d.path().join("run");
    let o = sedflow()
        .args(["run", "--input", EXAMPLE, "--output"])
        .arg(&out)
        .args(["--progress", "off"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = sedflow()
        .args(["plot", "star"])
        .arg(&out)
        .args(["--source-id", "1", "-o"])
        .arg(d.path().join("s.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("--write-samples"), "{}", text(&o));
}

#[test]
fn coverage_plot_from_an_evaluate_report() {
    let d = tmp();
    let report = d.path().join("eval.json");
    let o = sedflow()
        .args(["evaluate", "--stars", "60", "--seed", "3", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let png = d.path().join("coverage.png");
    let out = plot(&[
        "coverage",
        report.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(out.contains("overall"), "{out}");
    assert_sane_png(&png, (1500, 520));
    let svg = d.path().join("coverage.svg");
    plot(&[
        "coverage",
        report.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--groups",
        "overall",
    ]);
    let texts = svg_texts(&svg);
    assert!(texts
        .iter()
        .any(|t| t == "nominal coverage of the central interval"));
    assert!(texts.iter().any(|t| t == "teff"));
    use sedflow::plot::coverage::{read_coverage, CoverageFigure, LEVELS};
    let groups = read_coverage(&report, &["overall".to_string()]).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let teff = &json["groups"][0]["params"][0];
    assert_eq!(
        groups[0].params[0].observed[0],
        teff["coverage68"].as_f64().unwrap()
    );
    let fig = CoverageFigure { groups };
    let axes = render(&fig, (600, 400), Format::Png).unwrap().out;
    let lowest = fig.groups[0]
        .params
        .iter()
        .flat_map(|p| p.observed)
        .chain([LEVELS[0]])
        .fold(1.0, f64::min);
    assert!(
        axes.observed.0 <= lowest && lowest - axes.observed.0 <= 0.1,
        "{axes:?} {lowest}"
    );
    assert_eq!(axes.observed.1, 1.0);
}

#[test]
fn calibration_plot_from_a_per_star_table() {
    use sedflow::io::table::{write_columns, Column};
    use sedflow::plot::calibration::{read_residuals, CalibrationFigure};
    // a per-star table in `calibrate --per-star`'s columns (the command itself needs the
    // 5,000 benchmark stars; its columns are what this reads)
    let d = tmp();
    let n = 300;
    let teff: Vec<f64> = (0..n).map(|i| 4000.0 + 10.0 * i as f64).collect();
    let raw: Vec<f64> = (0..n)
        .map(|i| 0.05 + 0.001 * ((i * 37) % 50) as f64)
        .collect();
    let cal: Vec<f64> = raw.iter().map(|r| r - 0.06).collect();
    let path = d.path().join("per_star.csv");
    write_columns(
        &path,
        &[
            Column::F64("teff".into(), teff.clone()),
            Column::F64("resid_gaia_g_raw".into(), raw.clone()),
            Column::F64("resid_gaia_g_cal".into(), cal.clone()),
            Column::F64("resid_tmass_j_raw".into(), raw.clone()),
            Column::F64("resid_tmass_j_cal".into(), cal.clone()),
        ],
        &[],
    )
    .unwrap();
    let png = d.path().join("cal.png");
    let out = plot(&[
        "calibration",
        path.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--columns",
        "2",
    ]);
    assert!(out.contains("2 bands"), "{out}");
    assert_sane_png(&png, (1500, 300));
    let svg = d.path().join("cal.svg");
    plot(&[
        "calibration",
        path.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--bands",
        "tmass_j",
    ]);
    let texts = svg_texts(&svg);
    assert!(
        texts.iter().any(|t| t == "label Teff [K]")
            && texts.iter().any(|t| t.starts_with("tmass_j"))
    );
    let fig = CalibrationFigure {
        bands: read_residuals(&path).unwrap(),
        columns: 2,
    };
    let axes = render(&fig, (800, 300), Format::Png).unwrap().out;
    // hot on the left, 3% beyond the data; residuals span the central 99% plus 10%
    let span = teff[n - 1] - teff[0];
    assert!((axes.teff.0 - (teff[n - 1] + 0.03 * span)).abs() < 1e-6);
    assert!((axes.teff.1 - (teff[0] - 0.03 * span)).abs() < 1e-6);
    let (lo, hi) = min_max(&cal.iter().chain(&raw).copied().collect::<Vec<_>>());
    assert!(
        axes.residual.0 < lo && axes.residual.0 > lo - 0.2 * (hi - lo),
        "{axes:?}"
    );
    assert!(
        axes.residual.1 > hi - 0.01 && axes.residual.1 < hi + 0.2 * (hi - lo),
        "{axes:?}"
    );
}
