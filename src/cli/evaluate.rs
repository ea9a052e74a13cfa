//! `sedflow evaluate`: posterior summaries vs truth on simulated stars, by filter set, and
//! the comparison of flow + importance sampling with the reference MCMC.

use super::simulate::GaiaRelease;
use crate::eval::{evaluate, format_table};
use crate::nn::proposal::FlowProposal;
use crate::posterior::engine::PosteriorEngine;
use crate::posterior::mcmc::McmcConfig;
use crate::posterior::{Engine, InferSettings};
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
    /// Pipeline configuration whose [inference] settings are used (default: the committed
    /// pipeline.toml, i.e. the settings `sedflow run` uses by default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override inference.samples (flow-only sampling: samples per star; adaptive: the
    /// budget unit).
    #[arg(long)]
    samples: Option<usize>,
    /// Model directory (weights.safetensors + card.json); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Band patterns of the held-out stars: `any` (the survey model's mix) or `full` (all
    /// 13 bands and a parallax).
    #[arg(long, value_enum, default_value_t = super::simulate::Pattern::Any)]
    pattern: super::simulate::Pattern,
    /// Observations drawn from exactly the likelihood (theta from the prior, the bands,
    /// errors and parallax error of an independent survey-model star; see `sedflow simulate
    /// --likelihood-consistent`): the catalogue on which exact posteriors have nominal
    /// coverage.
    #[arg(long)]
    likelihood_consistent: bool,
    #[command(flatten)]
    mix: super::simulate::CatalogueMix,
    /// Also compare with the reference MCMC on this many of the stars.
    #[arg(long, default_value_t = 0)]
    mcmc: usize,
    /// Write the metrics as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Importance-sample the flow alone (`refine = false`), to measure the flow's own
    /// efficiency.
    #[arg(long)]
    no_refine: bool,
    /// Override inference.target_n_eff.
    #[arg(long)]
    target_n_eff: Option<f32>,
    /// Override inference.max_sample_factor (adaptive budget = factor x samples).
    #[arg(long)]
    max_sample_factor: Option<usize>,
}

/// The [inference] settings of `--config` (or the committed default) with the overrides.
fn settings_of(a: &EvaluateArgs) -> Result<InferSettings> {
    let mut cfg = match &a.config {
        Some(p) => crate::pipeline::config::PipelineConfig::load(p)?,
        None => crate::pipeline::config::PipelineConfig::embedded_default(),
    };
    let inf = &mut cfg.inference;
    if let Some(n) = a.samples {
        inf.samples = n;
    }
    if a.no_refine {
        inf.refine = false;
    }
    if let Some(t) = a.target_n_eff {
        inf.target_n_eff = t;
    }
    if let Some(f) = a.max_sample_factor {
        inf.max_sample_factor = f;
    }
    inf.seed = a.seed;
    cfg.validate()?;
    Ok(cfg.inference.settings())
}

/// Run `sedflow evaluate`.
pub fn run(a: EvaluateArgs) -> Result<i32> {
    let engine = crate::cli::engine::flow_engine(a.model.as_deref())?;
    let fm = &engine.fm;
    let stars = super::simulate::simulate_catalogue_with(
        fm,
        a.stars,
        a.seed,
        GaiaRelease::Dr3,
        a.pattern,
        a.likelihood_consistent,
        a.mix,
    )?;
    let obs: Vec<_> = stars.iter().map(|s| s.obs.clone()).collect();
    let truths: Vec<_> = stars.iter().map(|s| s.theta).collect();
    let settings = settings_of(&a)?;
    crate::cli::engine::check_settings(&engine, settings.flow_share)?;
    let t0 = Instant::now();
    let results = engine.infer(&obs, &settings);
    let secs = t0.elapsed().as_secs_f64();
    let groups = evaluate(fm, &truths, &obs, &results);
    println!(
        "evaluated {} held-out simulated stars ({}) in {:.1} s ({:.0} stars/s); model {}",
        a.stars,
        describe(&settings),
        secs,
        a.stars as f64 / secs,
        engine.model_id()
    );
    println!("{}", format_table(&groups));
    let mut report = serde_json::json!({"stars": a.stars, "settings": describe(&settings), "pattern": format!("{:?}", a.pattern), "likelihood_consistent": a.likelihood_consistent, "reddening_fraction": a.mix.reddening_fraction, "bright_fraction": a.mix.bright_fraction, "seed": a.seed, "seconds": secs, "model": engine.model_id(), "groups": groups});
    if a.mcmc > 0 {
        let k = a.mcmc.min(stars.len());
        let cmp = compare_mcmc(&engine, &stars[..k], &results[..k], a.seed)?;
        report["mcmc"] = cmp;
    }
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(0)
}

