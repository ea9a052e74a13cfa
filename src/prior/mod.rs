//! The prior p(theta): a sampler and an exact, normalised log density.
//!
//! * (Teff, log g, [M/H]): the MIST stellar population of the forward model's population grid
//!   (Kroupa IMF, constant star formation over 3 Myr - 12.6 Gyr), times a metallicity
//!   distribution, as a trilinear density in x = (log10 Teff, log g, [M/H]) restricted to the
//!   support cells. Integrals and sampling are exact: a cell's mass is the mean of its 8
//!   corner values times its volume, and inside a cell the trilinear density is a mixture of
//!   8 product densities (one per corner) that are sampled with sqrt(U).
//! * A_V: two truncated exponentials on [0, A_V,max] (most stars at low extinction); a star
//!   with a dust-map value gets that times the map's likelihood ([`reddening`], through
//!   [`StarPrior`]).
//! * R_V: normal around 3.1 truncated to G23's range [2.3, 5.6].
//! * distance: exponentially decreasing space density, p(d) ~ d^2 exp(-d / L) on
//!   [d_min, d_max] (Bailer-Jones 2015).
//!
//! The same prior is used in training, importance sampling and the MCMC reference, and
//! its settings are written into every model card.

pub mod reddening;

use crate::physics::{ForwardModel, Theta};
use crate::util::rng::Rng;
use crate::util::special::norm_cdf;
use reddening::{AvPopulation, AvPrior, ReddeningKind};
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_10;

/// Prior settings (serialised into model cards).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PriorConfig {
    /// Metallicity distribution: Gaussian mixture components (weight, mean, sigma).
    pub mh_mixture: Vec<(f64, f64, f64)>,
    /// A_V: mixture of exponentials (weight, mean scale in mag).
    pub av_mixture: Vec<(f64, f64)>,
    /// Upper limit of A_V \[mag\].
    pub av_max: f64,
    /// R_V mean.
    pub rv_mean: f64,
    /// R_V standard deviation (before truncation to [2.3, 5.6]).
    pub rv_sigma: f64,
    /// Length scale L of p(d) ~ d^2 exp(-d/L) \[pc\].
    pub distance_scale_pc: f64,
    /// Smallest distance \[pc\].
    pub distance_min_pc: f64,
    /// Largest distance \[pc\].
    pub distance_max_pc: f64,
    /// Exponent applied to the population density (1 = the physical population; < 1
    /// flattens it, e.g. for training proposals that must also cover rare stars).
    #[serde(default = "one")]
    pub population_temper: f64,
    /// Weight of a log-uniform component on [d_min, d_max] mixed into p(d) (0 = none).
    #[serde(default)]
    pub distance_log_uniform_fraction: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for PriorConfig {
    fn default() -> Self {
        PriorConfig {
            mh_mixture: vec![(0.85, -0.15, 0.30), (0.15, -1.0, 0.60)],
            av_mixture: vec![(0.55, 0.35), (0.45, 2.0)],
            av_max: 10.0,
            rv_mean: 3.1,
            rv_sigma: 0.35,
            distance_scale_pc: 1350.0,
            distance_min_pc: 5.0,
            distance_max_pc: 20_000.0,
            population_temper: 1.0,
            distance_log_uniform_fraction: 0.0,
        }
    }
}

impl PriorConfig {
    /// The broader prior the neural posterior is trained on. Importance weights use the
    /// physical prior, so this only changes how well the flow covers rare stars (giants,
    /// distant and reddened stars, which the physical prior makes a few percent of a
    /// magnitude-limited catalogue), never the posterior it targets.
    pub fn training() -> Self {
        PriorConfig {
            mh_mixture: vec![(0.7, -0.2, 0.35), (0.3, -1.0, 0.7)],
            av_mixture: vec![(0.4, 0.35), (0.6, 2.5)],
            distance_scale_pc: 2000.0,
            distance_log_uniform_fraction: 0.3,
            population_temper: 0.5,
            ..PriorConfig::default()
        }
    }
}

const RV_RANGE: (f64, f64) = (2.3, 5.6);

