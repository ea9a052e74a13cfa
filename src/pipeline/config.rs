//! Pipeline configuration (step 0 of the data path): `pipeline.toml` merged with the
//! command line into one validated [`PipelineConfig`], the provenance written into every output
//! file, and the list of secrets that must never be printed.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The committed default `pipeline.toml`, used when no `--config` is given.
pub const DEFAULT_TOML: &str = include_str!("../../pipeline.toml");

/// A credential: never printed (`Debug` shows `***`) and never serialised.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for handing to the S3 client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[inference]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Flow-only sampling: flow samples per star. Adaptive sampling: the unit of the
    /// per-star budget (`max_sample_factor` x `samples`).
    pub samples: usize,
    /// Resampled draws per star written to the samples table (0 = no samples table).
    pub write_samples: usize,
    /// Run seed.
    pub seed: u64,
    /// LOW_EFFICIENCY threshold.
    pub min_efficiency: f32,
    /// Adaptive sampling (flow pilot, mode search, Student-t and defensive components in
    /// one deterministic mixture, rounds until `target_n_eff`); false: flow samples only.
    pub refine: bool,
    /// Adaptive sampling: flow samples drawn first, to seed the mode search.
    pub pilot_samples: usize,
    /// Adaptive sampling: at most `max_sample_factor` x `samples` samples per star.
    pub max_sample_factor: usize,
    /// Effective sample size that ends adaptive sampling; stars short of it are flagged
    /// LOW_NEFF.
    pub target_n_eff: f32,
    /// Share of each adaptive round drawn from the prior (defensive component).
    pub defensive_fraction: f64,
    /// Share of each adaptive round drawn from the flow (0: the flow only seeds the mode
    /// search and is not part of the estimator).
    pub flow_share: f64,
    /// Adaptive sampling: distance and extinction drawn from their closed-form conditional
    /// given the intrinsic parameters (false: Student-t components over all six).
    pub closed_form: bool,
    /// Where the neural posterior runs: `cpu` (default), `cuda` or `cuda:N` (GPU builds).
    pub device: String,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        let d = crate::posterior::InferSettings::default();
        InferenceConfig {
            samples: d.n_samples,
            write_samples: d.keep_samples,
            seed: d.seed,
            min_efficiency: d.min_efficiency,
            refine: d.refine,
            pilot_samples: d.pilot_samples,
            max_sample_factor: d.max_samples / d.n_samples,
            target_n_eff: d.target_n_eff,
            defensive_fraction: d.defensive_fraction,
            flow_share: d.flow_share,
            closed_form: d.closed_form,
            device: "cpu".to_string(),
        }
    }
}

impl InferenceConfig {
    /// The sampling step's settings.
    pub fn settings(&self) -> crate::posterior::InferSettings {
        crate::posterior::InferSettings {
            n_samples: self.samples,
            keep_samples: self.write_samples,
            seed: self.seed,
            min_efficiency: self.min_efficiency,
            refine: self.refine,
            pilot_samples: self.pilot_samples,
            max_samples: self.samples * self.max_sample_factor,
            target_n_eff: self.target_n_eff,
            defensive_fraction: self.defensive_fraction,
            flow_share: self.flow_share,
            closed_form: self.closed_form,
            // resolved against the model's bands by the pipeline
            predict_bands: Vec::new(),
            // set by the pipeline from [input] gaia_release
            gaia_passbands: Default::default(),
        }
    }
}

/// `[batching]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Stars per inference batch.
    pub batch_size: usize,
    /// Largest number of later stars a star waits for before its batch is run.
    pub window: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            batch_size: 512,
            window: 8192,
        }
    }
}

/// Input table layout.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Decide per file from its columns.
    Auto,
    /// One row per star.
    Wide,
    /// One row per observation.
    Long,
}

/// Which Gaia passbands the Gaia-archive columns are (`[input] gaia_release`, and
/// `sedflow simulate --gaia-release`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GaiaRelease {
    /// Gaia DR3 / EDR3 passbands (gaia_g, gaia_bp, gaia_rp; the default mapping).
    Dr3,
    /// Gaia DR2 passbands (gaia_dr2_g, ...).
    Dr2,
}

impl GaiaRelease {
    /// The passbands of the extinction quantities (the observed system).
    pub fn passbands(self) -> crate::posterior::derived::GaiaPassbands {
        match self {
            GaiaRelease::Dr3 => crate::posterior::derived::GaiaPassbands::Dr3,
            GaiaRelease::Dr2 => crate::posterior::derived::GaiaPassbands::Dr2,
        }
    }
}

