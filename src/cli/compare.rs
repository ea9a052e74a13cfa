//! `sedflow compare-labels`: posteriors of real stars (the output of `sedflow run`) against
//! independent spectroscopic labels in the input catalogue: robust scatter and bias of the
//! posterior medians, for dwarfs/giants, by label source and by reddening-prior bin (the
//! catalogue's `ebv_prior`), and importance-sampling efficiency; optionally with a reference
//! (the MCMC) on the same stars alongside.

use crate::io::posteriors::read_posteriors;
use crate::io::table::{read_i64, read_numeric, read_strings};
use crate::util::stats::{median, robust_scatter};
use anyhow::{Context, Result};
use clap::Args;
use std::collections::{HashMap, HashSet};
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
    /// Reference posteriors of the same catalogue (e.g. `sedflow mcmc`'s): each group is
    /// reported for both, on the stars both have, so that sampler error (the two differ) is
    /// told from model error (both miss the labels alike). Also reports the Monte Carlo
    /// floor: how much noise of the test's own size around the reference's medians alone
    /// moves the label scatter.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Posterior medians (Teff, log g, [M/H]), efficiency and flags of one star.
type Medians = (f64, f64, f64, f64, u32);

/// E(B-V) bin edges of the reddening-prior breakdown [mag].
const EBV_EDGES: [f64; 4] = [0.0, 0.03, 0.1, 0.3];

/// Posterior medians by source_id, restricted to `keep` where given.
fn medians(path: &std::path::Path, keep: Option<&HashSet<i64>>) -> Result<HashMap<i64, Medians>> {
    let mut post = HashMap::new();
    for r in read_posteriors(path)? {
        if keep.is_some_and(|k| !k.contains(&r.source_id)) {
            continue;
        }
        let p50 = |p: usize| r.params[p].q[2] as f64;
        post.insert(
            r.source_id,
            (p50(0), p50(1), p50(2), r.sample_efficiency, r.flags),
        );
    }
    Ok(post)
}

/// Source ids with a finite Teff posterior median in a table.
fn ids_with_posterior(path: &std::path::Path) -> Result<HashSet<i64>> {
    Ok(read_posteriors(path)?
        .into_iter()
        .filter(|r| r.params[0].q[2].is_finite())
        .map(|r| r.source_id)
        .collect())
}

/// The reddening-prior bin of a catalogue value.
fn ebv_bin(ebv: f64) -> String {
    if !ebv.is_finite() {
        return "E(B-V) prior: none".into();
    }
    match EBV_EDGES.iter().rposition(|&e| ebv >= e) {
        Some(i) if i + 1 < EBV_EDGES.len() => {
            format!("E(B-V) {:.2}-{:.2}", EBV_EDGES[i], EBV_EDGES[i + 1])
        }
        Some(i) => format!("E(B-V) >= {:.2}", EBV_EDGES[i]),
        None => format!("E(B-V) < {:.2}", EBV_EDGES[0]),
    }
}

/// The catalogue's labels and the group names of each row.
struct Labels {
    ids: Vec<Option<i64>>,
    teff: Vec<f64>,
    logg: Vec<f64>,
    mh: Vec<f64>,
    /// Group names of each row, besides "all" (dwarf/giant, label source, reddening bin).
    groups: Vec<Vec<String>>,
}

impl Labels {
    fn read(path: &std::path::Path) -> Result<Labels> {
        let (_, cat) = read_numeric(path)?;
        let col = |name: &str| {
            cat.get(name)
                .cloned()
                .with_context(|| format!("{}: no column '{name}'", path.display()))
        };
        let ids = read_i64(path, "source_id")?;
        let sources = read_strings(path, "label_source").unwrap_or_else(|_| vec![None; ids.len()]);
        let (teff, logg, mh) = (col("teff")?, col("logg")?, col("mh")?);
        let ebv = cat.get("ebv_prior");
        let groups = (0..ids.len())
            .map(|k| {
                let mut g = vec![if logg[k] >= 3.8 {
                    "dwarfs (logg >= 3.8)".to_string()
                } else {
                    "giants (logg < 3.8)".to_string()
                }];
                g.extend(sources[k].clone());
                g.extend(ebv.map(|e| ebv_bin(e[k])));
                g
            })
            .collect();
        Ok(Labels {
            ids,
            teff,
            logg,
            mh,
            groups,
        })
    }
}

