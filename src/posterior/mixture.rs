//! The adaptive mixture sampler of one star (called by `engine` after the mode search).
//!
//! Components: a defensive prior component (a fixed share of every round, so that the
//! weights' variance stays finite when everything else misses posterior mass), Student-t
//! components in the sampling coordinates s (folded at A_V = 0), and optionally the flow.
//! All samples are weighted against the deterministic mixture of every component that drew
//! (`estimator::MixtureLog`), normalised once. Rounds:
//!
//! 1. from t components at the modes (Laplace covariances), shares by Laplace mass;
//! 2. MAX_REFITS rounds from the same components refitted to the weighted samples each is
//!    responsible for (AMIS moment matching; Cornuet et al. 2012);
//! 3. then every round adds a component at the sample of largest weight, with the
//!    posterior's local Gauss-Newton covariance there (IMIS; Raftery & Bao 2010), which
//!    draws half the round; the components that carry mass draw the rest by their
//!    responsibility for it. This extends the mixture along curved ridges and into missed
//!    tails.
//!
//! Sampling stops when the effective sample size reaches the target or the budget is spent.
//! Components that stop drawing stay in the mixture with the samples they drew.

use super::clock::{Stage, StageClock};
use super::conditional::{
    split_theta, y_of_s, ExtinctionRefs, ExtrinsicPrior, SplitBatch, AV, LOG_D,
};
use super::coords::{log_ds_dtheta, s_of, theta_of_s, DIM};
use super::estimator::{normalise, normalise_weights, MixtureLog, Weights};
use super::intrinsic::IntrinsicT;
use super::modes::{local_covariance, Mode, ModeScratch};
use super::proposal::Proposal;
use super::psis::pareto_k_hat;
use super::student_t::{weighted_moments, StudentT};
use super::target::StarTarget;
use super::InferSettings;
use crate::likelihood::StarObs;
use crate::physics::Theta;
use crate::prior::StarPrior;
use crate::util::rng::{derive_seed, Rng};

const D: usize = DIM;

/// Degrees of freedom of the t components (heavier tails than the near-Gaussian posteriors
/// they approximate, so that their weights stay bounded).
const NU: f64 = 5.0;
/// Size of the first round and the smallest later round.
const FIRST_ROUND: usize = 96;
const MIN_ROUND: usize = 32;
/// Samples per later round: at least this many, a quarter of those so far when more.
const LATER_ROUND: usize = 48;
/// Rounds after which the t components are refitted; IMIS afterwards.
const MAX_REFITS: usize = 2;
/// A component is refitted only with at least this many effective samples of its own.
const MIN_REFIT_NEFF: f64 = 10.0;
/// Pseudo-samples of the old component's covariance in a refit.
const REFIT_PRIOR_N: f64 = 6.0;
/// A refitted t's covariance over the weighted covariance (measured on real stars: 1.5
/// gave the best efficiency of 1, 1.5 and 2.25; wider is also safer for IS).
const REFIT_INFLATE: f64 = 1.5;
/// Share of a round drawn from its new IMIS component (the rest from the components that
/// carry mass; measured on real stars: 0.5 needed 12% fewer samples than 1, at equal
/// agreement with MCMC).
const IMIS_SHARE: f64 = 0.5;
/// Components at most per star (each costs a density at every sample).
const MAX_COMPONENTS: usize = 24;
/// Smallest share of a mode in a round (a mode judged light is still checked).
const MIN_SHARE: f64 = 0.05;
/// Components carrying less than this fraction of the posterior mass stop drawing.
const MIN_MASS: f64 = 1e-3;

/// A proposal component of one star's mixture.
// A star has a few dozen components at most, held in one reusable Vec: boxing the t would
// add an allocation per component for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Component {
    /// The flow (its pilot samples, and later draws when `flow_share` > 0).
    Flow,
    /// The prior (defensive).
    Prior,
    /// A Student-t in s.
    T(StudentT),
    /// A Student-t in the intrinsic coordinates y, with distance and extinction from their
    /// closed-form conditional (`conditional`).
    Cond(IntrinsicT),
}

/// The closed-form distance-extinction conditional of one star.
#[derive(Clone, Copy, Debug)]
pub struct ClosedForm {
    /// Regulariser of (A_V, log10 d).
    pub reg: ExtrinsicPrior,
    /// Reference extinctions of the split (`conditional::ExtinctionRefs`).
    pub refs: ExtinctionRefs,
}

