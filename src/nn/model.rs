//! The neural posterior q(theta | observations): set encoder + conditional MAF + the
//! parameter transform, its configuration, model card, deterministic initialisation,
//! and loading from safetensors (file or embedded bytes).

use super::encoder::{EncoderConfig, SetEncoder, TokenTensors};
use super::flow::{FlowConfig, Maf};
use super::tokens::TokenBatch;
use crate::likelihood::NoiseModel;
use crate::posterior::coords::ParamTransform;
use crate::prior::PriorConfig;
use crate::simulate::SimulatorConfig;
use crate::util::rng::Rng;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// What the flow models: all of theta, or only the intrinsic coordinates y (log10 Teff,
/// log g, [M/H], R_V), whose extinction and distance the posterior layer completes from
/// their closed-form conditional (issue 24).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FlowTarget {
    /// theta in six dimensions (the models before issue 24).
    #[default]
    Full,
    /// y in four dimensions.
    Intrinsic,
}

impl FlowTarget {
    /// The flow's dimension.
    pub(crate) fn dim(self) -> usize {
        match self {
            FlowTarget::Full => 6,
            FlowTarget::Intrinsic => 4,
        }
    }
}

/// Architecture and coordinates of a neural posterior.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ModelConfig {
    /// Set encoder.
    pub(crate) encoder: EncoderConfig,
    /// Flow.
    pub(crate) flow: FlowConfig,
    /// theta <-> u standardisation.
    pub(crate) transform: ParamTransform,
    /// Band names by id (must match the forward model's registry).
    pub(crate) bands: Vec<String>,
    /// What the flow models (cards written before the switch are full models).
    #[serde(default)]
    pub(crate) target: FlowTarget,
}

/// Training record written into the card.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct TrainingRecord {
    /// Command line that produced the model.
    pub(crate) command: String,
    /// Seed.
    pub(crate) seed: u64,
    /// Optimiser steps.
    pub(crate) steps: usize,
    /// Examples per step.
    pub(crate) batch: usize,
    /// Simulated examples seen.
    pub(crate) examples: usize,
    /// Wall time \[s\].
    pub(crate) wall_seconds: f64,
    /// Examples per second (simulation + training).
    pub(crate) examples_per_second: f64,
    /// Threads used.
    pub(crate) threads: usize,
    /// Final validation loss (mean -log q(theta) in physical units, nats).
    pub(crate) val_loss: f64,
    /// (step, train loss, val loss) history.
    pub(crate) history: Vec<(usize, f64, f64)>,
    /// Peak learning rate.
    pub(crate) lr: f64,
    /// Weight decay.
    pub(crate) weight_decay: f64,
    /// The machine of the run that wrote the card (a resumed run's earlier parts may have
    /// run elsewhere; cards before this field have it empty).
    #[serde(default)]
    pub(crate) hardware: String,
}

/// The model card (JSON beside the weights).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ModelCard {
    /// Model id (written into output metadata).
    pub(crate) id: String,
    /// Creation date (UTC, YYYY-MM-DD).
    pub(crate) created: String,
    /// Architecture.
    pub(crate) config: ModelConfig,
    /// Prior used in training and importance sampling.
    pub(crate) prior: PriorConfig,
    /// Simulator settings.
    pub(crate) simulator: SimulatorConfig,
    /// Model-systematics floors (likelihood).
    pub(crate) noise: NoiseModel,
    /// Forward model (tables + calibration) id.
    pub(crate) forward_model: String,
    /// Training record.
    pub(crate) training: TrainingRecord,
    /// Free-form notes.
    #[serde(default)]
    pub(crate) notes: String,
}

/// Encoder + flow on a device.
pub(crate) struct NeuralPosterior {
    /// Configuration.
    pub(crate) cfg: ModelConfig,
    /// Set encoder.
    pub(crate) encoder: SetEncoder,
    /// Flow.
    pub(crate) flow: Maf,
    /// Device.
    pub(crate) device: Device,
}

