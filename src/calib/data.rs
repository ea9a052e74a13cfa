//! Calibration step, input: read labelled benchmark stars (photometry, parallax, spectroscopic
//! labels, reddening prior) from Parquet into [`LabelledStar`]s.
//!
//! The column contract is the pipeline's input contract (Gaia DR2 G/BP/RP, Pan-STARRS1 grizy,
//! 2MASS JHKs, WISE W1/W2, Gaia parallax) plus labels `teff logg mh` with `*_error`,
//! `label_source`, and `ebv_prior`/`ebv_prior_error` (null where no map value exists).
//! Null magnitudes are "not observed"; measurements with a non-finite magnitude or a
//! non-positive error are dropped and counted.

use crate::likelihood::Measurement;
use crate::physics::ForwardModel;
use crate::util::column;
use anyhow::{bail, Context, Result};
use arrow::array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

/// Photometry columns of the benchmark file: (magnitude, error, model band).
///
/// Gaia magnitudes of the benchmark file are DR2 and map to the DR2 passbands.
pub const BENCHMARK_PHOTOMETRY: [(&str, &str, &str); 13] = [
    ("phot_g_mean_mag", "phot_g_mean_mag_error", "gaia_dr2_g"),
    ("phot_bp_mean_mag", "phot_bp_mean_mag_error", "gaia_dr2_bp"),
    ("phot_rp_mean_mag", "phot_rp_mean_mag_error", "gaia_dr2_rp"),
    ("g_mean_psf_mag", "g_mean_psf_mag_error", "ps1_g"),
    ("r_mean_psf_mag", "r_mean_psf_mag_error", "ps1_r"),
    ("i_mean_psf_mag", "i_mean_psf_mag_error", "ps1_i"),
    ("z_mean_psf_mag", "z_mean_psf_mag_error", "ps1_z"),
    ("y_mean_psf_mag", "y_mean_psf_mag_error", "ps1_y"),
    ("j_m", "j_msigcom", "tmass_j"),
    ("h_m", "h_msigcom", "tmass_h"),
    ("ks_m", "ks_msigcom", "tmass_ks"),
    ("w1mpro", "w1mpro_error", "wise_w1"),
    ("w2mpro", "w2mpro_error", "wise_w2"),
];

/// Numeric columns every benchmark file must have (besides photometry).
pub const REQUIRED_NUMERIC: [&str; 8] = [
    "parallax",
    "parallax_error",
    "teff",
    "teff_error",
    "logg",
    "logg_error",
    "mh",
    "mh_error",
];

/// One labelled star.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledStar {
    /// Catalogue id.
    pub source_id: i64,
    /// Spectroscopic labels (Teff \[K\], log g, [M/H]).
    pub labels: [f64; 3],
    /// Their reported 1-sigma errors.
    pub label_err: [f64; 3],
    /// Survey that measured the labels (e.g. "lamost").
    pub label_source: String,
    /// Parallax and its error as published \[mas\] (no zero-point correction), if finite.
    pub parallax: Option<(f64, f64)>,
    /// Reddening prior E and its error (SFD scale); either may be null. A null E with an
    /// error means "no map value, reddening of about that size" (half-normal prior).
    pub ebv: (Option<f64>, Option<f64>),
    /// Map the reddening prior comes from (`ebv_prior_source`; "map" if the file has no
    /// such column). Each map's scale is a nuisance of the fit.
    pub ebv_source: String,
    /// Photometry (band ids of the forward model's registry).
    pub phot: Vec<Measurement>,
}

/// What reading found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReadSummary {
    /// File name (no directories, so that reports are reproducible across checkouts).
    pub file: String,
    /// Rows in the file.
    pub rows: usize,
    /// Stars kept (finite labels, at least 3 measurements).
    pub stars: usize,
    /// Rows dropped for non-finite labels or label errors.
    pub dropped_bad_labels: usize,
    /// Rows dropped for having fewer than 3 usable measurements.
    pub dropped_few_bands: usize,
    /// Measurements dropped for a non-finite magnitude or a non-positive error (not nulls).
    pub dropped_measurements: usize,
    /// FNV-1a 64 hash of the file bytes (hex), recorded in the model card.
    pub fnv1a64: String,
}

/// FNV-1a 64-bit hash (provenance of input files; not cryptographic).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

enum Col {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Str(Vec<Option<String>>),
}

