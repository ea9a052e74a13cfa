//! Reference MCMC: the affine-invariant ensemble sampler (Goodman & Weare 2010, the
//! "stretch move" of emcee) on exactly the prior and likelihood that importance sampling
//! uses. The ground truth the importance sampler must agree with, and the speed baseline
//! users would otherwise run.
//!
//! Sampling happens in s = (log10 Teff, log g, [M/H], A_V, R_V, log10 d) (`coords::s_of`)
//! with the Jacobian included, so the chain targets p(theta | obs) in physical units.
//! Walkers start from importance resampling of a large prior sample (mode weights right
//! from the start, no dependence on the flow). Convergence: rank-normalised split-R-hat and
//! bulk ESS per parameter (`chains`), each walker's kept steps one chain.
//!
//! [`McmcEngine`] runs it behind the pipeline's [`Engine`] interface, so that a reference
//! for a whole catalogue reads stars through the same ingest as `sedflow run` and writes the
//! same table (plus R-hat and ESS columns).

use super::chains::rhat_and_ess;
use super::coords::{s_of, theta_of_s};
use super::derived::{derived_summary, DerivedSummary, DerivedWork};
use super::estimator::normalise;
use super::summary::param_summaries;
use super::target::StarTarget;
use super::{flags, ChainDiagnostics, Engine, InferSettings, ParamSummary, StarResult};
use crate::likelihood::{NoiseModel, PreparedStar, StarObs};
use crate::physics::{ForwardModel, Theta};
use crate::prior::reddening::ReddeningModel;
use crate::prior::Prior;
use crate::util::rng::Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
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
            walkers: 32,
            burn: 10_000,
            steps: 80_000,
            a: 2.0,
            init_draws: 200_000,
            seed: 1,
        }
    }
}

/// R-hat above which a reference chain counts as not converged (flagged NOT_CONVERGED).
pub const RHAT_LIMIT: f64 = 1.01;

/// Draws per chain kept for the diagnostics (chains are thinned to about this length;
/// thinning well below the autocorrelation time costs nothing in ESS).
const DIAGNOSTIC_DRAWS: usize = 1000;
/// Steps per walker kept in memory at most (longer chains are thinned to this; the
/// autocorrelation times here are hundreds of steps, so nothing is lost).
const KEPT_DRAWS: usize = 4000;

/// Result of one star's chain.
#[derive(Clone, Debug, Serialize)]
pub struct McmcResult {
    /// Kept samples (theta arrays, walker-major per kept step; long chains thinned).
    #[serde(skip)]
    pub samples: Vec<[f64; 6]>,
    /// Rank-normalised split-R-hat per parameter.
    pub rhat: [f64; 6],
    /// Bulk effective sample size per parameter.
    pub ess: [f64; 6],
    /// The smallest ESS.
    pub n_eff: f64,
    /// Mean acceptance fraction.
    pub acceptance: f64,
    /// Wall time \[s\].
    pub seconds: f64,
    /// Log-posterior evaluations.
    pub evaluations: usize,
}

impl McmcResult {
    /// The largest R-hat over parameters.
    pub fn max_rhat(&self) -> f64 {
        self.rhat.iter().cloned().fold(f64::NAN, f64::max)
    }

    /// Posterior summaries of the kept samples: the importance sampler's summaries with
    /// equal weights (the same quantile rule).
    pub fn summaries(&self) -> [ParamSummary; 6] {
        let th: Vec<Theta> = self.samples.iter().map(|s| Theta::from_array(*s)).collect();
        // (normalised weights: the summaries' means are weighted sums)
        param_summaries(&th, &vec![1.0 / th.len() as f64; th.len()])
    }
}

