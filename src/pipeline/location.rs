//! Where data lives (step 1 of the data path): input URIs (a local file, directory or glob,
//! or `s3://bucket/prefix`, optionally with a glob in the key) resolved to a sorted list of
//! Parquet objects, and the output directory or prefix. Local files and S3 objects are both
//! reached through `object_store`, so the reading and writing code is one code path.

use super::config::S3Config;
use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt};
use std::sync::Arc;

/// A parsed URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Uri {
    /// A local path (may contain a glob pattern).
    Local(String),
    /// `s3://bucket/key` (the key may be empty or contain a glob pattern).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key or prefix, without leading slash.
        key: String,
    },
}

impl Uri {
    /// Parse `s3://bucket/key` or a local path.
    pub(crate) fn parse(s: &str) -> Result<Uri> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{s}: missing bucket name (expected s3://bucket/prefix)");
            }
            Ok(Uri::S3 {
                bucket: bucket.to_string(),
                key: key.trim_matches('/').to_string(),
            })
        } else if s.contains("://") {
            bail!("{s}: unsupported URI scheme (use a local path or s3://bucket/prefix)");
        } else if s.is_empty() {
            bail!("empty path");
        } else {
            Ok(Uri::Local(s.to_string()))
        }
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A table file (Parquet, CSV[.gz], ECSV[.gz]; `tables.rs`), not hidden.
fn is_parquet_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    super::tables::TableFormat::of(base).is_some()
        && !base.starts_with('.')
        && !base.starts_with('_')
}

fn strip_ext(name: &str) -> &str {
    super::tables::TABLE_EXTENSIONS
        .iter()
        .find_map(|e| name.strip_suffix(e))
        .unwrap_or(name)
}

/// Build an S3 client for a bucket: environment first, `[s3]` settings on top. Retries
/// (object_store's): 5xx answers, throttling (429) and transport failures (connection
/// refused, reset or dropped, timeouts) are retried with exponential backoff (0.1 s doubling
/// up to 15 s, jittered), at most `max_retries` times (10) within `retry_timeout_s` (180 s);
/// a request that stalls is abandoned after `request_timeout_s` (30 s), a connection attempt
/// after `connect_timeout_s` (5 s). Reads resume a broken answer where it stopped; uploads
/// resend the part. Other 4xx answers are final.
pub(crate) fn s3_store(bucket: &str, cfg: &S3Config) -> Result<Arc<dyn ObjectStore>> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    if let Some(h) = cfg.allow_http {
        b = b.with_allow_http(h);
    }
    if let Some(k) = &cfg.access_key_id {
        b = b.with_access_key_id(k.expose());
    }
    if let Some(k) = &cfg.secret_access_key {
        b = b.with_secret_access_key(k.expose());
    }
    if let Some(k) = &cfg.session_token {
        b = b.with_token(k.expose());
    }
    if cfg.max_retries.is_some() || cfg.retry_timeout_s.is_some() {
        let d = object_store::RetryConfig::default();
        b = b.with_retry(object_store::RetryConfig {
            max_retries: cfg.max_retries.unwrap_or(d.max_retries),
            retry_timeout: cfg
                .retry_timeout_s
                .map(std::time::Duration::from_secs_f64)
                .unwrap_or(d.retry_timeout),
            ..d
        });
    }
    for (key, t) in [
        (ClientConfigKey::ConnectTimeout, cfg.connect_timeout_s),
        (ClientConfigKey::Timeout, cfg.request_timeout_s),
    ] {
        if let Some(t) = t {
            // one key at a time: the environment's other client settings stay
            let ms = format!("{}ms", (t * 1000.0).round() as u64);
            b = b.with_config(AmazonS3ConfigKey::Client(key), ms);
        }
    }
    let store = b
        .build()
        .with_context(|| format!("configuring the S3 client for bucket {bucket}"))?;
    Ok(Arc::new(store))
}

/// One input Parquet object.
#[derive(Clone, Debug)]
pub(crate) struct InputObject {
    /// Store holding it.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Path in the store.
    pub(crate) path: ObjPath,
    /// For messages: the local path or `s3://bucket/key`.
    pub(crate) uri: String,
    /// Size in bytes (from the listing).
    pub(crate) size: u64,
    /// Output name stem: the path relative to the listed base, `/` -> `__`, no extension.
    pub(crate) stem: String,
}

/// List the Parquet objects an input URI names, sorted by URI. Errors if there are none.
pub(crate) async fn list_inputs(uri: &str, s3: &S3Config) -> Result<Vec<InputObject>> {
    let mut v = match Uri::parse(uri)? {
        Uri::Local(p) => list_local(&p)?,
        Uri::S3 { bucket, key } => list_s3(&bucket, &key, s3).await?,
    };
    v.sort_by(|a, b| a.uri.cmp(&b.uri));
    if v.is_empty() {
        bail!("{uri}: no tables (*.parquet, *.pq, *.csv[.gz], *.ecsv[.gz]) found");
    }
    let mut seen = std::collections::HashMap::new();
    for o in &v {
        if let Some(prev) = seen.insert(o.stem.clone(), o.uri.clone()) {
            bail!(
                "inputs {prev} and {} would both write output {}.parquet; rename one",
                o.uri,
                o.stem
            );
        }
    }
    Ok(v)
}

