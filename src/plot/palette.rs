//! Colours shared by the figures: viridis for continuous values (linear or log), a fixed
//! qualitative cycle for series, and a vertical colour bar.

use super::canvas::{plot_err, text};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

/// Series colours (Okabe & Ito's colour-blind-safe palette).
pub(crate) const SERIES: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
];

/// Position of `v` in `(lo, hi)` in [0, 1], on a log scale if `log`.
fn fraction(v: f64, (lo, hi): (f64, f64), log: bool) -> f64 {
    let f = if log {
        (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())
    } else {
        (v - lo) / (hi - lo)
    };
    if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The viridis colour of `v` on the scale `(lo, hi)`.
pub(crate) fn colour(v: f64, scale: (f64, f64), log: bool) -> RGBColor {
    ViridisRGB::get_color_normalized(fraction(v, scale, log), 0.0, 1.0)
}

/// A vertical colour bar of the scale (a log axis if `log`), labelled, filling `area`.
pub(crate) fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    scale: (f64, f64),
    log: bool,
    label: &str,
) -> Result<()> {
    let n = 64;
    let at = |k: usize| {
        let f = k as f64 / n as f64;
        if log {
            scale.0 * (scale.1 / scale.0).powf(f)
        } else {
            scale.0 + (scale.1 - scale.0) * f
        }
    };
    let steps: Vec<(f64, f64, RGBColor)> = (0..n)
        .map(|k| {
            let mid = if log {
                (at(k) * at(k + 1)).sqrt()
            } else {
                0.5 * (at(k) + at(k + 1))
            };
            (at(k), at(k + 1), colour(mid, scale, log))
        })
        .collect();
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(40)
        .margin_bottom(48)
        .margin_right(8)
        .y_label_area_size(60);
    let rects = |steps: &[(f64, f64, RGBColor)]| {
        steps
            .iter()
            .map(|&(y0, y1, c)| Rectangle::new([(0.0, y0), (1.0, y1)], c.filled()))
            .collect::<Vec<_>>()
    };
    if log {
        let mut chart = builder
            .build_cartesian_2d(0.0..1.0, (scale.0..scale.1).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(label)
            .label_style(text(12.0))
            .axis_desc_style(text(13.0))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(plot_err)?;
        chart.draw_series(rects(&steps)).map_err(plot_err)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(0.0..1.0, scale.0..scale.1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(label)
            .label_style(text(12.0))
            .axis_desc_style(text(13.0))
            .draw()
            .map_err(plot_err)?;
        chart.draw_series(rects(&steps)).map_err(plot_err)?;
    }
    Ok(())
}
