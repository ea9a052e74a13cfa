//! The trained neural posterior as a proposal of the posterior layer
//! ([`crate::posterior::proposal::Proposal`]): encode each star once, compute the context's
//! contribution to every MADE layer once per star, then draw samples with their exact log
//! densities with the fast sampler (or candle's reference sampler on a GPU), and evaluate
//! the log density at any points with the fast density pass.

use super::fast::{FastMaf, Workspace};
use super::fast_encoder::FastEncoder;
use super::model::FlowTarget;
use super::model::{ModelCard, NeuralPosterior};
use super::tokens::TokenBatch;
use crate::likelihood::StarObs;
use crate::physics::Theta;
use crate::posterior::conditional::NY;
use crate::posterior::coords::ParamTransform;
use crate::posterior::proposal::Proposal;
use crate::util::rng::Rng;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::cell::RefCell;

/// Weights of the default model, embedded in the binary.
pub(crate) static DEFAULT_WEIGHTS: &[u8] =
    include_bytes!("../../models/default/weights.safetensors");
/// Card of the default model.
pub(crate) static DEFAULT_CARD: &str = include_str!("../../models/default/card.json");

/// Neural posterior proposal.
pub(crate) struct FlowProposal {
    /// The network.
    pub(crate) model: NeuralPosterior,
    /// Fast CPU sampler built from the same weights.
    pub(crate) fast: FastMaf,
    /// Plain-Rust encoder built from the same weights (one star at a time).
    pub(crate) encoder: FastEncoder,
    /// Model card.
    pub(crate) card: ModelCard,
    /// Sample with candle on the model's device (a GPU), many stars per call, instead of
    /// the plain-Rust CPU sampler.
    pub(crate) on_device: bool,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

impl FlowProposal {
    /// Load from weights bytes and a card.
    pub(crate) fn from_bytes(weights: &[u8], card: ModelCard, device: &Device) -> Result<Self> {
        if card.config.target == FlowTarget::Intrinsic && !device.is_cpu() {
            anyhow::bail!(
                "model {} is an intrinsic flow, which samples on the CPU only: use device = \"cpu\"",
                card.id
            );
        }
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
    pub(crate) fn load_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let w = std::fs::read(dir.join("weights.safetensors"))
            .with_context(|| format!("reading {}/weights.safetensors", dir.display()))?;
        let c = std::fs::read_to_string(dir.join("card.json"))
            .with_context(|| format!("reading {}/card.json", dir.display()))?;
        let card: ModelCard = serde_json::from_str(&c)
            .with_context(|| format!("parsing {}/card.json", dir.display()))?;
        Self::from_bytes(&w, card, device)
    }

    /// The embedded default model, on the CPU (tests).
    #[cfg(test)]
    pub(crate) fn embedded() -> Result<Self> {
        Self::embedded_on(&Device::Cpu)
    }

    /// The embedded default model, on a device.
    pub(crate) fn embedded_on(device: &Device) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(DEFAULT_CARD).context("embedded model card")?;
        Self::from_bytes(DEFAULT_WEIGHTS, card, device)
    }

    /// `n` draws per star with the fast CPU sampler, from each star's own base noise;
    /// `emit(u, np, t, log_q_u)` gets draw t of a star (u dimension-major, `np` per
    /// dimension), stars in order.
    fn draw_fast(
        &self,
        cond: &[FlowStar],
        n: usize,
        seeds: &[u64],
        mut emit: impl FnMut(&[f32], usize, usize, f64),
    ) {
        let (d, np) = (self.fast.dim, padded(n));
        WORKSPACE.with(|ws| {
            let ws = &mut ws.borrow_mut();
            let (mut z, mut u, mut lq) = (vec![0f32; d * np], vec![0f32; d * np], vec![0f64; np]);
            for (s, c) in cond.iter().enumerate() {
                base_noise(seeds[s], np, d, |t, i, v| z[i * np + t] = v);
                let terms = c.terms(self);
                self.fast
                    .sample_star(&z, np, &terms.c1, &terms.c2, ws, &mut u, &mut lq);
                for (t, &l) in lq.iter().enumerate().take(n) {
                    emit(&u, np, t, l);
                }
            }
        });
    }

