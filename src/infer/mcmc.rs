//! Reference MCMC: the affine-invariant ensemble sampler (Goodman & Weare 2010, the
//! "stretch move" of emcee) on exactly the prior and likelihood that importance sampling
//! uses. The ground truth the flow + importance sampling must agree with, and the speed
//! baseline users would otherwise run.
//!
//! Sampling happens in v = (log10 Teff, log g, [M/H], softplus^-1 A_V, logit R_V, log10 d)
//! with the Jacobian included, so the chain targets p(theta | obs) in physical units.
//! Walkers start from importance resampling of a large prior sample (mode weights right
//! from the start, no dependence on the flow).

use super::importance::normalise;
use crate::likelihood::{NoiseModel, PreparedStar, StarObs};
use crate::nn::param::ParamTransform;
use crate::physics::{ForwardModel, Theta};
use crate::prior::Prior;
use crate::util::rng::Rng;
use serde::Serialize;
use std::time::Instant;

/// Sampler settings.
#[derive(Clone, Debug)]
pub struct McmcConfig {
    /// Walkers (even, >= 2 x dim).
    pub walkers: usize,
    /// Burn-in steps per walker (discarded).
    pub burn: usize,
    /// Kept steps per walker.
    pub steps: usize,
    /// Stretch-move scale a.
    pub a: f64,
    /// Prior draws used to initialise the walkers.
    pub init_draws: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for McmcConfig {
    fn default() -> Self {
        McmcConfig {
            walkers: 64,
            burn: 2000,
            steps: 4000,
            a: 2.0,
            init_draws: 200_000,
            seed: 1,
        }
    }
}

/// Result of one chain.
#[derive(Clone, Debug, Serialize)]
pub struct McmcResult {
    /// Kept samples (theta arrays, walker-major per step).
    #[serde(skip)]
    pub samples: Vec<[f64; 6]>,
    /// Integrated autocorrelation time per parameter [steps].
    pub tau: [f64; 6],
    /// Effective samples: walkers * steps / max tau.
    pub n_eff: f64,
    /// Mean acceptance fraction.
    pub acceptance: f64,
    /// Wall time [s].
    pub seconds: f64,
    /// Log-posterior evaluations.
    pub evaluations: usize,
}

const IDENTITY: ParamTransform = ParamTransform {
    mean: [0.0; 6],
    scale: [1.0; 6],
};

/// log target in v-space: log p(theta) + log L(theta) + log |dtheta/dv|.
fn log_target(
    v: &[f64; 6],
    prep: &PreparedStar,
    fm: &ForwardModel,
    prior: &Prior,
    scratch: &mut Vec<f32>,
) -> f64 {
    if v.iter().any(|x| !x.is_finite()) {
        return f64::NEG_INFINITY;
    }
    let t = ParamTransform::theta_of_v(v);
    let lp = prior.log_prob(&t);
    if lp == f64::NEG_INFINITY {
        return lp;
    }
    let ll = prep.log_likelihood(fm, &t, scratch);
    lp + ll - IDENTITY.log_jacobian(&t)
}

/// Run the ensemble sampler for one star.
pub fn run(
    star: &StarObs,
    fm: &ForwardModel,
    prior: &Prior,
    noise: &NoiseModel,
    cfg: &McmcConfig,
) -> McmcResult {
    let t0 = Instant::now();
    let prep = PreparedStar::new(star, noise);
    let mut rng = Rng::for_keys(cfg.seed, &[star.source_id as u64, 0x3C3C]);
    let mut scratch = Vec::new();
    let mut evals = 0usize;
    // initialise: importance-resample prior draws by their likelihood
    let draws: Vec<Theta> = (0..cfg.init_draws)
        .map(|_| prior.sample(&mut rng))
        .collect();
    let log_w: Vec<f64> = draws
        .iter()
        .map(|t| prep.log_likelihood(fm, t, &mut scratch))
        .collect();
    evals += draws.len();
    let w = normalise(&log_w);
    let nw = cfg.walkers;
    let mut pos: Vec<[f64; 6]> = Vec::with_capacity(nw);
    let mut cum = 0.0;
    let mut k = 0;
    let u0 = rng.uniform() / nw as f64;
    for j in 0..nw {
        let u = u0 + j as f64 / nw as f64;
        while k + 1 < w.w.len() && cum + w.w[k] < u {
            cum += w.w[k];
            k += 1;
        }
        let mut v = ParamTransform::v(&draws[k]);
        // small jitter so that duplicated draws become distinct walkers
        for x in v.iter_mut() {
            *x += 1e-4 * rng.normal();
        }
        pos.push(v);
    }
    let mut lp: Vec<f64> = pos
        .iter()
        .map(|v| log_target(v, &prep, fm, prior, &mut scratch))
        .collect();
    evals += nw;
    let half = nw / 2;
    let mut samples = Vec::with_capacity(cfg.steps * nw);
    let mut accepted = 0usize;
    let mut proposed = 0usize;
    for step in 0..(cfg.burn + cfg.steps) {
        for half_idx in 0..2 {
            let (lo, hi) = if half_idx == 0 { (0, half) } else { (half, nw) };
            let (olo, ohi) = if half_idx == 0 { (half, nw) } else { (0, half) };
            for i in lo..hi {
                let j = olo + rng.below(ohi - olo);
                // z ~ g(z) ∝ 1/sqrt(z) on [1/a, a]
                let zz = ((cfg.a - 1.0) * rng.uniform() + 1.0).powi(2) / cfg.a;
                let mut prop = [0f64; 6];
                for d in 0..6 {
                    prop[d] = pos[j][d] + zz * (pos[i][d] - pos[j][d]);
                }
                let lq = log_target(&prop, &prep, fm, prior, &mut scratch);
                evals += 1;
                let log_acc = 5.0 * zz.ln() + lq - lp[i];
                proposed += 1;
                if log_acc >= 0.0 || rng.uniform().ln() < log_acc {
                    pos[i] = prop;
                    lp[i] = lq;
                    accepted += 1;
                }
            }
        }
        if step >= cfg.burn {
            for v in &pos {
                samples.push(ParamTransform::theta_of_v(v).to_array());
            }
        }
    }
    let tau = autocorrelation_times(&samples, nw);
    let tmax = tau.iter().cloned().fold(1.0, f64::max);
    McmcResult {
        n_eff: (cfg.steps * nw) as f64 / tmax,
        samples,
        tau,
        acceptance: accepted as f64 / proposed.max(1) as f64,
        seconds: t0.elapsed().as_secs_f64(),
        evaluations: evals,
    }
}

/// Integrated autocorrelation time per parameter of an ensemble chain (walker-major per
/// step), averaged over walkers' autocorrelation functions (Goodman & Weare; Sokal's
/// automatic window c = 5).
pub fn autocorrelation_times(samples: &[[f64; 6]], walkers: usize) -> [f64; 6] {
    let n = samples.len() / walkers;
    let mut out = [1.0; 6];
    if n < 10 {
        return out;
    }
    for d in 0..6 {
        let series: Vec<(Vec<f64>, f64)> = (0..walkers)
            .map(|w| {
                let x: Vec<f64> = (0..n).map(|s| samples[s * walkers + w][d]).collect();
                let m = x.iter().sum::<f64>() / n as f64;
                let xc: Vec<f64> = x.iter().map(|v| v - m).collect();
                let c0 = xc.iter().map(|v| v * v).sum::<f64>() / n as f64;
                (xc, c0)
            })
            .filter(|(_, c0)| *c0 > 0.0)
            .collect();
        if series.is_empty() {
            continue;
        }
        // walker-averaged autocorrelation, computed lag by lag until the window closes
        let rho = |lag: usize| -> f64 {
            series
                .iter()
                .map(|(xc, c0)| {
                    xc[..n - lag]
                        .iter()
                        .zip(&xc[lag..])
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                        / ((n - lag) as f64 * c0)
                })
                .sum::<f64>()
                / series.len() as f64
        };
        let mut tau = 1.0;
        for m in 1..n / 2 {
            tau += 2.0 * rho(m);
            if m as f64 >= 5.0 * tau {
                break;
            }
        }
        out[d] = tau.max(1.0);
    }
    out
}
