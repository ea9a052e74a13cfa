//! `sedflow calibrate`: fitting on synthetic stars with a known injected distortion,
//! determinism (also across thread counts), Teff recovery, the embedded calibration, the
//! clamp box, and the command on a tiny Parquet fixture.

use sedflow::calib::data::{LabelledStar, BENCHMARK_PHOTOMETRY};
use sedflow::calib::fit::fit;
use sedflow::calib::recover::Objective;
use sedflow::calib::CalibSettings;
use sedflow::likelihood::{Measurement, NoiseModel};
use sedflow::physics::calibration::Calibration;
use sedflow::physics::{ForwardModel, Theta};
use sedflow::util::rng::Rng;
use std::process::Command;

/// The injected distortion of band `b` (index into BENCHMARK_PHOTOMETRY) at a star: smooth in
/// (log10 Teff, log g, [M/H]), different per band, tens of mmag.
fn injected(b: usize, teff: f64, logg: f64, mh: f64) -> f64 {
    let x = (teff.log10() - 3.75) / 0.08;
    let y = (logg - 3.5) / 1.0;
    let bf = b as f64;
    0.02 * ((0.7 * bf).sin()) + 0.015 * x * (0.3 * bf).cos() - 0.01 * x * x * (bf / 12.0)
        + 0.008 * y * (1.0 - bf / 6.0)
        + 0.01 * mh * (bf / 12.0 - 0.5)
}

struct Truth {
    av: f64,
}

/// Synthetic labelled stars: dwarfs and giants 4300-6800 K, magnitudes from the raw model plus
/// the injected distortion and noise, exact labels with modest quoted errors, a reddening
/// prior around the true A_V, and parallaxes.
fn synthetic(n: usize, seed: u64, distort: bool) -> (Vec<LabelledStar>, Vec<Truth>) {
    synthetic_with(n, seed, distort, &Physics::default())
}

/// What the synthetic sky does beyond the raw model: extra (model-systematics) noise per band
/// of BENCHMARK_PHOTOMETRY beyond the reported 0.01 mag, a relative error of each band's
/// extinction, and the true scatter of the reddening prior (quoted: 0.015).
struct Physics {
    extra_noise: [f64; 13],
    ext_kappa: [f64; 13],
    ebv_sd: f64,
}

impl Default for Physics {
    fn default() -> Self {
        Physics {
            extra_noise: [0.0; 13],
            ext_kappa: [0.0; 13],
            ebv_sd: 0.01,
        }
    }
}

fn synthetic_with(
    n: usize,
    seed: u64,
    distort: bool,
    phys: &Physics,
) -> (Vec<LabelledStar>, Vec<Truth>) {
    let fm = ForwardModel::embedded_raw();
    let bands: Vec<usize> = BENCHMARK_PHOTOMETRY
        .iter()
        .map(|(_, _, b)| fm.bands().id(b).unwrap())
        .collect();
    let mut rng = Rng::new(seed);
    let mut stars = Vec::new();
    let mut truth = Vec::new();
    let mut id = 0i64;
    while stars.len() < n {
        id += 1;
        let giant = rng.chance(0.3);
        let teff = if giant {
            rng.uniform_range(4300.0, 5200.0)
        } else {
            rng.uniform_range(4300.0, 6800.0)
        };
        let logg = if giant {
            rng.uniform_range(2.2, 3.0)
        } else {
            rng.uniform_range(4.2, 4.6)
        };
        let mh = (-0.2 + 0.3 * rng.normal()).clamp(-1.5, 0.4);
        let av = rng.uniform_range(0.0, 1.0);
        let distance = rng.uniform_range(200.0, 1500.0);
        let t = Theta {
            teff,
            logg,
            mh,
            av,
            rv: 3.1,
            distance,
        };
        let mut m = vec![0f32; bands.len()];
        if fm.magnitudes(&t, &bands, &mut m).is_err() {
            continue;
        }
        let mut ext = vec![0f32; bands.len()];
        fm.extinction(&t, &bands, &mut ext);
        let phot = bands
            .iter()
            .zip(&m)
            .enumerate()
            .map(|(k, (&b, &mag))| {
                let d = if distort {
                    injected(k, teff, logg, mh)
                } else {
                    0.0
                };
                let mut mag = mag as f64 + d + 0.01 * rng.normal();
                mag += phys.ext_kappa[k] * ext[k] as f64;
                if phys.extra_noise[k] > 0.0 {
                    mag += phys.extra_noise[k] * rng.normal();
                }
                Measurement {
                    band: b as u16,
                    mag: mag as f32,
                    err: 0.01,
                }
            })
            .collect();
        let plx = 1000.0 / distance;
        stars.push(LabelledStar {
            source_id: 1_000_000_000_000 + id,
            labels: [teff, logg, mh],
            label_err: [20.0, 0.05, 0.03],
            label_source: if giant { "survey_b" } else { "survey_a" }.into(),
            // the settings' zero point (-0.029) is subtracted when read
            parallax: Some((plx - 0.029 + 0.02 * rng.normal(), 0.02)),
            ebv: (
                Some((av / 2.742 + phys.ebv_sd * rng.normal()).max(0.0)),
                Some(0.015),
            ),
            ebv_source: "map".into(),
            phot,
        });
        truth.push(Truth { av });
    }
    (stars, truth)
}

