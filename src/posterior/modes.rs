//! Mode search: Levenberg-Marquardt on -log p(s | obs) in the sampling coordinates s
//! (`coords::s_of`), started from the best distinct flow samples, and the Laplace
//! approximation at each mode.
//!
//! -log p(s) = chi^2(s) / 2 - Q(s) + const, with chi^2 a sum of squared residuals of the
//! photometry and parallax (Gauss-Newton: forward-difference Jacobian of the magnitudes)
//! and Q(s) = log prior(theta(s)) + log |dtheta/ds| the prior part, whose gradient and
//! curvature come from central differences (the population prior is trilinear in cells of
//! 0.01 dex x 0.1 x 0.1, so the steps span about one cell; its curvature is clipped to the
//! positive semi-definite cone, as a Gauss-Newton Hessian must be). The Laplace covariance
//! is the inverse of that Hessian at the mode.

use super::coords::{log_ds_dtheta, theta_of_s, DIM};
use super::target::StarTarget;
use crate::physics::Theta;
use crate::util::linalg::{cholesky, cholesky_solve, clip_to_psd, spd_inverse};

const D: usize = DIM;

/// Forward-difference steps of the magnitudes' Jacobian in s. Magnitudes are f32 (about
/// 1e-6 mag at 15 mag), so each step changes them by >= 1e-4 mag for typical stars.
const JAC_STEP: [f64; D] = [2e-4, 2e-3, 2e-3, 2e-3, 5e-3, 1e-4];
/// Central-difference steps of the prior part: about half a population-grid cell in
/// (log10 Teff, log g, [M/H]); small in the smooth one-dimensional parts.
const PRIOR_STEP: [f64; D] = [0.005, 0.05, 0.05, 1e-3, 1e-3, 1e-4];
/// Ridge added to the Hessian: a very broad Gaussian (sigma 0.3 dex in Teff, 3 in log g and
/// [M/H], 5 mag in A_V, 2 in R_V, 2 dex in distance) so that directions neither the data
/// nor the prior constrain stay invertible.
const RIDGE: [f64; D] = [
    1.0 / 0.09,
    1.0 / 9.0,
    1.0 / 9.0,
    1.0 / 25.0,
    1.0 / 4.0,
    1.0 / 4.0,
];
/// Largest step per coordinate per iteration (a trust region against wild first steps).
const MAX_STEP: [f64; D] = [0.05, 0.5, 0.5, 0.5, 0.5, 0.3];
/// Iterations per search and rejected trial steps per iteration.
const MAX_ITER: usize = 40;
const MAX_TRIALS: usize = 10;
/// Stop when an accepted step lowers -log p by less than this [nats].
const F_TOL: f64 = 1e-4;
/// An iterate within this squared Mahalanobis distance of a known mode is converging to
/// it: the search stops (a duplicate).
const DUPLICATE_M2: f64 = 9.0;

/// A posterior mode with its Laplace approximation.
#[derive(Clone, Debug)]
pub struct Mode {
    /// Location in s.
    pub v: [f64; D],
    /// log p(s | obs) at the mode, unnormalised (the target's log density in s).
    pub log_post_s: f64,
    /// chi^2 of the photometry and parallax at the mode.
    pub chi2: f64,
    /// Laplace covariance in s (inverse Gauss-Newton Hessian).
    pub cov: [[f64; D]; D],
    /// The covariance the data alone allow (the prior's curvature left out, the broad
    /// ridge kept): wide along directions only the prior constrains.
    pub cov_data: [[f64; D]; D],
    /// Cholesky factor of `cov`.
    chol: [[f64; D]; D],
    /// Iterations used.
    pub iterations: usize,
}

impl Mode {
    /// Laplace estimate of the mode's posterior mass (log): p(mode) (2 pi)^(D/2) |cov|^(1/2).
    pub fn log_mass(&self) -> f64 {
        let log_det: f64 = 2.0 * (0..D).map(|i| self.chol[i][i].ln()).sum::<f64>();
        self.log_post_s + 0.5 * D as f64 * (2.0 * std::f64::consts::PI).ln() + 0.5 * log_det
    }

    /// Squared Mahalanobis distance of v from the mode under its covariance.
    pub fn mahalanobis2(&self, v: &[f64; D]) -> f64 {
        let mut y = [0f64; D];
        for i in 0..D {
            let mut s = v[i] - self.v[i];
            for j in 0..i {
                s -= self.chol[i][j] * y[j];
            }
            y[i] = s / self.chol[i][i];
        }
        y.iter().map(|x| x * x).sum()
    }
}

