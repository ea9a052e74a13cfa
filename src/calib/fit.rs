//! Calibration step, fitting: smooth per-band corrections delta_b(Teff, log g, [M/H]) from
//! labelled stars.
//!
//! Observation model of star i in band b (magnitudes):
//!   m_obs = m_raw(labels, A_V, R_V, d) + delta_b(labels) + e_phot + e_model
//! Per star the nuisance u = (mu, A_V, Teff, log g, [M/H]) has a Gaussian prior: the distance
//! modulus from the (zero-point corrected) parallax, A_V from the reddening prior, and the
//! labels with their errors (plus survey-systematics floors). Linearising the model in u
//! around the current estimate makes u marginalisable analytically:
//!   r = m_obs - m_raw(u0) - G (u_prior - u0) ~ N(Phi beta, C),  C = N + G S G^T
//! with G the model's derivatives (finite differences), S the prior variances and N the
//! photometric plus model-floor variances. beta (every band's coefficients at once: bands are
//! coupled through C) solves the generalised least-squares normal equations with a ridge
//! prior. Degeneracies are anchored by the priors: a correction common to all bands competes
//! with the parallax, one along the extinction vector with the reddening prior, one along
//! dm/dTeff with the labels. The fit iterates: re-linearise around each star's posterior
//! (A_V, mu), drop per-band outliers (standardised conditional residual) and stars that do
//! not fit at all. Sums over stars run in fixed chunks combined in order, so results do not
//! depend on the number of threads.

use super::data::LabelledStar;
use super::irfm::{irfm_teff, IrfmSettings, IrfmTeff};
use super::offsets::LabelOffsets;
use super::{distance_of_mu, CalibSettings, NuisancePrior};
use crate::likelihood::NoiseModel;
use crate::physics::calibration::{BandCorrection, Calibration};
use crate::physics::{ForwardModel, Theta};
use crate::util::linalg::{cholesky, cholesky_solve, spd_inverse};
use crate::util::stats::percentile;
use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::Serialize;

/// Bands without calibration data that inherit the correction of a sibling band:
/// (band, sibling, reason). Gaia DR3 G/BP/RP are the DR2 instrument and passbands differing
/// by a few hundredths of a magnitude in synthetic colours, so the model's errors match.
pub const INHERITANCE: [(&str, &str); 3] = [
    ("gaia_g", "gaia_dr2_g"),
    ("gaia_bp", "gaia_dr2_bp"),
    ("gaia_rp", "gaia_dr2_rp"),
];

/// Stars whose Mahalanobis chi^2 per band exceeds this do not fit the model at all
/// (binaries, wrong labels, blends) and leave the fit.
const MAX_STAR_CHI2_PER_BAND: f64 = 10.0;
/// Stars summed per chunk of the normal equations (fixed: results independent of threads).
const CHUNK: usize = 128;
/// Finite-difference steps: relative Teff, log g, [M/H], A_V.
const FD_STEPS: [f64; 4] = [0.004, 0.05, 0.05, 0.05];
/// Prior width of mu for stars without a usable parallax [mag] (effectively free).
const FREE_MU_SIGMA: f64 = 10.0;

/// Summary of a fit (written into the model card).
#[derive(Clone, Debug, Serialize)]
pub struct FitStats {
    /// Stars given to the fit.
    pub n_input: usize,
    /// Stars whose labels lie outside the model's range or support (not used).
    pub n_outside_model: usize,
    /// Stars dropped as not fitting at all (chi^2 per band above the limit).
    pub n_rejected_stars: usize,
    /// Measurements dropped as per-band outliers.
    pub n_clipped_measurements: usize,
    /// Stars in the final iteration.
    pub n_used: usize,
    /// Weight per label source (source, stars, weight per star).
    pub source_weights: Vec<(String, usize, f64)>,
    /// Mean chi^2 per band of the used stars after the final iteration.
    pub chi2_per_band: f64,
    /// Fitted relative scale error of each reddening map (A_V prior mean multiplied by
    /// 1 + kappa).
    pub map_scales: Vec<(String, f64)>,
    /// Fitted factor on each reddening map's quoted E(B-V) errors (1 where not estimated).
    #[serde(default)]
    pub map_error_scales: Vec<(String, f64)>,
    /// Model-systematics floor of each fitted band \[mag\] (the likelihood's floor).
    #[serde(default)]
    pub floors: Vec<(String, f64)>,
    /// Fitted relative extinction correction kappa_b of each band whose extinction is
    /// rescaled (A_b -> A_b (1 + kappa_b)).
    #[serde(default)]
    pub ext_scales: Vec<(String, f64)>,
    /// Fitted per-survey label offsets (label = true + offset), if modelled.
    #[serde(default)]
    pub label_offsets: Option<LabelOffsets>,
    /// The IRFM anchor per label source.
    #[serde(default)]
    pub anchor: Vec<AnchorStat>,
}

/// The IRFM anchor sample of one label source.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorStat {
    /// Label source.
    pub source: String,
    /// Anchor stars (low reddening, IRFM Teff available, used in the fit).
    pub n: usize,
    /// Median label Teff - IRFM Teff \[K\].
    pub median_label_minus_irfm: f64,
    /// Median anchored Teff (label - fitted offset) - IRFM Teff \[K\].
    pub median_anchored_minus_irfm: f64,
    /// Robust scatter of label - IRFM \[K\].
    pub scatter: f64,
    /// Median label Teff of the anchor stars \[K\].
    pub median_teff: f64,
}

/// The fitted calibration and how the fit went.
#[derive(Clone, Debug)]
pub struct FitOutcome {
    /// The calibration (fitted and inherited bands).
    pub calibration: Calibration,
    /// Statistics.
    pub stats: FitStats,
    /// Fitted label offsets (None: not modelled).
    pub offsets: Option<LabelOffsets>,
}

#[derive(Clone, Debug)]
struct StarState {
    av0: f64,
    mu0: f64,
    /// Label offset (Teff, log g) of the previous solution: the star is linearised at
    /// label - shift.
    shift: [f64; 2],
    clipped: Vec<bool>,
    active: bool,
}

