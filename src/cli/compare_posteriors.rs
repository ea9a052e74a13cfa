//! `sedflow compare-posteriors`: two posterior tables of the same stars (typically
//! `sedflow mcmc` as the reference and `sedflow run` under test), star by star: the worst
//! |quantile difference| over p16, p50 and p84 of each compared parameter, in units of the
//! reference's p84 - p16 (`posterior::compare`), and its distribution over stars.

use crate::io::posteriors::{read_posteriors, PosteriorRow};
use crate::physics::PARAM_NAMES;
use crate::posterior::compare::{agreement, star_deviations, width_ratio, DEFAULT_PARAMS};
use crate::posterior::flags;
use crate::util::stats::median;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;

/// Arguments of `sedflow compare-posteriors`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example (200 calibration stars, the reference MCMC against sedflow run):\n  sedflow mcmc --config scripts/pipeline-dr2-labelled.toml --input ../shared/data/calibration/benchmark_stars.parquet --output work/ref --random 200\n  sedflow run --config scripts/pipeline-dr2-labelled.toml --input ../shared/data/calibration/benchmark_stars.parquet --output work/run\n  sedflow compare-posteriors --reference work/ref --test work/run"
)]
pub struct ComparePosteriorsArgs {
    /// Reference posterior table (file or output directory), e.g. of `sedflow mcmc`.
    #[arg(long)]
    reference: PathBuf,
    /// Posterior table under test, e.g. of `sedflow run`.
    #[arg(long)]
    test: PathBuf,
    /// Parameters compared (comma-separated names).
    #[arg(long, default_value = "teff,logg,mh,av")]
    params: String,
    /// Also compare stars whose reference chains did not converge (NOT_CONVERGED).
    #[arg(long)]
    include_unconverged: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write one line per star (source_id, worst and per-parameter deviations) as CSV here.
    #[arg(long)]
    per_star: Option<PathBuf>,
}

fn has_posterior(r: &PosteriorRow) -> bool {
    r.flags & flags::NOT_PROCESSED == 0 && r.params[0].q[2].is_finite()
}

/// Parameter indices from comma-separated names (the default set if none).
fn parse_params(list: &str) -> Result<Vec<usize>> {
    let params: Vec<usize> = list
        .split(',')
        .map(|p| {
            PARAM_NAMES
                .iter()
                .position(|n| *n == p.trim())
                .with_context(|| {
                    format!("unknown parameter {p:?} (expected one of {PARAM_NAMES:?})")
                })
        })
        .collect::<Result<_>>()?;
    Ok(if params.is_empty() {
        DEFAULT_PARAMS.to_vec()
    } else {
        params
    })
}

fn joined_names(params: &[usize]) -> String {
    params
        .iter()
        .map(|&p| PARAM_NAMES[p])
        .collect::<Vec<_>>()
        .join(",")
}

/// One compared star: its id, the worst deviation, the deviation per parameter, the row
/// under test and the width ratio per parameter.
type Compared = (i64, f64, Vec<f64>, PosteriorRow, Vec<f64>);

/// The stars with a posterior in both tables (reference chains that did not converge left
/// out unless asked), and the counts of reference posteriors, unconverged ones and stars
/// missing under test.
fn compare_tables(
    a: &ComparePosteriorsArgs,
    params: &[usize],
) -> Result<(Vec<Compared>, [usize; 3])> {
    let reference = read_posteriors(&a.reference)?;
    let test: HashMap<i64, PosteriorRow> = read_posteriors(&a.test)?
        .into_iter()
        .filter(has_posterior)
        .map(|r| (r.source_id, r))
        .collect();
    let with_ref: Vec<&PosteriorRow> = reference.iter().filter(|r| has_posterior(r)).collect();
    let unconverged = with_ref
        .iter()
        .filter(|r| r.flags & flags::NOT_CONVERGED != 0)
        .count();
    let mut rows = Vec::new();
    let mut missing = 0;
    for r in &with_ref {
        if !a.include_unconverged && r.flags & flags::NOT_CONVERGED != 0 {
            continue;
        }
        let Some(t) = test.get(&r.source_id) else {
            missing += 1;
            continue;
        };
        let (devs, worst) = star_deviations(&r.params, &t.params, params);
        let ratios = params
            .iter()
            .map(|&p| width_ratio(&r.params[p], &t.params[p]))
            .collect();
        rows.push((r.source_id, worst, devs, t.clone(), ratios));
    }
    Ok((rows, [with_ref.len(), unconverged, missing]))
}

