//! `sedflow plot calibration`: per-band magnitude residuals (observed - model at the star's
//! recovered parameters) against label Teff, raw model and calibrated, from `sedflow
//! calibrate --per-star`'s table; one panel per band with binned medians.

use super::canvas::{plot_err, text, Figure};
use super::palette::SERIES;
use crate::io::table::read_numeric;
use crate::util::stats::median;
use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One band's residuals.
#[derive(Clone, Debug)]
pub struct BandResiduals {
    /// Band name.
    pub band: String,
    /// (label Teff, raw residual, calibrated residual) of the stars with both.
    pub points: Vec<(f64, f64, f64)>,
}

/// The per-star table's residuals, band by band (columns `resid_{band}_raw` and
/// `resid_{band}_cal`, label Teff `teff`).
pub fn read_residuals(path: &Path) -> Result<Vec<BandResiduals>> {
    let (names, cols) = read_numeric(path)?;
    let Some(teff) = cols.get("teff") else {
        bail!(
            "{}: no column 'teff' (not a `sedflow calibrate --per-star` table?)",
            path.display()
        );
    };
    let mut out = Vec::new();
    for n in &names {
        let Some(band) = n
            .strip_prefix("resid_")
            .and_then(|b| b.strip_suffix("_raw"))
        else {
            continue;
        };
        let (Some(raw), Some(cal)) = (cols.get(n), cols.get(&format!("resid_{band}_cal"))) else {
            continue;
        };
        let points = (0..teff.len())
            .filter(|&i| teff[i].is_finite() && raw[i].is_finite() && cal[i].is_finite())
            .map(|i| (teff[i], raw[i], cal[i]))
            .collect();
        out.push(BandResiduals {
            band: band.to_string(),
            points,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no resid_<band>_raw / resid_<band>_cal columns",
            path.display()
        );
    }
    Ok(out)
}

/// Quantile `q` of `v` (sorted copy; NaN if empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

/// The calibration figure.
pub struct CalibrationFigure {
    /// Bands, one panel each.
    pub bands: Vec<BandResiduals>,
    /// Panels per row.
    pub columns: usize,
}

/// The axes every panel shares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationAxes {
    /// Teff at the left and right edges \[K\] (hot on the left).
    pub teff: (f64, f64),
    /// Residual range \[mag\]: the 0.5-99.5 percentiles of all residuals, raw and calibrated,
    /// widened by 10% (stars beyond are drawn at the edge).
    pub residual: (f64, f64),
}

/// Residuals beyond the central 99% are drawn at the axis edge rather than stretching it.
const TAIL: f64 = 0.005;

impl CalibrationFigure {
    /// The shared axes.
    pub fn axes(&self) -> CalibrationAxes {
        let teff: Vec<f64> = self
            .bands
            .iter()
            .flat_map(|b| b.points.iter().map(|p| p.0))
            .collect();
        let res: Vec<f64> = self
            .bands
            .iter()
            .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2]))
            .collect();
        let (t0, t1) = (
            teff.iter().copied().fold(f64::INFINITY, f64::min),
            teff.iter().copied().fold(-f64::INFINITY, f64::max),
        );
        let (r0, r1) = (quantile(&res, TAIL), quantile(&res, 1.0 - TAIL));
        let (t0, t1) = if t0 <= t1 { (t0, t1) } else { (4000.0, 7000.0) };
        let (r0, r1) = if r0 < r1 { (r0, r1) } else { (-0.1, 0.1) };
        let (tp, rp) = (0.03 * (t1 - t0).max(100.0), 0.1 * (r1 - r0));
        CalibrationAxes {
            teff: (t1 + tp, t0 - tp),
            residual: (r0 - rp, r1 + rp),
        }
    }
}

impl Figure for CalibrationFigure {
    type Out = CalibrationAxes;

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<CalibrationAxes> {
        let axes = self.axes();
        let cols = self.columns.max(1);
        let panels = area.split_evenly((self.bands.len().div_ceil(cols), cols));
        for (b, p) in self.bands.iter().zip(panels.iter()) {
            draw_band(p, b, axes)?;
        }
        Ok(axes)
    }
}

/// Medians of the residuals in 12 Teff bins (bins with at least 5 stars).
fn binned_medians(points: &[(f64, f64, f64)], axes: CalibrationAxes, cal: bool) -> Vec<(f64, f64)> {
    let (lo, hi) = (axes.teff.1, axes.teff.0);
    let n = 12;
    (0..n)
        .filter_map(|k| {
            let (a, b) = (
                lo + (hi - lo) * k as f64 / n as f64,
                lo + (hi - lo) * (k + 1) as f64 / n as f64,
            );
            let v: Vec<f64> = points
                .iter()
                .filter(|p| p.0 >= a && p.0 < b)
                .map(|p| if cal { p.2 } else { p.1 })
                .collect();
            (v.len() >= 5).then(|| (0.5 * (a + b), median(&v)))
        })
        .collect()
}

fn draw_band<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    b: &BandResiduals,
    axes: CalibrationAxes,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({} stars)", b.band, b.points.len()), text(14.0))
        .margin(6)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(axes.teff.0..axes.teff.1, axes.residual.0..axes.residual.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("label Teff [K]")
        .y_desc("obs - model [mag]")
        .label_style(text(11.0))
        .axis_desc_style(text(12.0))
        .x_labels(4)
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_err)?;
    let clip = |r: f64| r.clamp(axes.residual.0, axes.residual.1);
    chart
        .draw_series(LineSeries::new(
            [(axes.teff.0, 0.0), (axes.teff.1, 0.0)],
            BLACK.mix(0.5),
        ))
        .map_err(plot_err)?;
    let (raw, cal) = (SERIES[6], SERIES[0]);
    for (is_cal, c) in [(false, raw), (true, cal)] {
        chart
            .draw_series(b.points.iter().map(|p| {
                Circle::new(
                    (p.0, clip(if is_cal { p.2 } else { p.1 })),
                    1,
                    c.mix(0.3).filled(),
                )
            }))
            .map_err(plot_err)?;
    }
    for (is_cal, c, label) in [
        (false, SERIES[1], "raw, binned median"),
        (true, SERIES[2], "calibrated, binned median"),
    ] {
        chart
            .draw_series(LineSeries::new(
                binned_medians(&b.points, axes, is_cal),
                c.stroke_width(3),
            ))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font(text(10.0))
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}
