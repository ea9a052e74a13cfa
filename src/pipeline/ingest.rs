//! Ingest (step 2 of the data path): input columns resolved against the band registry once
//! per file, then record batches turned into validated [`StarObs`] with per-star flags and
//! reasons. Bad values never stop a run: a NaN magnitude, a non-positive error, an unknown
//! band or a duplicate source_id becomes a flag on that star's output row.

use super::config::{
    default_band_columns, BandColumn, GaiaRelease, InputConfig, InputFormat, ZeroPoint,
};
use super::keep::KeptRow;
use super::parallax_zero_point::{
    lindegren2021_zero_point, ZeroPointInput, DR2_GLOBAL_ZERO_POINT_MAS, DR3_GLOBAL_ZERO_POINT_MAS,
};
use crate::likelihood::{Measurement, StarObs};
use crate::posterior::flags;
use crate::prior::reddening::{check_map_value, MapReddening, ReddeningModel};
use crate::util::column;
use anyhow::{bail, Result};
use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// 2.5 / ln 10: magnitude error per unit relative flux error.
pub const MAG_PER_REL_FLUX: f64 = 1.085_736_204_758_129_6;

/// Long format: the band label whose rows carry the reddening prior (E(B-V) and its error
/// in the magnitude and error columns).
pub const EBV_PRIOR_BAND: &str = "ebv_prior";

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
    /// Its values of the kept input columns (`[output] keep_columns`; None when none).
    pub kept: Option<KeptRow>,
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
    /// Error floor \[mag\].
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
        /// Columns of the per-star reddening prior, if present.
        reddening: Option<ReddeningColumns>,
        /// Columns of the Lindegren et al. (2021) zero point (in [`LINDEGREN_COLUMNS`]
        /// order), when it applies.
        zero_point: Option<Vec<String>>,
        /// Quality masks that apply to this file's bands.
        masks: super::masks::Masks,
    },
    /// One row per observation.
    Long {
        /// Band label -> band id (registry names and aliases).
        bands: HashMap<String, u16>,
    },
}

/// The reddening prior's columns in one file.
#[derive(Clone, Debug)]
pub struct ReddeningColumns {
    /// E(B-V) column.
    pub ebv: String,
    /// Its error column, if present.
    pub error: Option<String>,
    /// Map-name column, if present.
    pub map: Option<String>,
}

/// The catalogue columns the Lindegren et al. (2021) recipe needs, in
/// `parallax_zero_point::ZeroPointInput`'s order.
pub const LINDEGREN_COLUMNS: [&str; 5] = [
    "phot_g_mean_mag",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
    "astrometric_params_solved",
];

/// How observed parallaxes become the likelihood's: zero point and error model.
#[derive(Clone, Debug)]
pub struct ParallaxRule {
    /// Z \[mas\] where no per-star zero point applies (parallax used: parallax - Z).
    pub zero_point: f64,
    /// Factor on the quoted errors.
    pub error_scale: f64,
    /// Added in quadrature \[mas\].
    pub error_floor: f64,
}

impl ParallaxRule {
    fn new(cfg: &InputConfig) -> ParallaxRule {
        let zero_point = match (cfg.parallax.zero_point, cfg.gaia_release) {
            (ZeroPoint::Constant(z), _) => z,
            (ZeroPoint::Auto(_), GaiaRelease::Dr3) => DR3_GLOBAL_ZERO_POINT_MAS,
            (ZeroPoint::Auto(_), GaiaRelease::Dr2) => DR2_GLOBAL_ZERO_POINT_MAS,
        };
        ParallaxRule {
            zero_point,
            error_scale: cfg.parallax.error_scale,
            error_floor: cfg.parallax.error_floor,
        }
    }

    /// Validate a parallax and its error; the corrected (parallax, error) or a reason.
    fn apply(&self, plx: f64, err: Option<f64>, z: f64) -> Result<(f32, f32), String> {
        // checked as the f32 the likelihood gets (see check_measurement)
        let p32 = (plx - z) as f32;
        if !p32.is_finite() {
            return Err(format!("parallax {plx}"));
        }
        match err {
            None => Err("parallax without error".into()),
            Some(e) => {
                let e32 = (self.error_scale * e).hypot(self.error_floor) as f32;
                if e.is_finite() && e > 0.0 && e32.is_finite() && e32 > 0.0 {
                    Ok((p32, e32))
                } else {
                    Err(format!("parallax error {e} is not positive and finite"))
                }
            }
        }
    }
}