/// Design entries of one star's label offsets: (parameter, basis value) of the Teff terms
/// and of the dwarf log g terms.
#[derive(Clone, Debug, Default)]
struct OffsetDesign {
    teff: Vec<(usize, f64)>,
    logg: Vec<(usize, f64)>,
    /// IRFM Teff of an anchor star: its Teff prior combines the label and the IRFM value.
    irfm: Option<IrfmTeff>,
}

impl OffsetDesign {
    /// Offset (Teff, log g) at coefficients `beta`.
    fn eval(&self, beta: &[f64]) -> [f64; 2] {
        [
            self.teff.iter().map(|&(p, x)| beta[p] * x).sum(),
            self.logg.iter().map(|&(p, x)| beta[p] * x).sum(),
        ]
    }
}

/// One star linearised around its current state.
struct Linearised {
    /// Indices into the star's photometry of the bands used.
    used: Vec<usize>,
    /// Sparse design row of each used band: (parameter index, value).
    rows: Vec<Vec<(usize, f64)>>,
    r: Vec<f64>,
    /// C^-1, row-major used x used.
    p: Vec<f64>,
    g: Vec<[f64; 5]>,
    s: [f64; 5],
    du_prior: [f64; 5],
    /// Reddening-map scale parameter of the star and its A_V prior mean at unit scale.
    kappa: Option<(usize, f64)>,
    /// Registry band id of each used band.
    band_ids: Vec<usize>,
    /// Reported error^2 of each used band.
    err2: Vec<f64>,
    /// A_V prior variance from the map's quoted error at unit error scale (0: not a map
    /// prior), and the star's map index.
    av_map_var: Option<(usize, f64)>,
    w: f64,
}

fn theta(labels: [f64; 3], av: f64, rv: f64, mu: f64) -> Theta {
    Theta {
        teff: labels[0],
        logg: labels[1],
        mh: labels[2],
        av,
        rv,
        distance: distance_of_mu(mu),
    }
}

/// Whether the model can be evaluated at a star's labels.
pub fn labels_in_model(fm: &ForwardModel, star: &LabelledStar) -> bool {
    fm.support(&theta(star.labels, 0.0, 3.1, 0.0))
}

/// The clamp box and standardisation of the basis from the training stars' labels.
fn basis_frame(
    stars: &[&LabelledStar],
    s: &CalibSettings,
) -> ([f64; 3], [f64; 3], [f64; 3], [f64; 3]) {
    let mut center = [0.0; 3];
    let mut scale = [0.0; 3];
    let mut lo = [0.0; 3];
    let mut hi = [0.0; 3];
    for a in 0..3 {
        let v: Vec<f64> = stars
            .iter()
            .map(|st| {
                if a == 0 {
                    st.labels[0].log10()
                } else {
                    st.labels[a]
                }
            })
            .collect();
        lo[a] = percentile(&v, s.box_percentiles.0);
        hi[a] = percentile(&v, s.box_percentiles.1);
        center[a] = 0.5 * (lo[a] + hi[a]);
        scale[a] = (0.5 * (hi[a] - lo[a])).max(1e-6);
    }
    (center, scale, lo, hi)
}

/// Weights per label source so that none has more than `max_share` of the total weight.
fn source_weights(stars: &[&LabelledStar], max_share: f64) -> Vec<(String, usize, f64)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for st in stars {
        match counts.iter_mut().find(|(s, _)| *s == st.label_source) {
            Some(c) => c.1 += 1,
            None => counts.push((st.label_source.clone(), 1)),
        }
    }
    counts.sort();
    let n: usize = counts.iter().map(|c| c.1).sum();
    counts
        .into_iter()
        .map(|(s, c)| {
            let share = c as f64 / n as f64;
            let w = if n > c && max_share < 1.0 && share > max_share {
                max_share / (1.0 - max_share) * (n - c) as f64 / c as f64
            } else {
                1.0
            };
            (s, c, w)
        })
        .collect()
}

/// Linearise one star around its state; None if the model cannot be evaluated there.
#[allow(clippy::too_many_arguments)]
/// What one iteration linearises every star against: the models, the settings, the
/// current noise model and calibration, and where parameters sit in the design.
#[derive(Clone, Copy)]
struct LinContext<'a> {
    raw: &'a ForwardModel,
    /// The raw model with the current calibration.
    cal_model: &'a ForwardModel,
    s: &'a CalibSettings,
    noise: &'a NoiseModel,
    /// Coefficient block of each registry band (None: not calibrated).
    cal_index: &'a [Option<usize>],
    calib: &'a Calibration,
    /// Extinction-scale parameter of each registry band.
    ext_index: &'a [Option<usize>],
}

/// One star's inputs to [`linearise`].
struct StarInput<'a> {
    star: &'a LabelledStar,
    st: &'a StarState,
    prior: &'a NuisancePrior,
    /// The star's reddening-map scale parameter.
    kappa_index: Option<usize>,
    off: &'a OffsetDesign,
    /// Its label source's weight.
    w: f64,
}