/// Settings for synthetic tests: no survey systematics floors and no label offsets (labels
/// are exact), no solar anchor (the stars are drawn from the raw model, whose Sun differs
/// from the reference by 0.02-0.03 mag).
fn settings() -> CalibSettings {
    CalibSettings {
        label_err_floor: [10.0, 0.02, 0.02],
        label_offsets: false,
        sun_anchor_sigma: 0.0,
        ..Default::default()
    }
}

#[test]
fn fit_recovers_an_injected_smooth_distortion() {
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, _) = synthetic(500, 11, true);
    let s = settings();
    let out = fit(fm, &stars, &s, &noise).unwrap();
    let cal = out.calibration.clone().resolved_for(fm.bands()).unwrap();
    assert_eq!(out.stats.n_outside_model, 0);
    assert!(out.stats.n_used >= 480, "{:?}", out.stats);
    // compare fitted and injected corrections at the stars: colours (band - G) tightly,
    // the common part (anchored by the parallaxes only) loosely
    let g = fm.bands().id("gaia_dr2_g").unwrap();
    let (mut sq_col, mut sq_abs, mut sq_inj, mut n) = (0.0, 0.0, 0.0, 0.0);
    for st in &stars {
        let [t, lg, mh] = st.labels;
        let dg_fit = cal.delta(g, t.log10(), lg, mh);
        let dg_true = injected(0, t, lg, mh);
        for (k, (_, _, name)) in BENCHMARK_PHOTOMETRY.iter().enumerate().skip(1) {
            let b = fm.bands().id(name).unwrap();
            let fit_b = cal.delta(b, t.log10(), lg, mh);
            let true_b = injected(k, t, lg, mh);
            sq_col += ((fit_b - dg_fit) - (true_b - dg_true)).powi(2);
            sq_abs += (fit_b - true_b).powi(2);
            sq_inj += (true_b - dg_true).powi(2);
            n += 1.0;
        }
    }
    let (rms_col, rms_abs, rms_inj) = (
        (sq_col / n).sqrt(),
        (sq_abs / n).sqrt(),
        (sq_inj / n).sqrt(),
    );
    assert!(
        rms_inj > 0.02,
        "injected colour distortion too small: {rms_inj}"
    );
    assert!(
        rms_col < 0.004,
        "colour correction rms error {rms_col} (injected {rms_inj})"
    );
    assert!(rms_abs < 0.02, "absolute correction rms error {rms_abs}");
    // the reddening-map scale is not biased by the distortion
    let kappa = out.stats.map_scales[0].1;
    assert!(kappa.abs() < 0.05, "map scale {kappa}");
    // the DR3 Gaia bands inherit, SDSS and LSST stay uncorrected
    let origin = |b: &str| {
        out.calibration
            .bands
            .iter()
            .find(|c| c.band == b)
            .map(|c| c.origin.clone())
    };
    assert_eq!(origin("gaia_bp").unwrap(), "inherited from gaia_dr2_bp");
    assert_eq!(origin("ps1_g").unwrap(), "fitted");
    assert!(origin("sdss_g").is_none() && origin("lsst_r").is_none());
}

