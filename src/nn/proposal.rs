//! The trained neural posterior as an importance-sampling proposal: encode each star once
//! (batched over the stars of a chunk), compute the context's contribution to every MADE
//! layer once per star, then draw samples and their exact log densities with the fast
//! sampler (or candle's reference sampler on a GPU).

use super::fast::{FastMaf, Workspace};
use super::fast_encoder::FastEncoder;
use super::model::{ModelCard, NeuralPosterior};
use super::param::ParamTransform;
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
    /// Sample with candle on the model's device (a GPU), many stars per call, instead of
    /// the plain-Rust CPU sampler.
    pub on_device: bool,
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
            on_device: !device.is_cpu(),
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
        Self::embedded_on(&Device::Cpu)
    }

    /// The embedded default model, on a device.
    pub fn embedded_on(device: &Device) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(DEFAULT_CARD).context("embedded model card")?;
        Self::from_bytes(DEFAULT_WEIGHTS, card, device)
    }

    /// Batched sampling with candle on the model's device: all stars of the chunk are
    /// encoded in one call and all their samples inverted through the flow in one call.
    /// The base noise is drawn on the CPU from each star's own stream, exactly as in the
    /// CPU path, so both paths give the same samples up to floating-point rounding.
    fn sample_on_device(
        &self,
        stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        thetas: &mut Vec<Theta>,
        log_q: &mut Vec<f64>,
    ) -> Result<SampleTimes> {
        let t0 = std::time::Instant::now();
        let dev = &self.model.device;
        let tb = TokenBatch::build(stars, self.card.config.encoder.n_bands);
        let ctx = self.model.context(&tb)?;
        let (b, c) = ctx.dims2()?;
        let ctx = ctx
            .unsqueeze(1)?
            .broadcast_as((b, n, c))?
            .reshape((b * n, c))?
            .contiguous()?;
        let mut z = vec![0f32; b * n * 6];
        for (s, &seed) in seeds.iter().enumerate() {
            base_noise(seed, n, |t, i, v| z[(s * n + t) * 6 + i] = v);
        }
        let zt = Tensor::from_vec(z, (b * n, 6), dev)?;
        dev.synchronize()?;
        let encode_s = t0.elapsed().as_secs_f64();
        let (u, lq) = self.model.flow.sample(&zt, &ctx)?;
        let u = u.flatten_all()?.to_vec1::<f32>()?;
        let lq = lq.to_vec1::<f32>()?;
        let tr = &self.card.config.transform;
        for k in 0..b * n {
            let uu: [f64; 6] = std::array::from_fn(|i| u[k * 6 + i] as f64);
            push_sample(tr, &uu, lq[k] as f64, thetas, log_q);
        }
        Ok(SampleTimes {
            encode_s,
            sample_s: t0.elapsed().as_secs_f64() - encode_s,
        })
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

/// Base noise of one star: `n` standard-normal 6-vectors drawn sample-major from the star's
/// own stream, so that every sampling path (CPU, device) sees the same draws; each value
/// is handed to `put(sample, dimension, value)`.
fn base_noise(seed: u64, n: usize, mut put: impl FnMut(usize, usize, f32)) {
    let mut rng = Rng::new(seed);
    for t in 0..n {
        for i in 0..6 {
            put(t, i, rng.normal() as f32);
        }
    }
}

/// Append a sample given in flow coordinates u (log density `log_q_u` in u) as theta with
/// its log density in physical units.
#[inline]
fn push_sample(
    tr: &ParamTransform,
    uu: &[f64; 6],
    log_q_u: f64,
    thetas: &mut Vec<Theta>,
    log_q: &mut Vec<f64>,
) {
    thetas.push(tr.from_u(uu));
    log_q.push(log_q_u + tr.log_jacobian_u(uu));
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
        if self.on_device {
            match self.sample_on_device(stars, n, seeds, thetas, log_q) {
                Ok(t) => return t,
                // a device failure mid-run (e.g. out of memory) must not lose stars: the
                // CPU sampler gives the same samples up to rounding
                Err(e) => {
                    warn_device_failure(&e);
                    thetas.clear();
                    log_q.clear();
                }
            }
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
                // written dimension-major for the fast sampler
                base_noise(seeds[s], np, |t, i, v| z[i * np + t] = v);
                c1.clear();
                c2.clear();
                for (a, b) in star_terms {
                    c1.push(a);
                    c2.push(b);
                }
                self.fast.sample_star(&z, np, &c1, &c2, ws, &mut u, &mut lq);
                for t in 0..n {
                    let uu: [f64; 6] = std::array::from_fn(|i| u[i * np + t] as f64);
                    push_sample(tr, &uu, lq[t], thetas, log_q);
                }
            }
        });
        SampleTimes {
            encode_s,
            sample_s: t0.elapsed().as_secs_f64() - encode_s,
        }
    }
}