/// One column -> band mapping (`[[input.bands]]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BandColumn {
    /// Magnitude column.
    pub column: String,
    /// Band name in the model's registry.
    pub band: String,
    /// 1-sigma error column.
    #[serde(default)]
    pub error: Option<String>,
    /// Flux-over-error column, used when the error column is absent or null.
    #[serde(default)]
    pub flux_over_error: Option<String>,
    /// Added in quadrature to the error \[mag\].
    #[serde(default)]
    pub error_floor: f32,
    /// Quality mask: the band is used only where this flag column's character is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<QualityMask>,
}

/// A photometric quality rule of one band (`mask = { column = "ph_qual", position = 1,
/// accept = "ABC" }`): the band is used only where character `position` (1-based) of the
/// flag column is one of `accept`; elsewhere it is dropped with the MASKED_BAND flag.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QualityMask {
    /// Flag column (a string per star, one character per band).
    pub column: String,
    /// Which character, counted from 1.
    pub position: usize,
    /// Accepted characters.
    pub accept: String,
}

/// One `[[input.join]]` entry: a table left-joined to the rows joined so far.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// A file, directory, glob or `s3://` prefix (Parquet, CSV[.gz], ECSV[.gz]); relative
    /// paths are relative to the config file's directory.
    pub path: String,
    /// A column of the tables joined so far (the primary table first).
    pub left_on: String,
    /// This table's key column.
    pub right_on: String,
    /// Renames applied to this table's columns before the join (old = "new").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// The columns to read (original names; default: all). The key is always read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The table's name in flags and messages (default: the file or directory name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `[input.long]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LongConfig {
    /// Column with band names.
    pub band_column: String,
    /// Column with magnitudes (parallax for band "parallax").
    pub mag_column: String,
    /// Column with errors.
    pub error_column: String,
    /// Catalogue band label -> registry band name.
    pub band_aliases: BTreeMap<String, String>,
}

impl Default for LongConfig {
    fn default() -> Self {
        LongConfig {
            band_column: "band".into(),
            mag_column: "mag".into(),
            error_column: "mag_error".into(),
            band_aliases: BTreeMap::new(),
        }
    }
}

/// The parallax zero point: `"auto"` or a constant Z \[mas\].
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ZeroPoint {
    /// A constant Z \[mas\].
    Constant(f64),
    /// `"auto"`: Gaia DR3, Lindegren et al. (2021) per star where the catalogue has its
    /// columns, else the global DR3 offset; Gaia DR2, the global DR2 offset.
    Auto(AutoZeroPoint),
}

/// The string `"auto"`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoZeroPoint {
    /// `"auto"`.
    Auto,
}

/// `[input.parallax]`. Sign convention (Lindegren et al.): the parallax used is
/// `(parallax - Z)`, with error `hypot(error_scale * parallax_error, error_floor)`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParallaxConfig {
    /// Zero point Z \[mas\] or `"auto"`.
    pub zero_point: ZeroPoint,
    /// Factor on the quoted parallax errors (>= 1 inflates them).
    pub error_scale: f64,
    /// Added in quadrature to the scaled errors \[mas\].
    pub error_floor: f64,
}

impl Default for ParallaxConfig {
    fn default() -> Self {
        ParallaxConfig {
            zero_point: ZeroPoint::Auto(AutoZeroPoint::Auto),
            error_scale: 1.0,
            error_floor: 0.0,
        }
    }
}

impl ParallaxConfig {
    /// Reject values that cannot be a zero point or an error model.
    pub fn validate(&self) -> Result<()> {
        if let ZeroPoint::Constant(z) = self.zero_point {
            if !(z.is_finite() && z.abs() < 1.0) {
                bail!(
                    "input.parallax.zero_point must be \"auto\" or a number of mas below 1 in size"
                );
            }
        }
        if !(self.error_scale.is_finite() && self.error_scale > 0.0) {
            bail!("input.parallax.error_scale must be positive");
        }
        if !(self.error_floor.is_finite() && self.error_floor >= 0.0) {
            bail!("input.parallax.error_floor must be >= 0");
        }
        Ok(())
    }
}

