//! `sedflow calibrate`: fit the empirical calibration of the forward model on labelled stars,
//! cross-validate it, and write the calibration (with its card) and the validation report.

use crate::calib::data::read_labelled_stars;
use crate::calib::fit::fit;
use crate::calib::report::{build, Report};
use crate::calib::validate::cross_validate;
use crate::calib::CalibSettings;
use crate::likelihood::NoiseModel;
use crate::physics::calibration::Calibration;
use crate::physics::ForwardModel;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `sedflow calibrate`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow calibrate --stars ../shared/data/calibration/benchmark_stars.parquet \\\n      --output models/calibration/calibration.json --folds 5 --seed 0\n\nWrites the calibration JSON and, next to it, report.txt and report.json."
)]
pub struct CalibrateArgs {
    /// Parquet file of labelled stars (benchmark contract: Gaia DR2, PS1, 2MASS, WISE,
    /// parallax, teff/logg/mh with errors, label_source, ebv_prior).
    #[arg(long, value_name = "FILE")]
    stars: PathBuf,
    /// Output calibration JSON; report.txt and report.json are written next to it.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Cross-validation folds for the report (0: fit only, no report).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Run seed (fold assignment).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// TOML file whose optional [calibrate] table overrides fit settings (field names as in
    /// the model card's "settings"); other tables are ignored.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also write per-star cross-validation results (CSV or Parquet): labels, fold,
    /// recovered Teff / A_V / distance modulus / chi^2 before and after, residual per band.
    #[arg(long, value_name = "FILE")]
    per_star: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    calibrate: Option<toml::Value>,
}

