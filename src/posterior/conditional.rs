//! Distance and extinction in closed form (part of step 3, infer): given the intrinsic
//! parameters y = (log10 Teff, log g, [M/H], R_V), the magnitudes are linear in the
//! distance modulus and nearly linear in A_V,
//!
//!   m_b = M_b(y) + 5 log10 d - 5 + A_V k_b(y),
//!
//! so the photometric likelihood in z = (A_V, log10 d) is close to a 2-D Gaussian, and
//! weighted least squares gives it exactly for the linearised model (brutus fits distance
//! and extinction at each grid point the same way). The parallax (linearised in log10 d
//! by two Gauss-Newton steps) and a broad Gaussian regulariser ([`ExtrinsicPrior`]: the
//! prior's first two moments, or the star's 3-D dust-map value) are folded in, so that z
//! stays proper when the photometry does not determine it (one band, no parallax).
//!
//! [`Conditional`] is that Gaussian, truncated to 0 <= A_V <= A_V,max: a proposal for z
//! given y with an exact, normalised density. Importance weights against the exact target
//! correct what the linear model leaves out (the curvature of A_b in A_V, the parallax's
//! nonlinearity, the true distance and A_V priors). [`linear_marginal`] is the closed-form
//! Gaussian integral of the linearised likelihood times the regulariser over z: the
//! marginal likelihood of y.
//!
//! A_b(A_V) is slightly curved. One pass over the forward model's tables gives M_b and A_b
//! at two reference extinctions a1 and a2 = a1 + 1 mag (`ForwardModel::split_many_two`).
//! The conditional is solved first on the chord k_b = A_b(a1) / a1 (exact at 0 and a1).
//! Where that solution lies beyond a1, i.e. where the chord extrapolates, it is solved
//! again on the tangent, at that solution's A_V, of the quadratic through A_b(0) = 0,
//! A_b(a1) and A_b(a2) (kept if its own solution stays beyond a1). A star whose mode is
//! unreddened (a1 small) may still have a hot, reddened solution at A_V ~ 2 on its
//! temperature-extinction ridge: the chord from the mode alone misplaces (A_V, d) there by
//! several photometric errors, and that part of the posterior then gets almost no samples.
//! Below a1 the chord stays: there it interpolates, and a quadratic fitted far above it
//! (a1 from a wrong, reddened first mode) measured worse. Every step is a deterministic
//! function of y, so the density stays exact.

use super::modes::{likely_logg, profile_peaks};
use super::target::StarTarget;
use crate::likelihood::PreparedStar;
use crate::physics::Theta;
use crate::prior::reddening::{AvPrior, ReddeningKind};
use crate::prior::StarPrior;
use crate::util::rng::Rng;
use crate::util::special::{norm_cdf, norm_ppf};
use std::f64::consts::{LN_10, PI};

/// Indices in s (`coords::s_of`) of the intrinsic coordinates y.
pub const INTRINSIC: [usize; 4] = [0, 1, 2, 4];
/// Index of A_V in s.
pub const AV: usize = 3;
/// Index of log10 d in s.
pub const LOG_D: usize = 5;
/// Dimension of y.
pub const NY: usize = 4;

/// The conditional mean of A_V is kept within this many of its standard deviations of the
/// allowed range [0, A_V,max], so that the truncated normal keeps at least Phi(-3) of its
/// mass (a deterministic function of y, hence still an exact proposal).
const MEAN_CLAMP_SD: f64 = 3.0;
/// Ridge peaks whose profile is below v's by more than this (log) are not searched: a
/// mode that light would be dropped anyway (`engine`'s MIN_MODE_MASS is e^-6.9), and the
/// profile's linearisation is good to a few nats.
const RIDGE_MIN_LOG_RATIO: f64 = 30.0;
/// The second reference extinction lies this far above the first \[mag\] (below it near
/// A_V,max): the quadratic then spans the range where reddened solutions usually lie.
const SECOND_REFERENCE_STEP: f64 = 1.0;
/// Gauss-Newton steps of the parallax's linearisation.
const PARALLAX_STEPS: usize = 2;

/// A broad Gaussian on z = (A_V, log10 d) that keeps the conditional proper where the data
/// leave z undetermined (the prior's mean and standard deviation per coordinate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExtrinsicPrior {
    /// Mean and standard deviation of A_V \[mag\].
    pub av: (f64, f64),
    /// Mean and standard deviation of log10 d \[dex\].
    pub log_d: (f64, f64),
    /// Largest A_V of the prior \[mag\].
    pub av_max: f64,
    /// Support of log10 d.
    pub log_d_range: (f64, f64),
}