/// `[input]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Table layout.
    pub format: InputFormat,
    /// Star id column (int64).
    pub source_id_column: String,
    /// Passbands of the Gaia columns.
    pub gaia_release: GaiaRelease,
    /// Map the Gaia-archive column names.
    pub default_columns: bool,
    /// Parallax column \[mas\].
    pub parallax_column: String,
    /// Parallax error column \[mas\].
    pub parallax_error_column: String,
    /// Parallax zero point and error inflation.
    pub parallax: ParallaxConfig,
    /// Dust-map E(B-V) column (SFD scale) \[mag\]: the star's reddening prior (absent or null:
    /// the population prior).
    pub ebv_prior_column: String,
    /// Its 1-sigma error column \[mag\].
    pub ebv_prior_error_column: String,
    /// Column naming the map each value comes from (optional; names the `[prior.maps]` entry).
    pub ebv_prior_map_column: String,
    /// Rows per output part (whole row groups).
    pub rows_per_part: u64,
    /// Rows decoded at a time.
    pub read_batch_rows: usize,
    /// Extra column mappings.
    pub bands: Vec<BandColumn>,
    /// Long-format columns.
    pub long: LongConfig,
    /// Tables left-joined to the primary table, in order (`[[input.join]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<JoinConfig>,
    /// Gaia DR3 rule: drop BP and RP where |C*| > this many sigma_C* (Riello et al. 2021,
    /// eqs. 6 and 18); 0 turns it off.
    pub bp_rp_excess_sigma: f64,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: InputFormat::Auto,
            source_id_column: "source_id".into(),
            gaia_release: GaiaRelease::Dr3,
            default_columns: true,
            parallax_column: "parallax".into(),
            parallax_error_column: "parallax_error".into(),
            parallax: ParallaxConfig::default(),
            ebv_prior_column: "ebv_prior".into(),
            ebv_prior_error_column: "ebv_prior_error".into(),
            ebv_prior_map_column: "ebv_prior_source".into(),
            rows_per_part: 1_000_000,
            read_batch_rows: 8192,
            bands: Vec::new(),
            long: LongConfig::default(),
            join: Vec::new(),
            bp_rp_excess_sigma: 3.0,
        }
    }
}

/// Output compression codec.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (level 3).
    Zstd,
    /// snappy.
    Snappy,
    /// lz4 (raw).
    Lz4,
    /// Uncompressed.
    None,
}

/// `[output]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Codec.
    pub compression: Compression,
    /// Rows per output row group.
    pub row_group_rows: usize,
    /// Bands (registry names, observed or not) whose predicted magnitudes are written as
    /// `pred_{band}_p16/p50/p84`.
    pub predict_bands: Vec<String>,
    /// Input columns copied into the posterior table with their own types, after its own
    /// columns (`--keep-columns`).
    pub keep_columns: Vec<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            compression: Compression::Zstd,
            row_group_rows: 32768,
            predict_bands: Vec::new(),
            keep_columns: Vec::new(),
        }
    }
}

/// `[shard]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShardConfig {
    /// Shard count when the environment gives only an index.
    pub count: Option<usize>,
}

/// `[progress]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressConfig {
    /// Seconds between progress lines when not on a terminal.
    pub log_interval_s: f64,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        ProgressConfig {
            log_interval_s: 30.0,
        }
    }
}

/// `[s3]`: never serialised.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL (S3-compatible servers).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Allow plain http endpoints.
    pub allow_http: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token.
    pub session_token: Option<Secret>,
    /// Retries of a failed request (default 10).
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long \[s\] (default 180).
    pub retry_timeout_s: Option<f64>,
    /// Time allowed to open a connection \[s\] (default 5).
    pub connect_timeout_s: Option<f64>,
    /// Time allowed for one request, answer included \[s\] (default 30): a stalled request is
    /// abandoned and retried after this long.
    pub request_timeout_s: Option<f64>,
    /// Size of the parts of multipart uploads [bytes] (default 10 MiB; S3 needs >= 5 MiB).
    pub upload_part_bytes: Option<usize>,
}

/// The whole `pipeline.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// `[inference]`.
    pub inference: InferenceConfig,
    /// `[batching]`.
    pub batching: BatchingConfig,
    /// `[input]`.
    pub input: InputConfig,
    /// `[prior]`: per-star reddening priors from dust-map values.
    pub prior: crate::prior::reddening::ReddeningConfig,
    /// `[output]`.
    pub output: OutputConfig,
    /// `[shard]` (not written to outputs: sharding does not change results).
    #[serde(skip_serializing)]
    pub shard: ShardConfig,
    /// `[progress]` (not written to outputs).
    #[serde(skip_serializing)]
    pub progress: ProgressConfig,
    /// `[s3]` (credentials: never written anywhere).
    #[serde(skip_serializing)]
    pub s3: S3Config,
}