fn linearise(ctx: &LinContext, one: StarInput) -> Option<Linearised> {
    let LinContext {
        raw,
        cal_model,
        s,
        noise,
        cal_index,
        calib,
        ext_index,
    } = *ctx;
    let StarInput {
        star,
        st,
        prior,
        kappa_index,
        off,
        w,
    } = one;
    let used: Vec<usize> = (0..star.phot.len()).filter(|&i| !st.clipped[i]).collect();
    let n = used.len();
    if n < 3 {
        return None;
    }
    let bands: Vec<usize> = used.iter().map(|&i| star.phot[i].band as usize).collect();
    // linearisation point: the labels less the previous offsets (if inside the model)
    let mut at = star.labels;
    at[0] -= st.shift[0];
    at[1] -= st.shift[1];
    let shift = if raw.support(&theta(at, 0.0, s.rv, 0.0)) {
        st.shift
    } else {
        at = star.labels;
        [0.0, 0.0]
    };
    let t0 = theta(at, st.av0, s.rv, st.mu0);
    let mut m_raw = vec![0f32; n];
    raw.magnitudes(&t0, &bands, &mut m_raw).ok()?;
    let mut m_cal = vec![0f32; n];
    cal_model.magnitudes(&t0, &bands, &mut m_cal).ok()?;
    // raw extinction: the design of the extinction-scale parameters
    let mut a_raw = vec![0f32; n];
    raw.extinction(&t0, &bands, &mut a_raw);
    let mut g = vec![[0.0f64; 5]; n];
    for row in g.iter_mut() {
        row[0] = 1.0;
    }
    let mut plus = vec![0f32; n];
    let mut minus = vec![0f32; n];
    // A_V: forward difference (A_V >= 0 is always inside the model)
    let h = FD_STEPS[3];
    cal_model
        .magnitudes(
            &Theta {
                av: st.av0 + h,
                ..t0
            },
            &bands,
            &mut plus,
        )
        .ok()?;
    for (k, row) in g.iter_mut().enumerate() {
        row[1] = (plus[k] - m_cal[k]) as f64 / h;
    }
    // labels: central differences, one-sided at the edge of the support
    for a in 0..3 {
        let h = if a == 0 {
            FD_STEPS[0] * at[0]
        } else {
            FD_STEPS[a]
        };
        let mut lp = at;
        lp[a] += h;
        let mut lm = at;
        lm[a] -= h;
        let ok_p = cal_model
            .magnitudes(&theta(lp, st.av0, s.rv, st.mu0), &bands, &mut plus)
            .is_ok();
        let ok_m = cal_model
            .magnitudes(&theta(lm, st.av0, s.rv, st.mu0), &bands, &mut minus)
            .is_ok();
        for k in 0..n {
            g[k][2 + a] = match (ok_p, ok_m) {
                (true, true) => (plus[k] - minus[k]) as f64 / (2.0 * h),
                (true, false) => (plus[k] - m_cal[k]) as f64 / h,
                (false, true) => (m_cal[k] - minus[k]) as f64 / h,
                (false, false) => 0.0,
            };
        }
    }
    let (mu_p, sig_mu) = prior
        .mu(s.min_parallax_snr)
        .unwrap_or((st.mu0, FREE_MU_SIGMA));
    let lerr = |a: usize| star.label_err[a].hypot(s.label_err_floor[a]);
    let sd = [sig_mu, prior.av.1, lerr(0), lerr(1), lerr(2)];
    let mut var = sd.map(|x| x * x);
    // label prior mean label - offset, relative to `at` = label - shift: shift - offset;
    // the offset part is in the design (-dm/dlabel x basis)
    let mut du_prior = [mu_p - st.mu0, prior.av.0 - st.av0, shift[0], shift[1], 0.0];
    // an anchor star's Teff prior is the product of the label's, N(label - offset, var_L),
    // and the IRFM value's, N(T_irfm, var_I): mean k (label - offset) + (1 - k) T_irfm with
    // k = var_I / (var_L + var_I), variance k var_L (the remaining factor of the likelihood,
    // N(label - T_irfm; offset, var_L + var_I), is the anchor term of the normal equations)
    let mut k_teff = 1.0;
    if let Some(ir) = off.irfm {
        k_teff = ir.sigma.powi(2) / (var[2] + ir.sigma.powi(2));
        du_prior[2] -= (1.0 - k_teff) * (star.labels[0] - ir.teff);
        var[2] *= k_teff;
    }
    let mut r = vec![0.0; n];
    let mut c = vec![0.0; n * n];
    for k in 0..n {
        let m = &star.phot[used[k]];
        let f = noise.floor[m.band as usize] as f64;
        let gd: f64 = (0..5).map(|q| g[k][q] * du_prior[q]).sum();
        r[k] = m.mag as f64 - m_raw[k] as f64 - gd;
        for l in 0..n {
            let mut v: f64 = (0..5).map(|q| g[k][q] * var[q] * g[l][q]).sum();
            if k == l {
                v += (m.err as f64).powi(2) + f * f;
            }
            c[k * n + l] = v;
        }
    }
    let p = spd_inverse(&c, n)?;
    let err2 = used
        .iter()
        .map(|&i| (star.phot[i].err as f64).powi(2))
        .collect();
    let nt = calib.terms.len();
    let mut phi = Vec::with_capacity(nt);
    calib.basis(at[0].log10(), at[1], at[2], &mut phi);
    let kappa = kappa_index.map(|m| (m, prior.av.0));
    let av_map_var = match (kappa_index, star.ebv.1) {
        (Some(m), Some(se)) => Some((m, (s.av_per_ebv * se).powi(2))),
        _ => None,
    };
    let rows = bands
        .iter()
        .zip(&g)
        .zip(&a_raw)
        .map(|((&b, gk), &ab)| {
            let mut row: Vec<(usize, f64)> = match cal_index[b] {
                Some(k) => (0..nt).map(|t| (k * nt + t, phi[t])).collect(),
                None => Vec::new(),
            };
            if let Some((m, a_base)) = kappa {
                row.push((n_cal_params(cal_index, nt) + m, gk[1] * a_base));
            }
            if let Some(p) = ext_index[b] {
                row.push((p, ab as f64));
            }
            row.extend(off.teff.iter().map(|&(p, x)| (p, -gk[2] * k_teff * x)));
            row.extend(off.logg.iter().map(|&(p, x)| (p, -gk[3] * x)));
            row
        })
        .collect();
    Some(Linearised {
        used,
        rows,
        r,
        p,
        g,
        s: var,
        du_prior,
        kappa,
        band_ids: bands,
        err2,
        av_map_var,
        w,
    })
}

/// Number of correction coefficients (the map scales follow them in the parameter vector).
fn n_cal_params(cal_index: &[Option<usize>], nt: usize) -> usize {
    cal_index.iter().flatten().count() * nt
}

/// Design times parameters (corrections plus map-scale terms) of a linearised star.
fn predicted(lin: &Linearised, beta: &[f64]) -> Vec<f64> {
    lin.rows
        .iter()
        .map(|row| row.iter().map(|&(p, x)| x * beta[p]).sum())
        .collect()
}

