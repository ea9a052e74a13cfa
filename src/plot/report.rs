//! `sedflow report`: one self-contained HTML page for a finished run (images embedded as
//! PNG data: URIs): rows, throughput and timing, flags, sampling diagnostics, the Kiel
//! diagram, parameter distributions and the worst-fitting stars, linked to their `star`
//! plots written next to the page. Every table is streamed, so memory stays flat.

use super::canvas::{render, Figure, Format};
use super::hist::{diagnostic_specs, histograms, parameter_specs, HistGrid};
use super::kiel::{kiel_data, KielColour};
use super::run_stats::{run_stats, RunStats, StarLine};
use super::star::star_figures;
use crate::io::columns::row_count;
use crate::io::posteriors::posterior_files;
use anyhow::{Context, Result};
use base64::Engine as _;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What to put in the report.
pub(crate) struct ReportOptions {
    /// The run's output directory.
    pub(crate) run: PathBuf,
    /// The page to write.
    pub(crate) html: PathBuf,
    /// The run's summary JSON (`sedflow run --summary-json`), for throughput and timing.
    pub(crate) summary: Option<PathBuf>,
    /// Stars in each worst-fitting list.
    pub(crate) worst: usize,
}

/// What the report wrote.
pub(crate) struct ReportOutcome {
    /// Rows of the run.
    pub(crate) rows: u64,
    /// Images embedded.
    pub(crate) images: usize,
    /// Star plots written next to the page.
    pub(crate) star_plots: Vec<PathBuf>,
    /// Why star plots are missing, if they are.
    pub(crate) star_plot_note: Option<String>,
}

/// Write the report page (and the star plots next to it).
pub(crate) fn write_report(o: &ReportOptions) -> Result<ReportOutcome> {
    let files = posterior_files(&o.run)?;
    let stats = run_stats(&files, o.worst)?;
    let summary = read_summary(o)?;
    let mut images = Vec::new();
    let kiel = kiel_data(&files, u64::MAX, KielColour::Density)?;
    images.push((
        "Kiel diagram of the posterior medians",
        png(&kiel, (1200, 520))?,
    ));
    let diag = HistGrid {
        hists: histograms(&files, &diagnostic_specs())?,
        columns: 2,
    };
    images.push(("Sampling diagnostics", png(&diag, (1200, 360))?));
    let params = HistGrid {
        hists: histograms(&files, &parameter_specs())?,
        columns: 3,
    };
    images.push(("Posterior medians", png(&params, (1200, 640))?));
    let (links, note) = star_plots(o, &stats);
    let mut html = String::new();
    page(
        &mut html,
        o,
        &stats,
        summary.as_ref(),
        &images,
        &links,
        note.as_deref(),
    );
    if let Some(dir) = o.html.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&o.html, html).with_context(|| format!("writing {}", o.html.display()))?;
    Ok(ReportOutcome {
        rows: stats.rows,
        images: images.len(),
        star_plots: links.into_iter().map(|(_, p)| p).collect(),
        star_plot_note: note,
    })
}

fn png<F: Figure>(fig: &F, size: (u32, u32)) -> Result<String> {
    let r = render(fig, size, Format::Png)?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&r.bytes)
    ))
}

/// The summary JSON: `--summary`, else `run-summary.json` in the output directory.
fn read_summary(o: &ReportOptions) -> Result<Option<serde_json::Value>> {
    let path = match &o.summary {
        Some(p) => p.clone(),
        None => {
            let p = o.run.join("run-summary.json");
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| {
        format!("{}: not a run summary JSON", path.display())
    })?))
}

/// The folder of star plots next to the page: `<page stem>_stars/`.
fn star_dir(html: &Path) -> PathBuf {
    let stem = html
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy());
    html.with_file_name(format!("{stem}_stars"))
}

/// Write the worst stars' plots; (source_id, path) of each, or why there are none.
fn star_plots(o: &ReportOptions, stats: &RunStats) -> (Vec<(i64, PathBuf)>, Option<String>) {
    let ids: HashSet<i64> = stats
        .worst_chi2
        .iter()
        .chain(&stats.worst_pareto_k)
        .map(|l| l.source_id)
        .collect();
    if ids.is_empty() {
        return (Vec::new(), None);
    }
    let write = || -> Result<Vec<(i64, PathBuf)>> {
        let figs = star_figures(&o.run, &ids, None)?;
        let dir = star_dir(&o.html);
        let mut out = Vec::new();
        let mut sorted: Vec<_> = figs.into_iter().collect();
        sorted.sort_by_key(|(id, _)| *id);
        for (id, fig) in sorted {
            let path = dir.join(format!("star-{id}.png"));
            super::canvas::render_to_file(&fig, (1500, 860), &path)?;
            out.push((id, path));
        }
        Ok(out)
    };
    match write() {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1250px;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}th{background:#eee}td.l,th.l{text-align:left}img{max-width:100%;display:block;\
margin:0.5em 0}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em}";

