//! Scale-out (step 0 of the data path): which shard this process is (flags, else Slurm,
//! AWS Batch or Kubernetes array-job environment variables) and the deterministic split of
//! the work so that N shards together process every input row exactly once.
//!
//! The split depends only on the sorted input listing (names, sizes, row-group row counts)
//! and the shard count, never on timing, so every shard computes the same assignment.

use anyhow::{bail, Result};

/// This process's shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
    /// Where the index came from (for the log).
    pub source: String,
}

fn parse(var: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse::<usize>()
        .map_err(|_| anyhow::anyhow!("{var}={v:?} is not a non-negative integer"))
}

/// Resolve the shard from flags, the config's count and the environment (`env` looks up a
/// variable; pass `|k| std::env::var(k).ok()`).
pub fn resolve(
    flag_index: Option<usize>,
    flag_count: Option<usize>,
    config_count: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Shard> {
    // index and count from the environment, if an array job
    let from_env: Option<(usize, Option<usize>, String)> = if let Some(id) =
        env("SLURM_ARRAY_TASK_ID")
    {
        let id = parse("SLURM_ARRAY_TASK_ID", &id)?;
        let min = env("SLURM_ARRAY_TASK_MIN")
            .map(|v| parse("SLURM_ARRAY_TASK_MIN", &v))
            .transpose()?
            .unwrap_or(0);
        let step = env("SLURM_ARRAY_TASK_STEP")
            .map(|v| parse("SLURM_ARRAY_TASK_STEP", &v))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        if id < min || (id - min) % step != 0 {
            bail!("SLURM_ARRAY_TASK_ID={id} does not fit SLURM_ARRAY_TASK_MIN={min}, STEP={step}");
        }
        let count = env("SLURM_ARRAY_TASK_COUNT")
            .map(|v| parse("SLURM_ARRAY_TASK_COUNT", &v))
            .transpose()?;
        Some(((id - min) / step, count, "SLURM_ARRAY_TASK_ID".into()))
    } else if let Some(v) = env("AWS_BATCH_JOB_ARRAY_INDEX") {
        Some((
            parse("AWS_BATCH_JOB_ARRAY_INDEX", &v)?,
            None,
            "AWS_BATCH_JOB_ARRAY_INDEX".into(),
        ))
    } else if let Some(v) = env("JOB_COMPLETION_INDEX") {
        Some((
            parse("JOB_COMPLETION_INDEX", &v)?,
            None,
            "JOB_COMPLETION_INDEX".into(),
        ))
    } else {
        None
    };
    let (index, count, source) = match (flag_index, from_env) {
        (Some(i), env_shard) => {
            let count = flag_count
                .or(config_count)
                .or(env_shard.and_then(|e| e.1))
                .ok_or_else(|| anyhow::anyhow!("--shard-index needs --shard-count (or shard.count in the config)"))?;
            (i, count, "--shard-index".to_string())
        }
        (None, Some((i, env_count, src))) => {
            let count = flag_count.or(env_count).or(config_count).ok_or_else(|| {
                anyhow::anyhow!(
                    "{src} is set but the shard count is unknown: pass --shard-count or set shard.count in the config"
                )
            })?;
            (i, count, src)
        }
        (None, None) => match flag_count.or(config_count) {
            None | Some(1) => (0, 1, "single process".to_string()),
            Some(n) => bail!("shard count {n} given but no shard index (--shard-index, SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX)"),
        },
    };
    if count == 0 {
        bail!("the shard count must be at least 1");
    }
    if index >= count {
        bail!("shard index {index} is not below the shard count {count} (from {source})");
    }
    Ok(Shard {
        index,
        count,
        source,
    })
}

/// Deterministic balanced assignment of weighted items to `count` shards: heaviest first,
/// each to the currently lightest shard (ties: lower item index, lower shard index).
pub fn assign(weights: &[u64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; count.max(1)];
    let mut out = vec![0usize; weights.len()];
    for i in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap();
        out[i] = s;
        // an empty item still counts, so that empty files spread out too
        load[s] += weights[i].max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn shard_sources_and_precedence() {
        assert_eq!(resolve(None, None, None, env(&[])).unwrap().count, 1);
        let s = resolve(
            None,
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
            ]),
        )
        .unwrap();
        assert_eq!((s.index, s.count), (4, 8));
        let s = resolve(
            None,
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ]),
        )
        .unwrap();
        assert_eq!((s.index, s.count), (2, 3));
        // AWS Batch and Kubernetes need a count from the flag or config
        assert!(resolve(None, None, None, env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "2")])).is_err());
        let s = resolve(
            None,
            None,
            Some(4),
            env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "2")]),
        )
        .unwrap();
        assert_eq!((s.index, s.count), (2, 4));
        let s = resolve(None, Some(3), None, env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap();
        assert_eq!(
            (s.index, s.count, s.source.as_str()),
            (1, 3, "JOB_COMPLETION_INDEX")
        );
        // flags win over the environment
        let s = resolve(
            Some(0),
            Some(2),
            None,
            env(&[("JOB_COMPLETION_INDEX", "1")]),
        )
        .unwrap();
        assert_eq!((s.index, s.count), (0, 2));
        assert!(resolve(Some(2), Some(2), None, env(&[])).is_err());
        assert!(resolve(Some(0), None, None, env(&[])).is_err());
        assert!(resolve(None, Some(2), None, env(&[])).is_err());
        assert!(resolve(None, None, None, env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
    }

    #[test]
    fn assignment_is_balanced_and_total() {
        let w = [100, 1, 1, 50, 50, 0, 30];
        let a = assign(&w, 3);
        assert_eq!(a, assign(&w, 3));
        let mut load = [0u64; 3];
        for (i, &s) in a.iter().enumerate() {
            load[s] += w[i];
        }
        assert_eq!(load.iter().sum::<u64>(), 232);
        assert!(load.iter().all(|&l| l >= 30 && l <= 100), "{load:?}");
    }
}