/// Add one star's terms to the normal equations.
fn accumulate(lin: &Linearised, dim: usize, a: &mut [f64], b: &mut [f64]) {
    let n = lin.used.len();
    for i in 0..n {
        if lin.rows[i].is_empty() {
            continue;
        }
        let pr: f64 = (0..n).map(|j| lin.p[i * n + j] * lin.r[j]).sum::<f64>() * lin.w;
        for &(p, x) in &lin.rows[i] {
            b[p] += x * pr;
        }
        for j in 0..n {
            let c = lin.w * lin.p[i * n + j];
            if c == 0.0 || lin.rows[j].is_empty() {
                continue;
            }
            for &(p, xp) in &lin.rows[i] {
                let cx = c * xp;
                let arow = &mut a[p * dim..(p + 1) * dim];
                for &(q, xq) in &lin.rows[j] {
                    arow[q] += cx * xq;
                }
            }
        }
    }
}

/// Build a calibration from coefficients (fitted bands plus inherited siblings).
#[allow(clippy::too_many_arguments)]
fn assemble(
    fm: &ForwardModel,
    terms: &[[u8; 3]],
    frame: ([f64; 3], [f64; 3], [f64; 3], [f64; 3]),
    cal_bands: &[usize],
    band_counts: &[usize],
    beta: &[f64],
    ext_index: &[Option<usize>],
    floor2: Option<&[f64]>,
    inherit: bool,
) -> Calibration {
    let nt = terms.len();
    let mut bands: Vec<BandCorrection> = cal_bands
        .iter()
        .enumerate()
        .map(|(k, &b)| BandCorrection {
            band: fm.bands().name(b).to_string(),
            coef: beta[k * nt..(k + 1) * nt].to_vec(),
            origin: "fitted".into(),
            n_stars: band_counts[k],
            ext_kappa: ext_index[b].map_or(0.0, |p| beta[p]),
            floor: floor2.map(|f| f[b].sqrt()),
        })
        .collect();
    if inherit {
        for (child, parent) in INHERITANCE {
            if fm.bands().id(child).is_err() || bands.iter().any(|b| b.band == child) {
                continue;
            }
            if let Some(p) = bands.iter().find(|b| b.band == parent).cloned() {
                bands.push(BandCorrection {
                    band: child.to_string(),
                    coef: p.coef,
                    origin: format!("inherited from {parent}"),
                    n_stars: 0,
                    ext_kappa: p.ext_kappa,
                    floor: p.floor,
                });
            }
        }
    }
    let (center, scale, lo, hi) = frame;
    let mut bytes = Vec::new();
    for b in &bands {
        bytes.extend(b.band.as_bytes());
        for c in &b.coef {
            bytes.extend(c.to_le_bytes());
        }
        if b.ext_kappa != 0.0 {
            bytes.extend(b.ext_kappa.to_le_bytes());
        }
    }
    let id = format!("cal-{:08x}", super::data::fnv1a64(&bytes) as u32);
    Calibration::new(
        id,
        terms.to_vec(),
        center,
        scale,
        lo,
        hi,
        bands,
        serde_json::Value::Null,
    )
}

/// Rebuild a linearised star's C^-1 and A_V prior variance for new variance components:
/// total floor^2 per registry band id, A_V prior floor^2, error-scale^2 per map.
fn revarianced(lin: &mut Linearised, floor2: &[f64], av_floor2: f64, scale2: &[f64]) -> bool {
    if let Some((m, v)) = lin.av_map_var {
        lin.s[1] = scale2[m] * v + av_floor2;
    }
    let n = lin.used.len();
    let mut c = vec![0.0; n * n];
    for k in 0..n {
        for l in 0..n {
            let mut v: f64 = (0..5).map(|q| lin.g[k][q] * lin.s[q] * lin.g[l][q]).sum();
            if k == l {
                v += lin.err2[k] + floor2[lin.band_ids[k]];
            }
            c[k * n + l] = v;
        }
    }
    match spd_inverse(&c, n) {
        Some(p) => {
            lin.p = p;
            true
        }
        None => false,
    }
}

/// Maximum-marginal-likelihood estimate of the variance components at fixed coefficients
/// `beta`, by Fisher scoring: the floor^2 of each fitted band (`floor2`, per registry band
/// id; entries of bands not in `cal_index` stay) and the error-scale^2 of each map
/// (`scale2`). Each step rebuilds every star's C^-1; lower bounds are enforced by clamping.
/// Sums run in fixed chunks combined in order (independent of the number of threads).
#[allow(clippy::too_many_arguments)]
fn variance_components(
    lins: &mut [Option<Linearised>],
    beta: &[f64],
    cal_index: &[Option<usize>],
    floor2: &mut [f64],
    scale2: &mut [f64],
    s: &CalibSettings,
) {
    let nk = cal_index.iter().flatten().count();
    let nm = scale2.len();
    let dim = nk + nm;
    let av_floor2 = s.av_sigma_floor * s.av_sigma_floor;
    for _ in 0..s.variance_steps {
        let partial: Vec<(Vec<f64>, Vec<f64>)> = lins
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut f = vec![0.0; dim * dim];
                let mut g = vec![0.0; dim];
                for lin in chunk.iter().flatten() {
                    let n = lin.used.len();
                    let pred = predicted(lin, beta);
                    let e: Vec<f64> = lin.r.iter().zip(&pred).map(|(r, p)| r - p).collect();
                    let pe: Vec<f64> = (0..n)
                        .map(|i| (0..n).map(|j| lin.p[i * n + j] * e[j]).sum())
                        .collect();
                    let idx: Vec<Option<usize>> =
                        lin.band_ids.iter().map(|&b| cal_index[b]).collect();
                    // derivative of C wrt the map's scale^2: a a^T with a = g_AV sqrt(v)
                    let map = lin.av_map_var.map(|(m, v)| {
                        let a: Vec<f64> = (0..n).map(|k| lin.g[k][1] * v.sqrt()).collect();
                        let pa: Vec<f64> = (0..n)
                            .map(|i| (0..n).map(|j| lin.p[i * n + j] * a[j]).sum())
                            .collect();
                        let apa: f64 = a.iter().zip(&pa).map(|(x, y)| x * y).sum();
                        let ape: f64 = a.iter().zip(&pe).map(|(x, y)| x * y).sum();
                        (nk + m, pa, apa, ape)
                    });
                    let w = lin.w;
                    for i in 0..n {
                        let Some(ki) = idx[i] else { continue };
                        g[ki] += 0.5 * w * (pe[i] * pe[i] - lin.p[i * n + i]);
                        for j in 0..n {
                            if let Some(kj) = idx[j] {
                                f[ki * dim + kj] += 0.5 * w * lin.p[i * n + j].powi(2);
                            }
                        }
                        if let Some((q, pa, _, _)) = &map {
                            let x = 0.5 * w * pa[i] * pa[i];
                            f[ki * dim + q] += x;
                            f[q * dim + ki] += x;
                        }
                    }
                    if let Some((q, _, apa, ape)) = map {
                        g[q] += 0.5 * w * (ape * ape - apa);
                        f[q * dim + q] += 0.5 * w * apa * apa;
                    }
                }
                (f, g)
            })
            .collect();
        let mut f = vec![0.0; dim * dim];
        let mut g = vec![0.0; dim];
        for (pf, pg) in &partial {
            for (x, y) in f.iter_mut().zip(pf) {
                *x += y;
            }
            for (x, y) in g.iter_mut().zip(pg) {
                *x += y;
            }
        }
        // parameters without information (e.g. a map no used star has) keep their value
        for i in 0..dim {
            if f[i * dim + i] <= 0.0 {
                for j in 0..dim {
                    f[i * dim + j] = 0.0;
                    f[j * dim + i] = 0.0;
                }
                f[i * dim + i] = 1.0;
                g[i] = 0.0;
            }
        }
        if !cholesky(&mut f, dim) {
            return;
        }
        cholesky_solve(&f, dim, &mut g);
        for (b, k) in cal_index.iter().enumerate() {
            if let Some(k) = k {
                floor2[b] = (floor2[b] + g[*k]).max(s.floor_min * s.floor_min);
            }
        }
        let smin2 = s.map_error_scale_min * s.map_error_scale_min;
        for (m, x) in scale2.iter_mut().enumerate() {
            *x = (*x + g[nk + m]).max(smin2);
        }
        let (f2, s2) = (&*floor2, &*scale2);
        lins.par_iter_mut().for_each(|lin| {
            if let Some(l) = lin {
                if !revarianced(l, f2, av_floor2, s2) {
                    *lin = None;
                }
            }
        });
    }
}

