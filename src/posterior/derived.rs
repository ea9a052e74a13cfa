//! Derived quantities of one star's weighted samples: radius, mass and luminosity from the
//! same MIST relation the forward model uses for radii, the absolute G magnitude, the
//! extinction in the Gaia passbands (A_G, A_BP, A_RP, E(BP-RP)), and the posterior
//! predictive magnitudes of requested bands (observed or not).
//!
//! Each is a function of theta, so its posterior quantiles are quantiles of the function
//! over draws from theta's posterior: [`DERIVED_DRAWS`] systematic draws from the weighted
//! samples (or chain draws), each distinct sample evaluated once and weighted by its count.
//! Systematic resampling adds little Monte Carlo error at that size (the sampler's n_eff
//! target is 150), and it bounds the cost: a forward-model evaluation per distinct draw
//! instead of per sample (about 1,500 per star) keeps the summaries a few percent of a run.

use super::summary::systematic_indices;
use crate::physics::{ForwardModel, Theta};
use crate::util::rng::Rng;
use crate::util::stats::weighted_quantiles;

/// Draws from the weighted samples per star that the derived quantities are computed on.
pub const DERIVED_DRAWS: usize = 512;

/// Quantile levels of every derived quantity (`_p16 _p50 _p84`).
pub const DERIVED_QUANTILES: [f64; 3] = [0.16, 0.50, 0.84];
/// Column suffixes matching [`DERIVED_QUANTILES`].
pub const DERIVED_SUFFIXES: [&str; 3] = ["p16", "p50", "p84"];
/// Physical quantities, in [`DerivedSummary::physical`] order: radius \[R_sun\], mass
/// \[M_sun\], luminosity \[L_sun\], absolute G magnitude (extinction-free, at 10 pc).
pub const PHYSICAL_NAMES: [&str; 4] = ["radius", "mass", "luminosity", "abs_g"];
/// IAU 2015 nominal solar effective temperature \[K\] (Resolution B3): L = R^2 (Teff/T_sun)^4.
pub const TEFF_SUN: f64 = 5772.0;
/// The band of the absolute magnitude.
pub const ABS_MAG_BAND: &str = "gaia_g";
/// Extinction quantities, in [`DerivedSummary::extinction`] order: A_G, A_BP, A_RP and
/// E(BP-RP) = A_BP - A_RP \[mag\], named as Gaia's GSP-Phot columns (`ag_gspphot`...).
pub const EXTINCTION_NAMES: [&str; 4] = ["ag", "abp", "arp", "ebpminrp"];

/// The Gaia release whose passbands the extinction quantities are in (the run's
/// `[input] gaia_release`: the observed system).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GaiaPassbands {
    /// Gaia DR3 / EDR3 (Riello et al. 2021).
    #[default]
    Dr3,
    /// Gaia DR2 (Evans et al. 2018).
    Dr2,
}

impl GaiaPassbands {
    /// Band names of G, BP and RP in the forward model's registry.
    pub fn band_names(self) -> [&'static str; 3] {
        match self {
            GaiaPassbands::Dr3 => ["gaia_g", "gaia_bp", "gaia_rp"],
            GaiaPassbands::Dr2 => ["gaia_dr2_g", "gaia_dr2_bp", "gaia_dr2_rp"],
        }
    }
}

/// Quantiles of the derived quantities of one star.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedSummary {
    /// p16/p50/p84 of [`PHYSICAL_NAMES`] (NaN where undefined).
    pub physical: [[f32; 3]; 4],
    /// p16/p50/p84 of [`EXTINCTION_NAMES`] (NaN where undefined).
    pub extinction: [[f32; 3]; 4],
    /// p16/p50/p84 of the predicted magnitude of each requested band, in request order.
    pub predicted: Vec<[f32; 3]>,
}

/// Reusable buffers (no allocation per star once warm).
#[derive(Default)]
pub struct DerivedWork {
    kept: Vec<Theta>,
    w: Vec<f64>,
    normalised: Vec<f64>,
    draws: Vec<usize>,
    vals: Vec<f64>,
    mags: Vec<f32>,
    ext: Vec<f32>,
    order: Vec<usize>,
}

/// Luminosity \[L_sun\] of a star of radius `r` \[R_sun\] and temperature `teff` \[K\].
pub fn luminosity_lsun(radius_rsun: f64, teff: f64) -> f64 {
    radius_rsun * radius_rsun * (teff / TEFF_SUN).powi(4)
}