/// How to read one file's rows.
#[derive(Clone, Debug)]
pub struct Mapper {
    /// source_id column.
    pub source_id: String,
    /// Wide or long.
    pub layout: Layout,
    long_cols: (String, String, String),
    parallax_rule: ParallaxRule,
    reddening: ReddeningModel,
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
/// default for the same column in place), checked against the band registry.
pub fn band_mappings(cfg: &InputConfig, band_names: &[String]) -> Result<Vec<(BandColumn, u16)>> {
    let mut v: Vec<BandColumn> = if cfg.default_columns {
        default_band_columns(cfg.gaia_release)
    } else {
        Vec::new()
    };
    for b in &cfg.bands {
        // a mapping of a default column takes its place (the measurements' order, and so the
        // likelihood's sums, stay those of the defaults)
        match v.iter().position(|d| d.column == b.column) {
            Some(k) => v[k] = b.clone(),
            None => v.push(b.clone()),
        }
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
        (band_names, reddening): (&[String], &ReddeningModel),
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
            let parallax = match typed_column(&has, &cfg.parallax_column, numeric, "numbers", file)?
            {
                Some(p) => {
                    used.push(p.clone());
                    let e =
                        typed_column(&has, &cfg.parallax_error_column, numeric, "numbers", file)?;
                    used.extend(e.clone());
                    Some((p, e))
                }
                None => None,
            };
            let reddening = reddening_columns(cfg, &has, file, &mut used)?;
            let zero_point = lindegren_columns(cfg, &has, file, &mut used)?;
            let masks = resolve_masks(cfg, mappings, band_names, &has, file, &mut used)?;
            Layout::Wide {
                bands,
                parallax,
                reddening,
                zero_point,
                masks,
            }
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
            parallax_rule: ParallaxRule::new(cfg),
            reddening: reddening.clone(),
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
            Layout::Wide {
                bands,
                parallax,
                reddening,
                zero_point,
                masks,
            } => {
                v.extend(masks.columns());
                for b in bands {
                    v.push(b.column.clone());
                    v.extend(b.error.iter().cloned());
                    v.extend(b.flux_over_error.iter().cloned());
                }
                if let Some((p, e)) = parallax {
                    v.push(p.clone());
                    v.extend(e.iter().cloned());
                }
                if let Some(r) = reddening {
                    v.push(r.ebv.clone());
                    v.extend(r.error.iter().chain(&r.map).cloned());
                }
                v.extend(zero_point.iter().flatten().cloned());
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
    column::f64s(c, &format!("column {name}"))
}

/// The source_id column of a batch as int64.
pub fn id_col(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("column {name} missing from batch"))?;
    column::i64s(c, &format!("column {name}"))
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
    // checked as the f32 the likelihood gets: 1e300 is finite as f64 but not as f32, and
    // 1e-320 is positive as f64 but 0 as f32
    let m32 = mag as f32;
    if !m32.is_finite() {
        return Err((flags::BAD_MAGNITUDE, format!("{what}: magnitude {mag}")));
    }
    let Some(e) = err else {
        return Err((flags::BAD_ERROR, format!("{what}: magnitude without error")));
    };
    let e32 = e.hypot(floor as f64) as f32;
    if !(e.is_finite() && e > 0.0 && e32.is_finite() && e32 > 0.0) {
        return Err((
            flags::BAD_ERROR,
            format!("{what}: error {e} is not positive and finite"),
        ));
    }
    Ok(Measurement {
        band,
        mag: m32,
        err: e32,
    })
}

/// The quality masks of the mapped bands present in the file; a mask the user configured
/// (`[[input.bands]]`) must find its flag column, a default one applies where it does.
fn resolve_masks(
    cfg: &InputConfig,
    mappings: &[(BandColumn, u16)],
    band_names: &[String],
    has: &dyn Fn(&str) -> Option<DataType>,
    file: &str,
    used: &mut Vec<String>,
) -> Result<super::masks::Masks> {
    let present: Vec<_> = mappings
        .iter()
        .filter(|(b, _)| has(&b.column).is_some())
        .map(|(b, id)| {
            let required = cfg
                .bands
                .iter()
                .any(|u| u.column == b.column && u.mask.is_some());
            super::masks::BandRef {
                column: b.column.clone(),
                id: *id,
                name: band_names.get(*id as usize).cloned().unwrap_or_default(),
                mask: b.mask.clone(),
                required,
            }
        })
        .collect();
    super::masks::Masks::resolve(&present, cfg, has, file, used)
}

/// Column `c` if the file has it, checked to be of the `expected` kind.
fn typed_column(
    has: &dyn Fn(&str) -> Option<DataType>,
    c: &str,
    ok: fn(&DataType) -> bool,
    expected: &str,
    file: &str,
) -> Result<Option<String>> {
    match has(c) {
        Some(dt) if !ok(&dt) => bail!("{file}: column {c} has type {dt}; expected {expected}"),
        Some(_) => Ok(Some(c.to_string())),
        None => Ok(None),
    }
}

/// The reddening prior's columns, where the file has the E(B-V) column.
fn reddening_columns(
    cfg: &InputConfig,
    has: &dyn Fn(&str) -> Option<DataType>,
    file: &str,
    used: &mut Vec<String>,
) -> Result<Option<ReddeningColumns>> {
    let Some(ebv) = typed_column(has, &cfg.ebv_prior_column, numeric, "numbers", file)? else {
        return Ok(None);
    };
    let error = typed_column(has, &cfg.ebv_prior_error_column, numeric, "numbers", file)?;
    let map = typed_column(
        has,
        &cfg.ebv_prior_map_column,
        stringy,
        "strings (map names)",
        file,
    )?;
    used.extend(
        [Some(ebv.clone()), error.clone(), map.clone()]
            .into_iter()
            .flatten(),
    );
    Ok(Some(ReddeningColumns { ebv, error, map }))
}

/// The Lindegren et al. (2021) columns, where the zero point is "auto" for Gaia DR3 and the
/// file has all five.
fn lindegren_columns(
    cfg: &InputConfig,
    has: &dyn Fn(&str) -> Option<DataType>,
    file: &str,
    used: &mut Vec<String>,
) -> Result<Option<Vec<String>>> {
    let auto = matches!(cfg.parallax.zero_point, ZeroPoint::Auto(_));
    if !(auto && cfg.gaia_release == GaiaRelease::Dr3) {
        return Ok(None);
    }
    if LINDEGREN_COLUMNS.iter().any(|c| has(c).is_none()) {
        return Ok(None);
    }
    for c in LINDEGREN_COLUMNS {
        let dt = has(c).unwrap();
        if !numeric(&dt) {
            bail!("{file}: column {c} has type {dt}; expected numbers");
        }
        used.push(c.to_string());
    }
    Ok(Some(LINDEGREN_COLUMNS.map(String::from).to_vec()))
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
        let Layout::Wide {
            bands,
            parallax,
            reddening,
            zero_point,
            masks,
        } = &self.layout
        else {
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
        let red = reddening
            .as_ref()
            .map(|r| RedCols::read(batch, r))
            .transpose()?;
        let zp_cols = zero_point
            .as_ref()
            .map(|c| {
                c.iter()
                    .map(|n| f64_col(batch, n))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let mask_cols = masks.read(batch)?;
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
                kept: None,
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
                if let Some(why) = mask_cols.why_masked(c.band, i) {
                    st.flags |= flags::MASKED_BAND;
                    reasons.push(why);
                    continue;
                }
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
                    let z = self.zero_point_of(zp_cols.as_deref(), i);
                    match self
                        .parallax_rule
                        .apply(v, e.as_ref().and_then(|e| get(e, i)), z)
                    {
                        Ok(pe) => st.obs.parallax = Some(pe),
                        Err(r) => {
                            st.flags |= flags::BAD_PARALLAX;
                            reasons.push(r);
                        }
                    }
                }
            }
            if let Some(r) = &red {
                match r.value(i, &self.reddening) {
                    Ok(v) => st.obs.reddening = v,
                    Err(why) => {
                        st.flags |= flags::BAD_REDDENING_PRIOR;
                        reasons.push(why);
                    }
                }
            }
            st.reason = reasons.join("; ");
            out.push(st);
        }
        Ok(out)
    }
}

/// The reddening prior's columns of one batch.
struct RedCols {
    ebv: Float64Array,
    error: Option<Float64Array>,
    map: Option<StringArray>,
}

impl RedCols {
    fn read(batch: &RecordBatch, c: &ReddeningColumns) -> Result<RedCols> {
        let map = match &c.map {
            Some(m) => {
                let col = batch
                    .column_by_name(m)
                    .ok_or_else(|| anyhow::anyhow!("column {m} missing from batch"))?;
                Some(column::strings(col, &format!("column {m}"))?)
            }
            None => None,
        };
        Ok(RedCols {
            ebv: f64_col(batch, &c.ebv)?,
            error: c.error.as_deref().map(|e| f64_col(batch, e)).transpose()?,
            map,
        })
    }