/// Report a failure of the device sampler once per process (then the CPU sampler is used
/// for the chunk).
pub fn warn_device_failure(e: &anyhow::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("sedflow: warning: device sampling failed ({e:#}); falling back to the CPU sampler for the affected chunks");
    });
}

/// Parse a device name: `cpu`, `cuda` (GPU 0) or `cuda:N`. A binary built without the
/// `cuda` feature says so instead of silently using the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let ordinal = match name.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        s => match s.strip_prefix("cuda:") {
            Some(k) => k
                .parse::<usize>()
                .with_context(|| format!("bad GPU ordinal in device {name:?}"))?,
            None => anyhow::bail!("unknown device {name:?}: expected cpu, cuda or cuda:N"),
        },
    };
    if !cfg!(feature = "cuda") {
        anyhow::bail!(
            "device {name:?} needs a GPU build: cargo build --release --features cuda (this binary was built for the CPU only)"
        );
    }
    Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::StarObs;

    #[test]
    fn device_names_parse_and_cpu_builds_refuse_cuda() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    /// The batched candle path (used on GPUs) run on the CPU device gives the same samples
    /// and log densities as the fast CPU sampler, star by star.
    #[test]
    fn batched_device_path_matches_fast_sampler() {
        let mut p = FlowProposal::embedded().unwrap();
        let fm = crate::physics::ForwardModel::embedded();
        let stars: Vec<StarObs> = crate::cli::simulate::simulate_catalogue(
            fm,
            5,
            3,
            crate::cli::simulate::GaiaRelease::Dr3,
        )
        .unwrap()
        .into_iter()
        .map(|s| s.obs)
        .collect();
        let seeds: Vec<u64> = (0..stars.len() as u64).map(|k| 100 + k).collect();
        let n = 32;
        let (mut t_fast, mut q_fast) = (Vec::new(), Vec::new());
        p.sample(&stars, n, &seeds, &mut t_fast, &mut q_fast);
        p.on_device = true;
        let (mut t_dev, mut q_dev) = (Vec::new(), Vec::new());
        p.sample(&stars, n, &seeds, &mut t_dev, &mut q_dev);
        assert_eq!(t_fast.len(), stars.len() * n);
        assert_eq!(t_dev.len(), t_fast.len());
        for k in 0..t_fast.len() {
            let (a, b) = (&t_fast[k], &t_dev[k]);
            assert!(
                (a.teff - b.teff).abs() < 1e-3 * a.teff,
                "{k}: {a:?} vs {b:?}"
            );
            assert!((a.logg - b.logg).abs() < 2e-3, "{k}: {a:?} vs {b:?}");
            assert!((a.distance - b.distance).abs() < 2e-3 * a.distance, "{k}");
            assert!(
                (q_fast[k] - q_dev[k]).abs() < 2e-2,
                "{k}: {} vs {}",
                q_fast[k],
                q_dev[k]
            );
        }
    }
}