/// Walkers from importance resampling of prior draws by their likelihood (systematic),
/// jittered so that duplicated draws become distinct walkers.
fn initial_walkers(
    target: &StarTarget,
    cfg: &McmcConfig,
    rng: &mut Rng,
    evals: &mut usize,
) -> Vec<[f64; 6]> {
    let draws: Vec<Theta> = (0..cfg.init_draws)
        .map(|_| target.prior.sample(rng))
        .collect();
    let mut scratch = Vec::new();
    let log_w: Vec<f64> = draws
        .iter()
        .map(|t| target.prep.log_likelihood(target.fm, t, &mut scratch))
        .collect();
    *evals += draws.len();
    let w = normalise(&log_w);
    let nw = cfg.walkers;
    let mut pos = Vec::with_capacity(nw);
    let (mut cum, mut k) = (0.0, 0);
    let u0 = rng.uniform() / nw as f64;
    for j in 0..nw {
        let u = u0 + j as f64 / nw as f64;
        while k + 1 < w.w.len() && cum + w.w[k] < u {
            cum += w.w[k];
            k += 1;
        }
        let mut v = s_of(&draws[k]);
        for x in v.iter_mut() {
            *x += 1e-4 * rng.normal();
        }
        pos.push(v);
    }
    pos
}

/// Share of differential-evolution moves (the rest are stretch moves).
const DE_SHARE: f64 = 0.5;

/// One ensemble move for walker i against the complementary half [olo, ohi): a stretch
/// move (Goodman & Weare 2010) or a differential-evolution move (ter Braak 2006; step
/// 2.38 / sqrt(2 d), one in ten of them 1 to jump between modes). Both are affine
/// invariant. Returns the proposal and the log of its acceptance factor.
fn propose(
    pos: &[[f64; 6]],
    i: usize,
    olo: usize,
    ohi: usize,
    a: f64,
    rng: &mut Rng,
) -> ([f64; 6], f64) {
    let n = ohi - olo;
    if rng.chance(DE_SHARE) {
        let j = olo + rng.below(n);
        let mut k = olo + rng.below(n - 1);
        if k >= j {
            k += 1;
        }
        let gamma = if rng.chance(0.1) {
            1.0
        } else {
            2.38 / (12f64).sqrt()
        };
        let prop = std::array::from_fn(|d| {
            pos[i][d] + gamma * (pos[j][d] - pos[k][d]) + 1e-8 * rng.normal()
        });
        (prop, 0.0)
    } else {
        let j = olo + rng.below(n);
        // z ~ g(z) ∝ 1/sqrt(z) on [1/a, a]
        let z = ((a - 1.0) * rng.uniform() + 1.0).powi(2) / a;
        let prop = std::array::from_fn(|d| pos[j][d] + z * (pos[i][d] - pos[j][d]));
        (prop, 5.0 * z.ln())
    }
}

/// Run the ensemble sampler for one star.
pub fn run(
    star: &StarObs,
    fm: &ForwardModel,
    (prior, reddening): (&Prior, &ReddeningModel),
    noise: &NoiseModel,
    cfg: &McmcConfig,
) -> McmcResult {
    let t0 = Instant::now();
    let prep = PreparedStar::new(star, noise);
    let target = StarTarget {
        fm,
        prior: prior.for_star(reddening, star.reddening.as_ref()),
        prep: &prep,
    };
    let mut rng = Rng::for_keys(cfg.seed, &[star.source_id as u64, 0x3C3C]);
    let mut evals = 0usize;
    let mut pos = initial_walkers(&target, cfg, &mut rng, &mut evals);
    let mut mags = Vec::new();
    let mut lp: Vec<f64> = pos
        .iter()
        .map(|v| target.log_post_s(v, &mut mags))
        .collect();
    let nw = cfg.walkers;
    evals += nw;
    let half = nw / 2;
    let thin = cfg.steps.div_ceil(KEPT_DRAWS).max(1);
    let mut samples = Vec::with_capacity(cfg.steps.div_ceil(thin) * nw);
    let (mut accepted, mut proposed) = (0usize, 0usize);
    for step in 0..(cfg.burn + cfg.steps) {
        for (lo, hi, olo, ohi) in [(0, half, half, nw), (half, nw, 0, half)] {
            for i in lo..hi {
                let (prop, log_jac) = propose(&pos, i, olo, ohi, cfg.a, &mut rng);
                let lq = target.log_post_s(&prop, &mut mags);
                evals += 1;
                let log_acc = log_jac + lq - lp[i];
                proposed += 1;
                if log_acc >= 0.0 || rng.uniform().ln() < log_acc {
                    pos[i] = prop;
                    lp[i] = lq;
                    accepted += 1;
                }
            }
        }
        if step >= cfg.burn && (step - cfg.burn).is_multiple_of(thin) {
            samples.extend(pos.iter().map(|v| theta_of_s(v).to_array()));
        }
    }
    let (rhat, ess) = diagnostics(&samples, nw);
    McmcResult {
        n_eff: ess.iter().cloned().fold(f64::INFINITY, f64::min),
        samples,
        rhat,
        ess,
        acceptance: accepted as f64 / proposed.max(1) as f64,
        seconds: t0.elapsed().as_secs_f64(),
        evaluations: evals,
    }
}

