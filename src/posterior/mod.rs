//! The posterior layer (steps 3-4 of the data path, infer -> summarise): per-star samples of
//! p(theta | observations) with importance weights against the exact likelihood and prior,
//! and the summaries written per star.
//!
//! It depends only on the physics, the prior and the likelihood. The neural posterior plugs
//! in through [`proposal::Proposal`] (implemented in `nn::proposal`); the pipeline hands
//! batches of [`StarObs`] to an [`Engine`] and gets one [`StarResult`] back per star, in
//! order.
//!
//! * [`coords`]: the unbounded coordinates v(theta) every proposal and the mode search use.
//! * [`target`]: one star's unnormalised posterior (prior x likelihood).
//! * [`proposal`]: the proposal trait and the prior as a proposal.
//! * [`student_t`]: multivariate Student-t components in s, folded at A_V = 0.
//! * [`modes`]: Levenberg-Marquardt mode search and Laplace approximations.
//! * [`estimator`]: deterministic-mixture importance weights, ESS, evidence and its error.
//! * [`psis`]: the Pareto-smoothed importance sampling diagnostic k-hat.
//! * [`engine`]: the per-star algorithm (flow pilot, modes, then [`mixture`]).
//! * [`mixture`]: the adaptive mixture sampler (AMIS refits, IMIS components, defensive
//!   prior).
//! * [`clock`]: CPU time per sub-stage.
//! * [`summary`]: quantiles, flags and resampled draws of one star.
//! * [`derived`]: radius, mass, luminosity, absolute G and predicted magnitudes.
//! * [`mcmc`]: the reference ensemble MCMC, also as an [`Engine`] for whole catalogues.
//! * [`chains`]: rank-normalised split-R-hat and bulk ESS of Markov chains.
//! * [`compare`]: per-star agreement of two posterior tables in reference widths.

pub mod chains;
pub mod clock;
pub mod compare;
pub mod completion;
pub mod conditional;
pub mod coords;
pub mod derived;
pub mod engine;
pub mod estimator;
pub mod intrinsic;
pub mod mcmc;
pub mod mixture;
pub mod modes;
pub mod proposal;
pub mod psis;
pub mod student_t;
pub mod summary;
pub mod target;

use crate::likelihood::StarObs;

/// Quantile levels reported per parameter (`_p05 _p16 _p50 _p84 _p95`).
pub const QUANTILES: [f64; 5] = [0.05, 0.16, 0.50, 0.84, 0.95];
/// Column suffixes matching [`QUANTILES`].
pub const QUANTILE_SUFFIXES: [&str; 5] = ["p05", "p16", "p50", "p84", "p95"];

/// Per-star bit flags (documented in `schemas/output.md`).
pub mod flags {
    /// No usable photometric band: no posterior was computed.
    pub const NO_USABLE_BANDS: u32 = 1 << 0;
    /// At least one magnitude was NaN/infinite and was ignored.
    pub const BAD_MAGNITUDE: u32 = 1 << 1;
    /// At least one magnitude error was NaN, zero or negative; that measurement was ignored.
    pub const BAD_ERROR: u32 = 1 << 2;
    /// An observation named a band the model does not know; it was ignored.
    pub const UNKNOWN_BAND: u32 = 1 << 3;
    /// Parallax or its error unusable (NaN, non-positive error); parallax ignored.
    pub const BAD_PARALLAX: u32 = 1 << 4;
    /// The source_id occurs more than once in the input (each row still gets its own output).
    pub const DUPLICATE_SOURCE_ID: u32 = 1 << 5;
    /// The effective sample size stayed below the target (`target_n_eff`) when the star's
    /// sample budget was spent.
    pub const LOW_NEFF: u32 = 1 << 6;
    /// Importance-sampling efficiency below the configured minimum.
    pub const LOW_EFFICIENCY: u32 = 1 << 7;
    /// chi^2 at the mode search's best fit has p < 1e-3 for measurements - 6 degrees of
    /// freedom: the model does not fit.
    pub const POOR_FIT: u32 = 1 << 8;
    /// No posterior: the star could not be processed (see flag_reason).
    pub const NOT_PROCESSED: u32 = 1 << 9;
    /// Every proposal sample had zero weight (outside prior support or likelihood underflow).
    pub const ALL_WEIGHTS_ZERO: u32 = 1 << 10;
    /// Only one photometric band: the posterior is mostly prior.
    pub const SINGLE_BAND: u32 = 1 << 11;
    /// The input row has a null source_id: no posterior (the row is still written).
    pub const NULL_SOURCE_ID: u32 = 1 << 12;
    /// A band was observed more than once for this star (long format); the first
    /// measurement was used, the others ignored.
    pub const DUPLICATE_BAND: u32 = 1 << 13;
    /// The Pareto k-hat of the importance weights exceeds 0.7: a few weights dominate and
    /// the estimates cannot be trusted, whatever the effective sample size says.
    pub const HIGH_PARETO_K: u32 = 1 << 14;
    /// Reference MCMC only: the chains have not converged (split-R-hat above 1.01 in some
    /// parameter).
    pub const NOT_CONVERGED: u32 = 1 << 15;
    /// The reddening prior is unusable (not finite, negative beyond its error, beyond the
    /// prior's range, or with a missing, non-positive or uninformative error): the star keeps
    /// the population A_V prior.
    pub const BAD_REDDENING_PRIOR: u32 = 1 << 16;
    /// A key of a joined table (`[[input.join]]`) matched several rows: the star uses none of
    /// that table's values (the reason names the table).
    pub const AMBIGUOUS_MATCH: u32 = 1 << 17;
    /// A quality mask dropped a band (2MASS ph_qual, AllWISE cc_flags, the Gaia BP/RP excess
    /// rule...): the reason names the band and the rule.
    pub const MASKED_BAND: u32 = 1 << 18;
}

