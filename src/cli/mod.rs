//! Command-line interface: clap definitions and one function per subcommand.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod forward;
mod run;

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
    /// The survey pipeline: Parquet catalogues (local or S3) -> per-star posteriors.
    Run(run::RunArgs),
}

/// Parse the command line and run; returns the process exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Forward(a) => forward::run(a),
        Command::ForwardCheck(a) => forward::check(a),
        Command::Bench(a) => bench::run(a),
        Command::Run(a) => run::run(a),
    }
}
