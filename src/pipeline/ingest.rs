//! Ingest (step 2 of the data path): input columns resolved against the band registry once
//! per file, then record batches turned into validated [`StarObs`] with per-star flags and
//! reasons. Bad values never stop a run: a NaN magnitude, a non-positive error, an unknown
//! band or a duplicate source_id becomes a flag on that star's output row.

use super::config::{default_band_columns, BandColumn, InputConfig, InputFormat};
use crate::likelihood::{Measurement, StarObs};
use crate::posterior::flags;
use anyhow::{bail, Result};
use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use std::collections::{HashMap, HashSet};

/// 2.5 / ln 10: magnitude error per unit relative flux error.
pub const MAG_PER_REL_FLUX: f64 = 1.085_736_204_758_129_6;

/// One star on its way through the pipeline.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// Part (output file) it belongs to.
    pub part: u32,
    /// Its row in that output file.
    pub idx: u32,
    /// Validated observations (only usable measurements).
    pub obs: StarObs,
    /// Ingest flags (see [`crate::posterior::flags`]).
    pub flags: u32,
    /// Reasons for the ingest flags ("" when none).
    pub reason: String,
    /// The input's source_id was null (`obs.source_id` is then 0 and is written as null).
    pub null_id: bool,
    /// Input rows this star stands for (1 in the wide format).
    pub n_rows: u32,
}

/// A magnitude column resolved against one file's schema.
#[derive(Clone, Debug)]
pub struct WideBand {
    /// Band id.
    pub band: u16,
    /// Magnitude column.
    pub column: String,
    /// Error column, if present in the file.
    pub error: Option<String>,
    /// Flux-over-error column, if present in the file.
    pub flux_over_error: Option<String>,
    /// Error floor [mag].
    pub floor: f32,
}

/// The columns of one file, resolved.
#[derive(Clone, Debug)]
pub enum Layout {
    /// One row per star.
    Wide {
        /// Magnitude columns present in the file.
        bands: Vec<WideBand>,
        /// (parallax, error) columns if present.
        parallax: Option<(String, Option<String>)>,
    },
    /// One row per observation.
    Long {
        /// Band label -> band id (registry names and aliases).
        bands: HashMap<String, u16>,
    },
}

/// How to read one file's rows.
#[derive(Clone, Debug)]
pub struct Mapper {
    /// source_id column.
    pub source_id: String,
    /// Wide or long.
    pub layout: Layout,
    long_cols: (String, String, String),
    zero_point: f32,
    /// Columns of the file that are not used (reported once per run).
    pub unused: Vec<String>,
}

fn numeric(dt: &DataType) -> bool {
    dt.is_numeric() || matches!(dt, DataType::Null)
}

fn integer(dt: &DataType) -> bool {
    dt.is_integer() || matches!(dt, DataType::Null)
}

fn stringy(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        DataType::Dictionary(_, v) => stringy(v),
        _ => false,
    }
}

/// The configured column -> band mappings (defaults, then `[[input.bands]]`, which replace a
/// default for the same column), checked against the band registry.
pub fn band_mappings(cfg: &InputConfig, band_names: &[String]) -> Result<Vec<(BandColumn, u16)>> {
    let mut v: Vec<BandColumn> = if cfg.default_columns {
        default_band_columns(cfg.gaia_release)
    } else {
        Vec::new()
    };
    for b in &cfg.bands {
        v.retain(|d| d.column != b.column);
        v.push(b.clone());
    }
    let mut out = Vec::new();
    let mut seen_user = HashSet::new();
    for b in v {
        if cfg.bands.iter().any(|u| u.column == b.column) && !seen_user.insert(b.column.clone()) {
            bail!("input.bands: column {} is mapped more than once", b.column);
        }
        let Some(id) = band_names.iter().position(|n| *n == b.band) else {
            bail!(
                "input.bands: column {} maps to unknown band '{}'; known bands: {}",
                b.column,
                b.band,
                band_names.join(", ")
            );
        };
        out.push((b, id as u16));
    }
    Ok(out)
}