/// Reusable buffers of the mode search.
#[derive(Default)]
pub struct ModeScratch {
    thetas: Vec<Theta>,
    mags: Vec<f32>,
    /// Residuals at the linearisation point, then at the D shifted points.
    r: Vec<f64>,
    /// Residuals of trial points (kept apart from the linearisation's).
    r_trial: Vec<f64>,
    jac: Vec<f64>,
    /// Forward-model evaluations (thetas) so far.
    pub evaluations: u64,
}

/// -log p and chi^2 at the point `linearise` was called at (its residuals and Jacobian
/// are left in the scratch).
struct Linearised {
    /// -log p(v), unnormalised.
    f: f64,
    chi2: f64,
}

/// Q(s) = log prior(theta(s)) + log |dtheta/ds|.
fn prior_part(target: &StarTarget, v: &[f64; D]) -> f64 {
    if v.iter().any(|x| !x.is_finite()) {
        return f64::NEG_INFINITY;
    }
    let t = theta_of_s(v);
    let lp = target.prior.log_prob(&t);
    if lp.is_finite() {
        lp - log_ds_dtheta(&t)
    } else {
        lp
    }
}

/// Residuals (model - observed) / sigma of the photometry, then the parallax, from one row
/// of model magnitudes. Returns false if a magnitude is not finite.
fn residuals(target: &StarTarget, mags: &[f32], distance: f64, r: &mut [f64]) -> bool {
    let p = target.prep;
    for (k, ((&m, &o), &iv)) in mags.iter().zip(&p.mags).zip(&p.inv_var).enumerate() {
        if !m.is_finite() {
            return false;
        }
        r[k] = (m as f64 - o as f64) * (iv as f64).sqrt();
    }
    if let Some((plx, iv)) = p.parallax {
        r[p.bands.len()] = (1000.0 / distance - plx) * iv.sqrt();
    }
    true
}

/// -log p(v) only (one forward evaluation).
fn objective(target: &StarTarget, v: &[f64; D], s: &mut ModeScratch) -> (f64, f64) {
    let q = prior_part(target, v);
    if !q.is_finite() {
        return (f64::INFINITY, f64::INFINITY);
    }
    let t = theta_of_s(v);
    let nb = target.prep.bands.len();
    s.mags.resize(nb, 0.0);
    target
        .fm
        .magnitudes_many(std::slice::from_ref(&t), &target.prep.bands, &mut s.mags);
    s.r_trial.resize(target.n_measurements(), 0.0);
    s.evaluations += 1;
    if !residuals(target, &s.mags[..nb], t.distance, &mut s.r_trial) {
        return (f64::INFINITY, f64::INFINITY);
    }
    let chi2: f64 = s.r_trial.iter().map(|x| x * x).sum();
    (0.5 * chi2 - target.prep.log_norm - q, chi2)
}

/// Residuals and their forward-difference Jacobian at v (s.r, s.jac [m][D]); None if v is
/// outside the model or the prior.
fn linearise(target: &StarTarget, v: &[f64; D], s: &mut ModeScratch) -> Option<Linearised> {
    let q = prior_part(target, v);
    if !q.is_finite() {
        return None;
    }
    let nb = target.prep.bands.len();
    let m = target.n_measurements();
    s.thetas.clear();
    s.thetas.push(theta_of_s(v));
    for i in 0..D {
        let mut w = *v;
        w[i] += JAC_STEP[i];
        s.thetas.push(theta_of_s(&w));
    }
    s.mags.resize((D + 1) * nb, 0.0);
    target
        .fm
        .magnitudes_many(&s.thetas, &target.prep.bands, &mut s.mags);
    s.evaluations += s.thetas.len() as u64;
    s.r.resize((D + 1) * m, 0.0);
    let (r0, rest) = s.r.split_at_mut(m);
    if !residuals(target, &s.mags[..nb], s.thetas[0].distance, r0) {
        return None;
    }
    s.jac.resize(m * D, 0.0);
    for i in 0..D {
        let ri = &mut rest[i * m..(i + 1) * m];
        let row = &s.mags[(i + 1) * nb..(i + 2) * nb];
        let ok = residuals(target, row, s.thetas[i + 1].distance, ri);
        for k in 0..m {
            // a step that leaves the model's support: no slope information along i
            s.jac[k * D + i] = if ok {
                (ri[k] - r0[k]) / JAC_STEP[i]
            } else {
                0.0
            };
        }
    }
    let chi2: f64 = r0.iter().map(|x| x * x).sum();
    Some(Linearised {
        f: 0.5 * chi2 - target.prep.log_norm - q,
        chi2,
    })
}

