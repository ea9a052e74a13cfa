//! Band registry: stable ids, names and photometric systems, read from the model tables.
//!
//! The registry is data: adding a band means adding its transmission curve to
//! `models/filters/` and rebuilding the tables, never a code change.

use anyhow::{bail, Result};

/// Magnitude system of a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotSystem {
    /// Vega magnitudes (CALSPEC alpha_lyr_stis_011 zero points).
    Vega,
    /// AB magnitudes (3631 Jy).
    Ab,
}

/// One band.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Band {
    /// Stable id (index into every per-band table).
    pub id: usize,
    /// Stable name, e.g. `gaia_g`.
    pub name: String,
    /// Photometric system.
    pub system: PhotSystem,
}

/// All bands of a forward model, in id order.
#[derive(Debug, Clone)]
pub struct BandRegistry {
    bands: Vec<Band>,
}

/// Error for an unknown band name, listing the known ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown band '{name}'; known bands: {known}")]
pub struct UnknownBand {
    /// The name that was asked for.
    pub name: String,
    /// Comma-separated known names.
    pub known: String,
}

impl BandRegistry {
    /// Build from names and systems (as stored in the model file metadata).
    pub fn new(names: Vec<String>, systems: Vec<String>) -> Result<Self> {
        if names.len() != systems.len() {
            bail!("band names and systems differ in length");
        }
        let mut bands = Vec::with_capacity(names.len());
        for (id, (name, sys)) in names.into_iter().zip(systems).enumerate() {
            let system = match sys.as_str() {
                "vega" => PhotSystem::Vega,
                "ab" => PhotSystem::Ab,
                other => bail!("band {name}: unknown photometric system '{other}'"),
            };
            if bands.iter().any(|b: &Band| b.name == name) {
                bail!("duplicate band name {name}");
            }
            bands.push(Band { id, name, system });
        }
        Ok(BandRegistry { bands })
    }

    /// Number of bands.
    pub fn len(&self) -> usize {
        self.bands.len()
    }

    /// True when there are no bands.
    pub fn is_empty(&self) -> bool {
        self.bands.is_empty()
    }

    /// All bands in id order.
    pub fn all(&self) -> &[Band] {
        &self.bands
    }

    /// Band by id.
    pub fn get(&self, id: usize) -> &Band {
        &self.bands[id]
    }

    /// Name of band `id`.
    pub fn name(&self, id: usize) -> &str {
        &self.bands[id].name
    }

    /// Id of a band name.
    pub fn id(&self, name: &str) -> Result<usize, UnknownBand> {
        self.bands
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| UnknownBand {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// All names in id order.
    pub fn names(&self) -> Vec<&str> {
        self.bands.iter().map(|b| b.name.as_str()).collect()
    }

    /// Parse a comma-separated band list; empty or None means all bands.
    pub fn parse_list(&self, list: Option<&str>) -> Result<Vec<usize>, UnknownBand> {
        match list {
            None => Ok((0..self.len()).collect()),
            Some(s) if s.trim().is_empty() => Ok((0..self.len()).collect()),
            Some(s) => s.split(',').map(|n| self.id(n.trim())).collect(),
        }
    }
}
