//! Calibration step, report: cross-validated Teff recovery and colour residuals before and
//! after calibration, broken down by Teff bin, dwarfs/giants and label source, with the
//! acceptance figures; rendered as text and JSON (both reproducible: no times, no paths).

use super::data::{LabelledStar, ReadSummary};
use super::fit::FitStats;
use super::validate::Validation;
use super::{is_giant, CalibSettings};
use crate::physics::ForwardModel;
use crate::util::stats::{median, robust_scatter};
use serde::Serialize;
use std::fmt::Write as _;

/// Edges of the Teff bins of the report [K] (last bin open-ended).
pub const TEFF_BINS: [f64; 9] = [
    3500.0, 4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 6500.0, 7000.0, 7500.0,
];
/// Acceptance: robust scatter of recovered Teff after calibration [K].
pub const MAX_TEFF_SCATTER: f64 = 90.0;
/// Acceptance: largest |median Teff bias| of a Teff bin with more than `BIG_BIN` stars [K].
pub const MAX_BIN_BIAS: f64 = 40.0;
/// Bins with more stars than this count for the bias acceptance.
pub const BIG_BIN: usize = 100;
/// Acceptance: robust scatter of the BP-RP residual after calibration [mag].
pub const MAX_BP_RP_SCATTER: f64 = 0.030;

/// Colours reported besides every band minus G: (name, band, band).
pub const NAMED_COLOURS: [(&str, &str, &str); 12] = [
    ("BP-RP", "gaia_dr2_bp", "gaia_dr2_rp"),
    ("g-r", "ps1_g", "ps1_r"),
    ("r-i", "ps1_r", "ps1_i"),
    ("i-z", "ps1_i", "ps1_z"),
    ("z-y", "ps1_z", "ps1_y"),
    ("y-J", "ps1_y", "tmass_j"),
    ("J-H", "tmass_j", "tmass_h"),
    ("H-Ks", "tmass_h", "tmass_ks"),
    ("Ks-W1", "tmass_ks", "wise_w1"),
    ("W1-W2", "wise_w1", "wise_w2"),
    ("r-G", "ps1_r", "gaia_dr2_g"),
    ("G-Ks", "gaia_dr2_g", "tmass_ks"),
];

/// Median and robust scatter of a group.
#[derive(Clone, Debug, Serialize)]
pub struct Stat {
    /// Group name.
    pub group: String,
    /// Stars in it.
    pub n: usize,
    /// Median.
    pub bias: f64,
    /// 1.4826 MAD.
    pub scatter: f64,
}

impl Stat {
    fn of(group: impl Into<String>, v: &[f64]) -> Stat {
        Stat {
            group: group.into(),
            n: v.len(),
            bias: if v.is_empty() { f64::NAN } else { median(v) },
            scatter: if v.is_empty() {
                f64::NAN
            } else {
                robust_scatter(v)
            },
        }
    }
}

/// Teff recovery (recovered - label) of one model.
#[derive(Clone, Debug, Serialize)]
pub struct TeffSummary {
    /// All compared stars.
    pub all: Stat,
    /// Per Teff bin (label Teff).
    pub by_teff_bin: Vec<Stat>,
    /// Per Teff bin, dwarfs only.
    pub dwarfs_by_teff_bin: Vec<Stat>,
    /// Per Teff bin, giants only.
    pub giants_by_teff_bin: Vec<Stat>,
    /// Dwarfs and giants.
    pub by_class: Vec<Stat>,
    /// Per label source.
    pub by_source: Vec<Stat>,
}

/// One colour's residuals before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ColourStat {
    /// Colour name.
    pub colour: String,
    /// Stars with both bands (and residuals before and after).
    pub n: usize,
    /// Median residual (obs - model) before [mag].
    pub median_before: f64,
    /// Robust scatter before [mag].
    pub scatter_before: f64,
    /// Median after [mag].
    pub median_after: f64,
    /// Robust scatter after [mag].
    pub scatter_after: f64,
}

