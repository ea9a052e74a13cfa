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

fn env_usize(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<usize>> {
    env(var).map(|v| parse(var, &v)).transpose()
}

/// Shard index and count of a Slurm array task. Slurm numbers tasks by their array index
/// (`--array=1-8`, `0-15:4`, `0-7%2`, `2`); the shard is the task's position in the array.
/// Only regular ranges map positions one to one: for a list such as `--array=1,3,5` Slurm
/// reports STEP=1 and COUNT=3 with MAX=5, so positions would collide or overflow.
fn slurm_index(id: &str, env: &impl Fn(&str) -> Option<String>) -> Result<(usize, Option<usize>)> {
    let id = parse("SLURM_ARRAY_TASK_ID", id)?;
    let min = env_usize(env, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
    let step = env_usize(env, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    let count = env_usize(env, "SLURM_ARRAY_TASK_COUNT")?;
    let max = env_usize(env, "SLURM_ARRAY_TASK_MAX")?;
    if id < min || (id - min) % step != 0 {
        bail!("SLURM_ARRAY_TASK_ID={id} does not fit SLURM_ARRAY_TASK_MIN={min}, STEP={step}");
    }
    if let (Some(n), Some(max)) = (count, max) {
        if n == 0 || max != min + step * (n - 1) {
            bail!(
                "the Slurm array is not a regular range (MIN={min} MAX={max} STEP={step} COUNT={n}): \
                 submit --array=A-B[:S][%L] (e.g. --array=0-15), or pass --shard-index/--shard-count"
            );
        }
    }
    Ok(((id - min) / step, count))
}

/// An array job's shard: index, count (if the scheduler tells), source variable.
type EnvShard = (usize, Option<usize>, String);

/// The shard from an array job's environment, if any.
fn env_shard(env: &impl Fn(&str) -> Option<String>) -> Result<Option<EnvShard>> {
    Ok(if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
        let (index, count) = slurm_index(&id, env)?;
        Some((index, count, "SLURM_ARRAY_TASK_ID".into()))
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
    })
}

/// Resolve the shard from flags, the config's count and the environment (`env` looks up a
/// variable; pass `|k| std::env::var(k).ok()`).
pub fn resolve(
    flag_index: Option<usize>,
    flag_count: Option<usize>,
    config_count: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Shard> {
    // with --shard-index the environment only supplies a missing count
    let from_env = match flag_index {
        Some(_) => env_shard(&env).ok().flatten(),
        None => env_shard(&env)?,
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
            let explicit = flag_count.or(config_count);
            if let (Some(e), Some(n)) = (env_count, explicit) {
                if e != n {
                    bail!(
                        "{src}: the Slurm array has {e} tasks but the shard count is {n} (--shard-count or shard.count); \
                         submit an array of {n} tasks, or drop the explicit count"
                    );
                }
            }
            let count = env_count.or(explicit).ok_or_else(|| {
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

    /// The variables as Slurm 22.05 sets them (probed with sbatch on the test cluster).
    fn slurm(
        id: &str,
        min: &str,
        max: &str,
        step: &str,
        count: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("SLURM_ARRAY_TASK_ID", id.into()),
            ("SLURM_ARRAY_TASK_MIN", min.into()),
            ("SLURM_ARRAY_TASK_MAX", max.into()),
            ("SLURM_ARRAY_TASK_STEP", step.into()),
            ("SLURM_ARRAY_TASK_COUNT", count.into()),
        ]
    }

    fn resolve_slurm(
        count: Option<usize>,
        vars: &[(&'static str, String)],
    ) -> Result<(usize, usize)> {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        resolve(None, count, None, env(&pairs)).map(|s| (s.index, s.count))
    }

    #[test]
    fn slurm_arrays_as_slurm_reports_them() {
        // --array=0-15:4, task 8; --array=0-7%2 (the limit is not part of the count), task 5
        assert_eq!(
            resolve_slurm(None, &slurm("8", "0", "12", "4", "4")).unwrap(),
            (2, 4)
        );
        assert_eq!(
            resolve_slurm(None, &slurm("5", "0", "7", "1", "8")).unwrap(),
            (5, 8)
        );
        // a single task resubmitted (--array=2) is a one-task array: it does every part left
        assert_eq!(
            resolve_slurm(None, &slurm("2", "2", "2", "1", "1")).unwrap(),
            (0, 1)
        );
        // ... and may not pose as shard 2 of 4 (it would silently redo shard 0)
        assert!(resolve_slurm(Some(4), &slurm("2", "2", "2", "1", "1")).is_err());
        assert_eq!(
            resolve_slurm(Some(4), &slurm("2", "0", "3", "1", "4")).unwrap(),
            (2, 4)
        );
        // lists: --array=1,3,5 (Slurm says STEP=1) and --array=0-3,7 are refused in every task
        for id in ["1", "3", "5"] {
            let e = resolve_slurm(None, &slurm(id, "1", "5", "1", "3")).unwrap_err();
            assert!(e.to_string().contains("not a regular range"), "{e}");
        }
        assert!(resolve_slurm(None, &slurm("0", "0", "7", "1", "5")).is_err());
        // explicit flags still work inside such a job
        let list: Vec<(&str, String)> = slurm("5", "1", "5", "1", "3");
        let pairs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let s = resolve(Some(1), Some(2), None, env(&pairs)).unwrap();
        assert_eq!((s.index, s.count), (1, 2));
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
        assert!(load.iter().all(|l| (30..=100).contains(l)), "{load:?}");
    }
}