/// Gradient of Q and the PSD-clipped curvature of -Q (central differences; Q is
/// separable into the population part (v0, v1, v2) and one part per other coordinate).
fn prior_derivatives(target: &StarTarget, v: &[f64; D]) -> ([f64; D], [[f64; D]; D]) {
    let q0 = prior_part(target, v);
    let mut grad = [0f64; D];
    let mut h = [[0f64; D]; D];
    let at = |i: usize, a: f64, j: usize, b: f64| {
        let mut w = *v;
        w[i] += a;
        w[j] += b;
        prior_part(target, &w)
    };
    for i in 0..D {
        let e = PRIOR_STEP[i];
        let (qp, qm) = (at(i, e, i, 0.0), at(i, -e, i, 0.0));
        if qp.is_finite() && qm.is_finite() {
            grad[i] = (qp - qm) / (2.0 * e);
            h[i][i] = -(qp - 2.0 * q0 + qm) / (e * e);
        } else if qp.is_finite() {
            grad[i] = (qp - q0) / e;
        } else if qm.is_finite() {
            grad[i] = (q0 - qm) / e;
        }
    }
    for i in 0..3 {
        for j in i + 1..3 {
            let (ei, ej) = (PRIOR_STEP[i], PRIOR_STEP[j]);
            let c = [
                at(i, ei, j, ej),
                at(i, ei, j, -ej),
                at(i, -ei, j, ej),
                at(i, -ei, j, -ej),
            ];
            if c.iter().all(|x| x.is_finite()) {
                h[i][j] = -(c[0] - c[1] - c[2] + c[3]) / (4.0 * ei * ej);
                h[j][i] = h[i][j];
            }
        }
    }
    // the population block as a whole, the one-dimensional parts on their own
    let mut block = [0f64; 9];
    for i in 0..3 {
        for j in 0..3 {
            block[i * 3 + j] = h[i][j];
        }
    }
    clip_to_psd(&mut block, 3);
    for i in 0..3 {
        for j in 0..3 {
            h[i][j] = block[i * 3 + j];
        }
    }
    for (i, row) in h.iter_mut().enumerate().skip(3) {
        row[i] = row[i].max(0.0);
    }
    (grad, h)
}

/// Gauss-Newton Hessian of -log p at v (J^T J + prior curvature + ridge), row-major, and
/// the gradient J^T r - grad Q. Needs `linearise` at v first (s.r, s.jac).
fn normal_equations(
    target: &StarTarget,
    v: &[f64; D],
    s: &ModeScratch,
) -> ([f64; D * D], [f64; D]) {
    let m = target.n_measurements();
    let (gq, hq) = prior_derivatives(target, v);
    let mut hess = jtj(s, m);
    let mut grad = [0f64; D];
    for k in 0..m {
        let jr = &s.jac[k * D..(k + 1) * D];
        for a in 0..D {
            grad[a] += jr[a] * s.r[k];
        }
    }
    for a in 0..D {
        grad[a] -= gq[a];
        for b in 0..D {
            hess[a * D + b] += hq[a][b];
        }
        hess[a * D + a] += RIDGE[a];
    }
    (hess, grad)
}

/// J^T J of the `m` residuals in the scratch, row-major.
fn jtj(s: &ModeScratch, m: usize) -> [f64; D * D] {
    let mut h = [0f64; D * D];
    for k in 0..m {
        let jr = &s.jac[k * D..(k + 1) * D];
        for a in 0..D {
            for b in 0..D {
                h[a * D + b] += jr[a] * jr[b];
            }
        }
    }
    h
}

/// Inverse of a row-major symmetric positive-definite matrix, as rows (None if it is not
/// positive definite).
fn inverse_rows(h: &[f64; D * D]) -> Option<[[f64; D]; D]> {
    let inv = spd_inverse(h, D)?;
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| inv[i * D + j])
    }))
}

