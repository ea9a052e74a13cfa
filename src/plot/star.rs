//! `sedflow plot star`: one star of a run written with `--write-samples`: the corner plot of
//! its posterior draws (and of a reference MCMC's draws), and its SED: the catalogue's
//! magnitudes (read through the run's own ingest and configuration) against the magnitudes
//! the forward model predicts for the draws, with residuals per band.

use super::bands::pivot_wavelength_um;
use super::canvas::{plot_err, text, Figure};
use super::kiel::padded;
use super::palette::SERIES;
use crate::io::columns::{for_each_batch, key_value_metadata};
use crate::io::posteriors::posterior_files;
use crate::likelihood::{NoiseModel, StarObs};
use crate::physics::{ForwardModel, Theta, PARAM_NAMES};
use crate::pipeline::catalogue::scan_catalogue;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::sink::{samples_location, SAMPLES_SUFFIX};
use crate::posterior::band_names;
use crate::prior::reddening::ReddeningModel;
use crate::prior::PriorConfig;
use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Axis labels of the parameters, with units.
pub const PARAM_LABELS: [&str; 6] = [
    "Teff [K]",
    "log g [dex]",
    "[M/H] [dex]",
    "A_V [mag]",
    "R_V",
    "distance [pc]",
];

/// Posterior draws of one star from a run's samples table, with the table it came from.
#[derive(Clone, Debug)]
pub struct StarSamples {
    /// The posterior table the star is in.
    pub posterior_file: PathBuf,
    /// Draws (teff, logg, mh, av, rv, distance).
    pub draws: Vec<[f64; 6]>,
}

/// The draws of the stars `ids` in the samples tables of `run` (a run's output directory).
/// Stars without draws (no posterior) are absent.
pub fn find_samples(run: &Path, ids: &HashSet<i64>) -> Result<HashMap<i64, StarSamples>> {
    let mut out = HashMap::new();
    let mut any_table = false;
    for f in posterior_files(run)? {
        let name = f.file_name().context("posterior file without a name")?;
        let dir = f.parent().unwrap_or(Path::new("."));
        let samples = Path::new(&samples_location(&dir.to_string_lossy())?).join(name);
        if !samples.is_file() {
            continue;
        }
        any_table = true;
        let mut cols = vec!["source_id"];
        cols.extend(PARAM_NAMES);
        for_each_batch(&samples, &cols, |b| {
            for (k, id) in b.i64("source_id")?.into_iter().enumerate() {
                let Some(id) = id.filter(|i| ids.contains(i)) else {
                    continue;
                };
                if let Some(draws) = draws_of_row(b, k)? {
                    out.insert(
                        id,
                        StarSamples {
                            posterior_file: f.clone(),
                            draws,
                        },
                    );
                }
            }
            Ok(())
        })?;
    }
    if !any_table {
        bail!(
            "{}: no samples tables (in <output>{SAMPLES_SUFFIX}/ beside it); rerun with --write-samples K",
            run.display()
        );
    }
    Ok(out)
}

/// Row `k`'s draws from the list columns (None for a null row).
fn draws_of_row(b: &crate::io::columns::ColumnBatch, k: usize) -> Result<Option<Vec<[f64; 6]>>> {
    let mut per_param = Vec::with_capacity(6);
    for p in PARAM_NAMES {
        let list = b
            .array(p)?
            .as_list_opt::<i32>()
            .with_context(|| format!("samples column {p} is not a list"))?;
        if list.is_null(k) {
            return Ok(None);
        }
        let v = list.value(k);
        let v = v
            .as_primitive_opt::<Float32Type>()
            .with_context(|| format!("samples column {p} is not a list of float32"))?;
        per_param.push(v.values().to_vec());
    }
    let n = per_param[0].len();
    Ok(Some(
        (0..n)
            .map(|i| std::array::from_fn(|p| per_param[p][i] as f64))
            .collect(),
    ))
}

