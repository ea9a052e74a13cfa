//! A simulated catalogue in the pipeline's input contract (step 0 of the data path, for
//! tests, benchmarks and validation): stars from the survey model (`crate::simulate`),
//! written with the Gaia-archive column names of [`default_band_columns`], the release's
//! global parallax zero point, and truth columns. `sedflow simulate`, `train`, `evaluate`
//! and the benches share it; [`Pattern`] and [`CatalogueMix`] derive clap traits because
//! they are the same flags in each of those commands.

use super::config::{default_band_columns, GaiaRelease};
use super::parallax_zero_point::{DR2_GLOBAL_ZERO_POINT_MAS, DR3_GLOBAL_ZERO_POINT_MAS};
use crate::io::table::Column;
use crate::likelihood::NoiseModel;
use crate::physics::ForwardModel;
use crate::prior::reddening::MapReddening;
use crate::prior::{Prior, PriorConfig};
use crate::simulate::{SimStar, Simulator, SimulatorConfig};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

/// Catalogue column names (band, magnitude column, error column): the pipeline's default
/// input mapping (one source of truth: `pipeline::config::default_band_columns`), with the
/// Gaia columns named by their DR3 bands.
pub fn catalogue_columns_map() -> Vec<(String, String, String)> {
    default_band_columns(GaiaRelease::Dr3)
        .into_iter()
        .map(|c| (c.band, c.column, c.error.unwrap_or_default()))
        .collect()
}

/// Which band patterns a simulated catalogue keeps.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Pattern {
    /// Whatever the survey model delivers (any subset of bands, with or without parallax).
    Any,
    /// Only stars with all 13 bands of Gaia (G, BP, RP), Pan-STARRS1 (grizy), 2MASS (JHKs)
    /// and AllWISE (W1, W2) and a parallax: the pattern of a well-observed catalogue star.
    Full,
}

/// The bands of [`Pattern::Full`] (Gaia's named as in DR3; [`release_band`] maps them).
const FULL_BANDS: [&str; 13] = [
    "gaia_g", "gaia_bp", "gaia_rp", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y", "tmass_j",
    "tmass_h", "tmass_ks", "wise_w1", "wise_w2",
];

/// A band's registry name in the simulated Gaia release (DR2 has its own passbands).
fn release_band(release: GaiaRelease, band: &str) -> &str {
    match (release, band) {
        (GaiaRelease::Dr2, "gaia_g") => "gaia_dr2_g",
        (GaiaRelease::Dr2, "gaia_bp") => "gaia_dr2_bp",
        (GaiaRelease::Dr2, "gaia_rp") => "gaia_dr2_rp",
        (_, b) => b,
    }
}

/// What a simulated catalogue mixes in beyond the survey model.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct CatalogueMix {
    /// Share of stars given a dust-map reddening prior (`ebv_prior`, `ebv_prior_error`),
    /// drawn the way the prior's measurement model says maps err.
    #[arg(long, default_value_t = 0.0)]
    pub reddening_fraction: f64,
    /// Share of stars moved to 10-500 pc (log-uniform): the bright, precise regime of
    /// targeted samples (parallax S/N up to ~1000).
    #[arg(long, default_value_t = 0.0)]
    pub bright_fraction: f64,
}

