//! `sedflow plot KIND`: one figure (PNG or SVG by the output's extension) from a run's
//! output, `sedflow evaluate`'s report or `sedflow calibrate`'s per-star table.

use crate::io::posteriors::posterior_files;
use crate::plot::canvas::render_to_file;
use crate::plot::kiel::{kiel_data, KielColour};
use crate::plot::parse_flag_mask;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `sedflow plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    #[command(subcommand)]
    kind: PlotKind,
}

#[derive(Subcommand, Debug)]
enum PlotKind {
    /// Teff vs log g of a run's posterior medians, flagged stars apart.
    Kiel(KielArgs),
    /// One star of a run written with --write-samples: corner plot and SED with residuals.
    Star(StarArgs),
    /// Observed vs nominal coverage of central intervals, from `sedflow evaluate --report`.
    Coverage(CoverageArgs),
    /// Residuals vs Teff per band, raw and calibrated, from `sedflow calibrate --per-star`.
    Calibration(CalibrationArgs),
}

/// Arguments of `sedflow plot coverage`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow evaluate --stars 2000 --seed 7 --likelihood-consistent --report work/eval.json\n  sedflow plot coverage work/eval.json --output coverage.png"
)]
pub struct CoverageArgs {
    /// The JSON report of `sedflow evaluate --report`.
    report: PathBuf,
    /// Output image (.png or .svg).
    #[arg(long, short)]
    output: PathBuf,
    /// Groups of the report, one panel each (comma-separated).
    #[arg(long, default_value = "overall,with parallax,without parallax")]
    groups: String,
    /// Image width [px].
    #[arg(long, default_value_t = 1500)]
    width: u32,
    /// Image height [px].
    #[arg(long, default_value_t = 520)]
    height: u32,
}

/// Arguments of `sedflow plot calibration`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow calibrate --stars ../shared/data/calibration/benchmark_stars.parquet \\\n      --output work/cal/calibration.json --per-star work/cal/per_star.parquet\n  sedflow plot calibration work/cal/per_star.parquet --output calibration.png"
)]
pub struct CalibrationArgs {
    /// The per-star table of `sedflow calibrate --per-star` (CSV or Parquet).
    per_star: PathBuf,
    /// Output image (.png or .svg).
    #[arg(long, short)]
    output: PathBuf,
    /// Only these bands (comma-separated; default: every band in the table).
    #[arg(long)]
    bands: Option<String>,
    /// Panels per row.
    #[arg(long, default_value_t = 4)]
    columns: usize,
    /// Image width [px].
    #[arg(long, default_value_t = 1500)]
    width: u32,
    /// Image height [px] (default: 300 per row of panels).
    #[arg(long)]
    height: Option<u32>,
}

/// Arguments of `sedflow plot kiel`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow plot kiel posteriors/ --output kiel.png --colour metallicity"
)]
pub struct KielArgs {
    /// A run's output directory (its posterior tables) or one posterior file.
    run: PathBuf,
    /// Output image (.png or .svg).
    #[arg(long, short)]
    output: PathBuf,
    /// What the cells show.
    #[arg(long, value_enum, default_value_t = KielColour::Density)]
    colour: KielColour,
    /// Flags that put a star in the flagged panel: names or bit values, comma-separated, or
    /// `all`.
    #[arg(long, default_value = "all")]
    flags: String,
    /// Image width [px].
    #[arg(long, default_value_t = 1200)]
    width: u32,
    /// Image height [px].
    #[arg(long, default_value_t = 520)]
    height: u32,
}

/// Arguments of `sedflow plot star`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sedflow run --input examples/catalogue.parquet --output posteriors/ --write-samples 1000\n  sedflow plot star posteriors/ --source-id 17 --output star17.png\n\nThe star's magnitudes are read from the run's input with the run's configuration (both\nrecorded in the posterior table's metadata); the model magnitudes are the forward model's\n(with its calibration) at each draw."
)]
pub struct StarArgs {
    /// A run's output directory written with --write-samples.
    run: PathBuf,
    /// The star.
    #[arg(long)]
    source_id: i64,
    /// A reference output directory with samples (`sedflow mcmc ... --write-samples K`),
    /// drawn in the corner plot too.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Output image (.png or .svg).
    #[arg(long, short)]
    output: PathBuf,
    /// Image width [px].
    #[arg(long, default_value_t = 1500)]
    width: u32,
    /// Image height [px].
    #[arg(long, default_value_t = 860)]
    height: u32,
}

/// Run `sedflow plot`.
pub fn run(a: PlotArgs) -> Result<i32> {
    match a.kind {
        PlotKind::Kiel(k) => kiel(k),
        PlotKind::Star(s) => star(s),
        PlotKind::Coverage(c) => coverage(c),
        PlotKind::Calibration(c) => calibration(c),
    }
}

fn kiel(a: KielArgs) -> Result<i32> {
    let files = posterior_files(&a.run)?;
    let data = kiel_data(&files, parse_flag_mask(&a.flags)?, a.colour)?;
    let axes = render_to_file(&data, (a.width, a.height), &a.output)?;
    say(format!(
        "sedflow plot kiel: {} unflagged, {} flagged, {} without a posterior; Teff {:.0}..{:.0} K, log g {:.2}..{:.2} -> {}",
        data.good.total(),
        data.flagged.total(),
        data.missing,
        axes.teff.0,
        axes.teff.1,
        axes.logg.0,
        axes.logg.1,
        a.output.display()
    ))?;
    Ok(0)
}

fn star(a: StarArgs) -> Result<i32> {
    let fig = crate::plot::star::star_figure(&a.run, a.source_id, a.reference.as_deref())?;
    let axes = render_to_file(&fig, (a.width, a.height), &a.output)?;
    say(format!(
        "sedflow plot star {}: {} draws{}, {} bands; Teff axis {:.0}..{:.0} K -> {}",
        a.source_id,
        fig.draws.len(),
        fig.reference
            .as_ref()
            .map(|r| format!(" ({} reference draws)", r.len()))
            .unwrap_or_default(),
        fig.sed.len(),
        axes.params[0].0,
        axes.params[0].1,
        a.output.display()
    ))?;
    for s in &fig.sed {
        say(format!(
            "  {:<12} {:>8.3} +- {:.3}  model {:>8.3} [{:.3}, {:.3}]  residual {:+.3}",
            s.band,
            s.mag,
            s.err,
            s.predicted[1],
            s.predicted[0],
            s.predicted[2],
            s.mag - s.predicted[1]
        ))?;
    }
    Ok(0)
}

fn coverage(a: CoverageArgs) -> Result<i32> {
    use crate::plot::coverage::{read_coverage, CoverageFigure, LEVELS};
    let names: Vec<String> = a.groups.split(',').map(|s| s.trim().to_string()).collect();
    let fig = CoverageFigure {
        groups: read_coverage(&a.report, &names)?,
    };
    render_to_file(&fig, (a.width, a.height), &a.output)?;
    say(format!("sedflow plot coverage -> {}", a.output.display()))?;
    for g in &fig.groups {
        for p in &g.params {
            say(format!(
                "  {:<18} {:<9} n {:>6}: {}",
                g.group,
                p.param,
                g.n,
                LEVELS
                    .iter()
                    .zip(p.observed)
                    .map(|(l, o)| format!("{l:.2} -> {o:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
        }
    }
    Ok(0)
}

fn calibration(a: CalibrationArgs) -> Result<i32> {
    use crate::plot::calibration::{read_residuals, CalibrationFigure};
    let mut bands = read_residuals(&a.per_star)?;
    if let Some(list) = &a.bands {
        let want: Vec<&str> = list.split(',').map(str::trim).collect();
        for w in &want {
            if !bands.iter().any(|b| b.band == *w) {
                anyhow::bail!("{}: no residuals of band {w}", a.per_star.display());
            }
        }
        bands.retain(|b| want.contains(&b.band.as_str()));
    }
    let columns = a.columns.max(1);
    let rows = bands.len().div_ceil(columns) as u32;
    let fig = CalibrationFigure { bands, columns };
    let axes = render_to_file(&fig, (a.width, a.height.unwrap_or(300 * rows)), &a.output)?;
    say(format!(
        "sedflow plot calibration: {} bands; Teff {:.0}..{:.0} K, residuals {:.3}..{:.3} mag -> {}",
        fig.bands.len(),
        axes.teff.0,
        axes.teff.1,
        axes.residual.0,
        axes.residual.1,
        a.output.display()
    ))?;
    Ok(0)
}

/// Print a line; a closed pipe (`| head`) ends the command quietly instead of panicking.
fn say(line: String) -> Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}
