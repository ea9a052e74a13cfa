//! Training of the neural posterior with simulation on the fly (fresh examples every step):
//! AdamW (own implementation, so that its moments can be checkpointed), warm-up + cosine
//! learning-rate schedule, gradient-norm clipping, a fixed validation set, checkpoints that
//! a later run resumes from bit for bit, and the model card.

use super::encoder::EncoderConfig;
use super::flow::FlowConfig;
use super::model::{
    init_deterministic, today_utc, FlowTarget, ModelCard, ModelConfig, NeuralPosterior,
    TrainingRecord,
};
use super::spline::SplineConfig;
use super::tokens::TokenBatch;
use crate::likelihood::NoiseModel;
use crate::physics::ForwardModel;
use crate::posterior::coords::ParamTransform;
use crate::prior::{Prior, PriorConfig};
use crate::simulate::{SimStar, Simulator, SimulatorConfig};
use crate::util::rng::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TrainConfig {
    /// Optimiser steps.
    pub(crate) steps: usize,
    /// Examples per step.
    pub(crate) batch: usize,
    /// Peak learning rate.
    pub(crate) lr: f64,
    /// Decoupled weight decay (weights only).
    pub(crate) weight_decay: f64,
    /// Linear warm-up steps.
    pub(crate) warmup: usize,
    /// Final learning rate as a fraction of the peak (cosine decay).
    pub(crate) lr_final_fraction: f64,
    /// Gradient-norm clip.
    pub(crate) grad_clip: f64,
    /// Validate and checkpoint every this many steps.
    pub(crate) val_every: usize,
    /// Validation examples (fixed).
    pub(crate) val_size: usize,
    /// Seed (initialisation, simulation, validation set).
    pub(crate) seed: u64,
    /// Encoder width.
    pub(crate) d_model: usize,
    /// Attention heads.
    pub(crate) heads: usize,
    /// Attention blocks.
    pub(crate) layers: usize,
    /// Feed-forward width.
    pub(crate) ffn: usize,
    /// Context width.
    pub(crate) ctx: usize,
    /// MADE blocks.
    pub(crate) flow_blocks: usize,
    /// MADE hidden units.
    pub(crate) flow_hidden: usize,
    /// Give the encoder a reddening-prior token (the simulator's map values).
    #[serde(default)]
    pub(crate) reddening_token: bool,
    /// What the flow models (all of theta, or the intrinsic coordinates only).
    #[serde(default)]
    pub(crate) target: FlowTarget,
    /// Rational-quadratic spline transforms instead of affine ones.
    #[serde(default)]
    pub(crate) spline: Option<SplineConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 20_000,
            batch: 512,
            lr: 1e-3,
            weight_decay: 1e-4,
            warmup: 300,
            lr_final_fraction: 0.02,
            grad_clip: 5.0,
            val_every: 250,
            val_size: 4096,
            seed: 1,
            d_model: 64,
            heads: 4,
            layers: 1,
            ffn: 128,
            ctx: 64,
            flow_blocks: 6,
            flow_hidden: 128,
            reddening_token: false,
            target: FlowTarget::Full,
            spline: None,
        }
    }
}