/// k-hat above which [`flags::HIGH_PARETO_K`] is set (Vehtari et al. 2024).
pub const PARETO_K_THRESHOLD: f64 = 0.7;

/// POOR_FIT is set when the chi^2 survival probability at the best fit is below this.
pub const POOR_FIT_P: f64 = 1e-3;

/// Summary of one parameter's posterior.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSummary {
    /// Weighted quantiles at [`QUANTILES`].
    pub q: [f32; 5],
    /// Weighted mean.
    pub mean: f32,
    /// Weighted 2.5% and 97.5% quantiles (central 95% interval; used by evaluation).
    pub q95: [f32; 2],
}

impl ParamSummary {
    /// All-NaN summary (star not processed).
    pub const NAN: ParamSummary = ParamSummary {
        q: [f32::NAN; 5],
        mean: f32::NAN,
        q95: [f32::NAN; 2],
    };
}

/// Convergence diagnostics of a reference MCMC posterior, per parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChainDiagnostics {
    /// Rank-normalised split-R-hat.
    pub rhat: [f32; 6],
    /// Bulk effective sample size.
    pub ess: [f32; 6],
}

/// One star's output row.
#[derive(Clone, Debug, PartialEq)]
pub struct StarResult {
    /// Catalogue id.
    pub source_id: i64,
    /// Summaries in PARAM_NAMES order (teff logg mh av rv distance).
    pub params: [ParamSummary; 6],
    /// Photometric bands used.
    pub n_bands: u16,
    /// Whether a parallax was used.
    pub has_parallax: bool,
    /// Proposal samples drawn, every component counted (flow pilot included).
    pub n_samples: u32,
    /// Effective sample size of the importance weights.
    pub n_eff: f32,
    /// n_eff / n_samples.
    pub sample_efficiency: f32,
    /// log of the evidence estimate, the mean unnormalised importance weight.
    pub log_evidence: f32,
    /// Standard error of `log_evidence`, sqrt((N - n_eff) / (N n_eff)).
    pub log_evidence_se: f32,
    /// Pareto-smoothed importance sampling diagnostic k-hat of the weights.
    pub pareto_k: f32,
    /// Distinct posterior modes the mode search found (0: none, or flow-only sampling
    /// without a fit).
    pub n_modes: u8,
    /// chi^2 of the photometry and parallax at the best fit (NaN if none was found).
    pub best_fit_chi2: f32,
    /// Bit flags, see [`flags`].
    pub flags: u32,
    /// Human-readable reasons for the flags ("" when none).
    pub flag_reason: String,
    /// Resampled posterior draws (theta in PARAM_NAMES order), when requested.
    pub samples: Option<Vec<[f32; 6]>>,
    /// Chain diagnostics (reference MCMC only).
    pub chain: Option<ChainDiagnostics>,
    /// Derived quantities and predicted magnitudes (None without a posterior).
    pub derived: Option<derived::DerivedSummary>,
}

impl StarResult {
    /// A row for a star without a posterior.
    pub fn unprocessed(source_id: i64, flags: u32, reason: String) -> StarResult {
        StarResult {
            source_id,
            params: [ParamSummary::NAN; 6],
            n_bands: 0,
            has_parallax: false,
            n_samples: 0,
            n_eff: f32::NAN,
            sample_efficiency: f32::NAN,
            log_evidence: f32::NAN,
            log_evidence_se: f32::NAN,
            pareto_k: f32::NAN,
            n_modes: 0,
            best_fit_chi2: f32::NAN,
            flags: flags | self::flags::NOT_PROCESSED,
            flag_reason: reason,
            samples: None,
            chain: None,
            derived: None,
        }
    }

    /// The row of a star without any usable photometric band.
    pub fn no_usable_bands(source_id: i64) -> StarResult {
        StarResult::unprocessed(
            source_id,
            flags::NO_USABLE_BANDS,
            "no usable photometric band".into(),
        )
    }
}

/// The forward model's band names by band id (what [`Engine::band_names`] reports).
pub fn band_names(fm: &crate::physics::ForwardModel) -> Vec<String> {
    fm.bands().names().into_iter().map(String::from).collect()
}