/// Run `sedflow compare-posteriors`.
pub fn run(a: ComparePosteriorsArgs) -> Result<i32> {
    let params = parse_params(&a.params)?;
    let (rows, [n_ref, unconverged, missing]) = compare_tables(&a, &params)?;
    if rows.is_empty() {
        bail!("no star has a posterior in both tables");
    }
    let worst: Vec<f64> = rows.iter().map(|x| x.1).collect();
    let agree = agreement(&worst);
    println!(
        "{} reference posteriors ({} not converged{}), {} compared, {} without a posterior under test",
        n_ref,
        unconverged,
        if a.include_unconverged { ", included" } else { ", left out" },
        rows.len(),
        missing
    );
    println!(
        "worst |dq| / reference width over p16/p50/p84 of {}: median {:.3}, p90 {:.3}, max {:.3}; within 0.25: {:.1}%, within 0.5: {:.1}%",
        joined_names(&params),
        agree.median,
        agree.p90,
        agree.max,
        100.0 * agree.within_0_25,
        100.0 * agree.within_0_5
    );
    let median_of = |f: &dyn Fn(&Compared) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
    let per_param: Vec<(String, f64)> = params
        .iter()
        .enumerate()
        .map(|(k, &p)| (PARAM_NAMES[p].to_string(), median_of(&|x| x.2[k])))
        .collect();
    let width_ratios: Vec<(String, f64)> = params
        .iter()
        .enumerate()
        .map(|(k, &p)| (PARAM_NAMES[p].to_string(), median_of(&|x| x.4[k])))
        .collect();
    for ((name, m), (_, r)) in per_param.iter().zip(&width_ratios) {
        println!("  {name}: median deviation {m:.3}, median width ratio (test / reference p84 - p16) {r:.3}");
    }
    let test_median =
        |f: fn(&PosteriorRow) -> f64| median(&rows.iter().map(|x| f(&x.3)).collect::<Vec<_>>());
    let eff = test_median(|r| r.sample_efficiency);
    let neff = test_median(|r| r.n_eff);
    let ns = test_median(|r| r.n_samples);
    println!("under test: median efficiency {eff:.3}, median n_eff {neff:.1}, median samples drawn {ns:.0}");
    if let Some(p) = &a.per_star {
        write_per_star(p, &params, &rows)?;
    }
    if let Some(p) = &a.report {
        let json = serde_json::json!({
            "reference": a.reference, "test": a.test, "compared": rows.len(),
            "reference_not_converged": unconverged, "missing_under_test": missing,
            "agreement": agree, "median_deviation_per_param": per_param,
            "median_width_ratio_per_param": width_ratios,
            "test_median_efficiency": eff, "test_median_n_eff": neff, "test_median_samples": ns,
        });
        std::fs::write(p, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(0)
}

/// One CSV line per star: source_id, the worst deviation, then one per parameter.
fn write_per_star(path: &std::path::Path, params: &[usize], rows: &[Compared]) -> Result<()> {
    let mut s = format!("source_id,worst,{}\n", joined_names(params));
    for (id, w, devs, _, _) in rows {
        let d: Vec<String> = devs.iter().map(|x| format!("{x:.4}")).collect();
        s.push_str(&format!("{id},{w:.4},{}\n", d.join(",")));
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}
