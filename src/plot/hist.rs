//! Histograms of posterior-table columns (parameter medians, n_eff, sample efficiency),
//! streamed twice over the tables (ranges, then counts): memory does not grow with the run.

use super::canvas::{plot_err, text, Figure};
use super::kiel::padded;
use super::palette::SERIES;
use crate::io::columns::for_each_batch;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::PathBuf;

/// Bins per histogram.
pub(crate) const BINS: usize = 40;

/// A column to histogram.
#[derive(Clone, Debug)]
pub(crate) struct HistSpec {
    /// Column name in the posterior table.
    pub(crate) column: String,
    /// Axis label, with units.
    pub(crate) label: String,
    /// Bin log10 of the values (positive values only).
    pub(crate) log10: bool,
}

impl HistSpec {
    /// A column binned linearly.
    pub(crate) fn linear(column: &str, label: &str) -> HistSpec {
        HistSpec {
            column: column.into(),
            label: label.into(),
            log10: false,
        }
    }

    /// A column binned in log10.
    pub(crate) fn log(column: &str, label: &str) -> HistSpec {
        HistSpec {
            column: column.into(),
            label: label.into(),
            log10: true,
        }
    }

    fn value(&self, v: f64) -> Option<f64> {
        let x = if self.log10 { v.log10() } else { v };
        x.is_finite().then_some(x)
    }
}

/// One histogram.
#[derive(Clone, Debug)]
pub(crate) struct Hist {
    /// What was binned.
    pub(crate) spec: HistSpec,
    /// Range of the bins.
    pub(crate) range: (f64, f64),
    /// Counts per bin.
    pub(crate) counts: Vec<u64>,
}

/// The posterior's parameter medians, with units.
pub(crate) fn parameter_specs() -> Vec<HistSpec> {
    vec![
        HistSpec::linear("teff_p50", "Teff [K]"),
        HistSpec::linear("logg_p50", "log g [dex]"),
        HistSpec::linear("mh_p50", "[M/H] [dex]"),
        HistSpec::linear("av_p50", "A_V [mag]"),
        HistSpec::linear("rv_p50", "R_V"),
        HistSpec::log("distance_p50", "log10 distance [pc]"),
    ]
}

/// Sampling diagnostics.
pub(crate) fn diagnostic_specs() -> Vec<HistSpec> {
    vec![
        HistSpec::linear("sample_efficiency", "sample efficiency (n_eff / n_samples)"),
        HistSpec::log("n_eff", "log10 n_eff"),
    ]
}

/// Histograms of `specs` over the posterior tables `files`.
pub(crate) fn histograms(files: &[PathBuf], specs: &[HistSpec]) -> Result<Vec<Hist>> {
    let cols: Vec<&str> = specs.iter().map(|s| s.column.as_str()).collect();
    let mut data = vec![(f64::INFINITY, -f64::INFINITY); specs.len()];
    for f in files {
        for_each_batch(f, &cols, |b| {
            for (k, s) in specs.iter().enumerate() {
                for v in b.f64(&s.column)? {
                    if let Some(x) = s.value(v) {
                        data[k] = (data[k].0.min(x), data[k].1.max(x));
                    }
                }
            }
            Ok(())
        })?;
    }
    let mut hists: Vec<Hist> = specs
        .iter()
        .zip(data)
        .map(|(s, d)| {
            let d = if d.0 > d.1 { (0.0, 1.0) } else { d };
            Hist {
                spec: s.clone(),
                range: padded(d, 1e-3 * d.1.abs().max(1e-3)),
                counts: vec![0; BINS],
            }
        })
        .collect();
    for f in files {
        for_each_batch(f, &cols, |b| {
            for h in hists.iter_mut() {
                for v in b.f64(&h.spec.column)? {
                    if let Some(x) = h.spec.value(v) {
                        let (lo, hi) = h.range;
                        let i = (((x - lo) / (hi - lo) * BINS as f64) as usize).min(BINS - 1);
                        h.counts[i] += 1;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(hists)
}

/// Histograms drawn as a grid of panels, `columns` per row.
pub(crate) struct HistGrid {
    /// The histograms.
    pub(crate) hists: Vec<Hist>,
    /// Panels per row.
    pub(crate) columns: usize,
}

/// The axes one panel was drawn with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct HistAxes {
    /// x range.
    pub(crate) x: (f64, f64),
    /// Top of the y axis (counts).
    pub(crate) y_max: f64,
}

impl Figure for HistGrid {
    type Out = Vec<HistAxes>;

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<Vec<HistAxes>> {
        let rows = self.hists.len().div_ceil(self.columns.max(1));
        let panels = area.split_evenly((rows, self.columns.max(1)));
        self.hists
            .iter()
            .zip(panels.iter())
            .enumerate()
            .map(|(k, (h, p))| draw_hist(p, h, SERIES[k % SERIES.len()]))
            .collect()
    }
}

fn draw_hist<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    h: &Hist,
    colour: RGBColor,
) -> Result<HistAxes> {
    let y_max = (*h.counts.iter().max().unwrap_or(&1)).max(1) as f64 * 1.08;
    let axes = HistAxes { x: h.range, y_max };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(h.range.0..h.range.1, 0.0..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(h.spec.label.as_str())
        .y_desc("stars")
        .label_style(text(12.0))
        .axis_desc_style(text(14.0))
        .x_labels(5)
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_err)?;
    let w = (h.range.1 - h.range.0) / BINS as f64;
    chart
        .draw_series(
            h.counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| {
                    let x0 = h.range.0 + i as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w, c as f64)], colour.filled())
                }),
        )
        .map_err(plot_err)?;
    Ok(axes)
}