/// The estimator's samples of one star and their densities. Densities are kept as
/// densities in s: the t components are natively there, and the prior, the flow and the
/// target are converted once per sample by log |ds/dtheta|.
#[derive(Default)]
pub struct Samples {
    /// Samples.
    pub theta: Vec<Theta>,
    /// Their sampling coordinates.
    s: Vec<[f64; D]>,
    log_prior: Vec<f64>,
    log_lik: Vec<f64>,
    log_jac: Vec<f64>,
    log_target: Vec<f64>,
    /// The conditional's log density of each sample's (A_V, log10 d) given its y (NaN
    /// until computed; only with the closed form).
    log_cond: Vec<f64>,
    mix: MixtureLog,
    comps: Vec<Component>,
}

impl Samples {
    fn clear(&mut self) {
        self.theta.clear();
        self.s.clear();
        self.log_prior.clear();
        self.log_lik.clear();
        self.log_jac.clear();
        self.log_target.clear();
        self.log_cond.clear();
        self.mix.clear();
        self.comps.clear();
    }

    fn len(&self) -> usize {
        self.theta.len()
    }

    /// log |ds/dtheta| and the target density in s of the samples from `from` on (their
    /// log prior and likelihood already in place).
    fn extend_targets(&mut self, from: usize) {
        for i in from..self.len() {
            let lj = log_ds_dtheta(&self.theta[i]);
            self.log_jac.push(lj);
            self.log_target
                .push(self.log_prior[i] + self.log_lik[i] - lj);
        }
    }
}

/// Reusable buffers of the mixture sampler.
#[derive(Default)]
pub struct MixtureWork {
    /// The samples of the last star.
    pub samples: Samples,
    /// Their normalised weights.
    pub weights: Weights,
    log_w: Vec<f64>,
    /// Samples each component drew in the current round.
    drawn: Vec<usize>,
    mags: Vec<f32>,
    dens: Vec<f64>,
    draws: (Vec<Theta>, Vec<f64>),
    modes: ModeScratch,
    /// Closed form: the y of a round's draws with their split magnitudes, and which
    /// samples they become.
    split: SplitBatch,
    split_idx: Vec<usize>,
}

/// The flow's pilot samples of a star.
pub struct Pilot<'a> {
    /// Samples.
    pub theta: &'a [Theta],
    /// Their sampling coordinates.
    pub s: &'a [[f64; D]],
    /// Flow log density (theta-space).
    pub log_q: &'a [f64],
    /// Log prior.
    pub log_prior: &'a [f64],
    /// Log likelihood.
    pub log_lik: &'a [f64],
}

/// One star's mixture sampler.
pub struct MixtureSampler<'a, P: Proposal> {
    /// The flow (for its share of the rounds and its density).
    pub proposal: &'a P,
    /// The flow conditioned on the star.
    pub cond: &'a P::Conditioned,
    /// The star.
    pub star: &'a StarObs,
    /// Its target density.
    pub target: StarTarget<'a>,
    /// Settings.
    pub settings: &'a InferSettings,
    /// The star's seed.
    pub seed: u64,
    /// Timing.
    pub clock: &'a StageClock,
    /// Distance and extinction in closed form (components in y); None: t components in s.
    pub closed_form: Option<ClosedForm>,
}

/// What one round draws.
struct RoundPlan<'a> {
    m: usize,
    defensive: usize,
    flow: Option<usize>,
    active: &'a [(usize, f64)],
}