/// The run's configuration and forward model, from a posterior table's metadata.
pub struct RunContext {
    /// The input catalogue the table was made from.
    pub input: String,
    /// The run's effective configuration (`sedflow.config`).
    pub config: PipelineConfig,
    /// The forward model the run used (embedded calibrated or raw, by `sedflow.model_id`).
    pub fm: &'static ForwardModel,
}

impl RunContext {
    /// Read the context from `posterior_file`'s metadata.
    pub fn of(posterior_file: &Path) -> Result<RunContext> {
        let meta = key_value_metadata(posterior_file)?;
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("{}: no {k} metadata", posterior_file.display()))
        };
        let config: PipelineConfig = serde_json::from_str(&get("sedflow.config")?)
            .with_context(|| format!("{}: unreadable sedflow.config", posterior_file.display()))?;
        let model_id = get("sedflow.model_id")?;
        let fm = [ForwardModel::embedded(), ForwardModel::embedded_raw()]
            .into_iter()
            .find(|fm| model_id.ends_with(&format!("forward {}", fm.id())))
            .with_context(|| {
                format!(
                    "{}: the run used forward model '{model_id}', not this binary's ({})",
                    posterior_file.display(),
                    ForwardModel::embedded().id()
                )
            })?;
        Ok(RunContext {
            input: get("sedflow.input")?,
            config,
            fm,
        })
    }

    /// The catalogue observations of the stars `ids`, through the run's ingest.
    pub fn observations(&self, ids: &HashSet<i64>) -> Result<HashMap<i64, StarObs>> {
        let reddening =
            ReddeningModel::for_model(&self.config.prior, self.fm, PriorConfig::default().av_max);
        let mut out = HashMap::new();
        scan_catalogue(
            &self.input,
            &self.config,
            &band_names(self.fm),
            &reddening,
            |s| {
                if !s.null_id && ids.contains(&s.obs.source_id) {
                    out.insert(s.obs.source_id, s.obs);
                }
            },
        )?;
        Ok(out)
    }
}

/// One observed band of the SED.
#[derive(Clone, Debug, PartialEq)]
pub struct SedPoint {
    /// Band name.
    pub band: String,
    /// Pivot wavelength \[um\].
    pub wavelength_um: f64,
    /// Observed magnitude.
    pub mag: f64,
    /// The likelihood's error: reported error and the model floor in quadrature \[mag\].
    pub err: f64,
    /// 16th, 50th and 84th percentiles of the predicted magnitude over the draws.
    pub predicted: [f64; 3],
}

/// The SED of `obs` against the forward model's magnitudes for `draws`.
pub fn sed(fm: &ForwardModel, obs: &StarObs, draws: &[[f64; 6]]) -> Result<Vec<SedPoint>> {
    let noise = NoiseModel::default_for(fm);
    let bands: Vec<usize> = obs.phot.iter().map(|m| m.band as usize).collect();
    let thetas: Vec<Theta> = draws.iter().map(|d| Theta::from_array(*d)).collect();
    let mut mags = vec![0f32; thetas.len() * bands.len()];
    fm.magnitudes_many(&thetas, &bands, &mut mags);
    obs.phot
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let name = fm.bands().name(m.band as usize).to_string();
            let mut col: Vec<f64> = mags
                .chunks(bands.len())
                .map(|row| row[k] as f64)
                .filter(|v| v.is_finite())
                .collect();
            col.sort_by(f64::total_cmp);
            let q = |p: f64| {
                if col.is_empty() {
                    f64::NAN
                } else {
                    col[((p * (col.len() - 1) as f64).round() as usize).min(col.len() - 1)]
                }
            };
            let floor = noise.floor[m.band as usize] as f64;
            Ok(SedPoint {
                wavelength_um: pivot_wavelength_um(&name)?,
                band: name,
                mag: m.mag as f64,
                err: (m.err as f64).hypot(floor),
                predicted: [q(0.16), q(0.5), q(0.84)],
            })
        })
        .collect()
}

/// Everything the star figure shows.
pub struct StarFigure {
    /// Star id.
    pub source_id: i64,
    /// The run's draws.
    pub draws: Vec<[f64; 6]>,
    /// The reference MCMC's draws, if given.
    pub reference: Option<Vec<[f64; 6]>>,
    /// Observed against predicted magnitudes.
    pub sed: Vec<SedPoint>,
}