impl ExtrinsicPrior {
    /// The regulariser of a star: the population's moments, with a 3-D map's A_V
    /// measurement in place of the A_V moments when the star has one.
    pub fn for_star(prior: &StarPrior) -> ExtrinsicPrior {
        let m = prior.base.extrinsic_moments();
        let cfg = &prior.base.config;
        let av = match prior.av {
            AvPrior::Map {
                kind: ReddeningKind::AtDistance,
                centre,
                sigma,
                ..
            } if sigma < m.av.1 => (centre, sigma),
            _ => m.av,
        };
        ExtrinsicPrior {
            av,
            log_d: m.log_d,
            av_max: cfg.av_max,
            log_d_range: (cfg.distance_min_pc.log10(), cfg.distance_max_pc.log10()),
        }
    }

    /// Normal equations of the regulariser alone (precision, precision x mean).
    fn normal_equations(&self) -> ([[f64; 2]; 2], [f64; 2]) {
        let pa = 1.0 / (self.av.1 * self.av.1);
        let pd = 1.0 / (self.log_d.1 * self.log_d.1);
        ([[pa, 0.0], [0.0, pd]], [pa * self.av.0, pd * self.log_d.0])
    }
}

/// A y's magnitudes split for the conditional (`ForwardModel::split_many_two`): M_b, and
/// A_b at the two reference extinctions, in the star's bands.
#[derive(Clone, Copy, Debug)]
pub struct SplitRows<'a> {
    /// Absolute magnitudes (10 pc, no extinction).
    pub abs: &'a [f32],
    /// A_b at A_V = a1.
    pub ext: &'a [f32],
    /// A_b at A_V = a2.
    pub ext2: &'a [f32],
}

/// The reference extinctions at which a star's y are split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExtinctionRefs {
    /// The chord's end (and the A_V of `split_theta`).
    pub a1: f64,
    /// The second point of the quadratic.
    pub a2: f64,
}

impl<'a> SplitRows<'a> {
    /// Row `k` of row-major `[n][nb]` split buffers.
    pub fn row(abs: &'a [f32], ext: &'a [f32], ext2: &'a [f32], k: usize, nb: usize) -> Self {
        let r = k * nb..(k + 1) * nb;
        SplitRows {
            abs: &abs[r.clone()],
            ext: &ext[r.clone()],
            ext2: &ext2[r],
        }
    }
}

/// Split magnitudes of a batch of points (`split_theta` of each y at a1), with buffers
/// reused from batch to batch: one forward-model pass gives every point's `SplitRows`.
#[derive(Default)]
pub struct SplitBatch {
    /// The points to split; the caller fills them before `split`.
    pub at: Vec<Theta>,
    abs: Vec<f32>,
    ext: Vec<f32>,
    ext2: Vec<f32>,
    bands: usize,
}

impl SplitBatch {
    /// Split every point of `at` in the star's bands at both references.
    pub fn split(&mut self, target: &StarTarget, refs: &ExtinctionRefs) {
        let bands = &target.prep.bands;
        self.bands = bands.len();
        let n = self.at.len() * bands.len();
        self.abs.resize(n, 0.0);
        self.ext.resize(n, 0.0);
        self.ext2.resize(n, 0.0);
        target.fm.split_many_two(
            &self.at,
            bands,
            (&mut self.abs, &mut self.ext),
            (refs.a2, &mut self.ext2),
        );
    }

    /// Point `k`'s split magnitudes.
    pub fn rows(&self, k: usize) -> SplitRows<'_> {
        SplitRows::row(&self.abs, &self.ext, &self.ext2, k, self.bands)
    }

    /// The conditional of (A_V, log10 d) at point `k` (None where it is undefined).
    pub fn conditional(
        &self,
        target: &StarTarget,
        refs: &ExtinctionRefs,
        reg: &ExtrinsicPrior,
        k: usize,
    ) -> Option<Conditional> {
        Conditional::new(target.prep, self.rows(k), refs, reg)
    }
}

impl ExtinctionRefs {
    /// References a1 > 0 and a second point SECOND_REFERENCE_STEP above it (half of it
    /// where that would pass A_V,max).
    pub fn new(a1: f64, av_max: f64) -> ExtinctionRefs {
        let a2 = if a1 + SECOND_REFERENCE_STEP <= av_max {
            a1 + SECOND_REFERENCE_STEP
        } else {
            0.5 * a1
        };
        ExtinctionRefs { a1, a2 }
    }

    /// A band's extinction as a line in A_V, (slope, offset): the chord to a1 (`at`
    /// None), or the tangent at `at` of the quadratic through (0, 0), (a1, e1) and
    /// (a2, e2).
    fn line(&self, e1: f64, e2: f64, at: Option<f64>) -> (f64, f64) {
        let chord = e1 / self.a1;
        let Some(x) = at else { return (chord, 0.0) };
        let curve = (e2 / self.a2 - chord) / (self.a2 - self.a1);
        let linear = chord - curve * self.a1;
        (linear + 2.0 * curve * x, -curve * x * x)
    }
}

