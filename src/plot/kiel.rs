//! `sedflow plot kiel`: Teff vs log g of a run's posterior medians as a 2-D histogram (log
//! counts, or the mean [M/H] per cell), flagged stars in a panel of their own. The posterior
//! tables are streamed twice (ranges, then counts), so memory does not grow with the run.

use super::canvas::{plot_err, text, Figure};
use super::palette;
use crate::io::columns::for_each_batch;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::PathBuf;

/// What the cells show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KielColour {
    /// Stars per cell (log scale).
    Density,
    /// Mean posterior-median [M/H] of the stars in the cell.
    Metallicity,
}

/// Cells along Teff and log g.
pub const BINS: (usize, usize) = (90, 70);

/// Star counts (and summed [M/H]) on a regular grid in (Teff, log g).
#[derive(Clone, Debug)]
pub struct Grid {
    /// Teff range \[K\] of the grid (low, high).
    pub teff: (f64, f64),
    /// log g range of the grid (low, high).
    pub logg: (f64, f64),
    /// Stars per cell, Teff-major (`i * BINS.1 + j`).
    pub count: Vec<u32>,
    /// Sum of [M/H] over the stars with a finite [M/H], per cell.
    pub sum_mh: Vec<f64>,
    /// Stars with a finite [M/H], per cell.
    pub n_mh: Vec<u32>,
}

impl Grid {
    fn new(teff: (f64, f64), logg: (f64, f64)) -> Grid {
        let n = BINS.0 * BINS.1;
        Grid {
            teff,
            logg,
            count: vec![0; n],
            sum_mh: vec![0.0; n],
            n_mh: vec![0; n],
        }
    }

    fn cell(&self, teff: f64, logg: f64) -> usize {
        let frac = |v: f64, (lo, hi): (f64, f64), n: usize| {
            (((v - lo) / (hi - lo) * n as f64) as usize).min(n - 1)
        };
        frac(teff, self.teff, BINS.0) * BINS.1 + frac(logg, self.logg, BINS.1)
    }

    fn add(&mut self, teff: f64, logg: f64, mh: f64) {
        let c = self.cell(teff, logg);
        self.count[c] += 1;
        if mh.is_finite() {
            self.sum_mh[c] += mh;
            self.n_mh[c] += 1;
        }
    }

    /// Stars on the grid.
    pub fn total(&self) -> u64 {
        self.count.iter().map(|&c| c as u64).sum()
    }

    /// Cell bounds (teff0, teff1, logg0, logg1) of cell (i, j).
    fn bounds(&self, i: usize, j: usize) -> (f64, f64, f64, f64) {
        let dt = (self.teff.1 - self.teff.0) / BINS.0 as f64;
        let dg = (self.logg.1 - self.logg.0) / BINS.1 as f64;
        (
            self.teff.0 + i as f64 * dt,
            self.teff.0 + (i + 1) as f64 * dt,
            self.logg.0 + j as f64 * dg,
            self.logg.0 + (j + 1) as f64 * dg,
        )
    }
}

/// The binned Kiel diagram of a run.
#[derive(Clone, Debug)]
pub struct KielData {
    /// Stars whose flags share no bit with the mask.
    pub good: Grid,
    /// Stars with a flag in the mask.
    pub flagged: Grid,
    /// Rows without a finite Teff and log g median (no posterior).
    pub missing: u64,
    /// Smallest and largest Teff median over the stars drawn \[K\].
    pub teff_data: (f64, f64),
    /// Smallest and largest log g median over the stars drawn.
    pub logg_data: (f64, f64),
    /// Flag bits that put a star in the flagged panel.
    pub flag_mask: u64,
    /// What the cells show.
    pub colour: KielColour,
}

const COLUMNS: [&str; 4] = ["teff_p50", "logg_p50", "mh_p50", "flags"];

/// Padding of the axes beyond the data, as a fraction of the data's span.
pub const PAD: f64 = 0.03;

/// The data range widened by [`PAD`] on each side (and to a minimal span for one star).
pub fn padded((lo, hi): (f64, f64), min_span: f64) -> (f64, f64) {
    let span = (hi - lo).max(min_span);
    let mid = 0.5 * (lo + hi);
    let half = 0.5 * span * (1.0 + 2.0 * PAD);
    (mid - half, mid + half)
}