/// AdamW with checkpointable state.
struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    decay: Vec<bool>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl AdamW {
    fn new(varmap: &VarMap) -> Result<Self> {
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<String> = data.keys().cloned().collect();
        names.sort();
        let vars: Vec<(String, Var)> = names.iter().map(|n| (n.clone(), data[n].clone())).collect();
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let decay = vars
            .iter()
            .map(|(n, v)| v.dims().len() == 2 && !n.ends_with("emb"))
            .collect();
        Ok(AdamW {
            vars,
            m,
            v,
            t: 0,
            decay,
        })
    }

    /// One step; returns the gradient norm before clipping.
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        wd: f64,
        clip: f64,
    ) -> Result<f64> {
        let mut sq = 0f64;
        let gs: Vec<Option<Tensor>> = self
            .vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        for g in gs.iter().flatten() {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let norm = sq.sqrt();
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.t += 1;
        let bc1 = 1.0 - BETA1.powi(self.t as i32);
        let bc2 = 1.0 - BETA2.powi(self.t as i32);
        for (k, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            self.m[k] = ((&self.m[k] * BETA1)? + (&g * (1.0 - BETA1))?)?;
            self.v[k] = ((&self.v[k] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let mhat = (&self.m[k] / bc1)?;
            let vhat = (&self.v[k] / bc2)?;
            let upd = (mhat / (vhat.sqrt()? + EPS)?)?;
            let var = &self.vars[k].1;
            let mut w = var.as_tensor().clone();
            if self.decay[k] {
                w = (w * (1.0 - lr * wd))?;
            }
            var.set(&(w - (upd * lr)?)?)?;
        }
        Ok(norm)
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut map = std::collections::HashMap::new();
        for (k, (n, _)) in self.vars.iter().enumerate() {
            map.insert(format!("m.{n}"), self.m[k].clone());
            map.insert(format!("v.{n}"), self.v[k].clone());
        }
        map.insert(
            "t".to_string(),
            Tensor::new(&[self.t as f32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path, dev: &Device) -> Result<()> {
        let map = candle_core::safetensors::load(path, dev)?;
        for (k, (n, _)) in self.vars.iter().enumerate() {
            self.m[k] = map
                .get(&format!("m.{n}"))
                .with_context(|| format!("optimiser state lacks {n}"))?
                .clone();
            self.v[k] = map
                .get(&format!("v.{n}"))
                .with_context(|| format!("optimiser state lacks {n}"))?
                .clone();
        }
        self.t = map.get("t").context("optimiser step")?.to_vec1::<f32>()?[0] as usize;
        Ok(())
    }
}

/// One training example's tensors.
pub(crate) struct Examples {
    /// Tokens.
    pub(crate) tokens: TokenBatch,
    /// Targets u (all six, or the intrinsic block), row-major \[b\]\[dim\].
    pub(crate) u: Vec<f32>,
    /// log |du/dtheta| per example (for an intrinsic target: of u_y over the physical
    /// Teff, log g, [M/H], R_V).
    pub(crate) log_jac: Vec<f64>,
}

/// Simulate `n` catalogue stars for (seed, stream, step), deterministically.
pub(crate) fn simulate_batch(
    sim: &Simulator,
    n: usize,
    seed: u64,
    stream: u64,
    step: u64,
) -> Vec<SimStar> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::for_keys(seed, &[stream, step, i as u64]);
            loop {
                if let Some(s) = sim.simulate_one(&mut rng, i as i64) {
                    return s;
                }
            }
        })
        .collect()
}

/// Turn simulated stars into network inputs and targets.
/// `reddening`: the model takes reddening-prior tokens.
pub(crate) fn make_examples(
    stars: &[SimStar],
    cfg: &ModelConfig,
    (n_bands, reddening): (usize, bool),
) -> Examples {
    let tr = &cfg.transform;
    let obs: Vec<_> = stars.iter().map(|s| s.obs.clone()).collect();
    let tokens = TokenBatch::build_with(&obs, n_bands, reddening);
    let mut u = Vec::with_capacity(stars.len() * cfg.target.dim());
    let mut log_jac = Vec::with_capacity(stars.len());
    for s in stars {
        match cfg.target {
            FlowTarget::Full => {
                u.extend(tr.to_u(&s.theta).iter().map(|&x| x as f32));
                log_jac.push(tr.log_jacobian(&s.theta));
            }
            FlowTarget::Intrinsic => {
                u.extend(tr.to_u_intrinsic(&s.theta).iter().map(|&x| x as f32));
                // y's first coordinate is log10 Teff: d log10 T / dT = 1 / (T ln 10)
                let dy = -(s.theta.teff * std::f64::consts::LN_10).ln();
                log_jac.push(tr.log_du_dy(s.theta.rv) + dy);
            }
        }
    }
    Examples { tokens, u, log_jac }
}

/// Fit the standardisation of v on simulated catalogue stars.
pub(crate) fn fit_transform(sim: &Simulator, seed: u64) -> ParamTransform {
    let stars = simulate_batch(sim, 50_000, seed, 0x7F, 0);
    let mut mean = [0f64; 6];
    let mut var = [0f64; 6];
    let vs: Vec<[f64; 6]> = stars.iter().map(|s| ParamTransform::v(&s.theta)).collect();
    for v in &vs {
        for i in 0..6 {
            mean[i] += v[i] / vs.len() as f64;
        }
    }
    for v in &vs {
        for i in 0..6 {
            var[i] += (v[i] - mean[i]).powi(2) / vs.len() as f64;
        }
    }
    let scale = var.map(|x| x.sqrt().max(1e-3));
    ParamTransform { mean, scale }
}

fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    if step < cfg.warmup {
        return cfg.lr * (step + 1) as f64 / cfg.warmup as f64;
    }
    let p = (step - cfg.warmup) as f64 / (cfg.steps - cfg.warmup).max(1) as f64;
    let f = cfg.lr_final_fraction
        + (1.0 - cfg.lr_final_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos());
    cfg.lr * f
}

/// Mean -log q over examples (of theta, or of the intrinsic parameters for an intrinsic
/// model; physical units), in chunks, without gradients.
pub(crate) fn mean_nll(model: &NeuralPosterior, ex: &Examples, chunk: usize) -> Result<f64> {
    let b = ex.tokens.b;
    let d = model.cfg.flow.dim;
    let mut total = 0f64;
    let mut start = 0;
    while start < b {
        let end = (start + chunk).min(b);
        let idx: Vec<usize> = (start..end).collect();
        let tb = ex.tokens.select(&idx);
        let lp = model
            .log_prob_u(&tb, &ex.u[start * d..end * d])?
            .to_vec1::<f32>()?;
        for (k, l) in lp.iter().enumerate() {
            total += -(*l as f64 + ex.log_jac[start + k]);
        }
        start = end;
    }
    Ok(total / b as f64)
}

/// Everything training needs besides the settings.
pub(crate) struct TrainSetup<'a> {
    /// Forward model used by the simulator (calibrated).
    pub(crate) fm: &'a ForwardModel,
    /// Prior settings.
    pub(crate) prior: PriorConfig,
    /// Simulator settings.
    pub(crate) simulator: SimulatorConfig,
    /// Output directory (weights.safetensors, card.json, checkpoint/).
    pub(crate) out: PathBuf,
    /// Resume from out/checkpoint if present.
    pub(crate) resume: bool,
    /// Progress log file (plain lines).
    pub(crate) log: Option<PathBuf>,
    /// Command line, for the card.
    pub(crate) command: String,
    /// Show a progress bar.
    pub(crate) progress: bool,
    /// Do not train: write weights + card from the latest checkpoint (e.g. to ship a run
    /// that had to stop early).
    pub(crate) export_only: bool,
    /// Train at most this many steps in this invocation, then checkpoint and return
    /// (for time-limited batch jobs; resume later).
    pub(crate) stop_after: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    step: usize,
    history: Vec<(usize, f64, f64)>,
    examples: usize,
    wall_seconds: f64,
    config: ModelConfig,
}