/// The damped Gauss-Newton step -(H + lambda diag H)^-1 g, shrunk into the trust region.
fn damped_step(hess: &[f64; D * D], grad: &[f64; D], lambda: f64) -> Option<[f64; D]> {
    let mut a = *hess;
    for i in 0..D {
        a[i * D + i] *= 1.0 + lambda;
    }
    if !cholesky(&mut a, D) {
        return None;
    }
    let mut step: [f64; D] = std::array::from_fn(|i| -grad[i]);
    cholesky_solve(&a, D, &mut step);
    let shrink = (0..D)
        .map(|i| (step[i].abs() / MAX_STEP[i]).max(1.0))
        .fold(1.0, f64::max);
    step.iter_mut().for_each(|x| *x /= shrink);
    step.iter().all(|x| x.is_finite()).then_some(step)
}

/// Search for a mode from v0. Returns None if v0 is outside the target's support, if the
/// search enters the neighbourhood of a mode in `known` (it would find that mode again),
/// or if the Hessian at the end is not positive definite.
pub fn find_mode(
    target: &StarTarget,
    v0: &[f64; D],
    known: &[Mode],
    s: &mut ModeScratch,
) -> Option<Mode> {
    let (v, lin, iterations) = descend(target, v0, known, s, MAX_ITER, None)?;
    laplace(target, &v, &lin, s, iterations)
}

/// Levenberg-Marquardt from v0 for at most `max_iter` iterations, coordinate `frozen` held
/// fixed; returns the end point, its linearisation and the iterations used. None as for
/// [`find_mode`] (before the Laplace step).
fn descend(
    target: &StarTarget,
    v0: &[f64; D],
    known: &[Mode],
    s: &mut ModeScratch,
    max_iter: usize,
    frozen: Option<usize>,
) -> Option<([f64; D], Linearised, usize)> {
    let mut v = *v0;
    let mut lin = linearise(target, &v, s)?;
    let mut lambda = 1e-3;
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        let (mut hess, mut grad) = normal_equations(target, &v, s);
        if let Some(c) = frozen {
            for k in 0..D {
                hess[c * D + k] = 0.0;
                hess[k * D + c] = 0.0;
            }
            hess[c * D + c] = 1.0;
            grad[c] = 0.0;
        }
        let mut accepted = None;
        for _ in 0..MAX_TRIALS {
            let Some(step) = damped_step(&hess, &grad, lambda) else {
                lambda *= 10.0;
                continue;
            };
            let trial: [f64; D] = std::array::from_fn(|i| v[i] + step[i]);
            let (f, _) = objective(target, &trial, s);
            if f < lin.f {
                lambda = (lambda / 3.0).max(1e-9);
                accepted = Some((trial, f));
                break;
            }
            lambda *= 4.0;
        }
        let Some((trial, f)) = accepted else { break };
        let gain = lin.f - f;
        v = trial;
        if known.iter().any(|m| m.mahalanobis2(&v) < DUPLICATE_M2) {
            return None;
        }
        lin = linearise(target, &v, s)?;
        if gain < F_TOL {
            break;
        }
    }
    Some((v, lin, iterations))
}

/// The Laplace approximation at v (after `linearise` at v).
fn laplace(
    target: &StarTarget,
    v: &[f64; D],
    lin: &Linearised,
    s: &ModeScratch,
    iterations: usize,
) -> Option<Mode> {
    let (hess, _) = normal_equations(target, v, s);
    let cov = inverse_rows(&hess)?;
    let chol = super::student_t::cholesky(&cov)?;
    // the data part alone: J^T J plus the broad ridge
    let mut hd = jtj(s, target.n_measurements());
    for a in 0..D {
        hd[a * D + a] += RIDGE[a];
    }
    let cov_data = inverse_rows(&hd)?;
    Some(Mode {
        v: *v,
        log_post_s: -lin.f,
        chi2: lin.chi2,
        cov,
        cov_data,
        chol,
        iterations,
    })
}

/// The Gauss-Newton covariance of the posterior at any point v (not only at a mode): the
/// local shape used for components added where the mixture under-covers the posterior.
pub fn local_covariance(
    target: &StarTarget,
    v: &[f64; D],
    s: &mut ModeScratch,
) -> Option<[[f64; D]; D]> {
    linearise(target, v, s)?;
    let (hess, _) = normal_equations(target, v, s);
    inverse_rows(&hess)
}