impl CatalogueMix {
    /// Both shares must be probabilities.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--reddening-fraction", self.reddening_fraction),
            ("--bright-fraction", self.bright_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                anyhow::bail!("{name} must be in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Simulate `n` stars with the physical prior and default survey model.
pub fn simulate_catalogue(
    fm: &ForwardModel,
    n: usize,
    seed: u64,
    release: GaiaRelease,
) -> Result<Vec<SimStar>> {
    simulate_catalogue_with(
        fm,
        n,
        seed,
        release,
        Pattern::Any,
        false,
        CatalogueMix::default(),
    )
}

/// [`simulate_catalogue`] keeping only stars of a band pattern.
pub fn simulate_catalogue_with(
    fm: &ForwardModel,
    n: usize,
    seed: u64,
    release: GaiaRelease,
    pattern: Pattern,
    likelihood_consistent: bool,
    mix: CatalogueMix,
) -> Result<Vec<SimStar>> {
    mix.validate()?;
    let prior = Prior::new(fm, PriorConfig::default());
    let noise = NoiseModel::default_for(fm);
    let cfg = SimulatorConfig {
        gaia_dr2_fraction: if release == GaiaRelease::Dr2 {
            1.0
        } else {
            0.0
        },
        reddening_fraction: mix.reddening_fraction,
        bright_fraction: mix.bright_fraction,
        ..SimulatorConfig::default()
    };
    let sim = Simulator::new(fm, &prior, &noise, cfg)?;
    let full: Vec<u16> = FULL_BANDS
        .iter()
        .map(|b| fm.bands().id(release_band(release, b)).map(|i| i as u16))
        .collect::<Result<_, _>>()?;
    let keep = |s: &SimStar| {
        pattern == Pattern::Any
            || (s.obs.parallax.is_some()
                && s.obs.phot.len() == full.len()
                && full.iter().all(|b| s.obs.phot.iter().any(|m| m.band == *b)))
    };
    let stars = sim.simulate_many_where(n, seed, keep);
    if !likelihood_consistent {
        return Ok(stars);
    }
    Ok(sim.observe_many_like(&stars, seed))
}

/// Catalogue columns (input contract + truth) of simulated stars.
pub fn catalogue_columns(
    fm: &ForwardModel,
    stars: &[SimStar],
    release: GaiaRelease,
) -> Result<Vec<Column>> {
    let n = stars.len();
    let mut cols = vec![Column::I64(
        "source_id".into(),
        stars.iter().map(|s| s.obs.source_id).collect(),
    )];
    let plx = |f: &dyn Fn(&(f32, f32)) -> f32| {
        stars
            .iter()
            .map(|s| s.obs.parallax.as_ref().map(f).unwrap_or(f32::NAN))
            .collect::<Vec<f32>>()
    };
    // the file carries the release's global zero point, as Gaia's catalogues do; `run`
    // (zero_point = "auto") removes it again
    let z = match release {
        GaiaRelease::Dr3 => DR3_GLOBAL_ZERO_POINT_MAS,
        GaiaRelease::Dr2 => DR2_GLOBAL_ZERO_POINT_MAS,
    };
    cols.push(Column::F32(
        "parallax".into(),
        plx(&|p| (p.0 as f64 + z) as f32),
    ));
    cols.push(Column::F32("parallax_error".into(), plx(&|p| p.1)));
    if stars.iter().any(|s| s.obs.reddening.is_some()) {
        let red = |f: fn(&MapReddening) -> f32| {
            stars
                .iter()
                .map(|s| s.obs.reddening.as_ref().map(f).unwrap_or(f32::NAN))
                .collect::<Vec<f32>>()
        };
        cols.push(Column::F32("ebv_prior".into(), red(|r| r.ebv)));
        cols.push(Column::F32("ebv_prior_error".into(), red(|r| r.error)));
    }
    let map = catalogue_columns_map();
    for (band, mag_col, err_col) in &map {
        let id = fm.bands().id(release_band(release, band))? as u16;
        let mut mag = vec![f32::NAN; n];
        let mut err = vec![f32::NAN; n];
        for (k, s) in stars.iter().enumerate() {
            if let Some(m) = s.obs.phot.iter().find(|m| m.band == id) {
                mag[k] = m.mag;
                err[k] = m.err;
            }
        }
        cols.push(Column::F32(mag_col.to_string(), mag));
        cols.push(Column::F32(err_col.to_string(), err));
    }
    for (i, p) in crate::physics::PARAM_NAMES.iter().enumerate() {
        cols.push(Column::F64(
            format!("true_{p}"),
            stars.iter().map(|s| s.theta.to_array()[i]).collect(),
        ));
    }
    // every simulated band must have a column
    let covered: Vec<u16> = stars
        .iter()
        .flat_map(|s| s.obs.phot.iter().map(|m| m.band))
        .collect();
    for b in covered {
        let name = fm.bands().name(b as usize);
        let base = name.replace("gaia_dr2_", "gaia_");
        if !map.iter().any(|c| c.0 == base) {
            bail!("simulated band {name} has no catalogue column");
        }
    }
    Ok(cols)
}