impl<P: Proposal> MixtureSampler<'_, P> {
    fn prior(&self) -> StarPrior<'_> {
        self.target.prior
    }

    /// Sample into `w.samples` / `w.weights`; returns the samples drawn in all (pilot
    /// included).
    pub fn run(&self, pilot: &Pilot, modes: &[Mode], w: &mut MixtureWork) -> usize {
        let t0 = std::time::Instant::now();
        let set = self.settings;
        w.samples.clear();
        // an intrinsic flow's density at other components' samples needs its own
        // completion's conditional there (not implemented yet; `sedflow run` and
        // `evaluate` refuse flow_share > 0 with such a model): its pilot only seeds the
        // mode search
        let flow_in_mixture = set.flow_share > 0.0 && !self.proposal.intrinsic();
        let flow = flow_in_mixture.then(|| self.add_pilot(pilot, w));
        let defensive = self.add_component(Component::Prior, w);
        let mut active = self.modal_components(pilot, modes, w);
        self.clock.add(Stage::Mixture, t0);
        let n_pilot = pilot.theta.len();
        let budget = set.max_samples.max(n_pilot + MIN_ROUND);
        let (mut drawn, mut round) = (n_pilot, 0usize);
        let mut m = FIRST_ROUND.min(budget - drawn);
        loop {
            let t0 = std::time::Instant::now();
            let plan = RoundPlan {
                m,
                defensive,
                flow,
                active: &active,
            };
            drawn += self.round(&plan, round, w);
            self.clock.add(Stage::Mixture, t0);
            let n_eff = w.weights.n_eff;
            if n_eff >= set.target_n_eff as f64 || drawn >= budget {
                w.weights.pareto_k = pareto_k_hat(&w.log_w);
                return drawn;
            }
            let t0 = std::time::Instant::now();
            active = self.adapt(&active, round, w);
            self.clock.add(Stage::Adapt, t0);
            let eff = (n_eff / w.samples.len().max(1) as f64).max(0.02);
            let need = ((set.target_n_eff as f64 - n_eff) / eff).ceil() as usize;
            m = need
                .clamp(MIN_ROUND, LATER_ROUND.max(w.samples.len() / 4))
                .min(budget - drawn);
            round += 1;
        }
    }

    /// t components at the modes (shares by Laplace mass), or one fitted to the pilot
    /// when no mode was found.
    fn modal_components(
        &self,
        pilot: &Pilot,
        modes: &[Mode],
        w: &mut MixtureWork,
    ) -> Vec<(usize, f64)> {
        let mut modal = Vec::new();
        for m in modes {
            if let Some(c) = self.component_at(&m.v, &m.cov) {
                modal.push((self.add_component(c, w), m.log_mass()));
            }
        }
        if modal.is_empty() {
            if let Some(c) = fallback_t(pilot).and_then(|t| self.component_at(&t.mean, &t.scale()))
            {
                modal.push((self.add_component(c, w), 0.0));
            }
        }
        let best = modal.iter().map(|a| a.1).fold(f64::NEG_INFINITY, f64::max);
        for a in modal.iter_mut() {
            a.1 = if best.is_finite() {
                (a.1 - best).exp()
            } else {
                1.0
            };
        }
        normalise_shares(&mut modal);
        modal
    }

    /// The component at a point of s with a scale matrix in s: a t in s, or with the
    /// closed form its marginal over y.
    fn component_at(&self, v: &[f64; D], scale: &[[f64; D]; D]) -> Option<Component> {
        match self.closed_form {
            Some(_) => IntrinsicT::from_s_block(v, scale, NU).map(Component::Cond),
            None => StudentT::new(*v, scale, NU).map(Component::T),
        }
    }

    /// Draw a round, evaluate it, and update the weights; returns the samples drawn.
    fn round(&self, plan: &RoundPlan, round: usize, w: &mut MixtureWork) -> usize {
        let from = w.samples.len();
        w.drawn.clear();
        w.drawn.resize(w.samples.comps.len(), 0);
        let mut rng = Rng::for_keys(self.seed, &[2 + round as u64]);
        self.draw(plan, round, &mut rng, w);
        self.extend_densities(from, w);
        w.samples
            .mix
            .log_weights(&w.samples.log_target, &mut w.log_w);
        normalise_weights(&w.log_w, &mut w.weights);
        w.samples.len() - from
    }

    /// The flow pilot as the mixture's first component (its samples in the estimator).
    fn add_pilot(&self, p: &Pilot, w: &mut MixtureWork) -> usize {
        let s = &mut w.samples;
        s.theta.extend_from_slice(p.theta);
        s.s.extend_from_slice(p.s);
        s.log_prior.extend_from_slice(p.log_prior);
        s.log_lik.extend_from_slice(p.log_lik);
        s.log_cond.resize(s.theta.len(), f64::NAN);
        s.extend_targets(0);
        let c = s.mix.add_component(&[]);
        w.dens.clear();
        w.dens
            .extend(p.log_q.iter().zip(&s.log_jac).map(|(q, j)| q - j));
        s.mix.add_samples(&w.dens, &[p.theta.len()]);
        s.comps.push(Component::Flow);
        c
    }

    /// Add a component, with its density at every existing sample; returns its index.
    fn add_component(&self, comp: Component, w: &mut MixtureWork) -> usize {
        if matches!(comp, Component::Cond(_)) {
            self.complete_log_cond(0, w);
        }
        let s = &mut w.samples;
        w.dens.clear();
        self.density(&comp, 0..s.len(), s, &mut w.dens);
        let c = s.mix.add_component(&w.dens);
        s.comps.push(comp);
        c
    }

    /// A component's log density (as a density in s) at samples `range`.
    fn density(
        &self,
        comp: &Component,
        range: std::ops::Range<usize>,
        s: &Samples,
        out: &mut Vec<f64>,
    ) {
        let jac = &s.log_jac[range.clone()];
        match comp {
            Component::Flow => {
                let from = out.len();
                self.proposal.log_density(self.cond, &s.theta[range], out);
                out[from..].iter_mut().zip(jac).for_each(|(q, j)| *q -= j);
            }
            Component::Prior => out.extend(s.log_prior[range].iter().zip(jac).map(|(p, j)| p - j)),
            Component::T(t) => t.log_pdf_folded_many(&s.s[range], out),
            Component::Cond(t) => out.extend(
                s.s[range.clone()]
                    .iter()
                    .zip(&s.log_cond[range])
                    .map(|(v, &lc)| t.log_pdf(&y_of_s(v)) + lc),
            ),
        }
    }

    /// The conditional's log density at every sample from `from` on that lacks it (those
    /// drawn by other components), in one batch through the forward model.
    fn complete_log_cond(&self, from: usize, w: &mut MixtureWork) {
        let Some(cf) = self.closed_form else { return };
        let s = &w.samples;
        w.split_idx.clear();
        w.split_idx
            .extend((from..s.len()).filter(|&i| s.log_cond[i].is_nan()));
        if w.split_idx.is_empty() {
            return;
        }
        w.split.at.clear();
        w.split.at.extend(
            w.split_idx
                .iter()
                .map(|&i| split_theta(&y_of_s(&s.s[i]), cf.refs.a1)),
        );
        w.split.split(&self.target, &cf.refs);
        for (k, &i) in w.split_idx.iter().enumerate() {
            let v = w.samples.s[i];
            w.samples.log_cond[i] = w
                .split
                .conditional(&self.target, &cf.refs, &cf.reg, k)
                .map_or(f64::NEG_INFINITY, |c| c.log_pdf(v[AV], v[LOG_D]));
        }
    }

    /// Draw `k` samples from a t in y and the conditional: y from the t, then (A_V, log10 d)
    /// given y. A y outside the model gets a sample of zero target density.
    fn draw_closed_form(&self, t: &IntrinsicT, k: usize, rng: &mut Rng, w: &mut MixtureWork) {
        let Some(cf) = self.closed_form else { return };
        w.split.at.clear();
        // antithetic pairs: every second y is its predecessor reflected through the
        // component's location, and its (A_V, log d) uses the partner's (1 - u, -z). Each
        // draw is still distributed as the component, so the weights are unchanged.
        let mut y = t.mean;
        w.split.at.extend((0..k).map(|j| {
            y = if j % 2 == 0 {
                t.sample(rng)
            } else {
                t.reflect(&y)
            };
            split_theta(&y, cf.refs.a1)
        }));
        w.split.split(&self.target, &cf.refs);
        let (mut u, mut z) = (0.5, 0.0);
        for j in 0..k {
            let mut v = s_of(&w.split.at[j]);
            (u, z) = if j % 2 == 0 {
                (rng.uniform_open(), rng.normal())
            } else {
                (1.0 - u, -z)
            };
            let lc = match w.split.conditional(&self.target, &cf.refs, &cf.reg, j) {
                Some(c) => {
                    (v[AV], v[LOG_D]) = c.draw_at(u, z);
                    c.log_pdf(v[AV], v[LOG_D])
                }
                None => {
                    (v[AV], v[LOG_D]) = (0.0, cf.reg.log_d.0);
                    f64::NEG_INFINITY
                }
            };
            let s = &mut w.samples;
            s.theta.push(theta_of_s(&v));
            s.s.push(v);
            s.log_cond.push(lc);
        }
    }

    /// Draw a round: the defensive share from the prior, the flow's share (when the flow
    /// is in the mixture), the rest split over the active t components by their shares.
    fn draw(&self, plan: &RoundPlan, round: usize, rng: &mut Rng, w: &mut MixtureWork) {
        let m = plan.m;
        let share = |f: f64| {
            if f > 0.0 {
                ((f * m as f64).round() as usize).clamp(1, m)
            } else {
                0
            }
        };
        let n_def = if plan.active.is_empty() {
            m
        } else {
            share(self.settings.defensive_fraction)
        };
        let n_flow = match plan.flow {
            Some(_) if !plan.active.is_empty() => share(self.settings.flow_share).min(m - n_def),
            _ => 0,
        };
        let s = &mut w.samples;
        for _ in 0..n_def {
            let t = self.prior().sample(rng);
            s.s.push(s_of(&t));
            s.theta.push(t);
            s.log_cond.push(f64::NAN);
        }
        w.drawn[plan.defensive] += n_def;
        if let (Some(c), true) = (plan.flow, n_flow > 0) {
            let (th, lq) = &mut w.draws;
            let seed = derive_seed(self.seed, &[0xF10, round as u64]);
            let (cond, star) = (
                std::slice::from_ref(self.cond),
                std::slice::from_ref(self.star),
            );
            self.proposal.sample(cond, star, n_flow, &[seed], th, lq);
            s.s.extend(th.iter().map(s_of));
            s.theta.extend_from_slice(th);
            s.log_cond.resize(s.theta.len(), f64::NAN);
            w.drawn[c] += n_flow;
        }
        let counts = split_counts(m - n_def - n_flow, plan.active);
        for (&(c, _), &k) in plan.active.iter().zip(&counts) {
            match w.samples.comps[c].clone() {
                Component::T(t) => {
                    let s = &mut w.samples;
                    for _ in 0..k {
                        let (th, v, _) = t.sample_theta(rng);
                        s.theta.push(th);
                        s.s.push(v);
                        s.log_cond.push(f64::NAN);
                    }
                }
                Component::Cond(t) => self.draw_closed_form(&t, k, rng, w),
                Component::Flow | Component::Prior => unreachable!("only t components draw"),
            }
            w.drawn[c] += k;
        }
    }

    /// Targets of the samples from `from` on, and every component's density there.
    fn extend_densities(&self, from: usize, w: &mut MixtureWork) {
        if w.samples
            .comps
            .iter()
            .any(|c| matches!(c, Component::Cond(_)))
        {
            self.complete_log_cond(from, w);
        }
        let s = &mut w.samples;
        self.target.eval_many(
            &s.theta[from..],
            &mut w.mags,
            &mut s.log_prior,
            &mut s.log_lik,
        );
        s.extend_targets(from);
        w.dens.clear();
        for c in 0..s.comps.len() {
            self.density(&s.comps[c], from..s.len(), s, &mut w.dens);
        }
        s.mix.add_samples(&w.dens, &w.drawn);
    }

    /// The components of the next round: refitted ones for the first MAX_REFITS rounds;
    /// then those that carry mass, by their responsibility for it, plus one new IMIS
    /// component.
    fn adapt(
        &self,
        active: &[(usize, f64)],
        round: usize,
        w: &mut MixtureWork,
    ) -> Vec<(usize, f64)> {
        if round < MAX_REFITS {
            return self.refit(active, w);
        }
        // every t component that drew keeps drawing by the mass it carries ...
        let all_t: Vec<(usize, f64)> = (0..w.samples.comps.len())
            .filter(|&c| {
                matches!(w.samples.comps[c], Component::T(_) | Component::Cond(_))
                    && w.samples.mix.counts[c] > 0
            })
            .map(|c| (c, 1.0))
            .collect();
        let mut next = shares_by_responsibility(&all_t, &w.samples.mix, &w.weights.w);
        // (components left at the floor share carry no mass: they stop drawing)
        next.retain(|a| a.1 > MIN_SHARE * 1.0001);
        // ... and a new one where the mixture falls shortest draws IMIS_SHARE of the round
        if w.samples.comps.len() < MAX_COMPONENTS {
            if let Some(c) = self.imis_component(w) {
                let total: f64 = next.iter().map(|a| a.1).sum();
                next.iter_mut()
                    .for_each(|a| a.1 *= (1.0 - IMIS_SHARE) / total);
                next.push((c, IMIS_SHARE));
            }
        }
        next
    }

    /// Moment-matching refits of the active t components (responsibility-weighted means and
    /// covariances); components with too few effective samples of their own are kept.
    /// Shares follow the mass each carries; negligible ones stop drawing.
    fn refit(&self, active: &[(usize, f64)], w: &mut MixtureWork) -> Vec<(usize, f64)> {
        let resp = responsibilities(active, &w.samples.mix, &w.weights.w);
        let k = active.len();
        let mut next: Vec<(usize, f64)> = Vec::with_capacity(k);
        for (j, &(c, _)) in active.iter().enumerate() {
            let omega = |i: usize| resp[i * k + j];
            let mass: f64 = (0..w.samples.len()).map(omega).sum();
            let moments = weighted_moments(&w.samples.s, omega).filter(|m| m.2 >= MIN_REFIT_NEFF);
            let refitted = match (&w.samples.comps[c], moments) {
                (Component::T(old), Some((mean, cov, neff))) => {
                    refit_t(old, mean, &cov, neff).map(Component::T)
                }
                (Component::Cond(old), Some((mean, cov, neff))) => {
                    refit_intrinsic(old, &mean, &cov, neff).map(Component::Cond)
                }
                _ => None,
            };
            match refitted {
                Some(comp) => next.push((self.add_component(comp, w), mass)),
                None => next.push((c, mass)),
            }
        }
        let total: f64 = next.iter().map(|a| a.1).sum();
        if !(total > 0.0) {
            return active.to_vec();
        }
        if next.len() > 1 {
            next.retain(|a| a.1 >= MIN_MASS * total);
        }
        normalise_shares(&mut next);
        next
    }

    /// IMIS: a t at the sample of largest weight, with the posterior's local Gauss-Newton
    /// covariance there; returns its index.
    fn imis_component(&self, w: &mut MixtureWork) -> Option<usize> {
        let (i, _) = w
            .weights
            .w
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        let s = w.samples.s[i];
        let cov = local_covariance(&self.target, &s, &mut w.modes)?;
        let comp = self.component_at(&s, &cov)?;
        Some(self.add_component(comp, w))
    }
}