/// Settings of the sampling step.
#[derive(Clone, Debug)]
pub struct InferSettings {
    /// Flow-only sampling (`refine = false`): flow samples per star. Adaptive sampling: the
    /// unit of the per-star budget (see `max_samples`).
    pub n_samples: usize,
    /// Resampled draws to keep per star (0 = none).
    pub keep_samples: usize,
    /// Run seed; each star's random stream is derived from (seed, source_id).
    pub seed: u64,
    /// Flag LOW_EFFICIENCY below this efficiency.
    pub min_efficiency: f32,
    /// Adaptive sampling: a flow pilot, a mode search and Student-t components at the
    /// modes with a defensive prior component, weighted as one deterministic mixture, in
    /// rounds until `target_n_eff` is reached. false: flow samples only (`n_samples` of
    /// them, weights against the flow's own density).
    pub refine: bool,
    /// Adaptive sampling: flow samples drawn first (they seed the mode search).
    pub pilot_samples: usize,
    /// Adaptive sampling: at most this many samples per star in all (pilot included).
    pub max_samples: usize,
    /// Effective sample size at which adaptive sampling stops; stars short of it are
    /// flagged LOW_NEFF.
    pub target_n_eff: f32,
    /// Share of every adaptive round drawn from the prior (the defensive component that
    /// keeps the weights' variance finite when the other components miss posterior mass).
    pub defensive_fraction: f64,
    /// Share of every adaptive round drawn from the flow. Above 0 the flow is a component
    /// of the mixture: its pilot samples are weighted with the rest and its density is
    /// evaluated at every sample. 0: the pilot only seeds the mode search.
    pub flow_share: f64,
    /// Adaptive sampling: distance and extinction from their closed-form conditional
    /// given the intrinsic parameters (`conditional`), the mixture's components over the
    /// intrinsic parameters only. false: Student-t components over all six.
    pub closed_form: bool,
    /// Band ids whose predicted magnitudes are summarised per star (`[output]
    /// predict_bands`; they need not be observed).
    pub predict_bands: Vec<usize>,
    /// The Gaia passbands of the extinction quantities (the run's `[input] gaia_release`).
    pub gaia_passbands: derived::GaiaPassbands,
}

impl Default for InferSettings {
    fn default() -> Self {
        InferSettings {
            n_samples: 256,
            keep_samples: 0,
            seed: 0,
            min_efficiency: 0.01,
            refine: true,
            pilot_samples: 32,
            max_samples: 8192,
            target_n_eff: 150.0,
            defensive_fraction: 0.05,
            flow_share: 0.0,
            closed_form: true,
            predict_bands: Vec::new(),
            gaia_passbands: derived::GaiaPassbands::Dr3,
        }
    }
}

/// Something that turns observations into posterior summaries.
pub trait Engine: Send + Sync {
    /// Identifier of the model behind the engine (written into output metadata).
    fn model_id(&self) -> String;
    /// Band names known to the engine, by band id.
    fn band_names(&self) -> Vec<String>;
    /// How the engine turns a star's dust-map value into its A_V prior (the ingest resolves
    /// map names and checks values against it).
    fn reddening(&self) -> &crate::prior::reddening::ReddeningModel;
    /// One result per star, in order. Stars must have validated measurements (finite
    /// magnitudes, positive errors); stars without any measurement get an unprocessed row.
    fn infer(&self, stars: &[StarObs], settings: &InferSettings) -> Vec<StarResult>;
    /// CPU seconds spent so far per inference sub-stage (encode, flow sampling, likelihood,
    /// summaries), summed over threads; empty if the engine does not measure them.
    fn stage_times(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// Work counters so far, (name, value) (e.g. the mode search's forward-model
    /// evaluations per star); empty if the engine does not count.
    fn counters(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// Whether results carry [`ChainDiagnostics`] (the output then has R-hat and ESS
    /// columns).
    fn chain_diagnostics(&self) -> bool {
        false
    }
}

/// A cool dwarf at 900 pc behind 0.6 mag of extinction: the truth of the layer's tests.
#[cfg(test)]
pub(crate) const SUN_LIKE: crate::physics::Theta = crate::physics::Theta {
    teff: 5200.0,
    logg: 4.5,
    mh: -0.2,
    av: 0.6,
    rv: 3.1,
    distance: 900.0,
};

/// Noise-free observations of `truth` in bands `names`, each with error `err`, and a
/// parallax with error `plx_err` if given (source id 7): the stars of the layer's tests.
#[cfg(test)]
pub(crate) fn noise_free_star(
    fm: &crate::physics::ForwardModel,
    truth: &crate::physics::Theta,
    names: &[&str],
    err: f32,
    plx_err: Option<f32>,
) -> StarObs {
    let bands: Vec<usize> = names.iter().map(|b| fm.bands().id(b).unwrap()).collect();
    let mut m = vec![0f32; bands.len()];
    fm.magnitudes(truth, &bands, &mut m).unwrap();
    let phot = bands
        .iter()
        .zip(&m)
        .map(|(&b, &mag)| crate::likelihood::Measurement {
            band: b as u16,
            mag,
            err,
        })
        .collect();
    StarObs {
        source_id: 7,
        phot,
        parallax: plx_err.map(|e| ((1000.0 / truth.distance) as f32, e)),
        reddening: None,
    }
}