#[test]
fn fit_without_distortion_stays_near_zero() {
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, _) = synthetic(600, 5, false);
    let out = fit(fm, &stars, &settings(), &noise).unwrap();
    let cal = out.calibration.resolved_for(fm.bands()).unwrap();
    let (mut worst, mut sq, mut n): (f64, f64, f64) = (0.0, 0.0, 0.0);
    for st in &stars {
        let [t, lg, mh] = st.labels;
        for (_, _, name) in BENCHMARK_PHOTOMETRY {
            let b = fm.bands().id(name).unwrap();
            let d = cal.delta(b, t.log10(), lg, mh);
            worst = worst.max(d.abs());
            sq += d * d;
            n += 1.0;
        }
    }
    let rms = (sq / n).sqrt();
    // rms at the level of the fit's statistical noise; the corners of the box, where the
    // polynomial is least constrained, are noisier (different corners for different seeds)
    assert!(
        rms < 0.004,
        "correction fitted to pure noise: rms {rms} mag"
    );
    assert!(
        worst < 0.03,
        "correction fitted to pure noise reaches {worst} mag"
    );
}

#[test]
fn fit_is_deterministic_and_independent_of_thread_count() {
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, _) = synthetic(200, 3, true);
    let s = settings();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let out = fit(fm, &stars, &s, &noise).unwrap();
            serde_json::to_string(&out.calibration).unwrap()
        })
    };
    let a = run(1);
    let b = run(2);
    let c = run(2);
    assert_eq!(a, b);
    assert_eq!(b, c);
    // and the JSON round-trips to the same coefficients bit for bit
    let back = Calibration::from_json(&a).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), a);
}

#[test]
fn teff_recovery_finds_the_truth_on_model_stars() {
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, truth) = synthetic(40, 8, false);
    let s = CalibSettings::default();
    let mut errs = Vec::new();
    for (st, tr) in stars.iter().zip(&truth) {
        let f = Objective::new(fm, st, &s, &noise, &[]).recover().unwrap();
        errs.push((f.teff - st.labels[0]) / st.labels[0]);
        assert!((f.av - tr.av).abs() < 0.3, "A_V {} vs {}", f.av, tr.av);
    }
    errs.sort_by(|a, b| a.total_cmp(b));
    let med = errs[errs.len() / 2];
    assert!(med.abs() < 0.01, "median relative Teff error {med}");
    assert!(errs.iter().all(|e| e.abs() < 0.06), "{errs:?}");
}

#[test]
fn embedded_calibration_is_used_unless_raw() {
    let cal_model = ForwardModel::embedded();
    let raw = ForwardModel::embedded_raw();
    let cal = cal_model.calibration().expect("a calibration is embedded");
    assert!(raw.calibration().is_none());
    assert!(cal_model.id().contains(&cal.id));
    assert!(cal.card["fitted_on"]["file"].is_string());
    let sun = Theta {
        teff: 5772.0,
        logg: 4.44,
        mh: 0.0,
        av: 0.3,
        rv: 3.1,
        distance: 100.0,
    };
    let names = [
        "ps1_g",
        "gaia_dr2_bp",
        "gaia_bp",
        "tmass_j",
        "sdss_g",
        "lsst_r",
    ];
    let ids: Vec<usize> = names.iter().map(|n| raw.bands().id(n).unwrap()).collect();
    let (mut a, mut b) = (vec![0f32; ids.len()], vec![0f32; ids.len()]);
    cal_model.magnitudes(&sun, &ids, &mut a).unwrap();
    raw.magnitudes(&sun, &ids, &mut b).unwrap();
    let d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert!(
        d[0].abs() > 1e-4,
        "ps1_g unchanged by the calibration: {d:?}"
    );
    assert!(d[3].abs() > 1e-4, "tmass_j unchanged: {d:?}");
    // gaia_bp inherits gaia_dr2_bp's correction and extinction scale (the magnitudes differ
    // only by the scale times the small difference of the passbands' extinction)
    let entry = |n: &str| cal.bands.iter().find(|c| c.band == n).unwrap();
    assert_eq!(entry("gaia_bp").coef, entry("gaia_dr2_bp").coef);
    assert_eq!(entry("gaia_bp").ext_kappa, entry("gaia_dr2_bp").ext_kappa);
    assert!(
        (d[1] - d[2]).abs() < 1e-4,
        "gaia_bp must inherit gaia_dr2_bp: {d:?}"
    );
    assert_eq!(d[4], 0.0, "sdss_g must stay uncorrected");
    assert_eq!(d[5], 0.0, "lsst_r must stay uncorrected");
    // the CLI: --raw gives the raw model, the default the calibrated one
    let run = |raw_flag: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sedflow"));
        c.args([
            "forward", "--teff", "5772", "--logg", "4.44", "--mh", "0", "--bands", "ps1_g",
        ]);
        if raw_flag {
            c.arg("--raw");
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["ps1_g"].as_f64().unwrap()
    };
    let (with, without) = (run(false), run(true));
    let mut e = [0f32];
    let t10 = Theta {
        av: 0.0,
        distance: 10.0,
        ..sun
    };
    raw.magnitudes(&t10, &ids[..1], &mut e).unwrap();
    assert!((without - e[0] as f64).abs() < 1e-4);
    assert!((with - without).abs() > 1e-4);
}