impl NeuralPosterior {
    /// Build from a VarBuilder (new variables in a VarMap, or loaded weights).
    pub(crate) fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        anyhow::ensure!(
            cfg.flow.dim == cfg.target.dim(),
            "flow dimension {} does not fit target {:?}",
            cfg.flow.dim,
            cfg.target
        );
        let device = vb.device().clone();
        Ok(NeuralPosterior {
            cfg: cfg.clone(),
            encoder: SetEncoder::new(&cfg.encoder, vb.pp("enc"))?,
            flow: Maf::new(&cfg.flow, vb.pp("flow"))?,
            device,
        })
    }

    /// Load weights from safetensors bytes.
    pub(crate) fn from_bytes(cfg: &ModelConfig, bytes: &[u8], device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_slice_safetensors(bytes, DType::F32, device)?;
        NeuralPosterior::new(cfg, vb).context("weights do not match the model card's architecture")
    }

    /// Context vectors [b, ctx] for a token batch.
    ///
    /// Stars are grouped by token count and each group is padded only to its own longest
    /// set (typical batches mix 3 and 25 tokens; padding everything to the longest doubled
    /// the encoder's cost), then the contexts are put back in input order.
    pub(crate) fn context(&self, tb: &TokenBatch) -> Result<Tensor> {
        const GROUPS: usize = 4;
        const MIN_GROUP: usize = 64;
        let b = tb.b;
        if b < 2 * MIN_GROUP {
            let tt = TokenTensors::new(tb, &self.device)?;
            return Ok(self.encoder.forward(&tt)?);
        }
        let count = |i: usize| {
            tb.mask[i * tb.t..(i + 1) * tb.t]
                .iter()
                .filter(|&&m| m > 0.0)
                .count()
        };
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&i| (count(i), i));
        let size = b.div_ceil(GROUPS).max(MIN_GROUP);
        let mut parts = Vec::new();
        for chunk in order.chunks(size) {
            let t = chunk.iter().map(|&i| count(i)).max().unwrap_or(1).max(1);
            let sub = tb.select_to(chunk, t);
            let tt = TokenTensors::new(&sub, &self.device)?;
            parts.push(self.encoder.forward(&tt)?);
        }
        let sorted = Tensor::cat(&parts, 0)?;
        let mut inverse = vec![0u32; b];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i] = pos as u32;
        }
        let idx = Tensor::from_vec(inverse, b, &self.device)?;
        Ok(sorted.index_select(&idx, 0)?)
    }

    /// log q(u | obs) \[b\] for targets u (row-major \[b\]\[dim\]).
    pub(crate) fn log_prob_u(&self, tb: &TokenBatch, u: &[f32]) -> Result<Tensor> {
        let ctx = self.context(tb)?;
        let ut = Tensor::from_vec(u.to_vec(), (tb.b, self.cfg.flow.dim), &self.device)?;
        Ok(self.flow.log_prob(&ut, &ctx)?)
    }
}

/// Overwrite every variable with values from the project's seeded RNG (candle's CPU
/// initialisers draw from an unseeded thread RNG), in sorted-name order.
pub(crate) fn init_deterministic(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::new(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let leaf = name.rsplit('.').next().unwrap_or("");
        let vals: Vec<f32> = if dims.len() == 1 {
            vec![if leaf == "g" { 1.0 } else { 0.0 }; n]
        } else if leaf == "emb" || leaf == "pool_seed" {
            (0..n).map(|_| 0.5 * rng.normal() as f32).collect()
        } else if leaf == "w3" || leaf == "w4" || leaf == "w5" {
            (0..n)
                .map(|_| rng.uniform_range(-1e-3, 1e-3) as f32)
                .collect()
        } else {
            let fan_in = dims[1] as f64;
            let eff = if leaf == "w1" || leaf == "w2" {
                (fan_in / 2.0).max(1.0)
            } else {
                fan_in
            };
            let std = (2.0 / eff).sqrt();
            (0..n).map(|_| (std * rng.normal()) as f32).collect()
        };
        let t = Tensor::from_vec(vals, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Today's date (UTC) as YYYY-MM-DD.
pub(crate) fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}