/// The axes the star figure was drawn with.
#[derive(Clone, Debug, PartialEq)]
pub struct StarAxes {
    /// Range of every parameter's corner-plot axis.
    pub params: [(f64, f64); 6],
    /// Wavelength range of the SED \[um\] (log axis).
    pub wavelength_um: (f64, f64),
    /// Magnitude range of the SED (bright at the top).
    pub mag: (f64, f64),
    /// Residual range (observed - predicted median) \[mag\].
    pub residual: (f64, f64),
}

fn range_of<'a>(values: impl Iterator<Item = &'a f64>, min_span: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, -f64::INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    padded((lo, hi), min_span)
}

impl StarFigure {
    fn param_ranges(&self) -> [(f64, f64); 6] {
        const MIN_SPAN: [f64; 6] = [10.0, 0.01, 0.01, 0.01, 0.01, 1.0];
        std::array::from_fn(|p| {
            let all = self
                .draws
                .iter()
                .chain(self.reference.iter().flatten())
                .map(|d| &d[p]);
            range_of(all, MIN_SPAN[p])
        })
    }

    fn sed_ranges(&self) -> ((f64, f64), (f64, f64), (f64, f64)) {
        let (wl_lo, wl_hi) = self.sed.iter().fold((f64::INFINITY, 0.0f64), |(a, b), s| {
            (a.min(s.wavelength_um), b.max(s.wavelength_um))
        });
        let wl = if wl_lo > wl_hi {
            (0.3, 5.0)
        } else {
            (wl_lo / 1.15, wl_hi * 1.15)
        };
        let mags: Vec<f64> = self
            .sed
            .iter()
            .flat_map(|s| [s.mag - s.err, s.mag + s.err, s.predicted[0], s.predicted[2]])
            .collect();
        let res: Vec<f64> = self
            .sed
            .iter()
            .flat_map(|s| {
                let r = s.mag - s.predicted[1];
                [
                    r - s.err,
                    r + s.err,
                    s.predicted[0] - s.predicted[1],
                    s.predicted[2] - s.predicted[1],
                ]
            })
            .collect();
        (wl, range_of(mags.iter(), 0.1), range_of(res.iter(), 0.05))
    }
}

impl Figure for StarFigure {
    type Out = StarAxes;

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<StarAxes> {
        let (w, h) = area.dim_in_pixel();
        let (corner, right) = area.split_horizontally(h.min(w * 3 / 5));
        let title = match self.reference {
            Some(_) => format!(
                "source_id {}: this run (blue), reference (orange)",
                self.source_id
            ),
            None => format!("source_id {}", self.source_id),
        };
        let right = right.titled(&title, text(18.0)).map_err(plot_err)?;
        let (sed_area, res_area) = right.split_vertically(right.dim_in_pixel().1 * 3 / 5);
        let params = self.param_ranges();
        draw_corner(&corner, self, &params)?;
        let (wl, mag, residual) = self.sed_ranges();
        draw_sed(&sed_area, &self.sed, wl, mag)?;
        draw_residuals(&res_area, &self.sed, wl, residual)?;
        Ok(StarAxes {
            params,
            wavelength_um: wl,
            mag,
            residual,
        })
    }
}

const BINS: usize = 30;