/// Fit the corrections on `stars` with the raw model `raw`.
pub fn fit(
    raw: &ForwardModel,
    stars: &[LabelledStar],
    s: &CalibSettings,
    noise: &NoiseModel,
) -> Result<FitOutcome> {
    if raw.calibration().is_some() {
        bail!("the calibration must be fitted against the raw model (without a calibration)");
    }
    let inside: Vec<&LabelledStar> = stars.iter().filter(|st| labels_in_model(raw, st)).collect();
    let n_outside_model = stars.len() - inside.len();
    if inside.len() < 10 {
        bail!(
            "only {} of {} stars have labels inside the model; cannot fit",
            inside.len(),
            stars.len()
        );
    }
    let terms = s.terms();
    let nt = terms.len();
    let frame = basis_frame(&inside, s);
    let (cal_bands, band_counts) = calibrated_bands(raw, &inside, s)?;
    let mut cal_index = vec![None; raw.bands().len()];
    for (k, &b) in cal_bands.iter().enumerate() {
        cal_index[b] = Some(k);
    }
    let maps = fitted_maps(&inside);
    let n_coef = cal_bands.len() * nt;
    let (ext_index, n_ext) = extinction_scales(raw, &cal_bands, s, n_coef + maps.len());
    let off_base = n_coef + maps.len() + n_ext;
    let template = offsets_template(&inside, s, frame);
    let designs = offset_designs(raw, &inside, s, template.as_ref(), off_base);
    let dim = off_base + template.as_ref().map_or(0, n_offset_params);
    let weights = source_weights(&inside, s.max_source_share);
    let star_w: Vec<f64> = inside
        .iter()
        .map(|st| {
            weights
                .iter()
                .find(|w| w.0 == st.label_source)
                .map(|w| w.2)
                .unwrap_or(1.0)
        })
        .collect();
    // variance components: floor^2 per registry band, error scale^2 per map
    let mut floor2: Vec<f64> = noise.floor.iter().map(|&f| (f as f64).powi(2)).collect();
    let mut scale2: Vec<f64> = vec![1.0; maps.len()];
    let kappa_index: Vec<Option<usize>> = inside
        .iter()
        .map(|st| {
            if st.ebv.0.is_some() && st.ebv.1.is_some() {
                maps.iter().position(|m| *m == st.ebv_source)
            } else {
                None
            }
        })
        .collect();
    let mut states: Vec<StarState> = inside
        .par_iter()
        .map(|st| initial_state(raw, st, s))
        .collect();
    let mut beta = vec![0.0; dim];
    let mut n_rejected_stars = 0;
    let mut chi2_per_band = f64::NAN;
    let mut n_used = 0;
    for iter in 0..s.iterations {
        // priors at unit map scale (the scales enter the design), current map error scales
        let err_scales: Vec<(String, f64)> = maps
            .iter()
            .zip(&scale2)
            .map(|(m, x)| (m.clone(), x.sqrt()))
            .collect();
        let priors: Vec<NuisancePrior> = inside
            .iter()
            .map(|st| NuisancePrior::with_map_errors(st, s, &[], &err_scales))
            .collect();
        let cur_noise = NoiseModel {
            floor: floor2.iter().map(|f| f.sqrt() as f32).collect(),
        };
        let noise = &cur_noise;
        let calib = assemble(
            raw,
            &terms,
            frame,
            &cal_bands,
            &band_counts,
            &beta,
            &ext_index,
            None,
            false,
        );
        let cal_model = raw.with_calibration(Some(calib.clone()))?;
        let ctx = LinContext {
            raw,
            cal_model: &cal_model,
            s,
            noise,
            cal_index: &cal_index,
            calib: &calib,
            ext_index: &ext_index,
        };
        let mut lins: Vec<Option<Linearised>> = inside
            .par_iter()
            .zip(&states)
            .zip(&priors)
            .zip(&star_w)
            .zip(&kappa_index)
            .zip(&designs)
            .map(|(((((star, st), prior), &w), &kappa_index), off)| {
                if !st.active {
                    return None;
                }
                let one = StarInput {
                    star,
                    st,
                    prior,
                    kappa_index,
                    off,
                    w,
                };
                linearise(&ctx, one)
            })
            .collect();
        // variance components at the previous coefficients (not against the raw model)
        if iter > 0 && s.variance_steps > 0 {
            variance_components(&mut lins, &beta, &cal_index, &mut floor2, &mut scale2, s);
        }
        let (mut a, mut b) = normal_equations(&lins, dim);
        for k in 0..cal_bands.len() {
            for (t, e) in terms.iter().enumerate() {
                let sig = if *e == [0, 0, 0] {
                    s.ridge_sigma_const
                } else {
                    s.ridge_sigma
                };
                let i = k * nt + t;
                a[i * dim + i] += 1.0 / (sig * sig);
            }
        }
        add_sun_anchor(raw, &calib, &cal_index, s, dim, &mut a, &mut b);
        for m in 0..maps.len() {
            let i = n_coef + m;
            a[i * dim + i] += 1.0 / (s.map_scale_sigma * s.map_scale_sigma);
        }
        for p in ext_index.iter().flatten() {
            a[p * dim + p] += 1.0 / (s.ext_scale_sigma * s.ext_scale_sigma);
        }
        if let Some(t) = &template {
            add_offset_priors(t, s, off_base, dim, &mut a);
            let active: Vec<bool> = states.iter().map(|st| st.active).collect();
            add_anchor_term(&inside, &designs, &star_w, &active, s, dim, &mut a, &mut b);
        }
        if !cholesky(&mut a, dim) {
            bail!("calibration normal equations are not positive definite (iteration {iter})");
        }
        cholesky_solve(&a, dim, &mut b);
        beta = b;
        // update each star: posterior (mu, A_V), outliers
        let updates: Vec<(StarState, f64, usize, bool)> = lins
            .par_iter()
            .zip(&states)
            .map(|(lin, state)| update_star(lin.as_ref(), state, &beta, n_coef, (iter, s)))
            .collect();
        let mut chi2_sum = 0.0;
        let mut n_sum = 0;
        n_used = 0;
        for (i, (st, chi2, n, rejected)) in updates.into_iter().enumerate() {
            if rejected && st.active != states[i].active {
                n_rejected_stars += 1;
            }
            if n > 0 {
                chi2_sum += chi2;
                n_sum += n;
                n_used += 1;
            }
            states[i] = st;
            states[i].shift = designs[i].eval(&beta);
        }
        chi2_per_band = chi2_sum / n_sum.max(1) as f64;
    }
    let n_clipped_measurements = states
        .iter()
        .map(|s| s.clipped.iter().filter(|&&c| c).count())
        .sum();
    let calibration = assemble(
        raw,
        &terms,
        frame,
        &cal_bands,
        &band_counts,
        &beta,
        &ext_index,
        (s.variance_steps > 0).then_some(&floor2[..]),
        true,
    );
    let offsets = template.map(|t| fitted_offsets(t, &beta, off_base));
    let anchor = offsets
        .as_ref()
        .map(|o| anchor_stats(&inside, &designs, &states, o))
        .unwrap_or_default();
    Ok(FitOutcome {
        calibration,
        offsets: offsets.clone(),
        stats: FitStats {
            label_offsets: offsets,
            anchor,
            n_input: stars.len(),
            n_outside_model,
            n_rejected_stars,
            n_clipped_measurements,
            n_used,
            source_weights: weights,
            chi2_per_band,
            map_scales: maps
                .iter()
                .enumerate()
                .map(|(m, name)| (name.clone(), beta[n_coef + m]))
                .collect(),
            map_error_scales: maps
                .iter()
                .take(if s.variance_steps > 0 { maps.len() } else { 0 })
                .zip(&scale2)
                .map(|(m, x)| (m.clone(), x.sqrt()))
                .collect(),
            ext_scales: cal_bands
                .iter()
                .filter_map(|&b| ext_index[b].map(|p| (raw.bands().name(b).to_string(), beta[p])))
                .collect(),
            floors: cal_bands
                .iter()
                .take(if s.variance_steps > 0 {
                    cal_bands.len()
                } else {
                    0
                })
                .map(|&b| (raw.bands().name(b).to_string(), floor2[b].sqrt()))
                .collect(),
        },
    })
}