#[test]
fn correction_is_clamped_outside_the_data_box() {
    let cal = ForwardModel::embedded().calibration().unwrap().clone();
    let fm = ForwardModel::embedded_raw();
    let b = fm.bands().id("ps1_g").unwrap();
    let (lo, hi) = (cal.lo, cal.hi);
    let mid = [
        0.5 * (lo[0] + hi[0]),
        0.5 * (lo[1] + hi[1]),
        0.5 * (lo[2] + hi[2]),
    ];
    let cal = cal.resolved_for(fm.bands()).unwrap();
    // hot star far beyond the box: same as at the box edge
    let far = cal.delta(b, 40000f64.log10(), mid[1], mid[2]);
    let edge = cal.delta(b, hi[0], mid[1], mid[2]);
    assert_eq!(far, edge);
    let below = cal.delta(b, mid[0], lo[1] - 1.0, lo[2] - 1.0);
    assert_eq!(below, cal.delta(b, mid[0], lo[1], lo[2]));
    // inside the box the correction varies
    assert_ne!(cal.delta(b, mid[0], mid[1], mid[2]), edge);
    // and the forward model applies the clamped value
    let t = |teff: f64| Theta {
        teff,
        logg: 4.0,
        mh: 0.0,
        av: 0.0,
        rv: 3.1,
        distance: 10.0,
    };
    let (mut c1, mut r1) = ([0f32], [0f32]);
    ForwardModel::embedded()
        .magnitudes(&t(30000.0), &[b], &mut c1)
        .unwrap();
    fm.magnitudes(&t(30000.0), &[b], &mut r1).unwrap();
    let want = cal.delta(
        b,
        hi[0],
        4.0f64.clamp(lo[1], hi[1]),
        0.0f64.clamp(lo[2], hi[2]),
    );
    assert!(((c1[0] - r1[0]) as f64 - want).abs() < 1e-5);
}

/// Write synthetic stars as a Parquet file in the benchmark contract.
fn write_fixture(path: &std::path::Path, stars: &[LabelledStar]) {
    use sedflow::io::table::{write_columns, Column};
    let fm = ForwardModel::embedded_raw();
    let mut cols = vec![Column::I64(
        "source_id".into(),
        stars.iter().map(|s| s.source_id).collect(),
    )];
    let f = |name: &str, v: Vec<f64>| Column::F64(name.into(), v);
    cols.push(f(
        "parallax",
        stars.iter().map(|s| s.parallax.unwrap().0).collect(),
    ));
    cols.push(f(
        "parallax_error",
        stars.iter().map(|s| s.parallax.unwrap().1).collect(),
    ));
    for (i, name) in ["teff", "logg", "mh"].iter().enumerate() {
        cols.push(f(name, stars.iter().map(|s| s.labels[i]).collect()));
        cols.push(f(
            &format!("{name}_error"),
            stars.iter().map(|s| s.label_err[i]).collect(),
        ));
    }
    for (m, e, band) in BENCHMARK_PHOTOMETRY {
        let id = fm.bands().id(band).unwrap() as u16;
        let get = |s: &LabelledStar, err: bool| {
            s.phot
                .iter()
                .find(|x| x.band == id)
                .map(|x| if err { x.err } else { x.mag } as f64)
                .unwrap_or(f64::NAN)
        };
        cols.push(f(m, stars.iter().map(|s| get(s, false)).collect()));
        cols.push(f(e, stars.iter().map(|s| get(s, true)).collect()));
    }
    cols.push(Column::Str(
        "label_source".into(),
        stars.iter().map(|s| Some(s.label_source.clone())).collect(),
    ));
    cols.push(f(
        "ebv_prior",
        stars.iter().map(|s| s.ebv.0.unwrap_or(f64::NAN)).collect(),
    ));
    cols.push(f(
        "ebv_prior_error",
        stars.iter().map(|s| s.ebv.1.unwrap_or(f64::NAN)).collect(),
    ));
    cols.push(Column::Str(
        "ebv_prior_source".into(),
        stars.iter().map(|s| Some(s.ebv_source.clone())).collect(),
    ));
    write_columns(path, &cols, &[]).unwrap();
}