    /// The fast density pass at `n` points that `fill(u, np)` writes dimension-major;
    /// `emit(t, log_q_u)` gets point t's log density in u.
    fn density_fast(
        &self,
        cond: &FlowStar,
        n: usize,
        fill: impl FnOnce(&mut [f32], usize),
        mut emit: impl FnMut(usize, f64),
    ) {
        let (d, np) = (self.fast.dim, padded(n));
        let terms = cond.terms(self);
        WORKSPACE.with(|ws| {
            let ws = &mut ws.borrow_mut();
            let (mut u, mut lq) = (vec![0f32; d * np], vec![0f64; np]);
            fill(&mut u, np);
            self.fast
                .log_prob_star(&u, np, &terms.c1, &terms.c2, ws, &mut lq);
            for (t, &l) in lq.iter().enumerate().take(n) {
                emit(t, l);
            }
        });
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
    ) -> Result<()> {
        let dev = &self.model.device;
        let enc = &self.card.config.encoder;
        let tb = TokenBatch::build_with(stars, enc.n_bands, enc.reddening_token);
        let ctx = self.model.context(&tb)?;
        let (b, c) = ctx.dims2()?;
        let ctx = ctx
            .unsqueeze(1)?
            .broadcast_as((b, n, c))?
            .reshape((b * n, c))?
            .contiguous()?;
        let mut z = vec![0f32; b * n * 6];
        for (s, &seed) in seeds.iter().enumerate() {
            base_noise(seed, n, 6, |t, i, v| z[(s * n + t) * 6 + i] = v);
        }
        let zt = Tensor::from_vec(z, (b * n, 6), dev)?;
        let (u, lq) = self.model.flow.sample(&zt, &ctx)?;
        let u = u.flatten_all()?.to_vec1::<f32>()?;
        let lq = lq.to_vec1::<f32>()?;
        let tr = &self.card.config.transform;
        for k in 0..b * n {
            let uu: [f64; 6] = std::array::from_fn(|i| u[k * 6 + i] as f64);
            push_sample(tr, &uu, lq[k] as f64, thetas, log_q);
        }
        Ok(())
    }

    /// One star's sorted context terms for every block (c1 and c2 per block). Each star is
    /// encoded on its own, so its samples never depend on its batch.
    fn context_terms(&self, star: &StarObs) -> ContextTerms {
        let ctx = self.encoder.context(star);
        let (mut c1, mut c2) = (Vec::new(), Vec::new());
        for k in 0..self.fast.blocks.len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            self.fast.context_terms(k, &ctx, &mut a, &mut b);
            c1.push(a);
            c2.push(b);
        }
        ContextTerms { c1, c2 }
    }
}