/// One line describing the sampling settings.
pub fn describe(s: &InferSettings) -> String {
    if s.refine {
        format!(
            "adaptive: {} pilot flow samples, target n_eff {}, at most {} samples",
            s.pilot_samples, s.target_n_eff, s.max_samples
        )
    } else {
        format!("flow only: {} samples", s.n_samples)
    }
}

/// The engine's posteriors (already computed with the run's settings) against the
/// reference MCMC on the same stars: worst |quantile difference| in MCMC widths per star
/// (`posterior::compare`), and time per effective sample of each method.
fn compare_mcmc(
    engine: &PosteriorEngine<FlowProposal>,
    stars: &[crate::simulate::SimStar],
    results: &[crate::posterior::StarResult],
    seed: u64,
) -> Result<serde_json::Value> {
    use crate::posterior::compare::{agreement, star_deviations, DEFAULT_PARAMS};
    let cfg = McmcConfig {
        seed,
        ..Default::default()
    };
    let mut rows = Vec::new();
    let mut worst_all = Vec::new();
    let (mut t_mcmc, mut neff_mcmc) = (0.0, 0.0);
    println!(
        "\nimportance sampling vs reference MCMC ({} walkers x {} steps after {} burn-in):",
        cfg.walkers, cfg.steps, cfg.burn
    );
    println!("{:>4} {:>8} {:>7} {:>7} | |dq|/width teff  logg    mh    av | IS eff | MCMC n_eff  R-hat   s", "star", "teff", "logg", "mh");
    for (k, (s, r)) in stars.iter().zip(results).enumerate() {
        let m = engine.reference_mcmc(&s.obs, &cfg);
        t_mcmc += m.seconds;
        neff_mcmc += m.n_eff;
        let reference = m.summaries();
        let (devs, worst) = star_deviations(&reference, &r.params, &DEFAULT_PARAMS);
        worst_all.push(worst);
        println!(
            "{:>4} {:>8.0} {:>7.2} {:>7.2} | {:>9.3} {:>5.3} {:>5.3} {:>5.3} | {:>6.3} | {:>9.0} {:>6.3} {:>5.1}",
            k, s.theta.teff, s.theta.logg, s.theta.mh, devs[0], devs[1], devs[2], devs[3], r.sample_efficiency, m.n_eff, m.max_rhat(), m.seconds
        );
        rows.push(serde_json::json!({"truth": s.theta, "dev_over_width": devs, "worst": worst, "is_efficiency": r.sample_efficiency, "mcmc": m}));
    }
    let agree = agreement(&worst_all);
    println!(
        "worst |dq|/width per star: median {:.3}, p90 {:.3}, max {:.3}; within 0.25: {:.0}%, within 0.5: {:.0}% of {} stars; MCMC {:.2e} s per effective sample",
        agree.median,
        agree.p90,
        agree.max,
        100.0 * agree.within_0_25,
        100.0 * agree.within_0_5,
        agree.n,
        t_mcmc / neff_mcmc.max(1e-12)
    );
    Ok(
        serde_json::json!({"stars": rows, "agreement": agree, "mcmc_seconds_per_effective_sample": t_mcmc / neff_mcmc.max(1e-12)}),
    )
}
