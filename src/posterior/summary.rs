//! One star's output row from its weighted samples: quantiles and means (samples of zero
//! weight take no part), the sampling figures, the flags with their reasons, and resampled
//! draws when requested.

use super::estimator::{chi2_sf, Weights};
use super::{
    flags, InferSettings, ParamSummary, StarResult, PARETO_K_THRESHOLD, POOR_FIT_P, QUANTILES,
};
use crate::physics::Theta;
use crate::util::rng::Rng;
use crate::util::stats::weighted_quantiles;

/// Parameters fitted by the mode search (the dimension of theta): chi^2 at the best fit has
/// measurements - FITTED_PARAMS degrees of freedom.
pub const FITTED_PARAMS: usize = 6;

/// What one star's sampling produced.
pub struct StarSampling<'a> {
    /// Catalogue id.
    pub source_id: i64,
    /// Photometric bands used.
    pub n_bands: usize,
    /// A parallax was used.
    pub has_parallax: bool,
    /// The estimator's samples.
    pub thetas: &'a [Theta],
    /// Their normalised weights and diagnostics.
    pub weights: &'a Weights,
    /// Samples drawn in all (every component, flow pilot included).
    pub n_drawn: usize,
    /// Distinct modes found.
    pub n_modes: usize,
    /// chi^2 at the best fit (NaN when there is none).
    pub best_fit_chi2: f64,
    /// Seed of the star (for resampling).
    pub seed: u64,
}

impl StarSampling<'_> {
    /// Effective samples per sample drawn.
    fn efficiency(&self) -> f64 {
        self.weights.n_eff / self.n_drawn.max(1) as f64
    }
}

/// SINGLE_BAND for a star with one photometric band (both samplers flag it).
pub(super) fn flag_single_band(n_bands: usize, fl: &mut u32, reasons: &mut Vec<String>) {
    if n_bands == 1 {
        *fl |= flags::SINGLE_BAND;
        reasons.push("only one photometric band".into());
    }
}

/// Build the output row.
pub fn summarise(s: &StarSampling, settings: &InferSettings) -> StarResult {
    let w = s.weights;
    let mut res = StarResult {
        source_id: s.source_id,
        params: [ParamSummary::NAN; 6],
        n_bands: s.n_bands as u16,
        has_parallax: s.has_parallax,
        n_samples: s.n_drawn as u32,
        n_eff: w.n_eff as f32,
        sample_efficiency: s.efficiency() as f32,
        log_evidence: w.log_evidence as f32,
        log_evidence_se: w.log_evidence_se as f32,
        pareto_k: w.pareto_k as f32,
        n_modes: s.n_modes.min(255) as u8,
        best_fit_chi2: s.best_fit_chi2 as f32,
        flags: 0,
        flag_reason: String::new(),
        samples: None,
        chain: None,
        derived: None,
    };
    let mut reasons = Vec::new();
    flag_star(s, settings, &mut res.flags, &mut reasons);
    if w.n_eff > 0.0 {
        res.params = param_summaries(s.thetas, &w.w);
        if settings.keep_samples > 0 {
            res.samples = Some(resample(s.thetas, &w.w, settings.keep_samples, s.seed));
        }
    }
    res.flag_reason = reasons.join("; ");
    res
}

/// Flags and their reasons.
fn flag_star(s: &StarSampling, settings: &InferSettings, fl: &mut u32, reasons: &mut Vec<String>) {
    let w = s.weights;
    flag_single_band(s.n_bands, fl, reasons);
    if w.n_eff == 0.0 {
        *fl |= flags::ALL_WEIGHTS_ZERO;
        reasons.push("every proposal sample has zero posterior weight".into());
        return;
    }
    if (w.n_eff as f32) < settings.target_n_eff {
        *fl |= flags::LOW_NEFF;
        reasons.push(format!(
            "n_eff {:.1} < target {} after {} samples",
            w.n_eff, settings.target_n_eff, s.n_drawn
        ));
    }
    let eff = s.efficiency();
    if (eff as f32) < settings.min_efficiency {
        *fl |= flags::LOW_EFFICIENCY;
        reasons.push(format!(
            "sample efficiency {eff:.4} < {}",
            settings.min_efficiency
        ));
    }
    if w.pareto_k > PARETO_K_THRESHOLD {
        *fl |= flags::HIGH_PARETO_K;
        reasons.push(format!(
            "Pareto k-hat {:.2} > {PARETO_K_THRESHOLD}",
            w.pareto_k
        ));
    }
    let n_meas = s.n_bands + usize::from(s.has_parallax);
    let dof = n_meas as f64 - FITTED_PARAMS as f64;
    if dof > 0.0 && s.best_fit_chi2.is_finite() && chi2_sf(s.best_fit_chi2, dof) < POOR_FIT_P {
        *fl |= flags::POOR_FIT;
        reasons.push(format!(
            "best-fit chi2 {:.1} for {dof} degrees of freedom (p < {POOR_FIT_P})",
            s.best_fit_chi2
        ));
    }
}

/// Weighted quantiles (2.5%, the reported levels, 97.5%) and means of every parameter
/// (`w` normalised: the means are weighted sums).
pub fn param_summaries(th: &[Theta], w: &[f64]) -> [ParamSummary; 6] {
    let levels = [
        0.025,
        QUANTILES[0],
        QUANTILES[1],
        QUANTILES[2],
        QUANTILES[3],
        QUANTILES[4],
        0.975,
    ];
    let mut vals = vec![0f64; th.len()];
    let mut order = Vec::with_capacity(th.len());
    let mut q = [0f64; 7];
    std::array::from_fn(|p| {
        for (v, t) in vals.iter_mut().zip(th) {
            *v = t.to_array()[p];
        }
        weighted_quantiles(&vals, w, &levels, &mut q, &mut order);
        let mean: f64 = vals
            .iter()
            .zip(w)
            .filter(|(_, &wi)| wi > 0.0)
            .map(|(v, wi)| v * wi)
            .sum();
        ParamSummary {
            q: [q[1], q[2], q[3], q[4], q[5]].map(|x| x as f32),
            mean: mean as f32,
            q95: [q[0] as f32, q[6] as f32],
        }
    })
}

/// Systematic resampling of `k` draws according to normalised weights.
pub fn resample(th: &[Theta], w: &[f64], k: usize, seed: u64) -> Vec<[f32; 6]> {
    let mut idx = Vec::with_capacity(k);
    systematic_indices(w, k, Rng::for_keys(seed, &[0x5EED]).uniform(), &mut idx);
    idx.iter()
        .map(|&j| th[j].to_array().map(|x| x as f32))
        .collect()
}

/// Indices of `k` systematic draws (ascending) by normalised weights `w`, from one uniform
/// `u` in [0, 1); zero-weight samples are never drawn.
pub fn systematic_indices(w: &[f64], k: usize, u: f64, out: &mut Vec<usize>) {
    out.clear();
    let u0 = u / k as f64;
    let mut cum = 0.0;
    let mut i = 0;
    for j in 0..k {
        let u = u0 + j as f64 / k as f64;
        while i + 1 < w.len() && (cum + w[i] < u || w[i] == 0.0) {
            cum += w[i];
            i += 1;
        }
        // rounding can run past the last positive weight: step back to it
        out.push((0..=i).rev().find(|&j| w[j] > 0.0).unwrap_or(i));
    }
}
