//! Calibration step, report: cross-validated Teff recovery and colour residuals before and
//! after calibration, broken down by Teff bin, dwarfs/giants and label source, with the
//! acceptance figures; rendered as text and JSON (both reproducible: no times, no paths).

use super::data::{LabelledStar, ReadSummary};
use super::fit::FitStats;
use super::irfm::{irfm_teff, IrfmSettings};
use super::standards::{StandardsCheck, QUANTITIES, SEQUENCE_BP_RP_TOLERANCE};
use super::validate::Validation;
use super::{is_giant, CalibSettings};
use crate::physics::ForwardModel;
use crate::util::stats::{median, robust_scatter};
use serde::Serialize;
use std::fmt::Write as _;

/// Edges of the Teff bins of the report \[K\] (last bin open-ended).
pub(crate) const TEFF_BINS: [f64; 9] = [
    3500.0, 4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 6500.0, 7000.0, 7500.0,
];
/// Acceptance: robust scatter of recovered Teff after calibration \[K\].
pub(crate) const MAX_TEFF_SCATTER: f64 = 90.0;
/// Acceptance: largest |median Teff bias| of a Teff bin with more than `BIG_BIN` stars \[K\].
pub(crate) const MAX_BIN_BIAS: f64 = 40.0;
/// Bins with more stars than this count for the bias acceptance.
pub(crate) const BIG_BIN: usize = 100;
/// Acceptance: robust scatter of the BP-RP residual after calibration \[mag\].
pub(crate) const MAX_BP_RP_SCATTER: f64 = 0.030;

/// Colours reported besides every band minus G: (name, band, band).
pub(crate) const NAMED_COLOURS: [(&str, &str, &str); 12] = [
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
pub(crate) struct Stat {
    /// Group name.
    pub(crate) group: String,
    /// Stars in it.
    pub(crate) n: usize,
    /// Median.
    pub(crate) bias: f64,
    /// 1.4826 MAD.
    pub(crate) scatter: f64,
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
pub(crate) struct TeffSummary {
    /// All compared stars.
    pub(crate) all: Stat,
    /// Per Teff bin (label Teff).
    pub(crate) by_teff_bin: Vec<Stat>,
    /// Per Teff bin, dwarfs only.
    pub(crate) dwarfs_by_teff_bin: Vec<Stat>,
    /// Per Teff bin, giants only.
    pub(crate) giants_by_teff_bin: Vec<Stat>,
    /// Dwarfs and giants.
    pub(crate) by_class: Vec<Stat>,
    /// Per label source.
    pub(crate) by_source: Vec<Stat>,
}

/// One colour's residuals before and after.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ColourStat {
    /// Colour name.
    pub(crate) colour: String,
    /// Stars with both bands (and residuals before and after).
    pub(crate) n: usize,
    /// Median residual (obs - model) before \[mag\].
    pub(crate) median_before: f64,
    /// Robust scatter before \[mag\].
    pub(crate) scatter_before: f64,
    /// Median after \[mag\].
    pub(crate) median_after: f64,
    /// Robust scatter after \[mag\].
    pub(crate) scatter_after: f64,
}

/// Teff differences from the IRFM Teff of one label source's low-reddening stars \[K\]:
/// median and robust scatter of label - IRFM, raw recovery - IRFM and calibrated
/// recovery - IRFM (the independent scale).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IrfmRow {
    /// Label source ("all" for every source).
    pub(crate) group: String,
    /// Stars.
    pub(crate) n: usize,
    /// Label - IRFM.
    pub(crate) label: (f64, f64),
    /// Raw model's recovered Teff - IRFM.
    pub(crate) raw: (f64, f64),
    /// Calibrated model's recovered Teff - IRFM.
    pub(crate) calibrated: (f64, f64),
}