/// The mean, covariance and precision determinant of z under normal equations.
type Solution = ([f64; 2], [[f64; 2]; 2], f64);

/// The linearised photometry of one y: rows x_b = (k_b, 5), targets m_obs - M_b - o_b + 5
/// (o_b the extinction line's offset) and weights 1 / sigma_b^2, accumulated into normal
/// equations.
#[derive(Clone, Copy, Debug)]
struct Normal {
    h: [[f64; 2]; 2],
    g: [f64; 2],
    /// sum of w t^2 (for the marginal likelihood).
    tt: f64,
}

impl Normal {
    fn photometry(
        prep: &PreparedStar,
        rows: SplitRows,
        refs: &ExtinctionRefs,
        at: Option<f64>,
    ) -> Option<Normal> {
        let mut n = Normal {
            h: [[0.0; 2]; 2],
            g: [0.0; 2],
            tt: 0.0,
        };
        let bands = prep.mags.iter().zip(&prep.inv_var).zip(rows.abs);
        for (((&m, &iv), &a), (&e1, &e2)) in bands.zip(rows.ext.iter().zip(rows.ext2)) {
            let (k, o) = refs.line(e1 as f64, e2 as f64, at);
            let (t, w) = (m as f64 - a as f64 - o + 5.0, iv as f64);
            if !(k.is_finite() && t.is_finite()) {
                return None;
            }
            n.add_row([k, 5.0], t, w);
        }
        Some(n)
    }

    fn add_row(&mut self, x: [f64; 2], t: f64, w: f64) {
        for a in 0..2 {
            self.g[a] += w * x[a] * t;
            for b in 0..2 {
                self.h[a][b] += w * x[a] * x[b];
            }
        }
        self.tt += w * t * t;
    }

    fn add_prior(&mut self, reg: &ExtrinsicPrior) {
        let (h, g) = reg.normal_equations();
        for a in 0..2 {
            self.g[a] += g[a];
            for b in 0..2 {
                self.h[a][b] += h[a][b];
            }
        }
        self.tt += g[0] * reg.av.0 + g[1] * reg.log_d.0;
    }

    /// The parallax as a row linearised at log10 d = `at`: plx = 1000 10^-l.
    fn add_parallax(&mut self, (plx, iv): (f64, f64), at: f64) {
        let p0 = 1000.0 * 10f64.powf(-at);
        let slope = -p0 * LN_10;
        self.add_row([0.0, slope], plx - p0 + slope * at, iv);
    }

    fn solve(&self) -> Option<Solution> {
        let h = &self.h;
        let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
        if !(det > 0.0 && h[0][0] > 0.0 && det.is_finite()) {
            return None;
        }
        let cov = [
            [h[1][1] / det, -h[0][1] / det],
            [-h[1][0] / det, h[0][0] / det],
        ];
        let mean = [
            cov[0][0] * self.g[0] + cov[0][1] * self.g[1],
            cov[1][0] * self.g[0] + cov[1][1] * self.g[1],
        ];
        Some((mean, cov, det))
    }
}

/// The photometry, parallax and regulariser of a star, linearised at y (module docs): on
/// the chord to a1; where its solution lies beyond a1, where the chord extrapolates, on the
/// quadratic's tangent at that solution instead, if the tangent's own solution stays
/// beyond a1 too. Returns the normal equations with their solution.
fn normal_at(
    prep: &PreparedStar,
    rows: SplitRows,
    refs: &ExtinctionRefs,
    reg: &ExtrinsicPrior,
) -> Option<(Normal, Solution)> {
    let chord = normal_with(prep, rows, refs, None, reg)?;
    let chord_solution = chord.solve()?;
    let x = chord_solution.0[0];
    if !(x > refs.a1) {
        return Some((chord, chord_solution));
    }
    let tangent = normal_with(prep, rows, refs, Some(x.min(reg.av_max)), reg)
        .and_then(|n| Some((n, n.solve()?)));
    match tangent {
        Some(t) if t.1 .0[0] > refs.a1 => Some(t),
        _ => Some((chord, chord_solution)),
    }
}

/// [`normal_at`] with one extinction line per band (`ExtinctionRefs::line`); the parallax
/// row is relinearised at the solution PARALLAX_STEPS times.
fn normal_with(
    prep: &PreparedStar,
    rows: SplitRows,
    refs: &ExtinctionRefs,
    at: Option<f64>,
    reg: &ExtrinsicPrior,
) -> Option<Normal> {
    let mut base = Normal::photometry(prep, rows, refs, at)?;
    base.add_prior(reg);
    let Some(plx) = prep.parallax else {
        return Some(base);
    };
    let mut at = base.solve()?.0[1];
    let mut n = base;
    for _ in 0..PARALLAX_STEPS {
        at = at.clamp(reg.log_d_range.0, reg.log_d_range.1);
        n = base;
        n.add_parallax(plx, at);
        at = n.solve()?.0[1];
    }
    Some(n)
}

