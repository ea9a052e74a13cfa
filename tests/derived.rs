//! Derived quantities and predicted magnitudes in `sedflow run`'s output, on simulated stars
//! whose truth is known: the intervals of predicted magnitudes (observed bands and bands a
//! star lacks) and of radii cover the truth about as often as they claim, and predictions of
//! observed bands agree with the observations within their errors.

use crate::pipeline_util::*;
use sedflow::io::table::read_numeric;
use sedflow::physics::{ForwardModel, Theta};
use std::collections::HashMap;

const PREDICT: [&str; 5] = ["gaia_g", "tmass_ks", "ps1_r", "lsst_u", "lsst_r"];

/// Fraction of `hits` that are true.
fn share(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&h| h).count() as f64 / hits.len().max(1) as f64
}

fn truth_theta(truth: &HashMap<String, Vec<f64>>, i: usize) -> Theta {
    let p = ["teff", "logg", "mh", "av", "rv", "distance"];
    Theta::from_array(p.map(|p| truth[&format!("true_{p}")][i]))
}

#[test]
fn predicted_magnitudes_and_radii_are_calibrated_on_simulated_stars() {
    let d = tmp();
    let (sim, out) = (d.path().join("sim.parquet"), d.path().join("out"));
    let o = sedflow()
        .args(["simulate", "--stars", "150", "--seed", "41"])
        .args(["--likelihood-consistent", "--output", sim.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let list = PREDICT.join(",");
    let args = [
        "--input",
        sim.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let o = run(&[&args[..], &["--predict-bands", &list]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, truth) = read_numeric(&sim).unwrap();
    let (_, post) = read_numeric(&out.join("sim.parquet")).unwrap();
    let fm = ForwardModel::embedded();
    let ids: Vec<usize> = PREDICT.iter().map(|b| fm.bands().id(b).unwrap()).collect();
    let (mut covered, mut agrees, mut radius_covered) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..post["source_id"].len() {
        let t = truth_theta(&truth, i);
        let mut m = vec![0f32; ids.len()];
        fm.magnitudes(&t, &ids, &mut m).unwrap();
        for (k, b) in PREDICT.iter().enumerate() {
            let q = ["p16", "p50", "p84"].map(|s| post[&format!("pred_{b}_{s}")][i]);
            assert!(q[0] <= q[1] && q[1] <= q[2], "star {i} {b}: {q:?}");
            covered.push(q[0] <= m[k] as f64 && m[k] as f64 <= q[2]);
        }
        // Gaia G as observed (the catalogue's own column) against its prediction
        let (g, ge) = (
            truth["phot_g_mean_mag"][i],
            truth["phot_g_mean_mag_error"][i],
        );
        if g.is_finite() {
            let (lo, mid, hi) = (
                post["pred_gaia_g_p16"][i],
                post["pred_gaia_g_p50"][i],
                post["pred_gaia_g_p84"][i],
            );
            let sigma = (ge * ge + (0.5 * (hi - lo)).powi(2)).sqrt();
            agrees.push((g - mid).abs() <= sigma);
        }
        let r = fm.radius_rsun(t.teff, t.logg, t.mh);
        radius_covered.push(post["radius_p16"][i] <= r && r <= post["radius_p84"][i]);
    }
    let (cov, agr, rad) = (share(&covered), share(&agrees), share(&radius_covered));
    eprintln!(
        "p16-p84 coverage: predicted magnitudes {cov:.3} ({} pairs), G within 1 sigma of its \
         prediction {agr:.3} ({} stars), radius {rad:.3}",
        covered.len(),
        agrees.len()
    );
    assert!((0.55..=0.80).contains(&cov), "predicted magnitudes: {cov}");
    assert!(
        (0.55..=0.85).contains(&agr),
        "observed G vs predicted: {agr}"
    );
    assert!((0.55..=0.82).contains(&rad), "radii: {rad}");
}

#[test]
fn an_unknown_predicted_band_is_a_clear_error() {
    let d = tmp();
    let cat = d.path().join("cat.parquet");
    write_parquet(&cat, &wide_catalogue(1, 3), 3);
    let o = run(
        &[
            "--input",
            cat.to_str().unwrap(),
            "--output",
            d.path().join("out").to_str().unwrap(),
            "--predict-bands",
            "gaia_g,euclid_h",
        ],
        &[],
    );
    assert_ne!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(
        t.contains("unknown band 'euclid_h'") && t.contains("lsst_r"),
        "{t}"
    );
}