fn list_local(pattern: &str) -> Result<Vec<InputObject>> {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let mut files: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new(); // (file, base)
    if has_glob(pattern) {
        // base: the directory part before the first glob character
        let cut = pattern.find(['*', '?', '[']).unwrap();
        let base = match pattern[..cut].rfind('/') {
            Some(i) => std::path::PathBuf::from(&pattern[..=i]),
            None => std::path::PathBuf::from("."),
        };
        let opts = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..Default::default()
        };
        for entry in
            glob::glob_with(pattern, opts).with_context(|| format!("bad glob pattern {pattern}"))?
        {
            let p = entry.with_context(|| format!("listing {pattern}"))?;
            if p.is_file() {
                files.push((p, base.clone()));
            }
        }
    } else {
        let p = std::path::Path::new(pattern);
        if p.is_dir() {
            let pat = format!(
                "{}/**/*",
                glob::Pattern::escape(pattern.trim_end_matches('/'))
            );
            for entry in glob::glob(&pat).expect("escaped pattern is valid") {
                let f = entry.with_context(|| format!("listing {pattern}"))?;
                if f.is_file() && is_parquet_name(&f.to_string_lossy()) {
                    files.push((f, p.to_path_buf()));
                }
            }
        } else if p.is_file() {
            let base = p
                .parent()
                .map(|b| b.to_path_buf())
                .unwrap_or_else(|| ".".into());
            files.push((p.to_path_buf(), base));
        } else {
            bail!("{pattern}: no such file or directory");
        }
    }
    let mut out = Vec::new();
    for (f, base) in files {
        let abs = std::fs::canonicalize(&f).with_context(|| format!("{}", f.display()))?;
        let base_abs = std::fs::canonicalize(&base).unwrap_or(base.clone());
        let rel = abs
            .strip_prefix(&base_abs)
            .map(|r| r.to_string_lossy().to_string())
            .unwrap_or_else(|_| abs.file_name().unwrap().to_string_lossy().to_string());
        let size = std::fs::metadata(&abs)
            .with_context(|| format!("{}", abs.display()))?
            .len();
        let path = ObjPath::from_absolute_path(&abs)
            .with_context(|| format!("{}: unsupported path", abs.display()))?;
        out.push(InputObject {
            store: store.clone(),
            path,
            uri: f.display().to_string(),
            size,
            stem: strip_ext(&rel).replace('/', "__"),
        });
    }
    Ok(out)
}

async fn list_s3(bucket: &str, key: &str, cfg: &S3Config) -> Result<Vec<InputObject>> {
    let store = s3_store(bucket, cfg)?;
    let uri_of = |k: &str| format!("s3://{bucket}/{k}");
    let (prefix, pattern, base) = if has_glob(key) {
        let cut = key.find(['*', '?', '[']).unwrap();
        let dir = key[..cut].rfind('/').map(|i| &key[..i]).unwrap_or("");
        let pat = glob::Pattern::new(key).with_context(|| format!("bad glob pattern {key}"))?;
        (dir.to_string(), Some(pat), dir.to_string())
    } else {
        // a single object?
        if !key.is_empty() && is_parquet_name(key) {
            let path = ObjPath::parse(key).with_context(|| uri_of(key))?;
            match store.head(&path).await {
                Ok(meta) => {
                    let name = key.rsplit('/').next().unwrap_or(key);
                    return Ok(vec![InputObject {
                        store: store.clone(),
                        path,
                        uri: uri_of(key),
                        size: meta.size,
                        stem: strip_ext(name).to_string(),
                    }]);
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::Error::new(e).context(uri_of(key))),
            }
        }
        (key.to_string(), None, key.to_string())
    };
    let prefix_path = if prefix.is_empty() {
        None
    } else {
        Some(ObjPath::parse(&prefix).with_context(|| uri_of(&prefix))?)
    };
    let metas: Vec<_> = store
        .list(prefix_path.as_ref())
        .try_collect()
        .await
        .with_context(|| format!("listing {}", uri_of(&prefix)))?;
    let mut out = Vec::new();
    for m in metas {
        let k = m.location.to_string();
        let hidden = k.rsplit('/').next().is_some_and(|f| f.starts_with('.'));
        let keep = match &pattern {
            Some(p) => !hidden && p.matches(&k),
            None => is_parquet_name(&k),
        };
        if !keep {
            continue;
        }
        let rel = k
            .strip_prefix(&base)
            .unwrap_or(&k)
            .trim_start_matches('/')
            .to_string();
        out.push(InputObject {
            store: store.clone(),
            path: m.location.clone(),
            uri: uri_of(&k),
            size: m.size,
            stem: strip_ext(&rel).replace('/', "__"),
        });
    }
    Ok(out)
}