fn draw_corner<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &StarFigure,
    ranges: &[(f64, f64); 6],
) -> Result<()> {
    let cells = area.split_evenly((6, 6));
    let sets: Vec<(&Vec<[f64; 6]>, RGBColor)> = std::iter::once((&fig.draws, SERIES[0]))
        .chain(fig.reference.iter().map(|r| (r, SERIES[1])))
        .collect();
    for row in 0..6 {
        for col in 0..=row {
            let cell = &cells[row * 6 + col];
            let (bottom, left) = (row == 5, col == 0);
            let mut b = ChartBuilder::on(cell);
            b.margin(2)
                .x_label_area_size(if bottom { 34 } else { 0 })
                .y_label_area_size(if left { 44 } else { 0 });
            if row == col {
                let hists: Vec<(Vec<f64>, RGBColor)> = sets
                    .iter()
                    .map(|(d, c)| (density(d, row, ranges[row]), *c))
                    .collect();
                let top = hists
                    .iter()
                    .flat_map(|h| h.0.iter().copied())
                    .fold(0.0, f64::max)
                    .max(1e-12)
                    * 1.1;
                let mut chart = b
                    .build_cartesian_2d(ranges[col].0..ranges[col].1, 0.0..top)
                    .map_err(plot_err)?;
                mesh(&mut chart, bottom, false, col, row)?;
                let bw = (ranges[col].1 - ranges[col].0) / BINS as f64;
                for (hist, c) in &hists {
                    let pts = hist
                        .iter()
                        .enumerate()
                        .flat_map(|(i, &v)| {
                            let x0 = ranges[col].0 + i as f64 * bw;
                            [(x0, v), (x0 + bw, v)]
                        })
                        .collect::<Vec<_>>();
                    chart
                        .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                        .map_err(plot_err)?;
                }
            } else {
                let mut chart = b
                    .build_cartesian_2d(ranges[col].0..ranges[col].1, ranges[row].0..ranges[row].1)
                    .map_err(plot_err)?;
                mesh(&mut chart, bottom, left, col, row)?;
                for (d, c) in &sets {
                    chart
                        .draw_series(
                            d.iter()
                                .map(|s| Circle::new((s[col], s[row]), 1, c.mix(0.35).filled())),
                        )
                        .map_err(plot_err)?;
                }
            }
        }
    }
    Ok(())
}

/// Axis labels only on the corner plot's outer edges.
fn mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    bottom: bool,
    left: bool,
    col: usize,
    row: usize,
) -> Result<()> {
    let mut m = chart.configure_mesh();
    m.disable_mesh()
        .label_style(text(10.0))
        .axis_desc_style(text(12.0))
        .x_labels(if bottom { 3 } else { 0 })
        .y_labels(if left { 3 } else { 0 })
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v));
    if bottom {
        m.x_desc(PARAM_LABELS[col]);
    }
    if left {
        m.y_desc(PARAM_LABELS[row]);
    }
    m.draw().map_err(plot_err)
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Normalised histogram of parameter `p` of `draws` over `range`.
fn density(draws: &[[f64; 6]], p: usize, (lo, hi): (f64, f64)) -> Vec<f64> {
    let mut h = vec![0.0; BINS];
    for d in draws {
        let i = ((d[p] - lo) / (hi - lo) * BINS as f64).floor();
        if (0.0..BINS as f64).contains(&i) {
            h[i as usize] += 1.0;
        }
    }
    let n = draws.len().max(1) as f64;
    h.iter_mut().for_each(|v| *v /= n);
    h
}

/// A log wavelength axis with ticks at round values (plotters' own log ticks are decades).
fn wavelength_axis(
    wl: (f64, f64),
) -> plotters::coord::combinators::WithKeyPoints<plotters::coord::combinators::LogCoord<f64>> {
    const TICKS: [f64; 12] = [0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 8.0];
    let axis: plotters::coord::combinators::LogCoord<f64> = (wl.0..wl.1).log_scale().into();
    axis.with_key_points(
        TICKS
            .iter()
            .copied()
            .filter(|t| (wl.0..=wl.1).contains(t))
            .collect(),
    )
}