/// Extra starting points across evolutionary states, from a solution v: the same Teff,
/// [M/H] and extinction at other surface gravities, with the distance scaled so that the
/// star's radius over distance, hence its apparent magnitudes, stay the same (R ~ g^-1/2
/// at fixed mass: log10 d shifts by half the change in log g). Scored without the forward
/// model by the prior and the parallax alone (the photometric fit is unchanged to first
/// order), the local maxima of that profile over log g = 0..5 (steps of 0.1) are the
/// dwarf, subgiant and giant solutions a search from v alone would miss. Returns up to
/// `max` of them, best first, at least 0.3 dex in log g from v.
pub fn gravity_profile_starts(target: &StarTarget, v: &[f64; D], max: usize) -> Vec<[f64; D]> {
    const STEPS: usize = 51;
    let mut pts = [[0f64; D]; STEPS];
    let mut score = [f64::NEG_INFINITY; STEPS];
    for k in 0..STEPS {
        let logg = 0.1 * k as f64;
        let mut w = *v;
        w[1] = logg;
        w[5] = v[5] + 0.5 * (v[1] - logg);
        let q = prior_part(target, &w);
        let plx = match target.prep.parallax {
            Some((p, iv)) => -0.5 * (1000.0 / 10f64.powf(w[5]) - p).powi(2) * iv,
            None => 0.0,
        };
        pts[k] = w;
        score[k] = q + plx;
    }
    profile_peaks(&pts, &score, max, |p| (p[1] - v[1]).abs() >= 0.3)
}

/// The local maxima of a profile (points `pts` along a line, scores `score`) that satisfy
/// `far_enough`, best first, up to `max`.
pub(crate) fn profile_peaks(
    pts: &[[f64; D]],
    score: &[f64],
    max: usize,
    far_enough: impl Fn(&[f64; D]) -> bool,
) -> Vec<[f64; D]> {
    let n = pts.len();
    let mut peaks: Vec<usize> = (0..n)
        .filter(|&k| {
            score[k].is_finite()
                && (k == 0 || score[k] >= score[k - 1])
                && (k + 1 == n || score[k] >= score[k + 1])
                && far_enough(&pts[k])
        })
        .collect();
    peaks.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    peaks.into_iter().take(max).map(|k| pts[k]).collect()
}

/// Starts along the temperature-extinction ridge from a mode v: a cool, unreddened star
/// and a hot, reddened one can have nearly the same colours, and a search from v alone
/// finds only one. On a grid of log10 Teff (0.06 dex) over the population's range, with
/// the most probable log g within 0.6 dex of v's (the prior alone) and the prior's typical
/// [M/H] and R_V, A_V, a [M/H] shift and the distance modulus are fitted by weighted
/// linear least squares to the photometry (magnitudes at A_V = 1 and at [M/H] + 0.3 give
/// each band's slopes), then every parameter but Teff is improved by a few search
/// iterations (a profile of the posterior over Teff). The local maxima of that profile at least 0.03 dex from v, best
/// first, are returned (up to `max`). Costs about 25 forward-model evaluations per grid
/// point (13 points).
pub fn temperature_profile_starts(
    target: &StarTarget,
    v: &[f64; D],
    max: usize,
    mags: &mut Vec<f32>,
    scratch: &mut ModeScratch,
) -> Vec<[f64; D]> {
    const STEP: f64 = 0.06;
    const PROFILE_ITER: usize = 3;
    const MH_STEP: f64 = 0.3;
    let (lo, hi) = target.prior.base.log_teff_range();
    // the nuisance parameters start from the prior's typical values, not from v's (a
    // search that went wrong often ends at an extreme [M/H] or R_V)
    let cfg = &target.prior.base.config;
    let mh0 = cfg
        .mh_mixture
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(0.0, |c| c.1);
    let mut pts: Vec<[f64; D]> = Vec::new();
    let mut lt = lo + 0.5 * STEP;
    while lt < hi {
        if let Some(logg) = likely_logg(target, lt, v[1], mh0) {
            pts.push([lt, logg, mh0, 0.0, cfg.rv_mean, 1.0]);
        }
        lt += STEP;
    }
    let nb = target.prep.bands.len();
    if pts.is_empty() || nb < 2 {
        return Vec::new();
    }
    // magnitudes at 10 pc at A_V = 0, at A_V = 1 and at [M/H] + 0.3: linear slopes
    let th: Vec<Theta> = pts
        .iter()
        .flat_map(|p| {
            [(0.0, 0.0), (1.0, 0.0), (0.0, MH_STEP)]
                .map(|(av, dm)| theta_of_s(&[p[0], p[1], p[2] + dm, av, p[4], p[5]]))
        })
        .collect();
    mags.resize(th.len() * nb, 0f32);
    target.fm.magnitudes_many(&th, &target.prep.bands, mags);
    // (starts inside the distance prior's support: one outside it could not move)
    let (d_lo, d_hi) = (cfg.distance_min_pc.log10(), cfg.distance_max_pc.log10());
    for (k, p) in pts.iter_mut().enumerate() {
        let row = |j: usize| &mags[(3 * k + j) * nb..(3 * k + j + 1) * nb];
        let (av, dmh, mu) = fit_extinction_metallicity_modulus(target, row(0), row(1), row(2));
        p[2] += dmh;
        p[3] = av;
        p[5] = (1.0 + mu / 5.0).clamp(d_lo + 1e-6, d_hi - 1e-6);
    }
    // the profile: a few iterations of the search at each fixed Teff
    let score: Vec<f64> = pts
        .iter_mut()
        .map(
            |p| match descend(target, p, &[], scratch, PROFILE_ITER, Some(0)) {
                Some((w, lin, _)) => {
                    *p = w;
                    -lin.f
                }
                None => f64::NEG_INFINITY,
            },
        )
        .collect();
    profile_peaks(&pts, &score, max, |p| (p[0] - v[0]).abs() >= 0.03)
}