/// Group names in report order: all, dwarfs/giants, label sources, reddening bins.
fn group_order(labels: &Labels, rows: &[usize]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|&k| labels.groups[k].clone())
        .collect();
    names.sort();
    names.dedup();
    let rank = |n: &String| match n {
        n if n.starts_with("dwarfs") || n.starts_with("giants") => 0,
        n if n.starts_with("E(B-V)") => 2,
        _ => 1,
    };
    names.sort_by_key(|n| (rank(n), n.contains("none"), n.clone()));
    let mut out = vec!["all".to_string()];
    out.extend(names);
    out
}

/// Figures of one group under one table of medians.
fn group_figures(
    labels: &Labels,
    rows: &[usize],
    post: &HashMap<i64, Medians>,
) -> serde_json::Value {
    let p = |k: usize| post[&labels.ids[k].unwrap()];
    let d = |f: &dyn Fn(usize) -> f64| rows.iter().map(|&k| f(k)).collect::<Vec<f64>>();
    let dt = d(&|k| p(k).0 - labels.teff[k]);
    let dg = d(&|k| p(k).1 - labels.logg[k]);
    let dm = d(&|k| p(k).2 - labels.mh[k]);
    let eff = d(&|k| p(k).3);
    serde_json::json!({"n": rows.len(),
        "teff_scatter": robust_scatter(&dt), "teff_bias": median(&dt),
        "logg_scatter": robust_scatter(&dg), "logg_bias": median(&dg),
        "mh_scatter": robust_scatter(&dm), "mh_bias": median(&dm),
        "median_efficiency": median(&eff)})
}

fn print_header() {
    println!(
        "{:<24} {:>5} | {:>13} {:>8} | {:>13} {:>8} | {:>13} {:>8} | {:>8}",
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
}

fn print_row(name: &str, f: &serde_json::Value) {
    let v = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<24} {:>5} | {:>11.1} K {:>+8.1} | {:>13.3} {:>+8.3} | {:>13.3} {:>+8.3} | {:>8.3}",
        name,
        f["n"],
        v("teff_scatter"),
        v("teff_bias"),
        v("logg_scatter"),
        v("logg_bias"),
        v("mh_scatter"),
        v("mh_bias"),
        v("median_efficiency")
    );
}

/// Perturbations drawn for the Monte Carlo floor.
const FLOOR_DRAWS: usize = 1000;

/// Half widths (p84 - p16) / 2 of Teff, log g and [M/H] by source_id.
fn half_widths(path: &std::path::Path) -> Result<HashMap<i64, [f64; 3]>> {
    Ok(read_posteriors(path)?
        .into_iter()
        .map(|r| {
            let hw = |p: usize| 0.5 * (r.params[p].q[3] - r.params[p].q[1]) as f64;
            (r.source_id, [hw(0), hw(1), hw(2)])
        })
        .collect())
}

/// One parameter's Monte Carlo floor on the label scatter.
#[derive(serde::Serialize)]
struct Floor {
    /// Robust spread of (test - reference median) / reference half width.
    spread: f64,
    /// Relative scatter change observed (test against reference).
    observed: f64,
    /// Mean and standard deviation of the relative change that noise of `spread` alone
    /// gives the reference's medians.
    noise_mean: f64,
    noise_sd: f64,
}

