//! The Pareto-smoothed importance sampling diagnostic (Vehtari, Simpson, Gelman, Yao &
//! Gabry 2024, "Pareto smoothed importance sampling", JMLR 25): a generalised Pareto
//! distribution is fitted to the largest importance weights; its shape k-hat says how
//! heavy the weights' tail is. Above 0.7 the estimate's error is not controlled by the
//! effective sample size (the weights' variance may be infinite), so the star is flagged.
//!
//! The fit is Zhang & Stephens' (2009) empirical-Bayes estimator with the weakly
//! informative prior of Vehtari et al. (shrinking k towards 0.5 by 10 pseudo-samples).

/// k-hat of importance weights given as log weights (-inf for zero weights). The tail is
/// the M = ceil(min(0.2 S, 3 sqrt(S))) largest weights of S. NaN when no weight is
/// positive; +inf when the tail has fewer than five distinct weights above its cutoff.
pub fn pareto_k_hat(log_w: &[f64]) -> f64 {
    let s = log_w.len();
    let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() || s < 5 {
        return f64::NAN;
    }
    let m = ((0.2 * s as f64).min(3.0 * (s as f64).sqrt())).ceil() as usize;
    let m = m.min(s - 1);
    // the m largest log weights and the cutoff (the (m+1)-th largest)
    let mut sorted: Vec<f64> = log_w.to_vec();
    let k = s - m - 1;
    sorted.select_nth_unstable_by(k, |a, b| {
        a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
    });
    let cutoff = sorted[k];
    let mut tail: Vec<f64> = sorted[k + 1..]
        .iter()
        .filter(|&&x| x > cutoff)
        .map(|&x| (x - max).exp() - (cutoff - max).exp())
        .collect();
    if tail.len() <= 4 {
        return f64::INFINITY;
    }
    tail.sort_by(|a, b| a.partial_cmp(b).unwrap());
    gpd_shape(&tail)
}

/// Shape of a generalised Pareto distribution (location 0) fitted to exceedances sorted in
/// ascending order (Zhang & Stephens 2009), with the prior adjustment of Vehtari et al.
pub fn gpd_shape(x: &[f64]) -> f64 {
    let n = x.len();
    let nf = n as f64;
    let m_est = 30 + (nf.sqrt() as usize);
    let quartile = x[((nf / 4.0 + 0.5) as usize).max(1) - 1];
    let x_max = x[n - 1];
    if !(quartile > 0.0) || !(x_max > 0.0) {
        return f64::INFINITY;
    }
    // candidate values of Zhang & Stephens' theta (the shape over the scale, negated) and
    // their profile log likelihoods
    let mut theta = Vec::with_capacity(m_est);
    let mut l_theta = Vec::with_capacity(m_est);
    for j in 1..=m_est {
        let b = 1.0 - (m_est as f64 / (j as f64 - 0.5)).sqrt();
        let t = b / (3.0 * quartile) + 1.0 / x_max;
        let k: f64 = x.iter().map(|&xi| (-t * xi).ln_1p()).sum::<f64>() / nf;
        theta.push(t);
        l_theta.push(nf * ((-t / k).ln() - k - 1.0));
    }
    // posterior weights of the candidates, then the posterior mean of theta
    let mut w: Vec<f64> = (0..m_est)
        .map(|i| {
            let s: f64 = l_theta.iter().map(|&lj| (lj - l_theta[i]).exp()).sum();
            1.0 / s
        })
        .collect();
    for (wi, ti) in w.iter_mut().zip(&theta) {
        if !(*wi >= 10.0 * f64::EPSILON) || !ti.is_finite() {
            *wi = 0.0;
        }
    }
    let ws: f64 = w.iter().sum();
    if !(ws > 0.0) {
        return f64::INFINITY;
    }
    let t_post: f64 = w.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() / ws;
    let k: f64 = x.iter().map(|&xi| (-t_post * xi).ln_1p()).sum::<f64>() / nf;
    // k = mean ln(1 - theta x) is the shape (> 0: heavy tail); prior: 10 pseudo-samples at 0.5
    (nf * k + 10.0 * 0.5) / (nf + 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    /// Weights with a Pareto(alpha) tail have k = 1 / alpha; light-tailed weights have k
    /// well below 0.5.
    #[test]
    fn k_hat_recovers_pareto_tails() {
        let mut rng = Rng::new(4);
        for (alpha, tol) in [(1.0f64, 0.15), (2.0, 0.12), (4.0, 0.12)] {
            let log_w: Vec<f64> = (0..4000)
                .map(|_| -rng.uniform_open().ln() / alpha) // log of Pareto(alpha) variates
                .collect();
            let k = pareto_k_hat(&log_w);
            assert!((k - 1.0 / alpha).abs() < tol, "alpha {alpha}: k {k}");
        }
        // Gaussian target, wider Gaussian proposal: bounded weights, k < 0.3
        let log_w: Vec<f64> = (0..4000)
            .map(|_| {
                let x = 2.0 * rng.normal();
                -0.5 * x * x + 0.5 * (x / 2.0).powi(2)
            })
            .collect();
        let k = pareto_k_hat(&log_w);
        assert!(k < 0.3, "bounded weights: k {k}");
        // zero weights are part of the body; all-zero gives NaN
        let mut with_zeros = log_w.clone();
        with_zeros.extend(std::iter::repeat_n(f64::NEG_INFINITY, 100));
        assert!(pareto_k_hat(&with_zeros) < 0.3);
        assert!(pareto_k_hat(&[f64::NEG_INFINITY; 10]).is_nan());
    }

    /// Golden values from ArviZ's psislw (scripts/arviz_golden.py, arviz 0.22.0, reff 1).
    #[test]
    fn k_hat_matches_arviz() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/arviz_golden.json")).unwrap();
        let cases = doc["weights"].as_object().unwrap();
        assert_eq!(cases.len(), 5);
        for (name, case) in cases {
            let lw: Vec<f64> = serde_json::from_value(case["log_weights"].clone()).unwrap();
            let want = case["k_hat"].as_f64().unwrap();
            let got = pareto_k_hat(&lw);
            assert!(
                (got - want).abs() < K_HAT_TOL,
                "{name}: {got} vs ArviZ {want}"
            );
        }
    }

    /// Agreement with ArviZ's k-hat on the golden inputs.
    const K_HAT_TOL: f64 = 1e-9;
}
