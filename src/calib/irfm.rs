//! Calibration step, anchor of the Teff scale: IRFM colour-Teff relations of Casagrande et
//! al. (2021, MNRAS 507, 2684) for Gaia DR2 and 2MASS photometry, applied to the benchmark
//! stars' own photometry with their reddening prior, label log g and [M/H].
//!
//! The relations are calibrated on infrared-flux-method temperatures (their zero point is
//! tied to interferometric angular diameters), not on any spectroscopic survey, so they give
//! the fit a Teff scale that none of the label sources owns. Coefficients, extinction
//! coefficients (Fitzpatrick 1999 renormalised as Schlafly & Finkbeiner 2011), validity
//! ranges and the DR2 G-magnitude correction (Maiz Apellaniz & Weiler 2018) are those
//! published with the paper (table of coefficients as distributed in its `colte` code, Gaia
//! DR2 set); this is an independent implementation of the formulae.
//!
//! Only the four colours involving BP-RP and Ks are used: BP-RP is available for every
//! star, and the Ks colours are the least sensitive to metallicity and reddening.

use super::data::LabelledStar;
use crate::physics::ForwardModel;

/// Colour-Teff polynomial coefficients (Gaia DR2 set). Teff = c0 + c1 X + c2 X^2 + c3 X^3 +
/// c4 X^5 + logg (c5 + c6 X + c7 X^2 + c8 X^3 + c9 X^5) + [Fe/H] (c10 + c11 X + c12 X^2 +
/// c13 X^3) + c14 [Fe/H] logg X.
const COEF: [[f64; 15]; 4] = [
    // BP-RP
    [
        7928.0505, -3663.1140, 803.3017, -9.3727, 0.0, 325.1324, -500.1160, 279.4832, -53.5062,
        0.0, -2.4205, -128.0354, 49.4933, 5.9146, 41.3650,
    ],
    // BP-Ks
    [
        8404.4760, -2265.1355, 403.4693, -27.9056, 0.0, 193.5820, -145.3724, 47.7998, -6.4572, 0.0,
        -34.5438, -130.2559, 52.6470, -4.4777, 15.8249,
    ],
    // RP-Ks
    [
        8940.4628, -4450.6138, 1138.6816, 0.0, -10.5749, 0.0, -42.3037, 33.3365, 0.0, -3.2535, 0.0,
        41.0402, 0.0, 0.0, -21.9922,
    ],
    // G-Ks
    [
        8103.2039, -1857.7194, 0.0, 73.1834, -1.7576, 236.0335, -345.9070, 170.4915, -28.8549, 0.0,
        -131.4548, 49.6232, 0.0, 0.0, 10.0777,
    ],
];
/// Validity range of each colour (dereddened) for dwarfs (log g > 3.2) and giants.
const RANGE_DWARF: [(f64, f64); 4] = [(0.20, 2.00), (0.30, 4.20), (0.20, 1.85), (0.20, 2.80)];
const RANGE_GIANT: [(f64, f64); 4] = [(0.20, 2.55), (0.30, 5.30), (0.20, 2.70), (0.20, 3.90)];
/// log g separating the dwarf and giant validity ranges of the relations.
const RANGE_LOGG: f64 = 3.2;
/// Ks extinction coefficient A_Ks / E(B-V).
const R_KS: f64 = 0.306;
/// Quality limits of the relations' input photometry: brightest BP/RP, G and Ks, largest Ks
/// error (saturation and faint 2MASS photometry).
const MIN_BP_RP: f64 = 5.0;
const MIN_G: f64 = 6.0;
const MIN_KS: f64 = 4.2;
const MAX_KS_ERR: f64 = 0.05;

/// IRFM Teff of one star from its photometry.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub(crate) struct IrfmTeff {
    /// Weighted mean over the usable colours \[K\].
    pub(crate) teff: f64,
    /// Its 1-sigma error \[K\]: the colours' errors (photometry, reddening, relation) treated
    /// as fully correlated (weighted RMS of the per-colour errors).
    pub(crate) sigma: f64,
    /// Colours used.
    pub(crate) n_colours: usize,
}

/// Settings of the anchor sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IrfmSettings {
    /// Largest reddening prior E(B-V) of an anchor star \[mag\].
    pub(crate) max_ebv: f64,
    /// Scatter of the relations about IRFM Teff per colour \[K\].
    pub(crate) sigma_relation: f64,
}

/// Extinction coefficients R = A / E(B-V) of G, BP, RP at intrinsic colour `c` (BP-RP).
fn gaia_r(c: f64) -> (f64, f64, f64) {
    let rg = 2.608 - 0.468 * c + 0.048 * c * c;
    let rb = 3.007 - 0.099 * c - 0.212 * c * c + 0.069 * c * c * c;
    let rr = 1.702 - 0.060 * c;
    (rg, rb, rr)
}

