//! The posterior table's self-description (step 5 of the data path, with `sink.rs`): a unit
//! and a one-line description for every column, stored in the Parquet key-value metadata
//! the way astropy's `Table.write(format='parquet')` does, so that
//! `Table.read(path, format='parquet')` shows them. astropy reads the key `table_meta_yaml`
//! (an ECSV-style YAML header: `datatype`, a list of `{name, datatype, unit, description}`,
//! one per column, every column listed) and `table::len::<column>` for string columns (the
//! longest value in characters; without it astropy warns and scans the column).
//!
//! The YAML is written in flow style with JSON-quoted strings (JSON is YAML), so that no
//! description can break it.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;

/// The metadata key astropy reads the column descriptions from.
pub(crate) const TABLE_META_YAML_KEY: &str = "table_meta_yaml";

/// Unit (astropy's spelling, None when dimensionless) and description of a column.
pub(crate) type ColumnDoc = (Option<&'static str>, String);

/// Unit and one-line meaning of a posterior parameter.
fn param_doc(p: &str) -> (Option<&'static str>, &'static str) {
    match p {
        "teff" => (Some("K"), "effective temperature"),
        "logg" => (Some("dex"), "surface gravity log10(g / (cm s^-2))"),
        "mh" => (Some("dex"), "metallicity [M/H]"),
        "av" => (Some("mag"), "extinction A_V"),
        "rv" => (None, "extinction law R_V = A_V / E(B-V)"),
        "distance" => (Some("pc"), "distance"),
        "radius" => (Some("solRad"), "radius from the MIST mass and log g"),
        "mass" => (Some("solMass"), "MIST mass at (Teff, log g, [M/H])"),
        "luminosity" => (Some("solLum"), "luminosity R^2 (Teff / 5772 K)^4"),
        "abs_g" => (
            Some("mag"),
            "absolute Gaia DR3 G magnitude (no extinction, 10 pc)",
        ),
        "ag" => (Some("mag"), "extinction A_G in the run's Gaia G passband"),
        "abp" => (Some("mag"), "extinction A_BP in the run's Gaia BP passband"),
        "arp" => (Some("mag"), "extinction A_RP in the run's Gaia RP passband"),
        "ebpminrp" => (
            Some("mag"),
            "reddening E(BP-RP) = A_BP - A_RP in the run's Gaia passbands",
        ),
        _ => (None, ""),
    }
}

/// What a quantile or statistic suffix means.
fn statistic(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "p05" => "posterior 5th percentile of",
        "p16" => "posterior 16th percentile of",
        "p50" => "posterior median of",
        "p84" => "posterior 84th percentile of",
        "p95" => "posterior 95th percentile of",
        "mean" => "posterior mean of",
        "rhat" => "split-R-hat (reference MCMC) of",
        "ess" => "bulk effective sample size (reference MCMC) of",
        _ => return None,
    })
}

/// Fixed columns: the id and the sampling diagnostics.
fn fixed_doc(name: &str) -> Option<&'static str> {
    Some(match name {
        "source_id" => "star id from the input (null if the input's was null)",
        "n_bands" => "photometric bands used",
        "has_parallax" => "a parallax was used",
        "n_samples" => "proposal samples drawn, every component counted",
        "n_eff" => "effective sample size of the importance weights",
        "sample_efficiency" => "n_eff / n_samples",
        "log_evidence" => "log of the evidence estimate (mean unnormalised weight)",
        "log_evidence_se" => "standard error of log_evidence",
        "pareto_k" => "PSIS k-hat of the weights (above 0.7: unreliable)",
        "n_modes" => "posterior modes found and sampled",
        "best_fit_chi2" => "chi^2 of photometry and parallax at the best fit",
        "flags" => "flag bit mask (names in sedflow.flags, schemas/output.md)",
        "flag_reason" => "human-readable flag reasons, '; '-separated",
        _ => return None,
    })
}

/// Unit and description of a posterior-table column of sedflow's own (None for a name that
/// is not one).
pub(crate) fn posterior_column_doc(name: &str) -> Option<ColumnDoc> {
    if let Some(d) = fixed_doc(name) {
        return Some((None, d.to_string()));
    }
    let (stem, suffix) = name.rsplit_once('_')?;
    let what = statistic(suffix)?;
    if let Some(band) = stem.strip_prefix("pred_") {
        let d = format!("{what} the predicted (model) magnitude in band {band}");
        return Some((Some("mag"), d));
    }
    let (unit, meaning) = param_doc(stem);
    if meaning.is_empty() {
        return None;
    }
    let unit = match suffix {
        "rhat" | "ess" => None,
        _ => unit,
    };
    Some((unit, format!("{what} {meaning}")))
}

/// Units of common Gaia-archive columns, for kept input columns (None: unknown or none).
fn input_column_unit(name: &str) -> Option<&'static str> {
    match name {
        "ra" | "dec" | "l" | "b" | "ecl_lon" | "ecl_lat" => Some("deg"),
        "ra_error" | "dec_error" | "parallax" | "parallax_error" => Some("mas"),
        "pmra" | "pmdec" | "pmra_error" | "pmdec_error" => Some("mas / yr"),
        "radial_velocity" | "radial_velocity_error" => Some("km / s"),
        n if n.ends_with("_mag") || n.ends_with("_mag_error") => Some("mag"),
        "j_m" | "h_m" | "k_m" | "j_msigcom" | "h_msigcom" | "k_msigcom" => Some("mag"),
        "w1mpro" | "w2mpro" | "w1mpro_error" | "w2mpro_error" => Some("mag"),
        _ => None,
    }
}

/// Unit and description of a kept input column.
pub(crate) fn kept_column_doc(name: &str) -> ColumnDoc {
    (
        input_column_unit(name),
        format!("input column {name}, copied unchanged (--keep-columns)"),
    )
}