/// The Gaussian of z given y, truncated to 0 <= A_V <= A_V,max: A_V from its truncated
/// marginal, then log10 d from its Gaussian conditional on A_V.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditional {
    /// Untruncated mean of z = (A_V, log10 d).
    pub mean: [f64; 2],
    /// Its covariance.
    pub cov: [[f64; 2]; 2],
    /// The truncated marginal's location (the mean, clamped near the allowed range).
    av_loc: f64,
    av_sd: f64,
    /// Phi at the range's ends, standardised at `av_loc`.
    cdf_lo: f64,
    cdf_hi: f64,
    av_max: f64,
    /// d log10 d / d A_V along the regression line, and the residual standard deviation.
    slope: f64,
    log_d_sd: f64,
    log_norm: f64,
}

impl Conditional {
    /// The conditional of z at y, given y's split magnitudes at the references `refs`;
    /// None where y is outside the model.
    pub fn new(
        prep: &PreparedStar,
        rows: SplitRows,
        refs: &ExtinctionRefs,
        reg: &ExtrinsicPrior,
    ) -> Option<Conditional> {
        let (_, (mean, cov, _)) = normal_at(prep, rows, refs, reg)?;
        Conditional::from_gaussian(mean, cov, reg.av_max)
    }

    fn from_gaussian(mean: [f64; 2], cov: [[f64; 2]; 2], av_max: f64) -> Option<Conditional> {
        let av_sd = cov[0][0].sqrt();
        let slope = cov[1][0] / cov[0][0];
        let log_d_sd = (cov[1][1] - slope * cov[1][0]).max(1e-300).sqrt();
        let av_loc = mean[0].clamp(-MEAN_CLAMP_SD * av_sd, av_max + MEAN_CLAMP_SD * av_sd);
        let cdf_lo = norm_cdf((0.0 - av_loc) / av_sd);
        let cdf_hi = norm_cdf((av_max - av_loc) / av_sd);
        let mass = cdf_hi - cdf_lo;
        if !(mass > 0.0 && av_sd > 0.0 && log_d_sd.is_finite() && mean[1].is_finite()) {
            return None;
        }
        let log_norm = -(2.0 * PI).ln() - (av_sd * log_d_sd).ln() - mass.ln();
        Some(Conditional {
            mean,
            cov,
            av_loc,
            av_sd,
            cdf_lo,
            cdf_hi,
            av_max,
            slope,
            log_d_sd,
            log_norm,
        })
    }

    /// The mean of log10 d given A_V.
    fn log_d_mean(&self, av: f64) -> f64 {
        self.mean[1] + self.slope * (av - self.mean[0])
    }

    /// Draw (A_V, log10 d).
    pub fn sample(&self, rng: &mut Rng) -> (f64, f64) {
        self.draw_at(rng.uniform_open(), rng.normal())
    }

    /// The draw made from a uniform `u` in (0, 1) (A_V, by inversion) and a standard
    /// normal `z` (log10 d given A_V). (1 - u, -z) is its antithetic partner.
    pub fn draw_at(&self, u: f64, z: f64) -> (f64, f64) {
        let u = self.cdf_lo + u * (self.cdf_hi - self.cdf_lo);
        let av = (self.av_loc + self.av_sd * norm_ppf(u)).clamp(0.0, self.av_max);
        (av, self.log_d_mean(av) + self.log_d_sd * z)
    }

    /// log density of (A_V, log10 d); -inf outside 0 <= A_V <= A_V,max.
    pub fn log_pdf(&self, av: f64, log_d: f64) -> f64 {
        if !(0.0..=self.av_max).contains(&av) {
            return f64::NEG_INFINITY;
        }
        let za = (av - self.av_loc) / self.av_sd;
        let zd = (log_d - self.log_d_mean(av)) / self.log_d_sd;
        self.log_norm - 0.5 * (za * za + zd * zd)
    }
}

/// The linear model's marginal over z at one y.
#[derive(Clone, Copy, Debug)]
pub struct LinearMarginal {
    /// log of the integral over z of the linearised likelihood (photometry and parallax,
    /// Gaussian normalisation included) times the regulariser's normalised Gaussian.
    pub log_marginal: f64,
    /// Mean of z = (A_V, log10 d) under the linearised posterior.
    pub mean: [f64; 2],
    /// Its covariance.
    pub cov: [[f64; 2]; 2],
}

impl LinearMarginal {
    /// The marginal restricted to A_V >= 0: `log_marginal` plus the log of the Gaussian's
    /// mass there.
    pub fn log_marginal_physical(&self) -> f64 {
        self.log_marginal + norm_cdf(self.mean[0] / self.cov[0][0].sqrt()).ln()
    }
}