/// The log g of highest prior density at (log10 Teff, [M/H]) within 0.6 dex of `logg`.
pub(crate) fn likely_logg(target: &StarTarget, lt: f64, logg: f64, mh: f64) -> Option<f64> {
    (-12..=12)
        .map(|k| logg + 0.05 * k as f64)
        .map(|g| (g, target.prior.log_prob_x(lt, g, mh)))
        .filter(|a| a.1.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|a| a.0)
}

/// Weighted least squares of the observed minus model magnitudes (at A_V = 0, 10 pc) on
/// A_V k_b + dmh l_b + mu, with slopes k_b = m(A_V = 1) - m(A_V = 0) and
/// l_b = (m([M/H] + 0.3) - m) / 0.3: returns (A_V in [0, 10], dmh in [-1, 1], mu).
fn fit_extinction_metallicity_modulus(
    target: &StarTarget,
    m0: &[f32],
    m1: &[f32],
    m2: &[f32],
) -> (f64, f64, f64) {
    let solve = |use_av: bool| -> Option<[f64; 3]> {
        let mut a = [0f64; 9];
        let mut b = [0f64; 3];
        for j in 0..m0.len() {
            let w = target.prep.inv_var[j] as f64;
            let x = [
                if use_av { (m1[j] - m0[j]) as f64 } else { 0.0 },
                (m2[j] - m0[j]) as f64 / 0.3,
                1.0,
            ];
            let r = (target.prep.mags[j] - m0[j]) as f64;
            if !(x.iter().all(|v| v.is_finite()) && r.is_finite()) {
                continue;
            }
            for p in 0..3 {
                b[p] += w * x[p] * r;
                for q in 0..3 {
                    a[p * 3 + q] += w * x[p] * x[q];
                }
            }
        }
        // a small ridge keeps a band set too small for three slopes solvable
        a[0] += 1e-3;
        a[4] += 1e-3;
        cholesky(&mut a, 3).then(|| {
            cholesky_solve(&a, 3, &mut b);
            b
        })
    };
    match solve(true) {
        Some([av, dmh, mu]) if av >= 0.0 => (av.min(10.0), dmh.clamp(-1.0, 1.0), mu),
        _ => match solve(false) {
            Some([_, dmh, mu]) => (0.0, dmh.clamp(-1.0, 1.0), mu),
            None => (0.0, 0.0, 0.0),
        },
    }
}