/// Train; returns the model card, or None when `stop_after` ended this invocation early.
/// Checkpoints go to `out/checkpoint/`.
pub(crate) fn train(cfg: &TrainConfig, setup: &TrainSetup) -> Result<Option<ModelCard>> {
    let dev = Device::Cpu;
    let prior = Prior::new(setup.fm, setup.prior.clone());
    let noise = NoiseModel::default_for(setup.fm);
    let sim = Simulator::new(setup.fm, &prior, &noise, setup.simulator.clone())?;
    let n_bands = setup.fm.bands().len();
    let ckpt = setup.out.join("checkpoint");
    std::fs::create_dir_all(&ckpt).with_context(|| format!("creating {}", ckpt.display()))?;
    let meta_path = ckpt.join("meta.json");
    let resuming = setup.resume && meta_path.exists();
    let (model_cfg, start_step, mut history, mut examples, mut wall) = if resuming {
        let meta: CheckpointMeta = serde_json::from_str(&std::fs::read_to_string(&meta_path)?)?;
        (
            meta.config,
            meta.step,
            meta.history,
            meta.examples,
            meta.wall_seconds,
        )
    } else {
        (new_model_config(cfg, setup, &sim), 0, Vec::new(), 0, 0.0)
    };
    if model_cfg.target != cfg.target {
        bail!(
            "the checkpoint in {} trains target {:?}, not {:?}",
            ckpt.display(),
            model_cfg.target,
            cfg.target
        );
    }
    if model_cfg.flow.spline != cfg.spline {
        bail!(
            "the checkpoint in {} has spline transforms {:?}, not {:?}",
            ckpt.display(),
            model_cfg.flow.spline,
            cfg.spline
        );
    }
    if cfg.steps <= start_step {
        bail!(
            "checkpoint is at step {start_step}, nothing to do for --steps {}",
            cfg.steps
        );
    }
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = NeuralPosterior::new(&model_cfg, vb)?;
    init_deterministic(&varmap, cfg.seed)?;
    let mut opt = AdamW::new(&varmap)?;
    if resuming {
        let mut vm = varmap.clone();
        vm.load(ckpt.join("weights.safetensors"))?;
        opt.load(&ckpt.join("optimizer.safetensors"), &dev)?;
    }
    let val = make_examples(
        &simulate_batch(&sim, cfg.val_size, cfg.seed, 0xA1, 0),
        &model_cfg,
        (n_bands, model_cfg.encoder.reddening_token),
    );
    if setup.export_only {
        if !resuming {
            bail!("--export-only needs a checkpoint in {}", ckpt.display());
        }
        let done = CheckpointMeta {
            step: start_step,
            history,
            examples,
            wall_seconds: wall,
            config: model_cfg,
        };
        return write_model(&varmap, done, cfg, setup, noise).map(Some);
    }
    let mut logf = match &setup.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let threads = rayon::current_num_threads();
    let pb = setup.progress.then(|| progress_bar(cfg.steps, start_step));
    let mut line = |s: String| {
        if let Some(f) = logf.as_mut() {
            let _ = writeln!(f, "{s}");
            let _ = f.flush();
        }
        if let Some(pb) = &pb {
            pb.println(&s);
        } else {
            eprintln!("{s}");
        }
    };
    line(format!(
        "train: steps {}..{} batch {} threads {threads} params {}",
        start_step,
        cfg.steps,
        cfg.batch,
        varmap
            .all_vars()
            .iter()
            .map(|v| v.elem_count())
            .sum::<usize>()
    ));
    let t0 = Instant::now();
    let wall0 = wall;
    let mut recent = Vec::new();
    for step in start_step..cfg.steps {
        let lr = lr_at(cfg, step);
        let l = train_step(&model, &mut opt, (&sim, &model_cfg, n_bands), cfg, step)?;
        if !l.is_finite() {
            bail!("training diverged at step {step} (loss {l})");
        }
        recent.push(l);
        examples += cfg.batch;
        if let Some(pb) = &pb {
            pb.inc(1);
            pb.set_message(format!("loss {l:.3} lr {lr:.2e}"));
        }
        let last = step + 1 == cfg.steps;
        let stop = setup.stop_after.is_some_and(|k| step + 1 >= start_step + k);
        if (step + 1) % cfg.val_every == 0 || last || stop {
            let v = mean_nll(&model, &val, 1024)?;
            let tr = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            wall = wall0 + t0.elapsed().as_secs_f64();
            history.push((step + 1, tr, v));
            line(format!(
                "step {:>6} train_nll {tr:.4} val_nll {v:.4} lr {lr:.2e} examples {examples} wall {:.0}s ({:.0} ex/s)",
                step + 1,
                wall,
                examples as f64 / wall.max(1e-9)
            ));
            let meta = CheckpointMeta {
                step: step + 1,
                history: history.clone(),
                examples,
                wall_seconds: wall,
                config: model_cfg.clone(),
            };
            write_checkpoint(&ckpt, &varmap, &opt, &meta)?;
            if stop && !last {
                if let Some(pb) = &pb {
                    pb.finish_and_clear();
                }
                line(format!(
                    "stopped after step {} (checkpoint written); continue with --resume",
                    step + 1
                ));
                return Ok(None);
            }
        }
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let done = CheckpointMeta {
        step: cfg.steps,
        history,
        examples,
        wall_seconds: wall,
        config: model_cfg,
    };
    write_model(&varmap, done, cfg, setup, noise).map(Some)
}

/// A new model's configuration: the settings' sizes, the registry's bands, and the input
/// transform fitted on simulations.
fn new_model_config(cfg: &TrainConfig, setup: &TrainSetup, sim: &Simulator) -> ModelConfig {
    let dim = cfg.target.dim();
    ModelConfig {
        encoder: EncoderConfig {
            n_bands: setup.fm.bands().len(),
            d_model: cfg.d_model,
            heads: cfg.heads,
            layers: cfg.layers,
            ffn: cfg.ffn,
            ctx: cfg.ctx,
            reddening_token: cfg.reddening_token,
        },
        flow: FlowConfig {
            dim,
            ctx: cfg.ctx,
            hidden: cfg.flow_hidden,
            orders: FlowConfig::default_orders(dim, cfg.flow_blocks, cfg.seed ^ 0x0DE5),
            alpha_clip: 3.0,
            spline: cfg.spline,
        },
        transform: fit_transform(sim, cfg.seed),
        bands: setup
            .fm
            .bands()
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        target: cfg.target,
    }
}

/// The progress bar of a run from `start` to `steps`.
fn progress_bar(steps: usize, start: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(steps as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("a valid template"),
    );
    pb.set_position(start as u64);
    pb
}

/// One optimiser step on a fresh simulated batch; returns the batch's loss (negative log
/// density in theta: the flow's, less the transform's mean log Jacobian).
fn train_step(
    model: &NeuralPosterior,
    opt: &mut AdamW,
    (sim, model_cfg, n_bands): (&Simulator, &ModelConfig, usize),
    cfg: &TrainConfig,
    step: usize,
) -> Result<f64> {
    let ts = Instant::now();
    let stars = simulate_batch(sim, cfg.batch, cfg.seed, 0x7A, step as u64);
    let ex = make_examples(
        &stars,
        model_cfg,
        (n_bands, model_cfg.encoder.reddening_token),
    );
    let t_sim = ts.elapsed().as_secs_f64();
    let ctx = model.context(&ex.tokens)?;
    let _ = ctx.to_vec2::<f32>()?;
    let t_enc = ts.elapsed().as_secs_f64();
    let lp = model.log_prob_u(&ex.tokens, &ex.u)?;
    let loss = lp.mean_all()?.neg()?;
    let _ = loss.to_scalar::<f32>()?;
    let t_fwd = ts.elapsed().as_secs_f64();
    let grads = loss.backward()?;
    let t_bwd = ts.elapsed().as_secs_f64();
    opt.step(&grads, lr_at(cfg, step), cfg.weight_decay, cfg.grad_clip)?;
    if std::env::var("SEDFLOW_TRAIN_TIMING").is_ok() {
        eprintln!(
            "timing: sim {t_sim:.3} enc {:.3} fwd {:.3} bwd {:.3} opt {:.3}",
            t_enc - t_sim,
            t_fwd - t_enc,
            t_bwd - t_fwd,
            ts.elapsed().as_secs_f64() - t_bwd
        );
    }
    let jac_mean: f64 = ex.log_jac.iter().sum::<f64>() / ex.log_jac.len() as f64;
    Ok(loss.to_scalar::<f32>()? as f64 - jac_mean)
}

/// Write a checkpoint: weights, optimiser state, then the meta file (last, atomically:
/// its presence marks a complete checkpoint).
fn write_checkpoint(
    ckpt: &Path,
    varmap: &VarMap,
    opt: &AdamW,
    meta: &CheckpointMeta,
) -> Result<()> {
    varmap.save(ckpt.join("weights.safetensors.tmp"))?;
    std::fs::rename(
        ckpt.join("weights.safetensors.tmp"),
        ckpt.join("weights.safetensors"),
    )?;
    opt.save(&ckpt.join("optimizer.safetensors.tmp"))?;
    std::fs::rename(
        ckpt.join("optimizer.safetensors.tmp"),
        ckpt.join("optimizer.safetensors"),
    )?;
    std::fs::write(ckpt.join("meta.json.tmp"), serde_json::to_string(meta)?)?;
    std::fs::rename(ckpt.join("meta.json.tmp"), ckpt.join("meta.json"))?;
    Ok(())
}

/// Write the model (weights and card) of the training state `done`.
fn write_model(
    varmap: &VarMap,
    done: CheckpointMeta,
    cfg: &TrainConfig,
    setup: &TrainSetup,
    noise: NoiseModel,
) -> Result<ModelCard> {
    let CheckpointMeta {
        step: steps,
        history,
        examples,
        wall_seconds: wall,
        config: model_cfg,
    } = done;
    let threads = rayon::current_num_threads();
    let val_loss = history.last().map(|h| h.2).unwrap_or(f64::NAN);
    varmap.save(setup.out.join("weights.safetensors"))?;
    let card = ModelCard {
        id: format!("sedflow-npe-{}-s{}", today_utc(), cfg.seed),
        created: today_utc(),
        config: model_cfg,
        prior: setup.prior.clone(),
        simulator: setup.simulator.clone(),
        noise,
        forward_model: setup.fm.id(),
        training: TrainingRecord {
            command: setup.command.clone(),
            seed: cfg.seed,
            steps,
            batch: cfg.batch,
            examples,
            wall_seconds: wall,
            examples_per_second: examples as f64 / wall.max(1e-9),
            threads,
            val_loss,
            history,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            hardware: format!("{} (candle CPU)", crate::util::hardware_description()),
        },
        notes: String::new(),
    };
    std::fs::write(
        setup.out.join("card.json"),
        serde_json::to_string_pretty(&card)? + "\n",
    )?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TrainConfig {
        TrainConfig {
            steps: 4,
            batch: 32,
            val_every: 2,
            val_size: 16,
            d_model: 8,
            heads: 2,
            layers: 1,
            ffn: 8,
            ctx: 4,
            flow_blocks: 2,
            flow_hidden: 12,
            warmup: 2,
            ..TrainConfig::default()
        }
    }

    fn setup(out: &Path, stop_after: Option<usize>, resume: bool) -> TrainSetup<'static> {
        TrainSetup {
            fm: ForwardModel::embedded_raw(),
            prior: PriorConfig::training(),
            simulator: SimulatorConfig::default(),
            out: out.to_path_buf(),
            resume,
            log: None,
            command: "test".into(),
            progress: false,
            export_only: false,
            stop_after,
        }
    }

    #[test]
    fn interrupted_and_resumed_training_equals_uninterrupted() {
        resumes_bit_for_bit(&tiny());
    }

    /// The same for an intrinsic model, whose card and weights say so.
    #[test]
    fn interrupted_and_resumed_intrinsic_training_equals_uninterrupted() {
        let cfg = TrainConfig {
            target: FlowTarget::Intrinsic,
            ..tiny()
        };
        let card = resumes_bit_for_bit(&cfg);
        assert_eq!(card.config.target, FlowTarget::Intrinsic);
        assert_eq!(card.config.flow.dim, 4);
        assert!(card.config.flow.orders.iter().all(|o| o.len() == 4));
        // a full run cannot resume an intrinsic checkpoint
        let dir = tempfile::tempdir().unwrap();
        assert!(train(&cfg, &setup(dir.path(), Some(1), false))
            .unwrap()
            .is_none());
        assert!(train(&tiny(), &setup(dir.path(), None, true)).is_err());
    }

    /// A spline flow resumes bit for bit too, its card says so, and a resume that would
    /// change the transform is refused.
    #[test]
    fn interrupted_and_resumed_spline_training_equals_uninterrupted() {
        let spline = Some(SplineConfig {
            bins: 4,
            bound: 4.0,
        });
        let cfg = TrainConfig {
            target: FlowTarget::Intrinsic,
            spline,
            ..tiny()
        };
        let card = resumes_bit_for_bit(&cfg);
        assert_eq!(card.config.flow.spline, spline);
        let dir = tempfile::tempdir().unwrap();
        assert!(train(&cfg, &setup(dir.path(), Some(1), false))
            .unwrap()
            .is_none());
        let affine = TrainConfig {
            spline: None,
            ..cfg.clone()
        };
        assert!(train(&affine, &setup(dir.path(), None, true)).is_err());
    }

    /// Train `cfg` uninterrupted and interrupted + resumed: the same weights. Returns the
    /// uninterrupted run's card.
    fn resumes_bit_for_bit(cfg: &TrainConfig) -> ModelCard {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let card = train(cfg, &setup(a.path(), None, false)).unwrap().unwrap();
        assert_eq!(card.training.steps, 4);
        assert!(card.training.val_loss.is_finite());
        assert!(card.training.hardware.contains("logical CPUs"));
        assert!(train(cfg, &setup(b.path(), Some(3), false))
            .unwrap()
            .is_none());
        train(cfg, &setup(b.path(), None, true)).unwrap().unwrap();
        let wa = std::fs::read(a.path().join("weights.safetensors")).unwrap();
        let wb = std::fs::read(b.path().join("weights.safetensors")).unwrap();
        assert!(wa == wb, "resumed weights differ from an uninterrupted run");
        card
    }
}
