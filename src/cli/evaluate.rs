//! `sedflow evaluate`: posterior summaries vs truth on simulated stars, by filter set, and
//! the comparison of flow + importance sampling with the reference MCMC.

use super::simulate::{simulate_catalogue, GaiaRelease};
use crate::eval::{evaluate, format_table};
use crate::infer::importance::ImportanceEngine;
use crate::infer::mcmc::{self, McmcConfig};
use crate::infer::{Engine, InferSettings};
use crate::nn::proposal::FlowProposal;
use crate::physics::PARAM_NAMES;
use crate::util::stats::weighted_quantiles;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `sedflow evaluate`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow evaluate --stars 10000 --seed 7 --mcmc 20 --report work/eval.json"
)]
pub struct EvaluateArgs {
    /// Held-out simulated stars (drawn from the physical prior with realistic filter sets).
    #[arg(long, default_value_t = 10_000)]
    stars: usize,
    /// Seed of the held-out catalogue (training uses different streams).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Proposal samples per star.
    #[arg(long, default_value_t = 256)]
    samples: usize,
    /// Model directory (weights.safetensors + card.json); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also compare with the reference MCMC on this many of the stars.
    #[arg(long, default_value_t = 0)]
    mcmc: usize,
    /// Importance samples per star for the MCMC comparison (more samples, less Monte Carlo
    /// noise in the quantiles being compared).
    #[arg(long, default_value_t = 8192)]
    mcmc_is_samples: usize,
    /// Write the metrics as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Importance-sample the flow alone (no adaptive refinement rounds), to measure the
    /// flow's own efficiency.
    #[arg(long)]
    no_refine: bool,
    /// Stars whose effective sample size stays below 20 get more refinement rounds, up to
    /// this many times --samples in all (1: never more).
    #[arg(long, default_value_t = 4)]
    max_sample_factor: usize,
}

/// Run `sedflow evaluate`.
pub fn run(a: EvaluateArgs) -> Result<i32> {
    let engine = crate::infer::flow_engine(a.model.as_deref())?;
    let fm = &engine.fm;
    let stars = simulate_catalogue(fm, a.stars, a.seed, GaiaRelease::Dr3)?;
    let obs: Vec<_> = stars.iter().map(|s| s.obs.clone()).collect();
    let truths: Vec<_> = stars.iter().map(|s| s.theta).collect();
    let settings = InferSettings {
        n_samples: a.samples,
        seed: a.seed,
        refine: !a.no_refine,
        max_samples: a.samples * a.max_sample_factor,
        ..Default::default()
    };
    let t0 = Instant::now();
    let results = engine.infer(&obs, &settings);
    let secs = t0.elapsed().as_secs_f64();
    let groups = evaluate(fm, &truths, &obs, &results);
    println!(
        "evaluated {} held-out simulated stars x {} samples in {:.1} s ({:.0} stars/s); model {}",
        a.stars,
        a.samples,
        secs,
        a.stars as f64 / secs,
        engine.model_id()
    );
    println!("{}", format_table(&groups));
    let mut report = serde_json::json!({"stars": a.stars, "samples": a.samples, "seed": a.seed, "seconds": secs, "model": engine.model_id(), "groups": groups});
    if a.mcmc > 0 {
        let cmp = compare_mcmc(
            &engine,
            &stars[..a.mcmc.min(stars.len())],
            a.mcmc_is_samples,
            a.seed,
        )?;
        report["mcmc"] = cmp;
    }
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(0)
}

/// Flow + IS vs MCMC on the given stars: |quantile difference| / MCMC (p84 - p16) for
/// p16, p50, p84 of teff, logg, mh, av; and time per effective sample of each method.
fn compare_mcmc(
    engine: &ImportanceEngine<FlowProposal>,
    stars: &[crate::simulate::SimStar],
    is_samples: usize,
    seed: u64,
) -> Result<serde_json::Value> {
    let cfg = McmcConfig {
        seed,
        ..Default::default()
    };
    let levels = [0.16, 0.5, 0.84];
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    let mut n_fail = 0;
    let (mut t_mcmc, mut neff_mcmc, mut t_is, mut neff_is) = (0.0, 0.0, 0.0, 0.0);
    println!("\nflow + importance sampling ({is_samples} samples) vs reference MCMC ({} walkers x {} steps after {} burn-in):", cfg.walkers, cfg.steps, cfg.burn);
    println!("{:>4} {:>8} {:>7} {:>7} | max |dq|/width for teff logg mh av | IS eff  | MCMC n_eff  tau_max  s", "star", "teff", "logg", "mh");
    for (k, s) in stars.iter().enumerate() {
        let settings = InferSettings {
            n_samples: is_samples,
            keep_samples: 0,
            seed,
            ..Default::default()
        };
        let t0 = Instant::now();
        let r = &engine.infer_chunk(std::slice::from_ref(&s.obs), &settings)[0];
        t_is += t0.elapsed().as_secs_f64();
        neff_is += r.n_eff as f64;
        let m = mcmc::run(&s.obs, &engine.fm, &engine.prior, &engine.noise, &cfg);
        t_mcmc += m.seconds;
        neff_mcmc += m.n_eff;
        let w = vec![1.0; m.samples.len()];
        let mut order = Vec::new();
        let mut devs = Vec::new();
        for p in 0..4 {
            let vals: Vec<f64> = m.samples.iter().map(|x| x[p]).collect();
            let mut q = [0f64; 3];
            weighted_quantiles(&vals, &w, &levels, &mut q, &mut order);
            let width = (q[2] - q[0]).max(1e-12);
            let is_q = [
                r.params[p].q[1] as f64,
                r.params[p].q[2] as f64,
                r.params[p].q[3] as f64,
            ];
            let dev = (0..3)
                .map(|i| (is_q[i] - q[i]).abs() / width)
                .fold(0.0, f64::max);
            devs.push(dev);
        }
        let max_dev = devs.iter().cloned().fold(0.0, f64::max);
        worst = worst.max(max_dev);
        if max_dev > 0.1 {
            n_fail += 1;
        }
        println!(
            "{:>4} {:>8.0} {:>7.2} {:>7.2} | {:>5.3} {:>5.3} {:>5.3} {:>5.3}             | {:>6.3} | {:>9.0} {:>7.1} {:>5.1}",
            k, s.theta.teff, s.theta.logg, s.theta.mh, devs[0], devs[1], devs[2], devs[3], r.sample_efficiency, m.n_eff, m.tau.iter().cloned().fold(0.0, f64::max), m.seconds
        );
        rows.push(serde_json::json!({"truth": s.theta, "max_dev_over_width": devs, "is_efficiency": r.sample_efficiency, "mcmc": m}));
    }
    let per_eff_mcmc = t_mcmc / neff_mcmc;
    let per_eff_is = t_is / neff_is.max(1e-9);
    println!(
        "worst |dq|/width {:.3}; stars over 0.10: {} of {}; time per effective sample: MCMC {:.2e} s, flow+IS (single thread, {} samples) {:.2e} s -> {:.0}x",
        worst,
        n_fail,
        stars.len(),
        per_eff_mcmc,
        is_samples,
        per_eff_is,
        per_eff_mcmc / per_eff_is
    );
    let _ = PARAM_NAMES;
    Ok(
        serde_json::json!({"stars": rows, "worst_dev_over_width": worst, "n_over_0.1": n_fail, "mcmc_seconds_per_effective_sample": per_eff_mcmc, "is_seconds_per_effective_sample": per_eff_is}),
    )
}