/// Acceptance figures.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Acceptance {
    /// Robust Teff scatter before \[K\].
    pub(crate) teff_scatter_before: f64,
    /// Robust Teff scatter after \[K\] (limit `MAX_TEFF_SCATTER`), against the anchored
    /// labels.
    pub(crate) teff_scatter_after: f64,
    /// Worst |bias| among Teff bins with more than `BIG_BIN` stars, after \[K\], against the
    /// anchored labels.
    pub(crate) worst_bin_bias_after: f64,
    /// Which bin.
    pub(crate) worst_bin: String,
    /// Standard error of that bin's median after \[K\]: sqrt(pi/2) x robust scatter / sqrt(n)
    /// (how much of the bias the bin's own noise explains).
    pub(crate) worst_bin_bias_se_after: f64,
    /// The same figure before \[K\].
    pub(crate) worst_bin_bias_before: f64,
    /// BP-RP robust scatter before \[mag\].
    pub(crate) bp_rp_scatter_before: f64,
    /// BP-RP robust scatter after \[mag\] (limit `MAX_BP_RP_SCATTER`).
    pub(crate) bp_rp_scatter_after: f64,
    /// All three limits met.
    pub(crate) passed: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    /// Input file.
    pub(crate) data: ReadSummary,
    /// Folds.
    pub(crate) folds: usize,
    /// Run seed.
    pub(crate) seed: u64,
    /// Stars whose Teff was recovered with both models (the compared set).
    pub(crate) n_teff_compared: usize,
    /// Stars without a recovery (labels outside the model) before / after.
    pub(crate) n_teff_failed: (usize, usize),
    /// Teff recovery, raw model.
    pub(crate) teff_before: TeffSummary,
    /// Teff recovery, cross-validated calibration, against the survey labels.
    pub(crate) teff_after: TeffSummary,
    /// Teff recovery, cross-validated calibration, against the anchored labels (label - the
    /// fold's fitted offsets): the scale the calibrated model is fitted to.
    pub(crate) teff_after_anchored: TeffSummary,
    /// Low-reddening stars with an IRFM Teff: label, raw and calibrated recovery - IRFM.
    pub(crate) irfm_check: Vec<IrfmRow>,
    /// The raw and calibrated model against the Sun and the F0-K5 dwarf sequence.
    pub(crate) standards: Option<StandardsCheck>,
    /// Colour residuals at the labels (band minus G, then named colours).
    pub(crate) colours: Vec<ColourStat>,
    /// Acceptance.
    pub(crate) acceptance: Acceptance,
    /// Fit statistics per fold.
    pub(crate) fold_fits: Vec<FitStats>,
    /// Fit statistics of the final calibration (all stars).
    pub(crate) final_fit: FitStats,
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    fm: &ForwardModel,
    stars: &[LabelledStar],
    val: &Validation,
    data: ReadSummary,
    seed: u64,
    final_fit: FitStats,
    s: &CalibSettings,
    standards: Option<StandardsCheck>,
) -> Report {
    // Teff: the stars recovered with both models
    let mut cmp_stars = Vec::new();
    let (mut d_before, mut d_after, mut d_anch) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fail_b, mut fail_a) = (0, 0);
    for (st, o) in stars.iter().zip(&val.outcomes) {
        fail_b += o.before.is_none() as usize;
        fail_a += o.after.is_none() as usize;
        if let (Some(b), Some(a)) = (o.before, o.after) {
            cmp_stars.push(st);
            d_before.push(b.teff - st.labels[0]);
            d_after.push(a.teff - st.labels[0]);
            d_anch.push(a.teff - o.anchored[0]);
        }
    }
    let teff_before = teff_summary(&cmp_stars, &d_before, s);
    let teff_after = teff_summary(&cmp_stars, &d_after, s);
    let teff_after_anchored = teff_summary(&cmp_stars, &d_anch, s);
    let irfm_check = irfm_rows(fm, stars, val, s);
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
    let (wa, wa_bin, wa_se) = worst_bin(&teff_after_anchored);
    let bp_rp_before = bp_rp.map(|c| c.scatter_before).unwrap_or(f64::NAN);
    let bp_rp_after = bp_rp.map(|c| c.scatter_after).unwrap_or(f64::NAN);
    let acceptance = Acceptance {
        teff_scatter_before: teff_before.all.scatter,
        teff_scatter_after: teff_after_anchored.all.scatter,
        worst_bin_bias_after: wa,
        worst_bin: wa_bin,
        worst_bin_bias_se_after: wa_se,
        worst_bin_bias_before: wb,
        bp_rp_scatter_before: bp_rp_before,
        bp_rp_scatter_after: bp_rp_after,
        passed: teff_after_anchored.all.scatter <= MAX_TEFF_SCATTER
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
        teff_after_anchored,
        irfm_check,
        standards,
        colours,
        acceptance,
        fold_fits: val.fold_stats.clone(),
        final_fit,
    }
}