/// ECSV's name of an arrow type (None for types ECSV has no name for).
fn ecsv_datatype(dt: &DataType) -> Option<&'static str> {
    Some(match dt {
        DataType::Boolean => "bool",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float16 => "float16",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        _ => return None,
    })
}

/// The `table_meta_yaml` value for `schema`: every column with its datatype, unit and
/// description (`doc` gives the last two), and the table's meta (`meta`, string values).
pub(crate) fn table_meta_yaml(
    schema: &Schema,
    doc: impl Fn(&str) -> ColumnDoc,
    meta: &BTreeMap<String, String>,
) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut lines = vec!["datatype:".to_string()];
    for f in schema.fields() {
        let (unit, description) = doc(f.name());
        let mut entry = vec![format!("name: {}", q(f.name()))];
        if let Some(dt) = ecsv_datatype(f.data_type()) {
            entry.push(format!("datatype: {dt}"));
        }
        if let Some(u) = unit {
            entry.push(format!("unit: {}", q(u)));
        }
        entry.push(format!("description: {}", q(&description)));
        lines.push(format!("- {{{}}}", entry.join(", ")));
    }
    if !meta.is_empty() {
        lines.push("meta: !!omap".to_string());
        for (k, v) in meta {
            lines.push(format!("- {{{}: {}}}", q(k), q(v)));
        }
    }
    lines.join("\n")
}

/// The longest value (in characters) of every string column seen so far, for astropy's
/// `table::len::<column>` keys.
#[derive(Debug, Default)]
pub(crate) struct StringLengths {
    longest: BTreeMap<String, usize>,
}

impl StringLengths {
    /// Account for the string columns of `batch`.
    pub(crate) fn add(&mut self, batch: &RecordBatch) {
        for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
            let longest = match f.data_type() {
                DataType::Utf8 => a.as_string::<i32>().iter().flatten().map(chars).max(),
                DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().map(chars).max(),
                DataType::Utf8View => a.as_string_view().iter().flatten().map(chars).max(),
                _ => continue,
            };
            let e = self.longest.entry(f.name().clone()).or_insert(0);
            *e = (*e).max(longest.unwrap_or(0));
        }
    }

    /// The `table::len::<column>` entries (at least 1: astropy makes no zero-width strings).
    pub(crate) fn metadata(&self) -> Vec<(String, String)> {
        self.longest
            .iter()
            .map(|(c, n)| (format!("table::len::{c}"), n.max(&1).to_string()))
            .collect()
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::PARAM_NAMES;
    use crate::pipeline::sink::PosteriorLayout;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn every_posterior_column_is_described() {
        let layout = PosteriorLayout {
            chain_diagnostics: true,
            predict_bands: vec!["lsst_g".into()],
        };
        for c in layout.columns() {
            let (unit, d) = posterior_column_doc(&c).unwrap_or_else(|| panic!("{c}"));
            assert!(!d.is_empty(), "{c}");
            let dimensionless = c.starts_with("rv_")
                || c.ends_with("_rhat")
                || c.ends_with("_ess")
                || fixed_doc(&c).is_some();
            assert_eq!(unit.is_none(), dimensionless, "{c}: {unit:?}");
        }
        for p in PARAM_NAMES {
            assert!(!param_doc(p).1.is_empty());
        }
        assert_eq!(
            posterior_column_doc("teff_p50").unwrap(),
            (
                Some("K"),
                "posterior median of effective temperature".into()
            )
        );
        assert_eq!(posterior_column_doc("ag_p16").unwrap().0, Some("mag"));
        assert_eq!(
            posterior_column_doc("radius_p84").unwrap().0,
            Some("solRad")
        );
        assert!(posterior_column_doc("ra").is_none());
    }

    #[test]
    fn yaml_quotes_what_it_must_and_string_lengths_count_characters() {
        let schema = Schema::new(vec![
            Field::new("teff_p50", DataType::Float32, true),
            Field::new("flag_reason", DataType::Utf8, false),
            Field::new("odd: name", DataType::Date32, true),
        ]);
        let y = table_meta_yaml(
            &schema,
            |n| match posterior_column_doc(n) {
                Some(d) => d,
                None => kept_column_doc(n),
            },
            &BTreeMap::from([("k".to_string(), "v: \"x\"".to_string())]),
        );
        let lines: Vec<&str> = y.lines().collect();
        assert_eq!(lines[0], "datatype:");
        assert_eq!(
            lines[1],
            r#"- {name: "teff_p50", datatype: float32, unit: "K", description: "posterior median of effective temperature"}"#
        );
        assert!(lines[2].starts_with(r#"- {name: "flag_reason", datatype: string, description: "#));
        // a type ECSV does not name has no datatype entry; names are quoted
        assert!(lines[3].starts_with(r#"- {name: "odd: name", description: "input column"#));
        assert_eq!(lines[4], "meta: !!omap");
        assert_eq!(lines[5], r#"- {"k": "v: \"x\""}"#);
        let mut lens = StringLengths::default();
        let batch = |v: Vec<Option<&str>>| {
            let a: ArrayRef = Arc::new(StringArray::from(v));
            RecordBatch::try_from_iter([("flag_reason", a)]).unwrap()
        };
        lens.add(&batch(vec![Some("ab"), None]));
        lens.add(&batch(vec![Some("Ä°Ö")]));
        assert_eq!(
            lens.metadata(),
            [("table::len::flag_reason".to_string(), "3".to_string())]
        );
        let mut empty = StringLengths::default();
        empty.add(&batch(vec![]));
        assert_eq!(empty.metadata()[0].1, "1");
    }
}
