//! Pictures of runs and checks (`sedflow plot`, `sedflow report`): the Kiel diagram of a
//! run, one star's corner plot and SED, coverage curves of `sedflow evaluate`, residuals of
//! `sedflow calibrate`. A layer above the pipeline: it reads their outputs and never runs
//! inside `sedflow run`.

pub(crate) mod bands;
pub mod calibration;
pub mod canvas;
pub mod coverage;
pub(crate) mod hist;
pub mod kiel;
pub(crate) mod palette;
pub(crate) mod report;
pub(crate) mod run_stats;
pub mod star;

use crate::pipeline::FLAG_NAMES;
use anyhow::{bail, Result};

/// A flag mask from a comma-separated list of flag names (`POOR_FIT,HIGH_PARETO_K`), bit
/// values, or `all`.
pub fn parse_flag_mask(list: &str) -> Result<u64> {
    let mut mask = 0u64;
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("all") {
            mask |= u64::MAX;
        } else if let Ok(v) = item.parse::<u64>() {
            mask |= v;
        } else if let Some((bit, _)) = FLAG_NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(item))
        {
            mask |= *bit as u64;
        } else {
            bail!(
                "unknown flag '{item}'; known: {}",
                FLAG_NAMES
                    .iter()
                    .map(|f| f.1)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_masks_from_names_and_values() {
        assert_eq!(
            parse_flag_mask("POOR_FIT,high_pareto_k").unwrap(),
            256 | 16384
        );
        assert_eq!(parse_flag_mask("64, 128").unwrap(), 192);
        assert_eq!(parse_flag_mask("all").unwrap(), u64::MAX);
        assert!(parse_flag_mask("NOPE").is_err());
    }
}
