//! Inference: per-star posterior samples from a proposal (the neural flow, or the prior),
//! importance weights against the true likelihood, and per-star summaries.
//!
//! Step 3-4 of the data path (infer -> summarise). The pipeline hands batches of
//! [`StarObs`] to an [`Engine`] and gets one [`StarResult`] back per star, in order.

pub mod importance;
pub mod mcmc;
pub mod refine;

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
    /// Fewer effective importance samples than the configured minimum.
    pub const LOW_NEFF: u32 = 1 << 6;
    /// Importance-sampling efficiency below the configured minimum.
    pub const LOW_EFFICIENCY: u32 = 1 << 7;
    /// The best-fitting sample leaves chi^2 with p < 1e-3: the model does not fit.
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
}

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
    /// Proposal samples drawn.
    pub n_samples: u32,
    /// Effective sample size of the importance weights.
    pub n_eff: f32,
    /// n_eff / n_samples.
    pub sample_efficiency: f32,
    /// log of the evidence estimate, mean of the importance weights.
    pub log_evidence: f32,
    /// Bit flags, see [`flags`].
    pub flags: u32,
    /// Human-readable reasons for the flags ("" when none).
    pub flag_reason: String,
    /// Resampled posterior draws (theta in PARAM_NAMES order), when requested.
    pub samples: Option<Vec<[f32; 6]>>,
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
            flags: flags | self::flags::NOT_PROCESSED,
            flag_reason: reason,
            samples: None,
        }
    }
}

/// Settings of the sampling step.
#[derive(Clone, Debug)]
pub struct InferSettings {
    /// Proposal samples per star.
    pub n_samples: usize,
    /// Resampled draws to keep per star (0 = none).
    pub keep_samples: usize,
    /// Run seed; each star's random stream is derived from (seed, source_id).
    pub seed: u64,
    /// Flag LOW_NEFF below this many effective samples.
    pub min_n_eff: f32,
    /// Flag LOW_EFFICIENCY below this efficiency.
    pub min_efficiency: f32,
    /// Draw half of the samples from a Student-t fitted to the first half's weighted
    /// samples (adaptive refinement, `infer::refine`).
    pub refine: bool,
    /// With refinement: keep adding refinement rounds while the effective sample size is
    /// below `target_n_eff`, up to this many samples in all (<= n_samples: never).
    pub max_samples: usize,
    /// Effective sample size that stops the extra rounds.
    pub target_n_eff: f32,
}

impl Default for InferSettings {
    fn default() -> Self {
        InferSettings {
            n_samples: 256,
            keep_samples: 0,
            seed: 0,
            min_n_eff: 10.0,
            min_efficiency: 0.01,
            refine: true,
            max_samples: 1024,
            target_n_eff: 20.0,
        }
    }
}

/// Something that turns observations into posterior summaries.
pub trait Engine: Send + Sync {
    /// Identifier of the model behind the engine (written into output metadata).
    fn model_id(&self) -> String;
    /// Band names known to the engine, by band id.
    fn band_names(&self) -> Vec<String>;
    /// One result per star, in order. Stars must have validated measurements (finite
    /// magnitudes, positive errors); stars without any measurement get an unprocessed row.
    fn infer(&self, stars: &[StarObs], settings: &InferSettings) -> Vec<StarResult>;
    /// CPU seconds spent so far per inference sub-stage (encode, flow sampling, likelihood,
    /// summaries), summed over threads; empty if the engine does not measure them.
    fn stage_times(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// The importance-sampling engine over the neural posterior in `model_dir` (weights +
/// card), or over the embedded default model; likelihood and prior are the calibrated
/// embedded forward model and the physical prior.
pub fn flow_engine(
    model_dir: Option<&std::path::Path>,
) -> anyhow::Result<importance::ImportanceEngine<crate::nn::proposal::FlowProposal>> {
    flow_engine_on(model_dir, "cpu")
}

/// [`flow_engine`] with the proposal on a device (`cpu`, `cuda`, `cuda:N`). On a GPU the
/// encoder and the flow run there, batched over whole chunks of stars; the likelihood, the
/// refinement and the summaries stay on the CPU threads.
pub fn flow_engine_on(
    model_dir: Option<&std::path::Path>,
    device: &str,
) -> anyhow::Result<importance::ImportanceEngine<crate::nn::proposal::FlowProposal>> {
    use crate::likelihood::NoiseModel;
    use crate::nn::proposal::{parse_device, FlowProposal};
    use crate::physics::ForwardModel;
    use crate::prior::{Prior, PriorConfig};
    let dev = parse_device(device)?;
    let proposal = match model_dir {
        Some(dir) => FlowProposal::load_dir(dir, &dev)?,
        None => FlowProposal::embedded_on(&dev)?,
    };
    // GPUs want many samples per call; on the CPU small chunks keep the caches warm
    let chunk = if dev.is_cpu() { 64 } else { 1024 };
    let fm = ForwardModel::embedded().clone();
    let bands: Vec<&str> = fm.bands().names();
    if proposal.card.config.bands != bands {
        anyhow::bail!(
            "the model's bands differ from the forward model's registry: retrain the model"
        );
    }
    Ok(importance::ImportanceEngine {
        prior: Prior::new(&fm, PriorConfig::default()),
        noise: NoiseModel::default_for(&fm),
        fm,
        proposal,
        chunk,
        clock: Default::default(),
    })
}
