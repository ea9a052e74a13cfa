//! Command-line interface: clap definitions and one function per subcommand.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
#[command(
    name = "sedflow",
    version,
    about,
    long_about = None,
    subcommand_help_heading = "User commands"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // user commands first, then the developer tools (DEVELOPER_TOOLS)
    /// The survey pipeline: Parquet catalogues (local or S3) -> per-star posteriors.
    Run(run::RunArgs),
    /// Figures (PNG or SVG): Kiel diagram, one star's corner plot and SED, coverage,
    /// calibration residuals.
    Plot(plot::PlotArgs),
    /// One self-contained HTML page summarising a finished run.
    Report(report::ReportArgs),
    /// Predict apparent magnitudes from (Teff, log g, [M/H], A_V, R_V, distance).
    Forward(forward::ForwardArgs),
    /// Reference ensemble MCMC: a catalogue through the pipeline (or one star as JSON).
    Mcmc(mcmc::McmcArgs),
    /// Write a simulated catalogue (pipeline input contract + truth columns).
    Simulate(simulate::SimulateArgs),
    /// Train the neural posterior on simulations from the forward model.
    Train(train::TrainArgs),
    /// Fit the empirical calibration of the forward model on labelled stars and validate it.
    Calibrate(calibrate::CalibrateArgs),
    /// Compare posteriors with the truth on held-out simulated stars (and with MCMC).
    Evaluate(evaluate::EvaluateArgs),
    /// Benchmarks (forward-model throughput, ...).
    Bench(bench::BenchArgs),
    /// Compare two posterior tables star by star, in widths of the reference's intervals.
    ComparePosteriors(compare_posteriors::ComparePosteriorsArgs),
    /// Compare posteriors of real stars (sedflow run output) with spectroscopic labels.
    CompareLabels(compare::CompareArgs),
    /// Check the forward model's interpolation and extinction against direct integration.
    ForwardCheck(forward::CheckArgs),
}

/// The developer tools: they make and check the model (training, calibration, evaluation,
/// benchmarks, comparisons). The help lists them apart from the user commands.
const DEVELOPER_TOOLS: [&str; 7] = [
    "train",
    "calibrate",
    "evaluate",
    "bench",
    "compare-posteriors",
    "compare-labels",
    "forward-check",
];

/// The command line: the user commands under their heading, the developer tools hidden
/// from that list and listed after it under their own (clap 4 has one heading for all
/// subcommands).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let mut tools = String::from("Developer tools (sedflow <TOOL> --help):\n");
    for name in DEVELOPER_TOOLS {
        let about = cmd
            .find_subcommand(name)
            .and_then(|c| c.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        tools.push_str(&format!(
            "  {name:<20} {}\n",
            about.lines().next().unwrap_or("")
        ));
        cmd = cmd.mut_subcommand(name, |c| c.hide(true));
    }
    cmd.after_help(tools)
}

/// Parse the command line and run; returns the process exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
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
    fn help_lists_user_commands_apart_from_developer_tools() {
        let help = command().render_help().to_string();
        let (users, tools) = help.split_once("Developer tools").expect("two lists");
        for c in ["run", "plot", "report", "forward", "mcmc", "simulate"] {
            assert!(
                users.contains(&format!("  {c} ")),
                "{c} not a user command:\n{help}"
            );
        }
        for t in DEVELOPER_TOOLS {
            assert!(
                !users.contains(&format!("  {t} ")),
                "{t} listed as a user command"
            );
            assert!(tools.contains(&format!("  {t} ")), "{t} missing:\n{help}");
        }
        // hidden from the list, still runnable
        assert!(Cli::try_parse_from(["sedflow", "bench", "--help"])
            .is_err_and(|e| { e.kind() == clap::error::ErrorKind::DisplayHelp }));
    }

    #[test]
    fn issue22_train_needs_an_explicit_out() {
        let e = Cli::try_parse_from(["sedflow", "train"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--out"), "{e}");
        assert!(Cli::try_parse_from(["sedflow", "train", "--out", "m"]).is_ok());
    }
}