/// Median and robust scatter (NaN for no values).
fn med_scat(v: &[f64]) -> (f64, f64) {
    let st = Stat::of("", v);
    (st.bias, st.scatter)
}

/// The IRFM check per label source: stars recovered by both models with an IRFM Teff.
fn irfm_rows(
    fm: &ForwardModel,
    stars: &[LabelledStar],
    val: &Validation,
    s: &CalibSettings,
) -> Vec<IrfmRow> {
    let ir = IrfmSettings {
        max_ebv: s.irfm_max_ebv,
        sigma_relation: s.irfm_sigma_relation,
    };
    let mut rows: Vec<(String, [f64; 3])> = Vec::new();
    for (st, o) in stars.iter().zip(&val.outcomes) {
        let (Some(b), Some(a)) = (o.before, o.after) else {
            continue;
        };
        if let Some(t) = irfm_teff(fm, st, &ir).filter(|_| s.irfm_max_ebv > 0.0) {
            let d = [st.labels[0] - t.teff, b.teff - t.teff, a.teff - t.teff];
            rows.push((st.label_source.clone(), d));
        }
    }
    let mut groups: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    groups.sort();
    groups.dedup();
    groups.insert(0, "all".into());
    groups
        .into_iter()
        .map(|g| {
            let sel: Vec<&[f64; 3]> = rows
                .iter()
                .filter(|r| g == "all" || r.0 == g)
                .map(|r| &r.1)
                .collect();
            let col = |q: usize| med_scat(&sel.iter().map(|d| d[q]).collect::<Vec<_>>());
            IrfmRow {
                n: sel.len(),
                group: g,
                label: col(0),
                raw: col(1),
                calibrated: col(2),
            }
        })
        .collect()
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
    pub(crate) fn to_text(&self) -> String {
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
            "  Teff robust scatter      raw {:7.1} K   calibrated {:7.1} K   (limit {MAX_TEFF_SCATTER} K; calibrated against the anchored labels, which are the labels when label_offsets is off)",
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
        let n = &self.teff_after_anchored;
        let _ = writeln!(
            o,
            "Calibrated Teff against the anchored labels (label - survey offsets fitted on the other folds); raw as above, against the labels; the same labels when label_offsets is off"
        );
        stat_rows(
            &mut o,
            "all (anchored)",
            std::slice::from_ref(&b.all),
            std::slice::from_ref(&n.all),
        );
        stat_rows(
            &mut o,
            "by Teff bin (anchored)",
            &b.by_teff_bin,
            &n.by_teff_bin,
        );
        stat_rows(
            &mut o,
            "dwarfs by Teff bin (anchored)",
            &b.dwarfs_by_teff_bin,
            &n.dwarfs_by_teff_bin,
        );
        stat_rows(&mut o, "by class (anchored)", &b.by_class, &n.by_class);
        stat_rows(
            &mut o,
            "by label source (anchored)",
            &b.by_source,
            &n.by_source,
        );
        let _ = writeln!(o);
        self.irfm_text(&mut o);
        self.standards_text(&mut o);
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
        offsets_text(&mut o, f);
        o
    }

    fn irfm_text(&self, o: &mut String) {
        if self.irfm_check.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "Against IRFM Teff (Casagrande et al. 2021 colour-Teff relations, low-reddening stars) [K]: median / robust scatter"
        );
        let _ = writeln!(
            o,
            "  {:<10} {:>6} {:>16} {:>16} {:>16}",
            "source", "n", "label-IRFM", "raw-IRFM", "cal-IRFM"
        );
        for r in &self.irfm_check {
            let f = |x: (f64, f64)| format!("{:+.0} / {:.0}", x.0, x.1);
            let _ = writeln!(
                o,
                "  {:<10} {:>6} {:>16} {:>16} {:>16}",
                r.group,
                r.n,
                f(r.label),
                f(r.raw),
                f(r.calibrated)
            );
        }
        let _ = writeln!(o);
    }

    fn standards_text(&self, o: &mut String) {
        let Some(c) = &self.standards else { return };
        let _ = writeln!(
            o,
            "STANDARDS ({}): Sun (Teff 5772, log g 4.44, [M/H] 0, 10 pc) and Mamajek's F0V-K5V dwarf sequence (v2022.04.16; [M/H] 0, log g from his mass and radius)",
            if c.passed() { "met" } else { "NOT met" }
        );
        let r = c.sun_reference;
        let _ = writeln!(
            o,
            "  Sun reference  BP-RP {:.3}  M_G {:.3}  M_Ks {:.3}  (tolerances {:.2}/{:.2}/{:.2})",
            r[0], r[1], r[2], c.sun_tolerance[0], c.sun_tolerance[1], c.sun_tolerance[2]
        );
        for sun in &c.sun {
            for (name, v) in [("raw", sun.raw), ("calibrated", sun.calibrated)] {
                let Some(v) = v else { continue };
                let _ = writeln!(
                    o,
                    "  Sun {} {:<10} BP-RP {:.3}  M_G {:.3}  M_Ks {:.3}",
                    sun.release, name, v[0], v[1], v[2]
                );
            }
        }
        let _ = writeln!(
            o,
            "  dwarf sequence, model - table [mmag] (BP-RP tolerance {:.0} mmag, calibrated)",
            1e3 * SEQUENCE_BP_RP_TOLERANCE
        );
        let _ = writeln!(
            o,
            "  {:<6} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "SpT", "Teff", "logg", "BpRp_raw", "BpRp_cal", "MG_raw", "MG_cal", "MKs_raw", "MKs_cal"
        );
        let m = |v: Option<[f64; 3]>, q: usize| v.map_or(f64::NAN, |x| 1e3 * x[q]);
        for row in &c.sequence {
            let _ = writeln!(
                o,
                "  {:<6} {:>6.0} {:>5.2} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                row.spt,
                row.teff,
                row.logg,
                m(row.raw, 0),
                m(row.calibrated, 0),
                m(row.raw, 1),
                m(row.calibrated, 1),
                m(row.raw, 2),
                m(row.calibrated, 2)
            );
        }
        for (label, v) in [
            ("max |model - table|", (c.max_abs_raw, c.max_abs_calibrated)),
            ("median model - table", (c.median_raw, c.median_calibrated)),
        ] {
            let q: Vec<String> = (0..3)
                .map(|i| {
                    format!(
                        "{} raw {:+.0} cal {:+.0}",
                        QUANTITIES[i],
                        1e3 * v.0[i],
                        1e3 * v.1[i]
                    )
                })
                .collect();
            let _ = writeln!(o, "  {label} [mmag]: {}", q.join(", "));
        }
        let _ = writeln!(o);
    }
}