fn page(
    h: &mut String,
    o: &ReportOptions,
    s: &RunStats,
    summary: Option<&serde_json::Value>,
    images: &[(&str, String)],
    links: &[(i64, PathBuf)],
    note: Option<&str>,
) {
    let title = format!("sedflow run report: {}", o.run.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    run_section(h, s, summary);
    flag_section(h, s);
    for (caption, uri) in images {
        let _ = write!(
            h,
            "<h2>{}</h2>\n<img alt=\"{}\" src=\"{uri}\">\n",
            esc(caption),
            esc(caption)
        );
    }
    worst_section(h, o, s, links, note);
    h.push_str("</body></html>\n");
}

fn row(h: &mut String, key: &str, value: &str) {
    let _ = writeln!(
        h,
        "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
        esc(key),
        esc(value)
    );
}

fn run_section(h: &mut String, s: &RunStats, summary: Option<&serde_json::Value>) {
    h.push_str("<h2>Run</h2>\n<table>\n");
    for f in &s.files {
        let rows = row_count(f).map_or("?".into(), |r| r.to_string());
        row(
            h,
            "posterior table",
            &format!("{} ({rows} rows)", f.display()),
        );
    }
    row(h, "rows", &s.rows.to_string());
    row(h, "stars with a posterior", &s.with_posterior.to_string());
    for key in ["sedflow.model_id", "sedflow.version", "sedflow.input"] {
        if let Some(v) = s.meta(key) {
            row(h, key, v);
        }
    }
    match summary {
        Some(j) => summary_rows(h, j),
        None => row(
            h,
            "stars/s and timing",
            "not recorded: run `sedflow run ... --summary-json OUTPUT/run-summary.json` (or pass --summary)",
        ),
    }
    h.push_str("</table>\n");
}

fn summary_rows(h: &mut String, j: &serde_json::Value) {
    let f = |k: &str| j.get(k).and_then(|v| v.as_f64());
    if let (Some(stars), Some(wall)) = (f("stars"), f("wall_s")) {
        row(h, "stars/s", &format!("{:.1}", stars / wall.max(1e-9)));
        row(h, "wall time (processing)", &format!("{wall:.2} s"));
    }
    for (k, label) in [
        ("plan_s", "planning"),
        ("read_s", "read + ingest busy"),
        ("infer_s", "inference busy"),
        ("write_s", "write busy"),
    ] {
        if let Some(v) = f(k) {
            row(h, label, &format!("{v:.2} s"));
        }
    }
    if let (Some(d), Some(n)) = (f("samples_drawn"), f("stars_inferred")) {
        row(
            h,
            "proposal samples per star",
            &format!("{:.0}", d / n.max(1.0)),
        );
    }
    if let Some(stages) = j.get("engine_stages").and_then(|v| v.as_array()) {
        let text: Vec<String> = stages
            .iter()
            .filter_map(|s| {
                Some(format!(
                    "{} {:.2} s",
                    s.get(0)?.as_str()?,
                    s.get(1)?.as_f64()?
                ))
            })
            .collect();
        row(h, "inference CPU time by sub-stage", &text.join(", "));
    }
    if let Some(r) = f("peak_rss_bytes") {
        row(h, "peak RSS", &format!("{:.1} MiB", r / 1048576.0));
    }
}

fn flag_section(h: &mut String, s: &RunStats) {
    let _ = writeln!(
        h,
        "<h2>Flags</h2>\n<p>{} of {} rows carry at least one flag.</p>\n<table>\n<tr><th>bit value</th><th class=\"l\">flag</th><th>rows</th><th>fraction</th><th class=\"l\">example reason</th></tr>",
        s.any_flag, s.rows
    );
    for c in &s.flags {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.2}%</td><td class=\"l\">{}</td></tr>",
            c.bit,
            c.name,
            c.count,
            100.0 * c.count as f64 / s.rows.max(1) as f64,
            esc(&c.example)
        );
    }
    h.push_str("</table>\n");
}

fn worst_section(
    h: &mut String,
    o: &ReportOptions,
    s: &RunStats,
    links: &[(i64, PathBuf)],
    note: Option<&str>,
) {
    if let Some(n) = note {
        let _ = writeln!(
            h,
            "<h2>Worst-fitting stars</h2>\n<p>No star plots: {}</p>",
            esc(n)
        );
    } else {
        h.push_str("<h2>Worst-fitting stars</h2>\n");
    }
    let base = o.html.parent().unwrap_or(Path::new(""));
    let link = |id: i64| -> String {
        links
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, p)| p.strip_prefix(base).ok())
            .map(|rel| format!("<a href=\"{}\">{id}</a>", esc(&rel.to_string_lossy())))
            .unwrap_or_else(|| id.to_string())
    };
    for (title, list) in [
        ("highest best-fit chi^2", &s.worst_chi2),
        ("highest Pareto k-hat", &s.worst_pareto_k),
    ] {
        let _ = writeln!(h, "<h3>{}</h3>\n<table>\n<tr><th>source_id</th><th>best_fit_chi2</th><th>n_bands</th><th>pareto_k</th><th>n_eff</th><th>Teff p50 [K]</th><th>log g p50</th><th class=\"l\">flag_reason</th></tr>", esc(title));
        for l in list.iter() {
            star_row(h, l, &link(l.source_id));
        }
        h.push_str("</table>\n");
    }
}

fn star_row(h: &mut String, l: &StarLine, id: &str) {
    let _ = writeln!(
        h,
        "<tr><td>{id}</td><td>{:.1}</td><td>{:.0}</td><td>{:.2}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td><td class=\"l\">{}</td></tr>",
        l.best_fit_chi2, l.n_bands, l.pareto_k, l.n_eff, l.teff, l.logg, esc(&l.flag_reason)
    );
}
