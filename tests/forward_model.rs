//! Acceptance checks of the physical forward model (issue 2).

use sedflow::physics::validate::{extinction_errors, leave_out_errors};
use sedflow::physics::{ForwardModel, Theta};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mags(m: &ForwardModel, t: Theta, names: &[&str]) -> Vec<f64> {
    let ids: Vec<usize> = names.iter().map(|n| m.bands().id(n).unwrap()).collect();
    let mut out = vec![0f32; ids.len()];
    m.magnitudes(&t, &ids, &mut out).unwrap();
    out.into_iter().map(|x| x as f64).collect()
}

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
fn sun_at_10pc_matches_reference_photometry() {
    let m = ForwardModel::embedded_raw();
    let v = mags(
        m,
        sun(0.0, 3.1),
        &["gaia_g", "gaia_bp", "gaia_rp", "tmass_ks"],
    );
    assert!((v[0] - 4.67).abs() <= 0.03, "G = {}", v[0]);
    assert!(
        (v[1] - v[2] - 0.82).abs() <= 0.03,
        "BP-RP = {}",
        v[1] - v[2]
    );
    assert!((v[3] - 3.27).abs() <= 0.05, "Ks = {}", v[3]);
}

#[test]
fn sun_extinction_in_g_and_its_rv_dependence() {
    let m = ForwardModel::embedded_raw();
    let g0 = mags(m, sun(0.0, 3.1), &["gaia_g"])[0];
    let ag = mags(m, sun(1.0, 3.1), &["gaia_g"])[0] - g0;
    assert!((ag - 0.84).abs() <= 0.02, "A_G = {ag}");
    let mut prev = 0.0;
    for rv in [2.3, 2.8, 3.1, 4.0, 5.0, 5.6] {
        let a = mags(m, sun(1.0, rv), &["gaia_g"])[0] - g0;
        assert!(
            a > prev,
            "A_G must grow with R_V: {a} at R_V={rv} after {prev}"
        );
        prev = a;
    }
}

#[test]
fn extinction_depends_on_the_spectrum() {
    let m = ForwardModel::embedded_raw();
    let ag = |teff: f64, logg: f64| {
        let t = Theta {
            teff,
            logg,
            mh: 0.0,
            av: 3.0,
            rv: 3.1,
            distance: 10.0,
        };
        mags(m, t, &["gaia_g"])[0] - mags(m, Theta { av: 0.0, ..t }, &["gaia_g"])[0]
    };
    // a hot star loses more G-band light per magnitude of A_V than a cool one
    let (hot, cool) = (ag(15000.0, 4.0), ag(4000.0, 4.5));
    assert!(hot - cool > 0.2, "A_G hot {hot} vs cool {cool}");
}

#[test]
fn interpolation_leave_out_p95_within_20_mmag() {
    let m = ForwardModel::embedded_raw();
    for axis in 0..3 {
        for r in leave_out_errors(m, axis, 4000.0) {
            assert!(r.n > 100, "too few comparisons on axis {axis}");
            assert!(
                r.p95 <= 0.020,
                "axis {axis} band {}: p95 {:.1} mmag",
                r.band,
                r.p95 * 1e3
            );
        }
    }
}

#[test]
fn extinction_matches_direct_integration_within_10_mmag() {
    let m = ForwardModel::embedded_raw();
    let rep = extinction_errors(m, &root().join("models/forward/extinction_check.csv")).unwrap();
    for r in rep {
        assert!(r.n >= 500);
        assert!(
            r.max <= 0.010,
            "band {}: max {:.2} mmag",
            r.band,
            r.max * 1e3
        );
    }
}

#[test]
fn support_excludes_what_no_mist_star_reaches() {
    let m = ForwardModel::embedded_raw();
    let ok = |teff, logg, mh| {
        m.support(&Theta {
            teff,
            logg,
            mh,
            av: 0.0,
            rv: 3.1,
            distance: 100.0,
        })
    };
    assert!(ok(5772.0, 4.44, 0.0)); // the Sun
    assert!(ok(4700.0, 2.5, -0.5)); // red giant
    assert!(!ok(8000.0, 5.0, 0.0)); // no A star is that compact
    assert!(!ok(3600.0, 2.5, 0.0)); // cooler than any giant branch at that gravity
    assert!(!ok(30000.0, 1.0, 0.0)); // no hot supergiant models in CK04
    assert!(!ok(f64::NAN, 4.0, 0.0));
}

#[test]
fn solar_radius_from_mist_mass() {
    let m = ForwardModel::embedded_raw();
    let r = m.radius_rsun(5772.0, 4.44, 0.0);
    assert!((r - 1.0).abs() < 0.05, "R = {r} R_sun");
}