impl PipelineConfig {
    /// Parse TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<PipelineConfig> {
        // toml's error messages quote the offending line, which may hold a secret: keep only
        // the message and the position.
        toml::from_str::<PipelineConfig>(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| {
                    let line = 1 + text[..s.start.min(text.len())].matches('\n').count();
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            anyhow::anyhow!(
                "{origin}: invalid pipeline configuration{span}: {}",
                e.message()
            )
        })
    }

    /// The embedded default.
    pub fn embedded_default() -> PipelineConfig {
        PipelineConfig::from_toml(DEFAULT_TOML, "embedded pipeline.toml")
            .expect("the committed pipeline.toml parses")
    }

    /// Read a config file.
    pub fn load(path: &std::path::Path) -> Result<PipelineConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut cfg = PipelineConfig::from_toml(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(std::path::Path::new(""));
        for j in &mut cfg.input.join {
            j.path = relative_to(dir, &j.path);
        }
        Ok(cfg)
    }

    /// Check values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.inference.samples == 0 {
            bail!("inference.samples must be at least 1");
        }
        if self.inference.max_sample_factor == 0 {
            bail!("inference.max_sample_factor must be at least 1");
        }
        if self.inference.pilot_samples == 0 {
            bail!("inference.pilot_samples must be at least 1");
        }
        if !(0.0..1.0).contains(&self.inference.defensive_fraction) {
            bail!("inference.defensive_fraction must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.inference.flow_share)
            || self.inference.flow_share + self.inference.defensive_fraction >= 1.0
        {
            bail!("inference.flow_share must be in [0, 1), and with defensive_fraction below 1");
        }
        if !(self.inference.target_n_eff > 0.0) {
            bail!("inference.target_n_eff must be positive");
        }
        if self.batching.batch_size == 0 {
            bail!("batching.batch_size must be at least 1");
        }
        if self.batching.window < self.batching.batch_size {
            bail!(
                "batching.window ({}) must be at least batching.batch_size ({})",
                self.batching.window,
                self.batching.batch_size
            );
        }
        if self.input.rows_per_part == 0 || self.input.read_batch_rows == 0 {
            bail!("input.rows_per_part and input.read_batch_rows must be positive");
        }
        if self.output.row_group_rows == 0 {
            bail!("output.row_group_rows must be positive");
        }
        self.input.parallax.validate()?;
        self.prior.validate().map_err(|e| anyhow::anyhow!(e))?;
        for b in &self.input.bands {
            if !(b.error_floor.is_finite() && b.error_floor >= 0.0) {
                bail!(
                    "input.bands: error_floor of column {} must be >= 0",
                    b.column
                );
            }
        }
        for b in &self.input.bands {
            if let Some(m) = &b.mask {
                if m.position == 0 || m.accept.is_empty() || m.column.is_empty() {
                    bail!(
                        "input.bands: the mask of column {} needs a column, a position counted from 1 and accepted characters",
                        b.column
                    );
                }
            }
        }
        if !(self.input.bp_rp_excess_sigma.is_finite() && self.input.bp_rp_excess_sigma >= 0.0) {
            bail!("input.bp_rp_excess_sigma must be >= 0 (0: off)");
        }
        for j in &self.input.join {
            if j.left_on.is_empty() || j.right_on.is_empty() || j.path.is_empty() {
                bail!("input.join: every entry needs path, left_on and right_on");
            }
        }
        if self.shard.count == Some(0) {
            bail!("shard.count must be at least 1");
        }
        for (key, t) in [
            ("retry_timeout_s", self.s3.retry_timeout_s),
            ("connect_timeout_s", self.s3.connect_timeout_s),
            ("request_timeout_s", self.s3.request_timeout_s),
        ] {
            if t.is_some_and(|t| !(t.is_finite() && (0.0..=86400.0).contains(&t))) {
                bail!("s3.{key} must be between 0 and 86400 seconds");
            }
        }
        if self.s3.upload_part_bytes.is_some_and(|b| b < 1024) {
            bail!("s3.upload_part_bytes must be at least 1024 (S3 itself needs 5 MiB)");
        }
        if !(self.progress.log_interval_s > 0.0) {
            bail!("progress.log_interval_s must be positive");
        }
        Ok(())
    }

    /// The settings that determine output values, as JSON (no secrets, no sharding, no
    /// progress): written into every output file and hashed into the resume fingerprint.
    pub fn provenance_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Secret values from this config (to be redacted from every message).
    pub fn secrets(&self) -> Vec<String> {
        [
            &self.s3.access_key_id,
            &self.s3.secret_access_key,
            &self.s3.session_token,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_string())
        .collect()
    }
}

