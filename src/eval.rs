//! Evaluation of posteriors against known truth: median absolute error, robust scatter
//! and bias of the posterior medians, and coverage of the central 68% and 95% intervals,
//! overall and by filter set (Gaia only; Gaia + 2MASS; Gaia + 2MASS + WISE; all) and
//! with / without parallax.

use crate::likelihood::StarObs;
use crate::physics::{ForwardModel, Theta, PARAM_NAMES};
use crate::posterior::StarResult;
use crate::util::stats::{median, robust_scatter};
use serde::Serialize;

/// Metrics of one parameter over a set of stars.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ParamMetrics {
    /// Parameter name.
    pub(crate) param: String,
    /// Stars with a posterior.
    pub(crate) n: usize,
    /// Median |p50 - truth| (distance: fractional).
    pub(crate) median_abs_error: f64,
    /// Robust scatter (1.4826 MAD) of p50 - truth.
    pub(crate) robust_scatter: f64,
    /// Median of p50 - truth.
    pub(crate) bias: f64,
    /// Fraction of truths inside [p16, p84].
    pub(crate) coverage68: f64,
    /// Fraction of truths inside [p05, p95].
    pub(crate) coverage90: f64,
    /// Fraction of truths inside [p2.5, p97.5].
    pub(crate) coverage95: f64,
}

/// Metrics of a group of stars.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct GroupMetrics {
    /// Group name.
    pub(crate) group: String,
    /// Stars in the group.
    pub(crate) n_stars: usize,
    /// Median importance-sampling efficiency.
    pub(crate) median_efficiency: f64,
    /// Per-parameter metrics.
    pub(crate) params: Vec<ParamMetrics>,
}

/// Filter-set class of a star: which surveys it has.
pub(crate) fn filter_set(obs: &StarObs, fm: &ForwardModel) -> &'static str {
    let names: Vec<&str> = obs
        .phot
        .iter()
        .map(|m| fm.bands().name(m.band as usize))
        .collect();
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    let gaia = has("gaia_");
    let tmass = has("tmass_");
    let wise = has("wise_");
    let optical = has("ps1_") || has("sdss_") || has("lsst_");
    match (gaia, tmass, wise, optical) {
        (true, false, false, false) => "gaia",
        (true, true, false, false) => "gaia+2mass",
        (true, true, true, false) => "gaia+2mass+wise",
        (true, true, true, true) => "all",
        _ => "other",
    }
}

/// Metrics of one group.
pub(crate) fn group_metrics(group: &str, items: &[(&Theta, &StarResult)]) -> GroupMetrics {
    let ok: Vec<&(&Theta, &StarResult)> = items
        .iter()
        .filter(|(_, r)| r.params[0].q[2].is_finite())
        .collect();
    let eff: Vec<f64> = ok.iter().map(|(_, r)| r.sample_efficiency as f64).collect();
    let params = (0..6)
        .map(|p| {
            let mut err = Vec::with_capacity(ok.len());
            let mut in68 = 0usize;
            let mut in90 = 0usize;
            let mut in95 = 0usize;
            for (t, r) in &ok {
                let truth = t.to_array()[p];
                let s = &r.params[p];
                let med = s.q[2] as f64;
                err.push(if p == 5 {
                    med / truth - 1.0
                } else {
                    med - truth
                });
                if (s.q[1] as f64) <= truth && truth <= s.q[3] as f64 {
                    in68 += 1;
                }
                if (s.q[0] as f64) <= truth && truth <= s.q[4] as f64 {
                    in90 += 1;
                }
                if (s.q95[0] as f64) <= truth && truth <= s.q95[1] as f64 {
                    in95 += 1;
                }
            }
            let abs: Vec<f64> = err.iter().map(|e| e.abs()).collect();
            let n = ok.len().max(1) as f64;
            ParamMetrics {
                param: PARAM_NAMES[p].to_string(),
                n: ok.len(),
                median_abs_error: median(&abs),
                robust_scatter: robust_scatter(&err),
                bias: median(&err),
                coverage68: in68 as f64 / n,
                coverage90: in90 as f64 / n,
                coverage95: in95 as f64 / n,
            }
        })
        .collect();
    GroupMetrics {
        group: group.to_string(),
        n_stars: items.len(),
        median_efficiency: median(&eff),
        params,
    }
}

/// Overall, per filter set, and per filter set x parallax.
pub(crate) fn evaluate(
    fm: &ForwardModel,
    truths: &[Theta],
    obs: &[StarObs],
    results: &[StarResult],
) -> Vec<GroupMetrics> {
    let classes: Vec<(&str, bool)> = obs
        .iter()
        .map(|o| (filter_set(o, fm), o.parallax.is_some()))
        .collect();
    let all: Vec<(&Theta, &StarResult)> = truths.iter().zip(results).collect();
    let mut out = vec![group_metrics("overall", &all)];
    for plx in [true, false] {
        let sel: Vec<_> = all
            .iter()
            .zip(&classes)
            .filter(|(_, c)| c.1 == plx)
            .map(|(x, _)| *x)
            .collect();
        out.push(group_metrics(
            if plx {
                "with parallax"
            } else {
                "without parallax"
            },
            &sel,
        ));
    }
    for fs in ["gaia", "gaia+2mass", "gaia+2mass+wise", "all", "other"] {
        let sel: Vec<_> = all
            .iter()
            .zip(&classes)
            .filter(|(_, c)| c.0 == fs)
            .map(|(x, _)| *x)
            .collect();
        if sel.is_empty() {
            continue;
        }
        out.push(group_metrics(fs, &sel));
        for plx in [true, false] {
            let sub: Vec<_> = all
                .iter()
                .zip(&classes)
                .filter(|(_, c)| c.0 == fs && c.1 == plx)
                .map(|(x, _)| *x)
                .collect();
            if !sub.is_empty() {
                out.push(group_metrics(
                    &format!("{fs} {}", if plx { "+plx" } else { "-plx" }),
                    &sub,
                ));
            }
        }
    }
    out
}

/// A plain-text table of the metrics.
pub(crate) fn format_table(groups: &[GroupMetrics]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    writeln!(
        s,
        "{:<22} {:>6} {:>6} | {:>22} | {:>13} | {:>13} | {:>13} | {:>13} | {:>13}",
        "group",
        "stars",
        "eff",
        "teff MAE/scat/bias K",
        "logg MAE/cov",
        "mh MAE/cov",
        "av MAE/cov",
        "rv MAE/cov",
        "dist frac/cov"
    )
    .unwrap();
    for g in groups {
        let p = &g.params;
        write!(
            s,
            "{:<22} {:>6} {:>6.3} | {:>6.0} {:>6.0} {:>+7.0} |",
            g.group,
            g.n_stars,
            g.median_efficiency,
            p[0].median_abs_error,
            p[0].robust_scatter,
            p[0].bias
        )
        .unwrap();
        for k in 1..6 {
            write!(
                s,
                " {:>6.3} {:>5.2} |",
                p[k].median_abs_error, p[k].coverage68
            )
            .unwrap();
        }
        s.push('\n');
    }
    writeln!(s, "\ncoverage of central intervals p16-p84 / p05-p95 / p2.5-p97.5 (nominal 0.68 / 0.90 / 0.95):").unwrap();
    for g in groups.iter().take(3) {
        write!(s, "{:<22}", g.group).unwrap();
        for p in &g.params {
            write!(
                s,
                " {}: {:.3}/{:.3}/{:.3}",
                p.param, p.coverage68, p.coverage90, p.coverage95
            )
            .unwrap();
        }
        s.push('\n');
    }
    s
}