    /// Row `i`'s map value: None where the value is null, an error where it is bad.
    fn value(&self, i: usize, model: &ReddeningModel) -> Result<Option<MapReddening>, String> {
        let Some(ebv) = get(&self.ebv, i) else {
            return Ok(None);
        };
        let map = match &self.map {
            Some(m) if !m.is_null(i) => model.map_index(m.value(i)),
            _ => MapReddening::DEFAULT_MAP,
        };
        map_reddening(ebv, self.error.as_ref().and_then(|e| get(e, i)), map, model).map(Some)
    }
}

/// A validated map value.
fn map_reddening(
    ebv: f64,
    error: Option<f64>,
    map: u16,
    model: &ReddeningModel,
) -> Result<MapReddening, String> {
    let error = error.ok_or("reddening prior without error")?;
    check_map_value(ebv, error, model.av_max)?;
    if (error as f32) <= 0.0 {
        // positive as f64, zero as the f32 the prior divides by
        return Err(format!(
            "reddening prior error {error} is not positive and finite"
        ));
    }
    Ok(MapReddening {
        ebv: ebv as f32,
        error: error as f32,
        map,
    })
}

impl Mapper {
    /// The zero point Z of row `i`: Lindegren et al. (2021) where its columns are present and
    /// define it, the rule's constant otherwise.
    fn zero_point_of(&self, cols: Option<&[Float64Array]>, i: usize) -> f64 {
        let Some(c) = cols else {
            return self.parallax_rule.zero_point;
        };
        let v = |k: usize| get(&c[k], i).unwrap_or(f64::NAN);
        let input = ZeroPointInput {
            g_mag: v(0),
            nu_eff_used_in_astrometry: v(1),
            pseudocolour: v(2),
            ecl_lat_deg: v(3),
            astrometric_params_solved: get(&c[4], i).map_or(0, |p| p as i64),
        };
        lindegren2021_zero_point(&input).unwrap_or(self.parallax_rule.zero_point)
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
    kept: Option<Arc<RecordBatch>>,
}

impl<'a> LongGrouper<'a> {
    /// Start a row group of `part`.
    pub fn new(mapper: &'a Mapper, part: u32) -> Self {
        LongGrouper {
            mapper,
            part,
            index: HashMap::new(),
            stars: Vec::new(),
            kept: None,
        }
    }