/// The marginal likelihood of y under the linear model, in closed form (the Gaussian
/// integral over z). None where y is outside the model.
pub fn linear_marginal(
    prep: &PreparedStar,
    rows: SplitRows,
    refs: &ExtinctionRefs,
    reg: &ExtrinsicPrior,
) -> Option<LinearMarginal> {
    let (n, (mean, cov, det)) = normal_at(prep, rows, refs, reg)?;
    // min_z (t - Xz)' W (t - Xz) + (z - z0)' P0 (z - z0) = tt - g' mean
    let chi2_min = n.tt - (n.g[0] * mean[0] + n.g[1] * mean[1]);
    let log_det_prior = -2.0 * (reg.av.1 * reg.log_d.1).ln();
    Some(LinearMarginal {
        log_marginal: prep.log_norm - 0.5 * chi2_min + 0.5 * log_det_prior - 0.5 * det.ln(),
        mean,
        cov,
    })
}

/// Starts along the temperature-extinction ridge from a point v of s: a cool, unreddened
/// star and a hot, reddened one can have nearly the same colours, and a search from v
/// alone finds only one. On a grid of log10 Teff (0.03 dex) over the population's range,
/// and at each for v's [M/H] and the centres of the prior's metallicity components, with
/// the log g of highest prior density within 0.6 dex of v's and the prior's mean R_V, the
/// profile is
/// the prior times the closed-form marginal over (A_V, log10 d) restricted to A_V >= 0 (one
/// forward-model evaluation per point), maximised over [M/H]. Its local maxima in Teff at
/// least 0.03 dex from v and not far below the profile at v itself, best first, up to
/// `max`, are returned with (A_V, log10 d) at their conditional means, with the number of
/// forward-model evaluations spent.
pub fn temperature_profile_starts(
    target: &StarTarget,
    v: &[f64; 6],
    (refs, reg): (&ExtinctionRefs, &ExtrinsicPrior),
    max: usize,
) -> (Vec<[f64; 6]>, u64) {
    let a_ref = refs.a1;
    const STEP: f64 = 0.03;
    let (lo, hi) = target.prior.base.log_teff_range();
    let mut metallicities = vec![v[2]];
    for &(_, m, _) in &target.prior.base.config.mh_mixture {
        if metallicities.iter().all(|x| (x - m).abs() > 0.1) {
            metallicities.push(m);
        }
    }
    // the prior's typical R_V, not v's: a search that went wrong often ends at an edge
    let rv = target.prior.base.config.rv_mean;
    let n = ((hi - lo) / STEP) as usize;
    let nb = target.prep.bands.len();
    if n < 2 || nb < 2 {
        return (Vec::new(), 0);
    }
    let pts: Vec<[f64; 6]> = (0..n)
        .map(|k| lo + (k as f64 + 0.5) * STEP)
        .flat_map(|lt| metallicities.iter().map(move |&mh| (lt, mh)))
        .map(|(lt, mh)| {
            let logg = likely_logg(target, lt, v[1], mh).unwrap_or(f64::NAN);
            [lt, logg, mh, a_ref, rv, 1.0]
        })
        .collect();
    // v itself last: peaks far less probable than v are not worth a search
    let mut batch = SplitBatch::default();
    batch
        .at
        .extend(pts.iter().map(|p| split_theta(&y_of_s(p), a_ref)));
    batch.at.push(split_theta(&y_of_s(v), a_ref));
    batch.split(target, refs);
    let score_at = |k: usize, p: &[f64; 6]| {
        let m = linear_marginal(target.prep, batch.rows(k), refs, reg)?;
        let lp = target.prior.log_prob_x(p[0], p[1], p[2]);
        Some((lp + m.log_marginal_physical(), m))
    };
    let floor = score_at(pts.len(), v).map_or(f64::NEG_INFINITY, |a| a.0) - RIDGE_MIN_LOG_RATIO;
    let mut starts = pts.clone();
    let score: Vec<f64> = (0..pts.len())
        .map(|k| {
            let Some((score, m)) = score_at(k, &pts[k]) else {
                return f64::NEG_INFINITY;
            };
            starts[k][AV] = m.mean[0].clamp(0.0, reg.av_max);
            starts[k][LOG_D] = m.mean[1].clamp(reg.log_d_range.0, reg.log_d_range.1);
            score
        })
        .collect();
    // the profile over Teff: the best metallicity at each grid point; points below the
    // floor cannot be peaks (masking them leaves every other point's comparisons as they
    // were, since a masked neighbour was lower than any point above the floor)
    let nm = metallicities.len();
    let best: Vec<usize> = (0..n)
        .map(|k| {
            (k * nm..(k + 1) * nm)
                .max_by(|&a, &b| score[a].total_cmp(&score[b]))
                .unwrap()
        })
        .collect();
    let profile: Vec<[f64; 6]> = best.iter().map(|&i| starts[i]).collect();
    let profile_score: Vec<f64> = best
        .iter()
        .map(|&i| {
            if score[i] >= floor {
                score[i]
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    let found = profile_peaks(&profile, &profile_score, max, |p| {
        (p[0] - v[0]).abs() >= 0.03
    });
    (found, pts.len() as u64 + 1)
}

/// The intrinsic coordinates y of s.
pub fn y_of_s(s: &[f64; 6]) -> [f64; NY] {
    INTRINSIC.map(|i| s[i])
}

/// The theta at which `ForwardModel::split_many` evaluates y (A_V at the reference).
pub fn split_theta(y: &[f64; NY], a_ref: f64) -> Theta {
    Theta {
        teff: 10f64.powf(y[0]),
        logg: y[1],
        mh: y[2],
        av: a_ref,
        rv: y[3],
        distance: 10.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::{Measurement, NoiseModel, StarObs};

    /// A star whose magnitudes are exactly M_b + 5 log10 d - 5 + A_V k_b (a linear toy).
    fn toy_star(
        abs: &[f32],
        k: &[f64],
        (av, log_d): (f64, f64),
        plx_err: Option<f32>,
    ) -> PreparedStar {
        let phot = abs
            .iter()
            .zip(k)
            .enumerate()
            .map(|(b, (&m, &kb))| Measurement {
                band: b as u16,
                mag: (m as f64 + 5.0 * log_d - 5.0 + av * kb) as f32,
                err: 0.03,
            })
            .collect();
        let star = StarObs {
            source_id: 1,
            phot,
            parallax: plx_err.map(|e| ((1000.0 * 10f64.powf(-log_d)) as f32, e)),
            reddening: None,
        };
        let noise = NoiseModel {
            floor: vec![0.0; abs.len()],
        };
        PreparedStar::new(&star, &noise)
    }

    fn reg() -> ExtrinsicPrior {
        ExtrinsicPrior {
            av: (1.0, 1.5),
            log_d: (3.2, 0.5),
            av_max: 10.0,
            log_d_range: (5f64.log10(), 20_000f64.log10()),
        }
    }

    const ABS: [f32; 4] = [4.5, 4.0, 3.2, 3.0];
    const K: [f64; 4] = [0.95, 0.6, 0.28, 0.12];

    /// The toy's split at references (a_ref, a_ref + 1): A_b at both, for extinction
    /// coefficients `k` (linear: the second reference changes nothing).
    fn split(k: &[f64], a_ref: f64) -> (Vec<f32>, Vec<f32>, ExtinctionRefs) {
        let refs = ExtinctionRefs::new(a_ref, 10.0);
        let at = |a: f64| k.iter().map(|k| (k * a) as f32).collect();
        (at(refs.a1), at(refs.a2), refs)
    }

    fn rows<'a>(abs: &'a [f32], (e1, e2): (&'a [f32], &'a [f32])) -> SplitRows<'a> {
        SplitRows {
            abs,
            ext: e1,
            ext2: e2,
        }
    }

    /// In the linear model without a parallax the conditional is the exact posterior of z
    /// (a Gaussian times the regulariser): importance weights of its draws against that
    /// posterior are constant (efficiency 1), and the mean is near the truth.
    #[test]
    fn linear_toy_is_exact() {
        let prep = toy_star(&ABS, &K, (0.8, 3.0), None);
        let r = reg();
        let (e1, e2, refs) = split(&K, 0.5);
        let c = Conditional::new(&prep, rows(&ABS, (&e1, &e2)), &refs, &r).unwrap();
        assert!((c.mean[0] - 0.8).abs() < 0.1 && (c.mean[1] - 3.0).abs() < 0.02);
        let log_post = |av: f64, ld: f64| {
            let mut chi2 = 0.0;
            for b in 0..4 {
                let m = ABS[b] as f64 + 5.0 * ld - 5.0 + av * K[b];
                chi2 += (prep.mags[b] as f64 - m).powi(2) * prep.inv_var[b] as f64;
            }
            chi2 += ((av - r.av.0) / r.av.1).powi(2) + ((ld - r.log_d.0) / r.log_d.1).powi(2);
            -0.5 * chi2
        };
        let mut rng = Rng::new(3);
        let lw: Vec<f64> = (0..2000)
            .map(|_| {
                let (a, d) = c.sample(&mut rng);
                log_post(a, d) - c.log_pdf(a, d)
            })
            .collect();
        let spread = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - lw.iter().cloned().fold(f64::INFINITY, f64::min);
        // f32 magnitudes leave ~1e-6; any mismatch of the model would leave O(1)
        assert!(spread < 1e-4, "log-weight spread {spread}");
    }

    /// A curved extinction law A_b = k_b A_V + c_b A_V^2, references (0.05, 1.05), the
    /// truth at A_V = 2: the chord from the small reference alone misplaces the conditional
    /// by several of its widths; the tangent step puts it on the truth, and importance weights
    /// of its draws against the exact posterior (curved model, regulariser) are nearly
    /// constant.
    #[test]
    fn tangent_step_follows_a_curved_extinction_law() {
        const C: [f64; 4] = [-0.06, -0.04, -0.02, -0.006];
        let (av, ld) = (2.0, 3.0);
        let curved = |b: usize, a: f64| K[b] * a + C[b] * a * a;
        let phot: Vec<f64> = (0..4)
            .map(|b| ABS[b] as f64 + 5.0 * ld - 5.0 + curved(b, av))
            .collect();
        // the toy star holds the observed magnitudes of the linear law: replace them
        let mut prep = toy_star(&ABS, &K, (av, ld), None);
        for (m, p) in prep.mags.iter_mut().zip(&phot) {
            *m = *p as f32;
        }
        let r = reg();
        let refs = ExtinctionRefs::new(0.05, 10.0);
        let at = |a: f64| (0..4).map(|b| curved(b, a) as f32).collect::<Vec<f32>>();
        let (e1, e2) = (at(refs.a1), at(refs.a2));
        let c = Conditional::new(&prep, rows(&ABS, (&e1, &e2)), &refs, &r).unwrap();
        let chord = normal_with(&prep, rows(&ABS, (&e1, &e2)), &refs, None, &r)
            .unwrap()
            .solve()
            .unwrap();
        let sd = c.cov[0][0].sqrt();
        assert!(
            (chord.0[0] - av).abs() > 2.0 * sd,
            "chord {:?} sd {sd}",
            chord.0
        );
        assert!(
            (c.mean[0] - av).abs() < 0.5 * sd,
            "tangent {:?} sd {sd}",
            c.mean
        );
        let log_post = |a: f64, d: f64| {
            let chi2: f64 = (0..4)
                .map(|b| {
                    let m = ABS[b] as f64 + 5.0 * d - 5.0 + curved(b, a);
                    (prep.mags[b] as f64 - m).powi(2) * prep.inv_var[b] as f64
                })
                .sum();
            -0.5 * (chi2 + ((a - r.av.0) / r.av.1).powi(2) + ((d - r.log_d.0) / r.log_d.1).powi(2))
        };
        let mut rng = Rng::new(4);
        let lw: Vec<f64> = (0..4000)
            .map(|_| {
                let (a, d) = c.sample(&mut rng);
                log_post(a, d) - c.log_pdf(a, d)
            })
            .collect();
        let w = crate::posterior::estimator::normalise(&lw);
        assert!(
            w.n_eff > 0.9 * lw.len() as f64,
            "efficiency {}",
            w.n_eff / 4000.0
        );
    }

    /// The closed-form marginal equals a brute-force 2-D integral of the linearised
    /// likelihood times the regulariser, with and without a parallax.
    #[test]
    fn marginal_matches_brute_force_integral() {
        for plx in [None, Some(0.05f32)] {
            let prep = toy_star(&ABS, &K, (0.3, 2.6), plx);
            let r = reg();
            let (e1, e2, refs) = split(&K, 0.5);
            let closed = linear_marginal(&prep, rows(&ABS, (&e1, &e2)), &refs, &r)
                .unwrap()
                .log_marginal;
            // the same linearised model the closed form integrates (parallax row at the
            // linearisation point the solver ends on)
            let (n, (mean, cov, _)) = normal_at(&prep, rows(&ABS, (&e1, &e2)), &refs, &r).unwrap();
            let integrand = |a: f64, d: f64| {
                let quad = n.tt - 2.0 * (n.g[0] * a + n.g[1] * d)
                    + n.h[0][0] * a * a
                    + 2.0 * n.h[0][1] * a * d
                    + n.h[1][1] * d * d;
                prep.log_norm - 0.5 * quad - (2.0 * PI).ln() - (r.av.1 * r.log_d.1).ln()
            };
            let (sa, sd) = (cov[0][0].sqrt(), cov[1][1].sqrt());
            let steps = 400;
            let (ha, hd) = (16.0 * sa / steps as f64, 16.0 * sd / steps as f64);
            let mut terms = Vec::new();
            for i in 0..steps {
                for j in 0..steps {
                    let a = mean[0] - 8.0 * sa + (i as f64 + 0.5) * ha;
                    let d = mean[1] - 8.0 * sd + (j as f64 + 0.5) * hd;
                    terms.push(integrand(a, d));
                }
            }
            let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let brute =
                top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln() + (ha * hd).ln();
            assert!(
                (closed - brute).abs() < 1e-6,
                "{closed} vs {brute} (parallax {plx:?})"
            );
        }
    }

    /// The truncated conditional's density integrates to one, and its draws stay inside
    /// 0 <= A_V <= A_V,max, also when the untruncated mean is far below zero.
    #[test]
    fn truncated_density_is_normalised() {
        for mean_av in [0.5, 0.02, -2.0] {
            let cov = [[0.04, -0.003], [-0.003, 0.0009]];
            let c = Conditional::from_gaussian([mean_av, 3.0], cov, 10.0).unwrap();
            let (na, nd) = (2000, 800);
            let (ha, hd) = (10.0 / na as f64, 0.8 / nd as f64);
            let mut total = 0.0;
            for i in 0..na {
                for j in 0..nd {
                    let a = (i as f64 + 0.5) * ha;
                    let d = 2.5 + (j as f64 + 0.5) * hd;
                    total += c.log_pdf(a, d).exp() * ha * hd;
                }
            }
            assert!(
                (total - 1.0).abs() < 2e-3,
                "mean {mean_av}: integral {total}"
            );
            let mut rng = Rng::new(9);
            for _ in 0..1000 {
                let (a, d) = c.sample(&mut rng);
                assert!((0.0..=10.0).contains(&a) && d.is_finite());
                assert!(c.log_pdf(a, d).is_finite());
            }
        }
    }

    /// An antithetic partner (1 - u, -z) is a draw of the same conditional: partners and
    /// fresh draws agree in mean and spread, truncated or not, and away from the bounds
    /// a pair's mean is the conditional's mean exactly.
    #[test]
    fn antithetic_partners_share_the_conditional() {
        let cov = [[0.04, -0.003], [-0.003, 0.0009]];
        for mean_av in [1.5, 0.05] {
            let c = Conditional::from_gaussian([mean_av, 3.0], cov, 10.0).unwrap();
            let mut rng = Rng::new(3);
            let n = 50_000;
            let (mut fresh, mut partner) = ([0.0; 4], [0.0; 4]);
            for _ in 0..n {
                let (u, z) = (rng.uniform_open(), rng.normal());
                let (a, d) = c.draw_at(u, z);
                let (a2, d2) = c.draw_at(1.0 - u, -z);
                assert!(c.log_pdf(a2, d2).is_finite());
                let (a3, d3) = c.sample(&mut rng);
                for (acc, (a, d)) in [(&mut partner, (a2, d2)), (&mut fresh, (a3, d3))] {
                    *acc = [acc[0] + a, acc[1] + a * a, acc[2] + d, acc[3] + d * d];
                }
                if mean_av > 1.0 {
                    assert!(((a + a2) / 2.0 - mean_av).abs() < 1e-9);
                    assert!(((d + d2) / 2.0 - 3.0).abs() < 1e-9);
                }
            }
            let moments = |m: [f64; 4]| {
                let (ma, md) = (m[0] / n as f64, m[2] / n as f64);
                [
                    ma,
                    (m[1] / n as f64 - ma * ma).sqrt(),
                    md,
                    (m[3] / n as f64 - md * md).sqrt(),
                ]
            };
            let (f, p) = (moments(fresh), moments(partner));
            for k in 0..4 {
                assert!(
                    (f[k] - p[k]).abs() < 0.01 * f[k].abs().max(0.1),
                    "{f:?} {p:?}"
                );
            }
        }
    }

    /// Degenerate stars: one band and no parallax (two unknowns, one measurement) and a
    /// band set that does not constrain A_V still give a proper conditional, which falls
    /// back to the regulariser in the undetermined direction.
    #[test]
    fn degenerate_band_sets_fall_back_to_the_regulariser() {
        let r = reg();
        let one = toy_star(&ABS[..1], &K[..1], (0.8, 3.0), None);
        let (e1, e2, refs) = split(&K, 0.5);
        let c = Conditional::new(&one, rows(&ABS[..1], (&e1[..1], &e2[..1])), &refs, &r).unwrap();
        // the data fix 5 log10 d + 0.95 A_V only: along it the width is the regulariser's
        let line = 5.0 * c.mean[1] + K[0] * c.mean[0];
        let truth = 5.0 * 3.0 + K[0] * 0.8;
        assert!((line - truth).abs() < 0.05, "{line} vs {truth}");
        assert!(c.cov[0][0].sqrt() > 0.5, "A_V stays broad: {:?}", c.cov);
        // equal extinction in every band: A_V and distance are degenerate
        let flat = [0.5f64; 4];
        let star = toy_star(&ABS, &flat, (0.8, 3.0), None);
        let (f1, f2, refs) = split(&flat, 0.5);
        let c = Conditional::new(&star, rows(&ABS, (&f1, &f2)), &refs, &r).unwrap();
        assert!(c.cov[0][0].sqrt() > 0.5, "{:?}", c.cov);
        // a parallax then pins the distance and with it A_V
        let star = toy_star(&ABS, &flat, (0.8, 3.0), Some(0.02));
        let c = Conditional::new(&star, rows(&ABS, (&f1, &f2)), &refs, &r).unwrap();
        assert!((c.mean[0] - 0.8).abs() < 0.1, "{:?}", c.mean);
        assert!(c.cov[0][0].sqrt() < 0.1, "{:?}", c.cov);
    }
}