/// Indices of up to `max` samples to start searches from: the highest log targets, each
/// at least one unit away from those already picked in the scaled metric `START_SCALE`
/// (so that a dwarf and a giant, or two ends of the Teff-extinction ridge, both start a
/// search).
pub fn select_starts(v: &[[f64; D]], log_target: &[f64], max: usize) -> Vec<usize> {
    /// Distance scales of distinct starts: 0.02 dex Teff, 0.3 in log g and [M/H], 0.15 mag
    /// in A_V, 0.5 in R_V, 0.05 dex distance.
    const START_SCALE: [f64; D] = [0.02, 0.3, 0.3, 0.15, 0.5, 0.05];
    let mut order: Vec<usize> = (0..v.len())
        .filter(|&i| log_target[i].is_finite())
        .collect();
    order.sort_by(|&a, &b| log_target[b].total_cmp(&log_target[a]));
    let mut picked: Vec<usize> = Vec::with_capacity(max);
    for i in order {
        if picked.len() >= max {
            break;
        }
        let distinct = picked.iter().all(|&j| {
            (0..D)
                .map(|d| ((v[i][d] - v[j][d]) / START_SCALE[d]).powi(2))
                .sum::<f64>()
                > 1.0
        });
        if distinct {
            picked.push(i);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::{NoiseModel, PreparedStar, StarObs};
    use crate::physics::ForwardModel;
    use crate::posterior::coords::s_of;
    use crate::posterior::noise_free_star;
    use crate::prior::Prior;

    const BANDS: [&str; 6] = [
        "gaia_g", "gaia_bp", "gaia_rp", "tmass_j", "tmass_ks", "wise_w1",
    ];

    fn star(fm: &ForwardModel, truth: &Theta, err: f32) -> StarObs {
        noise_free_star(fm, truth, &BANDS, err, Some(0.02))
    }

    /// From a start well off the truth, the search reaches a point of higher posterior
    /// density than the truth's (noise-free data: the mode is near the truth), and its
    /// Laplace covariance matches the curvature seen by finite differences of log p.
    #[test]
    fn finds_the_mode_of_noise_free_data_and_its_curvature() {
        let fm = ForwardModel::embedded();
        let prior = Prior::default_embedded();
        let noise = NoiseModel::default_for(fm);
        let truth = Theta {
            teff: 5600.0,
            logg: 4.4,
            mh: -0.1,
            av: 0.4,
            rv: 3.1,
            distance: 300.0,
        };
        let obs = star(fm, &truth, 0.01);
        let prep = PreparedStar::new(&obs, &noise);
        let target = StarTarget {
            fm,
            prior: crate::prior::StarPrior::population(prior),
            prep: &prep,
        };
        let start = s_of(&Theta {
            teff: 6400.0,
            logg: 4.0,
            av: 1.2,
            distance: 380.0,
            ..truth
        });
        let mut s = ModeScratch::default();
        let m = find_mode(&target, &start, &[], &mut s).expect("a mode");
        let mut mags = Vec::new();
        let at_truth = target.log_post_s(&s_of(&truth), &mut mags);
        assert!(
            m.log_post_s >= at_truth - 1e-3,
            "mode {} < truth {at_truth}",
            m.log_post_s
        );
        let t = theta_of_s(&m.v);
        assert!((t.teff - truth.teff).abs() < 150.0, "mode {t:?}");
        assert!(
            (t.distance / truth.distance - 1.0).abs() < 0.03,
            "mode {t:?}"
        );
        // the covariance: one conditional sigma along log10 Teff (the others held) drops
        // log p by about 0.5
        let flat: Vec<f64> = m.cov.iter().flatten().copied().collect();
        let precision = spd_inverse(&flat, D).unwrap();
        let sd = (1.0 / precision[0]).sqrt();
        let mut w = m.v;
        w[0] += sd;
        let drop = m.log_post_s - target.log_post_s(&w, &mut mags);
        assert!(
            drop > 0.2 && drop < 1.5,
            "drop over one sigma {drop} (sd {sd})"
        );
        // a second search from near the mode is recognised as a duplicate
        let near: [f64; D] = std::array::from_fn(|i| m.v[i] + 0.5 * m.cov[i][i].sqrt());
        assert!(find_mode(&target, &near, std::slice::from_ref(&m), &mut s).is_none());
        assert!(m.log_mass().is_finite());
    }

    #[test]
    fn starts_are_distinct_and_best_first() {
        let v = vec![
            [3.7, 4.4, 0.0, 0.0, 0.0, 2.5],
            [3.701, 4.41, 0.0, 0.0, 0.0, 2.5],
            [3.7, 2.5, 0.0, 0.0, 0.0, 3.3],
        ];
        let lt = [-10.0, -5.0, -20.0];
        assert_eq!(select_starts(&v, &lt, 3), vec![1, 2]);
        assert_eq!(
            select_starts(&v, &[f64::NEG_INFINITY; 3], 3),
            Vec::<usize>::new()
        );
    }
}