/// Base noise of one star: `n` standard-normal `d`-vectors drawn sample-major from the
/// star's own stream, so that every sampling path (CPU, device) sees the same draws; each
/// value is handed to `put(sample, dimension, value)`.
fn base_noise(seed: u64, n: usize, d: usize, mut put: impl FnMut(usize, usize, f32)) {
    let mut rng = Rng::new(seed);
    for t in 0..n {
        for i in 0..d {
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
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// The context's contribution to both hidden layers of every MADE block, sorted layout.
pub(crate) struct ContextTerms {
    c1: Vec<Vec<f32>>,
    c2: Vec<Vec<f32>>,
}

/// The flow conditioned on one star: its context terms, computed on first use (the GPU
/// sampler encodes on the device and needs them only for densities).
pub(crate) struct FlowStar {
    obs: StarObs,
    terms: std::sync::OnceLock<ContextTerms>,
}

impl FlowStar {
    fn terms(&self, p: &FlowProposal) -> &ContextTerms {
        self.terms.get_or_init(|| p.context_terms(&self.obs))
    }
}

impl Proposal for FlowProposal {
    type Conditioned = FlowStar;

    fn id(&self) -> String {
        self.card.id.clone()
    }

    fn condition(&self, stars: &[StarObs]) -> Vec<FlowStar> {
        stars
            .iter()
            .map(|s| {
                let c = FlowStar {
                    obs: s.clone(),
                    terms: std::sync::OnceLock::new(),
                };
                if !self.on_device {
                    c.terms(self);
                }
                c
            })
            .collect()
    }

    fn sample(
        &self,
        cond: &[FlowStar],
        stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        thetas: &mut Vec<Theta>,
        log_q: &mut Vec<f64>,
    ) {
        assert!(!self.intrinsic(), "an intrinsic flow draws y (sample_y)");
        thetas.clear();
        log_q.clear();
        if stars.is_empty() {
            return;
        }
        if self.on_device {
            match self.sample_on_device(stars, n, seeds, thetas, log_q) {
                Ok(()) => return,
                // a device failure mid-run (e.g. out of memory) must not lose stars: the
                // CPU sampler gives the same samples up to rounding
                Err(e) => {
                    warn_device_failure(&e);
                    thetas.clear();
                    log_q.clear();
                }
            }
        }
        let tr = &self.card.config.transform;
        self.draw_fast(cond, n, seeds, |u, np, t, lq| {
            let uu: [f64; 6] = std::array::from_fn(|i| u[i * np + t] as f64);
            push_sample(tr, &uu, lq, thetas, log_q);
        });
    }

    fn log_density(&self, cond: &FlowStar, thetas: &[Theta], out: &mut Vec<f64>) {
        assert!(
            !self.intrinsic(),
            "an intrinsic flow has densities in y (log_density_y)"
        );
        if thetas.is_empty() {
            return;
        }
        let tr = &self.card.config.transform;
        let fill = |u: &mut [f32], np: usize| {
            for (t, th) in thetas.iter().enumerate() {
                let uu = tr.to_u(th);
                for i in 0..6 {
                    u[i * np + t] = uu[i] as f32;
                }
            }
        };
        self.density_fast(cond, thetas.len(), fill, |t, lq| {
            out.push(finite_or_neg_inf(lq + tr.log_jacobian(&thetas[t])));
        });
    }

    fn intrinsic(&self) -> bool {
        self.card.config.target == FlowTarget::Intrinsic
    }

    fn sample_y(
        &self,
        cond: &[FlowStar],
        _stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        ys: &mut Vec<[f64; NY]>,
        log_q: &mut Vec<f64>,
    ) {
        assert!(self.intrinsic(), "a full flow draws theta (sample)");
        ys.clear();
        log_q.clear();
        let tr = &self.card.config.transform;
        self.draw_fast(cond, n, seeds, |u, np, t, lq| {
            let uy: [f64; NY] = std::array::from_fn(|i| u[i * np + t] as f64);
            let y = tr.y_of_u_intrinsic(&uy);
            log_q.push(finite_or_neg_inf(lq + tr.log_du_dy(y[3])));
            ys.push(y);
        });
    }

    fn log_density_y(&self, cond: &FlowStar, ys: &[[f64; NY]], out: &mut Vec<f64>) {
        assert!(
            self.intrinsic(),
            "a full flow has densities in theta (log_density)"
        );
        if ys.is_empty() {
            return;
        }
        let tr = &self.card.config.transform;
        let fill = |u: &mut [f32], np: usize| {
            for (t, y) in ys.iter().enumerate() {
                let uy = tr.u_intrinsic_of_y(y);
                for i in 0..NY {
                    u[i * np + t] = uy[i] as f32;
                }
            }
        };
        self.density_fast(cond, ys.len(), fill, |t, lq| {
            out.push(finite_or_neg_inf(lq + tr.log_du_dy(ys[t][3])));
        });
    }
}

/// A log density, or -inf where it is not finite (a y outside R_V's open interval).
fn finite_or_neg_inf(l: f64) -> f64 {
    if l.is_finite() {
        l
    } else {
        f64::NEG_INFINITY
    }
}

/// Report a failure of the device sampler once per process (then the CPU sampler is used
/// for the chunk).
pub(crate) fn warn_device_failure(e: &anyhow::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("sedflow: warning: device sampling failed ({e:#}); falling back to the CPU sampler for the affected chunks");
    });
}

/// Parse a device name: `cpu`, `cuda` (GPU 0) or `cuda:N`. A binary built without the
/// `cuda` feature says so instead of silently using the CPU.
pub(crate) fn parse_device(name: &str) -> Result<Device> {
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

    /// `n` simulated catalogue stars (seed `seed`).
    fn simulated(n: usize, seed: u64) -> Vec<StarObs> {
        let fm = crate::physics::ForwardModel::embedded();
        let sims = crate::pipeline::simulated::simulate_catalogue(
            fm,
            n,
            seed,
            crate::pipeline::config::GaiaRelease::Dr3,
        );
        sims.unwrap().into_iter().map(|s| s.obs).collect()
    }

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
        let stars = simulated(5, 3);
        let seeds: Vec<u64> = (0..stars.len() as u64).map(|k| 100 + k).collect();
        let n = 32;
        let (mut t_fast, mut q_fast) = (Vec::new(), Vec::new());
        let cond = p.condition(&stars);
        p.sample(&cond, &stars, n, &seeds, &mut t_fast, &mut q_fast);
        p.on_device = true;
        let (mut t_dev, mut q_dev) = (Vec::new(), Vec::new());
        p.sample(&cond, &stars, n, &seeds, &mut t_dev, &mut q_dev);
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

    /// The density pass (non-sequential) gives at any point the log density the sampler
    /// reports for its own samples, and the candle network's log_prob.
    #[test]
    fn density_pass_matches_sampler_and_candle() {
        let p = FlowProposal::embedded().unwrap();
        let stars = simulated(3, 8);
        let cond = p.condition(&stars);
        let seeds = [5u64, 6, 7];
        let n = 37; // not a multiple of the tile
        let (mut th, mut lq) = (Vec::new(), Vec::new());
        p.sample(&cond, &stars, n, &seeds, &mut th, &mut lq);
        for (s, c) in cond.iter().enumerate() {
            let pts = &th[s * n..(s + 1) * n];
            let mut dens = Vec::new();
            p.log_density(c, pts, &mut dens);
            assert_eq!(dens.len(), n);
            for k in 0..n {
                assert!(
                    (dens[k] - lq[s * n + k]).abs() < 2e-3 * (1.0 + lq[s * n + k].abs()),
                    "star {s} sample {k}: density pass {} vs sampler {}",
                    dens[k],
                    lq[s * n + k]
                );
            }
            // candle reference at the same points (in u, without the Jacobian)
            let tr = &p.card.config.transform;
            let u: Vec<f32> = pts
                .iter()
                .flat_map(|t| tr.to_u(t).map(|x| x as f32))
                .collect();
            let enc = &p.card.config.encoder;
            let tb = super::TokenBatch::build_with(
                std::slice::from_ref(&stars[s]),
                enc.n_bands,
                enc.reddening_token,
            );
            let ctx = p.model.context(&tb).unwrap();
            let ctx = ctx
                .broadcast_as((n, ctx.dim(1).unwrap()))
                .unwrap()
                .contiguous()
                .unwrap();
            let ut = Tensor::from_vec(u, (n, 6), &p.model.device).unwrap();
            let reference = p
                .model
                .flow
                .log_prob(&ut, &ctx)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for k in 0..n {
                let ours = dens[k] - tr.log_jacobian(&pts[k]);
                assert!(
                    (ours - reference[k] as f64).abs() < 1e-2,
                    "star {s} sample {k}: {ours} vs candle {}",
                    reference[k]
                );
            }
        }
        // points outside the domain (negative extinction) have density zero
        let mut bad = th[0];
        bad.av = -0.1;
        let mut dens = Vec::new();
        p.log_density(&cond[0], &[bad], &mut dens);
        assert_eq!(dens[0], f64::NEG_INFINITY);
    }

    /// A small intrinsic model (4-D flow) with perturbed deterministic weights.
    fn small_intrinsic(seed: u64) -> FlowProposal {
        use crate::nn::encoder::EncoderConfig;
        use crate::nn::flow::FlowConfig;
        use crate::nn::model::{init_deterministic, ModelConfig};
        let mut card: ModelCard = serde_json::from_str(DEFAULT_CARD).unwrap();
        let cfg = ModelConfig {
            encoder: EncoderConfig {
                d_model: 16,
                heads: 2,
                ffn: 32,
                ctx: 8,
                ..card.config.encoder.clone()
            },
            flow: FlowConfig {
                dim: 4,
                ctx: 8,
                hidden: 24,
                orders: FlowConfig::default_orders(4, 3, seed),
                alpha_clip: 3.0,
                spline: None,
            },
            target: FlowTarget::Intrinsic,
            ..card.config.clone()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        NeuralPosterior::new(&cfg, vb).unwrap();
        init_deterministic(&varmap, seed).unwrap();
        // perturbed in sorted-name order (the VarMap's own order is a HashMap's)
        let mut rng = Rng::new(seed + 1);
        let vars = varmap.data().lock().unwrap().clone();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for v in names.into_iter().map(|n| &vars[n]) {
            let noise: Vec<f32> = (0..v.elem_count())
                .map(|_| 0.03 * rng.normal() as f32)
                .collect();
            let t = Tensor::from_vec(noise, v.dims(), &Device::Cpu).unwrap();
            v.set(&(v.as_tensor() + t).unwrap()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        varmap.save(&path).unwrap();
        card.config = cfg;
        FlowProposal::from_bytes(&std::fs::read(&path).unwrap(), card, &Device::Cpu).unwrap()
    }

    /// An intrinsic flow's density pass gives the log q(y) its sampler reports.
    #[test]
    fn intrinsic_flow_draws_carry_the_density_of_its_density_pass() {
        let p = small_intrinsic(31);
        assert!(p.intrinsic());
        let stars = simulated(3, 9);
        let cond = p.condition(&stars);
        let n = 37;
        let (mut ys, mut lq) = (Vec::new(), Vec::new());
        p.sample_y(&cond, &stars, n, &[1, 2, 3], &mut ys, &mut lq);
        assert_eq!(ys.len(), 3 * n);
        for (s, c) in cond.iter().enumerate() {
            let mut dens = Vec::new();
            p.log_density_y(c, &ys[s * n..(s + 1) * n], &mut dens);
            for k in 0..n {
                let q = lq[s * n + k];
                assert!(q.is_finite(), "star {s} draw {k}");
                assert!(
                    (dens[k] - q).abs() < 2e-3 * (1.0 + q.abs()),
                    "{} vs {q}",
                    dens[k]
                );
            }
        }
    }

    /// An intrinsic flow's log q(y) is normalised in y = (log10 Teff, log g, [M/H], R_V):
    /// E_{y ~ g}[q(y) / g(y)] = 1 with g a Gaussian in y twice as wide as q's draws.
    #[test]
    fn intrinsic_flow_integrates_to_one_in_y() {
        let p = small_intrinsic(41);
        let stars = simulated(1, 4);
        let cond = p.condition(&stars);
        let (mut ys, mut lq) = (Vec::new(), Vec::new());
        p.sample_y(&cond, &stars, 4000, &[7], &mut ys, &mut lq);
        let n = ys.len() as f64;
        let mu: [f64; NY] = std::array::from_fn(|i| ys.iter().map(|y| y[i]).sum::<f64>() / n);
        let sd: [f64; NY] = std::array::from_fn(|i| {
            2.0 * (ys.iter().map(|y| (y[i] - mu[i]).powi(2)).sum::<f64>() / n).sqrt()
        });
        let mut rng = Rng::new(8);
        let (m, chunk) = (200_000, 4096);
        let mut acc = 0.0;
        let mut done = 0;
        while done < m {
            let k = chunk.min(m - done);
            let mut log_g = Vec::with_capacity(k);
            let pts: Vec<[f64; NY]> = (0..k)
                .map(|_| {
                    let mut lg = 0.0;
                    let y = std::array::from_fn(|i| {
                        let e = rng.normal();
                        lg += -0.5 * e * e - (sd[i] * (2.0 * std::f64::consts::PI).sqrt()).ln();
                        mu[i] + sd[i] * e
                    });
                    log_g.push(lg);
                    y
                })
                .collect();
            let mut dens = Vec::new();
            p.log_density_y(&cond[0], &pts, &mut dens);
            acc += dens
                .iter()
                .zip(&log_g)
                .map(|(q, g)| (q - g).exp())
                .sum::<f64>();
            done += k;
        }
        let integral = acc / m as f64;
        assert!((integral - 1.0).abs() < 0.02, "integral {integral}");
    }
}
