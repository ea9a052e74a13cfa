//! `sedflow train`: train the neural posterior with simulation on the fly.

use crate::nn::model::FlowTarget;
use crate::nn::spline::SplineConfig;
use crate::nn::train::{train, TrainConfig, TrainSetup};
use crate::physics::ForwardModel;
use crate::prior::PriorConfig;
use crate::simulate::SimulatorConfig;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `sedflow train`.
#[derive(Args, Debug)]
#[command(
    after_help = "The default model was made with (see docs/model.md for its history):\n  sedflow train --out models/default --steps 12000 --seed 1 --layers 1 --log train.log"
)]
pub struct TrainArgs {
    /// Output directory: weights.safetensors, card.json and checkpoint/ (required: there
    /// is no default, so that the embedded model in models/default is never overwritten by
    /// accident).
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = TrainConfig::default().batch)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Seed.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Validate and checkpoint every this many steps.
    #[arg(long, default_value_t = TrainConfig::default().val_every)]
    val_every: usize,
    /// Validation examples.
    #[arg(long, default_value_t = TrainConfig::default().val_size)]
    val_size: usize,
    /// Encoder width.
    #[arg(long, default_value_t = TrainConfig::default().d_model)]
    d_model: usize,
    /// Attention blocks.
    #[arg(long, default_value_t = TrainConfig::default().layers)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = TrainConfig::default().heads)]
    heads: usize,
    /// MADE blocks.
    #[arg(long, default_value_t = TrainConfig::default().flow_blocks)]
    flow_blocks: usize,
    /// MADE hidden units.
    #[arg(long, default_value_t = TrainConfig::default().flow_hidden)]
    flow_hidden: usize,
    /// What the flow models: `full` (theta, 6-D) or `intrinsic` (log10 Teff, log g, [M/H],
    /// R_V; distance and extinction then come from the closed-form conditional).
    #[arg(long, value_enum, default_value_t = FlowTarget::Full)]
    target: FlowTarget,
    /// Rational-quadratic spline transforms with this many bins in every MADE block (a
    /// neural spline flow); 0 keeps affine blocks.
    #[arg(long, default_value_t = 0)]
    spline_bins: usize,
    /// Half-width of the splines' interval in standardised units (identity outside).
    #[arg(long, default_value_t = 5.0)]
    spline_bound: f64,
    /// Resume from OUT/checkpoint if one exists.
    #[arg(long)]
    resume: bool,
    /// Append progress lines to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Train against the raw physical model (no empirical calibration).
    #[arg(long)]
    raw: bool,
    /// Write weights.safetensors + card.json from OUT/checkpoint without training.
    #[arg(long)]
    export_only: bool,
    /// Train at most this many steps now, checkpoint and exit (resume later with --resume).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Give the encoder a reddening-prior token (pair with --reddening-fraction).
    #[arg(long)]
    reddening_token: bool,
    /// Map values and the bright regime in the training stars (as in `simulate`).
    #[command(flatten)]
    mix: super::simulate::CatalogueMix,
    /// Largest per-survey error floor already added to the quoted errors [mag].
    #[arg(long, default_value_t = 0.0)]
    quoted_floor_max: f64,
    /// Model-error augmentation: magnitude offsets of this many model-systematics floors.
    #[arg(long, default_value_t = 0.0)]
    model_error_scale: f64,
}

/// Run `sedflow train`.
pub fn run(a: TrainArgs) -> Result<i32> {
    let cfg = TrainConfig {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        val_every: a.val_every,
        val_size: a.val_size,
        d_model: a.d_model,
        layers: a.layers,
        heads: a.heads,
        flow_blocks: a.flow_blocks,
        flow_hidden: a.flow_hidden,
        reddening_token: a.reddening_token,
        target: a.target,
        spline: (a.spline_bins > 0).then_some(SplineConfig {
            bins: a.spline_bins,
            bound: a.spline_bound,
        }),
        ..TrainConfig::default()
    };
    if let Some(sp) = &cfg.spline {
        sp.validate()?;
    }
    a.mix.validate()?;
    if !(a.quoted_floor_max >= 0.0 && a.model_error_scale >= 0.0) {
        anyhow::bail!("--quoted-floor-max and --model-error-scale must be >= 0");
    }
    let fm = if a.raw {
        ForwardModel::embedded_raw()
    } else {
        ForwardModel::embedded()
    };
    let setup = TrainSetup {
        fm,
        prior: PriorConfig::training(),
        simulator: SimulatorConfig {
            reddening_fraction: a.mix.reddening_fraction,
            quoted_floor_max: a.quoted_floor_max,
            model_error_scale: a.model_error_scale,
            bright_fraction: a.mix.bright_fraction,
            ..SimulatorConfig::default()
        },
        out: a.out.clone(),
        resume: a.resume || a.export_only,
        log: a.log.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        export_only: a.export_only,
        stop_after: a.stop_after,
    };
    std::fs::create_dir_all(&a.out)?;
    let Some(card) = train(&cfg, &setup)? else {
        println!(
            "checkpoint written to {}/checkpoint; continue with --resume",
            a.out.display()
        );
        return Ok(0);
    };
    println!(
        "trained {} steps ({} examples, {:.0} examples/s, {:.1} min); validation -log q = {:.4}; wrote {}",
        card.training.steps,
        card.training.examples,
        card.training.examples_per_second,
        card.training.wall_seconds / 60.0,
        card.training.val_loss,
        a.out.display()
    );
    Ok(0)
}