/// How far Monte Carlo noise alone moves the robust label scatter: the reference's medians
/// perturbed by Gaussian noise of the test's own spread around them (in the reference's
/// half widths), `FLOOR_DRAWS` times. A test whose scatter change lies within this spread
/// differs from the reference by its Monte Carlo error, not by a bias.
fn noise_floor(
    labels: &Labels,
    rows: &[usize],
    (post, reference): (&HashMap<i64, Medians>, &HashMap<i64, Medians>),
    widths: &HashMap<i64, [f64; 3]>,
) -> Vec<Floor> {
    let med = |m: &Medians, p: usize| [m.0, m.1, m.2][p];
    let label = |k: usize, p: usize| [labels.teff[k], labels.logg[k], labels.mh[k]][p];
    let mut rng = crate::util::rng::Rng::new(0xF100);
    (0..3)
        .map(|p| {
            let id = |k: usize| labels.ids[k].unwrap();
            let hw: Vec<f64> = rows.iter().map(|&k| widths[&id(k)][p]).collect();
            let ref_res: Vec<f64> = rows
                .iter()
                .map(|&k| med(&reference[&id(k)], p) - label(k, p))
                .collect();
            let dev: Vec<f64> = rows
                .iter()
                .zip(&hw)
                .map(|(&k, h)| (med(&post[&id(k)], p) - med(&reference[&id(k)], p)) / h)
                .collect();
            let spread = robust_scatter(&dev);
            let s0 = robust_scatter(&ref_res);
            let test_res: Vec<f64> = ref_res
                .iter()
                .zip(&dev)
                .zip(&hw)
                .map(|((r, d), h)| r + d * h)
                .collect();
            let changes: Vec<f64> = (0..FLOOR_DRAWS)
                .map(|_| {
                    let noisy: Vec<f64> = ref_res
                        .iter()
                        .zip(&hw)
                        .map(|(r, h)| r + spread * h * rng.normal())
                        .collect();
                    robust_scatter(&noisy) / s0 - 1.0
                })
                .collect();
            let noise_mean = changes.iter().sum::<f64>() / FLOOR_DRAWS as f64;
            let var = changes
                .iter()
                .map(|c| (c - noise_mean).powi(2))
                .sum::<f64>();
            Floor {
                spread,
                observed: robust_scatter(&test_res) / s0 - 1.0,
                noise_mean,
                noise_sd: (var / (FLOOR_DRAWS - 1) as f64).sqrt(),
            }
        })
        .collect()
}

/// Print the Monte Carlo floor of every parameter.
fn print_floor(floor: &[Floor]) {
    println!("Monte Carlo floor (all stars): the test's medians sit a robust spread of s reference half widths from the reference's; noise of that size alone changes the reference's label scatter by mean +- sd");
    for (name, f) in ["Teff", "log g", "[M/H]"].iter().zip(floor) {
        println!(
            "  {name:<6} s {:.3}: observed {:+.1}%, noise alone {:+.1}% +- {:.1}%",
            f.spread,
            100.0 * f.observed,
            100.0 * f.noise_mean,
            100.0 * f.noise_sd
        );
    }
}

