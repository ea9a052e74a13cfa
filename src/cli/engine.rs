//! Wiring of the posterior engine: the neural posterior (`nn`) as the proposal of the
//! posterior layer, over the embedded calibrated forward model, the physical prior and the
//! calibrated noise model.

use crate::likelihood::NoiseModel;
use crate::nn::proposal::{parse_device, FlowProposal};
use crate::physics::ForwardModel;
use crate::posterior::engine::PosteriorEngine;
use crate::prior::reddening::{ReddeningConfig, ReddeningModel};
use crate::prior::{Prior, PriorConfig};
use anyhow::Result;

/// The engine over the neural posterior in `model_dir` (weights + card), or over the
/// embedded default model, on the CPU.
pub(crate) fn flow_engine(
    model_dir: Option<&std::path::Path>,
) -> Result<PosteriorEngine<FlowProposal>> {
    flow_engine_on(model_dir, "cpu")
}

/// [`flow_engine`] with the proposal on a device (`cpu`, `cuda`, `cuda:N`). On a GPU the
/// encoder and the flow's pilot samples run there, batched over whole chunks of stars; the
/// likelihood, the mode search, the mixture and the summaries stay on the CPU threads.
pub(crate) fn flow_engine_on(
    model_dir: Option<&std::path::Path>,
    device: &str,
) -> Result<PosteriorEngine<FlowProposal>> {
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
    let prior = PriorConfig::default();
    Ok(PosteriorEngine {
        reddening: ReddeningModel::for_model(&ReddeningConfig::default(), &fm, prior.av_max),
        prior: Prior::new(&fm, prior),
        noise: NoiseModel::default_for(&fm),
        fm,
        proposal,
        chunk,
        clock: Default::default(),
    })
}

/// Refuse settings the engine's model cannot honour: an intrinsic flow (issue 24) is not
/// yet a mixture component, so `flow_share` > 0 would silently mean 0.
pub(crate) fn check_settings(
    engine: &PosteriorEngine<FlowProposal>,
    flow_share: f64,
) -> Result<()> {
    use crate::posterior::proposal::Proposal;
    if flow_share > 0.0 && engine.proposal.intrinsic() {
        anyhow::bail!(
            "inference.flow_share = {flow_share}: model {} is an intrinsic flow, which is not \
             yet a mixture component; set flow_share = 0 (its pilot still seeds the mode search)",
            engine.proposal.id()
        );
    }
    Ok(())
}