/// The bands with at least `min_stars_per_band` stars, in registry order, and their star
/// counts.
fn calibrated_bands(
    raw: &ForwardModel,
    inside: &[&LabelledStar],
    s: &CalibSettings,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut counts = vec![0usize; raw.bands().len()];
    for st in inside {
        for m in &st.phot {
            counts[m.band as usize] += 1;
        }
    }
    let cal_bands: Vec<usize> = (0..counts.len())
        .filter(|&b| counts[b] >= s.min_stars_per_band)
        .collect();
    if cal_bands.is_empty() {
        bail!(
            "no band has {} or more stars with labels inside the model",
            s.min_stars_per_band
        );
    }
    let band_counts = cal_bands.iter().map(|&b| counts[b]).collect();
    Ok((cal_bands, band_counts))
}

/// Reddening maps whose scale is fitted: those giving a prior value to some star, sorted.
fn fitted_maps(inside: &[&LabelledStar]) -> Vec<String> {
    let mut maps: Vec<String> = inside
        .iter()
        .filter(|st| st.ebv.0.is_some() && st.ebv.1.is_some())
        .map(|st| st.ebv_source.clone())
        .collect();
    maps.sort();
    maps.dedup();
    maps
}

/// Extinction-scale parameters (numbered from `first`) of every corrected band but the
/// anchor (the common scale is A_V's), per registry band, and their number.
fn extinction_scales(
    raw: &ForwardModel,
    cal_bands: &[usize],
    s: &CalibSettings,
    first: usize,
) -> (Vec<Option<usize>>, usize) {
    let mut ext_index = vec![None; raw.bands().len()];
    let mut n_ext = 0;
    if s.ext_scale_sigma > 0.0 {
        for &b in cal_bands {
            if raw.bands().name(b) != s.ext_scale_anchor {
                ext_index[b] = Some(first + n_ext);
                n_ext += 1;
            }
        }
    }
    (ext_index, n_ext)
}

