//! Gaia (E)DR3 parallax zero point of Lindegren et al. (2021, A&A 649, A4, "Gaia Early
//! Data Release 3: Parallax bias versus magnitude, colour, and position"), a port of the
//! reference implementation `zero_point.zpt.get_zpt` (PyPI `gaiadr3-zeropoint` 0.1.0).
//!
//! Sign convention (Lindegren's): corrected parallax = parallax - Z, with Z mostly negative
//! (Gaia parallaxes are too small). Pure std so that it can be tested alone with `rustc`.
//!
//! Out of the recipe's stated validity range (6 < G < 21, 1.1 < nu_eff < 1.9 for 5-parameter,
//! 1.24 < pseudocolour < 1.72 for 6-parameter solutions) the reference warns and still
//! returns a number; so does this module, with the same number: G is clamped to the table
//! ends (6..21), the pseudocolour basis saturates at 1.24 and 1.72, and the nu_eff basis
//! extrapolates linearly below 1.24 and above 1.72 (the reference does not clamp at 1.1/1.9).

/// Global DR3 offset used when the recipe's columns are absent: -0.017 mas (Lindegren et al.
/// 2021, median quasar parallax).
pub(crate) const DR3_GLOBAL_ZERO_POINT_MAS: f64 = -0.017;

/// Gaia DR2 global offset: -0.029 mas (Lindegren et al. 2018, quasars).
pub(crate) const DR2_GLOBAL_ZERO_POINT_MAS: f64 = -0.029;

/// Inputs of the Lindegren et al. (2021) recipe for one source (Gaia archive column names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ZeroPointInput {
    /// `phot_g_mean_mag` \[mag\].
    pub(crate) g_mag: f64,
    /// `nu_eff_used_in_astrometry` [1/µm]; used by 5-parameter solutions only.
    pub(crate) nu_eff_used_in_astrometry: f64,
    /// `pseudocolour` [1/µm]; used by 6-parameter solutions only.
    pub(crate) pseudocolour: f64,
    /// `ecl_lat`, ecliptic latitude \[deg\].
    pub(crate) ecl_lat_deg: f64,
    /// `astrometric_params_solved`: 31 (5-parameter), 95 (6-parameter), 3 (2-parameter).
    pub(crate) astrometric_params_solved: i64,
}

/// Z in mas, in Lindegren's sign convention: corrected parallax = parallax - Z.
///
/// Returns None where the recipe is undefined: 2-parameter solutions (params_solved not
/// 31/95), or a non-finite G, ecliptic latitude or colour of the solution type (nu_eff for
/// 31, pseudocolour for 95; the other colour is ignored and may be NaN).
pub(crate) fn lindegren2021_zero_point(x: &ZeroPointInput) -> Option<f64> {
    let z_uas = match x.astrometric_params_solved {
        31 => Z5.eval(x.g_mag, x.nu_eff_used_in_astrometry, x.ecl_lat_deg),
        95 => Z6.eval(x.g_mag, x.pseudocolour, x.ecl_lat_deg),
        _ => None,
    }?;
    Some(round_like_reference(z_uas * 0.001))
}

/// The reference returns `np.round(z_mas, 6)`; rounding the same way (half to even at
/// 1e-6 mas, far below the recipe's accuracy) keeps the two in exact agreement.
fn round_like_reference(z_mas: f64) -> f64 {
    (z_mas * 1e6).round_ties_even() / 1e6
}

/// Coefficients q_jk(G) of one solution type: Z = sum_i q_i(G) c_{j_i}(colour) b_{k_i}(beta),
/// in µas, with q linear in G between the N table nodes.
struct Table<const N: usize, const M: usize> {
    /// G nodes [mag], increasing.
    g: [f64; N],
    /// Colour basis index j of each coefficient column (see [`colour_basis`]).
    colour_basis: [usize; M],
    /// Latitude basis index k of each coefficient column (see [`beta_basis`]).
    beta_basis: [usize; M],
    /// q_jk [µas] per G node (rows) and column.
    q: [[f64; M]; N],
}

impl<const N: usize, const M: usize> Table<N, M> {
    /// Z [µas] for one source, None for non-finite inputs (the reference gives NaN).
    fn eval(&self, g_mag: f64, colour: f64, ecl_lat_deg: f64) -> Option<f64> {
        if !(g_mag.is_finite() && colour.is_finite() && ecl_lat_deg.is_finite()) {
            return None;
        }
        let c = colour_basis(colour);
        let b = beta_basis(ecl_lat_deg.to_radians().sin());
        let (ig, h) = self.g_bin(g_mag);
        let (lo, hi) = (&self.q[ig], &self.q[ig + 1]);
        let mut z = 0.0;
        for i in 0..M {
            let q = (1.0 - h) * lo[i] + h * hi[i];
            z += q * c[self.colour_basis[i]] * b[self.beta_basis[i]];
        }
        Some(z)
    }