/// Acceptance figures.
#[derive(Clone, Debug, Serialize)]
pub struct Acceptance {
    /// Robust Teff scatter before [K].
    pub teff_scatter_before: f64,
    /// Robust Teff scatter after [K] (limit `MAX_TEFF_SCATTER`).
    pub teff_scatter_after: f64,
    /// Worst |bias| among Teff bins with more than `BIG_BIN` stars, after [K].
    pub worst_bin_bias_after: f64,
    /// Which bin.
    pub worst_bin: String,
    /// Standard error of that bin's median after [K]: sqrt(pi/2) x robust scatter / sqrt(n)
    /// (how much of the bias the bin's own noise explains).
    pub worst_bin_bias_se_after: f64,
    /// The same figure before [K].
    pub worst_bin_bias_before: f64,
    /// BP-RP robust scatter before [mag].
    pub bp_rp_scatter_before: f64,
    /// BP-RP robust scatter after [mag] (limit `MAX_BP_RP_SCATTER`).
    pub bp_rp_scatter_after: f64,
    /// All three limits met.
    pub passed: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Input file.
    pub data: ReadSummary,
    /// Folds.
    pub folds: usize,
    /// Run seed.
    pub seed: u64,
    /// Stars whose Teff was recovered with both models (the compared set).
    pub n_teff_compared: usize,
    /// Stars without a recovery (labels outside the model) before / after.
    pub n_teff_failed: (usize, usize),
    /// Teff recovery, raw model.
    pub teff_before: TeffSummary,
    /// Teff recovery, cross-validated calibration.
    pub teff_after: TeffSummary,
    /// Colour residuals at the labels (band minus G, then named colours).
    pub colours: Vec<ColourStat>,
    /// Acceptance.
    pub acceptance: Acceptance,
    /// Fit statistics per fold.
    pub fold_fits: Vec<FitStats>,
    /// Fit statistics of the final calibration (all stars).
    pub final_fit: FitStats,
}

fn bin_label(i: usize) -> String {
    if i + 1 < TEFF_BINS.len() {
        format!("{:.0}-{:.0}", TEFF_BINS[i], TEFF_BINS[i + 1])
    } else {
        format!(">={:.0}", TEFF_BINS[i])
    }
}

fn bin_of(teff: f64) -> Option<usize> {
    if teff < TEFF_BINS[0] {
        return None;
    }
    Some(TEFF_BINS.iter().rposition(|&e| teff >= e).unwrap())
}

fn teff_summary(stars: &[&LabelledStar], delta: &[f64], s: &CalibSettings) -> TeffSummary {
    let bins = |filter: &dyn Fn(&LabelledStar) -> bool| -> Vec<Stat> {
        (0..TEFF_BINS.len())
            .map(|b| {
                let v: Vec<f64> = stars
                    .iter()
                    .zip(delta)
                    .filter(|(st, _)| bin_of(st.labels[0]) == Some(b) && filter(st))
                    .map(|(_, d)| *d)
                    .collect();
                Stat::of(bin_label(b), &v)
            })
            .collect()
    };
    let mut sources: Vec<String> = stars.iter().map(|s| s.label_source.clone()).collect();
    sources.sort();
    sources.dedup();
    let pick = |f: &dyn Fn(&LabelledStar) -> bool| -> Vec<f64> {
        stars
            .iter()
            .zip(delta)
            .filter(|(st, _)| f(st))
            .map(|(_, d)| *d)
            .collect()
    };
    TeffSummary {
        all: Stat::of("all", delta),
        by_teff_bin: bins(&|_| true),
        dwarfs_by_teff_bin: bins(&|st| !is_giant(st, s)),
        giants_by_teff_bin: bins(&|st| is_giant(st, s)),
        by_class: vec![
            Stat::of(
                format!("dwarfs (log g >= {})", s.giant_logg),
                &pick(&|st| !is_giant(st, s)),
            ),
            Stat::of(
                format!("giants (log g < {})", s.giant_logg),
                &pick(&|st| is_giant(st, s)),
            ),
        ],
        by_source: sources
            .iter()
            .map(|src| Stat::of(src.clone(), &pick(&|st| st.label_source == *src)))
            .collect(),
    }
}

fn worst_bin(t: &TeffSummary) -> (f64, String, f64) {
    t.by_teff_bin.iter().filter(|b| b.n > BIG_BIN).fold(
        (0.0, String::from("-"), f64::NAN),
        |acc, b| {
            if b.bias.abs() > acc.0 {
                let se = (std::f64::consts::PI / 2.0).sqrt() * b.scatter / (b.n as f64).sqrt();
                (b.bias.abs(), b.group.clone(), se)
            } else {
                acc
            }
        },
    )
}

