//! What a run's posterior tables say about the run as a whole, in one streamed pass: rows,
//! stars with a posterior, counts per flag with an example reason, and the worst-fitting
//! stars (highest best-fit chi^2, highest Pareto k-hat). Memory is bounded by one batch
//! plus the few stars kept.

use crate::io::columns::{for_each_batch, key_value_metadata};
use crate::pipeline::FLAG_NAMES;
use anyhow::Result;
use std::path::PathBuf;

/// One star of the worst-fitting lists.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StarLine {
    /// Star id.
    pub(crate) source_id: i64,
    /// Best-fit chi^2 of the photometry and parallax.
    pub(crate) best_fit_chi2: f64,
    /// Pareto k-hat of the importance weights.
    pub(crate) pareto_k: f64,
    /// Effective samples.
    pub(crate) n_eff: f64,
    /// Bands used.
    pub(crate) n_bands: f64,
    /// Posterior medians of Teff and log g.
    pub(crate) teff: f64,
    /// Posterior median of log g.
    pub(crate) logg: f64,
    /// Flag reasons.
    pub(crate) flag_reason: String,
}

/// Counts of one flag bit.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FlagCount {
    /// Bit value.
    pub(crate) bit: u32,
    /// Name.
    pub(crate) name: &'static str,
    /// Rows with the flag.
    pub(crate) count: u64,
    /// The reasons of the first row with the flag.
    pub(crate) example: String,
}

/// The run's figures.
#[derive(Clone, Debug)]
pub(crate) struct RunStats {
    /// Posterior tables read.
    pub(crate) files: Vec<PathBuf>,
    /// Rows.
    pub(crate) rows: u64,
    /// Rows with a posterior (finite Teff median).
    pub(crate) with_posterior: u64,
    /// Rows with any flag.
    pub(crate) any_flag: u64,
    /// Per flag bit (every bit, zero counts included).
    pub(crate) flags: Vec<FlagCount>,
    /// Highest best-fit chi^2 first.
    pub(crate) worst_chi2: Vec<StarLine>,
    /// Highest Pareto k-hat first.
    pub(crate) worst_pareto_k: Vec<StarLine>,
    /// Key-value metadata of the first table (model id, version, config).
    pub(crate) metadata: Vec<(String, String)>,
}

const COLUMNS: [&str; 8] = [
    "source_id",
    "best_fit_chi2",
    "pareto_k",
    "n_eff",
    "n_bands",
    "teff_p50",
    "logg_p50",
    "flags",
];

/// Keep the `n` lines with the largest key, largest first.
fn keep_top(list: &mut Vec<StarLine>, line: StarLine, key: fn(&StarLine) -> f64, n: usize) {
    let k = key(&line);
    if !k.is_finite() || (list.len() == n && key(&list[n - 1]) >= k) {
        return;
    }
    let at = list.partition_point(|l| key(l) >= k);
    list.insert(at, line);
    list.truncate(n);
}

/// Stream the posterior tables once.
pub(crate) fn run_stats(files: &[PathBuf], worst: usize) -> Result<RunStats> {
    let mut s = RunStats {
        files: files.to_vec(),
        rows: 0,
        with_posterior: 0,
        any_flag: 0,
        flags: FLAG_NAMES
            .iter()
            .map(|&(bit, name)| FlagCount {
                bit,
                name,
                count: 0,
                example: String::new(),
            })
            .collect(),
        worst_chi2: Vec::new(),
        worst_pareto_k: Vec::new(),
        metadata: match files.first() {
            Some(f) => key_value_metadata(f)?,
            None => Vec::new(),
        },
    };
    let mut cols: Vec<&str> = COLUMNS.to_vec();
    cols.push("flag_reason");
    for f in files {
        for_each_batch(f, &cols, |b| add_batch(&mut s, b, worst))?;
    }
    Ok(s)
}

fn add_batch(s: &mut RunStats, b: &crate::io::columns::ColumnBatch, worst: usize) -> Result<()> {
    let ids = b.i64("source_id")?;
    let num: Vec<Vec<f64>> = COLUMNS[1..7]
        .iter()
        .map(|c| b.f64(c))
        .collect::<Result<_>>()?;
    let flags = b.i64("flags")?;
    let reasons = b.strings("flag_reason")?;
    for k in 0..b.rows() {
        s.rows += 1;
        s.with_posterior += num[4][k].is_finite() as u64;
        let fl = flags[k].unwrap_or(0) as u64;
        s.any_flag += (fl != 0) as u64;
        for c in s.flags.iter_mut().filter(|c| fl & c.bit as u64 != 0) {
            c.count += 1;
            if c.example.is_empty() {
                c.example = reasons[k].clone();
            }
        }
        let Some(id) = ids[k] else { continue };
        let line = StarLine {
            source_id: id,
            best_fit_chi2: num[0][k],
            pareto_k: num[1][k],
            n_eff: num[2][k],
            n_bands: num[3][k],
            teff: num[4][k],
            logg: num[5][k],
            flag_reason: reasons[k].clone(),
        };
        keep_top(&mut s.worst_chi2, line.clone(), |l| l.best_fit_chi2, worst);
        keep_top(&mut s.worst_pareto_k, line, |l| l.pareto_k, worst);
    }
    Ok(())
}

impl RunStats {
    /// A metadata value of the first table.
    pub(crate) fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: i64, chi2: f64) -> StarLine {
        StarLine {
            source_id: id,
            best_fit_chi2: chi2,
            pareto_k: f64::NAN,
            n_eff: 0.0,
            n_bands: 0.0,
            teff: 0.0,
            logg: 0.0,
            flag_reason: String::new(),
        }
    }

    #[test]
    fn keeps_the_largest_in_order() {
        let mut v = Vec::new();
        for (id, c) in [(1, 3.0), (2, f64::NAN), (3, 9.0), (4, 1.0), (5, 5.0)] {
            keep_top(&mut v, line(id, c), |l| l.best_fit_chi2, 3);
        }
        let ids: Vec<i64> = v.iter().map(|l| l.source_id).collect();
        assert_eq!(ids, vec![3, 5, 1]);
    }
}