impl Mapper {
    /// Resolve the columns of a file (`file` names it in errors).
    pub fn resolve(
        schema: &Schema,
        cfg: &InputConfig,
        mappings: &[(BandColumn, u16)],
        band_names: &[String],
        file: &str,
    ) -> Result<Mapper> {
        let has = |c: &str| {
            schema
                .field_with_name(c)
                .ok()
                .map(|f| f.data_type().clone())
        };
        let sid = &cfg.source_id_column;
        match has(sid) {
            None => bail!("{file}: no source_id column '{sid}'"),
            Some(dt) if !integer(&dt) => {
                bail!("{file}: column {sid} has type {dt}; expected an integer (int64)")
            }
            _ => {}
        }
        let lc = &cfg.long;
        let long_present = has(&lc.band_column).is_some() && has(&lc.mag_column).is_some();
        let wide_present = mappings.iter().any(|(b, _)| has(&b.column).is_some());
        let long = match cfg.format {
            InputFormat::Long => true,
            InputFormat::Wide => false,
            InputFormat::Auto => long_present && !wide_present,
        };
        let mut used: Vec<String> = vec![sid.clone()];
        let layout = if long {
            for c in [&lc.band_column, &lc.mag_column, &lc.error_column] {
                match has(c) {
                    None => bail!("{file}: long format needs column '{c}'"),
                    Some(dt) if c == &lc.band_column && !stringy(&dt) => {
                        bail!("{file}: column {c} has type {dt}; expected strings (band names)")
                    }
                    Some(dt) if c != &lc.band_column && !numeric(&dt) => {
                        bail!("{file}: column {c} has type {dt}; expected numbers")
                    }
                    _ => used.push(c.clone()),
                }
            }
            let mut bands: HashMap<String, u16> = band_names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u16))
                .collect();
            for (alias, name) in &lc.band_aliases {
                let Some(id) = band_names.iter().position(|n| n == name) else {
                    bail!(
                        "input.long.band_aliases: {alias} -> unknown band '{name}'; known bands: {}",
                        band_names.join(", ")
                    );
                };
                bands.insert(alias.clone(), id as u16);
            }
            Layout::Long { bands }
        } else {
            let mut bands = Vec::new();
            let mut by_band: HashMap<u16, String> = HashMap::new();
            for (b, id) in mappings {
                if has(&b.column).is_none() {
                    continue;
                }
                if let Some(other) = by_band.insert(*id, b.column.clone()) {
                    bail!(
                        "{file}: columns {other} and {} both map to band {}; remove one mapping",
                        b.column,
                        b.band
                    );
                }
                let mut opt = |c: &Option<String>| -> Result<Option<String>> {
                    match c {
                        Some(c) => match has(c) {
                            Some(dt) if !numeric(&dt) => {
                                bail!("{file}: column {c} has type {dt}; expected numbers")
                            }
                            Some(_) => {
                                used.push(c.clone());
                                Ok(Some(c.clone()))
                            }
                            None => Ok(None),
                        },
                        None => Ok(None),
                    }
                };
                let error = opt(&b.error)?;
                let foe = opt(&b.flux_over_error)?;
                let dt = has(&b.column).unwrap();
                if !numeric(&dt) {
                    bail!(
                        "{file}: column {} has type {dt}; expected numbers",
                        b.column
                    );
                }
                used.push(b.column.clone());
                bands.push(WideBand {
                    band: *id,
                    column: b.column.clone(),
                    error,
                    flux_over_error: foe,
                    floor: b.error_floor,
                });
            }
            let parallax = match has(&cfg.parallax_column) {
                Some(dt) if !numeric(&dt) => bail!(
                    "{file}: column {} has type {dt}; expected numbers",
                    cfg.parallax_column
                ),
                Some(_) => {
                    used.push(cfg.parallax_column.clone());
                    let e = match has(&cfg.parallax_error_column) {
                        Some(dt) if !numeric(&dt) => bail!(
                            "{file}: column {} has type {dt}; expected numbers",
                            cfg.parallax_error_column
                        ),
                        Some(_) => {
                            used.push(cfg.parallax_error_column.clone());
                            Some(cfg.parallax_error_column.clone())
                        }
                        None => None,
                    };
                    Some((cfg.parallax_column.clone(), e))
                }
                None => None,
            };
            Layout::Wide { bands, parallax }
        };
        let unused = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !used.contains(n))
            .collect();
        Ok(Mapper {
            source_id: sid.clone(),
            layout,
            long_cols: (
                lc.band_column.clone(),
                lc.mag_column.clone(),
                lc.error_column.clone(),
            ),
            zero_point: cfg.parallax_zero_point,
            unused,
        })
    }

    /// Whether the file is in the long format.
    pub fn is_long(&self) -> bool {
        matches!(self.layout, Layout::Long { .. })
    }

    /// Whether any magnitude column was recognised (wide format).
    pub fn has_photometry(&self) -> bool {
        match &self.layout {
            Layout::Wide { bands, .. } => !bands.is_empty(),
            Layout::Long { .. } => true,
        }
    }

    /// Columns to read, in a fixed order.
    pub fn columns(&self) -> Vec<String> {
        let mut v = vec![self.source_id.clone()];
        match &self.layout {
            Layout::Wide { bands, parallax } => {
                for b in bands {
                    v.push(b.column.clone());
                    v.extend(b.error.iter().cloned());
                    v.extend(b.flux_over_error.iter().cloned());
                }
                if let Some((p, e)) = parallax {
                    v.push(p.clone());
                    v.extend(e.iter().cloned());
                }
            }
            Layout::Long { .. } => {
                let (b, m, e) = &self.long_cols;
                v.extend([b.clone(), m.clone(), e.clone()]);
            }
        }
        let mut seen = HashSet::new();
        v.retain(|c| seen.insert(c.clone()));
        v
    }
}

