//! Apparent magnitudes for theta = (Teff, log g, [M/H], A_V, R_V, distance).
//!
//! m_b = S_b(Teff, log g, [M/H]) + A_b(spectrum, A_V, R_V) - 5 log10(R / d) [+ delta_b]
//!
//! * S_b: surface magnitude of the CK04 spectrum in band b, interpolated with cubic
//!   (4-point Lagrange) weights along log10 Teff, log g and [M/H].
//! * A_b: extinction of the star's own in-band spectrum under G23:
//!   10^(-0.4 A_b) = G_ref(A_V, R_V) * sum_q c_q(Teff, log g, [M/H]) h_q(A_V, R_V) with
//!   c_q interpolated cubic in Teff and linear in log g, [M/H], and G_ref, h_q bilinear in
//!   (A_V, 1/R_V). See scripts/build_forward_model.py for how the tables are made.
//! * R = sqrt(G M / g) with M the mean mass of MIST stars at (Teff, log g, [M/H]).
//! * delta_b: optional empirical calibration (`physics::calibration`).
//!
//! Everything here is allocation-free per evaluation: stencils and per-band accumulators
//! live on the stack. Every band is computed at once in vector lanes (one theta costs the
//! same for 1 or 27 bands) and the requested ones are picked at the end. The per-band
//! tables are stored in "lane" order, bands sorted by their number of extinction
//! components, and the components slot-major (the k-th component of every band that has
//! one, contiguous), so that per-band sums over components are whole-vector adds.

use super::bands::BandRegistry;
use super::calibration::{Calibration, MAX_TERMS};
use super::interp::{
    cubic, cubic_at, linear, linear_at, locate, pad8, weighted_row_sum, AxisLut, Grid3, Stencil,
};
#[cfg(target_arch = "x86_64")]
use crate::util::has_avx2_fma;
use crate::util::safetensors::SafeTensors;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Parameter names in theta order.
pub const PARAM_NAMES: [&str; 6] = ["teff", "logg", "mh", "av", "rv", "distance"];

/// Most bands a model may have (per-band accumulators live on the stack).
pub const MAX_BANDS: usize = 64;
const MAX_EXT_COEFS: usize = 12 * MAX_BANDS;

/// The embedded default forward-model tables.
pub static EMBEDDED_TABLES: &[u8] =
    include_bytes!("../../models/forward/forward_model.safetensors");

/// Stellar and extinction parameters of one star.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Theta {
    /// Effective temperature \[K\].
    pub teff: f64,
    /// Surface gravity log10(g / cm s^-2).
    pub logg: f64,
    /// Metallicity [M/H] \[dex\].
    pub mh: f64,
    /// V-band extinction A_V \[mag\].
    pub av: f64,
    /// Total-to-selective extinction ratio R_V.
    pub rv: f64,
    /// Distance \[pc\].
    pub distance: f64,
}

impl Theta {
    /// As an array in [`PARAM_NAMES`] order.
    pub fn to_array(&self) -> [f64; 6] {
        [
            self.teff,
            self.logg,
            self.mh,
            self.av,
            self.rv,
            self.distance,
        ]
    }

    /// From an array in [`PARAM_NAMES`] order.
    pub fn from_array(a: [f64; 6]) -> Self {
        Theta {
            teff: a[0],
            logg: a[1],
            mh: a[2],
            av: a[3],
            rv: a[4],
            distance: a[5],
        }
    }
}

/// Why a theta cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThetaError {
    /// NaN or infinite input.
    #[error("{param} = {value} is not a finite number")]
    NotFinite {
        /// Parameter name.
        param: &'static str,
        /// Offending value.
        value: f64,
    },
    /// Outside the tabulated range.
    #[error("{param} = {value} is outside the model's range [{lo}, {hi}]")]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// Offending value.
        value: f64,
        /// Lower limit.
        lo: f64,
        /// Upper limit.
        hi: f64,
    },
    /// Inside the ranges but where no MIST star (or no CK04 model) exists.
    #[error("(teff, logg, mh) = ({teff}, {logg}, {mh}) is outside the model's support: no MIST star reaches it or CK04 has no models around it")]
    OutsideSupport {
        /// Teff \[K\].
        teff: f64,
        /// log g.
        logg: f64,
        /// [M/H].
        mh: f64,
    },
}

/// Parameter limits of the model: (lo, hi) per parameter in [`PARAM_NAMES`] order.
pub const PARAM_RANGES: [(f64, f64); 6] = [
    (3500.0, 50000.0),
    (0.0, 5.0),
    (-2.5, 0.5),
    (0.0, 12.0),
    (2.3, 5.6),
    (1e-3, 1e9),
];

/// Uniformly spaced nodes x0 + i dx, i < n.
#[derive(Clone, Copy, Debug)]
struct UniformAxis {
    x0: f64,
    dx: f64,
    n: usize,
}

impl UniformAxis {
    fn from_nodes(name: &str, nodes: &[f32]) -> Result<Self> {
        if nodes.len() < 2 {
            bail!("axis {name} needs at least 2 nodes");
        }
        let x0 = nodes[0] as f64;
        let dx = (nodes[nodes.len() - 1] as f64 - x0) / (nodes.len() - 1) as f64;
        for (i, &v) in nodes.iter().enumerate() {
            if ((v as f64) - (x0 + dx * i as f64)).abs() > 1e-4 * dx.abs().max(1e-12) + 1e-6 {
                bail!("axis {name} is not uniformly spaced");
            }
        }
        Ok(UniformAxis {
            x0,
            dx,
            n: nodes.len(),
        })
    }

    /// Cell index containing x (cells [x_i, x_i+1]), None outside the axis.
    #[inline]
    fn cell(&self, x: f64) -> Option<usize> {
        let r = (x - self.x0) / self.dx;
        if !(r >= -1e-9 && r <= (self.n - 1) as f64 + 1e-9) {
            return None;
        }
        Some((r.floor().max(0.0) as usize).min(self.n - 2))
    }

    /// Linear interpolation (index, fraction), clamped to the axis.
    #[inline]
    fn lerp(&self, x: f64) -> (usize, f32) {
        let r = ((x - self.x0) / self.dx).clamp(0.0, (self.n - 1) as f64);
        let i = (r.floor() as usize).min(self.n - 2);
        (i, (r - i as f64) as f32)
    }
}