/// Per sample and active component (row-major [sample][component]): the sample's weight
/// times the component's responsibility share_c q_c / sum_k share_k q_k.
fn responsibilities(active: &[(usize, f64)], mix: &MixtureLog, w: &[f64]) -> Vec<f64> {
    let k = active.len();
    let mut out = vec![0f64; w.len() * k];
    for (i, &wi) in w.iter().enumerate() {
        if !(wi > 0.0) {
            continue;
        }
        let row = &mut out[i * k..(i + 1) * k];
        for (t, &(c, sh)) in row.iter_mut().zip(active) {
            *t = sh * mix.relative_density(c, i);
        }
        let z: f64 = row.iter().sum();
        if z > 0.0 {
            row.iter_mut().for_each(|t| *t *= wi / z);
        }
    }
    out
}

/// New shares from the posterior mass each component is responsible for,
/// sum_i w_i n_c q_c(x_i) / sum_k n_k q_k(x_i) (D-kernel population Monte Carlo, Douc et
/// al. 2007), floored at MIN_SHARE; components without samples keep their share.
fn shares_by_responsibility(
    active: &[(usize, f64)],
    mix: &MixtureLog,
    w: &[f64],
) -> Vec<(usize, f64)> {
    let mut out: Vec<(usize, f64)> = active
        .iter()
        .map(|&(c, share)| {
            if mix.counts[c] == 0 {
                return (c, share);
            }
            let mass: f64 = (0..w.len())
                .filter(|&i| w[i] > 0.0)
                .map(|i| w[i] * mix.responsibility(c, i))
                .sum();
            (c, mass)
        })
        .collect();
    if out.iter().map(|a| a.1).sum::<f64>() > 0.0 {
        normalise_shares(&mut out);
        out
    } else {
        active.to_vec()
    }
}