/// Read the named columns of a Parquet file: numeric ones as f64 (null = NaN), `source_id`
/// as i64 (exact: Gaia ids exceed 2^53), string ones as Option<String>.
fn read_columns(
    path: &Path,
    numeric: &[&str],
    strings: &[&str],
) -> Result<(usize, HashMap<String, Col>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    for name in numeric
        .iter()
        .chain(strings)
        .chain(std::iter::once(&"source_id"))
    {
        if schema.field_with_name(name).is_err() {
            bail!("{}: missing column '{name}'", path.display());
        }
    }
    let reader = builder
        .build()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut cols: HashMap<String, Col> = HashMap::new();
    cols.insert("source_id".into(), Col::I64(Vec::new()));
    for n in numeric {
        cols.insert(n.to_string(), Col::F64(Vec::new()));
    }
    for n in strings {
        cols.insert(n.to_string(), Col::Str(Vec::new()));
    }
    let mut rows = 0;
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        rows += batch.num_rows();
        for (name, col) in cols.iter_mut() {
            let arr = batch
                .column_by_name(name)
                .with_context(|| format!("{}: missing column '{name}'", path.display()))?;
            let what = format!("{}: column '{name}'", path.display());
            match col {
                Col::F64(v) => {
                    v.extend(column::nan_for_null(&column::f64s(arr, &what)?));
                }
                Col::I64(v) => {
                    let c = column::i64s(arr, &what)?;
                    if c.null_count() > 0 {
                        bail!("{}: column '{name}' has nulls", path.display());
                    }
                    v.extend(c.values().iter().copied());
                }
                Col::Str(v) => {
                    let c = column::strings(arr, &what)?;
                    v.extend(c.iter().map(|s| s.map(str::to_string)));
                }
            }
        }
    }
    Ok((rows, cols))
}

/// Read labelled stars from a Parquet file in the benchmark contract.
pub fn read_labelled_stars(
    path: &Path,
    fm: &ForwardModel,
) -> Result<(Vec<LabelledStar>, ReadSummary)> {
    let mut numeric: Vec<&str> = REQUIRED_NUMERIC.to_vec();
    numeric.extend(["ebv_prior", "ebv_prior_error"]);
    for (m, e, _) in BENCHMARK_PHOTOMETRY {
        numeric.extend([m, e]);
    }
    let has_ebv_source = {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))?
            .schema()
            .field_with_name("ebv_prior_source")
            .is_ok()
    };
    let strings: &[&str] = if has_ebv_source {
        &["label_source", "ebv_prior_source"]
    } else {
        &["label_source"]
    };
    let (rows, mut cols) = read_columns(path, &numeric, strings)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut summary = ReadSummary {
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rows,
        fnv1a64: format!("{:016x}", fnv1a64(&bytes)),
        ..Default::default()
    };
    let mut f64col = |name: &str| -> Vec<f64> {
        match cols.remove(name) {
            Some(Col::F64(v)) => v,
            _ => unreachable!("column {name} was requested as numeric"),
        }
    };
    let plx = f64col("parallax");
    let plx_e = f64col("parallax_error");
    let lab: Vec<Vec<f64>> = ["teff", "logg", "mh"].iter().map(|n| f64col(n)).collect();
    let lab_e: Vec<Vec<f64>> = ["teff_error", "logg_error", "mh_error"]
        .iter()
        .map(|n| f64col(n))
        .collect();
    let ebv = f64col("ebv_prior");
    let ebv_e = f64col("ebv_prior_error");
    let mut phot_cols = Vec::new();
    for (m, e, band) in BENCHMARK_PHOTOMETRY {
        let id = fm
            .bands()
            .id(band)
            .with_context(|| format!("mapping column {m} of {}", path.display()))?;
        phot_cols.push((f64col(m), f64col(e), id as u16));
    }
    let Some(Col::I64(ids)) = cols.remove("source_id") else {
        unreachable!("source_id requested as integer")
    };
    let Some(Col::Str(src)) = cols.remove("label_source") else {
        unreachable!("label_source requested as string")
    };
    let ebv_src: Vec<Option<String>> = match cols.remove("ebv_prior_source") {
        Some(Col::Str(v)) => v,
        _ => vec![None; rows],
    };
    let mut stars = Vec::with_capacity(rows);
    for i in 0..rows {
        let labels = [lab[0][i], lab[1][i], lab[2][i]];
        let label_err = [lab_e[0][i], lab_e[1][i], lab_e[2][i]];
        if !(labels.iter().all(|v| v.is_finite())
            && label_err.iter().all(|v| v.is_finite() && *v >= 0.0)
            && labels[0] > 0.0)
        {
            summary.dropped_bad_labels += 1;
            continue;
        }
        let mut phot = Vec::new();
        for (m, e, band) in &phot_cols {
            let (mag, err) = (m[i], e[i]);
            if mag.is_nan() && e[i].is_nan() {
                continue; // not observed
            }
            if !(mag.is_finite() && err.is_finite() && err > 0.0) {
                summary.dropped_measurements += 1;
                continue;
            }
            phot.push(Measurement {
                band: *band,
                mag: mag as f32,
                err: err as f32,
            });
        }
        if phot.len() < 3 {
            summary.dropped_few_bands += 1;
            continue;
        }
        let parallax = (plx[i].is_finite() && plx_e[i].is_finite() && plx_e[i] > 0.0)
            .then_some((plx[i], plx_e[i]));
        let ebv_err = (ebv_e[i].is_finite() && ebv_e[i] > 0.0).then_some(ebv_e[i]);
        let ebv = (ebv[i].is_finite().then_some(ebv[i]), ebv_err);
        stars.push(LabelledStar {
            source_id: ids[i],
            labels,
            label_err,
            label_source: src[i].clone().unwrap_or_else(|| "unknown".into()),
            parallax,
            ebv,
            ebv_source: ebv_src[i].clone().unwrap_or_else(|| "map".into()),
            phot,
        });
    }
    summary.stars = stars.len();
    Ok((stars, summary))
}