/// A star's starting point: A_V at its prior mean, mu the median of observed minus model
/// magnitudes at its labels (inactive where the model has no magnitudes there).
fn initial_state(raw: &ForwardModel, st: &LabelledStar, s: &CalibSettings) -> StarState {
    let av0 = NuisancePrior::of(st, s, &[]).av.0.max(0.0);
    let bands: Vec<usize> = st.phot.iter().map(|m| m.band as usize).collect();
    let mut m = vec![0f32; bands.len()];
    let ok = raw
        .magnitudes(&theta(st.labels, av0, s.rv, 0.0), &bands, &mut m)
        .is_ok();
    let mut d: Vec<f64> = st
        .phot
        .iter()
        .zip(&m)
        .map(|(o, p)| o.mag as f64 - *p as f64)
        .collect();
    d.sort_by(|a, b| a.total_cmp(b));
    StarState {
        av0,
        mu0: if ok { d[d.len() / 2] } else { 0.0 },
        shift: [0.0, 0.0],
        clipped: vec![false; st.phot.len()],
        active: ok,
    }
}

/// The stars' normal equations (A, b) of dimension `dim`, summed in fixed chunks combined
/// in order (the sum does not depend on the thread count).
fn normal_equations(lins: &[Option<Linearised>], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let partial: Vec<(Vec<f64>, Vec<f64>)> = lins
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut a = vec![0.0; dim * dim];
            let mut b = vec![0.0; dim];
            for lin in chunk.iter().flatten() {
                accumulate(lin, dim, &mut a, &mut b);
            }
            (a, b)
        })
        .collect();
    let mut a = vec![0.0; dim * dim];
    let mut b = vec![0.0; dim];
    for (pa, pb) in &partial {
        for (x, y) in a.iter_mut().zip(pa) {
            *x += y;
        }
        for (x, y) in b.iter_mut().zip(pb) {
            *x += y;
        }
    }
    (a, b)
}

/// One star after an iteration's solve `beta`: its posterior (mu, A_V) update, whether it
/// is rejected (chi^2 per band too high) and its worst band clipped. Returns the new state,
/// its chi^2, its number of bands and whether it was rejected now.
fn update_star(
    lin: Option<&Linearised>,
    state: &StarState,
    beta: &[f64],
    n_coef: usize,
    (iter, s): (usize, &CalibSettings),
) -> (StarState, f64, usize, bool) {
    let last = iter + 1 == s.iterations;
    let mut st = state.clone();
    let Some(lin) = lin else {
        let was = st.active;
        st.active = false;
        return (st, 0.0, 0, was);
    };
    let n = lin.used.len();
    let pred = predicted(lin, beta);
    let e: Vec<f64> = lin.r.iter().zip(&pred).map(|(r, p)| r - p).collect();
    let v: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| lin.p[i * n + j] * e[j]).sum())
        .collect();
    let chi2: f64 = e.iter().zip(&v).map(|(a, b)| a * b).sum();
    let mut du = lin.du_prior;
    if let Some((m, a_base)) = lin.kappa {
        du[1] += beta[n_coef + m] * a_base;
    }
    for (q, d) in du.iter_mut().enumerate() {
        *d += lin.s[q] * (0..n).map(|k| lin.g[k][q] * v[k]).sum::<f64>();
    }
    st.mu0 += du[0];
    st.av0 = (st.av0 + du[1]).max(0.0);
    // no outlier decisions against the raw model (iteration 0): its systematics
    // are what the fit is for
    if iter > 0 && !last {
        if chi2 / n as f64 > MAX_STAR_CHI2_PER_BAND {
            st.active = false;
            return (st, chi2, n, true);
        }
        // the worst band only: one outlier inflates the others' residuals
        let (worst, z) = (0..n)
            .map(|i| (i, (v[i] / lin.p[i * n + i].sqrt()).abs()))
            .fold((0, 0.0), |acc, x| if x.1 > acc.1 { x } else { acc });
        if z > s.clip_sigma {
            st.clipped[lin.used[worst]] = true;
        }
    }
    (st, chi2, n, false)
}

/// The offsets' structure (coefficients zero) if modelled: sources of the training stars,
/// the Teff-offset terms and the (log10 Teff, log g) frame of the corrections.
fn offsets_template(
    stars: &[&LabelledStar],
    s: &CalibSettings,
    frame: ([f64; 3], [f64; 3], [f64; 3], [f64; 3]),
) -> Option<LabelOffsets> {
    if !s.label_offsets {
        return None;
    }
    let mut sources: Vec<String> = stars.iter().map(|st| st.label_source.clone()).collect();
    sources.sort();
    sources.dedup();
    let teff_terms = LabelOffsets::terms(s.label_offset_degree);
    let with_logg = s.label_offset_sigma[2] > 0.0;
    let two = |v: [f64; 3]| [v[0], v[1]];
    Some(LabelOffsets {
        teff_coef: vec![vec![0.0; teff_terms.len()]; sources.len()],
        logg_coef: if with_logg {
            vec![vec![0.0; 1 + s.label_offset_logg_degree as usize]; sources.len()]
        } else {
            Vec::new()
        },
        sources,
        teff_terms,
        center: two(frame.0),
        scale: two(frame.1),
        lo: two(frame.2),
        hi: two(frame.3),
        dwarf_ramp: s.dwarf_ramp,
    })
}

/// Offset parameters per source (Teff terms, then the dwarf log g term if modelled).
fn per_source(t: &LabelOffsets) -> usize {
    t.teff_terms.len() + t.logg_coef.first().map_or(0, |c| c.len())
}

fn n_offset_params(t: &LabelOffsets) -> usize {
    t.sources.len() * per_source(t)
}