/// Normalise shares, each floored at MIN_SHARE.
fn normalise_shares(active: &mut [(usize, f64)]) {
    let total: f64 = active.iter().map(|a| a.1).sum();
    for a in active.iter_mut() {
        a.1 = (a.1 / total).max(MIN_SHARE);
    }
    let total: f64 = active.iter().map(|a| a.1).sum();
    for a in active.iter_mut() {
        a.1 /= total;
    }
}

/// Split `m` samples over components by share, largest remainders first.
fn split_counts(m: usize, active: &[(usize, f64)]) -> Vec<usize> {
    let mut counts: Vec<usize> = active
        .iter()
        .map(|a| (a.1 * m as f64).floor() as usize)
        .collect();
    let mut rest = m - counts.iter().sum::<usize>().min(m);
    let mut order: Vec<usize> = (0..active.len()).collect();
    let remainder = |k: usize| active[k].1 * m as f64 - counts[k] as f64;
    order.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)));
    for &k in order.iter().cycle().take(2 * active.len()) {
        if rest == 0 {
            break;
        }
        counts[k] += 1;
        rest -= 1;
    }
    counts
}

/// A t refitted to weighted moments: the covariance shrunk towards the old component's by
/// REFIT_PRIOR_N pseudo-samples, the scale chosen so that the t's covariance is
/// REFIT_INFLATE times that.
fn refit_t(old: &StudentT, mean: [f64; D], cov: &[[f64; D]; D], neff: f64) -> Option<StudentT> {
    let old_scale = old.scale();
    let old_cov = old.nu / (old.nu - 2.0);
    let to_scale = (old.nu - 2.0) / old.nu * REFIT_INFLATE;
    let scale: [[f64; D]; D] = std::array::from_fn(|a| {
        std::array::from_fn(|b| {
            let prior = old_scale[a][b] * old_cov;
            to_scale * (neff * cov[a][b] + REFIT_PRIOR_N * prior) / (neff + REFIT_PRIOR_N)
        })
    });
    StudentT::new(mean, &scale, old.nu)
}

