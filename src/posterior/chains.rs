//! Convergence diagnostics of Markov chains (Vehtari, Gelman, Simpson, Carpenter & Buerkner
//! 2021, "Rank-normalization, folding, and localization: an improved R-hat"): the
//! rank-normalised split-R-hat (the larger of the bulk and the folded-tail value) and the
//! bulk effective sample size with Geyer's initial monotone sequence, as ArviZ computes
//! them (golden values in `tests/fixtures/arviz_golden.json`).

use crate::util::special::norm_ppf;

/// Split every chain in two halves (a trend inside a chain then shows as disagreement).
fn split(chains: &[Vec<f64>]) -> Vec<&[f64]> {
    chains
        .iter()
        .flat_map(|c| {
            let h = c.len() / 2;
            [&c[..h], &c[c.len() - h..]]
        })
        .collect()
}

/// Rank-normalise the pooled draws: z = Phi^-1((rank - 3/8) / (S + 1/4)), ties averaged.
fn rank_normalise(chains: &[&[f64]]) -> Vec<Vec<f64>> {
    let s: usize = chains.iter().map(|c| c.len()).sum();
    let mut all: Vec<(f64, usize, usize)> = Vec::with_capacity(s);
    for (m, c) in chains.iter().enumerate() {
        for (i, &x) in c.iter().enumerate() {
            all.push((x, m, i));
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<Vec<f64>> = chains.iter().map(|c| vec![0.0; c.len()]).collect();
    let mut k = 0;
    while k < all.len() {
        let mut j = k;
        while j + 1 < all.len() && all[j + 1].0 == all[k].0 {
            j += 1;
        }
        // ranks are 1-based; ties share their average rank
        let rank = 0.5 * ((k + 1) + (j + 1)) as f64;
        let z = norm_ppf((rank - 0.375) / (s as f64 + 0.25));
        for &(_, m, i) in &all[k..=j] {
            out[m][i] = z;
        }
        k = j + 1;
    }
    out
}

/// Classic R-hat of equal-length chains.
fn rhat_basic(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len() as f64;
    let n = chains[0].len() as f64;
    let means: Vec<f64> = chains.iter().map(|c| c.iter().sum::<f64>() / n).collect();
    let grand = means.iter().sum::<f64>() / m;
    let b_over_n = means.iter().map(|x| (x - grand).powi(2)).sum::<f64>() / (m - 1.0);
    let w = chains
        .iter()
        .zip(&means)
        .map(|(c, mu)| c.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1.0))
        .sum::<f64>()
        / m;
    if !(w > 0.0) {
        return f64::NAN;
    }
    (((n - 1.0) / n * w + b_over_n) / w).sqrt()
}

/// Effective sample size of equal-length chains (Stan's estimator: the multi-chain
/// autocorrelation, summed in pairs while positive and forced monotone).
fn ess_basic(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len();
    let n = chains[0].len();
    let nf = n as f64;
    let means: Vec<f64> = chains.iter().map(|c| c.iter().sum::<f64>() / nf).collect();
    let acov = |lag: usize| -> f64 {
        chains
            .iter()
            .zip(&means)
            .map(|(c, mu)| {
                c[..n - lag]
                    .iter()
                    .zip(&c[lag..])
                    .map(|(a, b)| (a - mu) * (b - mu))
                    .sum::<f64>()
                    / nf
            })
            .sum::<f64>()
            / m as f64
    };
    let a0 = acov(0);
    let mean_var = a0 * nf / (nf - 1.0);
    let grand = means.iter().sum::<f64>() / m as f64;
    let var_means = if m > 1 {
        means.iter().map(|x| (x - grand).powi(2)).sum::<f64>() / (m as f64 - 1.0)
    } else {
        0.0
    };
    let var_plus = mean_var * (nf - 1.0) / nf + var_means;
    if !(var_plus > 0.0) {
        return f64::NAN;
    }
    let rho = |lag: usize| 1.0 - (mean_var - acov(lag)) / var_plus;
    let tau = geyer_tau(n, rho);
    // Stan bounds tau below by 1 / log10(S) (antithetic chains)
    let s = m as f64 * nf;
    s / tau.max(1.0 / s.log10())
}

/// The integrated autocorrelation time from autocorrelations rho(t) of chains of `n`
/// draws, as Stan and ArviZ compute it: Geyer's initial positive sequence of pair sums
/// (up to lag n - 3, rho(0) = 1), the last positive even lag added on its own, then the
/// pair sums made monotone.
fn geyer_tau(n: usize, rho: impl Fn(usize) -> f64) -> f64 {
    let mut r = vec![0.0; n.max(2)];
    r[0] = 1.0;
    r[1] = rho(1);
    let (mut even, mut odd) = (1.0, r[1]);
    let mut t = 1;
    while t + 3 < n && even + odd > 0.0 {
        even = rho(t + 1);
        odd = rho(t + 2);
        if even + odd >= 0.0 {
            r[t + 1] = even;
            r[t + 2] = odd;
        }
        t += 2;
    }
    let max_t = t.saturating_sub(2);
    if even > 0.0 && max_t + 1 < r.len() {
        r[max_t + 1] = even;
    }
    let mut t = 1;
    while t + 2 <= max_t {
        if r[t + 1] + r[t + 2] > r[t - 1] + r[t] {
            r[t + 1] = (r[t - 1] + r[t]) / 2.0;
            r[t + 2] = r[t + 1];
        }
        t += 2;
    }
    let tail = r.get(max_t + 1).copied().unwrap_or(0.0);
    -1.0 + 2.0 * r[..=max_t].iter().sum::<f64>() + tail
}

/// Rank-normalised split-R-hat (max of bulk and folded) and bulk ESS of one parameter
/// given as chains of equal length (at least 4 draws each).
pub fn rhat_and_ess(chains: &[Vec<f64>]) -> (f64, f64) {
    if chains.is_empty() || chains[0].len() < 4 {
        return (f64::NAN, f64::NAN);
    }
    let halves = split(chains);
    let z = rank_normalise(&halves);
    let bulk = rhat_basic(&z);
    let ess = ess_basic(&z);
    // folded: distances from the pooled median, rank-normalised (tails and scale)
    let mut pooled: Vec<f64> = halves.iter().flat_map(|c| c.iter().copied()).collect();
    let median = median_of(&mut pooled);
    let folded: Vec<Vec<f64>> = halves
        .iter()
        .map(|c| c.iter().map(|x| (x - median).abs()).collect())
        .collect();
    let folded_refs: Vec<&[f64]> = folded.iter().map(|c| c.as_slice()).collect();
    let tail = rhat_basic(&rank_normalise(&folded_refs));
    (bulk.max(tail), ess)
}

/// The median (the mean of the two middle values of an even count, as numpy takes it).
fn median_of(v: &mut [f64]) -> f64 {
    let (n, mid) = (v.len(), v.len() / 2);
    let (lower, upper, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    if n % 2 == 1 {
        return *upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (below + *upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    /// Independent draws: R-hat ~ 1 and ESS ~ the number of draws; AR(1) chains with
    /// phi = 0.9 have tau = (1 + phi) / (1 - phi) = 19; chains stuck in different places
    /// have R-hat well above 1.01.
    #[test]
    fn rhat_and_ess_of_known_chains() {
        let mut rng = Rng::new(2);
        let iid: Vec<Vec<f64>> = (0..8)
            .map(|_| (0..1000).map(|_| rng.normal()).collect())
            .collect();
        let (r, e) = rhat_and_ess(&iid);
        assert!((r - 1.0).abs() < 0.01, "iid R-hat {r}");
        assert!((e / 8000.0 - 1.0).abs() < 0.15, "iid ESS {e}");
        let phi: f64 = 0.9;
        let ar: Vec<Vec<f64>> = (0..8)
            .map(|_| {
                let mut x = 0.0;
                (0..4000)
                    .map(|_| {
                        x = phi * x + (1.0 - phi * phi).sqrt() * rng.normal();
                        x
                    })
                    .collect()
            })
            .collect();
        let (r, e) = rhat_and_ess(&ar);
        assert!(r < 1.01, "AR(1) R-hat {r}");
        let expect = 32000.0 / 19.0;
        assert!((e / expect - 1.0).abs() < 0.25, "AR(1) ESS {e} vs {expect}");
        let stuck: Vec<Vec<f64>> = (0..8)
            .map(|k| {
                (0..1000)
                    .map(|_| rng.normal() + if k < 4 { 0.0 } else { 1.0 })
                    .collect()
            })
            .collect();
        assert!(rhat_and_ess(&stuck).0 > 1.1);
    }

    /// Golden values from ArviZ (scripts/arviz_golden.py, arviz 0.22.0): az.rhat with
    /// method "rank" and az.ess with method "bulk", draws given as [chain][draw].
    #[test]
    fn rhat_and_bulk_ess_match_arviz() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/arviz_golden.json")).unwrap();
        let cases = doc["chains"].as_object().unwrap();
        assert_eq!(cases.len(), 7);
        for (name, case) in cases {
            let draws: Vec<Vec<f64>> = serde_json::from_value(case["draws"].clone()).unwrap();
            let (rhat, ess) = rhat_and_ess(&draws);
            let (want_r, want_e) = (
                case["rhat"].as_f64().unwrap(),
                case["ess_bulk"].as_f64().unwrap(),
            );
            assert!(
                (rhat - want_r).abs() < RHAT_TOL,
                "{name}: R-hat {rhat} vs ArviZ {want_r}"
            );
            assert!(
                ((ess - want_e) / want_e).abs() < ESS_REL_TOL,
                "{name}: bulk ESS {ess} vs ArviZ {want_e}"
            );
        }
    }

    /// Agreement with ArviZ on the golden inputs (the same estimators: numpy's median for
    /// the folding, Geyer's sequence up to lag n - 3 with the last positive even lag).
    const RHAT_TOL: f64 = 1e-9;
    /// Relative agreement with ArviZ's bulk ESS.
    const ESS_REL_TOL: f64 = 1e-9;
}
