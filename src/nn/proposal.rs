//! The trained neural posterior as an importance-sampling proposal: encode each star once
//! (batched over the stars of a chunk), compute the context's contribution to every MADE
//! layer once per star, then draw samples and their exact log densities with the fast
//! sampler (or candle's reference sampler on a GPU).

use super::fast::{FastMaf, Workspace};
use super::fast_encoder::FastEncoder;
use super::model::{ModelCard, NeuralPosterior};
use super::tokens::TokenBatch;
use crate::infer::importance::{Proposal, SampleTimes};
use crate::likelihood::StarObs;
use crate::physics::Theta;
use crate::util::rng::Rng;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::cell::RefCell;

/// Weights of the default model, embedded in the binary.
pub static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../models/default/weights.safetensors");
/// Card of the default model.
pub static DEFAULT_CARD: &str = include_str!("../../models/default/card.json");

/// Neural posterior proposal.
pub struct FlowProposal {
    /// The network.
    pub model: NeuralPosterior,
    /// Fast CPU sampler built from the same weights.
    pub fast: FastMaf,
    /// Plain-Rust encoder built from the same weights (one star at a time).
    pub encoder: FastEncoder,
    /// Model card.
    pub card: ModelCard,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

impl FlowProposal {
    /// Load from weights bytes and a card.
    pub fn from_bytes(weights: &[u8], card: ModelCard, device: &Device) -> Result<Self> {
        let model = NeuralPosterior::from_bytes(&card.config, weights, device)?;
        let fast = FastMaf::from_maf(&model.flow)?;
        let encoder = FastEncoder::from_encoder(&model.encoder)?;
        Ok(FlowProposal {
            model,
            fast,
            encoder,
            card,
        })
    }

    /// Load `weights.safetensors` and `card.json` from a directory.
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let w = std::fs::read(dir.join("weights.safetensors"))
            .with_context(|| format!("reading {}/weights.safetensors", dir.display()))?;
        let c = std::fs::read_to_string(dir.join("card.json"))
            .with_context(|| format!("reading {}/card.json", dir.display()))?;
        let card: ModelCard = serde_json::from_str(&c)
            .with_context(|| format!("parsing {}/card.json", dir.display()))?;
        Self::from_bytes(&w, card, device)
    }

    /// The embedded default model.
    pub fn embedded() -> Result<Self> {
        let card: ModelCard = serde_json::from_str(DEFAULT_CARD).context("embedded model card")?;
        Self::from_bytes(DEFAULT_WEIGHTS, card, &Device::Cpu)
    }

    /// Per-star sorted context terms for every block: [star][block] -> (c1, c2). Each
    /// star is encoded on its own, so its samples never depend on its batch.
    fn context_terms(&self, stars: &[StarObs]) -> Vec<Vec<(Vec<f32>, Vec<f32>)>> {
        stars
            .iter()
            .map(|s| {
                let ctx = self.encoder.context(s);
                (0..self.fast.blocks.len())
                    .map(|k| {
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        self.fast.context_terms(k, &ctx, &mut a, &mut b);
                        (a, b)
                    })
                    .collect()
            })
            .collect()
    }

    /// Draw for one star from base noise (candle reference path; used on GPUs and in
    /// tests). Returns u row-major [n][6] and log q(u).
    pub fn sample_reference(
        &self,
        star: &StarObs,
        z: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let tb = TokenBatch::build(std::slice::from_ref(star), self.card.config.encoder.n_bands);
        let ctx = self.model.context(&tb)?;
        let c = ctx.dim(1)?;
        let ctx = ctx.broadcast_as((n, c))?.contiguous()?;
        let zt = Tensor::from_vec(z.to_vec(), (n, 6), &self.model.device)?;
        let (u, lq) = self.model.flow.sample(&zt, &ctx)?;
        Ok((u.flatten_all()?.to_vec1::<f32>()?, lq.to_vec1::<f32>()?))
    }
}

/// Round a sample count up to the fast sampler's tile.
pub fn padded(n: usize) -> usize {
    n.div_ceil(16) * 16
}

impl Proposal for FlowProposal {
    fn id(&self) -> String {
        self.card.id.clone()
    }

    fn sample(
        &self,
        stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        thetas: &mut Vec<Theta>,
        log_q: &mut Vec<f64>,
    ) -> SampleTimes {
        thetas.clear();
        log_q.clear();
        if stars.is_empty() {
            return SampleTimes::default();
        }
        let t0 = std::time::Instant::now();
        let terms = self.context_terms(stars);
        let encode_s = t0.elapsed().as_secs_f64();
        let np = padded(n);
        let tr = &self.card.config.transform;
        WORKSPACE.with(|ws| {
            let ws = &mut ws.borrow_mut();
            let mut z = vec![0f32; 6 * np];
            let mut u = vec![0f32; 6 * np];
            let mut lq = vec![0f64; np];
            let (mut c1, mut c2): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (Vec::new(), Vec::new());
            for (s, star_terms) in terms.into_iter().enumerate() {
                let mut rng = Rng::new(seeds[s]);
                // base noise, sample-major draws written dimension-major
                for t in 0..np {
                    for i in 0..6 {
                        z[i * np + t] = rng.normal() as f32;
                    }
                }
                c1.clear();
                c2.clear();
                for (a, b) in star_terms {
                    c1.push(a);
                    c2.push(b);
                }
                self.fast.sample_star(&z, np, &c1, &c2, ws, &mut u, &mut lq);
                for t in 0..n {
                    let uu: [f64; 6] = std::array::from_fn(|i| u[i * np + t] as f64);
                    thetas.push(tr.from_u(&uu));
                    log_q.push(lq[t] + tr.log_jacobian_u(&uu));
                }
            }
        });
        SampleTimes {
            encode_s,
            sample_s: t0.elapsed().as_secs_f64() - encode_s,
        }
    }
}