    /// Lower node index and weight of G between nodes ig and ig + 1. As in the reference
    /// (`np.digitize`, then clamps), the end intervals are used outside the table and the
    /// weight is clamped to 0..1, so G is effectively clamped to the node range.
    fn g_bin(&self, g_mag: f64) -> (usize, f64) {
        let at_or_below = self.g.iter().filter(|&&node| node <= g_mag).count();
        let ig = at_or_below.saturating_sub(1).min(N - 2);
        let h = (g_mag - self.g[ig]) / (self.g[ig + 1] - self.g[ig]);
        (ig, h.clamp(0.0, 1.0))
    }
}

/// Colour basis c_j, j = 0..4 (Lindegren et al. 2021, Appendix A): c_1 and c_2 saturate outside
/// 1.24..1.72, c_3 and c_4 are linear beyond those ends (used by z5 only).
fn colour_basis(colour: f64) -> [f64; 5] {
    [
        1.0,
        (colour - 1.48).clamp(-0.24, 0.24),
        (1.48 - colour).clamp(0.0, 0.24).powi(3),
        (colour - 1.24).min(0.0),
        (colour - 1.72).max(0.0),
    ]
}

/// Latitude basis b_k, k = 0..2, in sin(beta) (Lindegren et al. 2021, Appendix A).
fn beta_basis(sin_beta: f64) -> [f64; 3] {
    [1.0, sin_beta, sin_beta * sin_beta - 1.0 / 3.0]
}

// Published coefficients of Lindegren et al. (2021, A&A 649, A4, Appendix A), as shipped with
// the reference implementation; regenerate, never hand-edit.
// BEGIN GENERATED by scripts/lindegren2021_fixtures.py (gaiadr3-zeropoint==0.1.0)
/// 5-parameter solutions (z5_200720.txt), colour = nu_eff_used_in_astrometry.
const Z5: Table<13, 8> = Table {
    g: [
        6.0, 10.8, 11.2, 11.8, 12.2, 12.9, 13.1, 15.9, 16.1, 17.5, 19.0, 20.0, 21.0,
    ],
    colour_basis: [0, 0, 0, 1, 1, 2, 3, 4],
    beta_basis: [0, 1, 2, 0, 1, 0, 0, 0],
    q: [
        [-26.98, -9.62, 27.4, -25.1, -0.0, -1257.0, 0.0, 0.0],
        [-27.23, -3.07, 23.04, 35.3, 15.7, -1257.0, 0.0, 0.0],
        [-30.33, -9.23, 9.08, -88.4, -11.8, -1257.0, 0.0, 0.0],
        [-33.54, -10.08, 13.28, -126.7, 11.6, -1257.0, 0.0, 0.0],
        [-13.65, -0.07, 9.35, -111.4, 40.6, -1257.0, 0.0, 0.0],
        [-19.53, -1.64, 15.86, -66.8, 20.6, -1257.0, 0.0, 0.0],
        [-37.99, 2.63, 16.14, -5.7, 14.0, -1257.0, 107.9, 104.3],
        [-38.33, 5.61, 15.42, 0.0, 18.7, -1189.0, 243.8, 155.2],
        [-31.05, 2.83, 8.59, 0.0, 15.5, -1404.0, 105.5, 170.7],
        [-29.18, -0.09, 2.41, 0.0, 24.5, -1165.0, 189.7, 325.0],
        [-18.4, 5.98, -6.46, 0.0, 5.5, 0.0, 0.0, 276.6],
        [-12.65, -4.57, -7.46, 0.0, 97.9, 0.0, 0.0, 0.0],
        [-18.22, -15.24, -18.54, 0.0, 128.2, 0.0, 0.0, 0.0],
    ],
};