/// Stream the posterior tables twice: the ranges of the medians, then the counts.
pub fn kiel_data(files: &[PathBuf], flag_mask: u64, colour: KielColour) -> Result<KielData> {
    let (mut teff, mut logg) = (
        (f64::INFINITY, -f64::INFINITY),
        (f64::INFINITY, -f64::INFINITY),
    );
    let mut missing = 0u64;
    for f in files {
        for_each_batch(f, &COLUMNS, |b| {
            for (t, g) in b.f64("teff_p50")?.into_iter().zip(b.f64("logg_p50")?) {
                if t.is_finite() && g.is_finite() {
                    teff = (teff.0.min(t), teff.1.max(t));
                    logg = (logg.0.min(g), logg.1.max(g));
                } else {
                    missing += 1;
                }
            }
            Ok(())
        })?;
    }
    if teff.0 > teff.1 {
        // no star has a posterior: an empty diagram over the model's range
        teff = (3500.0, 10000.0);
        logg = (0.0, 5.0);
    }
    let (gt, gg) = (padded(teff, 100.0), padded(logg, 0.2));
    let (mut good, mut flagged) = (Grid::new(gt, gg), Grid::new(gt, gg));
    for f in files {
        for_each_batch(f, &COLUMNS, |b| {
            let (t, g, m) = (b.f64("teff_p50")?, b.f64("logg_p50")?, b.f64("mh_p50")?);
            for (k, fl) in b.i64("flags")?.into_iter().enumerate() {
                if !(t[k].is_finite() && g[k].is_finite()) {
                    continue;
                }
                let grid = if fl.unwrap_or(0) as u64 & flag_mask != 0 {
                    &mut flagged
                } else {
                    &mut good
                };
                grid.add(t[k], g[k], m[k]);
            }
            Ok(())
        })?;
    }
    Ok(KielData {
        good,
        flagged,
        missing,
        teff_data: teff,
        logg_data: logg,
        flag_mask,
        colour,
    })
}

/// The axes a Kiel panel was drawn with, as (left, right) and (top, bottom) values: Teff
/// decreasing to the right, log g increasing downwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KielAxes {
    /// Teff at the left and right edges \[K\].
    pub teff: (f64, f64),
    /// log g at the top and bottom edges.
    pub logg: (f64, f64),
}

impl Figure for KielData {
    type Out = KielAxes;

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<KielAxes> {
        let (panels, bar) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 110);
        let halves = panels.split_evenly((1, 2));
        let scale = self.colour_scale();
        let mut axes = None;
        for (half, (grid, what)) in halves
            .iter()
            .zip([(&self.good, "unflagged"), (&self.flagged, "flagged")])
        {
            let title = format!("{what}: {} stars", grid.total());
            axes = Some(draw_panel(half, grid, &title, self.colour, scale)?);
        }
        let label = match self.colour {
            KielColour::Density => "stars per cell",
            KielColour::Metallicity => "mean [M/H] [dex]",
        };
        palette::colour_bar(&bar, scale, self.colour == KielColour::Density, label)?;
        Ok(axes.expect("two panels"))
    }
}

impl KielData {
    /// The colour scale's range: counts (log) or [M/H].
    fn colour_scale(&self) -> (f64, f64) {
        match self.colour {
            KielColour::Density => {
                let max = self
                    .good
                    .count
                    .iter()
                    .chain(&self.flagged.count)
                    .copied()
                    .max()
                    .unwrap_or(1);
                (1.0, (max as f64).max(2.0))
            }
            KielColour::Metallicity => (-2.0, 0.5),
        }
    }
}

/// One panel: the grid's non-empty cells on reversed axes.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    grid: &Grid,
    title: &str,
    colour: KielColour,
    scale: (f64, f64),
) -> Result<KielAxes> {
    let axes = KielAxes {
        teff: (grid.teff.1, grid.teff.0),
        logg: (grid.logg.0, grid.logg.1),
    };
    // plotters maps a range linearly from its start to its end, so a range written from
    // high to low draws that axis reversed
    let mut chart = ChartBuilder::on(area)
        .caption(title, text(18.0))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(axes.teff.0..axes.teff.1, axes.logg.1..axes.logg.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("Teff [K]")
        .y_desc("log g [dex]")
        .label_style(text(13.0))
        .axis_desc_style(text(15.0))
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_err)?;
    let cells = (0..BINS.0).flat_map(|i| (0..BINS.1).map(move |j| (i, j)));
    chart
        .draw_series(cells.filter_map(|(i, j)| {
            let c = i * BINS.1 + j;
            let value = match colour {
                KielColour::Density if grid.count[c] > 0 => grid.count[c] as f64,
                KielColour::Metallicity if grid.n_mh[c] > 0 => grid.sum_mh[c] / grid.n_mh[c] as f64,
                _ => return None,
            };
            let (t0, t1, g0, g1) = grid.bounds(i, j);
            let col = palette::colour(value, scale, colour == KielColour::Density);
            Some(Rectangle::new([(t0, g0), (t1, g1)], col.filled()))
        }))
        .map_err(plot_err)?;
    Ok(axes)
}