/// Build the report from the cross-validation.
pub fn build(
    fm: &ForwardModel,
    stars: &[LabelledStar],
    val: &Validation,
    data: ReadSummary,
    seed: u64,
    final_fit: FitStats,
    s: &CalibSettings,
) -> Report {
    // Teff: the stars recovered with both models
    let mut cmp_stars = Vec::new();
    let (mut d_before, mut d_after) = (Vec::new(), Vec::new());
    let (mut fail_b, mut fail_a) = (0, 0);
    for (st, o) in stars.iter().zip(&val.outcomes) {
        fail_b += o.before.is_none() as usize;
        fail_a += o.after.is_none() as usize;
        if let (Some(b), Some(a)) = (o.before, o.after) {
            cmp_stars.push(st);
            d_before.push(b.teff - st.labels[0]);
            d_after.push(a.teff - st.labels[0]);
        }
    }
    let teff_before = teff_summary(&cmp_stars, &d_before, s);
    let teff_after = teff_summary(&cmp_stars, &d_after, s);
    // colours
    let g = fm.bands().id("gaia_dr2_g").ok();
    let mut pairs: Vec<(String, usize, usize)> = Vec::new();
    if let Some(g) = g {
        let mut seen: Vec<usize> = stars
            .iter()
            .flat_map(|s| s.phot.iter().map(|m| m.band as usize))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for b in seen.into_iter().filter(|&b| b != g) {
            pairs.push((format!("{}-G", fm.bands().name(b)), b, g));
        }
    }
    for (name, a, b) in NAMED_COLOURS {
        if let (Ok(a), Ok(b)) = (fm.bands().id(a), fm.bands().id(b)) {
            pairs.push((name.to_string(), a, b));
        }
    }
    let colours: Vec<ColourStat> = pairs
        .iter()
        .filter_map(|(name, a, b)| {
            let (mut vb, mut va) = (Vec::new(), Vec::new());
            for (st, o) in stars.iter().zip(&val.outcomes) {
                let (Some(rb), Some(ra)) = (&o.resid_before, &o.resid_after) else {
                    continue;
                };
                let ia = st.phot.iter().position(|m| m.band as usize == *a);
                let ib = st.phot.iter().position(|m| m.band as usize == *b);
                if let (Some(ia), Some(ib)) = (ia, ib) {
                    vb.push(rb[ia] - rb[ib]);
                    va.push(ra[ia] - ra[ib]);
                }
            }
            if vb.is_empty() {
                return None;
            }
            let (sb, sa) = (Stat::of("", &vb), Stat::of("", &va));
            Some(ColourStat {
                colour: name.clone(),
                n: vb.len(),
                median_before: sb.bias,
                scatter_before: sb.scatter,
                median_after: sa.bias,
                scatter_after: sa.scatter,
            })
        })
        .collect();
    let bp_rp = colours.iter().find(|c| c.colour == "BP-RP");
    let (wb, _, _) = worst_bin(&teff_before);
    let (wa, wa_bin, wa_se) = worst_bin(&teff_after);
    let bp_rp_before = bp_rp.map(|c| c.scatter_before).unwrap_or(f64::NAN);
    let bp_rp_after = bp_rp.map(|c| c.scatter_after).unwrap_or(f64::NAN);
    let acceptance = Acceptance {
        teff_scatter_before: teff_before.all.scatter,
        teff_scatter_after: teff_after.all.scatter,
        worst_bin_bias_after: wa,
        worst_bin: wa_bin,
        worst_bin_bias_se_after: wa_se,
        worst_bin_bias_before: wb,
        bp_rp_scatter_before: bp_rp_before,
        bp_rp_scatter_after: bp_rp_after,
        passed: teff_after.all.scatter <= MAX_TEFF_SCATTER
            && wa <= MAX_BIN_BIAS
            && bp_rp_after <= MAX_BP_RP_SCATTER,
    };
    Report {
        data,
        folds: val.folds,
        seed,
        n_teff_compared: cmp_stars.len(),
        n_teff_failed: (fail_b, fail_a),
        teff_before,
        teff_after,
        colours,
        acceptance,
        fold_fits: val.fold_stats.clone(),
        final_fit,
    }
}

fn stat_rows(out: &mut String, title: &str, before: &[Stat], after: &[Stat]) {
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  {:<24} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "group", "n", "bias_raw", "scat_raw", "bias_cal", "scat_cal"
    );
    for (b, a) in before.iter().zip(after) {
        if b.n == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<24} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            b.group, b.n, b.bias, b.scatter, a.bias, a.scatter
        );
    }
}

