//! `sedflow forward` and `sedflow forward-check`.

use crate::io::table::{read_all_columns, read_numeric, write_columns, Column};
use crate::physics::calibration::Calibration;
use crate::physics::validate::{extinction_errors, leave_out_errors, BandErrors};
use crate::physics::{ForwardModel, Theta, PARAM_NAMES};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// Which forward model to use.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Forward-model tables (safetensors); default: the embedded tables.
    #[arg(long, value_name = "FILE")]
    pub forward_model: Option<PathBuf>,
    /// Empirical calibration JSON; default: the embedded calibration (if any).
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub calibration: Option<PathBuf>,
    /// Use the raw physical model, without the empirical calibration.
    #[arg(long)]
    pub raw: bool,
}

impl ModelArgs {
    /// Build the forward model these arguments select.
    pub fn load(&self) -> Result<ForwardModel> {
        let base = match &self.forward_model {
            Some(p) => ForwardModel::load(p)?,
            None => ForwardModel::embedded_raw().clone(),
        };
        let cal = if self.raw {
            None
        } else if let Some(p) = &self.calibration {
            Some(Calibration::load(p)?)
        } else if self.forward_model.is_none() {
            ForwardModel::embedded().calibration().cloned()
        } else {
            None
        };
        base.with_calibration(cal)
    }
}

/// Arguments of `sedflow forward`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sedflow forward --teff 5772 --logg 4.44 --mh 0 --av 0 --rv 3.1 --distance 10\n  sedflow forward --input thetas.csv --output mags.parquet --bands gaia_g,gaia_bp,gaia_rp"
)]
pub struct ForwardArgs {
    /// Effective temperature [K].
    #[arg(long, allow_hyphen_values = true, required_unless_present = "input")]
    teff: Option<f64>,
    /// log10 surface gravity [cgs].
    #[arg(long, allow_hyphen_values = true, required_unless_present = "input")]
    logg: Option<f64>,
    /// Metallicity [M/H].
    #[arg(long, allow_hyphen_values = true, required_unless_present = "input")]
    mh: Option<f64>,
    /// V-band extinction [mag].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    av: f64,
    /// R_V (2.3 .. 5.6).
    #[arg(long, allow_hyphen_values = true, default_value_t = 3.1)]
    rv: f64,
    /// Distance [pc].
    #[arg(long, allow_hyphen_values = true, default_value_t = 10.0)]
    distance: f64,
    /// Comma-separated band names (default: all bands).
    #[arg(long)]
    bands: Option<String>,
    /// CSV or Parquet file with columns teff logg mh av rv distance.
    #[arg(long, value_name = "FILE", requires = "output", conflicts_with_all = ["teff", "logg", "mh"])]
    input: Option<PathBuf>,
    /// Output CSV or Parquet (input columns + one column per band + `status`).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

/// Run `sedflow forward`.
pub fn run(a: ForwardArgs) -> Result<i32> {
    let model = a.model.load()?;
    let bands = model.bands().parse_list(a.bands.as_deref())?;
    if let Some(input) = &a.input {
        return run_file(&model, &bands, input, a.output.as_ref().unwrap());
    }
    let t = Theta {
        teff: a.teff.unwrap(),
        logg: a.logg.unwrap(),
        mh: a.mh.unwrap(),
        av: a.av,
        rv: a.rv,
        distance: a.distance,
    };
    model.check_theta(&t)?;
    let mut out = vec![0f32; bands.len()];
    let res = model.magnitudes(&t, &bands, &mut out);
    if let Err(e) = &res {
        eprintln!("sedflow: {e}");
    }
    let mut obj = serde_json::Map::new();
    for (&b, &m) in bands.iter().zip(&out) {
        let v = if m.is_finite() {
            serde_json::Value::from((m as f64 * 1e5).round() / 1e5)
        } else {
            serde_json::Value::Null
        };
        obj.insert(model.bands().name(b).to_string(), v);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(obj))?
    );
    Ok(0)
}

fn run_file(model: &ForwardModel, bands: &[usize], input: &Path, output: &Path) -> Result<i32> {
    let (_, cols) = read_numeric(input)?;
    let mut params = Vec::new();
    for p in PARAM_NAMES {
        params.push(
            cols.get(p)
                .with_context(|| {
                    format!(
                        "{}: missing column '{p}' (need {})",
                        input.display(),
                        PARAM_NAMES.join(" ")
                    )
                })?
                .clone(),
        );
    }
    let n = params[0].len();
    let thetas: Vec<Theta> = (0..n)
        .map(|i| Theta::from_array([0, 1, 2, 3, 4, 5].map(|p| params[p][i])))
        .collect();
    let nb = bands.len();
    let mut mags = vec![0f32; n * nb];
    model.magnitudes_batch(&thetas, bands, &mut mags);
    let status: Vec<Option<String>> = thetas
        .iter()
        .map(|t| {
            model
                .check_theta(t)
                .err()
                .map(|e| e.to_string())
                .or_else(|| (!model.support(t)).then(|| "outside the model's support".to_string()))
        })
        .collect();
    let n_bad = status.iter().filter(|s| s.is_some()).count();
    let mut columns = passthrough_columns(input, model, bands)?;
    for (k, &b) in bands.iter().enumerate() {
        columns.push(Column::F32(
            model.bands().name(b).to_string(),
            (0..n).map(|i| mags[i * nb + k]).collect(),
        ));
    }
    columns.push(Column::Str("status".into(), status));
    let meta = vec![("sedflow.forward_model".to_string(), model.id())];
    write_columns(output, &columns, &meta)?;
    eprintln!(
        "sedflow forward: {n} rows -> {} ({n_bad} with null magnitudes, reason in column 'status')",
        output.display()
    );
    Ok(0)
}

