//! Command-line interface: clap definitions and one function per subcommand.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod alloc;
mod bench;
mod bench_pipeline;
mod calibrate;
mod compare;
mod compare_posteriors;
pub(crate) mod engine;
mod evaluate;
mod forward;
mod mcmc;
mod plot;
mod report;
mod run;
pub(crate) mod simulate;
mod train;

/// sedflow: Bayesian posteriors of stellar parameters from broadband photometry.
#[derive(Parser, Debug)]
#[command(name = "sedflow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Predict apparent magnitudes from (Teff, log g, [M/H], A_V, R_V, distance).
    Forward(forward::ForwardArgs),
    /// Check the forward model's interpolation and extinction against direct integration.
    ForwardCheck(forward::CheckArgs),
    /// Benchmarks (forward-model throughput, ...).
    Bench(bench::BenchArgs),
    /// Train the neural posterior on simulations from the forward model.
    Train(train::TrainArgs),
    /// Write a simulated catalogue (pipeline input contract + truth columns).
    Simulate(simulate::SimulateArgs),
    /// Compare posteriors with the truth on held-out simulated stars (and with MCMC).
    Evaluate(evaluate::EvaluateArgs),
    /// Reference ensemble MCMC: a catalogue through the pipeline (or one star as JSON).
    Mcmc(mcmc::McmcArgs),
    /// Compare two posterior tables star by star, in widths of the reference's intervals.
    ComparePosteriors(compare_posteriors::ComparePosteriorsArgs),
    /// Compare posteriors of real stars (sedflow run output) with spectroscopic labels.
    CompareLabels(compare::CompareArgs),
    /// Fit the empirical calibration of the forward model on labelled stars and validate it.
    Calibrate(calibrate::CalibrateArgs),
    /// The survey pipeline: Parquet catalogues (local or S3) -> per-star posteriors.
    Run(run::RunArgs),
    /// Figures (PNG or SVG): Kiel diagram, one star's corner plot and SED, coverage,
    /// calibration residuals.
    Plot(plot::PlotArgs),
    /// One self-contained HTML page summarising a finished run.
    Report(report::ReportArgs),
}

/// Parse the command line and run; returns the process exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    alloc::tune(match cli.command {
        Command::Run(_) => alloc::Workload::Pipeline,
        _ => alloc::Workload::Tensors,
    });
    match cli.command {
        Command::Forward(a) => forward::run(a),
        Command::ForwardCheck(a) => forward::check(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Mcmc(a) => mcmc::run(a),
        Command::CompareLabels(a) => compare::run(a),
        Command::ComparePosteriors(a) => compare_posteriors::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Run(a) => run::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Report(a) => report::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue22_train_needs_an_explicit_out() {
        let e = Cli::try_parse_from(["sedflow", "train"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--out"), "{e}");
        assert!(Cli::try_parse_from(["sedflow", "train", "--out", "m"]).is_ok());
    }
}