impl Report {
    /// Human-readable text.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let a = &self.acceptance;
        let _ = writeln!(
            o,
            "sedflow calibrate: {} ({} rows, {} stars used), {}-fold cross-validation, seed {}",
            self.data.file, self.data.rows, self.data.stars, self.folds, self.seed
        );
        let _ = writeln!(
            o,
            "Teff recovered (log g, [M/H] at the labels; A_V under its prior; parallax): {} stars compared, {} / {} without recovery (raw / calibrated)",
            self.n_teff_compared, self.n_teff_failed.0, self.n_teff_failed.1
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "ACCEPTANCE ({})",
            if a.passed { "met" } else { "NOT met" }
        );
        let _ = writeln!(
            o,
            "  Teff robust scatter      raw {:7.1} K   calibrated {:7.1} K   (limit {MAX_TEFF_SCATTER} K)",
            a.teff_scatter_before, a.teff_scatter_after
        );
        let _ = writeln!(
            o,
            "  worst bin |bias| (n>{BIG_BIN})  raw {:7.1} K   calibrated {:7.1} K   (limit {MAX_BIN_BIAS} K; bin {}; standard error of its median {:.1} K)",
            a.worst_bin_bias_before, a.worst_bin_bias_after, a.worst_bin, a.worst_bin_bias_se_after
        );
        let _ = writeln!(
            o,
            "  BP-RP robust scatter     raw {:7.1} mmag calibrated {:7.1} mmag (limit {:.0} mmag)",
            1e3 * a.bp_rp_scatter_before,
            1e3 * a.bp_rp_scatter_after,
            1e3 * MAX_BP_RP_SCATTER
        );
        let _ = writeln!(o);
        let (b, c) = (&self.teff_before, &self.teff_after);
        stat_rows(
            &mut o,
            "Teff recovered - label [K], all",
            std::slice::from_ref(&b.all),
            std::slice::from_ref(&c.all),
        );
        stat_rows(
            &mut o,
            "by Teff bin (label)",
            &b.by_teff_bin,
            &c.by_teff_bin,
        );
        stat_rows(
            &mut o,
            "dwarfs by Teff bin",
            &b.dwarfs_by_teff_bin,
            &c.dwarfs_by_teff_bin,
        );
        stat_rows(
            &mut o,
            "giants by Teff bin",
            &b.giants_by_teff_bin,
            &c.giants_by_teff_bin,
        );
        stat_rows(&mut o, "by class", &b.by_class, &c.by_class);
        stat_rows(&mut o, "by label source", &b.by_source, &c.by_source);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Colour residuals obs - model at the labels [mmag] (A_V, distance fitted)"
        );
        let _ = writeln!(
            o,
            "  {:<18} {:>6} {:>10} {:>10} {:>10} {:>10}",
            "colour", "n", "med_raw", "scat_raw", "med_cal", "scat_cal"
        );
        for c in &self.colours {
            let _ = writeln!(
                o,
                "  {:<18} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                c.colour,
                c.n,
                1e3 * c.median_before,
                1e3 * c.scatter_before,
                1e3 * c.median_after,
                1e3 * c.scatter_after
            );
        }
        let f = &self.final_fit;
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Final fit: {} stars in, {} outside the model, {} rejected, {} measurements clipped, {} used, chi2/band {:.3}",
            f.n_input, f.n_outside_model, f.n_rejected_stars, f.n_clipped_measurements, f.n_used, f.chi2_per_band
        );
        let scales: Vec<String> = f
            .map_scales
            .iter()
            .map(|(m, k)| format!("{m} {:+.3}", k))
            .collect();
        let _ = writeln!(
            o,
            "Reddening-map scale errors kappa (A_V prior mean x (1 + kappa)): {}",
            scales.join(", ")
        );
        let list = |v: &[(String, f64)], f: &dyn Fn(f64) -> String| -> String {
            v.iter()
                .map(|(m, x)| format!("{m} {}", f(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !f.map_error_scales.is_empty() {
            let _ = writeln!(
                o,
                "Reddening-map error scales (quoted E(B-V) errors x factor, max. likelihood): {}",
                list(&f.map_error_scales, &|x| format!("{x:.2}"))
            );
        }
        if !f.floors.is_empty() {
            let _ = writeln!(
                o,
                "Model-systematics floors [mmag] (max. likelihood, beyond reported errors): {}",
                list(&f.floors, &|x| format!("{:.1}", 1e3 * x))
            );
        }
        if !f.ext_scales.is_empty() {
            let _ = writeln!(
                o,
                "Extinction scales kappa_b (A_b x (1 + kappa_b)): {}",
                list(&f.ext_scales, &|x| format!("{x:+.3}"))
            );
        }
        o
    }
}