/// The output directory or prefix.
#[derive(Clone, Debug)]
pub(crate) struct OutputTarget {
    /// Store.
    pub(crate) store: Arc<dyn ObjectStore>,
    prefix: Option<ObjPath>,
    uri_base: String,
    /// Part size of multipart uploads [bytes] (also the write buffer of local outputs).
    pub(crate) part_bytes: usize,
}

/// Default part size of multipart uploads (object_store's `BufWriter` default).
pub(crate) const DEFAULT_UPLOAD_PART_BYTES: usize = 10 * 1024 * 1024;

impl OutputTarget {
    /// Open (and for local paths create) the output directory or prefix.
    pub(crate) fn open(uri: &str, s3: &S3Config) -> Result<OutputTarget> {
        if is_parquet_name(uri) {
            bail!("--output {uri}: must be a directory or prefix (output files are named after the inputs)");
        }
        let part_bytes = s3.upload_part_bytes.unwrap_or(DEFAULT_UPLOAD_PART_BYTES);
        match Uri::parse(uri)? {
            Uri::Local(p) => {
                if has_glob(&p) {
                    bail!("--output {p}: must be a directory, not a pattern");
                }
                std::fs::create_dir_all(&p)
                    .with_context(|| format!("creating output directory {p}"))?;
                let store = LocalFileSystem::new_with_prefix(&p)
                    .with_context(|| format!("output directory {p}"))?;
                Ok(OutputTarget {
                    store: Arc::new(store),
                    prefix: None,
                    uri_base: p.trim_end_matches('/').to_string(),
                    part_bytes,
                })
            }
            Uri::S3 { bucket, key } => {
                let store = s3_store(&bucket, s3)?;
                let prefix = if key.is_empty() {
                    None
                } else {
                    Some(ObjPath::parse(&key).with_context(|| format!("--output {uri}"))?)
                };
                Ok(OutputTarget {
                    store,
                    prefix,
                    uri_base: if key.is_empty() {
                        format!("s3://{bucket}")
                    } else {
                        format!("s3://{bucket}/{key}")
                    },
                    part_bytes,
                })
            }
        }
    }

    /// Store path of an output file, e.g. `name = "x.parquet"` or `"samples/x.parquet"`.
    pub(crate) fn path(&self, name: &str) -> ObjPath {
        let mut p = self.prefix.clone().unwrap_or_default();
        for part in name.split('/') {
            p = p.join(part);
        }
        p
    }

    /// URI of an output file (for messages).
    pub(crate) fn uri(&self, name: &str) -> String {
        format!("{}/{name}", self.uri_base)
    }

    /// Names of the completed `*.parquet` files directly in the output directory (staging
    /// files of unfinished uploads are not listed).
    pub(crate) async fn existing(&self) -> Result<std::collections::HashSet<String>> {
        let res = self
            .store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .with_context(|| format!("listing output {}", self.uri_base))?;
        Ok(res
            .objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(String::from))
            .filter(|n| n.ends_with(".parquet"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_uris() {
        assert_eq!(
            Uri::parse("s3://b/x/y/").unwrap(),
            Uri::S3 {
                bucket: "b".into(),
                key: "x/y".into()
            }
        );
        assert_eq!(
            Uri::parse("s3://b").unwrap(),
            Uri::S3 {
                bucket: "b".into(),
                key: "".into()
            }
        );
        assert!(Uri::parse("gs://b/x").is_err());
        assert!(Uri::parse("s3:///x").is_err());
        assert_eq!(Uri::parse("a/b").unwrap(), Uri::Local("a/b".into()));
    }

    #[test]
    fn local_listing_is_sorted_recursive_and_named_by_relative_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        for f in [
            "b.parquet",
            "a.parquet",
            "sub/c.parquet",
            "notes.txt",
            ".hidden.parquet",
        ] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = d.path().to_string_lossy().to_string();
        let v = rt
            .block_on(list_inputs(&dir, &S3Config::default()))
            .unwrap();
        let stems: Vec<_> = v.iter().map(|o| o.stem.as_str()).collect();
        assert_eq!(stems, ["a", "b", "sub__c"]);
        let g = rt
            .block_on(list_inputs(
                &format!("{dir}/*.parquet"),
                &S3Config::default(),
            ))
            .unwrap();
        assert_eq!(g.len(), 2);
        assert!(rt
            .block_on(list_inputs(&format!("{dir}/none"), &S3Config::default()))
            .is_err());
    }
}
