//! Agreement of two posteriors of the same star, in units of the reference's width: for
//! each parameter, the largest |difference| over p16, p50 and p84 divided by the
//! reference's p84 - p16; a star's figure is the worst over the compared parameters. One
//! helper for every comparison (`evaluate --mcmc`, `bench pipeline --mcmc`,
//! `compare-posteriors`).

use super::ParamSummary;
use crate::util::stats::percentile;
use serde::Serialize;

/// The parameters compared by default: teff, logg, mh, av (R_V and distance are mostly
/// prior- or parallax-dominated and compared on request).
pub const DEFAULT_PARAMS: [usize; 4] = [0, 1, 2, 3];

/// |q_test - q_ref| / (p84_ref - p16_ref), worst over p16, p50 and p84, for one parameter.
/// NaN when either summary is missing or the reference width is not positive.
pub fn deviation(reference: &ParamSummary, test: &ParamSummary) -> f64 {
    let width = (reference.q[3] - reference.q[1]) as f64;
    if !(width > 0.0) {
        return f64::NAN;
    }
    (1..=3)
        .map(|i| ((test.q[i] - reference.q[i]) as f64).abs() / width)
        .fold(f64::NEG_INFINITY, nan_max)
}

/// The test's p84 - p16 over the reference's (NaN when either is missing or the reference
/// width is not positive): below 1, the test's interval is too narrow.
pub fn width_ratio(reference: &ParamSummary, test: &ParamSummary) -> f64 {
    let width = (reference.q[3] - reference.q[1]) as f64;
    if !(width > 0.0) {
        return f64::NAN;
    }
    (test.q[3] - test.q[1]) as f64 / width
}

/// max that propagates NaN (a missing quantile makes the whole comparison missing).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Per-parameter deviations and their worst, for the parameters `params`.
pub fn star_deviations(
    reference: &[ParamSummary; 6],
    test: &[ParamSummary; 6],
    params: &[usize],
) -> (Vec<f64>, f64) {
    let devs: Vec<f64> = params
        .iter()
        .map(|&p| deviation(&reference[p], &test[p]))
        .collect();
    let worst = devs.iter().cloned().fold(f64::NEG_INFINITY, nan_max);
    (devs, worst)
}

/// Distribution of the per-star worst deviations.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Agreement {
    /// Stars compared (both posteriors present and the reference width positive).
    pub n: usize,
    /// Median of the worst deviation over stars.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
    /// Fraction of stars within 0.25 widths on every compared quantile.
    pub within_0_25: f64,
    /// Fraction within 0.5 widths.
    pub within_0_5: f64,
}

/// Summarise per-star worst deviations (NaN entries are not compared).
pub fn agreement(worst: &[f64]) -> Agreement {
    let ok: Vec<f64> = worst.iter().cloned().filter(|x| x.is_finite()).collect();
    let n = ok.len();
    let frac = |t: f64| ok.iter().filter(|&&x| x <= t).count() as f64 / n.max(1) as f64;
    Agreement {
        n,
        median: percentile(&ok, 50.0),
        p90: percentile(&ok, 90.0),
        max: ok.iter().cloned().fold(f64::NAN, f64::max),
        within_0_25: frac(0.25),
        within_0_5: frac(0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p16: f32, p50: f32, p84: f32) -> ParamSummary {
        ParamSummary {
            q: [p16 - 1.0, p16, p50, p84, p84 + 1.0],
            mean: p50,
            q95: [p16 - 2.0, p84 + 2.0],
        }
    }

    #[test]
    fn deviation_in_reference_widths() {
        let r = summary(1.0, 2.0, 3.0);
        assert_eq!(deviation(&r, &summary(1.0, 2.5, 3.0)), 0.25);
        assert_eq!(deviation(&r, &summary(0.0, 2.0, 3.0)), 0.5);
        assert!(deviation(&summary(1.0, 1.0, 1.0), &r).is_nan());
        let refs = [r; 6];
        let mut test = [r; 6];
        test[2] = summary(1.0, 3.0, 3.0);
        let (devs, worst) = star_deviations(&refs, &test, &DEFAULT_PARAMS);
        assert_eq!(devs, vec![0.0, 0.0, 0.5, 0.0]);
        assert_eq!(worst, 0.5);
        let a = agreement(&[0.1, 0.3, 0.6, f64::NAN]);
        assert_eq!(a.n, 3);
        assert_eq!(a.median, 0.3);
        assert!((a.within_0_25 - 1.0 / 3.0).abs() < 1e-12);
        assert!((a.within_0_5 - 2.0 / 3.0).abs() < 1e-12);
    }
}