/// Columns of a batch as f64 (nulls kept), by name.
fn f64_col(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("column {name} missing from batch"))?;
    let c = cast(c, &DataType::Float64)?;
    Ok(c.as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64 gives Float64Array")
        .clone())
}

/// The source_id column of a batch as int64.
pub fn id_col(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("column {name} missing from batch"))?;
    let c = cast(c, &DataType::Int64)?;
    Ok(c.as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64 gives Int64Array")
        .clone())
}

fn get(a: &Float64Array, i: usize) -> Option<f64> {
    if a.is_null(i) {
        None
    } else {
        Some(a.value(i))
    }
}

/// Validate one magnitude and its error; returns the measurement or a flag and reason.
fn check_measurement(
    band: u16,
    mag: f64,
    err: Option<f64>,
    floor: f32,
    what: &str,
) -> Result<Measurement, (u32, String)> {
    if !mag.is_finite() {
        return Err((flags::BAD_MAGNITUDE, format!("{what}: magnitude {mag}")));
    }
    let Some(e) = err else {
        return Err((flags::BAD_ERROR, format!("{what}: magnitude without error")));
    };
    if !(e.is_finite() && e > 0.0) {
        return Err((
            flags::BAD_ERROR,
            format!("{what}: error {e} is not positive and finite"),
        ));
    }
    let e = ((e * e) + (floor as f64) * (floor as f64)).sqrt();
    Ok(Measurement {
        band,
        mag: mag as f32,
        err: e as f32,
    })
}

fn check_parallax(plx: f64, err: Option<f64>, zp: f32) -> Result<(f32, f32), String> {
    if !plx.is_finite() {
        return Err(format!("parallax {plx}"));
    }
    match err {
        None => Err("parallax without error".into()),
        Some(e) if !(e.is_finite() && e > 0.0) => {
            Err(format!("parallax error {e} is not positive and finite"))
        }
        Some(e) => Ok(((plx + zp as f64) as f32, e as f32)),
    }
}