/// Derived quantities of samples `th` with weights `w` (any scale; zero-weight samples take
/// no part); `predict` are band ids, `passbands` the Gaia release of the extinction
/// quantities, `seed` the star's seed.
pub fn derived_summary(
    fm: &ForwardModel,
    th: &[Theta],
    w: &[f64],
    (predict, passbands): (&[usize], GaiaPassbands),
    seed: u64,
    work: &mut DerivedWork,
) -> DerivedSummary {
    draw(th, w, seed, work);
    let mut physical = [[f32::NAN; 3]; 4];
    let mut extinction = [[f32::NAN; 3]; 4];
    if !work.kept.is_empty() {
        physical[1] = quantiles_of(work, |t| 10f64.powf(fm.log_mass(t.teff, t.logg, t.mh)));
        physical[0] = quantiles_of(work, |t| fm.radius_rsun(t.teff, t.logg, t.mh));
        // the radii are still in work.vals: L from them, without another mass lookup
        for (v, t) in work.vals.iter_mut().zip(&work.kept) {
            *v = luminosity_lsun(*v, t.teff);
        }
        physical[2] = weighted(work);
        if let Some(bands) = gaia_band_ids(fm, passbands) {
            (physical[3], extinction) = gaia_quantiles(fm, bands, work);
        }
    }
    let predicted = predicted_quantiles(fm, predict, work);
    DerivedSummary {
        physical,
        extinction,
        predicted,
    }
}

/// The distinct samples among [`DERIVED_DRAWS`] systematic draws into `work.kept`, their
/// counts into `work.w` (nothing when no weight is positive).
fn draw(th: &[Theta], w: &[f64], seed: u64, work: &mut DerivedWork) {
    work.kept.clear();
    work.w.clear();
    let total: f64 = w.iter().filter(|&&x| x > 0.0).sum();
    if !(total > 0.0 && total.is_finite()) {
        return;
    }
    work.normalised.clear();
    work.normalised
        .extend(w.iter().map(|&x| x.max(0.0) / total));
    let u = Rng::for_keys(seed, &[0xDE21]).uniform();
    systematic_indices(&work.normalised, DERIVED_DRAWS, u, &mut work.draws);
    for (k, &i) in work.draws.iter().enumerate() {
        if k > 0 && work.draws[k - 1] == i {
            *work.w.last_mut().unwrap() += 1.0;
        } else {
            work.kept.push(th[i]);
            work.w.push(1.0);
        }
    }
}

/// Weighted quantiles of `f` over the kept samples.
fn quantiles_of(work: &mut DerivedWork, f: impl Fn(&Theta) -> f64) -> [f32; 3] {
    work.vals.clear();
    work.vals.extend(work.kept.iter().map(f));
    weighted(work)
}

fn weighted(work: &mut DerivedWork) -> [f32; 3] {
    let mut q = [0f64; 3];
    weighted_quantiles(
        &work.vals,
        &work.w,
        &DERIVED_QUANTILES,
        &mut q,
        &mut work.order,
    );
    q.map(|x| x as f32)
}

/// Band ids of [`ABS_MAG_BAND`] and of G, BP, RP in `passbands` (None if the model lacks
/// one).
fn gaia_band_ids(fm: &ForwardModel, passbands: GaiaPassbands) -> Option<[usize; 4]> {
    let [g, bp, rp] = passbands.band_names();
    let id = |n: &str| fm.bands().id(n).ok();
    Some([id(ABS_MAG_BAND)?, id(g)?, id(bp)?, id(rp)?])
}

/// The absolute magnitude in [`ABS_MAG_BAND`] (the model magnitude without extinction at
/// 10 pc) and the extinction quantities, from one split forward pass per kept draw:
/// `split_many` gives M_b and A_b with m_b(theta) = M_b + mu + A_b exactly, so A_b is
/// m_b(theta) - m_b(theta at A_V = 0), the full model's (no linear coefficient).
fn gaia_quantiles(
    fm: &ForwardModel,
    bands: [usize; 4],
    work: &mut DerivedWork,
) -> ([f32; 3], [[f32; 3]; 4]) {
    let n = work.kept.len();
    work.mags.resize(n * 4, 0.0);
    work.ext.resize(n * 4, 0.0);
    fm.split_many(&work.kept, &bands, &mut work.mags, &mut work.ext);
    let column = |work: &mut DerivedWork, f: &dyn Fn(&[f32], &[f32]) -> f32| {
        work.vals.clear();
        for i in 0..n {
            let row = 4 * i..4 * i + 4;
            let v = f(&work.mags[row.clone()], &work.ext[row]);
            work.vals.push(v as f64);
        }
        weighted(work)
    };
    let abs_g = column(work, &|m, _| m[0]);
    let ext = [
        column(work, &|_, a| a[1]),
        column(work, &|_, a| a[2]),
        column(work, &|_, a| a[3]),
        column(work, &|_, a| a[2] - a[3]),
    ];
    (abs_g, ext)
}