/// The prior, built from a forward model's population grid.
#[derive(Clone, Debug)]
pub struct Prior {
    /// Settings.
    pub config: PriorConfig,
    axes: [(f64, f64, usize); 3],
    /// Unnormalised density on population nodes (zero outside support is implied by cells).
    node_density: Vec<f64>,
    /// Supported cells: flat index and cumulative mass (for sampling).
    cells: Vec<u32>,
    cum_mass: Vec<f64>,
    support: Vec<u8>,
    log_norm_x: f64,
    av_norm: Vec<f64>,
    /// A_V components as (weight / (scale * truncation mass), scale).
    av_comps: Vec<(f64, f64)>,
    rv_log_norm: f64,
    dist_log_norm: f64,
    extrinsic: ExtrinsicMoments,
}

/// Mean and standard deviation of the population prior's A_V \[mag\] and log10 d \[dex\]
/// (the closed-form distance-extinction conditional's regulariser).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExtrinsicMoments {
    /// A_V mean and standard deviation.
    pub av: (f64, f64),
    /// log10 d mean and standard deviation.
    pub log_d: (f64, f64),
}

/// Mean and standard deviation of a density given by its log on [lo, hi] (midpoint rule).
fn moments_of(log_p: impl Fn(f64) -> f64, lo: f64, hi: f64) -> (f64, f64) {
    const STEPS: usize = 20_000;
    let h = (hi - lo) / STEPS as f64;
    let (mut s0, mut s1, mut s2) = (0.0, 0.0, 0.0);
    for i in 0..STEPS {
        let x = lo + (i as f64 + 0.5) * h;
        let p = log_p(x).exp();
        if p.is_finite() {
            s0 += p;
            s1 += p * x;
            s2 += p * x * x;
        }
    }
    let mean = s1 / s0;
    (mean, (s2 / s0 - mean * mean).max(0.0).sqrt())
}

fn gamma3_lower(x: f64) -> f64 {
    // lower incomplete gamma(3, x) = 2 - e^-x (x^2 + 2x + 2)
    2.0 - (-x).exp() * (x * x + 2.0 * x + 2.0)
}

impl Prior {
    /// Build the prior on `model`'s population grid.
    pub fn new(model: &ForwardModel, config: PriorConfig) -> Prior {
        let pop = model.population();
        let axes = pop.axes();
        let [(_, _, nx), (_, _, ny), (z0, dz, nz)] = axes;
        let dens = pop.density_nodes();
        // metallicity distribution applied at the nodes
        let mh_w: Vec<f64> = (0..nz)
            .map(|k| {
                let z = z0 + dz * k as f64;
                config
                    .mh_mixture
                    .iter()
                    .map(|&(w, m, s)| w * (-0.5 * ((z - m) / s).powi(2)).exp() / s)
                    .sum()
            })
            .collect();
        let mut node_density = vec![0f64; nx * ny * nz];
        for i in 0..nx {
            for j in 0..ny {
                for k in 0..nz {
                    let n = (i * ny + j) * nz + k;
                    node_density[n] =
                        ((dens[n] as f64).max(0.0) * mh_w[k]).powf(config.population_temper);
                }
            }
        }
        let support = pop.support_cells().to_vec();
        let vol = axes[0].1 * axes[1].1 * axes[2].1;
        let mut cells = Vec::new();
        let mut cum_mass = Vec::new();
        let mut total = 0.0;
        for (c, &s) in support.iter().enumerate() {
            if s == 0 {
                continue;
            }
            let m = Self::cell_corner_sum(&node_density, axes, c as u32) / 8.0 * vol;
            if m <= 0.0 {
                continue;
            }
            total += m;
            cells.push(c as u32);
            cum_mass.push(total);
        }
        let av_norm = config
            .av_mixture
            .iter()
            .map(|&(_, s)| 1.0 - (-config.av_max / s).exp())
            .collect();
        let av_total: f64 = config.av_mixture.iter().map(|m| m.0).sum();
        let av_comps = config
            .av_mixture
            .iter()
            .zip(&av_norm)
            .map(|(&(w, s), &z)| (w / av_total / (s * z), s))
            .collect();
        let sig = config.rv_sigma;
        let rv_mass = norm_cdf((RV_RANGE.1 - config.rv_mean) / sig)
            - norm_cdf((RV_RANGE.0 - config.rv_mean) / sig);
        let rv_log_norm = -(sig * (2.0 * std::f64::consts::PI).sqrt() * rv_mass).ln();
        let l = config.distance_scale_pc;
        let dmass =
            gamma3_lower(config.distance_max_pc / l) - gamma3_lower(config.distance_min_pc / l);
        let dist_log_norm = -(l.powi(3) * dmass).ln();
        let mut prior = Prior {
            config,
            axes,
            node_density,
            cells,
            cum_mass,
            support,
            log_norm_x: -total.ln(),
            av_norm,
            av_comps,
            rv_log_norm,
            dist_log_norm,
            extrinsic: ExtrinsicMoments {
                av: (0.0, 1.0),
                log_d: (0.0, 1.0),
            },
        };
        prior.extrinsic = prior.compute_extrinsic_moments();
        prior
    }