/// Settings: defaults, overridden by the [calibrate] table of the config file.
fn settings(config: Option<&Path>) -> Result<CalibSettings> {
    let Some(path) = config else {
        return Ok(CalibSettings::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(table) = file.calibrate else {
        return Ok(CalibSettings::default());
    };
    // merge: defaults as a TOML table, overridden key by key
    let mut merged = toml::Value::try_from(CalibSettings::default())?;
    let (Some(m), toml::Value::Table(t)) = (merged.as_table_mut(), table) else {
        bail!("{}: [calibrate] must be a table", path.display());
    };
    for (k, v) in t {
        if !m.contains_key(&k) {
            bail!(
                "{}: unknown setting calibrate.{k}; known: {}",
                path.display(),
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        m.insert(k, v);
    }
    merged
        .try_into()
        .with_context(|| format!("{}: invalid [calibrate] settings", path.display()))
}

/// Per-star cross-validation results as columns.
fn write_per_star(
    path: &Path,
    fm: &ForwardModel,
    stars: &[crate::calib::data::LabelledStar],
    v: &crate::calib::validate::Validation,
    s: &CalibSettings,
) -> Result<()> {
    use crate::io::table::{write_columns, Column};
    let col = |name: &str, f: &dyn Fn(usize) -> f64| {
        Column::F64(name.to_string(), (0..stars.len()).map(f).collect())
    };
    let o = &v.outcomes;
    let ir = crate::calib::irfm::IrfmSettings {
        max_ebv: s.irfm_max_ebv,
        sigma_relation: s.irfm_sigma_relation,
    };
    let irfm: Vec<_> = stars
        .iter()
        .map(|st| crate::calib::irfm::irfm_teff(fm, st, &ir))
        .collect();
    let fit_col = |name: &str, after: bool, g: fn(&crate::calib::recover::StarFit) -> f64| {
        col(name, &|i| {
            let f = if after { o[i].after } else { o[i].before };
            f.as_ref().map(g).unwrap_or(f64::NAN)
        })
    };
    let label_col = |name: &str, after: bool, g: fn(&crate::calib::recover::StarFit) -> f64| {
        col(name, &|i| {
            let f = if after {
                o[i].at_labels_after
            } else {
                o[i].at_labels_before
            };
            f.as_ref().map(g).unwrap_or(f64::NAN)
        })
    };
    let mut cols = vec![
        Column::I64(
            "source_id".into(),
            stars.iter().map(|s| s.source_id).collect(),
        ),
        Column::Str(
            "label_source".into(),
            stars.iter().map(|s| Some(s.label_source.clone())).collect(),
        ),
        col("teff", &|i| stars[i].labels[0]),
        col("logg", &|i| stars[i].labels[1]),
        col("mh", &|i| stars[i].labels[2]),
        col("fold", &|i| o[i].fold as f64),
        col("teff_anchored", &|i| o[i].anchored[0]),
        col("logg_anchored", &|i| o[i].anchored[1]),
        col("teff_irfm", &|i| irfm[i].map_or(f64::NAN, |t| t.teff)),
        col("teff_irfm_error", &|i| {
            irfm[i].map_or(f64::NAN, |t| t.sigma)
        }),
        fit_col("teff_raw", false, |f| f.teff),
        fit_col("av_raw", false, |f| f.av),
        fit_col("mu_raw", false, |f| f.mu),
        fit_col("chi2_raw", false, |f| f.chi2),
        fit_col("teff_cal", true, |f| f.teff),
        fit_col("av_cal", true, |f| f.av),
        fit_col("mu_cal", true, |f| f.mu),
        fit_col("chi2_cal", true, |f| f.chi2),
        label_col("av_at_label_raw", false, |f| f.av),
        label_col("chi2_at_label_raw", false, |f| f.chi2),
        label_col("av_at_label_cal", true, |f| f.av),
        label_col("chi2_at_label_cal", true, |f| f.chi2),
    ];
    for b in fm.bands().all() {
        if !stars
            .iter()
            .any(|s| s.phot.iter().any(|m| m.band as usize == b.id))
        {
            continue;
        }
        for (suffix, after) in [("raw", false), ("cal", true)] {
            cols.push(col(&format!("resid_{}_{suffix}", b.name), &|i| {
                let r = if after {
                    &o[i].resid_after
                } else {
                    &o[i].resid_before
                };
                let k = stars[i].phot.iter().position(|m| m.band as usize == b.id);
                match (r, k) {
                    (Some(r), Some(k)) => r[k],
                    _ => f64::NAN,
                }
            }));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_columns(path, &cols, &[])
}

/// Run `sedflow calibrate`.
pub fn run(a: CalibrateArgs) -> Result<i32> {
    let t0 = Instant::now();
    let s = settings(a.config.as_deref())?;
    let raw = ForwardModel::embedded_raw();
    let noise = NoiseModel::default_for(raw);
    let (stars, summary) = read_labelled_stars(&a.stars, raw)?;
    eprintln!(
        "sedflow calibrate: {} stars from {} ({} rows)",
        stars.len(),
        a.stars.display(),
        summary.rows
    );
    let validation = if a.folds > 0 {
        Some(cross_validate(
            raw,
            &stars,
            &s,
            &noise,
            a.folds,
            a.seed,
            |msg| eprintln!("  [{:6.1} s] {msg}", t0.elapsed().as_secs_f64()),
        )?)
    } else {
        None
    };
    if let (Some(path), Some(v)) = (&a.per_star, &validation) {
        write_per_star(path, raw, &stars, v, &s)?;
    }
    eprintln!(
        "  [{:6.1} s] final fit on all stars",
        t0.elapsed().as_secs_f64()
    );
    let out = fit(raw, &stars, &s, &noise)?;
    let cal_model = raw.with_calibration(Some(out.calibration.clone()))?;
    let standards = crate::calib::standards::check(raw, &cal_model)?;
    let report: Option<Report> = validation.map(|v| {
        build(
            raw,
            &stars,
            &v,
            summary.clone(),
            a.seed,
            out.stats.clone(),
            &s,
            Some(standards.clone()),
        )
    });
    let mut cal: Calibration = out.calibration;
    let uncorrected: Vec<&str> = raw
        .bands()
        .all()
        .iter()
        .map(|b| b.name.as_str())
        .filter(|n| !cal.bands.iter().any(|c| c.band == *n))
        .collect();
    cal.card = serde_json::json!({
        "what": "empirical per-band corrections delta_b(Teff, log g, [M/H]) added to the raw forward model's magnitudes",
        "forward_model": raw.version,
        "fitted_on": summary,
        "method": "marginal likelihood of the photometry given the labels (with errors + floors), the zero-point corrected parallax and A_V under its reddening prior, linearised per star and marginalised analytically; ridge prior on the coefficients; clamped to the box of the training labels; per-band extinction scales A_b -> A_b (1 + ext_kappa) fitted jointly (applied by the forward model); per-band model-systematics floors and reddening-map error scales by maximum marginal likelihood (Fisher scoring); per-survey label offsets (label = true + offset: a Teff polynomial in log10 Teff and log g per label_source, fit.label_offsets) fitted jointly, their common scale anchored to IRFM Teff from the Casagrande et al. 2021 Gaia DR2/2MASS colour-Teff relations of low-reddening stars (fit.anchor), their luminosity scale (dwarf log g offsets vs the corrections' common mode) anchored to the Sun: calibrated M_G (DR2) and M_Ks at Teff 5772, log g 4.44, [M/H] 0 pulled to 4.67 and 3.27 with width settings.sun_anchor_sigma (standards: the Sun's BP-RP and the F0V-K5V dwarf sequence are checks, not inputs). The corrections describe the model against stars on the anchored scale, not against any one survey. The floors are the likelihood's floors for the calibrated model (NoiseModel::default_for): the posterior engine's and simulator's noise model is data-driven",
        "settings": s,
        "seed": a.seed,
        "folds": a.folds,
        "fit": out.stats,
        "origins": cal.bands.iter().map(|b| (b.band.clone(), b.origin.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "uncorrected": uncorrected,
        "uncorrected_reason": "no calibration data for them; not inherited from PS1 because their passbands differ (SDSS, LSST) or have no counterpart (u), and nothing here tests whether the model's errors carry over",
        "validation": report.as_ref().map(|r| &r.acceptance),
        "standards": standards,
    });
    cal.check_bands(raw.bands())?;
    let json = serde_json::to_string_pretty(&cal)? + "\n";
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.output, json).with_context(|| format!("writing {}", a.output.display()))?;
    if let Some(r) = &report {
        let dir = a.output.parent().map(Path::to_path_buf).unwrap_or_default();
        let text = r.to_text();
        let p = dir.join("report.txt");
        std::fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
        let p = dir.join("report.json");
        std::fs::write(&p, serde_json::to_string_pretty(r)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        print!("{text}");
    }
    eprintln!(
        "sedflow calibrate: wrote {} ({} bands corrected) in {:.1} s",
        a.output.display(),
        cal.bands.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}