/// Split-R-hat and ESS per parameter, every walker one chain, thinned to about
/// DIAGNOSTIC_DRAWS draws per chain (the ESS is that of the thinned chains: with a thinning
/// step below the autocorrelation time, about the ESS of all draws, never more).
pub fn diagnostics(samples: &[[f64; 6]], walkers: usize) -> ([f64; 6], [f64; 6]) {
    let n = samples.len() / walkers.max(1);
    if n < 8 {
        return ([f64::NAN; 6], [f64::NAN; 6]);
    }
    let thin = n.div_ceil(DIAGNOSTIC_DRAWS).max(1);
    let mut rhat = [0f64; 6];
    let mut ess = [0f64; 6];
    for p in 0..6 {
        let chains: Vec<Vec<f64>> = (0..walkers)
            .map(|w| {
                (0..n)
                    .step_by(thin)
                    .map(|s| samples[s * walkers + w][p])
                    .collect()
            })
            .collect();
        let (r, e) = rhat_and_ess(&chains);
        rhat[p] = r;
        ess[p] = e;
    }
    (rhat, ess)
}

/// Which stars of a catalogue get a chain.
#[derive(Clone, Debug, Default)]
pub enum Selection {
    /// Every star.
    #[default]
    All,
    /// Only these source ids.
    Ids(HashSet<i64>),
}

/// The reference MCMC as a pipeline engine: one chain per selected star (stars in
/// parallel), the same output row as importance sampling plus R-hat and ESS.
pub struct McmcEngine {
    /// Forward model.
    pub fm: ForwardModel,
    /// Prior.
    pub prior: Prior,
    /// Turns a star's dust-map value into its A_V prior.
    pub reddening: ReddeningModel,
    /// Noise model.
    pub noise: NoiseModel,
    /// Chain settings.
    pub cfg: McmcConfig,
    /// Stars that get a chain; the others get an unprocessed row.
    pub selection: Selection,
    /// Kept draws per star for the samples table (0: none), evenly spaced over the chains.
    pub keep_samples: usize,
}

/// `k` draws evenly spaced over `samples` (all of them when there are fewer).
pub fn thin(samples: &[[f64; 6]], k: usize) -> Vec<[f32; 6]> {
    let n = samples.len();
    let k = k.min(n);
    (0..k)
        .map(|i| samples[i * n / k].map(|x| x as f32))
        .collect()
}

impl McmcEngine {
    /// The chains of one star on this engine's target and settings.
    pub fn chain(&self, star: &StarObs) -> McmcResult {
        run(
            star,
            &self.fm,
            (&self.prior, &self.reddening),
            &self.noise,
            &self.cfg,
        )
    }