#[test]
fn command_writes_calibration_and_report_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let (stars, _) = synthetic(160, 21, true);
    let input = dir.path().join("stars.parquet");
    write_fixture(&input, &stars);
    // reading back gives the same stars (ids exact, photometry, labels)
    let (back, summary) =
        sedflow::calib::data::read_labelled_stars(&input, ForwardModel::embedded_raw()).unwrap();
    assert_eq!(summary.stars, 160);
    assert_eq!(back, stars);
    // 80 training stars per fold: lower the band threshold through the config file
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "[other]\nx = 1\n[calibrate]\nmin_stars_per_band = 50\n",
    )
    .unwrap();
    let run = |out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_sedflow"))
            .args(["calibrate", "--stars"])
            .arg(&input)
            .arg("--output")
            .arg(out)
            .arg("--config")
            .arg(&config)
            .args(["--folds", "2", "--seed", "7"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let out1 = dir.path().join("a/calibration.json");
    let out2 = dir.path().join("b/calibration.json");
    let text = run(&out1);
    run(&out2);
    assert!(
        text.contains("ACCEPTANCE") && text.contains("BP-RP"),
        "{text}"
    );
    let j1 = std::fs::read_to_string(&out1).unwrap();
    assert_eq!(j1, std::fs::read_to_string(&out2).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a/report.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("b/report.json")).unwrap()
    );
    let cal = Calibration::load(&out1).unwrap();
    assert_eq!(cal.card["fitted_on"]["stars"], 160);
    assert_eq!(cal.card["settings"]["min_stars_per_band"], 50);
    let rep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("a/report.txt").with_extension("json")).unwrap(),
    )
    .unwrap();
    assert!(rep["acceptance"]["bp_rp_scatter_after"].as_f64().unwrap() < 0.03);
    // a missing column is named with the file
    let bad = dir.path().join("bad.parquet");
    {
        use sedflow::io::table::{write_columns, Column};
        write_columns(
            &bad,
            &[
                Column::I64("source_id".into(), vec![1]),
                Column::F64("teff".into(), vec![5000.0]),
            ],
            &[],
        )
        .unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_sedflow"))
        .args(["calibrate", "--stars"])
        .arg(&bad)
        .arg("--output")
        .arg(dir.path().join("c.json"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.parquet") && err.contains("parallax"),
        "{err}"
    );
}

#[test]
fn fit_recovers_injected_floors_and_map_error_scale() {
    // model-systematics noise beyond the reported 0.01 mag: none in Gaia (-> the minimum
    // floor), 0.03 mag in 2MASS, 0.015 mag in Pan-STARRS; the map's E(B-V) scatters twice as
    // much as quoted
    let mut extra = [0.0; 13];
    for (k, (_, _, b)) in BENCHMARK_PHOTOMETRY.iter().enumerate() {
        extra[k] = if b.starts_with("tmass") {
            0.03
        } else if b.starts_with("ps1") {
            0.015
        } else {
            0.0
        };
    }
    let phys = Physics {
        extra_noise: extra,
        ebv_sd: 0.03,
        ..Default::default()
    };
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, _) = synthetic_with(600, 21, true, &phys);
    let s = settings();
    let out = fit(fm, &stars, &s, &noise).unwrap();
    let floor = |b: &str| out.stats.floors.iter().find(|f| f.0 == b).unwrap().1;
    for b in ["tmass_j", "tmass_h", "tmass_ks"] {
        let f = floor(b);
        assert!((f - 0.03).abs() < 0.006, "{b}: floor {f}, injected 0.03");
    }
    for b in ["ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y"] {
        let f = floor(b);
        assert!((f - 0.015).abs() < 0.005, "{b}: floor {f}, injected 0.015");
    }
    for b in ["gaia_dr2_g", "gaia_dr2_bp", "gaia_dr2_rp"] {
        let f = floor(b);
        // no extra noise: the floor sits at (or just above) its minimum
        assert!(
            f >= s.floor_min && f < s.floor_min + 0.004,
            "{b}: floor {f}, injected none"
        );
    }
    let scale = out.stats.map_error_scales[0].1;
    assert!(
        (scale - 2.0).abs() < 0.4,
        "map error scale {scale}, injected 2"
    );
    // the floors travel with the calibration into the likelihood of the calibrated model
    let cal_model = fm.with_calibration(Some(out.calibration)).unwrap();
    let nm = NoiseModel::default_for(&cal_model);
    let h = fm.bands().id("tmass_h").unwrap();
    assert!((nm.floor[h] as f64 - floor("tmass_h")).abs() < 1e-6);
    // bands without calibration data keep the default floors
    let u = fm.bands().id("sdss_u").unwrap();
    assert_eq!(nm.floor[u], 0.04);
    assert_eq!(NoiseModel::default_for(fm).floor[h], 0.02);
}

