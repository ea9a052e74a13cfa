//! The resume fingerprint (planning step of `sedflow run`): which settings made an output
//! file. A part whose output exists is skipped only when that output was made with the
//! same settings; otherwise the run refuses and names the keys that differ.
//!
//! The settings are the model id (neural posterior, forward model and calibration, whose
//! floors are the noise model) and the whole serialised [`PipelineConfig`] (`[shard]`,
//! `[progress]` and `[s3]` are never serialised), less the few keys listed in
//! [`NOT_IN_FINGERPRINT`]. A key added later is therefore covered unless someone
//! decides, here, that it changes neither a value nor a column.

use super::config::{fnv1a64, PipelineConfig};
use serde_json::{Map, Value};

/// Dotted config keys that change neither an output value nor a column (throughput and
/// file layout only). Everything else is in the fingerprint.
pub(crate) const NOT_IN_FINGERPRINT: &[&str] = &[
    // how stars are grouped for the engine: results are per star, seeded per star id
    "batching",
    // rows decoded at a time
    "input.read_batch_rows",
    // codec and row-group size of the Parquet files, not their contents
    "output.compression",
    "output.row_group_rows",
];

/// Metadata key of the settings JSON in every output file.
pub(crate) const SETTINGS_KEY: &str = "sedflow.settings";
/// Metadata key of the fingerprint (hash of the settings JSON) in every output file.
pub(crate) const FINGERPRINT_KEY: &str = "sedflow.fingerprint";

/// The settings that determine output values and columns, as canonical JSON (keys sorted).
pub(crate) fn settings(model_id: &str, cfg: &PipelineConfig) -> Value {
    let mut config = serde_json::to_value(cfg).expect("config serialises");
    for key in NOT_IN_FINGERPRINT {
        remove(&mut config, key);
    }
    serde_json::json!({ "model_id": model_id, "config": config })
}

/// The fingerprint of [`settings`]: 16 hex digits.
pub(crate) fn fingerprint(settings: &Value) -> String {
    format!("{:016x}", fnv1a64(settings.to_string().as_bytes()))
}

fn remove(v: &mut Value, dotted: &str) {
    let (parent, last) = match dotted.rsplit_once('.') {
        Some((p, l)) => (p.split('.').try_fold(&mut *v, |v, k| v.get_mut(k)), l),
        None => (Some(v), dotted),
    };
    if let Some(Value::Object(m)) = parent {
        m.remove(last);
    }
}

/// Dotted keys whose values differ between two settings JSONs (a key on one side only
/// counts), sorted.
pub(crate) fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let (mut a, mut b) = (Map::new(), Map::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        // a key absent on one side and null on the other has not changed
        .filter(|k| a.get(*k).unwrap_or(&Value::Null) != b.get(*k).unwrap_or(&Value::Null))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Why an existing output cannot be reused: its settings against `now`, with the changed
/// keys named (or a note that the file predates recorded settings).
pub(crate) fn mismatch(uri: &str, recorded: Option<&str>, now: &Value) -> String {
    let what = match recorded.and_then(|s| serde_json::from_str::<Value>(s).ok()) {
        Some(old) => {
            let keys = changed_keys(&old, now);
            if keys.is_empty() {
                "the fingerprint differs".to_string()
            } else {
                format!("changed: {}", keys.join(", "))
            }
        }
        None => "its settings are not recorded (made by an older sedflow)".to_string(),
    };
    format!(
        "{uri} exists but was made with other settings ({what}); resuming would mix results: \
         remove the output or write to another --output"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf of `v` with a changed value, one at a time (dotted key, new JSON).
    fn perturbations(v: &Value) -> Vec<(String, Value)> {
        let mut leaves = Map::new();
        flatten("", v, &mut leaves);
        leaves
            .iter()
            .map(|(k, x)| {
                let changed = match x {
                    Value::Bool(b) => Value::Bool(!b),
                    Value::Number(n) => serde_json::json!(n.as_f64().unwrap() + 1.5),
                    Value::String(s) => Value::String(format!("{s}x")),
                    Value::Array(a) => serde_json::json!([a, "x"]),
                    Value::Null => Value::Bool(true),
                    Value::Object(_) => serde_json::json!({"x": 1}),
                };
                let mut w = v.clone();
                let mut at = &mut w;
                for part in k.split('.') {
                    at = at.get_mut(part).unwrap();
                }
                *at = changed;
                (k.clone(), w)
            })
            .collect()
    }

    #[test]
    fn every_config_key_but_the_listed_ones_is_in_the_fingerprint() {
        let cfg = PipelineConfig::default();
        let full = serde_json::json!({
            "model_id": "m",
            "config": serde_json::to_value(&cfg).unwrap(),
        });
        let base = settings("m", &cfg);
        let fp = fingerprint(&base);
        for (key, changed) in perturbations(&full) {
            let exempt = NOT_IN_FINGERPRINT
                .iter()
                .any(|e| key == format!("config.{e}") || key.starts_with(&format!("config.{e}.")));
            // the settings as they would be built from the changed config
            let mut s = changed.clone();
            for e in NOT_IN_FINGERPRINT {
                remove(s.get_mut("config").unwrap(), e);
            }
            assert_eq!(fingerprint(&s) == fp, exempt, "{key}");
            if !exempt {
                // the key itself (an empty table that gains an entry: and the new entry)
                let changed = changed_keys(&base, &s);
                assert!(changed.contains(&key), "{key}: {changed:?}");
                assert!(changed.iter().all(|c| c.starts_with(&key)), "{changed:?}");
            }
        }
        // the prior is in it (issue 22: it was not)
        let mut c = cfg.clone();
        c.prior.av_per_ebv = 3.1;
        assert_ne!(fingerprint(&settings("m", &c)), fp);
        assert_ne!(fingerprint(&settings("m2", &cfg)), fp);
    }

    #[test]
    fn the_mismatch_message_names_the_changed_keys() {
        let a = settings("m", &PipelineConfig::default());
        let mut c = PipelineConfig::default();
        c.prior.av_sigma_floor = 0.1;
        c.inference.seed = 9;
        let msg = mismatch("out/x.parquet", Some(&a.to_string()), &settings("m", &c));
        assert!(
            msg.contains("out/x.parquet")
                && msg.contains("config.inference.seed, config.prior.av_sigma_floor"),
            "{msg}"
        );
        assert!(mismatch("u", None, &a).contains("not recorded"));
    }
}