    fn star_result(&self, star: &StarObs, settings: &InferSettings) -> StarResult {
        let selected = match &self.selection {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(&star.source_id),
        };
        if !selected {
            return StarResult::unprocessed(
                star.source_id,
                0,
                "not selected for the reference MCMC".into(),
            );
        }
        let m = self.chain(star);
        let n = m.samples.len();
        let mut res = StarResult {
            source_id: star.source_id,
            params: m.summaries(),
            n_bands: star.phot.len() as u16,
            has_parallax: star.parallax.is_some(),
            n_samples: n as u32,
            n_eff: m.n_eff as f32,
            sample_efficiency: (m.n_eff / n.max(1) as f64) as f32,
            log_evidence: f32::NAN,
            log_evidence_se: f32::NAN,
            pareto_k: f32::NAN,
            n_modes: 0,
            best_fit_chi2: f32::NAN,
            flags: 0,
            flag_reason: String::new(),
            samples: (self.keep_samples > 0).then(|| thin(&m.samples, self.keep_samples)),
            chain: Some(ChainDiagnostics {
                rhat: m.rhat.map(|x| x as f32),
                ess: m.ess.map(|x| x as f32),
            }),
            derived: chain_derived(&self.fm, &m.samples, settings, star.source_id as u64),
        };
        let mut reasons = Vec::new();
        super::summary::flag_single_band(star.phot.len(), &mut res.flags, &mut reasons);
        let r = m.max_rhat();
        if !(r <= RHAT_LIMIT) {
            res.flags |= flags::NOT_CONVERGED;
            reasons.push(format!("split-R-hat {r:.3} > {RHAT_LIMIT}"));
        }
        res.flag_reason = reasons.join("; ");
        res
    }
}

/// Derived quantities of the kept draws (equal weights; None without draws).
fn chain_derived(
    fm: &ForwardModel,
    samples: &[[f64; 6]],
    settings: &InferSettings,
    seed: u64,
) -> Option<DerivedSummary> {
    if samples.is_empty() {
        return None;
    }
    let th: Vec<Theta> = samples.iter().map(|&a| Theta::from_array(a)).collect();
    let w = vec![1.0; th.len()];
    Some(derived_summary(
        fm,
        &th,
        &w,
        (&settings.predict_bands, settings.gaia_passbands),
        seed,
        &mut DerivedWork::default(),
    ))
}

impl Engine for McmcEngine {
    fn model_id(&self) -> String {
        format!(
            "reference-mcmc(walkers {}, burn {}, steps {}, seed {}) | forward {}",
            self.cfg.walkers,
            self.cfg.burn,
            self.cfg.steps,
            self.cfg.seed,
            self.fm.id()
        )
    }

    fn band_names(&self) -> Vec<String> {
        super::band_names(&self.fm)
    }

    fn reddening(&self) -> &ReddeningModel {
        &self.reddening
    }

    fn infer(&self, stars: &[StarObs], settings: &InferSettings) -> Vec<StarResult> {
        stars
            .par_iter()
            .with_max_len(1)
            .map(|s| {
                if s.phot.is_empty() {
                    StarResult::no_usable_bands(s.source_id)
                } else {
                    self.star_result(s, settings)
                }
            })
            .collect()
    }

    fn chain_diagnostics(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_spreads_over_the_chain() {
        let s: Vec<[f64; 6]> = (0..10).map(|i| [i as f64; 6]).collect();
        let t = thin(&s, 4);
        assert_eq!(
            t.iter().map(|d| d[0]).collect::<Vec<_>>(),
            vec![0.0, 2.0, 5.0, 7.0]
        );
        assert_eq!(thin(&s, 50).len(), 10);
    }

    /// Summaries of equally weighted draws: order-statistic quantiles and plain means.
    #[test]
    fn summaries_of_equal_draws() {
        let samples: Vec<[f64; 6]> = (0..100).rev().map(|i| [i as f64; 6]).collect();
        let r = McmcResult {
            samples,
            rhat: [1.0; 6],
            ess: [100.0; 6],
            n_eff: 100.0,
            acceptance: 0.3,
            seconds: 0.0,
            evaluations: 0,
        };
        let s = r.summaries();
        assert!((s[0].mean - 49.5).abs() < 1e-4, "mean {}", s[0].mean);
        // p50 between the 50th and 51st of 100 values; p16 at (15 + 0.5) / 100
        assert!(
            (s[5].q[2] - 49.5).abs() < 1e-4 && (s[5].q[1] - 15.5).abs() < 1e-4,
            "{:?}",
            s[5].q
        );
    }
}