/// The fitted label offsets and the anchor sample (final fit).
fn offsets_text(o: &mut String, f: &FitStats) {
    let Some(off) = &f.label_offsets else { return };
    let _ = writeln!(
        o,
        "Label offsets (label - anchored scale; final fit), Teff [K] at (Teff, log g):"
    );
    let pts: [(f64, f64); 6] = [
        (4500.0, 4.6),
        (5000.0, 4.5),
        (5772.0, 4.44),
        (6500.0, 4.2),
        (4800.0, 2.5),
        (4500.0, 2.0),
    ];
    let head: Vec<String> = pts
        .iter()
        .map(|p| format!("{:.0}/{:.2}", p.0, p.1))
        .collect();
    let _ = writeln!(o, "  {:<10} {}", "source", head.join("  "));
    for src in &off.sources {
        let vals: Vec<String> = pts
            .iter()
            .map(|&(t, g)| {
                let st = LabelledStar {
                    source_id: 0,
                    labels: [t, g, 0.0],
                    label_err: [0.0; 3],
                    label_source: src.clone(),
                    parallax: None,
                    ebv: (None, None),
                    ebv_source: String::new(),
                    phot: Vec::new(),
                };
                let d = off.offset(&st);
                if off.logg_coef.is_empty() {
                    format!("{:>+10.0}", d[0])
                } else {
                    format!("{:>+4.0}/{:+.2}", d[0], d[1])
                }
            })
            .collect();
        let _ = writeln!(o, "  {:<10} {}", src, vals.join(" "));
    }
    for a in &f.anchor {
        let _ = writeln!(
            o,
            "  IRFM anchor {:<8} {:>5} stars (median Teff {:.0} K): label - IRFM median {:+.0} K (scatter {:.0} K), anchored - IRFM {:+.0} K",
            a.source, a.n, a.median_teff, a.median_label_minus_irfm, a.scatter, a.median_anchored_minus_irfm
        );
    }
}
