//! `sedflow plot coverage`: observed against nominal coverage of the central posterior
//! intervals (68%, 90%, 95%) per parameter, from `sedflow evaluate --report`'s JSON, one
//! panel per group of stars, with the binomial 1-sigma band of a calibrated posterior.

use super::canvas::{plot_err, text, Figure};
use super::palette::SERIES;
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The nominal levels `evaluate` measures.
pub const LEVELS: [f64; 3] = [0.68, 0.90, 0.95];

/// Coverage of one parameter in one group.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCoverage {
    /// Parameter name.
    pub param: String,
    /// Observed coverage at [`LEVELS`].
    pub observed: [f64; 3],
}

/// One group of `evaluate`'s report.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupCoverage {
    /// Group name (`overall`, `with parallax`, ...).
    pub group: String,
    /// Stars with a posterior.
    pub n: usize,
    /// Per parameter.
    pub params: Vec<ParamCoverage>,
}

/// The groups `names` of the report at `path` (in that order; missing ones are errors).
pub fn read_coverage(path: &Path, names: &[String]) -> Result<Vec<GroupCoverage>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let j: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let groups = j
        .get("groups")
        .and_then(|g| g.as_array())
        .with_context(|| {
            format!(
                "{}: no 'groups' (not a sedflow evaluate report?)",
                path.display()
            )
        })?;
    names
        .iter()
        .map(|name| {
            let g = groups
                .iter()
                .find(|g| g.get("group").and_then(|v| v.as_str()) == Some(name))
                .with_context(|| format!("{}: no group '{name}'", path.display()))?;
            group_of(g, name).with_context(|| format!("{}: group '{name}'", path.display()))
        })
        .collect()
}

fn group_of(g: &serde_json::Value, name: &str) -> Result<GroupCoverage> {
    let params = g
        .get("params")
        .and_then(|p| p.as_array())
        .context("no params")?;
    let mut n = 0;
    let mut out = Vec::new();
    for p in params {
        let num = |k: &str| {
            p.get(k)
                .and_then(|v| v.as_f64())
                .with_context(|| format!("no {k}"))
        };
        n = n.max(num("n")? as usize);
        out.push(ParamCoverage {
            param: p
                .get("param")
                .and_then(|v| v.as_str())
                .context("no param")?
                .to_string(),
            observed: [num("coverage68")?, num("coverage90")?, num("coverage95")?],
        });
    }
    if out.is_empty() {
        bail!("no parameters");
    }
    Ok(GroupCoverage {
        group: name.to_string(),
        n,
        params: out,
    })
}

/// The coverage figure: one panel per group.
pub struct CoverageFigure {
    /// The groups.
    pub groups: Vec<GroupCoverage>,
}

/// The axes of one panel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoverageAxes {
    /// Nominal coverage range (x).
    pub nominal: (f64, f64),
    /// Observed coverage range (y).
    pub observed: (f64, f64),
}

impl CoverageFigure {
    /// Both axes span the levels and every observed value, with a margin.
    fn axes(&self) -> CoverageAxes {
        let lo = self
            .groups
            .iter()
            .flat_map(|g| g.params.iter().flat_map(|p| p.observed))
            .chain([LEVELS[0]])
            .fold(f64::INFINITY, f64::min);
        let lo = ((lo - 0.05) * 20.0).floor() / 20.0;
        CoverageAxes {
            nominal: (lo, 1.0),
            observed: (lo, 1.0),
        }
    }
}

impl Figure for CoverageFigure {
    type Out = CoverageAxes;

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<CoverageAxes> {
        let axes = self.axes();
        let panels = area.split_evenly((1, self.groups.len().max(1)));
        for (g, p) in self.groups.iter().zip(panels.iter()) {
            draw_group(p, g, axes)?;
        }
        Ok(axes)
    }
}

fn draw_group<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    g: &GroupCoverage,
    axes: CoverageAxes,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({} stars)", g.group, g.n), text(16.0))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(
            axes.nominal.0..axes.nominal.1,
            axes.observed.0..axes.observed.1,
        )
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("nominal coverage of the central interval")
        .y_desc("observed coverage")
        .label_style(text(12.0))
        .axis_desc_style(text(14.0))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    // a calibrated posterior's coverage over n stars scatters by sqrt(p (1 - p) / n)
    let n = g.n.max(1) as f64;
    let steps = 50;
    let band: Vec<(f64, f64, f64)> = (0..=steps)
        .map(|k| {
            let p = axes.nominal.0 + (axes.nominal.1 - axes.nominal.0) * k as f64 / steps as f64;
            let s = (p * (1.0 - p) / n).sqrt();
            (p, p - s, p + s)
        })
        .collect();
    let poly: Vec<(f64, f64)> = band
        .iter()
        .map(|b| (b.0, b.1))
        .chain(band.iter().rev().map(|b| (b.0, b.2)))
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(
            poly,
            BLACK.mix(0.12).filled(),
        )))
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            [(axes.nominal.0, axes.nominal.0), (1.0, 1.0)],
            BLACK.mix(0.6),
        ))
        .map_err(plot_err)?
        .label("nominal (+-1 sigma for n stars)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.6)));
    for (k, p) in g.params.iter().enumerate() {
        let c = SERIES[k % SERIES.len()];
        let pts: Vec<(f64, f64)> = LEVELS.iter().copied().zip(p.observed).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(p.param.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&xy| Circle::new(xy, 4, c.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .label_font(text(12.0))
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}