    /// The kept columns of the next batch to [`add`](LongGrouper::add) (None: none kept).
    pub(crate) fn set_kept(&mut self, kept: Option<Arc<RecordBatch>>) {
        self.kept = kept;
    }

    /// Add a batch of observation rows.
    pub fn add(&mut self, batch: &RecordBatch, dups: &Duplicates) -> Result<()> {
        let Layout::Long { bands } = &self.mapper.layout else {
            unreachable!("LongGrouper on a wide layout")
        };
        let (bc, mc, ec) = &self.mapper.long_cols;
        let ids = id_col(batch, &self.mapper.source_id)?;
        let band_col = column::strings(
            batch
                .column_by_name(bc)
                .ok_or_else(|| anyhow::anyhow!("column {bc} missing from batch"))?,
            &format!("column {bc}"),
        )?;
        let band_col = &band_col;
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
                    // the star's first observation row carries its kept values
                    kept: self.kept.as_ref().map(|b| KeptRow::new(b, i)),
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
                let rule = &self.mapper.parallax_rule;
                match rule.apply(mag, err, rule.zero_point) {
                    Ok(pe) => s.st.obs.parallax = Some(pe),
                    Err(r) => {
                        s.st.flags |= flags::BAD_PARALLAX;
                        s.reasons.push(r);
                    }
                }
                continue;
            }
            if label == EBV_PRIOR_BAND {
                let model = &self.mapper.reddening;
                match map_reddening(mag, err, MapReddening::DEFAULT_MAP, model) {
                    Ok(r) if s.st.obs.reddening.is_none() => s.st.obs.reddening = Some(r),
                    Ok(_) => {
                        s.st.flags |= flags::DUPLICATE_BAND;
                        s.reasons
                            .push("ebv_prior given twice; the later value was ignored".into());
                    }
                    Err(r) => {
                        s.st.flags |= flags::BAD_REDDENING_PRIOR;
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

    /// The mapper of a test batch, with the default reddening settings.
    fn resolve(
        b: &RecordBatch,
        cfg: &InputConfig,
        maps: &[(BandColumn, u16)],
        file: &str,
    ) -> Result<Mapper> {
        Mapper::resolve(
            &b.schema(),
            cfg,
            maps,
            (&names(), &ReddeningModel::default()),
            file,
        )
    }

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
        let m = resolve(&b, &cfg, &maps, "f").unwrap();
        assert!(!m.is_long());
        assert_eq!(m.unused, vec!["mystery".to_string()]);
        let dups = find_duplicates(vec![1, 2, 1, 5]);
        let s = m.ingest_wide(&b, 0, 10, &dups).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].idx, 10);
        assert_eq!(s[0].obs.phot.len(), 2);
        let g = s[0].obs.phot[0];
        assert!((g.err as f64 - MAG_PER_REL_FLUX / 1000.0).abs() < 1e-7);
        // the default zero point: DR3's global -0.017 mas (no Lindegren columns here)
        assert_eq!(s[0].obs.parallax, Some((1.017, 0.1)));
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
            mask: None,
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
        let m = resolve(&b, &cfg, &maps, "f").unwrap();
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
        let m = resolve(&b, &cfg, &maps, "f").unwrap();
        assert!(m.is_long());
        let mut g = LongGrouper::new(&m, 2);
        g.add(&b, &Duplicates::new()).unwrap();
        let s = g.finish(5);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].obs.source_id, s[0].idx, s[0].n_rows), (3, 5, 3));
        assert_eq!(s[0].obs.parallax, Some((1.517, 0.2)));
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
        let e = resolve(&b, &cfg, &maps, "cat.parquet").unwrap_err();
        assert!(e.to_string().contains("cat.parquet"));
        let b = batch(vec![
            ("source_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("phot_g_mean_mag", Arc::new(StringArray::from(vec!["x"]))),
        ]);
        assert!(resolve(&b, &cfg, &maps, "c").is_err());
    }

