//! Calibration step, validation: k-fold cross-validation of Teff recovery and colour
//! residuals, before (raw model) and after calibration (each fold's stars measured with the
//! calibration fitted on the other folds).
//!
//! Folds come from the run seed and each star's source_id (not the file order); stars are
//! processed in parallel but results are collected in input order, so the outcome is the
//! same for any number of threads.

use super::data::LabelledStar;
use super::fit::{fit, FitStats};
use super::recover::{Objective, StarFit};
use super::CalibSettings;
use crate::likelihood::NoiseModel;
use crate::physics::ForwardModel;
use crate::util::rng::derive_seed;
use anyhow::{bail, Result};
use rayon::prelude::*;

/// Stream key of fold assignment in `derive_seed`.
const FOLD_STREAM: u64 = 0xF01D;

/// What was measured for one star.
#[derive(Clone, Debug, Default)]
pub(crate) struct StarOutcome {
    /// Cross-validation fold of the star.
    pub(crate) fold: usize,
    /// Teff recovery with the raw model.
    pub(crate) before: Option<StarFit>,
    /// Teff recovery with the calibration fitted without this star's fold.
    pub(crate) after: Option<StarFit>,
    /// Fit at the labels (A_V, distance modulus, chi^2), raw model.
    pub(crate) at_labels_before: Option<StarFit>,
    /// The same with the fold's calibration.
    pub(crate) at_labels_after: Option<StarFit>,
    /// Residuals obs - model at the labels (star's photometry order), raw model.
    pub(crate) resid_before: Option<Vec<f64>>,
    /// The same with the fold's calibration.
    pub(crate) resid_after: Option<Vec<f64>>,
    /// Labels the fold's calibration measured the star at: label - the fold's fitted
    /// label offsets (the anchored scale); the labels themselves without offsets.
    pub(crate) anchored: [f64; 3],
}

/// Cross-validation results.
#[derive(Clone, Debug)]
pub(crate) struct Validation {
    /// Number of folds.
    pub(crate) folds: usize,
    /// One outcome per input star, in input order.
    pub(crate) outcomes: Vec<StarOutcome>,
    /// Fit statistics of each fold's calibration.
    pub(crate) fold_stats: Vec<FitStats>,
}

/// Fold of every star: stars ordered by a hash of (seed, source_id), then dealt round-robin
/// (balanced folds, independent of file order).
pub(crate) fn assign_folds(stars: &[LabelledStar], k: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = stars
        .iter()
        .enumerate()
        .map(|(i, s)| (derive_seed(seed, &[s.source_id as u64, FOLD_STREAM]), i))
        .collect();
    order.sort_unstable();
    let mut fold = vec![0; stars.len()];
    for (rank, &(_, i)) in order.iter().enumerate() {
        fold[i] = rank % k;
    }
    fold
}

/// What `measure` finds for one star: recovery, fit at the labels, residuals there.
pub(crate) type Measured = (Option<StarFit>, Option<(StarFit, Vec<f64>)>);

/// Measure stars with a model: Teff recovery and the fit at the labels, per star.
pub(crate) fn measure(
    fm: &ForwardModel,
    stars: &[&LabelledStar],
    s: &CalibSettings,
    noise: &NoiseModel,
    map_scales: &[(String, f64)],
    err_scales: &[(String, f64)],
) -> Vec<Measured> {
    stars
        .par_iter()
        .map(|st| {
            let obj = Objective::with_map_errors(fm, st, s, noise, map_scales, err_scales);
            (obj.recover(), obj.residuals_at_labels())
        })
        .collect()
}

/// k-fold cross-validation of the calibration fit.
pub(crate) fn cross_validate(
    raw: &ForwardModel,
    stars: &[LabelledStar],
    s: &CalibSettings,
    noise: &NoiseModel,
    k: usize,
    seed: u64,
    mut progress: impl FnMut(&str),
) -> Result<Validation> {
    if k < 2 {
        bail!("cross-validation needs at least 2 folds, got {k}");
    }
    let folds = assign_folds(stars, k, seed);
    let mut outcomes: Vec<StarOutcome> = folds
        .iter()
        .zip(stars)
        .map(|(&f, st)| StarOutcome {
            fold: f,
            anchored: st.labels,
            ..Default::default()
        })
        .collect();
    progress("measuring all stars with the raw model");
    let all: Vec<&LabelledStar> = stars.iter().collect();
    for (o, (rec, res)) in outcomes
        .iter_mut()
        .zip(measure(raw, &all, s, noise, &[], &[]))
    {
        o.before = rec;
        o.at_labels_before = res.as_ref().map(|r| r.0);
        o.resid_before = res.map(|r| r.1);
    }
    let mut fold_stats = Vec::new();
    for f in 0..k {
        progress(&format!("fold {}/{k}: fitting on the other folds", f + 1));
        let train: Vec<LabelledStar> = stars
            .iter()
            .zip(&folds)
            .filter(|(_, &g)| g != f)
            .map(|(st, _)| st.clone())
            .collect();
        let out = fit(raw, &train, s, noise)?;
        let scales = out.stats.map_scales.clone();
        let err_scales = out.stats.map_error_scales.clone();
        fold_stats.push(out.stats);
        let model = raw.with_calibration(Some(out.calibration))?;
        // the calibrated model's likelihood: the floors fitted with it
        let fold_noise = NoiseModel::default_for(&model);
        let idx: Vec<usize> = (0..stars.len()).filter(|&i| folds[i] == f).collect();
        // the calibrated model is measured on the anchored scale: log g (and the labels of
        // the residuals) less the offsets fitted on the other folds
        let anchored: Vec<LabelledStar> = idx
            .iter()
            .map(|&i| match &out.offsets {
                Some(o) => o.anchored(&stars[i]),
                None => stars[i].clone(),
            })
            .collect();
        for (&i, a) in idx.iter().zip(&anchored) {
            outcomes[i].anchored = a.labels;
        }
        let test: Vec<&LabelledStar> = anchored.iter().collect();
        for (&i, (rec, res)) in
            idx.iter()
                .zip(measure(&model, &test, s, &fold_noise, &scales, &err_scales))
        {
            outcomes[i].after = rec;
            outcomes[i].at_labels_after = res.as_ref().map(|r| r.0);
            outcomes[i].resid_after = res.map(|r| r.1);
        }
    }
    Ok(Validation {
        folds: k,
        outcomes,
        fold_stats,
    })
}