/// 6-parameter solutions (z6_200720.txt), colour = pseudocolour.
const Z6: Table<13, 7> = Table {
    g: [
        6.0, 10.8, 11.2, 11.8, 12.2, 12.9, 13.1, 15.9, 16.1, 17.5, 19.0, 20.0, 21.0,
    ],
    colour_basis: [0, 0, 0, 1, 1, 1, 2],
    beta_basis: [0, 1, 2, 0, 1, 2, 0],
    q: [
        [-27.85, -7.78, 27.47, -32.1, 14.4, 9.5, -67.0],
        [-28.91, -3.57, 22.92, 7.7, 12.6, 1.6, -572.0],
        [-26.72, -8.74, 9.36, -30.3, 5.6, 17.2, -1104.0],
        [-29.04, -9.69, 13.63, -49.4, 36.3, 17.7, -1129.0],
        [-12.39, -2.16, 10.23, -92.6, 19.8, 27.6, -365.0],
        [-18.99, -1.93, 15.9, -57.2, -8.0, 19.9, -554.0],
        [-38.29, 2.59, 16.2, -10.5, 1.4, 0.4, -960.0],
        [-36.83, 4.2, 15.76, 22.3, 11.1, 10.0, -1367.0],
        [-28.37, 1.99, 9.28, 50.4, 17.2, 13.7, -1351.0],
        [-24.68, -1.37, 3.52, 86.8, 19.8, 21.3, -1380.0],
        [-15.32, 4.01, -6.03, 29.2, 14.1, 0.4, -563.0],
        [-13.73, -10.92, -8.3, -74.4, 196.4, -42.0, 536.0],
        [-29.53, -20.34, -18.74, -39.5, 326.8, -262.3, 1598.0],
    ],
};
// END GENERATED

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/lindegren2021_zero_point.csv");

    /// (input, reference zpt_mas, reference zpt_strict_mas) per fixture row; an empty field
    /// is NaN (input) or None (reference result).
    fn rows() -> Vec<(ZeroPointInput, Option<f64>, Option<f64>)> {
        let t = crate::util::csv::TextTable::parse("fixture", FIXTURE.as_bytes()).unwrap();
        assert_eq!(t.names()[0], "phot_g_mean_mag");
        let col = |n: &str| t.f64s(n, false).unwrap();
        let opt = |n: &str| -> Vec<Option<f64>> {
            col(n)
                .into_iter()
                .map(|x| x.is_finite().then_some(x))
                .collect()
        };
        let (g, nu, pc, lat) = (
            col("phot_g_mean_mag"),
            col("nu_eff_used_in_astrometry"),
            col("pseudocolour"),
            col("ecl_lat"),
        );
        let solved = t.i64s("astrometric_params_solved").unwrap();
        let (zpt, strict) = (opt("zpt_mas"), opt("zpt_strict_mas"));
        (0..t.len())
            .map(|i| {
                let x = ZeroPointInput {
                    g_mag: g[i],
                    nu_eff_used_in_astrometry: nu[i],
                    pseudocolour: pc[i],
                    ecl_lat_deg: lat[i],
                    astrometric_params_solved: solved[i].unwrap(),
                };
                (x, zpt[i], strict[i])
            })
            .collect()
    }

    #[test]
    fn matches_reference_implementation() {
        let rows = rows();
        assert!(rows.len() > 500);
        let mut max_diff = 0.0_f64;
        for (x, want, _) in &rows {
            let got = lindegren2021_zero_point(x);
            assert_eq!(got.is_some(), want.is_some(), "{x:?}: {got:?} vs {want:?}");
            if let (Some(g), Some(w)) = (got, want) {
                max_diff = max_diff.max((g - w).abs());
            }
        }
        // Both round to 1e-6 mas from float64 sums of the same terms.
        assert!(max_diff <= 1e-9, "max |Rust - reference| = {max_diff} mas");
    }

    #[test]
    fn strict_reference_agrees_inside_validity_range() {
        for (x, want, strict) in rows() {
            if strict.is_some() {
                assert_eq!(strict, want, "{x:?}");
            }
        }
    }

    fn input(g_mag: f64, nu_eff: f64, pc: f64, lat: f64, params: i64) -> ZeroPointInput {
        ZeroPointInput {
            g_mag,
            nu_eff_used_in_astrometry: nu_eff,
            pseudocolour: pc,
            ecl_lat_deg: lat,
            astrometric_params_solved: params,
        }
    }

    #[test]
    fn undefined_cases_are_none() {
        let none = |x: ZeroPointInput| assert_eq!(lindegren2021_zero_point(&x), None, "{x:?}");
        for params in [3, 0, 7, 30, 96, -31] {
            none(input(15.0, 1.5, 1.5, 10.0, params));
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            none(input(bad, 1.5, 1.5, 10.0, 31));
            none(input(15.0, bad, 1.5, 10.0, 31));
            none(input(15.0, 1.5, 1.5, bad, 31));
            none(input(bad, 1.5, 1.5, 10.0, 95));
            none(input(15.0, 1.5, bad, 10.0, 95));
            none(input(15.0, 1.5, 1.5, bad, 95));
        }
    }

    #[test]
    fn unused_colour_is_ignored() {
        let z5 = lindegren2021_zero_point(&input(15.0, 1.5, f64::NAN, 10.0, 31));
        let z6 = lindegren2021_zero_point(&input(15.0, f64::NAN, 1.5, 10.0, 95));
        assert!(z5.is_some() && z6.is_some());
        assert_eq!(
            z5,
            lindegren2021_zero_point(&input(15.0, 1.5, 9.0, 10.0, 31))
        );
        assert_eq!(
            z6,
            lindegren2021_zero_point(&input(15.0, 9.0, 1.5, 10.0, 95))
        );
    }
}