    fn f64s(v: Vec<Option<f64>>) -> ArrayRef {
        Arc::new(Float64Array::from(v))
    }

    /// Map values: valid ones are kept with their map's index, nulls keep the population
    /// prior silently, bad ones are flagged; DR3 parallaxes take Lindegren et al.'s zero
    /// point where its columns are given and the global offset where they are null.
    #[test]
    fn reddening_priors_and_lindegren_zero_points_are_read() {
        let cfg = PipelineConfig::default().input;
        let names = names();
        let maps = band_mappings(&cfg, &names).unwrap();
        let n = 5;
        let b = batch(vec![
            (
                "source_id",
                Arc::new(Int64Array::from((1..=n).collect::<Vec<i64>>())) as ArrayRef,
            ),
            ("phot_g_mean_mag", f64s(vec![Some(15.0); 5])),
            ("phot_g_mean_flux_over_error", f64s(vec![Some(500.0); 5])),
            ("parallax", f64s(vec![Some(1.0); 5])),
            ("parallax_error", f64s(vec![Some(0.05); 5])),
            (
                "nu_eff_used_in_astrometry",
                f64s(vec![Some(1.5), None, Some(1.5), Some(1.5), Some(1.5)]),
            ),
            ("pseudocolour", f64s(vec![None; 5])),
            ("ecl_lat", f64s(vec![Some(30.0); 5])),
            ("astrometric_params_solved", f64s(vec![Some(31.0); 5])),
            (
                "ebv_prior",
                f64s(vec![Some(0.1), None, Some(f64::NAN), Some(-1.0), Some(0.2)]),
            ),
            (
                "ebv_prior_error",
                f64s(vec![Some(0.02), Some(0.5), Some(0.02), Some(0.02), None]),
            ),
            (
                "ebv_prior_source",
                Arc::new(StringArray::from(vec![
                    Some("sfd"),
                    None,
                    Some("b19"),
                    None,
                    None,
                ])),
            ),
        ]);
        let mut rcfg = crate::prior::reddening::ReddeningConfig::default();
        rcfg.maps.insert("sfd".into(), Default::default());
        let red = ReddeningModel::new(&rcfg, &[], &[], 10.0);
        let m = Mapper::resolve(&b.schema(), &cfg, &maps, (&names, &red), "f").unwrap();
        assert!(m.unused.is_empty(), "{:?}", m.unused);
        let s = m.ingest_wide(&b, 0, 0, &Duplicates::new()).unwrap();
        let r0 = s[0].obs.reddening.unwrap();
        assert_eq!((r0.ebv, r0.error, r0.map), (0.1, 0.02, 0));
        assert!(s[1].obs.reddening.is_none() && s[1].flags == 0);
        for k in [2, 3, 4] {
            assert!(s[k].obs.reddening.is_none());
            assert_eq!(s[k].flags, flags::BAD_REDDENING_PRIOR, "{}", s[k].reason);
        }
        let z = lindegren2021_zero_point(&ZeroPointInput {
            g_mag: 15.0,
            nu_eff_used_in_astrometry: 1.5,
            pseudocolour: f64::NAN,
            ecl_lat_deg: 30.0,
            astrometric_params_solved: 31,
        })
        .unwrap();
        assert!(z < 0.0 && (z - DR3_GLOBAL_ZERO_POINT_MAS).abs() > 1e-3);
        assert_eq!(s[0].obs.parallax.unwrap().0, (1.0 - z) as f32);
        assert_eq!(
            s[1].obs.parallax.unwrap().0,
            (1.0 - DR3_GLOBAL_ZERO_POINT_MAS) as f32
        );
    }