/// `path` read from a config file in `dir`: relative local paths are taken from `dir`.
fn relative_to(dir: &std::path::Path, path: &str) -> String {
    if path.contains("://") || std::path::Path::new(path).is_absolute() {
        path.to_string()
    } else {
        dir.join(path).display().to_string()
    }
}

/// The Gaia-archive column names and their bands (schemas/input.md).
pub fn default_band_columns(release: GaiaRelease) -> Vec<BandColumn> {
    let gaia = match release {
        GaiaRelease::Dr3 => ["gaia_g", "gaia_bp", "gaia_rp"],
        GaiaRelease::Dr2 => ["gaia_dr2_g", "gaia_dr2_bp", "gaia_dr2_rp"],
    };
    let mut v = Vec::new();
    for (short, band) in ["g", "bp", "rp"].iter().zip(gaia) {
        v.push(BandColumn {
            column: format!("phot_{short}_mean_mag"),
            band: band.into(),
            error: Some(format!("phot_{short}_mean_mag_error")),
            flux_over_error: Some(format!("phot_{short}_mean_flux_over_error")),
            error_floor: 0.0,
            mask: None,
        });
    }
    // the standard quality masks (applied where the flag column is present): 2MASS ph_qual
    // A-C per band (J, H, Ks), AllWISE cc_flags '0' (no artefact) per band (W1, W2)
    for (m, e, band, (flag, position, accept)) in [
        ("j_m", "j_msigcom", "tmass_j", ("ph_qual", 1, "ABC")),
        ("h_m", "h_msigcom", "tmass_h", ("ph_qual", 2, "ABC")),
        ("ks_m", "ks_msigcom", "tmass_ks", ("ph_qual", 3, "ABC")),
        ("w1mpro", "w1mpro_error", "wise_w1", ("cc_flags", 1, "0")),
        ("w2mpro", "w2mpro_error", "wise_w2", ("cc_flags", 2, "0")),
    ] {
        v.push(BandColumn {
            column: m.into(),
            band: band.into(),
            error: Some(e.into()),
            flux_over_error: None,
            error_floor: 0.0,
            mask: Some(QualityMask {
                column: flag.into(),
                position,
                accept: accept.into(),
            }),
        });
    }
    for f in ["g", "r", "i", "z", "y"] {
        v.push(BandColumn {
            column: format!("{f}_mean_psf_mag"),
            band: format!("ps1_{f}"),
            error: Some(format!("{f}_mean_psf_mag_error")),
            flux_over_error: None,
            error_floor: 0.0,
            mask: None,
        });
    }
    // SDSS PhotoObj PSF magnitudes and LSST object-table PSF magnitudes (AB)
    for f in ["u", "g", "r", "i", "z"] {
        v.push(BandColumn {
            column: format!("psfMag_{f}"),
            band: format!("sdss_{f}"),
            error: Some(format!("psfMagErr_{f}")),
            flux_over_error: None,
            error_floor: 0.0,
            mask: None,
        });
    }
    for f in ["u", "g", "r", "i", "z", "y"] {
        v.push(BandColumn {
            column: format!("{f}_psfMag"),
            band: format!("lsst_{f}"),
            error: Some(format!("{f}_psfMagErr")),
            flux_over_error: None,
            error_floor: 0.0,
            mask: None,
        });
    }
    v
}