/// Occurrence counts of source_ids that occur more than once in a part (the duplicate
/// pre-pass fills it).
pub type Duplicates = HashMap<i64, u32>;

/// Duplicate source_ids among `ids` (sorted in place: no copy of a large part's ids).
pub fn find_duplicates(mut v: Vec<i64>) -> Duplicates {
    v.sort_unstable();
    let mut d = Duplicates::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i + 1;
        while j < v.len() && v[j] == v[i] {
            j += 1;
        }
        if j - i > 1 {
            d.insert(v[i], (j - i) as u32);
        }
        i = j;
    }
    d
}

fn dup_reason(n: u32, long: bool) -> String {
    if long {
        format!("source_id occurs in {n} row groups of this part; the long format needs all rows of a star in one row group")
    } else {
        format!("source_id occurs {n} times in this part")
    }
}

impl Mapper {
    /// Wide format: one [`Ingested`] per row of `batch`, rows numbered from `first_idx`.
    pub fn ingest_wide(
        &self,
        batch: &RecordBatch,
        part: u32,
        first_idx: u32,
        dups: &Duplicates,
    ) -> Result<Vec<Ingested>> {
        let Layout::Wide { bands, parallax } = &self.layout else {
            unreachable!("ingest_wide on a long layout")
        };
        let ids = id_col(batch, &self.source_id)?;
        struct Cols {
            band: u16,
            what: String,
            err_name: Option<String>,
            mag: Float64Array,
            err: Option<Float64Array>,
            foe: Option<Float64Array>,
            floor: f32,
        }
        let mut cols = Vec::with_capacity(bands.len());
        for b in bands {
            cols.push(Cols {
                band: b.band,
                what: b.column.clone(),
                err_name: b.error.clone(),
                mag: f64_col(batch, &b.column)?,
                err: b.error.as_deref().map(|c| f64_col(batch, c)).transpose()?,
                foe: b
                    .flux_over_error
                    .as_deref()
                    .map(|c| f64_col(batch, c))
                    .transpose()?,
                floor: b.floor,
            });
        }
        let plx = match parallax {
            Some((p, e)) => Some((
                f64_col(batch, p)?,
                e.as_deref().map(|c| f64_col(batch, c)).transpose()?,
            )),
            None => None,
        };
        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let mut st = Ingested {
                part,
                idx: first_idx + i as u32,
                obs: StarObs::default(),
                flags: 0,
                reason: String::new(),
                null_id: ids.is_null(i),
                n_rows: 1,
            };
            let mut reasons: Vec<String> = Vec::new();
            if st.null_id {
                st.flags |= flags::NULL_SOURCE_ID;
                reasons.push("source_id is null".into());
            } else {
                st.obs.source_id = ids.value(i);
                if let Some(&n) = dups.get(&st.obs.source_id) {
                    st.flags |= flags::DUPLICATE_SOURCE_ID;
                    reasons.push(dup_reason(n, false));
                }
            }
            for c in &cols {
                let Some(mag) = get(&c.mag, i) else { continue };
                // the error column wins; flux_over_error only where it is absent or null
                let err = c.err.as_ref().and_then(|e| get(e, i)).or_else(|| {
                    c.foe
                        .as_ref()
                        .and_then(|f| get(f, i))
                        .map(|foe| MAG_PER_REL_FLUX / foe)
                });
                let what = match (&c.err_name, err.is_none()) {
                    (Some(e), true) if c.foe.is_none() => format!("{} ({e} null)", c.what),
                    _ => c.what.clone(),
                };
                match check_measurement(c.band, mag, err, c.floor, &what) {
                    Ok(m) => st.obs.phot.push(m),
                    Err((f, r)) => {
                        st.flags |= f;
                        reasons.push(r);
                    }
                }
            }
            if let Some((p, e)) = &plx {
                if let Some(v) = get(p, i) {
                    match check_parallax(v, e.as_ref().and_then(|e| get(e, i)), self.zero_point) {
                        Ok(pe) => st.obs.parallax = Some(pe),
                        Err(r) => {
                            st.flags |= flags::BAD_PARALLAX;
                            reasons.push(r);
                        }
                    }
                }
            }
            st.reason = reasons.join("; ");
            out.push(st);
        }
        Ok(out)
    }
}