#[test]
fn fit_recovers_injected_extinction_scales() {
    let mut kappa = [0.0; 13];
    let mut want = Vec::new();
    for (k, (_, _, b)) in BENCHMARK_PHOTOMETRY.iter().enumerate() {
        kappa[k] = match *b {
            "gaia_dr2_bp" => 0.05,
            "ps1_z" => -0.08,
            "tmass_ks" => -0.3,
            _ => 0.0,
        };
        want.push((b.to_string(), kappa[k]));
    }
    let phys = Physics {
        ext_kappa: kappa,
        ..Default::default()
    };
    let fm = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(fm);
    let (stars, _) = synthetic_with(600, 23, true, &phys);
    let s = settings();
    let out = fit(fm, &stars, &s, &noise).unwrap();
    for (b, k) in &want {
        let got = out
            .calibration
            .bands
            .iter()
            .find(|c| c.band == *b)
            .unwrap()
            .ext_kappa;
        // the anchor band's extinction is never rescaled
        if b == &s.ext_scale_anchor {
            assert_eq!(got, 0.0);
        }
        // WISE extinction is a few per cent of A_V: its relative scale is barely constrained
        let tol = if b.starts_with("wise") {
            0.15
        } else if b.starts_with("tmass") {
            0.08
        } else {
            0.02
        };
        assert!((got - k).abs() < tol, "{b}: kappa {got}, injected {k}");
    }
    // the calibrated forward model applies them: with zero polynomial corrections the
    // magnitude moves by kappa_b A_b
    let mut cal = out.calibration.clone();
    for b in &mut cal.bands {
        b.coef.iter_mut().for_each(|c| *c = 0.0);
    }
    let cal_model = fm.with_calibration(Some(cal)).unwrap();
    let t = Theta {
        teff: 5500.0,
        logg: 4.4,
        mh: 0.0,
        av: 1.5,
        rv: 3.1,
        distance: 500.0,
    };
    let b = [fm.bands().id("tmass_ks").unwrap()];
    let (mut m0, mut m1, mut a) = ([0f32], [0f32], [0f32]);
    fm.magnitudes(&t, &b, &mut m0).unwrap();
    cal_model.magnitudes(&t, &b, &mut m1).unwrap();
    fm.extinction(&t, &b, &mut a);
    let k = cal_model.calibration().unwrap().bands[cal_model
        .calibration()
        .unwrap()
        .bands
        .iter()
        .position(|c| c.band == "tmass_ks")
        .unwrap()]
    .ext_kappa;
    assert!(((m1[0] - m0[0]) as f64 - k * a[0] as f64).abs() < 1e-5);
}