/// Every input column (source_id, theta, anything else) with its own type; an input column
/// named like an output column is an error, not silently overwritten.
fn passthrough_columns(input: &Path, model: &ForwardModel, bands: &[usize]) -> Result<Vec<Column>> {
    let cols = read_all_columns(input)?;
    for (name, _) in &cols {
        let clash = name == "status" || bands.iter().any(|&b| model.bands().name(b) == name);
        if clash {
            bail!(
                "{}: input column '{name}' would be overwritten by an output column of the \
                 same name; rename it (or leave that band out of --bands)",
                input.display()
            );
        }
    }
    Ok(cols.into_iter().map(|(n, a)| Column::Arrow(n, a)).collect())
}

/// Arguments of `sedflow forward-check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Extinction check set written by scripts/build_forward_model.py.
    #[arg(long, default_value = "models/forward/extinction_check.csv")]
    extinction_check: PathBuf,
    /// Only left-out models at or above this Teff count in the interpolation test.
    #[arg(long, default_value_t = 4000.0)]
    teff_min: f64,
    /// Interpolation tolerance at the 95th percentile [mag].
    #[arg(long, default_value_t = 0.020)]
    interp_p95_tol: f64,
    /// Extinction tolerance (maximum) [mag].
    #[arg(long, default_value_t = 0.010)]
    extinction_tol: f64,
    /// Write the report as JSON here as well.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

/// Run `sedflow forward-check`: prints per-band tables, exit code 1 if a tolerance fails.
pub fn check(a: CheckArgs) -> Result<i32> {
    let model = a.model.load()?;
    let axes = ["teff", "logg", "mh"];
    let loo: Vec<Vec<BandErrors>> = (0..3)
        .map(|ax| leave_out_errors(&model, ax, a.teff_min))
        .collect();
    println!("Interpolation: left-out CK04 models (every other node removed: local step doubled), Teff >= {} K", a.teff_min);
    println!("|error| in mmag, p95 / max per axis");
    println!("{:<13} {:>16} {:>16} {:>16}", "band", "teff", "logg", "mh");
    let mut ok = true;
    for b in 0..model.bands().len() {
        let cells: Vec<String> = loo
            .iter()
            .map(|r| format!("{:6.1} / {:6.1}", r[b].p95 * 1e3, r[b].max * 1e3))
            .collect();
        println!(
            "{:<13} {:>16} {:>16} {:>16}",
            model.bands().name(b),
            cells[0],
            cells[1],
            cells[2]
        );
        ok &= loo.iter().all(|r| r[b].p95 <= a.interp_p95_tol);
    }
    println!(
        "comparisons per axis: {}",
        loo.iter()
            .map(|r| r[0].n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ext = if a.extinction_check.exists() {
        let e = extinction_errors(&model, &a.extinction_check)?;
        println!();
        println!("Extinction: runtime A_b vs direct integration of G23-extinguished CK04 spectra");
        println!(
            "(A_V in [0, 10], R_V in [2.3, 5.6], {} cases), |error| in mmag",
            e[0].n
        );
        println!("{:<13} {:>8} {:>8} {:>8}", "band", "p50", "p95", "max");
        for r in &e {
            println!(
                "{:<13} {:>8.2} {:>8.2} {:>8.2}",
                r.band,
                r.p50 * 1e3,
                r.p95 * 1e3,
                r.max * 1e3
            );
            ok &= r.max <= a.extinction_tol;
        }
        Some(e)
    } else {
        bail!(
            "extinction check file {} not found (run from the repository root)",
            a.extinction_check.display()
        );
    };
    if let Some(p) = &a.json {
        let mut rep = serde_json::Map::new();
        for (ax, r) in axes.iter().zip(&loo) {
            rep.insert(format!("interpolation_{ax}"), serde_json::to_value(r)?);
        }
        rep.insert("extinction".into(), serde_json::to_value(&ext)?);
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)?;
    }
    println!();
    println!(
        "{}",
        if ok {
            "PASS: all bands within tolerance"
        } else {
            "FAIL: some band exceeds tolerance"
        }
    );
    Ok(if ok { 0 } else { 1 })
}