/// A t in y refitted to weighted moments in s (their intrinsic block), as [`refit_t`].
fn refit_intrinsic(
    old: &IntrinsicT,
    mean: &[f64; D],
    cov: &[[f64; D]; D],
    neff: f64,
) -> Option<IntrinsicT> {
    use super::conditional::{INTRINSIC, NY};
    let old_scale = old.scale();
    let old_cov = old.nu / (old.nu - 2.0);
    let to_scale = (old.nu - 2.0) / old.nu * REFIT_INFLATE;
    let scale: [[f64; NY]; NY] = std::array::from_fn(|a| {
        std::array::from_fn(|b| {
            let prior = old_scale[a][b] * old_cov;
            let c = cov[INTRINSIC[a]][INTRINSIC[b]];
            to_scale * (neff * c + REFIT_PRIOR_N * prior) / (neff + REFIT_PRIOR_N)
        })
    });
    IntrinsicT::new(y_of_s(mean), &scale, old.nu)
}

/// A t fitted to the pilot samples when no mode was found: their importance-weighted
/// moments if any weight is positive, else their plain spread.
fn fallback_t(p: &Pilot) -> Option<StudentT> {
    let log_w: Vec<f64> = (0..p.theta.len())
        .map(|i| p.log_prior[i] + p.log_lik[i] - p.log_q[i])
        .collect();
    let wts = normalise(&log_w);
    let fit = if wts.n_eff >= 2.0 {
        weighted_moments(p.s, |i| wts.w[i])
    } else {
        weighted_moments(p.s, |i| {
            if p.s[i].iter().all(|x| x.is_finite()) {
                1.0
            } else {
                0.0
            }
        })
    };
    let (mean, mut cov, _) = fit?;
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] += 1e-6;
    }
    StudentT::new(mean, &cov, NU)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_shares_and_sum_to_the_round() {
        let active = [(3, 0.5), (5, 0.3), (7, 0.2)];
        let c = split_counts(11, &active);
        assert_eq!(c.iter().sum::<usize>(), 11);
        assert_eq!(c, vec![6, 3, 2]);
        let mut sh = vec![(0, 1.0), (1, 1e-9)];
        normalise_shares(&mut sh);
        assert!((sh[0].1 + sh[1].1 - 1.0).abs() < 1e-12);
        assert!(sh[1].1 > 0.04, "floored share {}", sh[1].1);
    }
}
