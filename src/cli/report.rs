//! `sedflow report OUTPUT_DIR --html report.html`: the run's report page
//! ([`crate::plot::report`]).

use crate::plot::report::{write_report, ReportOptions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `sedflow report`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow run --input examples/catalogue.parquet --output posteriors/ --write-samples 1000 \\\n      --summary-json posteriors/run-summary.json\n  sedflow report posteriors/ --html report.html\n\nThe worst-fitting stars' plots (runs with --write-samples) go to <page stem>_stars/ next to\nthe page, which links to them."
)]
pub struct ReportArgs {
    /// The run's output directory (local).
    run: PathBuf,
    /// The page to write.
    #[arg(long)]
    html: PathBuf,
    /// The run's summary JSON (`sedflow run --summary-json`); default: run-summary.json in
    /// the output directory, if there.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Stars in each worst-fitting list.
    #[arg(long, default_value_t = 10)]
    worst: usize,
}

/// Run `sedflow report`.
pub fn run(a: ReportArgs) -> Result<i32> {
    let out = write_report(&ReportOptions {
        run: a.run,
        html: a.html.clone(),
        summary: a.summary,
        worst: a.worst,
    })?;
    println!(
        "sedflow report: {} rows, {} images embedded, {} star plots -> {}",
        out.rows,
        out.images,
        out.star_plots.len(),
        a.html.display()
    );
    if let Some(n) = &out.star_plot_note {
        eprintln!("sedflow report: no star plots: {n}");
    }
    Ok(0)
}
