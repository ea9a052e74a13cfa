//! `sedflow compare-labels`: posteriors of real stars (the output of `sedflow run`) against
//! independent spectroscopic labels in the input catalogue: robust scatter and bias of the
//! posterior medians, by label source and for dwarfs/giants, and importance-sampling
//! efficiency.

use crate::io::posteriors::read_posteriors;
use crate::io::table::{read_i64, read_numeric, read_strings};
use crate::util::stats::{median, robust_scatter};
use anyhow::{Context, Result};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;

/// Arguments of `sedflow compare-labels`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example (the calibration stars, Gaia DR2 photometry):\n  sedflow run --config scripts/pipeline-dr2-labelled.toml --input ../shared/data/calibration/benchmark_stars.parquet --output work/bench-real\n  sedflow compare-labels --catalogue ../shared/data/calibration/benchmark_stars.parquet --posteriors work/bench-real"
)]
pub struct CompareArgs {
    /// Input catalogue with label columns (teff, logg, mh; optional label_source).
    #[arg(long)]
    catalogue: PathBuf,
    /// Output directory (or file) of `sedflow run` for that catalogue.
    #[arg(long)]
    posteriors: PathBuf,
    /// Only the stars that have a posterior in this other table too (e.g. the reference
    /// MCMC's), so that two methods are compared on the same stars.
    #[arg(long)]
    same_stars_as: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Run `sedflow compare-labels`.
pub fn run(a: CompareArgs) -> Result<i32> {
    let (_, cat) = read_numeric(&a.catalogue)?;
    let col = |name: &str| {
        cat.get(name)
            .with_context(|| format!("{}: no column '{name}'", a.catalogue.display()))
    };
    let ids = read_i64(&a.catalogue, "source_id")?;
    let sources =
        read_strings(&a.catalogue, "label_source").unwrap_or_else(|_| vec![None; ids.len()]);
    let keep: Option<std::collections::HashSet<i64>> = match &a.same_stars_as {
        Some(p) => Some(
            read_posteriors(p)?
                .into_iter()
                .filter(|r| r.params[0].q[2].is_finite())
                .map(|r| r.source_id)
                .collect(),
        ),
        None => None,
    };
    let mut post: HashMap<i64, (f64, f64, f64, f64, u32)> = HashMap::new();
    for r in read_posteriors(&a.posteriors)? {
        if keep.as_ref().is_some_and(|k| !k.contains(&r.source_id)) {
            continue;
        }
        let p50 = |p: usize| r.params[p].q[2] as f64;
        post.insert(
            r.source_id,
            (p50(0), p50(1), p50(2), r.sample_efficiency, r.flags),
        );
    }
    let (lt, lg, lm) = (col("teff")?, col("logg")?, col("mh")?);
    // groups: all, dwarfs (log g >= 3.8), giants, per label source
    let mut groups: Vec<(String, Vec<usize>)> = vec![
        ("all".into(), vec![]),
        ("dwarfs (logg >= 3.8)".into(), vec![]),
        ("giants (logg < 3.8)".into(), vec![]),
    ];
    let mut by_source: HashMap<String, Vec<usize>> = HashMap::new();
    let mut matched = Vec::new();
    for k in 0..ids.len() {
        let Some(p) = ids[k].and_then(|id| post.get(&id)) else {
            continue;
        };
        if !(p.0.is_finite() && lt[k].is_finite()) {
            continue;
        }
        let m = matched.len();
        matched.push((k, *p));
        groups[0].1.push(m);
        groups[if lg[k] >= 3.8 { 1 } else { 2 }].1.push(m);
        if let Some(s) = &sources[k] {
            by_source.entry(s.clone()).or_default().push(m);
        }
    }
    let mut src: Vec<_> = by_source.into_iter().collect();
    src.sort();
    groups.extend(src);
    println!(
        "{} labelled stars, {} with a posterior ({} posterior rows read)",
        ids.len(),
        matched.len(),
        post.len()
    );
    println!(
        "{:<22} {:>5} | {:>13} {:>8} | {:>13} {:>8} | {:>13} {:>8} | {:>8}",
        "group",
        "n",
        "Teff scatter",
        "bias",
        "logg scatter",
        "bias",
        "[M/H] scat",
        "bias",
        "med eff"
    );
    let mut rows = Vec::new();
    for (name, idx) in &groups {
        let d = |f: &dyn Fn(&(usize, (f64, f64, f64, f64, u32))) -> f64| {
            idx.iter().map(|&m| f(&matched[m])).collect::<Vec<f64>>()
        };
        let dt = d(&|(k, p)| p.0 - lt[*k]);
        let dg = d(&|(k, p)| p.1 - lg[*k]);
        let dm = d(&|(k, p)| p.2 - lm[*k]);
        let eff = d(&|(_, p)| p.3);
        println!(
            "{:<22} {:>5} | {:>11.1} K {:>+8.1} | {:>13.3} {:>+8.3} | {:>13.3} {:>+8.3} | {:>8.3}",
            name,
            idx.len(),
            robust_scatter(&dt),
            median(&dt),
            robust_scatter(&dg),
            median(&dg),
            robust_scatter(&dm),
            median(&dm),
            median(&eff)
        );
        rows.push(serde_json::json!({"group": name, "n": idx.len(),
            "teff_scatter": robust_scatter(&dt), "teff_bias": median(&dt),
            "logg_scatter": robust_scatter(&dg), "logg_bias": median(&dg),
            "mh_scatter": robust_scatter(&dm), "mh_bias": median(&dm),
            "median_efficiency": median(&eff)}));
    }
    let flagged = matched.iter().filter(|(_, p)| p.4 != 0).count();
    println!("stars with any flag: {flagged} of {}", matched.len());
    if let Some(r) = &a.report {
        std::fs::write(
            r,
            serde_json::to_string_pretty(&serde_json::json!({"groups": rows, "flagged": flagged}))?,
        )?;
    }
    Ok(0)
}
