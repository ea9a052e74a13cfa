//! CPU time per inference sub-stage, summed over threads (for `sedflow run`'s summary and
//! the benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The sub-stages of one star's inference.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    /// Encoding the observations (the flow's context).
    Encode,
    /// The flow's pilot samples (and its densities when in the mixture).
    Flow,
    /// Mode searches and Laplace approximations.
    Modes,
    /// Drawing mixture rounds: likelihood, prior, component densities, weights.
    Mixture,
    /// Refits and new components between rounds.
    Adapt,
    /// Quantiles, flags, diagnostics.
    Summaries,
}

const STAGES: [(Stage, &str); 6] = [
    (Stage::Encode, "encode"),
    (Stage::Flow, "flow pilot"),
    (Stage::Modes, "mode search"),
    (Stage::Mixture, "likelihood+mixture"),
    (Stage::Adapt, "adaptation"),
    (Stage::Summaries, "summaries"),
];

/// Accumulated nanoseconds per stage.
#[derive(Debug, Default)]
pub struct StageClock {
    ns: [AtomicU64; 6],
    mode_search_evaluations: AtomicU64,
    stars: AtomicU64,
}

impl StageClock {
    /// Add the time since `since` to a stage.
    pub fn add(&self, stage: Stage, since: Instant) {
        self.ns[stage as usize].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Count one star's mode search and the forward-model evaluations it spent.
    pub fn add_mode_search(&self, evaluations: u64) {
        self.mode_search_evaluations
            .fetch_add(evaluations, Ordering::Relaxed);
        self.stars.fetch_add(1, Ordering::Relaxed);
    }

    /// Forward-model evaluations (likelihood calls) per star spent by the mode search so far.
    pub fn mode_search_evaluations_per_star(&self) -> f64 {
        let stars = self.stars.load(Ordering::Relaxed).max(1);
        self.mode_search_evaluations.load(Ordering::Relaxed) as f64 / stars as f64
    }

    /// (stage, CPU seconds) so far.
    pub fn snapshot(&self) -> Vec<(&'static str, f64)> {
        STAGES
            .iter()
            .map(|&(s, name)| {
                (
                    name,
                    self.ns[s as usize].load(Ordering::Relaxed) as f64 * 1e-9,
                )
            })
            .collect()
    }
}