/// Teff of colour `k` at dereddened colour x, and dTeff/dx.
fn relation(k: usize, x: f64, logg: f64, feh: f64) -> (f64, f64) {
    let c = &COEF[k];
    let (x2, x3, x5) = (x * x, x * x * x, x.powi(5));
    let t = c[0]
        + c[1] * x
        + c[2] * x2
        + c[3] * x3
        + c[4] * x5
        + logg * (c[5] + c[6] * x + c[7] * x2 + c[8] * x3 + c[9] * x5)
        + feh * (c[10] + c[11] * x + c[12] * x2 + c[13] * x3)
        + c[14] * feh * logg * x;
    let d = c[1]
        + 2.0 * c[2] * x
        + 3.0 * c[3] * x2
        + 5.0 * c[4] * x2 * x2
        + logg * (c[6] + 2.0 * c[7] * x + 3.0 * c[8] * x2 + 5.0 * c[9] * x2 * x2)
        + feh * (c[11] + 2.0 * c[12] * x + 3.0 * c[13] * x2)
        + c[14] * feh * logg;
    (t, d)
}

/// DR2 G corrected as the relations expect (Maiz Apellaniz & Weiler 2018).
fn corrected_dr2_g(g: f64) -> f64 {
    if g < 16.0 {
        g - 0.0032 * (g - 6.0)
    } else {
        g - 0.032
    }
}

/// A band's (magnitude, error) of a star, if measured.
fn mag(star: &LabelledStar, id: Option<usize>) -> Option<(f64, f64)> {
    let id = id?;
    star.phot
        .iter()
        .find(|m| m.band as usize == id)
        .map(|m| (m.mag as f64, m.err as f64))
}

/// IRFM Teff of a star with low reddening (E(B-V) prior with an error, at most `max_ebv`),
/// at its label log g and [M/H]; None if it does not qualify.
pub(crate) fn irfm_teff(
    fm: &ForwardModel,
    star: &LabelledStar,
    s: &IrfmSettings,
) -> Option<IrfmTeff> {
    let (Some(ebv), Some(ebv_err)) = star.ebv else {
        return None;
    };
    let (logg, feh) = (star.labels[1], star.labels[2].max(-4.0));
    if !(0.0..=s.max_ebv).contains(&ebv) || !(0.0..=5.0).contains(&logg) || feh > 0.6 {
        return None;
    }
    let id = |n: &str| fm.bands().id(n).ok();
    let bp = mag(star, id("gaia_dr2_bp")).filter(|m| m.0 >= MIN_BP_RP)?;
    let rp = mag(star, id("gaia_dr2_rp")).filter(|m| m.0 >= MIN_BP_RP)?;
    let g = mag(star, id("gaia_dr2_g")).filter(|m| m.0 >= MIN_G);
    let ks = mag(star, id("tmass_ks")).filter(|m| m.0 >= MIN_KS && m.1 <= MAX_KS_ERR);
    let (rg, rb, rr) = gaia_r(bp.0 - rp.0 - 0.8 * ebv);
    // colour, its photometric error, its reddening coefficient
    let colours: [Option<(f64, f64, f64)>; 4] = [
        Some((bp.0 - rp.0, bp.1.hypot(rp.1), rb - rr)),
        ks.map(|k| (bp.0 - k.0, bp.1.hypot(k.1), rb - R_KS)),
        ks.map(|k| (rp.0 - k.0, rp.1.hypot(k.1), rr - R_KS)),
        g.zip(ks)
            .map(|(g, k)| (corrected_dr2_g(g.0) - k.0, g.1.hypot(k.1), rg - R_KS)),
    ];
    let range = if logg > RANGE_LOGG {
        &RANGE_DWARF
    } else {
        &RANGE_GIANT
    };
    let (mut sw, mut swt, mut swv, mut n) = (0.0, 0.0, 0.0, 0);
    for (k, c) in colours.iter().enumerate() {
        let Some((col, err, r)) = c else { continue };
        let x = col - r * ebv;
        if x < range[k].0 || x > range[k].1 {
            continue;
        }
        let (t, d) = relation(k, x, logg, feh);
        let var = (d * err).powi(2) + (d * r * ebv_err).powi(2) + s.sigma_relation.powi(2);
        if !(t.is_finite() && var.is_finite()) {
            continue;
        }
        sw += 1.0 / var;
        swt += t / var;
        swv += 1.0; // weighted RMS of sigma: sum w var / sum w = n / sum w
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some(IrfmTeff {
        teff: swt / sw,
        sigma: (swv / sw).sqrt(),
        n_colours: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solar_colours_give_solar_teff() {
        // Casagrande et al. 2021 give solar colours BP-RP ~0.82 and G-Ks ~1.40 (M_G 4.67, M_Ks 3.27):
        // the relations must return ~5772 K at solar log g and [Fe/H] for them.
        let (t, d) = relation(0, 0.82, 4.44, 0.0);
        assert!((t - 5772.0).abs() < 80.0, "BP-RP: {t}");
        assert!(d < 0.0);
        let (t, _) = relation(3, 1.40, 4.44, 0.0);
        assert!((t - 5772.0).abs() < 80.0, "G-Ks: {t}");
    }

    #[test]
    fn derivative_matches_finite_difference() {
        for k in 0..4 {
            let (x, h) = (1.2, 1e-6);
            let (_, d) = relation(k, x, 4.0, -0.3);
            let fd =
                (relation(k, x + h, 4.0, -0.3).0 - relation(k, x - h, 4.0, -0.3).0) / (2.0 * h);
            assert!(
                (d - fd).abs() < 1e-3 * fd.abs().max(1.0),
                "colour {k}: {d} vs {fd}"
            );
        }
    }
}