struct LongStar {
    st: Ingested,
    reasons: Vec<String>,
}

/// Long format: collects the observations of one row group, grouped by source_id in order
/// of first appearance.
pub struct LongGrouper<'a> {
    mapper: &'a Mapper,
    part: u32,
    index: HashMap<i64, usize>,
    stars: Vec<LongStar>,
}

impl<'a> LongGrouper<'a> {
    /// Start a row group of `part`.
    pub fn new(mapper: &'a Mapper, part: u32) -> Self {
        LongGrouper {
            mapper,
            part,
            index: HashMap::new(),
            stars: Vec::new(),
        }
    }

    /// Add a batch of observation rows.
    pub fn add(&mut self, batch: &RecordBatch, dups: &Duplicates) -> Result<()> {
        let Layout::Long { bands } = &self.mapper.layout else {
            unreachable!("LongGrouper on a wide layout")
        };
        let (bc, mc, ec) = &self.mapper.long_cols;
        let ids = id_col(batch, &self.mapper.source_id)?;
        let band_col = cast(
            batch
                .column_by_name(bc)
                .ok_or_else(|| anyhow::anyhow!("column {bc} missing from batch"))?,
            &DataType::Utf8,
        )?;
        let band_col = band_col
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8 gives StringArray");
        let mags = f64_col(batch, mc)?;
        let errs = f64_col(batch, ec)?;
        for i in 0..batch.num_rows() {
            let new_star = |null_id: bool, id: i64| LongStar {
                st: Ingested {
                    part: self.part,
                    idx: 0,
                    obs: StarObs {
                        source_id: id,
                        ..Default::default()
                    },
                    flags: 0,
                    reason: String::new(),
                    null_id,
                    n_rows: 0,
                },
                reasons: Vec::new(),
            };
            let slot = if ids.is_null(i) {
                // every null-id observation is its own output row
                let mut s = new_star(true, 0);
                s.st.flags |= flags::NULL_SOURCE_ID;
                s.reasons.push("source_id is null".into());
                s.st.n_rows = 1;
                self.stars.push(s);
                continue;
            } else {
                let id = ids.value(i);
                *self.index.entry(id).or_insert_with(|| {
                    let mut s = new_star(false, id);
                    if let Some(&n) = dups.get(&id) {
                        s.st.flags |= flags::DUPLICATE_SOURCE_ID;
                        s.reasons.push(dup_reason(n, true));
                    }
                    self.stars.push(s);
                    self.stars.len() - 1
                })
            };
            let s = &mut self.stars[slot];
            s.st.n_rows += 1;
            let Some(mag) = get(&mags, i) else { continue };
            let err = get(&errs, i);
            if band_col.is_null(i) {
                s.st.flags |= flags::UNKNOWN_BAND;
                s.reasons.push("null band name".into());
                continue;
            }
            let label = band_col.value(i);
            if label == "parallax" {
                if s.st.obs.parallax.is_some() {
                    s.st.flags |= flags::DUPLICATE_BAND;
                    s.reasons
                        .push("parallax given twice; the later value was ignored".into());
                    continue;
                }
                match check_parallax(mag, err, self.mapper.zero_point) {
                    Ok(pe) => s.st.obs.parallax = Some(pe),
                    Err(r) => {
                        s.st.flags |= flags::BAD_PARALLAX;
                        s.reasons.push(r);
                    }
                }
                continue;
            }
            let Some(&band) = bands.get(label) else {
                s.st.flags |= flags::UNKNOWN_BAND;
                s.reasons.push(format!("unknown band '{label}'"));
                continue;
            };
            if s.st.obs.phot.iter().any(|m| m.band == band) {
                s.st.flags |= flags::DUPLICATE_BAND;
                s.reasons.push(format!(
                    "band {label} observed more than once; the later value was ignored"
                ));
                continue;
            }
            match check_measurement(band, mag, err, 0.0, label) {
                Ok(m) => s.st.obs.phot.push(m),
                Err((f, r)) => {
                    s.st.flags |= f;
                    s.reasons.push(r);
                }
            }
        }
        Ok(())
    }