/// 64-bit FNV-1a: a stable hash for fingerprints (std's hashers are not stable across
/// releases).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Replaces every known secret in messages before they are printed.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Secrets from the config and from the AWS environment variables.
    pub fn new(config: &PipelineConfig) -> Redactor {
        let mut secrets = config.secrets();
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ] {
            if let Ok(v) = std::env::var(var) {
                secrets.push(v);
            }
        }
        // very short values would redact ordinary text; real credentials are long
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `msg` with every secret replaced by `***`. Overlapping occurrences of different
    /// secrets are masked as one span, so no fragment of either shows; passes repeat while a
    /// secret is still visible (a secret that itself contains `***` can reappear around a
    /// mask). Each pass shortens the text (secrets have >= 4 bytes), so this ends.
    pub fn redact(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        loop {
            let spans = self.secret_spans(&out);
            if spans.is_empty() {
                return out;
            }
            let mut masked = String::with_capacity(out.len());
            let mut at = 0;
            for (a, b) in spans {
                masked.push_str(&out[at..a]);
                masked.push_str("***");
                at = b;
            }
            masked.push_str(&out[at..]);
            out = masked;
        }
    }

    /// Byte ranges of every occurrence of every secret in `text`, overlaps merged, sorted.
    fn secret_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = self
            .secrets
            .iter()
            .flat_map(|s| {
                // every start, overlapping ones included ("aaaa" twice in "aaaaa")
                (0..text.len())
                    .filter(|&i| text.is_char_boundary(i) && text[i..].starts_with(s.as_str()))
                    .map(|i| (i, i + s.len()))
                    .collect::<Vec<_>>()
            })
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_equals_code_defaults() {
        // the committed file documents the defaults: they must agree with the code
        assert_eq!(
            PipelineConfig::embedded_default(),
            PipelineConfig::default()
        );
        PipelineConfig::default().validate().unwrap();
    }

    #[test]
    fn overlapping_secrets_and_secrets_that_look_masked_leave_no_fragment() {
        let r = Redactor {
            secrets: vec!["abcd1234".into(), "1234wxyz".into(), "x***".into()],
        };
        assert_eq!(r.redact("key abcd1234wxyz end"), "key *** end");
        // masking "x***" inside "xx***x" would rebuild it: masked again
        let out = r.redact("xx***x");
        assert!(!out.contains("x***"), "{out}");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn secrets_are_not_serialised_nor_debug_printed() {
        let c = PipelineConfig::from_toml(
            "[s3]\nsecret_access_key = \"TOPSECRET123\"\naccess_key_id = \"AKIDXYZ\"\n",
            "t",
        )
        .unwrap();
        assert!(!c.provenance_json().contains("TOPSECRET123"));
        assert!(!format!("{c:?}").contains("TOPSECRET123"));
        let r = Redactor::new(&c);
        assert_eq!(r.redact("key TOPSECRET123 id AKIDXYZ"), "key *** id ***");
    }

    #[test]
    fn parse_errors_do_not_quote_the_line() {
        let e = PipelineConfig::from_toml(
            "[s3]\nsecret_access_key = \"TOPSECRET123\"\nbogus = 1\n",
            "cfg",
        )
        .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("cfg") && msg.contains("line 3"), "{msg}");
        assert!(!msg.contains("TOPSECRET123"), "{msg}");
    }

    #[test]
    fn parallax_zero_points_and_map_settings_parse() {
        let c = PipelineConfig::from_toml("[input.parallax]\nzero_point = -0.021\n", "t").unwrap();
        assert_eq!(c.input.parallax.zero_point, ZeroPoint::Constant(-0.021));
        let c = PipelineConfig::from_toml(
            "[prior.maps.sfd]\nkind = \"total_column\"\nerror_scale = 0.8\n",
            "t",
        )
        .unwrap();
        let sfd = &c.prior.maps["sfd"];
        assert_eq!(
            sfd.kind,
            Some(crate::prior::reddening::ReddeningKind::TotalColumn)
        );
        assert_eq!(sfd.error_scale, Some(0.8));
        // the old key (with the opposite sign) is refused, not reinterpreted
        assert!(PipelineConfig::from_toml("[input]\nparallax_zero_point = 0.029\n", "t").is_err());
        assert!(
            PipelineConfig::from_toml("[input.parallax]\nzero_point = \"lindegren\"\n", "t")
                .is_err()
        );
        let bad = PipelineConfig::from_toml("[prior.maps.x]\nerror_scale = -1.0\n", "t").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(PipelineConfig::from_toml("[inference]\nsample = 3\n", "t").is_err());
        let c = PipelineConfig::from_toml(
            "[input]\ngaia_release = \"dr2\"\n[[input.bands]]\ncolumn = \"u\"\nband = \"sdss_u\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.input.gaia_release, GaiaRelease::Dr2);
        assert_eq!(c.input.bands[0].band, "sdss_u");
    }
}