/// Each star's offset design (parameter indices from `base`) and IRFM anchor value.
fn offset_designs(
    fm: &ForwardModel,
    stars: &[&LabelledStar],
    s: &CalibSettings,
    t: Option<&LabelOffsets>,
    base: usize,
) -> Vec<OffsetDesign> {
    let Some(t) = t else {
        return vec![OffsetDesign::default(); stars.len()];
    };
    let ir = IrfmSettings {
        max_ebv: s.irfm_max_ebv,
        sigma_relation: s.irfm_sigma_relation,
    };
    let nt = t.teff_terms.len();
    stars
        .iter()
        .map(|st| {
            let src = t
                .sources
                .iter()
                .position(|x| *x == st.label_source)
                .unwrap();
            let p0 = base + src * per_source(t);
            OffsetDesign {
                teff: t
                    .teff_basis(st.labels)
                    .into_iter()
                    .enumerate()
                    .map(|(k, x)| (p0 + k, x))
                    .collect(),
                logg: t
                    .logg_basis(st.labels)
                    .into_iter()
                    .enumerate()
                    .map(|(k, x)| (p0 + nt + k, x))
                    .collect(),
                irfm: (s.irfm_max_ebv > 0.0)
                    .then(|| irfm_teff(fm, st, &ir))
                    .flatten(),
            }
        })
        .collect()
}

/// Ridge priors of the offset coefficients.
fn add_offset_priors(t: &LabelOffsets, s: &CalibSettings, base: usize, dim: usize, a: &mut [f64]) {
    for src in 0..t.sources.len() {
        let p0 = base + src * per_source(t);
        for (k, e) in t.teff_terms.iter().enumerate() {
            let sig = if *e == [0, 0] {
                s.label_offset_sigma[0]
            } else {
                s.label_offset_sigma[1]
            };
            a[(p0 + k) * (dim + 1)] += 1.0 / (sig * sig);
        }
        let nl = t.logg_coef.first().map_or(0, |c| c.len());
        for k in 0..nl {
            let p = p0 + t.teff_terms.len() + k;
            a[p * (dim + 1)] += 1.0 / s.label_offset_sigma[2].powi(2);
        }
    }
}

/// The IRFM anchor: label Teff - IRFM Teff ~ N(offset, var_label + var_irfm) for every
/// active anchor star, weighted as its source.
#[allow(clippy::too_many_arguments)]
fn add_anchor_term(
    stars: &[&LabelledStar],
    designs: &[OffsetDesign],
    w: &[f64],
    active: &[bool],
    s: &CalibSettings,
    dim: usize,
    a: &mut [f64],
    b: &mut [f64],
) {
    for i in 0..stars.len() {
        let Some(ir) = designs[i].irfm.filter(|_| active[i]) else {
            continue;
        };
        let st = stars[i];
        let var = st.label_err[0].hypot(s.label_err_floor[0]).powi(2) + ir.sigma.powi(2);
        let y = st.labels[0] - ir.teff;
        let d = &designs[i].teff;
        for &(p, xp) in d {
            b[p] += w[i] * xp * y / var;
            for &(q, xq) in d {
                a[p * dim + q] += w[i] * xp * xq / var;
            }
        }
    }
}

/// The offsets with the fitted coefficients.
fn fitted_offsets(mut t: LabelOffsets, beta: &[f64], base: usize) -> LabelOffsets {
    let (ps, nt) = (per_source(&t), t.teff_terms.len());
    for src in 0..t.sources.len() {
        let p0 = base + src * ps;
        t.teff_coef[src] = beta[p0..p0 + nt].to_vec();
        if let Some(c) = t.logg_coef.get_mut(src) {
            let nl = c.len();
            *c = beta[p0 + nt..p0 + nt + nl].to_vec();
        }
    }
    t
}

/// Per source: the anchor stars' label - IRFM and anchored - IRFM Teff.
fn anchor_stats(
    stars: &[&LabelledStar],
    designs: &[OffsetDesign],
    states: &[StarState],
    o: &LabelOffsets,
) -> Vec<AnchorStat> {
    use crate::util::stats::{median, robust_scatter};
    o.sources
        .iter()
        .map(|src| {
            let (mut d, mut da, mut t) = (Vec::new(), Vec::new(), Vec::new());
            for ((st, de), state) in stars.iter().zip(designs).zip(states) {
                let Some(ir) = de.irfm.filter(|_| state.active && st.label_source == *src) else {
                    continue;
                };
                d.push(st.labels[0] - ir.teff);
                da.push(st.labels[0] - o.offset(st)[0] - ir.teff);
                t.push(st.labels[0]);
            }
            let f = |v: &[f64], g: fn(&[f64]) -> f64| if v.is_empty() { f64::NAN } else { g(v) };
            AnchorStat {
                source: src.clone(),
                n: d.len(),
                median_label_minus_irfm: f(&d, median),
                median_anchored_minus_irfm: f(&da, median),
                scatter: f(&d, robust_scatter),
                median_teff: f(&t, median),
            }
        })
        .collect()
}

/// Solar anchor: (raw M_b + delta_b(Sun) - reference M_b)^2 / sigma^2 for G (DR2) and Ks,
/// which is linear in the band's coefficients.
fn add_sun_anchor(
    raw: &ForwardModel,
    calib: &Calibration,
    cal_index: &[Option<usize>],
    s: &CalibSettings,
    dim: usize,
    a: &mut [f64],
    b: &mut [f64],
) {
    use super::standards::{model_values, SUN, SUN_REFERENCE};
    if s.sun_anchor_sigma <= 0.0 {
        return;
    }
    let Some(m) = model_values(raw, SUN.0, SUN.1, "dr2") else {
        return;
    };
    let nt = calib.terms.len();
    let mut phi = Vec::with_capacity(nt);
    calib.basis(SUN.0.log10(), SUN.1, 0.0, &mut phi);
    let iv = 1.0 / (s.sun_anchor_sigma * s.sun_anchor_sigma);
    for (band, q) in [("gaia_dr2_g", 1), ("tmass_ks", 2)] {
        let Some(k) = raw.bands().id(band).ok().and_then(|id| cal_index[id]) else {
            continue;
        };
        let y = SUN_REFERENCE[q] - m[q];
        for t in 0..nt {
            b[k * nt + t] += iv * phi[t] * y;
            for t2 in 0..nt {
                a[(k * nt + t) * dim + k * nt + t2] += iv * phi[t] * phi[t2];
            }
        }
    }
}