fn draw_sed<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sed: &[SedPoint],
    wl: (f64, f64),
    mag: (f64, f64),
) -> Result<()> {
    // magnitudes grow downwards: bright at the top
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(50)
        .build_cartesian_2d(wavelength_axis(wl), mag.1..mag.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("pivot wavelength [um]")
        .y_desc("magnitude")
        .x_labels(12)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .label_style(text(12.0))
        .axis_desc_style(text(14.0))
        .draw()
        .map_err(plot_err)?;
    let model = SERIES[1];
    chart
        .draw_series(sed.iter().map(|s| {
            ErrorBar::new_vertical(
                s.wavelength_um,
                s.predicted[0],
                s.predicted[1],
                s.predicted[2],
                model.mix(0.6).stroke_width(10),
                0,
            )
        }))
        .map_err(plot_err)?
        .label("model, 16-84% of the draws")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 4), (x + 16, y + 4)], model.mix(0.6).filled())
        });
    let obs = SERIES[0];
    chart
        .draw_series(sed.iter().map(|s| {
            ErrorBar::new_vertical(
                s.wavelength_um,
                s.mag - s.err,
                s.mag,
                s.mag + s.err,
                obs.stroke_width(2),
                8,
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(
            sed.iter()
                .map(|s| Circle::new((s.wavelength_um, s.mag), 4, obs.filled())),
        )
        .map_err(plot_err)?
        .label("observed (error incl. model floor)")
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, obs.filled()));
    chart
        .configure_series_labels()
        .label_font(text(12.0))
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

fn draw_residuals<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sed: &[SedPoint],
    wl: (f64, f64),
    residual: (f64, f64),
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(50)
        .build_cartesian_2d(wavelength_axis(wl), residual.0..residual.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("pivot wavelength [um]")
        .y_desc("observed - model [mag]")
        .x_labels(12)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .label_style(text(12.0))
        .axis_desc_style(text(14.0))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new([(wl.0, 0.0), (wl.1, 0.0)], BLACK.mix(0.5)))
        .map_err(plot_err)?;
    let model = SERIES[1];
    chart
        .draw_series(sed.iter().map(|s| {
            ErrorBar::new_vertical(
                s.wavelength_um,
                s.predicted[0] - s.predicted[1],
                0.0,
                s.predicted[2] - s.predicted[1],
                model.mix(0.6).stroke_width(10),
                0,
            )
        }))
        .map_err(plot_err)?;
    let obs = SERIES[0];
    chart
        .draw_series(sed.iter().map(|s| {
            let r = s.mag - s.predicted[1];
            ErrorBar::new_vertical(
                s.wavelength_um,
                r - s.err,
                r,
                r + s.err,
                obs.stroke_width(2),
                8,
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(
            sed.iter()
                .map(|s| Circle::new((s.wavelength_um, s.mag - s.predicted[1]), 4, obs.filled())),
        )
        .map_err(plot_err)?;
    Ok(())
}

/// The figure of star `id` of the run in `run` (with a reference MCMC output directory
/// written with `--write-samples`, if given).
pub fn star_figure(run: &Path, id: i64, reference: Option<&Path>) -> Result<StarFigure> {
    let ids: HashSet<i64> = [id].into();
    let mut figs = star_figures(run, &ids, reference)?;
    figs.remove(&id)
        .with_context(|| format!("{}: star {id} has no posterior draws", run.display()))
}

/// The figures of the stars `ids` (those with draws) of the run in `run`.
pub fn star_figures(
    run: &Path,
    ids: &HashSet<i64>,
    reference: Option<&Path>,
) -> Result<HashMap<i64, StarFigure>> {
    let samples = find_samples(run, ids)?;
    let refs = match reference {
        Some(r) => find_samples(r, ids)?,
        None => HashMap::new(),
    };
    // one catalogue scan per posterior table (the tables of one run may come from
    // different input files)
    let mut by_file: HashMap<&Path, HashSet<i64>> = HashMap::new();
    for (id, s) in &samples {
        by_file.entry(&s.posterior_file).or_default().insert(*id);
    }
    let mut out = HashMap::new();
    for (file, file_ids) in by_file {
        let ctx = RunContext::of(file)?;
        let obs = ctx.observations(&file_ids)?;
        for id in file_ids {
            let o = obs
                .get(&id)
                .with_context(|| format!("star {id} is not in the run's input {}", ctx.input))?;
            let draws = samples[&id].draws.clone();
            out.insert(
                id,
                StarFigure {
                    source_id: id,
                    sed: sed(ctx.fm, o, &draws)?,
                    draws,
                    reference: refs.get(&id).map(|r| r.draws.clone()),
                },
            );
        }
    }
    Ok(out)
}