/// Run `sedflow compare-labels`.
pub fn run(a: CompareArgs) -> Result<i32> {
    let labels = Labels::read(&a.catalogue)?;
    let mut keep: Option<HashSet<i64>> = a
        .same_stars_as
        .as_deref()
        .map(ids_with_posterior)
        .transpose()?;
    if let Some(r) = &a.reference {
        let ref_ids = ids_with_posterior(r)?;
        keep = Some(match keep {
            Some(k) => k.intersection(&ref_ids).copied().collect(),
            None => ref_ids,
        });
    }
    let post = medians(&a.posteriors, keep.as_ref())?;
    let reference = a
        .reference
        .as_deref()
        .map(|r| medians(r, keep.as_ref()))
        .transpose()?;
    let usable = |k: usize| {
        let Some(id) = labels.ids[k] else {
            return false;
        };
        let has = |m: &HashMap<i64, Medians>| m.get(&id).is_some_and(|p| p.0.is_finite());
        labels.teff[k].is_finite() && has(&post) && reference.as_ref().is_none_or(has)
    };
    let rows: Vec<usize> = (0..labels.ids.len()).filter(|&k| usable(k)).collect();
    println!(
        "{} labelled stars, {} with a posterior ({} posterior rows read)",
        labels.ids.len(),
        rows.len(),
        post.len()
    );
    if reference.is_some() {
        println!("each group: the table under test, then the reference (same stars)");
    }
    print_header();
    let mut report = Vec::new();
    for name in group_order(&labels, &rows) {
        let members: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&k| name == "all" || labels.groups[k].contains(&name))
            .collect();
        let test = group_figures(&labels, &members, &post);
        print_row(&name, &test);
        let mut entry = serde_json::json!({"group": name, "test": test});
        if let Some(r) = &reference {
            let rf = group_figures(&labels, &members, r);
            print_row("  reference", &rf);
            entry["reference"] = rf;
        }
        report.push(entry);
    }
    let flagged = rows
        .iter()
        .filter(|&&k| post[&labels.ids[k].unwrap()].4 != 0)
        .count();
    println!("stars with any flag: {flagged} of {}", rows.len());
    let floor = match (&reference, &a.reference) {
        (Some(r), Some(path)) => {
            let f = noise_floor(&labels, &rows, (&post, r), &half_widths(path)?);
            print_floor(&f);
            Some(f)
        }
        _ => None,
    };
    if let Some(r) = &a.report {
        let json =
            serde_json::json!({"groups": report, "flagged": flagged, "monte_carlo_floor": floor});
        std::fs::write(r, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    /// 400 stars with unit label residuals; the test's medians are the reference's plus
    /// Gaussian noise of 0.3 half widths (or none). The floor recovers the spread, its
    /// noise-alone change brackets the observed one, and identical tables change nothing.
    #[test]
    fn noise_floor_recovers_the_spread_and_brackets_the_change() {
        let n = 400;
        let mut rng = Rng::new(4);
        let ids: Vec<i64> = (0..n as i64).collect();
        let labels = Labels {
            ids: ids.iter().map(|&i| Some(i)).collect(),
            teff: (0..n).map(|_| 5000.0 + 100.0 * rng.normal()).collect(),
            logg: (0..n).map(|_| 4.0 + 0.15 * rng.normal()).collect(),
            mh: (0..n).map(|_| 0.2 * rng.normal()).collect(),
            groups: vec![vec![]; n],
        };
        let reference: HashMap<i64, Medians> = ids
            .iter()
            .map(|&i| (i, (5000.0, 4.0, 0.0, 1.0, 0)))
            .collect();
        let widths: HashMap<i64, [f64; 3]> = ids.iter().map(|&i| (i, [80.0, 0.1, 0.15])).collect();
        let noisy: HashMap<i64, Medians> = reference
            .iter()
            .map(|(&i, m)| {
                let e = [0.3 * rng.normal(), 0.3 * rng.normal(), 0.3 * rng.normal()];
                let m2 = (
                    m.0 + 80.0 * e[0],
                    m.1 + 0.1 * e[1],
                    m.2 + 0.15 * e[2],
                    1.0,
                    0,
                );
                (i, m2)
            })
            .collect();
        let rows: Vec<usize> = (0..n).collect();
        for f in noise_floor(&labels, &rows, (&noisy, &reference), &widths) {
            assert!((f.spread - 0.3).abs() < 0.05, "spread {}", f.spread);
            assert!(f.noise_sd > 0.0 && f.noise_sd < 0.05, "sd {}", f.noise_sd);
            let z = (f.observed - f.noise_mean) / f.noise_sd;
            assert!(
                z.abs() < 3.0,
                "observed {} vs {} +- {}",
                f.observed,
                f.noise_mean,
                f.noise_sd
            );
        }
        for f in noise_floor(&labels, &rows, (&reference, &reference), &widths) {
            assert_eq!(
                (f.spread, f.observed, f.noise_mean, f.noise_sd),
                (0.0, 0.0, 0.0, 0.0)
            );
        }
    }
}