/// Quantiles of the model magnitudes (extinction and distance included) of every band in
/// `predict`: what the star would show in that band without measurement noise.
fn predicted_quantiles(
    fm: &ForwardModel,
    predict: &[usize],
    work: &mut DerivedWork,
) -> Vec<[f32; 3]> {
    if predict.is_empty() {
        return Vec::new();
    }
    if work.kept.is_empty() {
        return vec![[f32::NAN; 3]; predict.len()];
    }
    let (n, nb) = (work.kept.len(), predict.len());
    work.mags.resize(n * nb, 0.0);
    fm.magnitudes_batch(&work.kept, predict, &mut work.mags);
    (0..nb)
        .map(|k| {
            work.vals.clear();
            work.vals
                .extend((0..n).map(|i| work.mags[i * nb + k] as f64));
            weighted(work)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sun() -> Theta {
        Theta {
            teff: TEFF_SUN,
            logg: 4.438,
            mh: 0.0,
            av: 0.0,
            rv: 3.1,
            distance: 10.0,
        }
    }

    #[test]
    fn the_sun_has_solar_radius_mass_and_luminosity() {
        let fm = ForwardModel::embedded();
        let d = derived_summary(
            fm,
            &[sun()],
            &[1.0],
            (&[], GaiaPassbands::Dr3),
            0,
            &mut DerivedWork::default(),
        );
        let [r, m, l, g] = d.physical.map(|q| q[1] as f64);
        assert!((r - 1.0).abs() < 0.05, "R = {r} R_sun");
        assert!((m - 1.0).abs() < 0.1, "M = {m} M_sun");
        assert!((l - 1.0).abs() < 0.05, "L = {l} L_sun");
        // the calibrated model's solar M_G (about 4.73; Casagrande & VandenBerg 2018: 4.67)
        assert!((g - 4.70).abs() < 0.1, "M_G = {g}");
        assert!(d.predicted.is_empty());
    }

    #[test]
    fn quantiles_follow_the_weights_and_ignore_zero_weight_samples() {
        let fm = ForwardModel::embedded();
        let g = fm.bands().id("gaia_g").unwrap();
        let far = Theta {
            distance: 1000.0,
            ..sun()
        };
        let absurd = Theta {
            distance: 1e5,
            ..sun()
        };
        let th = [sun(), far, absurd];
        let d = derived_summary(
            fm,
            &th,
            &[0.0, 1.0, 0.0],
            (&[g], GaiaPassbands::Dr3),
            0,
            &mut DerivedWork::default(),
        );
        // only the 1 kpc sample counts: m = M + 5 log10(1000/10) = M + 10
        let abs_g = d.physical[3][1];
        let pred = d.predicted[0];
        assert!(
            pred.iter().all(|&p| (p - abs_g - 10.0).abs() < 1e-3),
            "{pred:?} vs {abs_g}"
        );
        // a weighted median between two samples lies between them
        let d = derived_summary(
            fm,
            &th[..2],
            &[1.0, 3.0],
            (&[g], GaiaPassbands::Dr3),
            0,
            &mut DerivedWork::default(),
        );
        let q = d.predicted[0];
        assert!(q[0] <= q[1] && q[1] <= q[2]);
        assert!(
            q[1] > abs_g + 5.0,
            "the heavier 1 kpc sample dominates: {q:?}"
        );
    }

    /// A_b of one theta through the summary, against the forward model's magnitudes with
    /// and without extinction.
    #[test]
    fn extinction_is_the_forward_models_magnitude_difference() {
        let fm = ForwardModel::embedded();
        let summary = |t: Theta, passbands: GaiaPassbands| {
            let d = derived_summary(
                fm,
                &[t],
                &[1.0],
                (&[], passbands),
                0,
                &mut DerivedWork::default(),
            );
            d.extinction.map(|q| q[1])
        };
        // no dust, no extinction
        assert_eq!(summary(sun(), GaiaPassbands::Dr3), [0.0; 4]);
        for passbands in [GaiaPassbands::Dr3, GaiaPassbands::Dr2] {
            let ids = passbands.band_names().map(|n| fm.bands().id(n).unwrap());
            for (teff, av, rv) in [(5772.0, 1.0, 3.1), (4000.0, 2.5, 2.6), (9000.0, 0.3, 4.0)] {
                let t = Theta {
                    teff,
                    av,
                    rv,
                    distance: 800.0,
                    ..sun()
                };
                let (mut m, mut m0) = ([0f32; 3], [0f32; 3]);
                fm.magnitudes(&t, &ids, &mut m).unwrap();
                fm.magnitudes(&Theta { av: 0.0, ..t }, &ids, &mut m0)
                    .unwrap();
                let [ag, abp, arp, e] = summary(t, passbands);
                for (a, k) in [ag, abp, arp].into_iter().zip(0..3) {
                    assert!(
                        (a - (m[k] - m0[k])).abs() < 1e-4,
                        "{passbands:?} {t:?}: {a} vs {}",
                        m[k] - m0[k]
                    );
                }
                assert_eq!(e, abp - arp);
                // bluer bands are extinguished more
                assert!(abp > ag && ag > arp && arp > 0.0, "{ag} {abp} {arp}");
            }
        }
        // the DR2 and DR3 passbands differ, and so do their extinctions
        let t = Theta { av: 2.0, ..sun() };
        assert_ne!(
            summary(t, GaiaPassbands::Dr3),
            summary(t, GaiaPassbands::Dr2)
        );
    }

    #[test]
    fn a_star_without_positive_weights_has_null_quantiles() {
        let fm = ForwardModel::embedded();
        let d = derived_summary(
            fm,
            &[sun()],
            &[0.0],
            (&[0, 1], GaiaPassbands::Dr3),
            0,
            &mut DerivedWork::default(),
        );
        assert!(d.physical.iter().flatten().all(|x| x.is_nan()));
        assert_eq!(d.predicted.len(), 2);
        assert!(d.predicted.iter().flatten().all(|x| x.is_nan()));
    }
}