    fn compute_extrinsic_moments(&self) -> ExtrinsicMoments {
        let c = &self.config;
        let (lo, hi) = (c.distance_min_pc.log10(), c.distance_max_pc.log10());
        // p(log10 d) = p(d) d ln 10
        let log_d = moments_of(
            |l| self.log_prob_distance(10f64.powf(l)) + l * LN_10 + LN_10.ln(),
            lo,
            hi,
        );
        ExtrinsicMoments {
            av: moments_of(|a| self.log_prob_av(a), 0.0, c.av_max),
            log_d,
        }
    }

    /// Mean and standard deviation of the population's A_V and log10 d.
    pub fn extrinsic_moments(&self) -> ExtrinsicMoments {
        self.extrinsic
    }

    /// The default prior on the embedded forward model (built once).
    pub fn default_embedded() -> &'static Prior {
        static P: std::sync::OnceLock<Prior> = std::sync::OnceLock::new();
        P.get_or_init(|| Prior::new(ForwardModel::embedded_raw(), PriorConfig::default()))
    }

    fn cell_corners(axes: [(f64, f64, usize); 3], c: u32) -> [usize; 8] {
        let (ny, nz) = (axes[1].2, axes[2].2);
        let (cy, cz) = (ny - 1, nz - 1);
        let c = c as usize;
        let (i, j, k) = (c / (cy * cz), (c / cz) % cy, c % cz);
        let mut out = [0usize; 8];
        for (n, o) in out.iter_mut().enumerate() {
            let (a, b, d) = (n >> 2 & 1, n >> 1 & 1, n & 1);
            *o = ((i + a) * ny + (j + b)) * nz + (k + d);
        }
        out
    }

    fn cell_corner_sum(dens: &[f64], axes: [(f64, f64, usize); 3], c: u32) -> f64 {
        Self::cell_corners(axes, c).iter().map(|&n| dens[n]).sum()
    }

    /// Draw one theta.
    pub fn sample(&self, rng: &mut Rng) -> Theta {
        self.sample_with(rng, &AvPrior::Population)
    }

    /// Draw one theta with a star's A_V prior.
    pub fn sample_with(&self, rng: &mut Rng, av: &AvPrior) -> Theta {
        let [lt, logg, mh] = self.sample_x(rng);
        let av = match *av {
            AvPrior::Population => self.sample_av(rng),
            AvPrior::Map {
                kind,
                centre,
                sigma,
                ..
            } => self.av_population().sample(rng, kind, centre, sigma),
        };
        Theta {
            teff: 10f64.powf(lt),
            logg,
            mh,
            av,
            rv: self.sample_rv(rng),
            distance: self.sample_distance(rng),
        }
    }

    /// Draw (log10 Teff, log g, [M/H]) from the population part.
    pub fn sample_x(&self, rng: &mut Rng) -> [f64; 3] {
        let total = *self.cum_mass.last().unwrap();
        let u = rng.uniform() * total;
        let ci = self
            .cum_mass
            .partition_point(|&m| m <= u)
            .min(self.cells.len() - 1);
        let c = self.cells[ci];
        let corners = Self::cell_corners(self.axes, c);
        let v: Vec<f64> = corners.iter().map(|&n| self.node_density[n]).collect();
        let s: f64 = v.iter().sum();
        let mut r = rng.uniform() * s;
        let mut pick = 7;
        for (n, &vn) in v.iter().enumerate() {
            if r < vn {
                pick = n;
                break;
            }
            r -= vn;
        }
        let (cy, cz) = (self.axes[1].2 - 1, self.axes[2].2 - 1);
        let c = c as usize;
        let idx = [c / (cy * cz), (c / cz) % cy, c % cz];
        let bits = [pick >> 2 & 1, pick >> 1 & 1, pick & 1];
        let mut x = [0f64; 3];
        for d in 0..3 {
            // density 2t (bit 1) or 2(1-t) (bit 0) on [0, 1]
            let t = rng.uniform().sqrt();
            let t = if bits[d] == 1 { t } else { 1.0 - t };
            x[d] = self.axes[d].0 + self.axes[d].1 * (idx[d] as f64 + t);
        }
        x
    }

    fn sample_av(&self, rng: &mut Rng) -> f64 {
        let mix = &self.config.av_mixture;
        let total: f64 = mix.iter().map(|m| m.0).sum();
        let mut u = rng.uniform() * total;
        let mut k = mix.len() - 1;
        for (i, m) in mix.iter().enumerate() {
            if u < m.0 {
                k = i;
                break;
            }
            u -= m.0;
        }
        let s = mix[k].1;
        -s * (1.0 - rng.uniform() * self.av_norm[k]).ln()
    }

    fn sample_rv(&self, rng: &mut Rng) -> f64 {
        loop {
            let r = self.config.rv_mean + self.config.rv_sigma * rng.normal();
            if (RV_RANGE.0..=RV_RANGE.1).contains(&r) {
                return r;
            }
        }
    }

    fn sample_distance(&self, rng: &mut Rng) -> f64 {
        let c = &self.config;
        if c.distance_log_uniform_fraction > 0.0 && rng.chance(c.distance_log_uniform_fraction) {
            let (a, b) = (c.distance_min_pc.ln(), c.distance_max_pc.ln());
            return (a + (b - a) * rng.uniform()).exp();
        }
        let l = self.config.distance_scale_pc;
        loop {
            let d = -l * (rng.uniform_open() * rng.uniform_open() * rng.uniform_open()).ln();
            if d >= self.config.distance_min_pc && d <= self.config.distance_max_pc {
                return d;
            }
        }
    }

    /// The population grid's range of log10 Teff (the prior's support lies inside).
    pub fn log_teff_range(&self) -> (f64, f64) {
        let (x0, dx, n) = self.axes[0];
        (x0, x0 + dx * (n - 1) as f64)
    }

    /// log density of (log10 Teff, log g, [M/H]) in x-space; -inf outside the support.
    pub fn log_prob_x(&self, lt: f64, logg: f64, mh: f64) -> f64 {
        let x = [lt, logg, mh];
        let mut idx = [0usize; 3];
        let mut t = [0f64; 3];
        for d in 0..3 {
            let (x0, dx, n) = self.axes[d];
            let r = (x[d] - x0) / dx;
            if !(r >= 0.0 && r <= (n - 1) as f64) {
                return f64::NEG_INFINITY;
            }
            let i = (r.floor() as usize).min(n - 2);
            idx[d] = i;
            t[d] = r - i as f64;
        }
        let (cy, cz) = (self.axes[1].2 - 1, self.axes[2].2 - 1);
        let c = (idx[0] * cy + idx[1]) * cz + idx[2];
        if self.support[c] == 0 {
            return f64::NEG_INFINITY;
        }
        let corners = Self::cell_corners(self.axes, c as u32);
        let mut v = 0.0;
        for (n, &node) in corners.iter().enumerate() {
            let bits = [n >> 2 & 1, n >> 1 & 1, n & 1];
            let mut w = 1.0;
            for d in 0..3 {
                w *= if bits[d] == 1 { t[d] } else { 1.0 - t[d] };
            }
            v += w * self.node_density[node];
        }
        if v > 0.0 {
            v.ln() + self.log_norm_x
        } else {
            f64::NEG_INFINITY
        }
    }

    /// The population A_V prior's components (for the map-value priors).
    pub(crate) fn av_population(&self) -> AvPopulation<'_> {
        AvPopulation {
            comps: &self.av_comps,
            av_max: self.config.av_max,
        }
    }

    /// A star's A_V prior from a map measurement (centre k E and width in A_V); the
    /// population prior where the map factor leaves no mass on [0, A_V,max].
    pub fn av_prior(&self, kind: ReddeningKind, centre: f64, sigma: f64) -> AvPrior {
        let log_norm = self.av_population().log_norm(kind, centre, sigma);
        if log_norm.is_finite() && sigma > 0.0 && centre.is_finite() {
            AvPrior::Map {
                kind,
                centre,
                sigma,
                log_norm,
            }
        } else {
            AvPrior::Population
        }
    }

    /// A star's prior: its map value (if any) turned into an A_V factor by `model`.
    pub fn for_star(
        &self,
        model: &reddening::ReddeningModel,
        map: Option<&reddening::MapReddening>,
    ) -> StarPrior<'_> {
        let av = match map {
            Some(r) => {
                let (kind, centre, sigma) = model.av_measurement(r);
                self.av_prior(kind, centre, sigma)
            }
            None => AvPrior::Population,
        };
        StarPrior { base: self, av }
    }

    /// log p(A_V) under a star's A_V prior [1/mag].
    pub fn log_prob_av_with(&self, av: f64, prior: &AvPrior) -> f64 {
        match *prior {
            AvPrior::Population => self.log_prob_av(av),
            AvPrior::Map {
                kind,
                centre,
                sigma,
                log_norm,
            } => self
                .av_population()
                .log_prob(av, kind, centre, sigma, log_norm),
        }
    }

    /// log p(A_V) [1/mag].
    pub fn log_prob_av(&self, av: f64) -> f64 {
        if !(0.0..=self.config.av_max).contains(&av) {
            return f64::NEG_INFINITY;
        }
        self.av_population().density(av).ln()
    }

    /// log p(R_V).
    pub fn log_prob_rv(&self, rv: f64) -> f64 {
        if !(RV_RANGE.0..=RV_RANGE.1).contains(&rv) {
            return f64::NEG_INFINITY;
        }
        let z = (rv - self.config.rv_mean) / self.config.rv_sigma;
        -0.5 * z * z + self.rv_log_norm
    }

    /// log p(d) [1/pc].
    pub fn log_prob_distance(&self, d: f64) -> f64 {
        if !(d >= self.config.distance_min_pc && d <= self.config.distance_max_pc) {
            return f64::NEG_INFINITY;
        }
        let edsd = 2.0 * d.ln() - d / self.config.distance_scale_pc + self.dist_log_norm;
        let f = self.config.distance_log_uniform_fraction;
        if f > 0.0 {
            let lu = -(d * (self.config.distance_max_pc / self.config.distance_min_pc).ln()).ln();
            let m = edsd.max(lu);
            m + ((1.0 - f) * (edsd - m).exp() + f * (lu - m).exp()).ln()
        } else {
            edsd
        }
    }

    /// log p(theta), the density in the physical parameters (Teff in K, distance in pc).
    pub fn log_prob(&self, t: &Theta) -> f64 {
        self.log_prob_with(t, &AvPrior::Population)
    }

    /// log p(theta) with a star's A_V prior.
    pub fn log_prob_with(&self, t: &Theta, av: &AvPrior) -> f64 {
        if !(t.teff > 0.0) {
            return f64::NEG_INFINITY;
        }
        let lx = self.log_prob_x(t.teff.log10(), t.logg, t.mh);
        if lx == f64::NEG_INFINITY {
            return lx;
        }
        // x uses log10 Teff: p(Teff) = p(x) / (Teff ln 10)
        lx - (t.teff * LN_10).ln()
            + self.log_prob_av_with(t.av, av)
            + self.log_prob_rv(t.rv)
            + self.log_prob_distance(t.distance)
    }
}