/// MIST-derived quantities on the population grid (log10 Teff, log g, [M/H]).
#[derive(Clone, Debug)]
pub struct PopulationGrid {
    axes: [UniformAxis; 3],
    /// log10 (M / M_sun) on nodes.
    log_mass: Vec<f32>,
    /// 1 where the cell is inside the support.
    support: Vec<u8>,
    /// Relative number density of MIST stars (flat in [M/H]) on nodes.
    density: Vec<f32>,
}

impl PopulationGrid {
    /// Node coordinates (x0, dx, n) per axis: log10 Teff, log g, [M/H].
    pub fn axes(&self) -> [(f64, f64, usize); 3] {
        self.axes.map(|a| (a.x0, a.dx, a.n))
    }

    /// Support flags per cell, row-major [Teff][log g][M/H] cells.
    pub fn support_cells(&self) -> &[u8] {
        &self.support
    }

    /// MIST occupancy density on nodes, row-major [Teff][log g][M/H] nodes.
    pub fn density_nodes(&self) -> &[f32] {
        &self.density
    }

    /// Cell index of (log10 Teff, log g, [M/H]) if inside the grid.
    #[inline]
    pub fn cell_of(&self, lt: f64, logg: f64, mh: f64) -> Option<[usize; 3]> {
        Some([
            self.axes[0].cell(lt)?,
            self.axes[1].cell(logg)?,
            self.axes[2].cell(mh)?,
        ])
    }

    /// Whether the cell (i, j, k) is inside the support.
    #[inline]
    pub fn cell_supported(&self, c: [usize; 3]) -> bool {
        let n1 = self.axes[1].n - 1;
        let n2 = self.axes[2].n - 1;
        self.support[(c[0] * n1 + c[1]) * n2 + c[2]] != 0
    }

    #[inline(always)]
    fn trilinear(&self, values: &[f32], lt: f64, logg: f64, mh: f64) -> f32 {
        let (i, ti) = self.axes[0].lerp(lt);
        let (j, tj) = self.axes[1].lerp(logg);
        let (k, tk) = self.axes[2].lerp(mh);
        let (n1, n2) = (self.axes[1].n, self.axes[2].n);
        let mut acc = 0.0f32;
        for (a, wa) in [(0, 1.0 - ti), (1, ti)] {
            for (b, wb) in [(0, 1.0 - tj), (1, tj)] {
                let base = ((i + a) * n1 + j + b) * n2 + k;
                acc += wa * wb * ((1.0 - tk) * values[base] + tk * values[base + 1]);
            }
        }
        acc
    }
}

/// The forward model: tables plus an optional empirical calibration.
#[derive(Clone, Debug)]
pub struct ForwardModel {
    /// Table version string (e.g. "ck04-g23-mist25-v1").
    pub version: String,
    bands: BandRegistry,
    /// Surface magnitudes, columns in lane order (see `lane_of`).
    surface: Grid3,
    /// Index lookup along the (non-uniform) log10 Teff nodes.
    teff_lut: AxisLut,
    /// Extinction coefficients c_q, slot-major columns (see `ext_slots`).
    ext: Grid3,
    /// Lane (column of the per-band tables) of each band id. Bands are ordered by
    /// descending number of extinction components, so that the k-th components of all
    /// bands that have one fill a prefix of lanes ("slot" k).
    lane_of: Vec<usize>,
    /// (first column, width) of each full extinction slot in `ext` and `ext_tab`.
    ext_slots: Vec<(usize, usize)>,
    /// (column, lane) of the components of the sparse slots (fewer than 8 bands), packed
    /// after the full slots instead of each padded to 8 columns; in slot order, so each
    /// band's components are still summed in order.
    ext_tail: Vec<(usize, usize)>,
    /// [A_V node][1/R_V node][ext width + pad8(nb)]: basis h_q in the extinction columns,
    /// then reference extinction per lane (both blocks 8-aligned: no scalar tails).
    ext_tab: Vec<f32>,
    av_axis: UniformAxis,
    inv_rv_axis: UniformAxis,
    pop: PopulationGrid,
    model_exists: Vec<u8>,
    log10_gm: f64,
    log10_pc_cm: f64,
    calibration: Option<Calibration>,
    /// Factor on each lane's extinction, [pad8(nb)]: 1 + ext_kappa of the calibration, 1
    /// without one (multiplying by 1 is exact, so the hot loop needs no branch).
    ext_factor: Vec<f32>,
    /// Calibration coefficients term-major across lanes, [term][pad8(nb)] (zero for bands
    /// without a correction): one vectorised axpy per term.
    cal_coef: Vec<f32>,
    /// Offset of each term's row in `cal_coef`.
    cal_rows: Vec<usize>,
}