    /// Found by fuzzing (tests/hostile_gen.rs): values finite and positive as f64 but not as
    /// the f32 the likelihood gets (1e300 -> inf, 1e-320 -> 0) were accepted.
    #[test]
    fn values_are_checked_as_the_f32_the_likelihood_gets() {
        let (bm, be) = (flags::BAD_MAGNITUDE, flags::BAD_ERROR);
        assert_eq!(
            check_measurement(0, 1e300, Some(0.1), 0.0, "m")
                .unwrap_err()
                .0,
            bm
        );
        assert_eq!(
            check_measurement(0, 15.0, Some(1e300), 0.0, "m")
                .unwrap_err()
                .0,
            be
        );
        assert_eq!(
            check_measurement(0, 15.0, Some(1e-320), 0.0, "m")
                .unwrap_err()
                .0,
            be
        );
        // a floor rescues a tiny error; hypot does not overflow on a large one
        assert!(check_measurement(0, 15.0, Some(1e-320), 0.01, "m").is_ok());
        assert!(check_measurement(0, 15.0, Some(1e30), 0.0, "m").is_ok());
        let rule = ParallaxRule::new(&PipelineConfig::default().input);
        assert!(rule.apply(1e300, Some(0.1), 0.0).is_err());
        assert!(rule.apply(1.0, Some(1e-320), 0.0).is_err());
        assert!(rule.apply(1.0, Some(1e300), 0.0).is_err());
        let red = ReddeningModel::default();
        assert!(map_reddening(0.1, Some(1e-320), 0, &red).is_err());
    }

    #[test]
    fn constant_zero_points_and_error_inflation_follow_the_config() {
        let mut cfg = PipelineConfig::default().input;
        cfg.parallax.zero_point = ZeroPoint::Constant(-0.03);
        cfg.parallax.error_scale = 1.2;
        cfg.parallax.error_floor = 0.01;
        let rule = ParallaxRule::new(&cfg);
        let (p, e) = rule.apply(1.0, Some(0.05), rule.zero_point).unwrap();
        assert_eq!(p, 1.03f64 as f32);
        assert!((e as f64 - (0.06f64).hypot(0.01)).abs() < 1e-7);
        cfg.parallax.zero_point = ZeroPoint::Auto(crate::pipeline::config::AutoZeroPoint::Auto);
        cfg.gaia_release = GaiaRelease::Dr2;
        assert_eq!(
            ParallaxRule::new(&cfg).zero_point,
            DR2_GLOBAL_ZERO_POINT_MAS
        );
    }
}