/// One star's prior: the population prior with the star's own A_V factor.
#[derive(Clone, Copy, Debug)]
pub struct StarPrior<'a> {
    /// The population prior.
    pub base: &'a Prior,
    /// The star's A_V prior.
    pub av: AvPrior,
}

impl<'a> StarPrior<'a> {
    /// The population prior itself (no map value).
    pub fn population(base: &'a Prior) -> Self {
        StarPrior {
            base,
            av: AvPrior::Population,
        }
    }

    /// log p(theta).
    pub fn log_prob(&self, t: &Theta) -> f64 {
        self.base.log_prob_with(t, &self.av)
    }

    /// Draw one theta.
    pub fn sample(&self, rng: &mut Rng) -> Theta {
        self.base.sample_with(rng, &self.av)
    }

    /// log density of (log10 Teff, log g, [M/H]) (the population part).
    pub fn log_prob_x(&self, lt: f64, logg: f64, mh: f64) -> f64 {
        self.base.log_prob_x(lt, logg, mh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_inside_support_and_finite_density() {
        let p = Prior::default_embedded();
        let fm = ForwardModel::embedded_raw();
        let mut rng = Rng::new(11);
        for _ in 0..2000 {
            let t = p.sample(&mut rng);
            assert!(fm.support(&t), "{t:?}");
            assert!(p.log_prob(&t).is_finite(), "{t:?}");
        }
    }

    #[test]
    fn one_dimensional_factors_integrate_to_one() {
        let train = Prior::new(ForwardModel::embedded_raw(), PriorConfig::training());
        for p in [Prior::default_embedded(), &train] {
            one_dimensional_factors_of(p);
        }
    }

    fn one_dimensional_factors_of(p: &Prior) {
        let integrate = |f: &dyn Fn(f64) -> f64, a: f64, b: f64, n: usize| {
            let h = (b - a) / n as f64;
            (0..n)
                .map(|i| f(a + (i as f64 + 0.5) * h).exp() * h)
                .sum::<f64>()
        };
        let av = integrate(&|x| p.log_prob_av(x), 0.0, 10.0, 200_000);
        let rv = integrate(&|x| p.log_prob_rv(x), 2.3, 5.6, 100_000);
        let d = integrate(&|x| p.log_prob_distance(x), 5.0, 20_000.0, 400_000);
        for (name, v) in [("av", av), ("rv", rv), ("distance", d)] {
            assert!((v - 1.0).abs() < 1e-3, "{name}: {v}");
        }
    }

    #[test]
    fn population_density_integrates_to_one_and_matches_samples() {
        let p = Prior::default_embedded();
        // Monte Carlo over the bounding box: E_uniform[p(x)] * volume = 1
        let [(x0, dx, nx), (y0, dy, ny), (z0, dz, nz)] = p.axes;
        let (lx, ly, lz) = (
            dx * (nx - 1) as f64,
            dy * (ny - 1) as f64,
            dz * (nz - 1) as f64,
        );
        let mut rng = Rng::new(3);
        let n = 400_000;
        let mut acc = 0.0;
        for _ in 0..n {
            let x = [
                x0 + lx * rng.uniform(),
                y0 + ly * rng.uniform(),
                z0 + lz * rng.uniform(),
            ];
            let l = p.log_prob_x(x[0], x[1], x[2]);
            if l.is_finite() {
                acc += l.exp();
            }
        }
        let integral = acc / n as f64 * lx * ly * lz;
        assert!((integral - 1.0).abs() < 0.03, "integral {integral}");
        // fraction of samples with log g < 3.5 equals the density's mass there
        let m = 100_000;
        let frac = (0..m).filter(|_| p.sample_x(&mut rng)[1] < 3.5).count() as f64 / m as f64;
        let mut acc2 = 0.0;
        for _ in 0..n {
            let x = [
                x0 + lx * rng.uniform(),
                y0 + ly * rng.uniform(),
                z0 + lz * rng.uniform(),
            ];
            let l = p.log_prob_x(x[0], x[1], x[2]);
            if l.is_finite() && x[1] < 3.5 {
                acc2 += l.exp();
            }
        }
        let mass = acc2 / n as f64 * lx * ly * lz;
        assert!(
            (frac - mass).abs() < 0.02,
            "giant fraction: samples {frac} vs density {mass}"
        );
    }
}