impl ForwardModel {
    /// The embedded default tables with the embedded default calibration (parsed once).
    pub fn embedded() -> &'static ForwardModel {
        static MODEL: OnceLock<ForwardModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            let mut m = ForwardModel::from_bytes(EMBEDDED_TABLES)
                .expect("embedded forward model tables are valid");
            if let Some(cal) = Calibration::embedded() {
                let cal = cal.expect("embedded calibration is valid");
                m.attach_calibration(Some(cal))
                    .expect("embedded calibration matches the embedded bands");
            }
            m
        })
    }

    /// The embedded tables without any empirical calibration (the raw physical model).
    pub fn embedded_raw() -> &'static ForwardModel {
        static MODEL: OnceLock<ForwardModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            ForwardModel::from_bytes(EMBEDDED_TABLES)
                .expect("embedded forward model tables are valid")
        })
    }

    /// Load tables from a safetensors file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        ForwardModel::from_bytes(&bytes)
            .with_context(|| format!("loading forward model {}", path.display()))
    }

    /// Parse tables from safetensors bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::parse(bytes)?;
        if st.metadata.get("format").map(String::as_str) != Some("sedflow-forward-v1") {
            bail!("not a sedflow forward-model file (format metadata missing or different)");
        }
        let names: Vec<String> =
            serde_json::from_str(st.metadata.get("bands").context("bands metadata")?)?;
        let systems: Vec<String> =
            serde_json::from_str(st.metadata.get("systems").context("systems metadata")?)?;
        let bands = BandRegistry::new(names, systems)?;
        let nb = bands.len();
        if nb > MAX_BANDS {
            bail!("{nb} bands exceed the supported maximum of {MAX_BANDS}");
        }
        let (_, teff) = st.f32("teff_nodes", None)?;
        let (_, logg) = st.f32("logg_nodes", None)?;
        let (_, mh) = st.f32("mh_nodes", None)?;
        let dims = [teff.len(), logg.len(), mh.len()];
        let nodes = [
            teff.iter().map(|&t| (t as f64).log10()).collect::<Vec<_>>(),
            logg.iter().map(|&v| v as f64).collect(),
            mh.iter().map(|&v| v as f64).collect(),
        ];
        let (_, surface) = st.f32("surface_mag", Some(&[dims[0], dims[1], dims[2], nb]))?;
        let (_, nq) = st.i32("ext_nq", Some(&[nb]))?;
        let ext_nq: Vec<usize> = nq.iter().map(|&q| q as usize).collect();
        let mut ext_off = Vec::with_capacity(nb);
        let mut qsum = 0;
        for &q in &ext_nq {
            if q == 0 || q > 12 {
                bail!("extinction component count {q} out of range");
            }
            ext_off.push(qsum);
            qsum += q;
        }
        let (_, ext) = st.f32("ext_coef", Some(&[dims[0], dims[1], dims[2], qsum]))?;
        // lanes: bands by descending component count (stable); slot k holds the k-th
        // component of the bands in lanes [0, count_k), padded to 8 with zero columns
        let mut band_of_lane: Vec<usize> = (0..nb).collect();
        band_of_lane.sort_by_key(|&b| std::cmp::Reverse(ext_nq[b]));
        let mut lane_of = vec![0; nb];
        for (l, &b) in band_of_lane.iter().enumerate() {
            lane_of[b] = l;
        }
        let max_q = ext_nq.iter().copied().max().unwrap_or(0);
        let mut ext_slots = Vec::with_capacity(max_q);
        let mut slot_src: Vec<Option<usize>> = Vec::new(); // source component per column
        let mut tail: Vec<(usize, usize)> = Vec::new(); // (source component, lane)
        for k in 0..max_q {
            let count = band_of_lane.iter().take_while(|&&b| ext_nq[b] > k).count();
            if count >= 8 || k == 0 {
                ext_slots.push((slot_src.len(), pad8(count)));
                for l in 0..pad8(count) {
                    slot_src.push((l < count).then(|| ext_off[band_of_lane[l]] + k));
                }
            } else {
                tail.extend((0..count).map(|l| (ext_off[band_of_lane[l]] + k, l)));
            }
        }
        let ext_tail: Vec<(usize, usize)> = tail
            .iter()
            .enumerate()
            .map(|(j, &(_, l))| (slot_src.len() + j, l))
            .collect();
        slot_src.extend(tail.iter().map(|&(g, _)| Some(g)));
        slot_src.resize(pad8(slot_src.len()), None);
        let qw = slot_src.len();
        let permute = |src: &[f32], width: usize, cols: &[Option<usize>]| -> Vec<f32> {
            let rows = src.len() / width;
            let mut out = vec![0f32; rows * cols.len()];
            for r in 0..rows {
                for (c, s) in cols.iter().enumerate() {
                    if let Some(s) = s {
                        out[r * cols.len() + c] = src[r * width + s];
                    }
                }
            }
            out
        };
        let lane_src: Vec<Option<usize>> = band_of_lane.iter().map(|&b| Some(b)).collect();
        let surface = permute(&surface, nb, &lane_src);
        let ext = permute(&ext, qsum, &slot_src);
        let (_, av_nodes) = st.f32("av_nodes", None)?;
        let (_, inv_rv_nodes) = st.f32("inv_rv_nodes", None)?;
        let av_axis = UniformAxis::from_nodes("av", &av_nodes)?;
        let inv_rv_axis = UniformAxis::from_nodes("inv_rv", &inv_rv_nodes)?;
        let (_, ext_ref) = st.f32("ext_ref_mag", Some(&[nb, av_axis.n, inv_rv_axis.n]))?;
        let (_, ext_basis) = st.f32("ext_basis", Some(&[qsum, av_axis.n, inv_rv_axis.n]))?;
        // transpose so that one (A_V, 1/R_V) node holds every band's values contiguously
        let plane = av_axis.n * inv_rv_axis.n;
        let width = qw + pad8(nb);
        let mut ext_tab = vec![0f32; plane * width];
        for p in 0..plane {
            for (c, s) in slot_src.iter().enumerate() {
                if let Some(g) = s {
                    ext_tab[p * width + c] = ext_basis[g * plane + p];
                }
            }
            for (l, &b) in band_of_lane.iter().enumerate() {
                ext_tab[p * width + qw + l] = ext_ref[b * plane + p];
            }
        }
        let (_, exists) = st.u8("model_exists", Some(&dims))?;
        let (_, plt) = st.f32("pop_logteff_nodes", None)?;
        let (_, plg) = st.f32("pop_logg_nodes", None)?;
        let (_, pmh) = st.f32("pop_mh_nodes", None)?;
        let axes = [
            UniformAxis::from_nodes("pop_logteff", &plt)?,
            UniformAxis::from_nodes("pop_logg", &plg)?,
            UniformAxis::from_nodes("pop_mh", &pmh)?,
        ];
        let pdims = [axes[0].n, axes[1].n, axes[2].n];
        let (_, log_mass) = st.f32("log_mass", Some(&pdims))?;
        let (_, support) = st.u8("support", Some(&[pdims[0] - 1, pdims[1] - 1, pdims[2] - 1]))?;
        let (_, density) = st.f32("pop_density", Some(&pdims))?;
        let meta_f64 = |k: &str| -> Result<f64> {
            st.metadata
                .get(k)
                .with_context(|| format!("metadata {k}"))?
                .parse::<f64>()
                .map_err(Into::into)
        };
        Ok(ForwardModel {
            version: st.metadata.get("version").cloned().unwrap_or_default(),
            bands,
            teff_lut: AxisLut::new(&nodes[0], 16 * nodes[0].len()),
            surface: Grid3::new(nodes.clone(), nb, &surface),
            ext: Grid3::new(nodes, qw, &ext),
            lane_of,
            ext_slots,
            ext_tail,
            ext_tab,
            av_axis,
            inv_rv_axis,
            pop: PopulationGrid {
                axes,
                log_mass,
                support,
                density,
            },
            model_exists: exists,
            log10_gm: meta_f64("log10_g_msun_cgs")?,
            log10_pc_cm: meta_f64("log10_pc_cm")?,
            calibration: None,
            ext_factor: vec![1.0; pad8(nb)],
            cal_coef: Vec::new(),
            cal_rows: Vec::new(),
        })
    }

    /// This model with a different calibration (None = raw physical model).
    pub fn with_calibration(&self, calibration: Option<Calibration>) -> Result<ForwardModel> {
        let mut m = self.clone();
        m.attach_calibration(calibration)?;
        Ok(m)
    }

    fn attach_calibration(&mut self, calibration: Option<Calibration>) -> Result<()> {
        self.ext_factor.fill(1.0);
        self.cal_coef.clear();
        self.cal_rows.clear();
        self.calibration = match calibration {
            Some(c) => {
                let c = c.resolved_for(&self.bands)?;
                let width = self.surface.stride;
                let nt = c.terms.len();
                self.cal_coef = vec![0.0; nt * width];
                self.cal_rows = (0..nt).map(|t| t * width).collect();
                for (b, &lane) in self.lane_of.iter().enumerate() {
                    self.ext_factor[lane] = c.ext_factors()[b];
                    for (t, &v) in c.band_coef(b).unwrap_or(&[]).iter().enumerate() {
                        self.cal_coef[t * width + lane] = v as f32;
                    }
                }
                Some(c)
            }
            None => None,
        };
        Ok(())
    }

    /// The active calibration, if any.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Identifier of model + calibration, e.g. "ck04-g23-mist25-v1+cal-..." .
    pub fn id(&self) -> String {
        match &self.calibration {
            Some(c) => format!("{}+{}", self.version, c.id),
            None => format!("{}+uncalibrated", self.version),
        }
    }

    /// The band registry.
    pub fn bands(&self) -> &BandRegistry {
        &self.bands
    }

    /// The population grid (support, masses, MIST occupancy) used by the prior.
    pub fn population(&self) -> &PopulationGrid {
        &self.pop
    }

    /// Surface-magnitude table (for validation); band id b is column `lane(b)`.
    pub fn surface_grid(&self) -> &Grid3 {
        &self.surface
    }

    /// Column of band id `b` in the per-band tables ([`ForwardModel::surface_grid`]).
    pub fn lane(&self, b: usize) -> usize {
        self.lane_of[b]
    }

    /// Whether the CK04 model at node (i, j, k) exists (vs. filled for stencils).
    pub fn model_exists(&self, i: usize, j: usize, k: usize) -> bool {
        let d = [self.surface.nodes[1].len(), self.surface.nodes[2].len()];
        self.model_exists[(i * d[0] + j) * d[1] + k] != 0
    }

    /// Check ranges and finiteness; names the first offending parameter.
    pub fn check_theta(&self, t: &Theta) -> Result<(), ThetaError> {
        for (i, v) in t.to_array().into_iter().enumerate() {
            let param = PARAM_NAMES[i];
            if !v.is_finite() {
                return Err(ThetaError::NotFinite { param, value: v });
            }
            let (lo, hi) = PARAM_RANGES[i];
            if v < lo || v > hi {
                return Err(ThetaError::OutOfRange {
                    param,
                    value: v,
                    lo,
                    hi,
                });
            }
        }
        Ok(())
    }

    /// Whether (Teff, log g, [M/H]) lies in the support (ranges are checked too).
    pub fn support(&self, t: &Theta) -> bool {
        self.check_theta(t).is_ok() && self.in_support_unchecked(t.teff.log10(), t.logg, t.mh)
    }

    #[inline]
    fn in_support_unchecked(&self, lt: f64, logg: f64, mh: f64) -> bool {
        match self.pop.cell_of(lt, logg, mh) {
            Some(c) => self.pop.cell_supported(c),
            None => false,
        }
    }

    /// log10 of the MIST mass \[M_sun\] at (Teff, log g, [M/H]).
    pub fn log_mass(&self, teff: f64, logg: f64, mh: f64) -> f64 {
        self.pop
            .trilinear(&self.pop.log_mass, teff.log10(), logg, mh) as f64
    }

    /// Stellar radius \[R_sun\] implied by the MIST mass and log g.
    pub fn radius_rsun(&self, teff: f64, logg: f64, mh: f64) -> f64 {
        const LOG10_RSUN_CM: f64 = 10.842_408_3; // log10(6.957e10)
        let lr = 0.5 * (self.log10_gm + self.log_mass(teff, logg, mh) - logg);
        10f64.powf(lr - LOG10_RSUN_CM)
    }

    /// Apparent magnitudes of one theta in `bands` (ids) into `out` (same length).
    ///
    /// On error `out` is filled with NaN and the reason returned.
    pub fn magnitudes(
        &self,
        t: &Theta,
        bands: &[usize],
        out: &mut [f32],
    ) -> Result<(), ThetaError> {
        let r = self.check_theta(t).and_then(|_| {
            if self.in_support_unchecked(t.teff.log10(), t.logg, t.mh) {
                Ok(())
            } else {
                Err(ThetaError::OutsideSupport {
                    teff: t.teff,
                    logg: t.logg,
                    mh: t.mh,
                })
            }
        });
        // same (possibly FMA) code path as the batch functions, so results agree bit for bit
        self.magnitudes_many(std::slice::from_ref(t), bands, &mut out[..bands.len()]);
        r
    }

    /// The core evaluation. Every table is accumulated over its full, contiguous width and
    /// every band's extinction and correction is computed in vector lanes; the requested
    /// bands are picked at the end.
    #[inline(always)]
    fn eval<const FMA: bool>(
        &self,
        t: &Theta,
        lt: f64,
        bands: &[usize],
        out: &mut [f32],
        sc: &mut Scratch,
    ) {
        debug_assert!(bands.len() <= MAX_BANDS && out.len() >= bands.len());
        let nbp = self.surface.stride;
        // surface magnitudes: cubic along every axis; extinction coefficients: cubic in
        // Teff, linear in log g and [M/H]
        let (s3, se) = self.stencils(lt, t.logg, t.mh);
        self.surface
            .interpolate_row::<FMA>(&s3, &mut sc.surf[..nbp]);
        if t.av > 0.0 {
            self.extinction_all::<FMA>(&se, t.av, t.rv, sc);
            let mags = &mut sc.surf[..nbp];
            for ((m, &a), &f) in mags.iter_mut().zip(&sc.ext[..nbp]).zip(&self.ext_factor) {
                *m += a * f;
            }
        }
        self.add_calibration::<FMA>(lt, t.logg, t.mh, sc);
        // radius and distance: m = S + A - 5 log10(R / d)
        let log_r_cm = self.log10_radius_cm(lt, t.logg, t.mh);
        let dist_mod = (5.0 * (t.distance.log10() + self.log10_pc_cm - log_r_cm)) as f32;
        for (o, &b) in out.iter_mut().zip(bands) {
            *o = sc.surf[self.lane_of[b]] + dist_mod;
        }
    }

    /// Add the calibration's correction of every band to `sc.surf` (nothing without a
    /// calibration).
    #[inline(always)]
    fn add_calibration<const FMA: bool>(&self, lt: f64, logg: f64, mh: f64, sc: &mut Scratch) {
        let Some(cal) = &self.calibration else { return };
        let nbp = self.surface.stride;
        let phi = &mut sc.phi[..self.cal_rows.len()];
        cal.terms_into(lt, logg, mh, phi);
        let corr = &mut sc.corr[..nbp];
        weighted_row_sum::<FMA>(&self.cal_coef, &self.cal_rows, phi, corr);
        for (m, &c) in sc.surf[..nbp].iter_mut().zip(corr.iter()) {
            *m += c;
        }
    }

    /// log10 of the radius [cm] from the MIST mass and log g.
    #[inline(always)]
    fn log10_radius_cm(&self, lt: f64, logg: f64, mh: f64) -> f64 {
        let log_m = self.pop.trilinear(&self.pop.log_mass, lt, logg, mh) as f64;
        0.5 * (self.log10_gm + log_m - logg)
    }

    /// The two parts of the magnitudes that the closed-form (distance, extinction)
    /// conditional needs, in one pass over the tables: the absolute magnitudes M_b (10 pc,
    /// no extinction, calibration included) into `abs`, and the band extinction A_b at
    /// A_V = t.av (calibration's extinction scale included) into `ext`, so that
    /// m_b = M_b + mu + A_b. t.distance is ignored. With `second` = (a2, out), also A_b at
    /// A_V = a2 > 0 into `out` (the extinction coefficients shared with the first).
    #[inline(always)]
    fn eval_split<const FMA: bool>(
        &self,
        t: &Theta,
        lt: f64,
        bands: &[usize],
        (abs, ext): (&mut [f32], &mut [f32]),
        second: Option<(f64, &mut [f32])>,
        sc: &mut Scratch,
    ) {
        let nbp = self.surface.stride;
        let (s3, se) = self.stencils(lt, t.logg, t.mh);
        self.surface
            .interpolate_row::<FMA>(&s3, &mut sc.surf[..nbp]);
        let has_coef = t.av > 0.0;
        if has_coef {
            self.extinction_all::<FMA>(&se, t.av, t.rv, sc);
            self.pick_extinction(bands, ext, sc);
        } else {
            ext.fill(0.0);
        }
        if let Some((a2, ext2)) = second {
            if has_coef {
                self.extinction_from_coef::<FMA>(a2, t.rv, sc);
            } else {
                self.extinction_all::<FMA>(&se, a2, t.rv, sc);
            }
            self.pick_extinction(bands, ext2, sc);
        }
        self.add_calibration::<FMA>(lt, t.logg, t.mh, sc);
        let log_r_cm = self.log10_radius_cm(lt, t.logg, t.mh);
        let abs_mod = (5.0 * (1.0 + self.log10_pc_cm - log_r_cm)) as f32;
        for (o, &b) in abs.iter_mut().zip(bands) {
            *o = sc.surf[self.lane_of[b]] + abs_mod;
        }
    }

    /// The requested bands' extinction from `sc.ext`, with the calibration's extinction
    /// scale.
    #[inline(always)]
    fn pick_extinction(&self, bands: &[usize], out: &mut [f32], sc: &Scratch) {
        for (e, &b) in out.iter_mut().zip(bands) {
            let lane = self.lane_of[b];
            *e = sc.ext[lane] * self.ext_factor[lane];
        }
    }

    /// The split magnitudes (M_b, and A_b at A_V = t.av) for many thetas on the current
    /// thread: `abs` and `ext` are row-major `[thetas.len()][bands.len()]`; NaN rows where
    /// theta (its distance aside) is invalid or outside the support.
    pub fn split_many(&self, thetas: &[Theta], bands: &[usize], abs: &mut [f32], ext: &mut [f32]) {
        self.split_dispatch(thetas, bands, (abs, ext), None);
    }

    /// [`Self::split_many`], plus each theta's A_b at a second extinction A_V = `a2` > 0
    /// into `ext2` (same layout): two points of the curve A_b(A_V) for the price of one
    /// pass over the tables and a second table lookup.
    pub fn split_many_two(
        &self,
        thetas: &[Theta],
        bands: &[usize],
        (abs, ext): (&mut [f32], &mut [f32]),
        (a2, ext2): (f64, &mut [f32]),
    ) {
        assert!(a2 > 0.0, "the second extinction must be positive");
        self.split_dispatch(thetas, bands, (abs, ext), Some((a2, ext2)));
    }

    fn split_dispatch(
        &self,
        thetas: &[Theta],
        bands: &[usize],
        out: (&mut [f32], &mut [f32]),
        second: Option<(f64, &mut [f32])>,
    ) {
        assert_eq!(out.0.len(), thetas.len() * bands.len());
        assert_eq!(out.1.len(), out.0.len());
        if let Some((_, e2)) = &second {
            assert_eq!(e2.len(), out.0.len());
        }
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { self.split_avx2(thetas, bands, out, second) };
                return;
            }
        }
        self.split_generic::<false>(thetas, bands, out, second);
    }

    #[inline(always)]
    fn split_generic<const FMA: bool>(
        &self,
        thetas: &[Theta],
        bands: &[usize],
        (abs, ext): (&mut [f32], &mut [f32]),
        second: Option<(f64, &mut [f32])>,
    ) {
        let nb = bands.len().max(1);
        let mut sc = Scratch::new();
        let (a2, mut ext2) = match second {
            Some((a2, e2)) => (a2, Some(e2.chunks_mut(nb))),
            None => (0.0, None),
        };
        let rows = abs.chunks_mut(nb).zip(ext.chunks_mut(nb));
        for (t, (a, e)) in thetas.iter().zip(rows) {
            let e2 = ext2.as_mut().and_then(|it| it.next());
            let lt = t.teff.log10();
            let at_10pc = Theta {
                distance: 10.0,
                ..*t
            };
            match self.check_theta(&at_10pc) {
                Ok(()) if self.in_support_unchecked(lt, t.logg, t.mh) => {
                    let second = e2.map(|e2| (a2, e2));
                    self.eval_split::<FMA>(t, lt, bands, (a, e), second, &mut sc)
                }
                _ => {
                    a.fill(f32::NAN);
                    e.fill(f32::NAN);
                    if let Some(e2) = e2 {
                        e2.fill(f32::NAN);
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn split_avx2(
        &self,
        thetas: &[Theta],
        bands: &[usize],
        out: (&mut [f32], &mut [f32]),
        second: Option<(f64, &mut [f32])>,
    ) {
        self.split_generic::<true>(thetas, bands, out, second)
    }

    /// Stencils at (log10 Teff, log g, [M/H]): cubic on every axis, and cubic in Teff with
    /// linear in log g and [M/H]; one index search per axis (a table lookup for Teff).
    #[inline(always)]
    fn stencils(&self, lt: f64, logg: f64, mh: f64) -> ([Stencil; 3], [Stencil; 3]) {
        let n = &self.surface.nodes;
        let x = [lt, logg, mh];
        let idx = [
            self.teff_lut.locate(&n[0], lt),
            locate(&n[1], logg),
            locate(&n[2], mh),
        ];
        let c = |a: usize| match n[a].len() {
            4.. => cubic_at(&n[a], idx[a], x[a]),
            _ => cubic(&n[a], x[a]),
        };
        let l = |a: usize| match n[a].len() {
            2.. => linear_at(&n[a], idx[a], x[a]),
            _ => linear(&n[a], x[a]),
        };
        let t = c(0);
        ([t, c(1), c(2)], [t, l(1), l(2)])
    }

    /// Band extinction A_b(theta) of the raw physical model only (no surface magnitude,
    /// radius or calibration, including the calibration's extinction scale).
    pub fn extinction(&self, t: &Theta, bands: &[usize], out: &mut [f32]) {
        let (_, se) = self.stencils(t.teff.log10(), t.logg, t.mh);
        out[..bands.len()].iter_mut().for_each(|o| *o = 0.0);
        if t.av > 0.0 {
            let mut sc = Scratch::new();
            self.extinction_all::<false>(&se, t.av, t.rv, &mut sc);
            for (o, &b) in out.iter_mut().zip(bands) {
                *o = sc.ext[self.lane_of[b]];
            }
        }
    }

    /// Raw extinction of every band into `sc.ext[..pad8(nb)]` (0 in the padding lanes).
    #[inline(always)]
    fn extinction_all<const FMA: bool>(
        &self,
        se: &[Stencil; 3],
        av: f64,
        rv: f64,
        sc: &mut Scratch,
    ) {
        let qw = self.ext.stride;
        self.ext.interpolate_row::<FMA>(se, &mut sc.coef[..qw]);
        self.extinction_from_coef::<FMA>(av, rv, sc);
    }

    /// [`Self::extinction_all`] from the coefficients already in `sc.coef` (which it leaves
    /// as they are, so that a second extinction at the same stellar parameters costs only
    /// the table lookup).
    #[inline(always)]
    fn extinction_from_coef<const FMA: bool>(&self, av: f64, rv: f64, sc: &mut Scratch) {
        let nb = self.bands.len();
        let nbp = self.surface.stride;
        let qw = self.ext.stride;
        let coef = &sc.coef[..qw];
        // bilinear (A_V, 1/R_V) interpolation of basis and reference extinction, all bands
        let (ia, ta) = self.av_axis.lerp(av);
        let (iy, ty) = self.inv_rv_axis.lerp(1.0 / rv);
        let ny = self.inv_rv_axis.n;
        let width = qw + nbp;
        let w = [
            (1.0 - ta) * (1.0 - ty),
            (1.0 - ta) * ty,
            ta * (1.0 - ty),
            ta * ty,
        ];
        let rows = [
            ia * ny + iy,
            ia * ny + iy + 1,
            (ia + 1) * ny + iy,
            (ia + 1) * ny + iy + 1,
        ];
        let offs = rows.map(|r| r * width);
        let tab = &mut sc.tab[..width];
        weighted_row_sum::<FMA>(&self.ext_tab, &offs, &w, tab);
        let (tab_h, tab_ref) = tab.split_at_mut(qw);
        // c_q h_q for every component at once, then each band's sum over its components
        // (slot by slot: the k-th components of all bands that have one are contiguous):
        // the band's extinguished-to-unextinguished flux ratio relative to the reference
        for (h, &c) in tab_h.iter_mut().zip(coef) {
            *h *= c;
        }
        let ratio = &mut sc.ratio[..nbp];
        ratio.fill(0.0);
        for &(c0, w) in &self.ext_slots {
            for (r, &c) in ratio[..w].iter_mut().zip(&tab_h[c0..c0 + w]) {
                *r += c;
            }
        }
        for &(c, l) in &self.ext_tail {
            ratio[l] += tab_h[c];
        }
        for r in ratio[..nb].iter_mut() {
            *r = r.max(1e-30);
        }
        ratio[nb..].fill(1.0);
        for ((a, &r), &t) in sc.ext[..nbp]
            .iter_mut()
            .zip(ratio.iter())
            .zip(tab_ref.iter())
        {
            *a = t - 2.5 * fast_log10(r);
        }
    }

    /// Magnitudes for many thetas on the current thread: `out` is row-major
    /// `[thetas.len()][bands.len()]`, NaN rows for invalid or unsupported thetas.
    /// Uses AVX2/FMA code when the CPU has it.
    pub fn magnitudes_many(&self, thetas: &[Theta], bands: &[usize], out: &mut [f32]) {
        assert_eq!(out.len(), thetas.len() * bands.len());
        let nb = bands.len().max(1);
        self.many_rows(thetas.iter().zip(out.chunks_mut(nb)), bands);
    }

    /// Evaluate (theta, output row) pairs on the current thread, AVX2/FMA code when the
    /// CPU has it.
    fn many_rows<'a>(
        &self,
        rows: impl Iterator<Item = (&'a Theta, &'a mut [f32])>,
        bands: &[usize],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { self.rows_avx2(rows, bands) };
                return;
            }
        }
        self.rows_generic::<false>(rows, bands);
    }

    #[inline(always)]
    fn rows_generic<'a, const FMA: bool>(
        &self,
        rows: impl Iterator<Item = (&'a Theta, &'a mut [f32])>,
        bands: &[usize],
    ) {
        let mut sc = Scratch::new();
        for (t, row) in rows {
            let lt = t.teff.log10();
            match self.check_theta(t) {
                Ok(()) if self.in_support_unchecked(lt, t.logg, t.mh) => {
                    self.eval::<FMA>(t, lt, bands, row, &mut sc)
                }
                _ => row.iter_mut().for_each(|o| *o = f32::NAN),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2<'a>(
        &self,
        rows: impl Iterator<Item = (&'a Theta, &'a mut [f32])>,
        bands: &[usize],
    ) {
        self.rows_generic::<true>(rows, bands)
    }

    /// Magnitudes for many thetas, parallel with rayon (see `magnitudes_many`).
    ///
    /// The thetas are evaluated in the order of their grid cell so that consecutive
    /// evaluations reuse the same table rows from cache (the tables are several MB); the
    /// results land in input order.
    pub fn magnitudes_batch(&self, thetas: &[Theta], bands: &[usize], out: &mut [f32]) {
        let nb = bands.len();
        assert_eq!(out.len(), thetas.len() * nb);
        if nb == 0 {
            return;
        }
        const CHUNK: usize = 1024;
        let mut order: Vec<(u32, u32)> = thetas
            .par_iter()
            .enumerate()
            .map(|(i, t)| (self.cell_key(t), i as u32))
            .collect();
        order.par_sort_unstable();
        let out_ptr = SendPtr(out.as_mut_ptr());
        order.par_chunks(CHUNK).for_each_init(
            || (Vec::new(), Vec::new()),
            |(local, local_out): &mut (Vec<Theta>, Vec<f32>), idx| {
                // gather the thetas and evaluate into a contiguous buffer, then scatter
                // the rows: cache misses on scattered loads and stores then overlap,
                // while inside the long evaluation loop they would stall it
                local.clear();
                local.extend(idx.iter().map(|&(_, i)| thetas[i as usize]));
                local_out.resize(local.len() * nb, 0.0);
                self.magnitudes_many(local, bands, local_out);
                let p = &out_ptr;
                for (row, &(_, i)) in local_out.chunks_exact(nb).zip(idx) {
                    // SAFETY: each input index appears exactly once in `order`, so the
                    // rows written never alias, and i < thetas.len() keeps them in `out`.
                    unsafe {
                        std::ptr::copy_nonoverlapping(row.as_ptr(), p.0.add(i as usize * nb), nb)
                    };
                }
            },
        );
    }

    /// A sort key that groups thetas sharing table rows (Teff node, then log g, [M/H]).
    fn cell_key(&self, t: &Theta) -> u32 {
        let n = &self.surface.nodes;
        if !(t.teff > 0.0 && t.logg.is_finite() && t.mh.is_finite()) {
            return u32::MAX;
        }
        let i = self.teff_lut.locate(&n[0], t.teff.log10()) as u32;
        let j = locate(&n[1], t.logg) as u32;
        let k = locate(&n[2], t.mh) as u32;
        (i << 16) | (j << 8) | k
    }
}

struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes (see magnitudes_batch).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Per-evaluation scratch space (on the stack; no allocation per theta).
struct Scratch {
    surf: [f32; MAX_BANDS],
    ext: [f32; MAX_BANDS],
    corr: [f32; MAX_BANDS],
    phi: [f32; MAX_TERMS],
    ratio: [f32; MAX_BANDS],
    coef: [f32; MAX_EXT_COEFS],
    tab: [f32; MAX_BANDS + MAX_EXT_COEFS],
}

impl Scratch {
    #[inline(always)]
    fn new() -> Self {
        Scratch {
            surf: [0.0; MAX_BANDS],
            ext: [0.0; MAX_BANDS],
            corr: [0.0; MAX_BANDS],
            phi: [0.0; MAX_TERMS],
            ratio: [0.0; MAX_BANDS],
            coef: [0.0; MAX_EXT_COEFS],
            tab: [0.0; MAX_BANDS + MAX_EXT_COEFS],
        }
    }
}

/// log10 for positive normal f32 with ~1e-7 relative accuracy (no libm call).
#[inline(always)]
pub fn fast_log10(x: f32) -> f32 {
    // x = 2^e * m, m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m-1)/(m+1)
    // branch-free so that loops over bands vectorise
    let bits = x.to_bits();
    let m1 = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m1 > std::f32::consts::SQRT_2;
    let m = if big { m1 * 0.5 } else { m1 };
    let e = ((bits >> 23) & 0xff) as i32 - 127 + big as i32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // atanh series to s^9 (|s| < 0.172): error < 2e-8
    let p = 1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    let ln_m = 2.0 * s * p;
    (ln_m + e as f32 * std::f32::consts::LN_2) * std::f32::consts::LOG10_E
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sun(av: f64, rv: f64) -> Theta {
        Theta {
            teff: 5772.0,
            logg: 4.44,
            mh: 0.0,
            av,
            rv,
            distance: 10.0,
        }
    }

    #[test]
    fn fast_log10_is_accurate() {
        let mut x = 1e-12f32;
        while x < 1e12 {
            let exact = (x as f64).log10();
            let err = (fast_log10(x) as f64 - exact).abs();
            // f32 carries ~6e-8 relative precision in the result itself
            assert!(err < 2e-7 + 1.2e-7 * exact.abs(), "x={x}: {err}");
            x *= 1.37;
        }
    }

    #[test]
    fn errors_name_the_parameter() {
        let m = ForwardModel::embedded_raw();
        let mut t = sun(0.0, 3.1);
        t.logg = f64::NAN;
        let e = m.check_theta(&t).unwrap_err();
        assert!(e.to_string().contains("logg"), "{e}");
        let mut t = sun(0.0, 3.1);
        t.rv = 7.0;
        let e = m.check_theta(&t).unwrap_err();
        assert!(
            e.to_string().contains("rv") && e.to_string().contains("5.6"),
            "{e}"
        );
        let mut out = [0f32; 2];
        let mut t = sun(0.0, 3.1);
        t.teff = 40000.0;
        t.logg = 1.0; // hot supergiant: no CK04 model and no MIST star
        assert!(matches!(
            m.magnitudes(&t, &[0, 1], &mut out),
            Err(ThetaError::OutsideSupport { .. })
        ));
        assert!(out.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn unknown_band_lists_known_ones() {
        let m = ForwardModel::embedded_raw();
        let e = m.bands().parse_list(Some("gaia_g,johnson_v")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("johnson_v") && s.contains("gaia_bp") && s.contains("wise_w2"),
            "{s}"
        );
    }

    #[test]
    fn any_band_subset_in_any_order_equals_the_all_band_result() {
        // bands live in permuted lanes internally; what callers see must not depend on it
        let m = ForwardModel::embedded();
        let nb = m.bands().len();
        let all: Vec<usize> = (0..nb).collect();
        let t = Theta {
            teff: 8123.0,
            logg: 3.9,
            mh: -0.7,
            av: 2.3,
            rv: 4.2,
            distance: 870.0,
        };
        let mut full = vec![0f32; nb];
        m.magnitudes(&t, &all, &mut full).unwrap();
        let mut ext_full = vec![0f32; nb];
        m.extinction(&t, &all, &mut ext_full);
        let subset = [nb - 1, 0, 16, 3, 7];
        let mut sub = [0f32; 5];
        m.magnitudes(&t, &subset, &mut sub).unwrap();
        let mut ext_sub = [0f32; 5];
        m.extinction(&t, &subset, &mut ext_sub);
        for (i, &b) in subset.iter().enumerate() {
            assert_eq!(sub[i], full[b], "band {b}");
            assert_eq!(ext_sub[i], ext_full[b], "band {b}");
        }
        // and each value belongs to its band: extinction falls with wavelength
        let chain = [
            "sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "tmass_j", "tmass_h", "tmass_ks",
            "wise_w1",
        ];
        let a: Vec<f32> = chain
            .iter()
            .map(|n| ext_full[m.bands().id(n).unwrap()])
            .collect();
        assert!(
            a.windows(2).all(|w| w[0] > w[1]) && a[8] > 0.0,
            "{chain:?}: {a:?}"
        );
    }

    #[test]
    fn distance_modulus_and_batch_agree() {
        let m = ForwardModel::embedded_raw();
        let bands: Vec<usize> = (0..m.bands().len()).collect();
        let mut a = vec![0f32; bands.len()];
        let mut b = vec![0f32; bands.len()];
        m.magnitudes(&sun(0.5, 3.1), &bands, &mut a).unwrap();
        let mut far = sun(0.5, 3.1);
        far.distance = 1000.0;
        m.magnitudes(&far, &bands, &mut b).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((y - x - 10.0).abs() < 1e-4);
        }
        let thetas = vec![
            sun(0.5, 3.1),
            far,
            Theta {
                teff: f64::NAN,
                ..far
            },
        ];
        let mut out = vec![0f32; 3 * bands.len()];
        m.magnitudes_batch(&thetas, &bands, &mut out);
        assert_eq!(&out[..bands.len()], &a[..]);
        assert!(out[2 * bands.len()..].iter().all(|v| v.is_nan()));
    }

    /// M_b + mu + A_b is the magnitude, and the second extinction of `split_many_two`
    /// equals the first at that A_V (the shared coefficients change nothing).
    #[test]
    fn split_parts_add_up_and_the_second_extinction_is_exact() {
        let m = ForwardModel::embedded_raw();
        let bands: Vec<usize> = (0..m.bands().len()).collect();
        let nb = bands.len();
        let mut at = sun(0.0, 3.1);
        at.distance = 250.0;
        let thetas = [sun(0.4, 3.1), sun(0.0, 4.0), at];
        let n = thetas.len() * nb;
        let (mut abs, mut ext, mut ext2) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        m.split_many_two(&thetas, &bands, (&mut abs, &mut ext), (1.7, &mut ext2));
        let mut mags = vec![0f32; nb];
        for (k, t) in thetas.iter().enumerate() {
            m.magnitudes(t, &bands, &mut mags).unwrap();
            let mu = 5.0 * t.distance.log10() - 5.0;
            for j in 0..nb {
                let sum = abs[k * nb + j] as f64 + mu + ext[k * nb + j] as f64;
                assert!(
                    (sum - mags[j] as f64).abs() < 2e-4,
                    "{k} {j}: {sum} vs {}",
                    mags[j]
                );
            }
            let at_a2 = [Theta { av: 1.7, ..*t }];
            let (mut a1, mut e1) = (vec![0f32; nb], vec![0f32; nb]);
            m.split_many(&at_a2, &bands, &mut a1, &mut e1);
            assert_eq!(&e1[..], &ext2[k * nb..(k + 1) * nb]);
            assert_eq!(&a1[..], &abs[k * nb..(k + 1) * nb]);
        }
    }
}