    /// The stars of the row group, numbered from `first_idx`.
    pub fn finish(self, first_idx: u32) -> Vec<Ingested> {
        self.stars
            .into_iter()
            .enumerate()
            .map(|(k, mut s)| {
                s.st.idx = first_idx + k as u32;
                s.st.reason = s.reasons.join("; ");
                s.st
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::config::PipelineConfig;
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use std::sync::Arc;

    fn names() -> Vec<String> {
        crate::physics::ForwardModel::embedded()
            .bands()
            .names()
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn wide_rows_are_validated_and_flagged() {
        let cfg = PipelineConfig::default().input;
        let names = names();
        let maps = band_mappings(&cfg, &names).unwrap();
        let b = batch(vec![
            (
                "source_id",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(2),
                    None,
                    Some(1),
                    Some(5),
                ])),
            ),
            (
                "phot_g_mean_mag",
                Arc::new(Float64Array::from(vec![
                    Some(15.0),
                    Some(f64::NAN),
                    Some(14.0),
                    None,
                    Some(12.0),
                ])),
            ),
            (
                "phot_g_mean_flux_over_error",
                Arc::new(Float64Array::from(vec![
                    Some(1000.0),
                    Some(100.0),
                    Some(100.0),
                    None,
                    Some(-3.0),
                ])),
            ),
            (
                "j_m",
                Arc::new(Float64Array::from(vec![
                    Some(13.0),
                    Some(12.0),
                    None,
                    None,
                    Some(11.0),
                ])),
            ),
            (
                "j_msigcom",
                Arc::new(Float64Array::from(vec![
                    Some(0.02),
                    Some(-0.1),
                    None,
                    None,
                    None,
                ])),
            ),
            (
                "parallax",
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    None,
                    None,
                    None,
                    Some(2.0),
                ])),
            ),
            (
                "parallax_error",
                Arc::new(Float64Array::from(vec![
                    Some(0.1),
                    None,
                    None,
                    None,
                    Some(0.0),
                ])),
            ),
            ("mystery", Arc::new(Float64Array::from(vec![Some(0.0); 5]))),
        ]);
        let m = Mapper::resolve(&b.schema(), &cfg, &maps, &names, "f").unwrap();
        assert!(!m.is_long());
        assert_eq!(m.unused, vec!["mystery".to_string()]);
        let dups = find_duplicates(vec![1, 2, 1, 5]);
        let s = m.ingest_wide(&b, 0, 10, &dups).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].idx, 10);
        assert_eq!(s[0].obs.phot.len(), 2);
        let g = s[0].obs.phot[0];
        assert!((g.err as f64 - MAG_PER_REL_FLUX / 1000.0).abs() < 1e-7);
        assert_eq!(s[0].obs.parallax, Some((1.0, 0.1)));
        assert_eq!(s[0].flags, flags::DUPLICATE_SOURCE_ID);
        assert_eq!(s[1].flags, flags::BAD_MAGNITUDE | flags::BAD_ERROR);
        assert!(s[1].obs.phot.is_empty());
        assert!(s[2].null_id && s[2].flags & flags::NULL_SOURCE_ID != 0);
        assert!(s[3].obs.phot.is_empty() && s[3].flags == flags::DUPLICATE_SOURCE_ID);
        assert_eq!(s[4].flags, flags::BAD_ERROR | flags::BAD_PARALLAX);
        assert!(
            s[4].reason.contains("j_m (j_msigcom null)"),
            "{}",
            s[4].reason
        );
    }

    #[test]
    fn dr2_switch_and_user_mappings() {
        let mut cfg = PipelineConfig::default().input;
        cfg.gaia_release = super::super::config::GaiaRelease::Dr2;
        cfg.bands.push(BandColumn {
            column: "u".into(),
            band: "sdss_u".into(),
            error: Some("u_err".into()),
            flux_over_error: None,
            error_floor: 0.03,
        });
        let names = names();
        let maps = band_mappings(&cfg, &names).unwrap();
        let g = maps
            .iter()
            .find(|(b, _)| b.column == "phot_g_mean_mag")
            .unwrap();
        assert_eq!(names[g.1 as usize], "gaia_dr2_g");
        let b = batch(vec![
            ("source_id", Arc::new(Int64Array::from(vec![7]))),
            ("u", Arc::new(Float64Array::from(vec![18.0]))),
            ("u_err", Arc::new(Float64Array::from(vec![0.04]))),
        ]);
        let m = Mapper::resolve(&b.schema(), &cfg, &maps, &names, "f").unwrap();
        let s = m.ingest_wide(&b, 0, 0, &Duplicates::new()).unwrap();
        assert!((s[0].obs.phot[0].err - 0.05).abs() < 1e-6);
        cfg.bands[0].band = "sdss_q".into();
        let e = band_mappings(&cfg, &names).unwrap_err().to_string();
        assert!(e.contains("sdss_q") && e.contains("gaia_g"), "{e}");
    }

    #[test]
    fn long_rows_are_grouped_by_star() {
        let cfg = PipelineConfig::default().input;
        let names = names();
        let maps = band_mappings(&cfg, &names).unwrap();
        let b = batch(vec![
            (
                "source_id",
                Arc::new(Int64Array::from(vec![
                    Some(3),
                    Some(4),
                    Some(3),
                    Some(3),
                    None,
                    Some(4),
                    Some(4),
                ])),
            ),
            (
                "band",
                Arc::new(StringArray::from(vec![
                    "gaia_g", "gaia_g", "parallax", "xx_q", "gaia_g", "gaia_g", "tmass_j",
                ])),
            ),
            (
                "mag",
                Arc::new(Float64Array::from(vec![
                    15.0, 16.0, 1.5, 3.0, 1.0, 16.1, 14.0,
                ])),
            ),
            (
                "mag_error",
                Arc::new(Float64Array::from(vec![
                    0.01, 0.01, 0.2, 0.1, 0.1, 0.01, -1.0,
                ])),
            ),
        ]);
        let m = Mapper::resolve(&b.schema(), &cfg, &maps, &names, "f").unwrap();
        assert!(m.is_long());
        let mut g = LongGrouper::new(&m, 2);
        g.add(&b, &Duplicates::new()).unwrap();
        let s = g.finish(5);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].obs.source_id, s[0].idx, s[0].n_rows), (3, 5, 3));
        assert_eq!(s[0].obs.parallax, Some((1.5, 0.2)));
        assert_eq!(s[0].flags, flags::UNKNOWN_BAND);
        assert_eq!(s[1].obs.source_id, 4);
        assert_eq!(s[1].obs.phot.len(), 1);
        assert_eq!(s[1].flags, flags::DUPLICATE_BAND | flags::BAD_ERROR);
        assert!(s[2].null_id);
        assert_eq!(s.iter().map(|x| x.n_rows).sum::<u32>(), 7);
    }

    #[test]
    fn schema_errors_name_the_file() {
        let cfg = PipelineConfig::default().input;
        let names = names();
        let maps = band_mappings(&cfg, &names).unwrap();
        let b = batch(vec![(
            "id",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )]);
        let e = Mapper::resolve(&b.schema(), &cfg, &maps, &names, "cat.parquet").unwrap_err();
        assert!(e.to_string().contains("cat.parquet"));
        let b = batch(vec![
            ("source_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("phot_g_mean_mag", Arc::new(StringArray::from(vec!["x"]))),
        ]);
        assert!(Mapper::resolve(&b.schema(), &cfg, &maps, &names, "c").is_err());
    }
}
